"""The Grafana dashboard and the Prometheus alert rules, checked by the tools that consume them.

* `promtool check rules` and `promtool test rules` (istio/monitoring/tests/alerts.test.yaml:
  each alert fires and stays silent on series shaped as Envoy exports them);
* every query parsed by a real PromQL parser (the `promql-parser` package); every metric of the
  README's generated table is on a panel or in an alert, with labels it has;
* a real Prometheus scraping two real Envoys running the plugin through a short scenario
  (envoy-test's `monitoring-bed`): every dashboard and alert query runs through its HTTP API,
  and every selector in them returns series; the rules load and evaluate without error.
"""

import json
import os
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request
from pathlib import Path

import promql_parser
import yaml

from support import ISTIO, REPO, metrics, need, skip, stop, wait_port

DASHBOARD = ISTIO / "monitoring" / "grafana-dashboard.json"
ALERTS = ISTIO / "monitoring" / "alerts.yaml"
ALERT_TESTS = ISTIO / "monitoring" / "tests" / "alerts.test.yaml"
# Labels a query may use besides a metric's own: the pod scrape's target labels, and `le` on a
# histogram's buckets.
TARGET_LABELS = {"namespace", "pod"}
# Series the queries read that are not the plugin's: Envoy's own, and istio-agent's (which a
# plain Envoy does not export, so the real-Envoy test cannot expect series for them).
OTHER_METRICS = {"envoy_server_live": [], "istio_agent_wasm_remote_fetch_count": ["result"]}
NOT_FROM_ENVOY = {"istio_agent_wasm_remote_fetch_count"}
# What Grafana substitutes before a query reaches Prometheus (All = the regex .*).
GRAFANA_VARS = {"$__rate_interval": "1m", "$__range": "5m", "$namespace": ".*", "$dir": ".*"}
MATCH_OPS = [
    (promql_parser.MatchOp.Equal, "="), (promql_parser.MatchOp.NotEqual, "!="),
    (promql_parser.MatchOp.Re, "=~"), (promql_parser.MatchOp.NotRe, "!~"),
]


def dashboard():
    return json.loads(DASHBOARD.read_text())


def panels(panel_list):
    for p in panel_list:
        yield p
        yield from panels(p.get("panels", []))


def grafana(expr):
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def queries():
    """(where, PromQL) for every dashboard target and alert rule, Grafana variables substituted."""
    out = [(f"panel {p['title']!r}", grafana(t["expr"])) for p in panels(dashboard()["panels"]) for t in p.get("targets", [])]
    for v in dashboard()["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"]
            out.append((f"variable {v['name']}", q[len("label_values("):q.index(",")]))
    rules = yaml.safe_load(ALERTS.read_text())
    out += [(f"alert {r['alert']}", r["expr"]) for g in rules["groups"] for r in g["rules"]]
    return out


def walk(node):
    """Every node of a parsed expression."""
    yield node
    for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, (str, int, float)):
            yield from walk(child)
    for child in getattr(node, "args", None) or []:
        yield from walk(child)


def selectors(expr):
    """(metric, [(label, op, value)]) of every vector selector in `expr`, as parsed."""
    out = []
    for node in walk(promql_parser.parse(expr)):
        if isinstance(node, promql_parser.VectorSelector):
            matchers = [
                (m.name, next(text for op, text in MATCH_OPS if op == m.op), m.value)
                for m in node.matchers.matchers
                if m.name != "__name__"
            ]
            out.append((node.name, matchers))
    return out


def grouping_labels(expr):
    out = []
    for node in walk(promql_parser.parse(expr)):
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            out += list(node.modifier.labels)
        if isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None and node.modifier.matching is not None:
            out += list(node.modifier.matching.labels)
    return out


def metric_of(name, table):
    """The table's metric a series name belongs to (histograms: _bucket, _sum, _count)."""
    if name in table:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and table.get(base, {}).get("type") == "histogram":
            return base
    return None


