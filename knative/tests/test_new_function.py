"""A function added to functions.yaml alone is deployed by the chart: its
Knative Service, ServiceAccount, pool arithmetic and `helm test` Pod follow
the manifest, with the settings of its access from newFunctionDefaults."""

from __future__ import annotations

import shutil

import helm_python as helm
import yaml

import chart_support as cs

NEW = {"name": "year-summary", "key": "yearSummary", "access": "read", "auth": "public", "method": "GET",
       "route": "/summaries/{exam_year}", "port": 8098}


def _render_with(tmp_path, entry: dict) -> list[dict]:
    chart = tmp_path / "exam-results"
    shutil.copytree(cs.CHART, chart, symlinks=False)
    manifest = yaml.safe_load((chart / "functions.yaml").read_text())
    manifest["functions"].append(entry)
    (chart / "functions.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    with helm.Chart.load(chart) as loaded:
        manifests = loaded.render(None, name=cs.RELEASE, namespace=cs.NAMESPACE, is_install=True)
    return [doc for path, text in sorted(manifests.items()) if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


def _named(objects, kind, name):
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]


def test_a_function_only_in_the_manifest_gets_a_knative_service_with_its_access_defaults(tmp_path):
    objects = _render_with(tmp_path, NEW)
    [ksvc] = [o for o in _named(objects, "Service", "year-summary") if o["apiVersion"].startswith("serving")]
    read = cs.chart_defaults()["newFunctionDefaults"]["read"]
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/max-scale"] == str(read["autoscaling"]["maxScale"])
    assert ksvc["spec"]["template"]["spec"]["containerConcurrency"] == read["containerConcurrency"]
    env = cs.env_map(cs.ksvc_container(ksvc))
    assert "READ_FALLBACK_DATABASE_URL" in env, sorted(env)
    assert _named(objects, "ServiceAccount", "year-summary")
    assert _named(objects, "Pod", "year-summary-test")


def test_a_new_write_function_gets_the_write_defaults(tmp_path):
    entry = dict(NEW, name="approve-result", key="approveResult", access="write", auth="write-token",
                 method="PUT", route="/approvals/{exam_year}", port=8099)
    objects = _render_with(tmp_path, entry)
    [ksvc] = [o for o in _named(objects, "Service", "approve-result") if o["apiVersion"].startswith("serving")]
    write = cs.chart_defaults()["newFunctionDefaults"]["write"]
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/max-scale"] == str(write["autoscaling"]["maxScale"])
    env = cs.env_map(cs.ksvc_container(ksvc))
    assert "READ_FALLBACK_DATABASE_URL" not in env
