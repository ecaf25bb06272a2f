"""Offline checks of everything in istio/ (run with istio/tests/run.sh).

* every WasmPlugin / Telemetry (generated, kustomize, examples) against the CRD's
  openAPIV3Schema made stricter (unknown fields rejected) plus the CRD's CEL rules in Python;
* every pluginConfig through the plugin's own parser (check_config), serialised the way istiod
  hands it to Envoy;
* istio/generated/ up to date with istio/namespaces.yaml; the kustomize tree renders the same
  objects; the Helm chart takes the same values;
* the OCI image layout (built from a fake module when the real one is missing);
* every dashboard and alert query names only metrics, labels and label values the plugin emits.
"""

import copy
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

import jsonschema
import yaml

ISTIO = Path(__file__).resolve().parent.parent
REPO = ISTIO.parent
CRDS = Path(os.environ.get("MESHTRIAGE_SHARED", REPO.parent / "shared")) / "istio" / "crds"
sys.path.insert(0, str(ISTIO / "tools"))

import build_image  # noqa: E402
import generate  # noqa: E402

if not CRDS.is_dir():
    sys.exit(f"Istio CRD schemas not found in {CRDS}: set MESHTRIAGE_SHARED to the shared/ directory")

VOCAB = json.loads((ISTIO / "tests" / "vocabulary.json").read_text())


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# ---------------------------------------------------------------------------------------------
# CRD schemas, stricter than the API server


def strict(schema):
    """Sets additionalProperties: false on every object schema with properties (the CRD leaves
    unknown fields to pruning, i.e. a typo is silently dropped)."""
    schema = copy.deepcopy(schema)

    def walk(s):
        if not isinstance(s, dict):
            return
        if "properties" in s and "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
        for p in (s.get("properties") or {}).values():
            walk(p)
        for key in ("items", "additionalProperties", "not"):
            walk(s.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in s.get(key) or []:
                walk(sub)

    walk(schema)
    return schema


METADATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def object_schema(crd_file):
    """{apiVersion: validator} for a CRD: the version's openAPIV3Schema (spec only, no status in
    manifests) wrapped with apiVersion/kind/metadata."""
    crd = load_docs(CRDS / crd_file)[0]
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    out = {}
    for v in crd["spec"]["versions"]:
        if not v.get("served"):
            continue
        spec = v["schema"]["openAPIV3Schema"]["properties"]["spec"]
        schema = {
            "type": "object",
            "additionalProperties": False,
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": {"const": f"{group}/{v['name']}"},
                "kind": {"const": kind},
                "metadata": METADATA,
                "spec": strict(spec),
            },
        }
        out[f"{group}/{v['name']}"] = jsonschema.Draft7Validator(schema)
    return kind, out


VALIDATORS = dict(object_schema(f) for f in ("wasmplugin-crd.yaml", "telemetry-crd.yaml"))


def cel_errors(spec):
    """The CRDs' x-kubernetes-validations that matter here, re-implemented."""
    errs = []
    if sum(k in spec for k in ("selector", "targetRef", "targetRefs")) > 1:
        errs.append("only one of targetRefs or selector can be set")
    url = spec.get("url")
    if url is not None:
        m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", url)
        if m and m.group(1) not in ("http", "https", "oci", "file"):
            errs.append("url must have schema one of [http, https, file, oci]")
    for e in (spec.get("vmConfig") or {}).get("env") or []:
        if e.get("valueFrom") == "HOST" and "value" in e:
            errs.append("value may only be set when valueFrom is INLINE")
    for ref in ([spec["targetRef"]] if "targetRef" in spec else []) + (spec.get("targetRefs") or []):
        if ref.get("namespace"):
            errs.append("cross namespace referencing is not currently supported")
    for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items():
        if not k or "*" in k or "*" in v:
            errs.append("matchLabels: empty key or wildcard")
    return errs


def validation_errors(doc):
    kind = doc.get("kind")
    validators = VALIDATORS.get(kind)
    if validators is None:
        return [f"unexpected kind {kind!r}"]
    v = validators.get(doc.get("apiVersion"))
    if v is None:
        return [f"{kind}: apiVersion {doc.get('apiVersion')!r} is not served by the CRD"]
    errs = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in v.iter_errors(doc)]
    return errs + cel_errors(doc.get("spec") or {})


# ---------------------------------------------------------------------------------------------
# The objects under test


def generated_objects():
    out = []
    for p in sorted((ISTIO / "generated").glob("*.yaml")):
        out += [(p.name, d) for d in load_docs(p)]
    return out


