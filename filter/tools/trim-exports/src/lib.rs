//! Drops the proxy-wasm callbacks meshtriage never implements from a module's exports.
//!
//! The Rust SDK exports every callback of the ABI, and Envoy calls every exported one: each call
//! is a crossing into the VM (a few thousand instructions) even when the SDK's default does
//! nothing. Envoy skips a callback the module does not export (proxy-wasm-cpp-host checks each
//! export before calling it), so removing these saves, per HTTP request, the request-headers and
//! done crossings (docs/performance.md). Every other section is copied byte for byte.

use wasm_encoder::{ExportKind, ExportSection, Module, RawSection};
use wasmparser::{ExternalKind, Parser, Payload};

/// Never implemented by meshtriage: the SDK's defaults (Continue / true / ignore) are what Envoy
/// does when the export is absent. tests/wasm_exports.rs checks that filter/src implements none
/// of them and that the built module exports none of them.
pub const DROPPED: [&str; 10] = [
    "proxy_on_request_headers",
    "proxy_on_request_trailers",
    "proxy_on_done",
    "proxy_on_http_call_response",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_receive_trailing_metadata",
    "proxy_on_grpc_close",
    "proxy_on_queue_ready",
    "proxy_on_foreign_function",
];

fn export_kind(kind: ExternalKind) -> Result<ExportKind, String> {
    Ok(match kind {
        ExternalKind::Func => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
        #[allow(unreachable_patterns)]
        other => return Err(format!("unsupported export kind {other:?}")),
    })
}

/// The module with the [`DROPPED`] exports removed.
pub fn trim(module: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Module::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| e.to_string())?;
        match payload {
            Payload::Version { encoding, .. } => {
                if encoding != wasmparser::Encoding::Module {
                    return Err("a component, not a core module".into());
                }
            }
            Payload::ExportSection(reader) => {
                let mut exports = ExportSection::new();
                for export in reader {
                    let export = export.map_err(|e| e.to_string())?;
                    if !DROPPED.contains(&export.name) {
                        exports.export(export.name, export_kind(export.kind)?, export.index);
                    }
                }
                out.section(&exports);
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    let data = module.get(range).ok_or("section out of bounds")?;
                    out.section(&RawSection { id, data });
                }
            }
        }
    }
    Ok(out.finish())
}

/// The names a module exports.
pub fn exports(module: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        if let Payload::ExportSection(reader) = payload.map_err(|e| e.to_string())? {
            for export in reader {
                names.push(export.map_err(|e| e.to_string())?.name.to_string());
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use wasm_encoder::{
        CodeSection, CustomSection, Function, FunctionSection, Instruction, TypeSection,
    };

    fn module(names: &[&str]) -> Vec<u8> {
        let mut m = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        m.section(&types);
        let mut funcs = FunctionSection::new();
        funcs.function(0);
        m.section(&funcs);
        let mut exports = ExportSection::new();
        for n in names {
            exports.export(n, ExportKind::Func, 0);
        }
        m.section(&exports);
        let mut code = CodeSection::new();
        let mut f = Function::new([]);
        f.instruction(&Instruction::End);
        code.function(&f);
        m.section(&code);
        m.section(&CustomSection {
            name: "producers".into(),
            data: b"x".as_slice().into(),
        });
        m.finish()
    }

    #[test]
    fn drops_only_the_listed_exports_and_copies_the_rest() {
        let input = module(&[
            "proxy_on_log",
            "proxy_on_done",
            "proxy_on_request_headers",
            "memory_x",
        ]);
        let out = trim(&input).unwrap();
        assert_eq!(exports(&out).unwrap(), ["proxy_on_log", "memory_x"]);
        // Trimming is idempotent and a module without dropped exports is copied unchanged.
        assert_eq!(trim(&out).unwrap(), out);
        let clean = module(&["proxy_on_log"]);
        assert_eq!(trim(&clean).unwrap(), clean);
    }

    #[test]
    fn rejects_what_is_not_a_module() {
        assert!(trim(b"not wasm").is_err());
        assert!(trim(&module(&["a"])[..20]).is_err());
    }
}
