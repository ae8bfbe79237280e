//! `federation [--config config.toml]`: the four Federation subgraphs of the
//! gateway benchmark (`/accounts/graphql`, `/products/graphql`,
//! `/inventory/graphql`, `/reviews/graphql`), configured by `[services.federation]`.

#[tokio::main]
async fn main() {
    subgraphs::common::cli::run_service(subgraphs::federation::start).await
}
