//! `pipeline [--config config.toml]`: the pipeline subgraph as a process, configured by
//! `[services.pipeline]`; relative paths are relative to the config file.

subgraphs::service_main!(subgraphs::pipeline::start);
