//! The gateway binary's entry, built with the e2e tests so they can run it as
//! a process (signals, exit codes) without a separate `cargo build`.

fn main() -> anyhow::Result<()> {
    gateway::cli::run()
}
