//! Schema stitching: reads `@schema`/`@delegate` directives, merges the
//! subgraphs' schemas, plans each operation and runs delegated fields with
//! batching (one request per subgraph per level, duplicates removed).
//!
//! The flow, one module per stage:
//! `directives` -> `schema` (a validated [`Supergraph`]) -> `plan` -> `execute`.

pub mod authorization;
pub mod directives;
pub mod execute;
pub mod limits;
pub mod operation;
pub mod plan;
pub mod schema;
mod spec_rules;
#[cfg(test)]
pub(crate) mod testing;

pub use limits::{LimitError, Limits};
pub use operation::{check_cost, coerce_variables, prepare, PreparedOperation, RequestError};
pub use schema::{build, BuildError, BuildErrors, Subgraph, SubgraphId, SubgraphSpec, Supergraph};
