//! Shared helpers for the suite's tests (most live in meshtriage-envoy-test). The tests need no
//! lint block of their own: this package's `[lints]` (root Cargo.toml) already lets test code
//! unwrap and panic.

use std::io::Write;

/// Says, where `cargo test` shows it even for a passing test, that a test skipped and why.
/// (`println!`/`eprintln!` output is captured and hidden unless the test fails; a write to the
/// process's stderr handle is not.) The test is named after the current thread, which the test
/// harness names after the test.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
