//! The sliding window behind the retry budget and the payload-size signal (decision-tree
//! branches "are retries amplifying this?" and "does it only fail for large payloads?").
//!
//! Pure and clock-free: time comes in as whole seconds. Each worker accumulates a [`Pending`]
//! delta without touching shared state; once per second it merges the delta into the VM-wide
//! [`Table`] (serialised into proxy-wasm shared data with [`Table::encode`]), re-evaluates every
//! cluster ([`Table::evaluate`]) and keeps the decoded table as its snapshot, which the
//! response-headers phase asks with [`Table::over_budget`]. Memory is bounded: at most
//! [`MAX_CLUSTERS`] clusters (least recently active evicted), at most [`MAX_BUCKETS`] buckets.
//!
//! Three parts: the model here (counts, buckets, the table and its evaluation), the binary
//! codec of the table in shared data (`codec.rs`), and the request sampler (`sampler.rs`).

use crate::config::RetryBudget;
use crate::taxonomy::Direction;

mod codec;
mod sampler;

pub use sampler::Sampler;

/// Clusters tracked at once (per plugin); the least recently active one makes room.
pub const MAX_CLUSTERS: usize = 64;
/// Buckets per cluster; windows longer than this many seconds get wider buckets.
pub const MAX_BUCKETS: u32 = 30;
/// Cluster names are cut to this many bytes (Istio names are far shorter).
pub const MAX_NAME: usize = 200;

/// What happened to one cluster in one bucket. Saturating `u32`s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Downstream requests that reached the cluster (attempts ≥ 1).
    pub requests: u32,
    /// Extra attempts: Σ (attempts − 1).
    pub retries: u32,
    /// Requests that got a verdict (failing).
    pub failures: u32,
    /// Requests whose body was at or above `large_payload_bytes`.
    pub large_requests: u32,
    /// Failing large requests.
    pub large_failures: u32,
}

/// Number of counters in [`Counts`] (the codec writes each).
const FIELDS: usize = 5;

impl Counts {
    /// One finished request: `attempts` from `upstream.request_attempt_count`.
    pub fn request(attempts: u64, failed: bool, large: bool) -> Counts {
        Counts {
            requests: 1,
            retries: u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX),
            failures: u32::from(failed),
            large_requests: u32::from(large),
            large_failures: u32::from(large && failed),
        }
    }

    pub fn add(&mut self, o: &Counts) {
        self.requests = self.requests.saturating_add(o.requests);
        self.retries = self.retries.saturating_add(o.retries);
        self.failures = self.failures.saturating_add(o.failures);
        self.large_requests = self.large_requests.saturating_add(o.large_requests);
        self.large_failures = self.large_failures.saturating_add(o.large_failures);
    }

    pub fn is_empty(&self) -> bool {
        *self == Counts::default()
    }

    /// These counts standing for `weight` requests (a sample's weight, see [`Sampler`]).
    pub fn scaled(self, weight: u32) -> Counts {
        Counts::from_fields(self.fields().map(|f| f.saturating_mul(weight)))
    }

    fn fields(&self) -> [u32; FIELDS] {
        [
            self.requests,
            self.retries,
            self.failures,
            self.large_requests,
            self.large_failures,
        ]
    }

    fn from_fields(f: [u32; FIELDS]) -> Counts {
        let [requests, retries, failures, large_requests, large_failures] = f;
        Counts {
            requests,
            retries,
            failures,
            large_requests,
            large_failures,
        }
    }

    /// Retries per request in per-mille (may exceed 1000: 2 retries per request = 2000).
    pub fn retry_permille(&self) -> u64 {
        match self.requests {
            0 => 0,
            r => u64::from(self.retries) * 1000 / u64::from(r),
        }
    }

    /// Retries above the budget: more than `ratio` retries per request, with at least
    /// `min_requests` requests in the window.
    pub fn over_budget(&self, budget: &RetryBudget) -> bool {
        u64::from(self.requests) >= budget.min_requests.max(1)
            && f64::from(self.retries) > budget.ratio * f64::from(self.requests)
    }

    /// How much more often large requests fail than small ones, in per-mille: failure ratio
    /// of large requests minus failure ratio of the others, floored at 0. 0 below
    /// `min_requests` requests or without any large request.
    pub fn large_payload_permille(&self, min_requests: u64) -> u64 {
        if u64::from(self.requests) < min_requests.max(1) || self.large_requests == 0 {
            return 0;
        }
        let large = u64::from(self.large_failures) * 1000 / u64::from(self.large_requests);
        let small_requests = self.requests.saturating_sub(self.large_requests);
        let small_failures = self.failures.saturating_sub(self.large_failures);
        let small = match small_requests {
            0 => 0,
            n => u64::from(small_failures) * 1000 / u64::from(n),
        };
        large.saturating_sub(small)
    }
}

