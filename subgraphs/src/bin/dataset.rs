//! `dataset [--config config.toml]`: the dataset subgraph as a process, configured by
//! `[services.dataset]`; relative paths are relative to the config file.

subgraphs::service_main!(subgraphs::dataset::start);
