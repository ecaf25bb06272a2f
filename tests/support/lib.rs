//! Shared helpers for the suite tests live in meshtriage-envoy-test; this crate only hosts tests/.
