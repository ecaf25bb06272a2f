"""Offline checks of the Istio objects in istio/ (run with istio/tests/run.sh).

* every WasmPlugin / Telemetry (generated, kustomize, examples) against the vendored CRDs
  (istio/crds/): the openAPIV3Schema made stricter (unknown fields rejected) and the CRDs' own
  CEL rules, evaluated by a CEL implementation (crds.py);
* every pluginConfig through the plugin's own parser (check_config), serialised the way istiod
  hands it to Envoy;
* istio/generated/ up to date with istio/namespaces.yaml; generate.py is the one source of the
  objects' rules, and the other forms are proven equal to it by executing them: `kubectl
  kustomize` renders the same objects from istio/kustomize/, and the Helm chart's templates,
  executed by Helm's template engine (tools/helm-render), render the same objects and refuse
  the same lists.
The monitoring is checked in test_monitoring.py, the OCI image in test_oci.py.
"""

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import jsonschema
import yaml

from crds import SCHEMAS, compile_rule, rules_in, validation_errors
from support import ISTIO, REPO, load_docs, need, skip

sys.path.insert(0, str(ISTIO / "tools"))

import generate  # noqa: E402

# ---------------------------------------------------------------------------------------------
# The objects under test


def generated_objects():
    out = []
    for p in sorted((ISTIO / "generated").glob("*.yaml")):
        out += [(p.name, d) for d in load_docs(p)]
    return out


def kustomize_render(path):
    """The objects `kubectl kustomize` renders from a kustomization directory."""
    kubectl = need("kubectl", "kubernetes-client")
    version = _kustomize_major(kubectl)
    if version < 4:
        skip("kubectl's embedded kustomize is older than v4 (Debian's kubernetes-client 1.20 embeds v2.0.3, "
             "which lacks `patches`): install kubectl 1.21 or later")
    r = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path}: {r.stderr}")
    return [d for d in yaml.safe_load_all(r.stdout) if d is not None]


def _kustomize_major(kubectl):
    out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout
    m = re.search(r"Kustomize Version: v(\d+)", out)
    return int(m.group(1)) if m else 0


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


    def test_the_crds_own_cel_rules_run(self):
        """Each case breaks one x-kubernetes-validations rule of the CRD; the message is the
        CRD's, so the rule ran (crds.py evaluates the rules as written in istio/crds/)."""
        good = generated_objects()[0][1]
        cases = {
            "only one of targetRefs or selector can be set": lambda s: s.update(
                selector={"matchLabels": {"a": "b"}}, targetRefs=[{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "g"}]),
            "url must have schema one of [http, https, file, oci]": lambda s: s.__setitem__("url", "ftp://x/y.wasm"),
            "value may only be set when valueFrom is INLINE": lambda s: s.__setitem__(
                "vmConfig", {"env": [{"name": "A", "valueFrom": "HOST", "value": "x"}]}),
            "cross namespace referencing is not currently supported": lambda s: s.__setitem__(
                "targetRefs", [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "g", "namespace": "other"}]),
            "wildcard not allowed in label key match": lambda s: s.__setitem__("selector", {"matchLabels": {"a*": "b"}}),
            "wildcard not allowed in label value match": lambda s: s.__setitem__("selector", {"matchLabels": {"a": "b*"}}),
        }
        for message, mutate in cases.items():
            with self.subTest(message):
                doc = copy.deepcopy(good)
                mutate(doc["spec"])
                self.assertIn(message, " ".join(validation_errors(doc)))
        for url in ("oci://ghcr.io/o/m@sha256:" + "a" * 64, "https://x/y.wasm", "file:///y.wasm", "ghcr.io/o/m:1"):
            doc = copy.deepcopy(good)
            doc["spec"]["url"] = url
            self.assertEqual(validation_errors(doc), [], url)
        # Every rule of both CRDs compiles (a rule the CEL library cannot parse would fail here).
        for versions in SCHEMAS.values():
            for version, (_, spec) in versions.items():
                rules = rules_in(spec)
                self.assertTrue(rules, version)
                for rule in rules:
                    compile_rule(rule)