/// Bucket geometry for a window: `buckets` buckets of `bucket_seconds` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub bucket_seconds: u32,
    pub buckets: u32,
}

impl Layout {
    pub fn new(window_seconds: u32) -> Layout {
        let window = window_seconds.max(1);
        let bucket_seconds = window.div_ceil(MAX_BUCKETS);
        Layout {
            bucket_seconds,
            buckets: window.div_ceil(bucket_seconds),
        }
    }

    fn epoch(&self, now_s: u64) -> u64 {
        now_s / u64::from(self.bucket_seconds.max(1))
    }

    fn slot(&self, epoch: u64) -> usize {
        usize::try_from(epoch % u64::from(self.buckets.max(1))).unwrap_or(0)
    }

    /// Bucket `epoch` is inside the window ending at `now_epoch` (inclusive).
    fn live(&self, epoch: u64, now_epoch: u64) -> bool {
        epoch <= now_epoch && now_epoch - epoch < u64::from(self.buckets)
    }
}

/// A worker's counts since its last flush, per (direction, cluster). Bounded like the table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pending {
    entries: Vec<(Direction, String, Counts)>,
}

impl Pending {
    pub fn record(&mut self, dir: Direction, cluster: &str, c: Counts) {
        let cluster = cut(cluster);
        if let Some((_, _, counts)) = self
            .entries
            .iter_mut()
            .find(|(d, n, _)| *d == dir && n == cluster)
        {
            counts.add(&c);
        } else if self.entries.len() < MAX_CLUSTERS {
            self.entries.push((dir, cluster.to_string(), c));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

fn cut(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or("")
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    dir: Direction,
    cluster: String,
    /// Over budget at the last evaluation.
    over: bool,
    /// Ring of (epoch, counts), `Layout::buckets` long.
    buckets: Vec<(u64, Counts)>,
}

impl Entry {
    fn new(dir: Direction, cluster: String, layout: Layout) -> Entry {
        Entry {
            dir,
            cluster,
            over: false,
            buckets: vec![(0, Counts::default()); layout.buckets as usize],
        }
    }

    fn totals(&self, layout: Layout, now_epoch: u64) -> Counts {
        let mut t = Counts::default();
        for (e, c) in &self.buckets {
            if layout.live(*e, now_epoch) {
                t.add(c);
            }
        }
        t
    }

    fn last_active(&self) -> u64 {
        self.buckets
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(e, _)| *e)
            .max()
            .unwrap_or(0)
    }
}

/// What one evaluation found, per direction (index: [`Direction::index`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Something in the table changed (flags flipped, entries expired): write it back.
    pub changed: bool,
    /// Clusters that went over budget in this evaluation.
    pub newly_over: [u32; 3],
    /// Highest retry ratio (per-mille) among clusters with at least `min_requests` requests.
    pub retry_permille: [u64; 3],
    /// [`Counts::large_payload_permille`] over all clusters of the direction.
    pub large_payload_permille: [u64; 3],
}

/// The VM-wide window: every tracked cluster's buckets.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    layout: Layout,
    entries: Vec<Entry>,
}

