"""The chart's observability templates (knative/exam-results/templates/observability-*.yaml):
rendered with the real Helm engine, compared with the grafana/ sources, validated against the
prometheus-operator CRD schemas and Kubernetes' own."""
from __future__ import annotations

import json
import re
import sys

import pytest
import yaml

from conftest import CHART, CHART_RULES, DASHBOARD_DIR, GRAFANA, REPO, RULE_TESTS, RULES, require_tool, run

helm = pytest.importorskip("helm_python")
helm.disable_logging()
sys.path.insert(0, str(REPO / ".ci"))

# Render the CRD-backed objects even though no cluster answers .Capabilities here.
ENABLED = {"observability": {"prometheusRule": {"enabled": True}, "podMonitors": {"enabled": True}}}


# Helm's -f/--set merge, as the chart's own tests implement it.
sys.path.insert(0, str(REPO / "knative" / "tests"))
from chart_support import deep_merge  # noqa: E402


def render(values=None, namespace="exam-results"):
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name="exam-results", namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [d for d in yaml.safe_load_all(text) if d]
    return objects


def find(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


@pytest.fixture(scope="module")
def enabled():
    return render(ENABLED)


def test_chart_files_are_symlinks_to_the_grafana_sources():
    """The dashboards and the CloudNativePG query exist once, in grafana/; the rules file is the
    generator's second output (with the release's tokens), checked by test_generate.py."""
    links = {
        "observability/postgres-queries.yaml": GRAFANA / "postgres" / "queries.yaml",
    }
    for f in DASHBOARD_DIR.glob("*.json"):
        links[f"observability/dashboards/{f.name}"] = f
    for rel, source in links.items():
        link = CHART / rel
        assert link.is_symlink(), f"{link} must be a symlink to {source}, not a copy"
        assert link.resolve() == source.resolve()
    shipped = {p.name for p in (CHART / "observability" / "dashboards").iterdir()}
    assert shipped == {f.name for f in DASHBOARD_DIR.glob("*.json")}


def test_without_prometheus_operator_crds_only_configmaps_render():
    objects = render()
    assert not find(objects, "PrometheusRule") and not find(objects, "PodMonitor")
    assert find(objects, "ConfigMap", "exam-results-service-dashboard")


def test_disabled_observability_renders_nothing_of_its_own():
    off = {"observability": {k: {"enabled": False} for k in
                             ("prometheusRule", "podMonitors", "dashboards", "cnpgQueries")}}
    objects = render(deep_merge(ENABLED, off))
    mine = [o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "observability"]
    assert mine == []


def rendered_groups(objects):
    (rule,) = find(objects, "PrometheusRule")
    return rule["spec"]["groups"]


def test_prometheusrule_with_default_values_is_the_local_rules_file(enabled):
    """grafana/alerts/exam-results.rules.yml (what Prometheus loads locally and promtool tests) is
    the PrometheusRule the chart renders for release exam-results in namespace exam-results with
    its default values: scope, thresholds and max-scale bounds included."""
    assert rendered_groups(enabled) == yaml.safe_load(RULES.read_text())["groups"]


def test_the_chart_fills_every_token_of_its_rules_file(enabled):
    text = CHART_RULES.read_text()
    tokens = set(re.findall(r"@@\w+@@", text))
    assert tokens, "the chart's rules file carries the release's scope as tokens"
    assert "@@" not in json.dumps(rendered_groups(enabled))


def test_pgbouncer_scope_names_the_deployment_the_chart_renders(enabled):
    (deployment,) = [d for d in find(enabled, "Deployment")
                     if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name") == "pgbouncer"]
    records = {r["record"]: r for g in rendered_groups(enabled) for r in g["rules"] if "record" in r}
    assert f'deployment="{deployment["metadata"]["name"]}"' in records["exam_results:pgbouncer_replicas_available"]["expr"]


def test_prometheusrule_max_scale_follows_the_chart_values(enabled):
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (limits,) = [g for g in rendered_groups(enabled) if g["name"] == "exam-results.scale-limits"]
    got = {r["labels"]["kn_service_name"]: r["expr"] for r in limits["rules"]}
    manifest = yaml.safe_load((CHART / "functions.yaml").read_text())["functions"]
    reads = [f for f in manifest if f["access"] == "read"]
    assert got == {f["name"]: f"vector({values['functions'][f['key']]['autoscaling']['maxScale']})" for f in reads}
    others_off = {f["key"]: {"enabled": False} for f in reads if f["key"] != "getResult"}
    changed = render(deep_merge(ENABLED, {"functions": {"getResult": {"autoscaling": {"maxScale": 7}}, **others_off}}))
    (limits,) = [g for g in rendered_groups(changed) if g["name"] == "exam-results.scale-limits"]
    assert limits["rules"] == [{"record": "exam_results:knative_max_scale", "expr": "vector(7)",
                                "labels": {"kn_service_name": "get-result"}}]


def test_rendered_rules_pass_the_promtool_unit_tests(enabled, tmp_path):
    promtool = require_tool("promtool")
    (tmp_path / RULES.name).write_text(yaml.safe_dump({"groups": rendered_groups(enabled)}, sort_keys=False))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    res = run([promtool, "test", "rules", RULE_TESTS.name], cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


# A release with its own scope: Postgres in another namespace under another cluster name, five
# PgBouncer pods with a disruption budget of one.
SCOPED = deep_merge(ENABLED, {"postgres": {"namespace": "databases", "clusterName": "results-pg"},
                              "pgbouncer": {"replicas": 5, "podDisruptionBudget": {"maxUnavailable": 1}}})


def volume_series(namespace, claim, free_bytes):
    return [{"series": f'kubelet_volume_stats_{m}{{job="kubelet",namespace="{namespace}",persistentvolumeclaim="{claim}"}}',
             "values": f"{v}x10"} for m, v in (("capacity_bytes", 100), ("available_bytes", free_bytes),
                                                ("used_bytes", 100 - free_bytes))]


def pgbouncer_series(namespace, deployment, available):
    return [{"series": f'kube_deployment_status_replicas_available{{namespace="{namespace}",deployment="{deployment}"}}',
             "values": f"{available}x10"}]


def promtool_alerts(groups, tmp_path, series, alertname, eval_time):
    """The alerts promtool's rule evaluation fires for these series: a unit test that expects
    none, whose failure output lists what fired."""
    promtool = require_tool("promtool")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    (tmp_path / "t.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series,
                   "alert_rule_test": [{"eval_time": eval_time, "alertname": alertname, "exp_alerts": []}]}]}))
    res = run([promtool, "test", "rules", "t.yml"], cwd=tmp_path)
    if res.returncode == 0:
        return []
    got = (res.stdout + res.stderr).split("got:", 1)[1]
    return sorted(set(re.findall(r'(?:persistentvolumeclaim|deployment)="([^"]+)"', got)))


