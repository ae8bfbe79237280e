//! The log service's entry, built with the e2e tests so they can run it as
//! a process (the tracing test runs all three services so).

#[tokio::main]
async fn main() {
    subgraphs::common::cli::run_service(subgraphs::log::start).await
}
