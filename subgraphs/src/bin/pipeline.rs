//! `pipeline [--config config.toml]`: the pipeline subgraph as a process, configured by
//! `[services.pipeline]`; relative paths are relative to the config file.

#[tokio::main]
async fn main() {
    subgraphs::common::cli::run_service(subgraphs::pipeline::start).await
}