def test_volume_alerts_follow_the_postgres_namespace_and_cluster_name(tmp_path):
    groups = rendered_groups(render(SCOPED, namespace="results"))
    series = (volume_series("databases", "results-pg-1", 1) + volume_series("databases", "results-pg-2-wal", 1)
              # not this release's: its claim names in another namespace, another cluster's claims
              + volume_series("results", "results-pg-1", 1) + volume_series("databases", "exam-results-db-1", 1)
              + volume_series("databases", "results-pg-1-backup", 1))
    fired = promtool_alerts(groups, tmp_path, series, "ExamResultsPersistentVolumeFillingUp", "5m")
    assert fired == ["results-pg-1", "results-pg-2-wal"]


def test_volume_claim_regex_from_values_is_escaped_for_promql(tmp_path):
    regex = 'pg-data-[0-9]+|pg\\.wal'  # a literal dot, escaped in the regex
    groups = rendered_groups(render(deep_merge(SCOPED, {"observability": {"alerts": {"postgresVolumes": {
        "claimRegex": regex}}}}), namespace="results"))
    series = (volume_series("databases", "pg-data-1", 1) + volume_series("databases", "pg.wal", 1)
              + volume_series("databases", "pgxwal", 1) + volume_series("databases", "results-pg-1", 1))
    fired = promtool_alerts(groups, tmp_path, series, "ExamResultsPersistentVolumeFillingUp", "5m")
    assert fired == ["pg-data-1", "pg.wal"]


@pytest.mark.parametrize("values, available, fires", [
    ({}, 4, False),                                                   # 5 replicas - 1 = 4
    ({}, 3, True),
    ({"pgbouncer": {"podDisruptionBudget": {"maxUnavailable": 2}}}, 3, False),    # 5 - 2 = 3
    ({"pgbouncer": {"podDisruptionBudget": {"maxUnavailable": 2}}}, 2, True),
    ({"observability": {"alerts": {"pgbouncer": {"minAvailable": 2}}}}, 2, False),
    ({"observability": {"alerts": {"pgbouncer": {"minAvailable": 2}}}}, 1, True),
], ids=["replicas-less-budget-met", "replicas-less-budget-short", "budget-of-two-met",
        "budget-of-two-short", "minAvailable-met", "minAvailable-short"])
def test_pgbouncer_alert_threshold_comes_from_the_values(tmp_path, values, available, fires):
    groups = rendered_groups(render(deep_merge(SCOPED, values), namespace="results"))
    series = (pgbouncer_series("results", "pgbouncer", available)
              # foreign poolers: the same name in another namespace, another name in this one
              + pgbouncer_series("other-team", "pgbouncer", 0) + pgbouncer_series("results", "billing-pgbouncer", 0))
    fired = promtool_alerts(groups, tmp_path, series, "ExamResultsPgBouncerPodsUnavailable", "8m")
    assert fired == (["pgbouncer"] if fires else [])


