"""Every Knative metric the rules and dashboards read exists in the Knative Serving we state as
the floor: its source (knative.dev/serving and the knative.dev/pkg it requires, fetched with
`go mod download`) defines an OpenTelemetry instrument whose Prometheus name is that name, and
every label the queries select Knative series by is one of Knative's attributes (or a label the
scrape adds).

The version is the one knative/go.mod pins for knative.dev/serving (v0.46.x = Serving 1.19)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import generate
from conftest import REPO, RULES

GO = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
pytestmark = pytest.mark.skipif(GO is None, reason="Go not found: install Go 1.26 (/usr/local/go/bin/go) "
                                                   "to check Knative metric names against Knative's source")

# The floor the docs state, used only while knative/go.mod does not pin knative.dev/serving.
# Serving v0.46.0 and v0.46.1 build with go.opentelemetry.io/otel/exporters/prometheus v0.59.0, a
# retracted release that appends a unit in braces to the name (kn_revision_pods_desired__item_);
# v0.46.4 builds with v0.59.1, which drops it.
FLOOR = "v0.46.4"
BRACKETED_UNIT_EXPORTERS = {"v0.59.0"}

INSTRUMENT = re.compile(r"\.(Int64|Float64)(Counter|UpDownCounter|Histogram|Gauge|ObservableCounter|"
                        r"ObservableUpDownCounter|ObservableGauge)\(\s*\"([A-Za-z0-9_.]+)\"")
UNIT = re.compile(r"WithUnit\(\s*\"([^\"]*)\"\s*\)")
ATTRIBUTE = re.compile(r"attributekey\.(?:String|Bool|Int|Int64|Float64)\(\s*\"([a-z0-9_.]+)\"\s*\)")
# The unit suffixes of go.opentelemetry.io/otel/exporters/prometheus (exporter.go, unitSuffixes)
# for the units Knative uses; a unit in braces ({item}, {pod}) is an annotation and adds nothing.
UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio", "%": "percent"}
PER_UNIT = {"s": "second", "min": "minute", "h": "hour", "d": "day"}
# Labels Prometheus adds when it scrapes (target labels), not Knative attributes.
SCRAPE_LABELS = {"namespace", "pod", "job", "instance", "service", "container", "endpoint", "le"}


def serving_version() -> str:
    gomod = REPO / "knative" / "go.mod"
    if gomod.exists():
        m = re.search(r"^\s*(?:require\s+)?knative\.dev/serving\s+(v\S+)", gomod.read_text(), flags=re.M)
        if m:
            return m.group(1)
    return FLOOR


def module_dir(module: str, version: str) -> Path:
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=mod")
    res = subprocess.run([GO, "mod", "download", "-json", f"{module}@{version}"], capture_output=True,
                         text=True, timeout=300, env=env, cwd="/")
    info = json.loads(res.stdout or "{}")
    assert res.returncode == 0 and info.get("Dir"), f"go mod download {module}@{version}: {res.stdout}{res.stderr}"
    return Path(info["Dir"])


def go_sources(root: Path):
    for path in sorted(root.rglob("*.go")):
        rel = path.relative_to(root).parts
        if path.name.endswith("_test.go") or rel[0] in {"test", "third_party", "vendor", "hack"}:
            continue
        yield path


def call_text(text: str, start: int) -> str:
    """The text of the call whose opening parenthesis ends at start (to its matching close)."""
    depth, i = 1, start
    while depth and i < len(text):
        if text[i] == '"':
            i = text.index('"', i + 1)
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    return text[start:i]


def prometheus_names(name: str, kind: str, unit: str, bracketed_units: bool = False) -> set[str]:
    """The series names the OpenTelemetry Prometheus exporter gives one instrument (underscore
    escaping, unit and type suffixes, as a scraper without UTF-8 names receives them)."""
    base = re.sub(r"[^A-Za-z0-9_:]", "_", name)
    if bracketed_units and unit.startswith("{"):
        base = re.sub(r"[^A-Za-z0-9_:]", "_", f"{base}_{unit}")
    unit = re.sub(r"\{[^}]*\}", "", unit)
    main, _, per = unit.partition("/")
    suffix = "_".join(x for x in (UNIT_SUFFIXES.get(main, main),
                                   f"per_{PER_UNIT.get(per, per)}" if per else "") if x)
    if suffix and not base.endswith(suffix):
        base += f"_{suffix}"
    if kind in {"Counter", "ObservableCounter"}:
        return {base.removesuffix("_total") + "_total"}
    if kind == "Histogram":
        return {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return {base}


def knative_definitions(roots: list[Path], bracketed_units: bool = False) -> tuple[dict[str, str], set[str]]:
    """Prometheus name -> where Knative defines it; and Knative's attribute keys as labels."""
    names, labels = {}, set()
    for root in roots:
        for path in go_sources(root):
            text = path.read_text(errors="replace")
            for m in INSTRUMENT.finditer(text):
                # the last WithUnit wins, as with every OpenTelemetry option
                units = UNIT.findall(call_text(text, m.end() - len(m.group(3)) - 2))
                for n in prometheus_names(m.group(3), m.group(2), units[-1] if units else "", bracketed_units):
                    names[n] = f"{root.name}/{path.relative_to(root)}: {m.group(3)}"
            labels |= {a.replace(".", "_") for a in ATTRIBUTE.findall(text)}
    return names, labels


