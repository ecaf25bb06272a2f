#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for the tests: decodes what Envoy's OpenTelemetry tracer exports
(`POST /v1/traces`, protobuf `ExportTraceServiceRequest`) with the OpenTelemetry protobufs
(PyPI `opentelemetry-proto`) and appends one JSON line per span to OUT_FILE.

    otlp_receiver.py OUT_FILE     # prints the port it listens on (127.0.0.1), then serves

A request that is not a valid ExportTraceServiceRequest is answered 400 and logged as an
`{"error": ...}` line, so the test sees it. Stops when its stdin closes (the test went away).
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

OUT = open(sys.argv[1], "a", encoding="utf-8", buffering=1)
LOCK = threading.Lock()
KINDS = {Span.SPAN_KIND_SERVER: "SERVER", Span.SPAN_KIND_CLIENT: "CLIENT"}


def value_text(v):
    kind = v.WhichOneof("value")
    return str(getattr(v, kind)) if kind else ""


def write(record):
    with LOCK:
        OUT.write(json.dumps(record) + "\n")


class Handler(BaseHTTPRequestHandler):
    def body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                chunk = self.rfile.read(size + 2)[:size]
                if size == 0:
                    return out
                out += chunk
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def do_POST(self):
        body = self.body()
        if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
            write({"error": f"{self.path} {self.headers.get('content-type')}: not OTLP/HTTP protobuf traces"})
            self.send_response(404)
            self.end_headers()
            return
        try:
            req = ExportTraceServiceRequest.FromString(body)
            if not req.resource_spans:
                raise DecodeError(f"no resource_spans in {len(body)} bytes")
        except DecodeError as e:
            write({"error": f"not an ExportTraceServiceRequest: {e}"})
            self.send_response(400)
            self.end_headers()
            return
        for rs in req.resource_spans:
            service = {a.key: value_text(a.value) for a in rs.resource.attributes}.get("service.name", "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    write({
                        "trace_id": s.trace_id.hex(),
                        "id": s.span_id.hex(),
                        "parent_id": s.parent_span_id.hex() or None,
                        "name": s.name,
                        "kind": KINDS.get(s.kind, ""),
                        "service": service,
                        "tags": {a.key: value_text(a.value) for a in s.attributes},
                    })
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the test closes it (or exits)


if __name__ == "__main__":
    main()
