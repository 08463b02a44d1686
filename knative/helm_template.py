#!/usr/bin/env python3
"""`helm template` / `helm lint --strict` for the exam-results chart, without a
helm binary: the same Helm v4 engine through helm-python-sdk.

    python3 knative/helm_template.py [-f values.yaml ...] [--set a.b=c ...] [--set-file a.b=path ...] [-n NAMESPACE]
    python3 knative/helm_template.py --lint [-f values.yaml ...]

Rendering prints the manifests (hooks included, NOTES.txt left out) to stdout,
so it can be piped into `.ci/k8s_validate.py -`. A values file the chart
refuses (values.schema.json or a render-time check) exits 1 with Helm's
message on stderr.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import sys

import helm_python as helm
import yaml

CHART = pathlib.Path(__file__).resolve().parent / "exam-results"
#: `helm lint` checks against the chart's own floor (Chart.yaml's kubeVersion).
KUBE_FLOOR = "v" + yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"].lstrip(">= ").split("-")[0]


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chart", default=str(CHART))
    parser.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="Helm --set expression (repeatable)")
    parser.add_argument("--set-file", action="append", default=[], metavar="KEY=PATH",
                        help="Helm --set-file: the value of KEY is the content of PATH (repeatable)")
    parser.add_argument("-n", "--namespace", default="exam-results")
    parser.add_argument("--release-name", default="exam-results")
    parser.add_argument("--lint", action="store_true", help="run helm lint --strict instead of rendering")
    args = parser.parse_args(argv)
    helm.disable_logging()

    values: dict = {}
    for path in args.values:
        values = merge(values, yaml.safe_load(pathlib.Path(path).read_text()) or {})
    if args.set:
        values = merge(values, helm.parse_set_string(",".join(args.set)))
    for expression in args.set_file:
        key, _, path = expression.partition("=")
        value: object = pathlib.Path(path).read_text()
        for part in reversed(key.split(".")):
            value = {part: value}
        values = merge(values, value)

    if args.lint:
        report = helm.lint(args.chart, values or None, strict=True, namespace=args.namespace, kube_version=KUBE_FLOOR)
        for message in report["messages"]:
            level = {1: "INFO", 2: "WARNING", 3: "ERROR"}.get(message["severity"], "UNKNOWN")
            print(f"[{level}] {message['path']}: {message['error']}")
        failed = bool(report["errors"]) or any(m["severity"] >= 2 for m in report["messages"])
        print(f"{report['total_charts_linted']} chart(s) linted, {'failed' if failed else '0 chart(s) failed'}")
        return 1 if failed else 0

    try:
        with helm.Chart.load(args.chart) as chart:
            manifests = chart.render(values or None, name=args.release_name, namespace=args.namespace, is_install=True)
    except helm.HelmError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    for path in sorted(manifests):
        text = manifests[path].strip()
        if path.endswith("NOTES.txt") or not text:
            continue
        print(f"---\n# Source: {path}\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