# Opt-in lists that must be refused, by the generator and by the Helm chart alike.
REFUSED = {
    "root namespace": {"namespaces": ["istio-system"]},
    "listed twice": {"namespaces": ["shop", {"name": "shop"}]},
    "gateway in a CLIENT namespace": {"gateways": [{"name": "gw", "namespace": "shop", "selector": {"istio": "gw"}}]},
    "gateway without a selector": {"gateways": [{"name": "gw", "namespace": "edge"}]},
    "unknown key": {"namespace": ["shop"]},
    "unknown mode": {"namespaces": [{"name": "shop", "modes": ["INBOUND"]}]},
    "uppercase repository": {"image": {"repository": "ghcr.io/Owner/meshtriage", "digest": "sha256:" + "a" * 64}},
    "digest of a tag": {"image": {"repository": "ghcr.io/owner/meshtriage", "digest": "latest"}},
    "listed twice, both long": {"namespaces": [{"name": "shop"}, {"name": "shop", "tcp": False}]},
    "direction in the defaults": {"pluginConfig": {"direction": "inbound"}},
    "direction in a namespace": {"namespaces": [{"name": "shop", "pluginConfig": {"direction": "outbound"}}]},
    "direction auto in a namespace": {"namespaces": [{"name": "shop", "pluginConfig": {"direction": "auto"}}]},
    "direction in a gateway": {"gateways": [{"name": "gw", "namespace": "edge", "selector": {"istio": "gw"},
                                             "pluginConfig": {"direction": "outbound"}}]},
    "gateway named like a sidecar plugin": {"namespaces": [{"name": "edge", "modes": ["SERVER"]}],
                                            "gateways": [{"name": "inbound", "namespace": "edge", "selector": {"istio": "gw"}}]},
    "gateway named like another's tcp plugin": {"gateways": [
        {"name": "gw", "namespace": "edge", "selector": {"istio": "gw"}},
        {"name": "gw-tcp", "namespace": "edge", "selector": {"istio": "gw2"}},
    ]},
}


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
        with self.assertRaises(generate.ValuesError):
            generate.render(generate.load_values(), d, "ghcr.io/Owner/meshtriage")

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
        for name, change in REFUSED.items():
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
    def test_kubectl_kustomize_renders_what_the_generator_does(self):
        rendered = [o for objs in generate.render(generate.load_values()).values() for o in objs]
        self.assertEqual(comparable(kustomize_render(ISTIO / "kustomize" / "namespaces")), comparable(rendered))

    def test_the_helm_chart_takes_the_opt_in_list_as_values(self):
        chart = ISTIO / "helm" / "meshtriage-istio"
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        self.assertEqual((meta["apiVersion"], meta["name"]), ("v2", "meshtriage-istio"))
        schema = json.loads((chart / "values.schema.json").read_text())
        defaults = yaml.safe_load((chart / "values.yaml").read_text())
        jsonschema.validate(defaults, schema)
        self.assertEqual(defaults["namespaces"], [], "the chart's defaults must opt nothing in")
        jsonschema.validate(generate.load_values(), schema)
        # What the templates render and refuse: TheHelmChartRendersWhatTheGeneratorDoes. The
        # repository must be lowercase (OCI) for both, through this one schema.
        for bad in ("ghcr.io/Owner/meshtriage", "GHCR.IO/o/m", "ghcr.io/o/m:1.0", "oci://ghcr.io/o/m"):
            with self.assertRaises(jsonschema.ValidationError, msg=bad):
                jsonschema.validate({"image": {"repository": bad, "digest": ""}, "namespaces": []}, schema)

    def test_every_copy_pins_the_same_image(self):
        values = generate.load_values()
        url = f"oci://{values['image']['repository']}@{values['image']['digest']}"
        for where, o in kustomize_objects():
            if o["kind"] == "WasmPlugin":
                self.assertEqual(o["spec"]["url"], url, where)


GOPATH_DEPS = Path("/usr/share/gocode/src")  # Debian's Go library packages


def helm_render_binary():
    """Builds istio/tools/helm-render (text/template + sprig, Helm's engine) into target/."""
    go = need("go", "golang-go")
    sprig = GOPATH_DEPS / "github.com" / "Masterminds" / "sprig"
    if not (sprig / "functions.go").is_file() or not (GOPATH_DEPS / "gopkg.in" / "yaml.v3").is_dir():
        skip("sprig or yaml.v3 not found: install the Debian packages golang-github-masterminds-sprig-dev "
             "and golang-gopkg-yaml.v3-dev")
    target = REPO / "target"
    gopath = target / "helm-render-gopath"
    # The sources import sprig and semver by their module paths (/v3); Debian ships them in GOPATH
    # layout without the suffix, so link them under it.
    for name in ("sprig", "semver"):
        link = gopath / "src" / "github.com" / "Masterminds" / name / "v3"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(GOPATH_DEPS / "github.com" / "Masterminds" / name)
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": f"{gopath}:{GOPATH_DEPS.parent}", "GOCACHE": str(target / "go-cache"),
           "GOFLAGS": ""}
    out = target / "helm-render"
    subprocess.run([go, "build", "-o", out, "."], cwd=ISTIO / "tools" / "helm-render", env=env, check=True)
    return out


