"""Renders the kafclaw chart with Helm and validates every manifest against the Kubernetes schemas.

    python helm_render.py CHART VALUES.json [--api-version GROUP/VERSION]... [--namespace NS]

Rendering is Helm's own (the Helm v4 Go SDK in `helm-python-sdk`, through its C ABI): a
client-side dry-run install, which is what `helm template --api-versions ... --kube-version ...`
does, so `.Capabilities` and `lookup` behave as in `helm template`. Each resulting document is
validated with `kubernetes-validate` (the Kubernetes OpenAPI schemas as JSON Schema, strict:
unknown fields are errors) against the oldest and the newest Kubernetes the chart supports.
Kinds with no schema there (custom resources) are listed as unchecked.

`helm lint --strict` runs on the same values first (its warnings are errors here).

Prints one JSON object: {"documents", "checked", "unchecked", "errors", "lint"} (lists)
and exits 1 when a template fails or a manifest is invalid. Used by engine/tests/it/deploy/helm.rs.
"""

import json
import os
import sys
import tempfile

import helm_python as helm
import kubernetes_validate
import yaml
from helm_python import _native

# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest the
# schemas know.
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.utils.latest_version()]


def render(chart_dir, values, api_versions, namespace):
    # No cluster is contacted: a client-side dry run swaps in fake clients.
    with helm.Chart.load(chart_dir) as chart, helm.Config(namespace=namespace) as cfg:
        opts = {
            "dry_run": "client",
            "namespace": namespace,
            "api_versions": api_versions,
            "kube_version": "v" + KUBE_VERSIONS[-1],
        }
        # Config.install() does not expose api_versions/kube_version; the C ABI takes them
        # (helm-c-sdk InstallOptions, as `helm install --dry-run=client --api-versions`).
        payload = _native.call_string(
            "helm_install",
            cfg._raw(),
            cfg._context_arg(None),
            chart._raw(),
            None,
            "demo",
            json.dumps(values),
            json.dumps(opts),
        )
    return json.loads(payload)["manifest"]


def main():
    args = sys.argv[1:]
    chart_dir, values_file = args[0], args[1]
    api_versions, namespace = [], "kafclaw"
    i = 2
    while i < len(args):
        if args[i] == "--api-version":
            api_versions.append(args[i + 1])
        elif args[i] == "--namespace":
            namespace = args[i + 1]
        else:
            sys.exit(f"unknown argument {args[i]}")
        i += 2
    with open(values_file) as f:
        values = json.load(f)

    out = {"documents": [], "checked": [], "unchecked": [], "errors": [], "lint": []}
    try:
        # `helm lint --strict` with the same values: warnings and errors (severity >= 2) fail.
        report = helm.lint(chart_dir, values, strict=True, namespace=namespace, kube_version="v" + KUBE_VERSIONS[0])
        out["lint"] = [f"{m['path']}: {m['error']}" for m in report["messages"]]
        out["errors"] += [f"helm lint: {m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2]
        out["errors"] += [f"helm lint: {e}" for e in report["errors"]]
        manifest = render(chart_dir, values, api_versions, namespace)
    except helm.HelmError as e:
        out["errors"].append(f"helm: {e}")
        print(json.dumps(out))
        sys.exit(1)
    for doc in yaml.safe_load_all(manifest):
        if not doc:
            continue
        out["documents"].append(doc)
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                out["checked"].append(f"{name} (Kubernetes {version}, strict)")
            except kubernetes_validate.SchemaNotFoundError:
                out["unchecked"].append(f"{name}: no schema for {doc.get('apiVersion')} in Kubernetes {version}")
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                out["errors"].append(f"{name} (Kubernetes {version}) at {path}: {e.message}")
    print(json.dumps(out))
    sys.exit(1 if out["errors"] else 0)


if __name__ == "__main__":
    # Helm keeps caches and configuration under these; never the user's.
    scratch = tempfile.mkdtemp(prefix="kafclaw-helm-")
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        os.environ[var] = os.path.join(scratch, var.lower())
    os.environ["KUBECONFIG"] = os.devnull
    main()