def strip_labels(expr: str) -> str:
    """expr without what can only be a label: selectors' matchers, grouping and matching lists,
    string literals."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    return re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)


def knative_metrics_used(exprs: list[str]) -> set[str]:
    return {n for e in exprs for n in re.findall(r"(?<![\w:])(kn_[a-z0-9_]+)", strip_labels(e))}


def knative_labels_used(exprs: list[str]) -> set[str]:
    out = set()
    for e in exprs:
        for metric, body in re.findall(r"(?<![\w:])(kn_[a-z0-9_]+)\{([^}]*)\}", e):
            out |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", body))
        if re.search(r"(?<![\w:])kn_", strip_labels(e)):
            for g in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", e):
                out |= {x.strip() for x in g.split(",") if x.strip()}
    return out


def exprs_of_rules_and_dashboards() -> list[str]:
    rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    return rules + [q["expr"] for q in generate.panel_queries()]


@pytest.fixture(scope="module")
def knative():
    version = serving_version()
    serving = module_dir("knative.dev/serving", version)
    pkg_version = re.search(r"^\s*knative\.dev/pkg\s+(v\S+)", (serving / "go.mod").read_text(), flags=re.M).group(1)
    pkg = module_dir("knative.dev/pkg", pkg_version)
    exporter = exporter_version(serving)
    names, labels = knative_definitions([serving, pkg], exporter in BRACKETED_UNIT_EXPORTERS)
    print(f"\nknative.dev/serving@{version}, knative.dev/pkg@{pkg_version}, "
          f"exporters/prometheus@{exporter}: {len(names)} series names")
    return names, labels


def exporter_version(serving: Path) -> str:
    m = re.search(r"^\s*go\.opentelemetry\.io/otel/exporters/prometheus\s+(v\S+)",
                  (serving / "go.mod").read_text(), flags=re.M)
    return m.group(1) if m else ""


def test_the_rules_and_dashboards_read_knative_metrics():
    used = knative_metrics_used(exprs_of_rules_and_dashboards())
    assert {"kn_revision_pods_desired", "kn_queueproxy_depth"} <= used, used


def test_every_knative_metric_used_exists_in_the_knative_floor(knative):
    names, _ = knative
    used = knative_metrics_used(exprs_of_rules_and_dashboards())
    missing = sorted(used - set(names))
    assert missing == [], (f"not defined by knative.dev/serving {serving_version()}: {missing} "
                           f"(Knative's names there: {sorted(n for n in names if n.startswith('kn_revision'))})")


def test_every_label_selecting_knative_series_is_a_knative_attribute_or_a_scrape_label(knative):
    _, labels = knative
    used = knative_labels_used(exprs_of_rules_and_dashboards())
    assert {"k8s_namespace_name", "kn_service_name", "kn_revision_name"} <= labels
    assert sorted(used - labels - SCRAPE_LABELS) == []


@pytest.mark.parametrize("expr, wrong", [
    # the queue-proxy names before Serving 1.19 renamed them
    ('kn_serving_queue_depth{namespace="x"}', "kn_serving_queue_depth"),
    ("rate(kn_serving_invocation_duration_seconds_bucket[5m])", "kn_serving_invocation_duration_seconds_bucket"),
    ('max by (kn_service_name) (kn_revision_pods_wanted{k8s_namespace_name="x"})', "kn_revision_pods_wanted"),
], ids=["old-queue-depth", "old-invocation-duration", "misspelt"])
def test_a_name_knative_does_not_define_is_reported(knative, expr, wrong):
    names, _ = knative
    assert knative_metrics_used([expr]) - set(names) == {wrong}


def test_serving_built_with_the_retracted_exporter_lacks_the_gauge_names_we_use():
    """Why the floor is v0.46.4: v0.46.0's autoscaler gauges reach Prometheus under other names."""
    serving = module_dir("knative.dev/serving", "v0.46.0")
    assert exporter_version(serving) in BRACKETED_UNIT_EXPORTERS
    pkg_version = re.search(r"^\s*knative\.dev/pkg\s+(v\S+)", (serving / "go.mod").read_text(), flags=re.M).group(1)
    names, _ = knative_definitions([serving, module_dir("knative.dev/pkg", pkg_version)], bracketed_units=True)
    missing = knative_metrics_used(exprs_of_rules_and_dashboards()) - set(names)
    assert "kn_revision_pods_desired" in missing and "kn_revision_panic_mode" not in missing


def test_name_translation_follows_the_prometheus_exporter():
    assert prometheus_names("kn.revision.pods.desired", "Gauge", "{item}") == {"kn_revision_pods_desired"}
    assert prometheus_names("kn.queueproxy.app.duration", "Histogram", "s") == {
        "kn_queueproxy_app_duration_seconds_bucket", "kn_queueproxy_app_duration_seconds_sum",
        "kn_queueproxy_app_duration_seconds_count"}
    assert prometheus_names("kn.workqueue.adds", "Counter", "{item}") == {"kn_workqueue_adds_total"}
    assert prometheus_names("kn.revision.rps.stable", "Gauge", "{request}/s") == {"kn_revision_rps_stable_per_second"}
    # the retracted exporter v0.59.0 kept a bracketed unit in the name
    assert prometheus_names("kn.revision.pods.desired", "Gauge", "{item}", bracketed_units=True) == {
        "kn_revision_pods_desired__item_"}
    assert knative_metrics_used(['sum by (kn_revision_name) (kn_revision_pods_count{kn_service_name=~"$f"})']) \
        == {"kn_revision_pods_count"}
