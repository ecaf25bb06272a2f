#!/usr/bin/env python3
"""Drops the proxy-wasm callbacks meshtriage does not use from a module's exports.

The Rust SDK exports every callback of the ABI, and Envoy calls every exported one: each call is
a crossing into the VM (a few thousand instructions) even when the SDK's default does nothing.
Envoy skips a callback the module does not export (proxy-wasm-cpp-host checks each export before
calling it), so removing these saves, per HTTP request, the request-headers and done crossings.
Usage: trim_exports.py IN.wasm OUT.wasm (OUT is written anew: IN may be hard-linked to cargo's
own copy, which must stay untouched).
"""
import sys

# Never implemented by meshtriage: the SDK's defaults (Continue / true / ignore) are what Envoy
# does when the export is absent. Keep in sync with filter/src (checked by tests/wasm_exports.rs).
UNUSED = {
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
}


def leb(data, pos):
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def enc(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def trim(module):
    if module[:8] != b"\0asm\x01\0\0\0":
        raise SystemExit("not a wasm module")
    out, pos = bytearray(module[:8]), 8
    while pos < len(module):
        section_id = module[pos]
        size, start = leb(module, pos + 1)
        end = start + size
        if section_id != 7:
            out += module[pos:end]
        else:
            count, p = leb(module, start)
            kept = []
            for _ in range(count):
                entry = p
                name_len, q = leb(module, p)
                name = module[q : q + name_len].decode()
                _, p = leb(module, q + name_len + 1)  # skip the kind byte, read the index
                if name not in UNUSED:
                    kept.append(module[entry:p])
            payload = enc(len(kept)) + b"".join(kept)
            out += bytes([7]) + enc(len(payload)) + payload
        pos = end
    return bytes(out)


if __name__ == "__main__":
    source, target = sys.argv[1], sys.argv[2]
    with open(source, "rb") as f:
        module = f.read()
    with open(target, "wb") as f:
        f.write(trim(module))
