//! Glue for the sliding window (`meshtriage_core::window`): per-worker accumulation on the
//! request path (no host call), and once per second (root `on_tick`) a compare-and-swap merge
//! into proxy-wasm shared data, which every worker of the VM sees. The merged, evaluated table
//! stays here as this worker's snapshot: the response-headers phase asks it whether a cluster
//! is over its retry budget without touching shared data.

use crate::host::{self, SetShared};
use crate::metrics;
use crate::settings::Settings;
use meshtriage_core::metrics as names;
use meshtriage_core::window::{Counts, Layout, Pending, Sampler, Table};
use meshtriage_core::Direction;
use std::cell::RefCell;

/// Bounded compare-and-swap attempts per flush; on failure the delta waits for the next tick.
const CAS_ATTEMPTS: usize = 4;

struct Worker {
    /// The shared-data key (one window per plugin name).
    key: String,
    layout: Layout,
    pending: Pending,
    snapshot: Table,
    /// Gauge values this worker last recorded (inbound, outbound, unknown).
    retry_gauge: [u64; 3],
    payload_gauge: [u64; 3],
}

thread_local! {
    // One VM is one thread; a VM hosts a few plugins at most (one entry per plugin name).
    static WORKERS: RefCell<Vec<Worker>> = const { RefCell::new(Vec::new()) };
    // Requests this worker finished this second (all plugins of the VM), for the sample.
    static SAMPLER: RefCell<Sampler> = const { RefCell::new(Sampler::new()) };
}

/// The weight the window gives the request that just finished (0: not counted).
pub fn sample_weight() -> u32 {
    SAMPLER.with(|s| s.try_borrow_mut().map_or(1, |mut s| s.weigh()))
}

fn with_worker<R>(settings: &Settings, f: impl FnOnce(&mut Worker) -> R) -> Option<R> {
    let layout = Layout::new(settings.config.retry_budget.window_seconds);
    WORKERS.with(|workers| {
        let mut workers = workers.try_borrow_mut().ok()?;
        let i = match workers.iter().position(|w| w.key == settings.window_key) {
            Some(i) => i,
            None => {
                workers.push(Worker {
                    key: settings.window_key.clone(),
                    layout,
                    pending: Pending::default(),
                    snapshot: Table::new(layout),
                    retry_gauge: [0; 3],
                    payload_gauge: [0; 3],
                });
                workers.len() - 1
            }
        };
        let w = workers.get_mut(i)?;
        if w.layout != layout {
            // Reconfigured window: start afresh.
            w.layout = layout;
            w.pending.clear();
            w.snapshot = Table::new(layout);
        }
        Some(f(w))
    })
}

/// Counts one finished request to `cluster` (request path: no host call).
pub fn record(settings: &Settings, dir: Direction, cluster: &str, counts: Counts) {
    with_worker(settings, |w| w.pending.record(dir, cluster, counts));
}

/// Was any cluster of `dir` over budget at this worker's last flush?
pub fn any_over_budget(settings: &Settings, dir: Direction) -> bool {
    with_worker(settings, |w| w.snapshot.any_over(dir)).unwrap_or(false)
}

/// Was `cluster` over its retry budget at this worker's last flush (at most a second ago)?
pub fn over_budget(settings: &Settings, dir: Direction, cluster: &str) -> bool {
    with_worker(settings, |w| w.snapshot.over_budget(dir, cluster)).unwrap_or(false)
}

/// Once per second: merge this worker's delta into shared data, re-evaluate, count budget
/// episodes, set the gauges and keep the result as the snapshot.
pub fn flush(settings: &Settings) {
    let Some(now_s) = host::now_nanos().map(|n| n / 1_000_000_000) else {
        return;
    };
    SAMPLER.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.tick(now_s);
        }
    });
    let budget = settings.config.retry_budget;
    let result = with_worker(settings, |w| {
        for _ in 0..CAS_ATTEMPTS {
            let Some((value, cas)) = host::shared_data(&w.key) else {
                metrics::internal_error("shared data unavailable");
                return None;
            };
            let mut table = value.map_or_else(
                || Table::new(w.layout),
                |bytes| Table::decode(&bytes, w.layout),
            );
            table.merge(now_s, &w.pending);
            let ev = table.evaluate(now_s, &budget);
            if w.pending.is_empty() && !ev.changed {
                w.snapshot = table;
                return Some((ev, gauges(w, &ev)));
            }
            match host::set_shared_data(&w.key, &table.encode(), cas) {
                SetShared::Done => {
                    w.pending.clear();
                    w.snapshot = table;
                    return Some((ev, gauges(w, &ev)));
                }
                SetShared::CasMismatch => continue,
                SetShared::Failed => {
                    metrics::internal_error("could not write shared data");
                    return None;
                }
            }
        }
        metrics::internal_error("shared data stayed contended");
        None
    })
    .flatten();
    let Some((ev, to_record)) = result else {
        return;
    };
    for dir in Direction::ALL {
        let i = dir.index();
        if let Some(n) = ev.newly_over.get(i).filter(|n| **n > 0) {
            log::info!("retries over budget on {n} {} cluster(s)", dir.as_str());
            for _ in 0..*n {
                metrics::count(names::retry_budget_exceeded(dir));
            }
        }
    }
    for (dir, retry, payload) in to_record {
        metrics::gauge(names::retry_ratio(dir), retry);
        metrics::gauge(names::large_payload_failure_ratio(dir), payload);
    }
}

/// The gauges to record: for directions this window has seen, or that this worker last set
/// to a non-zero value (so they fall back to 0). Another plugin in the same VM, tracking other
/// directions, is thus never overwritten with zeros.
fn gauges(w: &mut Worker, ev: &meshtriage_core::window::Evaluation) -> Vec<(Direction, u64, u64)> {
    let mut out = Vec::new();
    for dir in Direction::ALL {
        let i = dir.index();
        let (Some(retry), Some(payload)) =
            (ev.retry_permille.get(i), ev.large_payload_permille.get(i))
        else {
            continue;
        };
        let (Some(last_retry), Some(last_payload)) =
            (w.retry_gauge.get_mut(i), w.payload_gauge.get_mut(i))
        else {
            continue;
        };
        let seen = w.snapshot.tracks(dir);
        if seen || *last_retry != 0 || *last_payload != 0 {
            *last_retry = *retry;
            *last_payload = *payload;
            out.push((dir, *retry, *payload));
        }
    }
    out
}