class TheHelmChartRendersWhatTheGeneratorDoes(unittest.TestCase):
    """The chart's templates executed by Go's text/template with sprig, as `helm template`
    does (istio/tools/helm-render; no helm binary is packaged for Debian), its values checked
    against values.schema.json as Helm checks them."""

    CHART = ISTIO / "helm" / "meshtriage-istio"

    @classmethod
    def setUpClass(cls):
        cls.binary = helm_render_binary()
        cls.schema = json.loads((cls.CHART / "values.schema.json").read_text())
        cls.defaults = yaml.safe_load((cls.CHART / "values.yaml").read_text())

    def helm(self, values):
        """(objects, error): what `helm template -f values` renders, or the error it stops on."""
        merged = copy.deepcopy(self.defaults)
        for k, v in values.items():  # Helm merges maps over the defaults, replaces the rest
            merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
        errors = list(jsonschema.Draft7Validator(self.schema).iter_errors(merged))
        if errors:
            return None, f"values don't meet the specifications of the schema: {errors[0].message}"
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump(values, f)
            f.flush()
            r = subprocess.run([self.binary, self.CHART, "-f", f.name], capture_output=True, text=True)
        if r.returncode != 0:
            return None, r.stderr
        return [d for d in yaml.safe_load_all(r.stdout) if d is not None], None

    def test_the_chart_renders_the_generators_objects(self):
        base = generate.load_values()
        variants = {
            "namespaces.yaml": {},
            "modes in the other order": {
                "namespaces": [{"name": "shop", "modes": ["CLIENT", "SERVER"]}, {"name": "batch", "modes": ["CLIENT"]}],
            },
            "pull secret, no tcp, no access log": {"image": {**base["image"], "pullSecret": "regcred"}, "tcp": False, "accessLog": False},
            "Gateway API gateway": {
                "namespaces": [{"name": "edge", "modes": ["SERVER"]}],
                "gateways": [{"name": "gw", "namespace": "edge", "gatewayRef": "public", "pluginConfig": {"expose_header": True}}],
            },
            # The span tags (docs/tracing.md), beside the access log and alone.
            "tracing tags": {"tracingTags": True},
            "tracing tags, no access log": {"tracingTags": True, "accessLog": False},
        }
        for name, change in variants.items():
            with self.subTest(name):
                values = {**copy.deepcopy(base), **change}
                objs, err = self.helm(values)
                self.assertIsNone(err)
                for o in objs:
                    self.assertEqual(o["metadata"]["labels"].pop("helm.sh/chart"), "meshtriage-istio-0.1.0")
                self.assertEqual(comparable(objs), comparable([o for v in generate.render(values).values() for o in v]))

    def test_the_chart_refuses_what_the_generator_refuses(self):
        base = generate.load_values()
        for name, change in REFUSED.items():
            with self.subTest(name):
                objs, err = self.helm({**copy.deepcopy(base), **change})
                self.assertIsNotNone(err, f"the chart rendered {len(objs or [])} objects")
                if name.startswith("listed twice"):
                    self.assertIn("is listed twice", err)

    def test_the_chart_requires_a_digest(self):
        values = generate.load_values()
        values["image"]["digest"] = ""
        _, err = self.helm(values)
        self.assertIn("image.digest is required", err)


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
        # The README's generated stats_tags block: the plugin's tags, in order.
        readme = (REPO / "README.md").read_text(encoding="utf-8")
        tags = re.findall(r"^- tag_name: (\w+)$", readme, re.M)
        self.assertEqual(values["defaultConfig"]["extraStatTags"], tags)
        patch = yaml.safe_load((ISTIO / "mesh" / "pod-annotation.yaml").read_text())
        proxy_config = json.loads(patch["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"])
        self.assertEqual(proxy_config, {"extraStatTags": tags})
        for tag in tags:
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
