//! `gateway [--config config.toml]`: serves the stitched graph.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> anyhow::Result<()> {
    gateway::cli::run()
}
