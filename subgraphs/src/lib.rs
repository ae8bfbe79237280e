//! The three services the gateway stitches: `pipeline`, `dataset` and `log`.
//! Each is a standalone async-graphql service with embedded SQLite storage;
//! each module exposes `router(...)` and `start(config) -> RunningService`.

pub mod common;
pub mod dataset;
pub mod federation;
pub mod log;
pub mod pipeline;
pub mod ratings;
