//! Counters, defined once per VM (the host returns a new id per definition) and cached here.
//! Increments never fail the request: a host error is swallowed.

use crate::host::{self, Metric};
use meshtriage_core::metrics as names;
use meshtriage_core::Direction;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    // One VM is one thread: this is the VM-wide registry.
    static IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
    static REQUESTS: RefCell<[Option<u32>; 3]> = const { RefCell::new([None; 3]) };
    static REQUEST_BYTES: RefCell<[Option<u32>; 3]> = const { RefCell::new([None; 3]) };
}

fn id_for(name: String) -> Option<u32> {
    id_of(Metric::Counter, name)
}

/// Names are unique across kinds (counters end in `_total`), so one registry serves all.
fn id_of(kind: Metric, name: String) -> Option<u32> {
    IDS.with(|ids| {
        let mut ids = ids.try_borrow_mut().ok()?;
        if let Some(id) = ids.get(&name) {
            return Some(*id);
        }
        let id = host::define_metric(kind, &name)?;
        ids.insert(name, id);
        Some(id)
    })
}

/// Sets the gauge `name`.
pub fn gauge(name: String, value: u64) {
    if let Some(id) = id_of(Metric::Gauge, name) {
        host::record(id, value);
    }
}

/// Records one sample of the histogram `name`.
pub fn histogram(name: String, value: u64) {
    if let Some(id) = id_of(Metric::Histogram, name) {
        host::record(id, value);
    }
}

/// `meshtriage_request_bytes{dir}`: on every request, so its ids sit in a fixed array.
pub fn record_request_bytes(dir: Direction, bytes: u64) {
    let id = REQUEST_BYTES.with(|cache| {
        let mut cache = cache.try_borrow_mut().ok()?;
        let slot = cache.get_mut(dir_index(dir))?;
        if slot.is_none() {
            *slot = host::define_metric(Metric::Histogram, &names::request_bytes(dir));
        }
        *slot
    });
    if let Some(id) = id {
        host::record(id, bytes);
    }
}

/// Adds one to the counter `name` (a full tagged name from `meshtriage_core::metrics`).
pub fn count(name: String) {
    if let Some(id) = id_for(name) {
        host::increment(id, 1);
    }
}

fn dir_index(dir: Direction) -> usize {
    match dir {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
        Direction::Unknown => 2,
    }
}

/// `meshtriage_requests_total{dir}`: on every request, so its ids sit in a fixed array.
pub fn count_request(dir: Direction) {
    let id = REQUESTS.with(|cache| {
        let mut cache = cache.try_borrow_mut().ok()?;
        let slot = cache.get_mut(dir_index(dir))?;
        if slot.is_none() {
            *slot = host::define_counter(&names::requests(dir));
        }
        *slot
    });
    if let Some(id) = id {
        host::increment(id, 1);
    }
}

/// Defines the always-present series up front so dashboards see zeros, not gaps.
pub fn define_static() {
    for name in [
        names::CONFIG_ERRORS,
        names::INTERNAL_ERRORS,
        names::MALFORMED_UPSTREAM,
    ] {
        let _ = id_for(name.to_string());
    }
    for dir in [Direction::Inbound, Direction::Outbound] {
        let _ = id_for(names::retry_budget_exceeded(dir));
    }
}

pub fn internal_error(what: &str) {
    log::debug!("internal error: {what}");
    count(names::INTERNAL_ERRORS.to_string());
}
