//! `federation [--config config.toml]`: the four Federation subgraphs of the
//! gateway benchmark (`/accounts/graphql`, `/products/graphql`,
//! `/inventory/graphql`, `/reviews/graphql`), configured by `[services.federation]`.

subgraphs::service_main!(subgraphs::federation::start);
