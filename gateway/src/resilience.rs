//! What keeps a slow or failing subgraph from taking the gateway with it:
//! a circuit breaker and a retry budget per subgraph, and the reachability
//! `/ready` reports. State is kept by subgraph name in `Upstream`, so it
//! survives schema reloads; the thresholds come from the current config.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use crate::config::{BreakerConfig, RetryConfig};

/// Counts over a sliding window, kept in ten buckets.
#[derive(Debug)]
struct Window {
    span: Duration,
    /// (bucket start, requests, failures or retries)
    buckets: [(Option<Instant>, u32, u32); 10],
}

impl Window {
    fn new(span: Duration) -> Window {
        Window {
            span: span.max(Duration::from_millis(10)),
            buckets: [(None, 0, 0); 10],
        }
    }

    fn bucket(&mut self, now: Instant) -> &mut (Option<Instant>, u32, u32) {
        let width = self.span / 10;
        let i = (self.slot(now) % 10) as usize;
        let b = &mut self.buckets[i];
        if b.0.is_none_or(|start| now.duration_since(start) >= width) {
            *b = (Some(now), 0, 0);
        }
        b
    }

    fn slot(&self, now: Instant) -> u128 {
        // Buckets are keyed by time since process start; any fixed origin works.
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        now.saturating_duration_since(origin).as_nanos() / (self.span / 10).as_nanos().max(1)
    }

    fn add(&mut self, now: Instant, requests: u32, marked: u32) {
        let b = self.bucket(now);
        b.1 += requests;
        b.2 += marked;
    }

    /// (requests, marked) within the window.
    fn totals(&self, now: Instant) -> (u32, u32) {
        self.buckets
            .iter()
            .filter(|(start, ..)| start.is_some_and(|s| now.duration_since(s) < self.span))
            .fold((0, 0), |(r, m), (_, br, bm)| (r + br, m + bm))
    }

    fn clear(&mut self) {
        self.buckets = [(None, 0, 0); 10];
    }
}

/// The breaker's position, as `/ready` and `/metrics` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Position {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

#[derive(Debug)]
struct BreakerInner {
    position: Position,
    window: Window,
}

/// Opens after a failure rate over a window; after a cool-down lets a few
/// probes through, and closes when they all succeed.
#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<BreakerInner>,
    /// Transitions into open, half-open and closed.
    pub transitions: [AtomicU64; 3],
    /// Requests refused while open.
    pub rejected: AtomicU64,
}

/// Leave to send one request; report how it went with `done`. Dropped
/// unreported (the caller went away), it frees its probe slot.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Permit<'_> {
    pub fn done(mut self, cfg: &BreakerConfig, ok: bool) {
        self.reported = true;
        self.breaker.record(cfg, self.probe, ok, Instant::now());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            if let Position::HalfOpen { in_flight, .. } = &mut self.breaker.lock().position {
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }
}

