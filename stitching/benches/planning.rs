//! Cold planning: parse + validate + plan, with no cache, of the
//! federation benchmark's `TestQuery` and of the stitching `nested` query.
//!
//! `cargo bench -p stitching --bench planning`

use criterion::{criterion_group, criterion_main, Criterion};
mod common;

use common::{federation, stitched, NESTED, TEST_QUERY};
use stitching::{build, prepare, Limits};

fn cold_planning(c: &mut Criterion) {
    let limits = Limits::default();
    for (name, specs, query) in [
        ("federation TestQuery", federation(), TEST_QUERY),
        ("stitching nested", stitched(), NESTED),
    ] {
        let supergraph = match build(&specs) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        c.bench_function(&format!("cold plan: {name}"), |b| {
            b.iter(|| prepare(&supergraph, query, None, &limits).map(|p| p.plan.waves.len()))
        });
    }
}

criterion_group!(benches, cold_planning);
criterion_main!(benches);
