//! The dataset service's entry, built with the e2e tests so they can run it
//! as a process (config errors, exit codes, environment).

#[tokio::main]
async fn main() {
    subgraphs::common::cli::run_service(subgraphs::dataset::start).await
}
