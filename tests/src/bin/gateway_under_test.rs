//! The gateway binary's entry, built with the e2e tests so they can run it as
//! a process (signals, exit codes) without a separate `cargo build`.

fn main() {
    if let Err(e) = gateway::cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