def kustomize_render(path):
    """The subset of kustomize this tree uses: resources (files, directories), namespace,
    patches with a kind/name target (the name a regular expression matching the whole name, as
    in kustomize; JSON merge patch, or `$patch: delete`)."""
    path = Path(path)
    k = load_docs(path / "kustomization.yaml")[0]
    objs = []
    for r in k.get("resources") or []:
        rp = (path / r).resolve()
        objs += kustomize_render(rp) if rp.is_dir() else load_docs(rp)
    for p in k.get("patches") or []:
        patch, target = yaml.safe_load(p["patch"]), p["target"]
        hits = [o for o in objs if o["kind"] == target["kind"] and re.fullmatch(target["name"], o["metadata"]["name"])]
        if not hits:
            raise AssertionError(f"{path}: patch target {target} matches nothing")
        for o in hits:
            if patch.get("$patch") == "delete":
                objs.remove(o)
            else:
                # As kustomize does, the patch takes each target's name: its own is only a placeholder.
                body = copy.deepcopy({k2: v for k2, v in patch.items() if k2 not in ("apiVersion", "kind")})
                (body.get("metadata") or {}).pop("name", None)
                merge_patch(o, body)
    if "namespace" in k:
        for o in objs:
            o["metadata"]["namespace"] = k["namespace"]
    return objs


def merge_patch(target, patch):
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def kustomize_objects():
    out = []
    for p in sorted((ISTIO / "kustomize").rglob("*.yaml")):
        if p.name != "kustomization.yaml":
            out += [(str(p.relative_to(ISTIO)), d) for d in load_docs(p)]
    return out


def comparable(objs):
    """(namespace, kind, name) -> object without the label that names the tool."""
    out = {}
    for o in objs:
        o = copy.deepcopy(o)
        o["metadata"]["labels"].pop("app.kubernetes.io/managed-by", None)
        out[(o["metadata"].get("namespace"), o["kind"], o["metadata"]["name"])] = o
    return out


def wasm_plugins(objs):
    return [o for o in objs if o["kind"] == "WasmPlugin"]


# ---------------------------------------------------------------------------------------------
# The plugin's own configuration parser


def istiod_json(value):
    """pluginConfig as Envoy receives it: istiod turns the object into a protobuf Struct (every
    number a double) and marshals it to JSON, integral doubles without a fraction."""

    def conv(v):
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)):
            d = float(v)
            if d.is_integer() and abs(d) < 1e21:
                return int(d)
            return d
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, list):
            return [conv(x) for x in v]
        raise TypeError(type(v))

    return json.dumps(conv(value), separators=(",", ":"))


_CHECKER = []


def check_config_command():
    if os.environ.get("MESHTRIAGE_CHECK_CONFIG"):
        return os.environ["MESHTRIAGE_CHECK_CONFIG"].split()
    if not _CHECKER:
        subprocess.run(["cargo", "build", "-q", "-p", "meshtriage-core", "--example", "check_config"], cwd=REPO, check=True)
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
        exe = target / "debug" / "examples" / ("check_config.exe" if os.name == "nt" else "check_config")
        _CHECKER.append([str(exe)])
    return _CHECKER[0]


def check_config(config_json):
    r = subprocess.run(check_config_command(), input=config_json.encode(), capture_output=True, cwd=REPO)
    return r.returncode, r.stdout.decode().strip()


# ---------------------------------------------------------------------------------------------
# PromQL: which metrics, labels and label values a query names

PROMQL_FUNCTIONS = {
    # aggregations
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
    # functions
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_quantile", "holt_winters",
    "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln", "log2", "log10", "minute", "month",
    "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "time", "timestamp", "vector",
    "year", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time",
    "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
OPERATOR_WORDS = {"and", "or", "unless", "bool", "offset"}
TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-z]*)'
    r"|(?P<id>[a-zA-Z_:][a-zA-Z0-9_:]*)|(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>]))"
)


