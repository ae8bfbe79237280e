//! Test support for the end-to-end tests: real clients and in-process services.

pub mod chaos;
pub mod client;
pub mod federation;
pub mod otlp;
pub mod pipeline_support;
pub mod platform;
pub mod stack;
pub mod storage;
pub mod ws_support;
