#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code
//! Checks a plugin configuration (JSON on stdin) with the plugin's own parser.
//! `cargo run -q -p meshtriage-core --example check_config < config.json`: prints `ok` and exits
//! 0, or prints the error the plugin would log and exits 1.
use std::io::Read;

fn main() {
    let mut input = Vec::new();
    if std::io::stdin().read_to_end(&mut input).is_err() {
        eprintln!("cannot read stdin");
        std::process::exit(2);
    }
    match meshtriage_core::config::parse(&input) {
        Ok(_) => println!("ok"),
        Err(e) => {
            println!("{e}");
            std::process::exit(1);
        }
    }
}
