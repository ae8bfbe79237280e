//! `log [--config config.toml]`: the log subgraph as a process, configured by
//! `[services.log]`; relative paths are relative to the config file.

subgraphs::service_main!(subgraphs::log::start);
