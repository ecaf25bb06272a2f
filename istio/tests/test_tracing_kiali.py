"""Offline checks of the tracing tags the generator adds to Telemetry objects and of the Kiali
dashboard (docs/tracing.md, istio/README.md "Tracing" and "Kiali"):

* `tracingTags: true` adds the span tags to every entry's Telemetry, valid against the Telemetry
  CRD (Istio 1.30 schema, the `formatter` custom tag exists since 1.29), one tag per filter-state
  key meshtriage-core writes (filter/core/src/trace.rs);
* istio/monitoring/kiali-dashboard.yaml is what istio/tools/kiali_dashboard.py renders from the
  README's metric list, valid against Kiali's dashboard model and the Kiali CRD's
  `custom_dashboards`, and reads the series the Grafana dashboard reads.
"""

import copy
import json
import re
import subprocess
import sys
import unittest
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
ISTIO = HERE.parent
REPO = ISTIO.parent
sys.path.insert(0, str(ISTIO / "tools"))
sys.path.insert(0, str(HERE))

import kiali_dashboard  # noqa: E402

import generate  # noqa: E402
from crds import validation_errors  # noqa: E402

CORE_TAGS = REPO / "filter" / "core" / "src" / "trace.rs"


def core_tags():
    """(tag, state) pairs of meshtriage_core::trace::TAGS, read from its source."""
    src = CORE_TAGS.read_text(encoding="utf-8")
    table = src.split("pub const TAGS", 1)[1].split("];", 1)[0]
    pairs = re.findall(r'tag: "([^"]+)",\s*state: (?:"([^"]+)"|VERDICT_STATE)', table)
    verdict_state = re.search(r'pub const VERDICT_STATE: &str = "([^"]+)";', src).group(1)
    return [(tag, state or verdict_state) for tag, state in pairs]


def with_tracing(**extra):
    values = generate.load_values()
    values["tracingTags"] = True
    values.update(extra)
    return generate.render(values)


class TracingTagsInTelemetry(unittest.TestCase):
    def test_the_generator_tags_are_the_plugins_keys(self):
        self.assertEqual(len(core_tags()), 4)
        self.assertEqual(list(generate.TRACE_TAGS.items()), core_tags())

    def test_every_entry_gets_the_tags_in_a_valid_telemetry(self):
        for access_log in (True, False):
            rendered = with_tracing(accessLog=access_log)
            for ns, objs in rendered.items():
                tel = [o for o in objs if o["kind"] == "Telemetry"]
                with self.subTest(ns=ns, access_log=access_log):
                    # One per plugin entry: Istio merges one selector-less Telemetry per namespace.
                    self.assertGreaterEqual(len(tel), 1)
                    for t in tel:
                        self.assertEqual(validation_errors(t), [])
                        self.assertEqual(len(t["spec"]["tracing"]), 1)
                        tags = t["spec"]["tracing"][0]["customTags"]
                        self.assertEqual(
                            {k: v["formatter"]["value"] for k, v in tags.items()},
                            {tag: f"%FILTER_STATE(wasm.{state}:PLAIN)%" for tag, state in core_tags()},
                        )
                        self.assertEqual("accessLogging" in t["spec"], access_log)
                        self.assertNotIn("providers", t["spec"]["tracing"][0], "keeps the mesh's tracer")

    def test_off_by_default_and_the_shipped_files_are_unchanged(self):
        self.assertNotIn("tracingTags", generate.load_values())
        for objs in generate.render(generate.load_values()).values():
            for o in objs:
                self.assertNotIn("tracing", o.get("spec", {}))

    def test_the_crd_rejects_a_bad_formatter_tag(self):
        t = next(o for objs in with_tracing().values() for o in objs if o["kind"] == "Telemetry")
        bad = copy.deepcopy(t)
        bad["spec"]["tracing"][0]["customTags"]["meshtriage.class"] = {"formatter": {"value": ""}}
        self.assertNotEqual(validation_errors(bad), [])
        bad["spec"]["tracing"][0]["customTags"]["meshtriage.class"] = {"formatter": {"expr": "x"}}
        self.assertNotEqual(validation_errors(bad), [])

    # The Helm chart renders the same tags: test_istio.TheHelmChartRendersWhatTheGeneratorDoes
    # compares its objects with the generator's, tracingTags on (with and without accessLog).


