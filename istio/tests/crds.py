"""Validation of Istio objects against the vendored CRDs (istio/crds/), as the API server does it
plus one rule stricter: the version's openAPIV3Schema (unknown fields rejected, where the API
server would silently prune a typo) with a JSON-schema validator, and the CRD's own
`x-kubernetes-validations` rules evaluated by a CEL implementation (the `cel-python` package).
The rules are read from the CRDs, never re-typed here."""

import copy
import urllib.parse

import celpy
import jsonschema
from celpy import celtypes

from support import CRDS, load_docs

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


# --- CEL ------------------------------------------------------------------------------------
# The Kubernetes CEL URL library (k8s.io/apiserver/pkg/cel/library/urls.go), which the
# WasmPlugin url rule calls: isURL(s) is Go's url.ParseRequestURI(s) succeeding (an absolute
# URL or an absolute path), url(s) the parsed URL, getScheme() its scheme.


def _parse_request_uri(s):
    s = str(s)
    parts = urllib.parse.urlsplit(s)
    if parts.scheme and s[len(parts.scheme)] == ":" and " " not in s:
        return parts
    if s.startswith("/") and " " not in s:
        return parts
    return None


def _is_url(s):
    return celtypes.BoolType(_parse_request_uri(s) is not None)


def _url(s):
    if _parse_request_uri(s) is None:
        raise ValueError(f"URL parse error during conversion from string: {s}")
    return celtypes.StringType(s)


def _get_scheme(u):
    return celtypes.StringType(_parse_request_uri(u).scheme)


CEL_FUNCTIONS = {"isURL": _is_url, "url": _url, "getScheme": _get_scheme}
_CEL = celpy.Environment()
_PROGRAMS = {}


def cel(value):
    """A YAML value as a CEL value."""
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, list):
        return celtypes.ListType([cel(v) for v in value])
    if isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(k): cel(v) for k, v in value.items()})
    raise TypeError(type(value))


def compile_rule(text):
    if text not in _PROGRAMS:
        _PROGRAMS[text] = _CEL.program(_CEL.compile(text), functions=CEL_FUNCTIONS)
    return _PROGRAMS[text]


def rule_errors(schema, value, path="spec"):
    """Messages of the x-kubernetes-validations rules that `value` breaks, walking the schema
    as the API server does (each rule sees its own node as `self`)."""
    errs = []
    if not isinstance(schema, dict) or value is None:
        return errs
    for rule in schema.get("x-kubernetes-validations") or []:
        program = compile_rule(rule["rule"])
        try:
            ok = program.evaluate({"self": cel(value)})
        except Exception as e:  # a rule that cannot evaluate rejects the object, as in Kubernetes
            ok = e
        if ok is not True and ok != celtypes.BoolType(True):
            errs.append(f"{path}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for k, v in value.items():
            sub = (schema.get("properties") or {}).get(k)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            errs += rule_errors(sub, v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            errs += rule_errors(schema.get("items"), v, f"{path}[{i}]")
    return errs


def rules_in(schema):
    """Every rule of a schema (to show the walk reaches them all)."""
    out = [r["rule"] for r in schema.get("x-kubernetes-validations") or []] if isinstance(schema, dict) else []
    if isinstance(schema, dict):
        for sub in list((schema.get("properties") or {}).values()) + [schema.get("items"), schema.get("additionalProperties")]:
            out += rules_in(sub)
    return out


# --- the CRDs -------------------------------------------------------------------------------


def object_schemas(crd_file):
    """kind, {apiVersion: (validator, spec schema)} for a CRD's served versions."""
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
        out[f"{group}/{v['name']}"] = (jsonschema.Draft7Validator(schema), spec)
    return kind, out


SCHEMAS = dict(object_schemas(f) for f in ("wasmplugin-crd.yaml", "telemetry-crd.yaml"))


def validation_errors(doc):
    kind = doc.get("kind")
    versions = SCHEMAS.get(kind)
    if versions is None:
        return [f"unexpected kind {kind!r}"]
    if doc.get("apiVersion") not in versions:
        return [f"{kind}: apiVersion {doc.get('apiVersion')!r} is not served by the CRD"]
    validator, spec = versions[doc["apiVersion"]]
    errs = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(doc)]
    return errs + rule_errors(spec, doc.get("spec"))
