//! `gateway [--config config.toml]`: serves the stitched graph.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    // One clear line, never a backtrace (also under RUST_BACKTRACE=1).
    if let Err(e) = gateway::cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