impl Breaker {
    fn new(cfg: &BreakerConfig) -> Breaker {
        Breaker {
            inner: Mutex::new(BreakerInner {
                position: Position::Closed,
                window: Window::new(Duration::from_secs(cfg.window_secs)),
            }),
            transitions: Default::default(),
            rejected: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BreakerInner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.lock().position {
            Position::Closed => BreakerState::Closed,
            Position::Open { until } if Instant::now() < until => BreakerState::Open,
            // Past its cool-down: the next request is a probe.
            Position::Open { .. } | Position::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn moved(&self, to: BreakerState) {
        let i = match to {
            BreakerState::Open => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Closed => 2,
        };
        self.transitions[i].fetch_add(1, Relaxed);
        tracing::info!(state = to.as_str(), "subgraph circuit breaker moved");
    }

    /// Leave to send a request now, or `None` while the breaker is open.
    pub fn admit(&self, cfg: &BreakerConfig, now: Instant) -> Option<Permit<'_>> {
        if !cfg.enabled {
            return Some(self.permit(false));
        }
        let mut g = self.lock();
        let probe = match &mut g.position {
            Position::Closed => false,
            Position::Open { until } if now < *until => {
                drop(g);
                self.rejected.fetch_add(1, Relaxed);
                return None;
            }
            Position::Open { .. } => {
                g.position = Position::HalfOpen {
                    in_flight: 1,
                    succeeded: 0,
                };
                drop(g);
                self.moved(BreakerState::HalfOpen);
                return Some(self.permit(true));
            }
            Position::HalfOpen {
                in_flight,
                succeeded,
            } => {
                if *in_flight + *succeeded >= cfg.half_open_probes.max(1) {
                    drop(g);
                    self.rejected.fetch_add(1, Relaxed);
                    return None;
                }
                *in_flight += 1;
                true
            }
        };
        drop(g);
        Some(self.permit(probe))
    }

    fn permit(&self, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            probe,
            reported: false,
        }
    }

    fn record(&self, cfg: &BreakerConfig, probe: bool, ok: bool, now: Instant) {
        if !cfg.enabled {
            return;
        }
        let cooldown = Duration::from_millis(cfg.cooldown_ms);
        let mut g = self.lock();
        let moved = match (&mut g.position, probe) {
            (Position::HalfOpen { .. }, true) if !ok => {
                g.position = Position::Open {
                    until: now + cooldown,
                };
                Some(BreakerState::Open)
            }
            (
                Position::HalfOpen {
                    in_flight,
                    succeeded,
                },
                true,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                *succeeded += 1;
                if *succeeded >= cfg.half_open_probes.max(1) {
                    g.position = Position::Closed;
                    g.window.clear();
                    Some(BreakerState::Closed)
                } else {
                    None
                }
            }
            (Position::Closed, _) => {
                g.window.add(now, 1, u32::from(!ok));
                let (requests, failures) = g.window.totals(now);
                let tripped = !ok
                    && requests >= cfg.min_requests.max(1)
                    && f64::from(failures) >= cfg.failure_rate * f64::from(requests);
                if tripped {
                    g.position = Position::Open {
                        until: now + cooldown,
                    };
                    Some(BreakerState::Open)
                } else {
                    None
                }
            }
            // A request admitted before the breaker opened: already counted.
            _ => None,
        };
        drop(g);
        if let Some(to) = moved {
            self.moved(to);
        }
    }
}

/// Retries may add at most a share of the requests of the last 10 s.
#[derive(Debug)]
pub struct RetryBudget {
    window: Mutex<Window>,
    /// Retries sent, and retries the budget refused.
    pub retries: AtomicU64,
    pub exhausted: AtomicU64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            window: Mutex::new(Window::new(Duration::from_secs(10))),
            retries: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
        }
    }
}

impl RetryBudget {
    fn lock(&self) -> MutexGuard<'_, Window> {
        match self.window.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A first attempt went out.
    pub fn sent(&self, now: Instant) {
        self.lock().add(now, 1, 0);
    }

    /// Takes one retry from the budget, if it has one.
    pub fn withdraw(&self, cfg: &RetryConfig, now: Instant) -> bool {
        let mut w = self.lock();
        let (requests, retries) = w.totals(now);
        let allowed = f64::from(cfg.budget_min) + cfg.budget_ratio * f64::from(requests);
        if f64::from(retries) + 1.0 > allowed {
            drop(w);
            self.exhausted.fetch_add(1, Relaxed);
            return false;
        }
        w.add(now, 0, 1);
        drop(w);
        self.retries.fetch_add(1, Relaxed);
        true
    }
}

/// The wait before retry number `retry` (1-based): exponential with full
/// jitter, or the subgraph's `Retry-After` when it gave one.
pub fn backoff(cfg: &RetryConfig, retry: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d;
    }
    let cap = cfg
        .backoff_ms
        .saturating_mul(1u64 << retry.saturating_sub(1).min(20))
        .min(cfg.max_backoff_ms.max(cfg.backoff_ms));
    // Half fixed, half random: retries of many clients spread out.
    Duration::from_millis(cap / 2 + fastrand::u64(0..=cap / 2))
}

/// One subgraph's standing across reloads: breaker, retry budget, and since
/// when every request to it has failed.
#[derive(Debug)]
pub struct SubgraphHealth {
    pub breaker: Breaker,
    pub budget: RetryBudget,
    /// Since when every request has failed (`None`: the last one answered).
    failing_since: Mutex<Option<Instant>>,
    /// Whether `failing_since` is set: a healthy subgraph's requests read
    /// this and never take the lock.
    failing: std::sync::atomic::AtomicBool,
}

