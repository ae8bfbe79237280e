//! `ratings [--config config.toml]`: the Composite Schemas ratings subgraph,
//! configured by `[services.ratings]`; its source schema at `/schema.graphql`.

subgraphs::service_main!(subgraphs::ratings::start);
