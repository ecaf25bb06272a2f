"""What the istio/ tests share: paths, YAML loading, the list of metrics (the README's generated
table), and the rule for a missing tool (skip, naming the package that provides it)."""

import os
import re
import shutil
import subprocess
import sys
import time
import unittest
from pathlib import Path

import yaml

ISTIO = Path(__file__).resolve().parent.parent
REPO = ISTIO.parent
CRDS = ISTIO / "crds"


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def need(tool, package):
    """The path of `tool`, or skip the test saying which package provides it. The message goes
    to stderr too, so a skip is seen in a quiet run (make test)."""
    path = shutil.which(tool)
    if path is None:
        why = f"{tool} not found: install the Debian package {package} (make istio-tools does)"
        print(f"\nSKIP: {why}", file=sys.stderr)
        raise unittest.SkipTest(why)
    return path


def skip(why):
    print(f"\nSKIP: {why}", file=sys.stderr)
    raise unittest.SkipTest(why)


def metrics():
    """{metric: {"labels": [...], "type": counter|gauge|histogram}} from the README's table
    between the `BEGIN generated: metrics` markers: the one list of what the plugin exports."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- BEGIN generated: metrics[^>]*-->(.*?)<!-- END generated", text, re.S)
    if not m:
        raise AssertionError("README.md has no generated metrics table")
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in m.group(1).splitlines() if line.startswith("|")]
    header = [h.lower() for h in rows[0]]
    col = {name: header.index(name) for name in ("metric", "labels")}
    kind_col = header.index("kind") if "kind" in header else col["labels"]  # older tables: "(gauge)" in labels
    out = {}
    for cells in rows[1:]:
        if not cells[col["metric"]].startswith("`meshtriage_"):
            continue
        kind = "histogram" if "histogram" in cells[kind_col] else "gauge" if "gauge" in cells[kind_col] else "counter"
        out[cells[col["metric"]].strip("`")] = {"labels": re.findall(r"`(\w+)`", cells[col["labels"]]), "type": kind}
    return out


def listening_ports(pid):
    """TCP ports process `pid` listens on (from /proc), so servers can bind port 0 and be found
    without a bind-then-release race."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                ports.append(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def wait_port(proc, what, timeout=30):
    """The first port `proc` listens on, polled for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        ports = listening_ports(proc.pid)
        if ports:
            return ports[0]
        time.sleep(0.1)
    raise AssertionError(f"{what} did not listen within {timeout} s")


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
