//! The pipeline service's entry, built with the e2e tests so they can run it
//! as a process (and kill it with SIGKILL).

#[tokio::main]
async fn main() {
    subgraphs::common::cli::run_service(subgraphs::pipeline::start).await
}