impl SubgraphHealth {
    pub fn new(cfg: &BreakerConfig) -> SubgraphHealth {
        SubgraphHealth {
            breaker: Breaker::new(cfg),
            budget: RetryBudget::default(),
            failing_since: Mutex::new(None),
            failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a request answered (`ok`), or failed as the breaker counts it.
    pub fn reached(&self, ok: bool, now: Instant) {
        if ok && !self.failing.load(Relaxed) {
            return;
        }
        let mut f = match self.failing_since.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match (ok, *f) {
            (true, _) => *f = None,
            (false, None) => *f = Some(now),
            (false, Some(_)) => {}
        }
        self.failing.store(f.is_some(), Relaxed);
    }

    /// How long every request to it has failed.
    pub fn unreachable_for(&self, now: Instant) -> Option<Duration> {
        let f = match self.failing_since.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        };
        f.map(|since| now.duration_since(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            failure_rate: 0.5,
            min_requests: 4,
            window_secs: 10,
            cooldown_ms: 1_000,
            half_open_probes: 2,
        }
    }

    #[test]
    fn the_breaker_opens_at_the_failure_rate_probes_after_the_cooldown_and_closes() {
        let (c, b) = (cfg(), Breaker::new(&cfg()));
        let t0 = Instant::now();
        // Three failures of three requests: below `min_requests`, still closed.
        for _ in 0..3 {
            b.admit(&c, t0).unwrap();
            b.record(&c, false, false, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.admit(&c, t0).unwrap();
        b.record(&c, false, false, t0);
        assert!(b.admit(&c, t0).is_none(), "open: refused at once");
        // After the cool-down: two probes at most, and a failed one reopens.
        let t1 = t0 + Duration::from_millis(1_100);
        let p1 = b.admit(&c, t1).unwrap();
        let p2 = b.admit(&c, t1).unwrap();
        assert!(b.admit(&c, t1).is_none(), "only `half_open_probes` at once");
        drop(p2);
        assert!(p1.probe);
        b.record(&c, true, false, t1);
        assert!(b.admit(&c, t1).is_none(), "a failed probe reopens it");
        let t2 = t1 + Duration::from_millis(1_100);
        for _ in 0..2 {
            let p = b.admit(&c, t2).unwrap();
            assert!(p.probe);
            std::mem::forget(p);
            b.record(&c, true, true, t2);
        }
        assert!(matches!(b.lock().position, Position::Closed));
        assert_eq!(b.transitions.each_ref().map(|t| t.load(Relaxed)), [2, 2, 1]);
    }

    #[test]
    fn successes_keep_it_closed_and_old_failures_leave_the_window() {
        let (c, b) = (cfg(), Breaker::new(&cfg()));
        let t0 = Instant::now();
        for i in 0..10 {
            b.record(&c, false, i < 6, t0);
        }
        assert!(b.admit(&c, t0).is_some(), "4 failures in 10: below half");
        let later = t0 + Duration::from_secs(11);
        for _ in 0..3 {
            b.record(&c, false, false, later);
        }
        assert!(
            b.admit(&c, later).is_some(),
            "the old requests no longer count"
        );
    }

    #[test]
    fn the_retry_budget_is_a_share_of_recent_requests() {
        let r = RetryConfig {
            budget_ratio: 0.1,
            budget_min: 2,
            ..RetryConfig::default()
        };
        let budget = RetryBudget::default();
        let t0 = Instant::now();
        for _ in 0..50 {
            budget.sent(t0);
        }
        // 2 + 0.1 * 50 = 7 retries, then none.
        let granted = (0..20).filter(|_| budget.withdraw(&r, t0)).count();
        assert_eq!(granted, 7);
        assert_eq!(budget.exhausted.load(Relaxed), 13);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let r = RetryConfig {
            backoff_ms: 100,
            max_backoff_ms: 1_000,
            ..RetryConfig::default()
        };
        for (retry, cap) in [(1, 100), (2, 200), (3, 400), (6, 1_000)] {
            let d = backoff(&r, retry, None).as_millis() as u64;
            assert!((cap / 2..=cap).contains(&d), "retry {retry}: {d} ms");
        }
        assert_eq!(
            backoff(&r, 1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }
}
