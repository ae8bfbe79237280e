//! `dataset [--config config.toml]`: the dataset subgraph as a process, configured by
//! `[services.dataset]`; relative paths are relative to the config file.

#[tokio::main]
async fn main() {
    subgraphs::common::cli::run_service(subgraphs::dataset::start).await
}