def tokens(expr):
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors: [5m], [$__rate_interval]
    pos, out = 0, []
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot tokenize at {expr[pos:pos + 20]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def promql_problems(expr):
    """Names in a query the plugin does not emit; [] when the query is clean."""
    problems, metrics, grouped = [], [], []
    metric_labels, tag_values, targets = VOCAB["metrics"], VOCAB["values"], set(VOCAB["target_labels"])
    toks = tokens(expr)
    depth = 0
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "op" and text in "()":
            depth += 1 if text == "(" else -1
            if depth < 0:
                problems.append("unbalanced parentheses")
        if kind != "id":
            i += 1
            continue
        if text in GROUPING and nxt == "(":
            j = i + 2
            while j < len(toks) and toks[j][1] != ")":
                if toks[j][0] == "id":
                    grouped.append(toks[j][1])
                j += 1
            i = j + 1
            continue
        if text in OPERATOR_WORDS:
            i += 1
            continue
        if nxt == "(" or (text in PROMQL_FUNCTIONS and nxt in ("by", "without")):
            if text not in PROMQL_FUNCTIONS:
                problems.append(f"unknown function {text}")
            i += 1
            continue
        # a metric name, maybe with a selector
        metrics.append(text)
        if text not in metric_labels:
            problems.append(f"unknown metric {text}")
        i += 1
        if nxt == "{":
            i += 1
            while i < len(toks) and toks[i][1] != "}":
                if toks[i][1] == ",":
                    i += 1
                    continue
                label, op, value = toks[i][1], toks[i + 1][1], toks[i + 2][1][1:-1]
                i += 3
                if label not in metric_labels.get(text, []) and label not in targets:
                    problems.append(f"{text} has no label {label}")
                    continue
                if label in tag_values and not value.startswith("$"):
                    allowed = tag_values[label]
                    if op in ("=", "!="):
                        if value not in allowed:
                            problems.append(f"{label}={value!r} is never emitted")
                    elif re.fullmatch(r"[a-z0-9_-]+(\|[a-z0-9_-]+)*", value):
                        problems += [f"{label}=~{v!r} is never emitted" for v in value.split("|") if v not in allowed]
            i += 1
    if depth != 0:
        problems.append("unbalanced parentheses")
    known = set(targets).union(*(metric_labels.get(m, []) for m in metrics)) if metrics else set(targets)
    problems += [f"grouping by {g}, which no metric of the query has" for g in grouped if g not in known]
    if not metrics:
        problems.append("names no metric")
    return problems


def dashboard_queries(dash):
    out = []

    def walk(panels):
        for p in panels:
            out.extend((p["title"], t["expr"]) for t in p.get("targets", []))
            walk(p.get("panels", []))

    walk(dash["panels"])
    return out


# ---------------------------------------------------------------------------------------------


class ManifestsMatchTheCrdSchemas(unittest.TestCase):
    def test_every_object_is_valid(self):
        objs = generated_objects() + kustomize_objects()
        objs += [("render --digest", o) for objs_ in generate.render(generate.load_values(), "sha256:" + "ab" * 32).values() for o in objs_]
        self.assertGreater(len(objs), 10)
        for where, doc in objs:
            with self.subTest(where=where, name=doc["metadata"]["name"]):
                self.assertEqual(validation_errors(doc), [])

    def test_the_strict_schema_rejects_what_the_crd_lets_through(self):
        good = generated_objects()[0][1]
        self.assertEqual(validation_errors(good), [])
        bad = {
            "typo in a field": lambda d: d["spec"].__setitem__("pluginconfig", {}),
            "typo in metadata": lambda d: d["metadata"].__setitem__("namspace", "x"),
            "FAIL_CLOSED": lambda d: d["spec"].__setitem__("failStrategy", "FAIL_CLOSED"),
            "mode INBOUND": lambda d: d["spec"]["match"][0].__setitem__("mode", "INBOUND"),
            "no url": lambda d: d["spec"].pop("url"),
            "sha256 of a tag": lambda d: d["spec"].__setitem__("sha256", "latest"),
            "selector and targetRefs": lambda d: d["spec"].update(
                selector={"matchLabels": {"a": "b"}}, targetRefs=[{"kind": "Gateway", "name": "g"}]
            ),
            "ftp url": lambda d: d["spec"].__setitem__("url", "ftp://x/y.wasm"),
            "status in a manifest": lambda d: d.__setitem__("status", {}),
            "old apiVersion": lambda d: d.__setitem__("apiVersion", "extensions.istio.io/v1beta1"),
        }
        for name, mutate in bad.items():
            with self.subTest(name):
                doc = copy.deepcopy(good)
                mutate(doc)
                self.assertNotEqual(validation_errors(doc), [])


class WasmPluginsFollowTheDeploymentRules(unittest.TestCase):
    """What the CRD allows but meshtriage must not do (istio/README.md, pitfalls)."""

    def all_plugins(self):
        objs = [d for _, d in generated_objects()] + kustomize_render(ISTIO / "kustomize" / "namespaces")
        return wasm_plugins(objs)

    def test_plugins_fail_open_pinned_by_digest_in_authn(self):
        for p in self.all_plugins():
            with self.subTest(ns=p["metadata"].get("namespace"), name=p["metadata"]["name"]):
                s = p["spec"]
                self.assertEqual(s["failStrategy"], "FAIL_OPEN", "FAIL_CLOSE (the default) turns a failed pull into 403s")
                self.assertRegex(s["url"], r"^oci://[^@]+@sha256:[a-f0-9]{64}$")
                self.assertEqual(s["phase"], "AUTHN", "later phases never see RBAC/JWT replies")
                self.assertEqual({"HTTP": "meshtriage", "NETWORK": "meshtriage-tcp"}[s["type"]], s["pluginName"])
                if s["type"] == "NETWORK":
                    self.assertEqual(set(s["pluginConfig"]), {"direction"}, "the network filter takes no other key")

    def test_every_plugin_covers_one_direction_and_states_it(self):
        """One mode per WasmPlugin: Istio shares one filter config between the listeners a
        WasmPlugin matches, so only a single-direction plugin can state `direction` (and spare
        the per-request `xds.listener_direction` read)."""
        variants = [generate.load_values()]
        reordered = copy.deepcopy(variants[0])
        reordered["namespaces"] = [{"name": "shop", "modes": ["CLIENT", "SERVER"]}, {"name": "batch", "modes": ["CLIENT"]}]
        variants.append(reordered)
        plugins = self.all_plugins() + [p for v in variants for objs in generate.render(v).values() for p in wasm_plugins(objs)]
        for p in plugins:
            with self.subTest(ns=p["metadata"].get("namespace"), name=p["metadata"]["name"]):
                [match] = p["spec"]["match"]
                self.assertEqual(set(match), {"mode"}, "no port restriction")
                direction = {"SERVER": "inbound", "CLIENT": "outbound"}[match["mode"]]
                self.assertEqual(p["spec"]["pluginConfig"]["direction"], direction)
                if "selector" not in p["spec"] and "targetRefs" not in p["spec"]:
                    suffix = "" if p["spec"]["type"] == "HTTP" else "-tcp"
                    self.assertEqual(p["metadata"]["name"], f"meshtriage{suffix}-{direction}")
        names = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in wasm_plugins(generate.render(reordered)["shop"])}
        self.assertEqual(names, {("shop", f"meshtriage{k}-{d}") for k in ("", "-tcp") for d in ("inbound", "outbound")})

    def test_both_directions_get_the_same_user_config(self):
        for ns, objs in generate.render(generate.load_values()).items():
            configs = {}
            for p in wasm_plugins(objs):
                cfg = dict(p["spec"]["pluginConfig"])
                cfg.pop("direction")
                configs.setdefault(p["spec"]["type"], []).append(cfg)
            for kind, cfgs in configs.items():
                with self.subTest(ns=ns, type=kind):
                    self.assertTrue(all(c == cfgs[0] for c in cfgs))
                    if kind == "NETWORK":
                        self.assertEqual(cfgs[0], {})

    def test_every_plugin_is_namespace_scoped(self):
        root = generate.load_values().get("rootNamespace", "istio-system")
        for p in self.all_plugins():
            with self.subTest(ns=p["metadata"].get("namespace"), name=p["metadata"]["name"]):
                ns = p["metadata"].get("namespace")
                self.assertTrue(ns, "no namespace: kubectl would put it wherever the context points")
                targeted = "selector" in p["spec"] or "targetRefs" in p["spec"]
                if not targeted:
                    self.assertNotEqual(ns, root, "a selector-less plugin in the root namespace is mesh-wide")

    def test_gateway_plugins_are_client_mode_and_hide_the_header(self):
        gateways = [p for p in self.all_plugins() if "selector" in p["spec"] or "targetRefs" in p["spec"]]
        self.assertTrue(gateways)
        for p in gateways:
            self.assertEqual(p["spec"]["match"], [{"mode": "CLIENT"}], "gateways are CLIENT: SERVER never matches them")
            if p["spec"]["type"] == "HTTP":
                self.assertIs(p["spec"]["pluginConfig"]["expose_header"], False)