def dashboard():
    return yaml.safe_load((ISTIO / "monitoring" / "kiali-dashboard.yaml").read_text(encoding="utf-8"))


def kiali_crd_validator():
    crd = yaml.safe_load((HERE / "kiali" / "kiali-crd-custom-dashboards.yaml").read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(crd["custom_dashboards"])


MODEL = jsonschema.Draft7Validator(json.loads((HERE / "kiali" / "monitoring-dashboard.schema.json").read_text(encoding="utf-8")))


def chart_metrics(d):
    return [(i["chart"]["name"], m["metricName"], i["chart"]) for i in d["items"] for m in i["chart"]["metrics"]]


class KialiDashboard(unittest.TestCase):
    def test_up_to_date(self):
        r = subprocess.run([sys.executable, ISTIO / "tools" / "kiali_dashboard.py", "--check"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_valid_for_kiali(self):
        boards = dashboard()
        self.assertEqual(list(kiali_crd_validator().iter_errors(boards)), [])
        self.assertEqual([b["name"] for b in boards], ["meshtriage"])
        for b in boards:
            errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in MODEL.iter_errors(b)]
            self.assertEqual(errors, [])

    def test_the_schemas_reject_mistakes(self):
        b = dashboard()[0]
        for path, value in ((("items", 0, "chart", "dataType"), "counter"), (("items", 0, "chart", "spans"), 13),
                            (("items", 0, "chart", "metricNmae"), "x"), (("discover",), "x")):
            bad = copy.deepcopy(b)
            node = bad
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
            with self.subTest(path=path):
                self.assertNotEqual(list(MODEL.iter_errors(bad)), [])
        self.assertNotEqual(list(kiali_crd_validator().iter_errors({"name": "x"})), [], "a list, not one object")

    def test_every_series_is_in_the_readme_metric_list_with_its_labels(self):
        metrics = kiali_dashboard.metric_list()
        self.assertIn("meshtriage_failures_total", metrics)
        for name, metric, chart in chart_metrics(dashboard()[0]):
            with self.subTest(name):
                labels, kind = metrics[metric]
                self.assertEqual(chart["dataType"], {"counter": "rate", "gauge": "raw", "histogram": "histogram"}[kind])
                for a in chart["aggregations"]:
                    self.assertIn(a["label"], labels)
        with self.assertRaises(ValueError):
            kiali_dashboard.render({"meshtriage_requests_total": (["dir"], "counter")})

    def test_what_the_issue_asks_for_is_charted(self):
        charts = chart_metrics(dashboard()[0])
        split = {(m, a["label"]) for _, m, c in charts for a in c["aggregations"]}
        for label in ("layer", "class", "origin"):
            self.assertIn(("meshtriage_failures_total", label), split)
        self.assertIn(("meshtriage_hop_by_hop_headers_total", "header"), split)
        self.assertIn(("meshtriage_tcp_failures_total", "class"), split)
        self.assertTrue({"meshtriage_retry_budget_exceeded_total", "meshtriage_retry_ratio_permille"} <= {m for _, m, _ in charts})

    def test_same_series_as_the_grafana_dashboard(self):
        """Every series the Grafana dashboard reads is on the Kiali dashboard, and nothing else
        (a histogram's _bucket/_sum/_count series are its metric)."""
        grafana = (ISTIO / "monitoring" / "grafana-dashboard.json").read_text(encoding="utf-8")
        in_grafana = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\b(meshtriage_\w+)\{", grafana)}
        in_kiali = {m for _, m, _ in chart_metrics(dashboard()[0])}
        self.assertGreater(len(in_grafana), 10)
        self.assertEqual(in_grafana, in_kiali)


if __name__ == "__main__":
    unittest.main()