impl Table {
    pub fn new(layout: Layout) -> Table {
        Table {
            layout,
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a worker's delta to the bucket of second `now_s`.
    pub fn merge(&mut self, now_s: u64, pending: &Pending) {
        let layout = self.layout;
        let epoch = layout.epoch(now_s);
        for (dir, cluster, counts) in &pending.entries {
            let i = match self
                .entries
                .iter()
                .position(|e| e.dir == *dir && e.cluster == *cluster)
            {
                Some(i) => i,
                None => {
                    if self.entries.len() >= MAX_CLUSTERS {
                        if let Some(lru) = (0..self.entries.len())
                            .min_by_key(|i| self.entries.get(*i).map_or(0, Entry::last_active))
                        {
                            self.entries.swap_remove(lru);
                        }
                    }
                    self.entries.push(Entry::new(*dir, cluster.clone(), layout));
                    self.entries.len() - 1
                }
            };
            let Some(bucket) = self
                .entries
                .get_mut(i)
                .and_then(|e| e.buckets.get_mut(layout.slot(epoch)))
            else {
                continue;
            };
            if bucket.0 != epoch {
                *bucket = (epoch, Counts::default());
            }
            bucket.1.add(counts);
        }
    }

    /// Re-evaluates every cluster at second `now_s`: budget flags, gauges, expiry.
    pub fn evaluate(&mut self, now_s: u64, budget: &RetryBudget) -> Evaluation {
        let layout = self.layout;
        let now_epoch = layout.epoch(now_s);
        let mut ev = Evaluation::default();
        let mut per_dir = [Counts::default(); 3];
        let before = self.entries.len();
        self.entries.retain_mut(|e| {
            let t = e.totals(layout, now_epoch);
            let over = t.over_budget(budget);
            let d = e.dir.index();
            if over != e.over {
                ev.changed = true;
                if over {
                    if let Some(n) = ev.newly_over.get_mut(d) {
                        *n += 1;
                    }
                }
                e.over = over;
            }
            if u64::from(t.requests) >= budget.min_requests.max(1) {
                if let Some(g) = ev.retry_permille.get_mut(d) {
                    *g = (*g).max(t.retry_permille());
                }
            }
            if let Some(sum) = per_dir.get_mut(d) {
                sum.add(&t);
            }
            !t.is_empty() || over
        });
        ev.changed |= self.entries.len() != before;
        for (g, sum) in ev.large_payload_permille.iter_mut().zip(per_dir.iter()) {
            *g = sum.large_payload_permille(budget.min_requests);
        }
        ev
    }

    /// The table holds at least one cluster seen on a `dir` listener.
    pub fn tracks(&self, dir: Direction) -> bool {
        self.entries.iter().any(|e| e.dir == dir)
    }

    /// Is any cluster seen on a `dir` listener over budget (then the cluster name is worth
    /// reading)?
    pub fn any_over(&self, dir: Direction) -> bool {
        self.entries.iter().any(|e| e.over && e.dir == dir)
    }

    /// Was `cluster` (seen on a `dir` listener) over budget at the last evaluation?
    pub fn over_budget(&self, dir: Direction, cluster: &str) -> bool {
        let cluster = cut(cluster);
        self.entries
            .iter()
            .any(|e| e.over && e.dir == dir && e.cluster == cluster)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    // Shared with the codec's tests (window/codec.rs).
    pub(super) const OUT: Direction = Direction::Outbound;
    pub(super) const IN: Direction = Direction::Inbound;

    pub(super) fn budget(ratio: f64, window_seconds: u32, min_requests: u64) -> RetryBudget {
        RetryBudget {
            ratio,
            window_seconds,
            min_requests,
        }
    }

    /// `n` requests of `attempts` attempts each to `cluster`, flushed at second `now`.
    pub(super) fn flush(t: &mut Table, now: u64, cluster: &str, n: u32, c: Counts) {
        let mut p = Pending::default();
        for _ in 0..n {
            p.record(OUT, cluster, c);
        }
        t.merge(now, &p);
    }

    #[test]
    fn scaled_counts_multiply_every_field() {
        let c = Counts::request(3, true, true).scaled(8);
        assert_eq!(
            (
                c.requests,
                c.retries,
                c.failures,
                c.large_requests,
                c.large_failures
            ),
            (8, 16, 8, 8, 8)
        );
    }

    #[test]
    fn layout_keeps_the_bucket_count_bounded() {
        assert_eq!(
            Layout::new(10),
            Layout {
                bucket_seconds: 1,
                buckets: 10
            }
        );
        assert_eq!(
            Layout::new(3600),
            Layout {
                bucket_seconds: 120,
                buckets: 30
            }
        );
        assert_eq!(Layout::new(31).buckets, 16);
        assert_eq!(Layout::new(0).buckets, 1);
    }

    #[test]
    fn budget_is_retries_per_request_over_the_window() {
        // 2,000 rps x 10 % = 200 retries/s: 2000 requests with 200 retries are within budget.
        let b = budget(0.1, 10, 20);
        let at_budget = Counts {
            requests: 2000,
            retries: 200,
            ..Counts::default()
        };
        assert!(!at_budget.over_budget(&b));
        let over = Counts {
            retries: 201,
            ..at_budget
        };
        assert!(over.over_budget(&b));
        assert_eq!(over.retry_permille(), 100);
        // Below the minimum volume no verdict is made.
        let few = Counts {
            requests: 19,
            retries: 38,
            ..Counts::default()
        };
        assert!(!few.over_budget(&b));
    }

    #[test]
    fn a_retry_storm_goes_over_budget_once_and_calms_after_the_window() {
        let b = budget(0.1, 2, 5);
        let mut t = Table::new(Layout::new(2));
        flush(&mut t, 100, "c_app", 4, Counts::request(3, true, false));
        let ev = t.evaluate(100, &b);
        assert!(
            !t.over_budget(OUT, "c_app"),
            "4 requests are below min_requests"
        );
        assert_eq!(ev.newly_over, [0, 0, 0]);
        assert_eq!(ev.retry_permille, [0, 0, 0]);

        flush(&mut t, 101, "c_app", 2, Counts::request(3, true, false));
        let ev = t.evaluate(101, &b);
        assert!(t.over_budget(OUT, "c_app"));
        assert!(!t.over_budget(IN, "c_app"), "directions are separate");
        assert!(!t.over_budget(OUT, "c_other"));
        assert!(t.tracks(OUT) && !t.tracks(IN));
        assert_eq!(ev.newly_over, [0, 1, 0]);
        assert!(ev.changed);
        assert_eq!(ev.retry_permille[1], 2000);

        // Still over: counted once, not again.
        let ev = t.evaluate(101, &b);
        assert_eq!(ev.newly_over, [0, 0, 0]);
        assert!(!ev.changed);

        // Calm: only successes without retries; second 100 leaves the window at 102.
        flush(&mut t, 102, "c_app", 30, Counts::request(1, false, false));
        t.evaluate(102, &b);
        assert!(
            t.over_budget(OUT, "c_app"),
            "second 101 is still in the window"
        );
        t.evaluate(103, &b);
        assert!(!t.over_budget(OUT, "c_app"));
        // With nothing left in the window the entry is dropped.
        let ev = t.evaluate(110, &b);
        assert!(ev.changed && t.is_empty());
        assert_eq!(ev.retry_permille, [0, 0, 0]);
    }

    #[test]
    fn large_payload_concentration_compares_large_and_small_failure_ratios() {
        let c = Counts {
            requests: 10,
            failures: 5,
            large_requests: 5,
            large_failures: 5,
            ..Counts::default()
        };
        assert_eq!(c.large_payload_permille(5), 1000);
        // Failures spread evenly over sizes: no concentration.
        let even = Counts {
            requests: 10,
            failures: 4,
            large_requests: 5,
            large_failures: 2,
            ..Counts::default()
        };
        assert_eq!(even.large_payload_permille(5), 0);
        // Small ones fail more: floored at 0.
        let small = Counts {
            large_failures: 0,
            ..even
        };
        assert_eq!(small.large_payload_permille(5), 0);
        assert_eq!(c.large_payload_permille(11), 0, "below min_requests");
        let no_large = Counts {
            large_requests: 0,
            large_failures: 0,
            ..c
        };
        assert_eq!(no_large.large_payload_permille(1), 0);

        let b = budget(0.1, 10, 5);
        let mut t = Table::new(Layout::new(10));
        flush(&mut t, 7, "a", 3, Counts::request(1, true, true));
        flush(&mut t, 7, "b", 1, Counts::request(1, false, true));
        flush(&mut t, 8, "b", 4, Counts::request(1, false, false));
        let ev = t.evaluate(8, &b);
        // Large: 3 of 4 failed (750); small: 0 of 4.
        assert_eq!(ev.large_payload_permille, [0, 750, 0]);
    }

    #[test]
    fn memory_is_bounded_and_the_least_recent_cluster_makes_room() {
        let b = budget(0.1, 10, 1);
        let mut t = Table::new(Layout::new(10));
        flush(&mut t, 1, "old", 1, Counts::request(1, false, false));
        for i in 0..MAX_CLUSTERS {
            flush(
                &mut t,
                2,
                &format!("c{i}"),
                1,
                Counts::request(1, false, false),
            );
        }
        assert_eq!(t.len(), MAX_CLUSTERS);
        t.evaluate(2, &b);
        assert!(t.entries.iter().all(|e| e.cluster != "old"));
        // Pending deltas are bounded the same way.
        let mut p = Pending::default();
        for i in 0..MAX_CLUSTERS + 10 {
            p.record(OUT, &format!("c{i}"), Counts::request(1, false, false));
        }
        assert_eq!(p.entries.len(), MAX_CLUSTERS);
        // Long names are cut on a character boundary and still match.
        let long = "é".repeat(150);
        p.clear();
        p.record(OUT, &long, Counts::request(5, true, false));
        let mut t = Table::new(Layout::new(10));
        t.merge(1, &p);
        t.evaluate(1, &b);
        assert!(t.over_budget(OUT, &long));
        assert_eq!(t.entries[0].cluster.len(), MAX_NAME);
    }

    #[test]
    fn counts_saturate() {
        let mut c = Counts::request(u64::MAX, true, true);
        assert_eq!(c.retries, u32::MAX);
        c.add(&Counts::request(3, true, true));
        assert_eq!(c.retries, u32::MAX);
        assert_eq!(Counts::request(0, false, false).retries, 0);
    }
}
