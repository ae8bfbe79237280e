//! `gateway [--config config.toml]`: serves the stitched graph.

/// jemalloc, not mimalloc: under load the gateway's allocations come from
/// blocks freed long before, and mimalloc reads each one's free-list link
/// (a cache miss per allocation) where jemalloc's thread cache keeps an
/// array of pointers. Measured: 0.84 of the CPU per `nested` request.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    // One clear line, never a backtrace (also under RUST_BACKTRACE=1).
    if let Err(e) = gateway::cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