class AlertRulesPassPromtool(unittest.TestCase):
    def test_promtool_checks_the_rules(self):
        promtool = need("promtool", "prometheus")
        r = subprocess.run([promtool, "check", "rules", ALERTS], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_each_alert_fires_and_stays_silent_in_promtool_unit_tests(self):
        promtool = need("promtool", "prometheus")
        r = subprocess.run([promtool, "test", "rules", ALERT_TESTS], capture_output=True, text=True, cwd=ALERT_TESTS.parent)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        fired, silent = set(), set()
        for t in tests:
            for a in t.get("alert_rule_test", []):
                (fired if a["exp_alerts"] else silent).add(a["alertname"])
        alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
        self.assertEqual(fired, alerts, "every alert has a unit test where it fires")
        # Silence is shown either by an empty expectation or by a series of the same test that
        # the expected alerts leave out (promtool fails on any unexpected alert).
        self.assertIn("MeshtriageNotReporting", silent, "idle and TCP-only namespaces must not alert")


class EveryMetricIsMonitored(unittest.TestCase):
    def test_every_query_parses(self):
        for where, expr in queries():
            with self.subTest(where):
                self.assertTrue(selectors(expr), f"{expr!r} reads no series")

    def test_every_metric_has_a_panel_or_an_alert(self):
        table = metrics()
        self.assertEqual(len(table), 15, "the README's metric table")
        used = {metric_of(name, table) for _, expr in queries() for name, _ in selectors(expr)}
        self.assertEqual(sorted(set(table) - used), [], "metrics with neither a panel nor an alert")

    def test_queries_use_only_labels_the_metric_has(self):
        table = metrics()
        for where, expr in queries():
            with self.subTest(where):
                known = set(TARGET_LABELS)
                for name, matchers in selectors(expr):
                    base = metric_of(name, table)
                    if base is None:
                        self.assertIn(name, OTHER_METRICS, f"{name} is not in the README's metric table")
                        labels = set(OTHER_METRICS[name])
                    else:
                        labels = set(table[base]["labels"]) | ({"le"} if name.endswith("_bucket") else set())
                    labels |= TARGET_LABELS
                    known |= labels
                    for label, _, _ in matchers:
                        self.assertIn(label, labels, f"{name} has no label {label}")
                for label in grouping_labels(expr):
                    self.assertIn(label, known, f"grouping by {label}, which no metric of the query has")

    def test_panels_break_failures_down(self):
        grouped = {label for _, e in queries() for label in grouping_labels(e)}
        for label in ("layer", "class", "origin", "side", "pod", "header", "le"):
            self.assertIn(label, grouped, f"no panel breaks failures down by {label}")


class TheDashboardImports(unittest.TestCase):
    def test_import_asks_for_the_prometheus_data_source(self):
        d = dashboard()
        [ds] = d["__inputs"]
        self.assertEqual((ds["type"], ds["pluginId"]), ("datasource", "prometheus"))
        ref = {"type": "prometheus", "uid": "${" + ds["name"] + "}"}
        for p in panels(d["panels"]):
            if p["type"] == "row":
                continue
            with self.subTest(p["title"]):
                self.assertEqual(p["datasource"], ref)
                for t in p["targets"]:
                    self.assertEqual(t["datasource"], ref)
        for v in d["templating"]["list"]:
            if "datasource" in v:
                self.assertEqual(v["datasource"], ref, v["name"])
        self.assertNotIn("${datasource}", DASHBOARD.read_text(), "the data source is an import input")

    def test_panel_ids_are_unique_and_custom_values_exist(self):
        d = dashboard()
        ids = [p["id"] for p in panels(d["panels"])]
        self.assertEqual(len(ids), len(set(ids)))
        for v in d["templating"]["list"]:
            if v["type"] == "custom":
                self.assertIn(v["name"], {label for m in metrics().values() for label in m["labels"]})


class PrometheusScrapesARealEnvoy(unittest.TestCase):
    """The monitoring against the real thing: Prometheus 2.x (Debian) scraping the stats of two
    Envoys running the plugin (HTTP and TCP beds), with the labels a pod scrape adds."""

    @classmethod
    def setUpClass(cls):
        prometheus = need("prometheus", "prometheus")
        wasm = REPO / "target" / "wasm32-wasip1" / "release" / "meshtriage.wasm"
        envoy = Path(os.environ.get("ENVOY_BIN", REPO / "target" / "venv" / "bin" / "envoy"))
        if not wasm.is_file() or not envoy.is_file():
            skip(f"{wasm} or {envoy} missing: run `make wasm venv` (make istio does)")
        cls.tmp = tempfile.TemporaryDirectory()
        tmp = Path(cls.tmp.name)
        subprocess.run(["cargo", "build", "-q", "-p", "meshtriage-envoy-test", "--bin", "monitoring-bed"], cwd=REPO, check=True)
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
        cls.bed = subprocess.Popen([target / "debug" / "monitoring-bed"], cwd=REPO, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        try:
            ports = dict(cls.bed.stdout.readline().split() for _ in range(2))
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {"job_name": f"envoy-{kind}", "metrics_path": "/stats/prometheus",
                     "static_configs": [{"targets": [f"127.0.0.1:{ports[kind]}"], "labels": {"namespace": ns, "pod": pod}}]}
                    for kind, ns, pod in (("http", "shop", "web-1"), ("tcp", "tcponly", "db-1"))
                ],
            }
            (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
            cls.prom = subprocess.Popen(
                [prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                 "--web.listen-address=127.0.0.1:0", "--log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cls.api = f"http://127.0.0.1:{wait_port(cls.prom, 'prometheus')}/api/v1/"
            cls.wait_for("count(up == 1) == 2")  # both Envoys scraped before the traffic
            # Two rounds of traffic, each followed by a scrape of both Envoys: the first makes
            # every series appear, the second makes every counter rise within the queries'
            # ranges. Waiting for the scrape (not a fixed time) holds on a loaded machine.
            for _ in range(2):
                cls.bed.stdin.write("go\n")
                cls.bed.stdin.flush()
                assert cls.bed.stdout.readline().strip() == "done", "the scenario did not finish"
                done = time.time()
                cls.wait_for(f"count(timestamp(meshtriage_config_errors_total) > {done:.3f}) == 2")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for p in ("prom", "bed"):
            if hasattr(cls, p):
                if p == "bed" and cls.bed.stdin:
                    cls.bed.stdin.close()
                stop(getattr(cls, p))
        cls.tmp.cleanup()

    @classmethod
    def get(cls, path, **params):
        url = cls.api + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # bad_data: the query did not parse or evaluate
            body = e.read().decode(errors="replace")
            try:
                return json.loads(body)
            except ValueError:  # 503 while Prometheus starts
                return {"status": "error", "error": f"{e.code} {body.strip()}"}

    @classmethod
    def wait_for(cls, query, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = cls.get("query", query=query)
            if r["status"] == "success" and r["data"]["result"]:
                return
            time.sleep(0.2)
        raise AssertionError(f"{query} stayed empty for {timeout} s")

    def test_every_query_runs_and_every_selector_returns_series(self):
        produced = set()
        for where, expr in queries():
            with self.subTest(where):
                r = self.get("query", query=expr)
                self.assertEqual(r["status"], "success", f"{expr}: {r.get('error')}")
                for name, matchers in selectors(expr):
                    if name in NOT_FROM_ENVOY:
                        continue
                    sel = name + "{" + ",".join(f'{label}{op}{json.dumps(v)}' for label, op, v in matchers) + "}"
                    result = self.get("query", query=sel)["data"]["result"]
                    self.assertTrue(result, f"{sel} ({where}) returns no series from the real Envoys")
                    produced.add(name)
                if where.startswith("panel"):
                    self.assertTrue(r["data"]["result"], f"{expr} returns no series")
        table = metrics()
        self.assertEqual(sorted(set(table) - {metric_of(n, table) for n in produced}), [])

    def test_every_metric_of_the_table_is_exported_with_its_labels(self):
        for name, m in metrics().items():
            with self.subTest(name):
                series = name + ("_count" if m["type"] == "histogram" else "")
                result = self.get("query", query=series)["data"]["result"]
                self.assertTrue(result, f"{series}: no series")
                for s in result:
                    self.assertEqual(set(s["metric"]) - {"__name__", "instance", "job"}, set(m["labels"]) | TARGET_LABELS)

    def test_the_rules_evaluate_and_only_the_right_alerts_are_active(self):
        rules = [r for g in self.get("rules")["data"]["groups"] for r in g["rules"]]
        self.assertEqual(len(rules), sum(len(g["rules"]) for g in yaml.safe_load(ALERTS.read_text())["groups"]))
        for r in rules:
            self.assertEqual(r["health"], "ok", f"{r['name']}: {r.get('lastError')}")
        # The scenario closes inbound connections and sends hop-by-hop headers, and both
        # Envoys (the TCP one serving no HTTP request) report: not "not reporting". Rules run
        # every second: wait (bounded) for the evaluation that follows the last scrape.
        self.wait_for('ALERTS{alertname="MeshtriageAppClosedConnection"}')
        self.wait_for('ALERTS{alertname="MeshtriageHopByHopHeaders"}')
        active = {a["labels"]["alertname"] for a in self.get("alerts")["data"]["alerts"]}
        self.assertNotIn("MeshtriageNotReporting", active)
        namespaces = self.get("label/namespace/values", **{"match[]": "meshtriage_config_errors_total"})["data"]
        self.assertEqual(namespaces, ["shop", "tcponly"], "the dashboard's namespace variable lists both")


if __name__ == "__main__":
    unittest.main()