@pytest.mark.parametrize("value", [0, -1, "two", 1.5])
def test_pgbouncer_min_available_must_be_a_positive_whole_number(value):
    # refused by values.schema.json (or, for a value the schema lets through, the template)
    with pytest.raises(Exception, match="minAvailable"):
        render(deep_merge(ENABLED, {"observability": {"alerts": {"pgbouncer": {"minAvailable": value}}}}))


def test_runbook_base_url_adds_runbook_url_to_every_alert():
    base = "https://git.example.org/exam-results/blob/main/"
    objects = render(deep_merge(ENABLED, {"observability": {"prometheusRule": {
        "runbookBaseUrl": base, "labels": {"release": "kube-prometheus-stack"}}}}))
    (rule,) = find(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for a in alerts:
        assert a["annotations"]["runbook_url"] == base + f"docs/observability.md#{a['alert'].lower()}"


def test_dashboard_configmaps_hold_the_dashboards_for_the_grafana_sidecar(enabled):
    for f in DASHBOARD_DIR.glob("*.json"):
        (cm,) = find(enabled, "ConfigMap", f.stem + "-dashboard")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "Exam results"
        assert json.loads(cm["data"][f.name]) == json.loads(f.read_text())


def test_dashboard_sidecar_label_folder_and_namespace_are_settable():
    objects = render({"observability": {"dashboards": {
        "label": "grafana_dashboard_exam", "labelValue": "yes", "folder": "Results day",
        "folderAnnotation": "k8s-sidecar-target-directory", "namespace": "monitoring"}}})
    (cm,) = find(objects, "ConfigMap", "exam-results-service-dashboard")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard_exam"] == "yes"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["annotations"]["k8s-sidecar-target-directory"] == "Results day"


def test_cnpg_queries_configmap_holds_the_queries(enabled):
    (cm,) = find(enabled, "ConfigMap", "exam-results-cnpg-queries")
    assert cm["metadata"]["labels"]["cnpg.io/reload"] == ""
    assert yaml.safe_load(cm["data"]["queries"]) == yaml.safe_load((GRAFANA / "postgres" / "queries.yaml").read_text())
    moved = render({"postgres": {"namespace": "databases"}})
    (cm,) = find(moved, "ConfigMap", "exam-results-cnpg-queries")
    assert cm["metadata"]["namespace"] == "databases"


def test_podmonitors_select_the_pods_and_ports_the_chart_renders(enabled):
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (fn_pm,) = find(enabled, "PodMonitor", "exam-results-functions")
    (endpoint,) = fn_pm["spec"]["podMetricsEndpoints"]
    assert endpoint["portNumber"] == values["functionDefaults"]["metricsPort"]
    selector = fn_pm["spec"]["selector"]["matchLabels"]
    ksvcs = find(enabled, "Service")
    ksvcs = [k for k in ksvcs if k["apiVersion"].startswith("serving.knative.dev")]
    manifest = yaml.safe_load((CHART / "functions.yaml").read_text())["functions"]
    assert len(ksvcs) == len(manifest)
    for k in ksvcs:
        labels = k["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), k["metadata"]["name"]
        env = {e["name"]: e.get("value") for e in k["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["METRICS_PORT"] == str(endpoint["portNumber"])
    # The CD gates select a candidate revision's series by kn_revision_name (docs/cicd.md).
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert relabel["kn_revision_name"] == ["__meta_kubernetes_pod_label_serving_knative_dev_revision"]

    (pgb_pm,) = find(enabled, "PodMonitor", "exam-results-pgbouncer")
    selector = pgb_pm["spec"]["selector"]["matchLabels"]
    (port_name,) = {e["port"] for e in pgb_pm["spec"]["podMetricsEndpoints"]}
    deployments = [d for d in find(enabled, "Deployment")
                   if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
    assert len(deployments) == 1, "the PgBouncer PodMonitor selects exactly the PgBouncer Deployment"
    ports = [p["name"] for c in deployments[0]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])]
    assert port_name in ports


def test_observability_objects_validate_against_their_schemas(enabled):
    k8s_validate = pytest.importorskip("k8s_validate")
    mine = [o for o in enabled if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "observability"]
    assert {o["kind"] for o in mine} == {"PrometheusRule", "PodMonitor", "ConfigMap"}
    problems = k8s_validate.validate_objects(mine)
    assert problems == []


def test_functions_podmonitor_can_use_the_older_target_port():
    objects = render(deep_merge(ENABLED, {"observability": {"podMonitors": {"useTargetPort": True}}}))
    (pm,) = find(objects, "PodMonitor", "exam-results-functions")
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["targetPort"] == 9464 and "portNumber" not in endpoint
    k8s_validate = pytest.importorskip("k8s_validate")
    assert k8s_validate.validate_objects([pm]) == []
