//! `log [--config config.toml]`: the log subgraph as a process, configured by
//! `[services.log]`; relative paths are relative to the config file.

#[tokio::main]
async fn main() {
    subgraphs::common::cli::run_service(subgraphs::log::start).await
}