class EveryPluginConfigParses(unittest.TestCase):
    def configs(self):
        out = []
        for where, o in generated_objects() + kustomize_objects():
            if o["kind"] == "WasmPlugin" and "pluginConfig" in o["spec"]:
                out.append((f"{where}:{o['metadata']['name']}", o["spec"]["pluginConfig"]))
        for where, o in [("kustomize render", o) for o in kustomize_render(ISTIO / "kustomize" / "namespaces")]:
            if o["kind"] == "WasmPlugin" and "pluginConfig" in o["spec"]:
                out.append((f"{where}:{o['metadata']['namespace']}/{o['metadata']['name']}", o["spec"]["pluginConfig"]))
        values = generate.load_values()
        out += [(f"namespaces.yaml:{e['name']}", e["pluginConfig"]) for e in generate.sidecar_entries(values)]
        out += [(f"namespaces.yaml:{g['name']}", g["pluginConfig"]) for g in generate.gateway_entries(values)]
        helm = yaml.safe_load((ISTIO / "helm" / "meshtriage-istio" / "values.yaml").read_text())
        out.append(("helm values.yaml", helm["pluginConfig"]))
        return out

    def test_the_plugin_accepts_every_plugin_config(self):
        configs = self.configs()
        self.assertGreater(len(configs), 5)
        for where, cfg in configs:
            with self.subTest(where=where):
                self.assertEqual(check_config(istiod_json(cfg)), (0, "ok"))

    def test_the_parser_rejects_a_typo(self):
        code, out = check_config(istiod_json({"expose_headers": False}))
        self.assertEqual(code, 1)
        self.assertIn("expose_headers", out)

    def test_numbers_survive_istiods_doubles(self):
        self.assertEqual(istiod_json({"large_payload_bytes": 1048576, "retry_budget": {"ratio": 0.2}}),
                         '{"large_payload_bytes":1048576,"retry_budget":{"ratio":0.2}}')


