//! `bench train`: the gateway driven once through every workload the
//! benchmark times, briefly, measuring nothing. It is the training run of
//! a profile-guided build (`scripts/pgo.sh`): an instrumented gateway
//! records which code these workloads run and how, and the optimized
//! build is laid out for that. A workload left out here would be built as
//! cold code, so this covers them all: the stitching scenarios with
//! deduplication on and off, and the federation `TestQuery` with
//! identical requests and with a unique `Authorization` each.

use crate::{options::Options, peers, scenarios, seed, stack::Stack, subscriptions};

pub async fn run(o: &Options) -> anyhow::Result<()> {
    for no_dedupe in [false, true] {
        let o = Options {
            no_dedupe,
            ..o.clone()
        };
        eprintln!(
            "bench train: stitching, deduplication {}",
            if no_dedupe { "off" } else { "on" }
        );
        stitching(&o).await?;
    }
    eprintln!("bench train: federation");
    peers::train_federation(o).await
}

/// The stitching scenarios on a fresh stack. The stack is stopped with
/// SIGTERM whatever happened: an instrumented gateway writes its profile
/// as it exits.
async fn stitching(o: &Options) -> anyhow::Result<()> {
    let stack = Stack::start(o).await?;
    let result = async {
        let seeded = seed::seed(o, &stack).await?;
        scenarios::root(o, &stack, &seeded).await?;
        scenarios::nested(o, &stack).await?;
        scenarios::fanout(o, &stack, &seeded).await?;
        if let subscriptions::Outcome::Blocked { error, .. } = subscriptions::run(o, &stack).await {
            anyhow::bail!("no subscription through the gateway: {error}");
        }
        Ok(())
    }
    .await;
    let stopped = stack.stop().await;
    result.and(stopped)
}
