"""Validates rendered Kubernetes objects, for tests/deploy.rs (run with the deploy venv's python).

Built-in kinds: kubernetes-validate's bundled Kubernetes JSON schemas, strict (unknown fields are
errors). CRD kinds (ServiceMonitor, PrometheusRule, ScaledObject, TriggerAuthentication): the
CRDs' own openAPIV3Schema (tests/deploy/crds/, copied from prometheus-operator and KEDA), made
strict the same way. Every object must have a schema: an unknown kind is an error.

Usage: validate.py KUBERNETES_VERSION RENDERED.yaml OUT.json
Writes the objects as a JSON list to OUT.json; prints one line per problem; exit 1 on any.
It checks schemas only; what the objects must say is asserted in tests/deploy.rs.
"""

import copy
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

CRDS = pathlib.Path(__file__).parent / "crds"


def strict(schema):
    """A structural CRD schema with additionalProperties: false wherever fields are declared and
    unknown fields are not explicitly kept (what `kubectl apply --validate=strict` rejects)."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    # metadata is the ObjectMeta every object has; the CRD schema leaves it open.
    s.setdefault("properties", {})["metadata"] = {"type": "object"}
    return s


def crd_schemas():
    out = {}
    for f in sorted(CRDS.glob("*.json")):
        c = json.loads(f.read_text())
        out[(f"{c['group']}/{c['version']}", c["kind"])] = strict(c["schema"])
    return out


def main():
    version, rendered, out = sys.argv[1], sys.argv[2], sys.argv[3]
    docs = [d for d in yaml.safe_load_all(pathlib.Path(rendered).read_text()) if d]
    crds = crd_schemas()
    problems = []
    for d in docs:
        name = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        key = (d.get("apiVersion"), d.get("kind"))
        if key in crds:
            v = jsonschema.Draft202012Validator(crds[key])
            for e in sorted(v.iter_errors(d), key=lambda e: list(e.absolute_path)):
                path = ".".join(str(p) for p in e.absolute_path)
                problems.append(f"{name}: {path}: {e.message}")
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.absolute_path)
            problems.append(f"{name}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name}: no schema for {key[0]} {key[1]}")
    pathlib.Path(out).write_text(json.dumps(docs))
    for p in problems:
        print(p)
    print(f"validated {len(docs)} objects against Kubernetes {version}: {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