class TheGeneratorOwnsOneListAndScopesEverything(unittest.TestCase):
    def test_generated_files_are_up_to_date(self):
        wanted = generate.files(generate.render(generate.load_values()))
        self.assertEqual(generate.stale(ISTIO / "generated", wanted), [], "run python3 istio/tools/generate.py")

    def test_the_digest_is_a_parameter(self):
        d = "sha256:" + "cd" * 32
        rendered = generate.render(generate.load_values(), d, "registry.example.com/platform/meshtriage")
        urls = {p["spec"]["url"] for objs in rendered.values() for p in wasm_plugins(objs)}
        self.assertEqual(urls, {"oci://registry.example.com/platform/meshtriage@" + d})
        with self.assertRaises(generate.ValuesError):
            generate.render(generate.load_values(), "sha256:abc")

    def test_one_set_per_namespace_and_opting_out_removes_it(self):
        values = generate.load_values()
        with tempfile.TemporaryDirectory() as tmp:
            generate.write(tmp, generate.files(generate.render(values)))
            (Path(tmp) / "hand-written.yaml").write_text("kept: true\n")
            self.assertIn("shop.yaml", os.listdir(tmp))
            values["namespaces"] = [n for n in values["namespaces"] if n != "shop"]
            wanted = generate.files(generate.render(values))
            self.assertEqual(generate.stale(tmp, wanted), ["shop.yaml"])
            generate.write(tmp, wanted)
            self.assertNotIn("shop.yaml", os.listdir(tmp))
            self.assertIn("hand-written.yaml", os.listdir(tmp))
            self.assertEqual(generate.stale(tmp, wanted), [])

    def test_the_list_refuses_mesh_wide_and_double_plugins(self):
        base = generate.load_values()
        cases = {
            "root namespace": {"namespaces": ["istio-system"]},
            "listed twice": {"namespaces": ["shop", {"name": "shop"}]},
            "gateway in a CLIENT namespace": {"gateways": [{"name": "gw", "namespace": "shop", "selector": {"istio": "gw"}}]},
            "gateway without a selector": {"gateways": [{"name": "gw", "namespace": "edge"}]},
            "unknown key": {"namespace": ["shop"]},
            "unknown mode": {"namespaces": [{"name": "shop", "modes": ["INBOUND"]}]},
            "direction in the defaults": {"pluginConfig": {"direction": "inbound"}},
            "direction in a namespace": {"namespaces": [{"name": "shop", "pluginConfig": {"direction": "outbound"}}]},
            "direction auto in a namespace": {"namespaces": [{"name": "shop", "pluginConfig": {"direction": "auto"}}]},
            "direction in a gateway": {"gateways": [{"name": "gw", "namespace": "edge", "selector": {"istio": "gw"},
                                                     "pluginConfig": {"direction": "outbound"}}]},
            "gateway named like a sidecar plugin": {"namespaces": [{"name": "edge", "modes": ["SERVER"]}],
                                                    "gateways": [{"name": "inbound", "namespace": "edge", "selector": {"istio": "gw"}}]},
            "gateway named like another's tcp plugin": {"gateways": [{"name": "gw", "namespace": "edge", "selector": {"istio": "gw"}},
                                                                     {"name": "gw-tcp", "namespace": "edge", "selector": {"istio": "gw2"}}]},
        }
        for name, change in cases.items():
            with self.subTest(name):
                with self.assertRaises((generate.ValuesError, KeyError)) as caught:
                    v = {**copy.deepcopy(base), **change}
                    generate.check_values(v)
                    generate.render(v)
                if name.startswith("direction"):
                    self.assertIn("`direction` is set by the generator", str(caught.exception))
        ok = {**copy.deepcopy(base), "namespaces": [{"name": "edge", "modes": ["SERVER"]}],
              "gateways": [{"name": "gw", "namespace": "edge", "gatewayRef": "public"}]}
        generate.check_values(ok)
        gw = generate.render(ok)["edge"]
        self.assertEqual(gw[3]["spec"]["targetRefs"], [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}])

    def test_cli_check_and_list(self):
        py = sys.executable
        r = subprocess.run([py, ISTIO / "tools" / "generate.py", "--check"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([py, ISTIO / "tools" / "generate.py", "--list"], capture_output=True, text=True, check=True)
        listed = r.stdout.split()
        for name in ("meshtriage-inbound", "meshtriage-outbound", "meshtriage-tcp-inbound", "meshtriage-tcp-outbound"):
            self.assertIn(f"shop/WasmPlugin/{name}", listed)
        self.assertNotIn("shop/WasmPlugin/meshtriage", listed, "the two-direction plugin of old")
        self.assertIn("batch/WasmPlugin/meshtriage-inbound", listed)
        self.assertNotIn("batch/WasmPlugin/meshtriage-outbound", listed)
        self.assertNotIn("istio-system/", r.stdout)


class KustomizeAndHelmRenderTheSameObjects(unittest.TestCase):
    def test_the_kustomize_tree_renders_what_the_generator_does(self):
        rendered = [o for objs in generate.render(generate.load_values()).values() for o in objs]
        self.assertEqual(comparable(kustomize_render(ISTIO / "kustomize" / "namespaces")), comparable(rendered))

    @unittest.skipUnless(shutil.which("kubectl"), "kubectl not installed: real kustomize not checked")
    def test_real_kustomize_agrees_with_the_emulation(self):
        out = subprocess.run(["kubectl", "kustomize", ISTIO / "kustomize" / "namespaces"], capture_output=True, text=True, check=True).stdout
        self.assertEqual(comparable(yaml.safe_load_all(out)), comparable(kustomize_render(ISTIO / "kustomize" / "namespaces")))

    def test_the_helm_chart_takes_the_opt_in_list_as_values(self):
        chart = ISTIO / "helm" / "meshtriage-istio"
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        self.assertEqual((meta["apiVersion"], meta["name"]), ("v2", "meshtriage-istio"))
        schema = json.loads((chart / "values.schema.json").read_text())
        defaults = yaml.safe_load((chart / "values.yaml").read_text())
        jsonschema.validate(defaults, schema)
        self.assertEqual(defaults["namespaces"], [], "the chart's defaults must opt nothing in")
        jsonschema.validate(generate.load_values(), schema)
        used = set()
        for t in (chart / "templates").iterdir():
            used |= set(re.findall(r"\.Values\.([a-zA-Z]+)", t.read_text()))
        self.assertTrue(used)
        self.assertLessEqual(used, set(schema["properties"]), "templates read values the schema does not define")
        text = (chart / "templates" / "_helpers.tpl").read_text()
        for fixed in ("phase: AUTHN", "failStrategy: FAIL_OPEN", "priority: 1000", "imagePullPolicy: IfNotPresent"):
            self.assertIn(fixed, text)
        template = (chart / "templates" / "namespaces.yaml").read_text()
        self.assertIn('set $cfg "expose_header" false', template)
        # One plugin per direction, named and configured as the generator does.
        m = re.search(r'\$directions := dict((?: "[A-Z]+" "[a-z]+")+) \}\}', template)
        self.assertTrue(m, "the chart's mode -> direction table")
        words = re.findall(r'"(\w+)"', m.group(1))
        self.assertEqual(dict(zip(words[::2], words[1::2])), generate.DIRECTIONS)
        self.assertEqual(list(generate.DIRECTIONS), ["SERVER", "CLIENT"])
        self.assertIn('range $mode := list "SERVER" "CLIENT"', template, "same order as the generator")
        self.assertIn('printf "%s-%s" $kind $direction', template)
        self.assertIn('$cfg := dict "direction" "outbound"', template, "gateways are outbound")
        self.assertEqual(re.findall(r'hasKey \((\S+) \| default dict\) "direction"', template),
                         [".Values.pluginConfig", "$e.pluginConfig", ".pluginConfig"],
                         "every pluginConfig the values can hold is refused a `direction`")
        self.assertIn("- mode: {{ .mode }}", text)

    def test_every_copy_pins_the_same_image(self):
        values = generate.load_values()
        url = f"oci://{values['image']['repository']}@{values['image']['digest']}"
        for where, o in kustomize_objects():
            if o["kind"] == "WasmPlugin":
                self.assertEqual(o["spec"]["url"], url, where)


class MeshConfigMakesLabelsAndAccessLogs(unittest.TestCase):
    def mesh_configs(self):
        values = yaml.safe_load((ISTIO / "mesh" / "istiod-values.yaml").read_text())["meshConfig"]
        operator = yaml.safe_load((ISTIO / "mesh" / "istio-operator.yaml").read_text())
        self.assertEqual((operator["apiVersion"], operator["kind"]), ("install.istio.io/v1alpha1", "IstioOperator"))
        return values, operator["spec"]["meshConfig"]

    def test_both_forms_carry_the_same_mesh_config(self):
        values, operator = self.mesh_configs()
        self.assertEqual(values, operator)
        self.assertEqual(set(values), {"defaultConfig", "extensionProviders"})
        self.assertEqual(set(values["defaultConfig"]), {"extraStatTags"})

    def test_extra_stat_tags_are_the_plugins_tags(self):
        values, _ = self.mesh_configs()
        self.assertEqual(values["defaultConfig"]["extraStatTags"], VOCAB["tags"])
        patch = yaml.safe_load((ISTIO / "mesh" / "pod-annotation.yaml").read_text())
        proxy_config = json.loads(patch["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"])
        self.assertEqual(proxy_config, {"extraStatTags": VOCAB["tags"]})
        for tag in VOCAB["tags"]:
            self.assertRegex(tag, r"^[a-z_]+$")

    def test_the_access_log_provider_prints_the_verdict_and_telemetry_uses_it(self):
        values, _ = self.mesh_configs()
        providers = {p["name"]: p for p in values["extensionProviders"]}
        log = providers[generate.ACCESS_LOG_PROVIDER]["envoyFileAccessLog"]
        self.assertEqual(set(log), {"path", "logFormat"})
        self.assertEqual(log["logFormat"]["labels"]["meshtriage"], "%FILTER_STATE(wasm.meshtriage:PLAIN)%")
        for v in log["logFormat"]["labels"].values():
            self.assertRegex(v, r"^%[A-Z_]+(\([^)]*\))?%$")
        telemetries = [o for _, o in generated_objects() + kustomize_objects() if o["kind"] == "Telemetry"]
        self.assertTrue(telemetries)
        for t in telemetries:
            for entry in t["spec"]["accessLogging"]:
                for p in entry["providers"]:
                    self.assertIn(p["name"], providers)


class TheOciLayoutIsWhatIstioPulls(unittest.TestCase):
    FAKE = b"\0asm\x01\0\0\0"  # the smallest valid module

    def wasm(self):
        real = build_image.DEFAULT_WASM
        return real.read_bytes() if real.is_file() else self.FAKE

    def test_layout_digests_and_content(self):
        wasm = self.wasm()
        with tempfile.TemporaryDirectory() as tmp:
            d = build_image.build(wasm, tmp, "0.1.0")
            root = Path(tmp)
            for blob in (root / "blobs" / "sha256").iterdir():
                self.assertEqual("sha256:" + __import__("hashlib").sha256(blob.read_bytes()).hexdigest(), "sha256:" + blob.name)
            index = json.loads((root / "index.json").read_text())
            self.assertEqual(json.loads((root / "oci-layout").read_text()), {"imageLayoutVersion": "1.0.0"})
            [desc] = index["manifests"]
            self.assertEqual((desc["digest"], desc["annotations"]["org.opencontainers.image.ref.name"]), (d, "0.1.0"))
            self.assertEqual(desc["mediaType"], "application/vnd.oci.image.manifest.v1+json", "an index digest would not match")
            manifest = json.loads((root / "blobs" / "sha256" / d.removeprefix("sha256:")).read_bytes())
            [layer] = manifest["layers"]
            self.assertEqual(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip")
            data = (root / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")).read_bytes()
            self.assertEqual(len(data), layer["size"])
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as t:
                self.assertEqual(t.getnames(), ["plugin.wasm"])
                self.assertEqual(t.extractfile("plugin.wasm").read(), wasm)
            self.assertEqual(build_image.verify(tmp), {"0.1.0": d})

    def test_the_digest_is_reproducible_and_follows_the_module(self):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            self.assertEqual(build_image.build(self.FAKE, a, "x"), build_image.build(self.FAKE, b, "x"))
            self.assertNotEqual(build_image.build(self.FAKE, a, "x"), build_image.build(self.FAKE + b"\0", b, "x"))

    def test_verify_catches_damage_and_refuses_non_wasm(self):
        with tempfile.TemporaryDirectory() as tmp:
            build_image.build(self.FAKE, tmp, "x")
            blob = max((Path(tmp) / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
            blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
            with self.assertRaises(build_image.LayoutError):
                build_image.verify(tmp)
            with self.assertRaises(ValueError):
                build_image.build(b"#!/bin/sh\n", tmp, "x")

    def test_cli_prints_only_the_digest(self):
        with tempfile.TemporaryDirectory() as tmp:
            wasm = Path(tmp) / "m.wasm"
            wasm.write_bytes(self.FAKE)
            r = subprocess.run([sys.executable, ISTIO / "tools" / "build_image.py", "--wasm", wasm, "--out", Path(tmp) / "oci"],
                               capture_output=True, text=True, check=True)
            self.assertRegex(r.stdout, r"^sha256:[a-f0-9]{64}\n$")


class DashboardsAndAlertsNameOnlyWhatThePluginEmits(unittest.TestCase):
    def test_the_checker_catches_names_the_plugin_does_not_emit(self):
        self.assertEqual(promql_problems('sum by (class) (rate(meshtriage_failures_total{layer="l4", dir=~"$dir"}[5m]))'), [])
        for bad in (
            'rate(meshtriage_failures_total{hop="a.b"}[5m])',
            'rate(meshtriage_failures_total{class="app_closed_connection"}[5m])',
            'rate(meshtriage_failures_total{layer=~"l4|l3"}[5m])',
            'rate(envoy_cluster_upstream_rq_total[5m])',
            'sum by (header) (rate(meshtriage_failures_total[5m]))',
            'rate(meshtriage_requests_total{class="app_error"}[5m])',
            'rat(meshtriage_requests_total[5m])',
        ):
            with self.subTest(bad):
                self.assertNotEqual(promql_problems(bad), [])

    def test_dashboard_queries(self):
        dash = json.loads((ISTIO / "monitoring" / "grafana-dashboard.json").read_text())
        queries = dashboard_queries(dash)
        self.assertGreaterEqual(len(queries), 10)
        for title, expr in queries:
            with self.subTest(title):
                self.assertEqual(promql_problems(expr), [])
        exprs = " ".join(e for _, e in queries)
        for label in ("layer", "class", "origin", "pod", "header"):
            self.assertRegex(exprs, rf"by \([^)]*\b{label}\b", f"no panel breaks failures down by {label}")
        ids = []

        def walk(panels):
            for p in panels:
                ids.append(p["id"])
                walk(p.get("panels", []))

        walk(dash["panels"])
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                m = re.fullmatch(r"label_values\((\w+), (\w+)\)", var["query"]["query"])
                self.assertTrue(m, var["query"])
                self.assertEqual(promql_problems(m.group(1)), [])
                self.assertIn(m.group(2), VOCAB["target_labels"] + VOCAB["metrics"][m.group(1)])
            if var["type"] == "custom" and var["name"] in VOCAB["values"]:
                self.assertLessEqual(set(var["query"].split(",")), set(VOCAB["values"][var["name"]]))

    def test_alert_rules(self):
        rules = yaml.safe_load((ISTIO / "monitoring" / "alerts.yaml").read_text())
        self.assertEqual(set(rules), {"groups"})
        names = []
        for group in rules["groups"]:
            self.assertEqual(set(group) - {"interval"}, {"name", "rules"})
            for rule in group["rules"]:
                with self.subTest(rule["alert"]):
                    names.append(rule["alert"])
                    self.assertLessEqual(set(rule), {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"})
                    self.assertEqual(promql_problems(rule["expr"]), [])
                    self.assertIn(rule["labels"]["severity"], ("critical", "warning", "info"))
                    self.assertTrue(rule["annotations"]["summary"] and rule["annotations"]["description"])
                    if "for" in rule:
                        self.assertRegex(rule["for"], r"^\d+[smh]$")
        self.assertEqual(len(names), len(set(names)))
        exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
        self.assertIn('layer="l4"', exprs["MeshtriageL4FailureRatioHigh"])
        self.assertRegex(exprs["MeshtriageAppClosedConnection"], r'dir="inbound", class="connection_terminated"')
        self.assertIn("meshtriage_hop_by_hop_headers_total", exprs["MeshtriageHopByHopHeaders"])


class TheReadmeMentionsOnlyFilesThatExist(unittest.TestCase):
    def test_paths(self):
        text = (ISTIO / "README.md").read_text()
        for section in ("Install", "Opt a namespace in", "Opt a namespace out", "Verify", "Upgrade", "Roll back", "Pitfalls"):
            self.assertIn(f"## {section}", text)
        paths = set(re.findall(r"(?<![\w/.-])istio/[\w./-]+\w", text))
        self.assertTrue(paths)
        for p in paths:
            with self.subTest(p):
                self.assertTrue((REPO / p).exists(), p)


if __name__ == "__main__":
    unittest.main()
