//! `ratings [--config config.toml]`: the Composite Schemas ratings subgraph,
//! configured by `[services.ratings]`; its source schema at `/schema.graphql`.

#[tokio::main]
async fn main() {
    subgraphs::common::cli::run_service(subgraphs::ratings::start).await
}
