//! `trim-exports IN.wasm OUT.wasm` (make wasm): OUT is written anew, since IN may be hard-linked
//! to cargo's own copy, which must stay untouched.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: trim-exports IN.wasm OUT.wasm");
        return ExitCode::from(2);
    };
    let result = std::fs::read(input)
        .map_err(|e| format!("{input}: {e}"))
        .and_then(|m| meshtriage_trim_exports::trim(&m).map_err(|e| format!("{input}: {e}")))
        .and_then(|t| std::fs::write(output, t).map_err(|e| format!("{output}: {e}")));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trim-exports: {e}");
            ExitCode::FAILURE
        }
    }
}
