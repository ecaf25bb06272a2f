//! Counters, defined once per VM (the host returns a new id per definition) and cached here.
//! Increments never fail the request: a host error is swallowed.

use crate::host;
use meshtriage_core::hop_by_hop::{HopHeader, HOP_HEADERS};
use meshtriage_core::metrics::{self as names, Kind};
use meshtriage_core::{Class, Direction, Layer, Origin, Side};
use std::cell::RefCell;

/// The labels of one `meshtriage_failures_total` series, as their enum discriminants.
type FailureLabels = [u8; 5];

/// Metric ids by key, sorted by key: a few dozen entries, looked up by binary search (no
/// hasher or hash table code in the module for this).
struct Ids<K>(Vec<(K, u32)>);

impl<K: Ord> Ids<K> {
    const fn new() -> Self {
        Ids(Vec::new())
    }

    /// The id cached for `key`, else the one `define` returns (then cached).
    fn get_or_define(&mut self, key: K, define: impl FnOnce(&K) -> Option<u32>) -> Option<u32> {
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => self.0.get(i).map(|(_, id)| *id),
            Err(i) => {
                let id = define(&key)?;
                self.0.insert(i, (key, id));
                Some(id)
            }
        }
    }
}

thread_local! {
    // One VM is one thread: this is the VM-wide registry.
    static IDS: RefCell<Ids<String>> = const { RefCell::new(Ids::new()) };
    // Failure counters by label tuple: no name is built once the series exists.
    static FAILURE_IDS: RefCell<Ids<FailureLabels>> = const { RefCell::new(Ids::new()) };
    // Hop-by-hop counters by (direction, header): apps that send `Connection: keep-alive` hit
    // this on every response, so no name is built once the series exists.
    static HOP_BY_HOP_IDS: RefCell<[[Option<u32>; HOP_HEADERS.len()]; 3]> = const { RefCell::new([[None; HOP_HEADERS.len()]; 3]) };
    static REQUESTS: RefCell<[Option<u32>; 3]> = const { RefCell::new([None; 3]) };
    // Requests counted since the last flush, per direction: one host call per second instead
    // of one per request.
    static PENDING_REQUESTS: RefCell<[i64; 3]> = const { RefCell::new([0; 3]) };
    static REQUEST_BYTES: RefCell<[Option<u32>; 3]> = const { RefCell::new([None; 3]) };
}

fn id_for(name: String) -> Option<u32> {
    id_of(Kind::Counter, name)
}

/// Names are unique across kinds (counters end in `_total`), so one registry serves all.
fn id_of(kind: Kind, name: String) -> Option<u32> {
    IDS.with(|ids| {
        ids.try_borrow_mut()
            .ok()?
            .get_or_define(name, |name| host::define_metric(kind, name))
    })
}

/// Sets the gauge `name`.
pub fn gauge(name: String, value: u64) {
    if let Some(id) = id_of(Kind::Gauge, name) {
        host::record(id, value);
    }
}

/// Records one sample of the histogram `name`.
pub fn histogram(name: String, value: u64) {
    if let Some(id) = id_of(Kind::Histogram, name) {
        host::record(id, value);
    }
}

/// `meshtriage_request_bytes{dir}`: every request with a body (bodyless requests are most of
/// the traffic and would cost a host call each for a sample at 0; `requests_total` counts them).
pub fn record_request_bytes(dir: Direction, bytes: u64) {
    if bytes == 0 {
        return;
    }
    let id = REQUEST_BYTES.with(|cache| {
        let mut cache = cache.try_borrow_mut().ok()?;
        let slot = cache.get_mut(dir.index())?;
        if slot.is_none() {
            *slot = host::define_metric(Kind::Histogram, &names::request_bytes(dir));
        }
        *slot
    });
    if let Some(id) = id {
        host::record(id, bytes);
    }
}

/// Adds one to `meshtriage_hop_by_hop_headers_total{dir,header}`.
pub fn count_hop_by_hop(dir: Direction, header: HopHeader) {
    let id = HOP_BY_HOP_IDS.with(|cache| {
        let mut cache = cache.try_borrow_mut().ok()?;
        let slot = cache.get_mut(dir.index())?.get_mut(header as usize)?;
        if slot.is_none() {
            *slot = host::define_counter(&names::hop_by_hop(dir, header));
        }
        *slot
    });
    if let Some(id) = id {
        host::increment(id, 1);
    }
}

/// Adds one to `meshtriage_failures_total{dir,layer,class,origin,side}`.
pub fn count_failure(dir: Direction, layer: Layer, class: Class, origin: Origin, side: Side) {
    let key = [
        dir as u8,
        layer as u8,
        class as u8,
        origin as u8,
        side as u8,
    ];
    let id = FAILURE_IDS.with(|ids| {
        ids.try_borrow_mut().ok()?.get_or_define(key, |_| {
            host::define_counter(&names::failures(dir, layer, class, origin, side))
        })
    });
    if let Some(id) = id {
        host::increment(id, 1);
    }
}

/// Adds one to the counter `name` (a full tagged name from `meshtriage_core::metrics`).
pub fn count(name: String) {
    if let Some(id) = id_for(name) {
        host::increment(id, 1);
    }
}

/// `meshtriage_requests_total{dir}`: on every request, so it is only counted here and added to
/// the host's counter by [`flush_requests`] (once per second, from the root's tick).
pub fn count_request(dir: Direction) {
    PENDING_REQUESTS.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if let Some(n) = p.get_mut(dir.index()) {
                *n += 1;
            }
        }
    });
}

/// Adds the requests counted since the last flush to `meshtriage_requests_total{dir}`.
pub fn flush_requests() {
    let pending = PENDING_REQUESTS.with(|p| {
        p.try_borrow_mut()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    });
    for (dir, n) in Direction::ALL
        .into_iter()
        .map(|d| (d, pending.get(d.index()).copied().unwrap_or(0)))
    {
        if n == 0 {
            continue;
        }
        let id = REQUESTS.with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let slot = cache.get_mut(dir.index())?;
            if slot.is_none() {
                *slot = host::define_counter(&names::requests(dir));
            }
            *slot
        });
        if let Some(id) = id {
            host::increment(id, n);
        }
    }
}

/// Defines the always-present series up front (`predefined` in the core's metric table) so
/// dashboards see zeros, not gaps.
pub fn define_static() {
    for (kind, name) in names::predefined() {
        let _ = id_of(kind, name);
    }
}

pub fn internal_error(what: &str) {
    log::debug!("internal error: {what}");
    count(names::INTERNAL_ERRORS.to_string());
}
