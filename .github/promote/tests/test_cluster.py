"""How the rollout drives the chart: the values override, the helm command
line, and (with the real Helm engine) what the chart renders from them."""

from __future__ import annotations

import copy
import re
import stat
import sys
from pathlib import Path

import pytest
import yaml

from promote.cluster import ClusterError, HelmCluster, override_values, values_key
from promote.manifest import MANIFEST
from promote.knative import TrafficTarget
from promote.rollout import RolloutFailed

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "knative" / "exam-results"
DIGEST = "sha256:" + "ab" * 32
sys.path.insert(0, str(REPO / ".ci"))
import k8s_validate  # noqa: E402  (shared validator: $CRD_SCHEMA_LOCATION, a directory or a URL prefix)


def test_values_keys_are_the_manifests_and_the_charts():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert [values_key(f.name) for f in MANIFEST] == [f.key for f in MANIFEST]
    assert sorted(f.key for f in MANIFEST) == sorted(values["functions"])


def test_the_override_sets_only_the_promoted_functions_revision_image_and_traffic():
    values = override_values("get-result", "abc1234", DIGEST, [
        TrafficTarget("get-result-0a1b2c3", 90), TrafficTarget("get-result-abc1234", 10, "candidate")])
    assert values == {"functions": {"getResult": {
        "traffic": [{"revisionName": "get-result-0a1b2c3", "percent": 90},
                    {"revisionName": "get-result-abc1234", "percent": 10, "tag": "candidate"}],
        "revision": "abc1234",
        "image": {"digest": DIGEST},
    }}}


def test_a_rollback_override_keeps_the_template_and_image():
    values = override_values("get-result", None, None, [TrafficTarget("get-result-0a1b2c3", 100)])
    assert values == {"functions": {"getResult": {"traffic": [{"revisionName": "get-result-0a1b2c3",
                                                               "percent": 100}]}}}


@pytest.mark.parametrize("bad", ["latest", "sha256:abc", "ab" * 32])
def test_only_full_sha256_digests_are_accepted(bad):
    with pytest.raises(ValueError):
        override_values("get-result", "x", bad, [TrafficTarget("get-result-x", 100)])


def _fake_helm(tmp_path: Path, exit_code: int = 0) -> Path:
    log = tmp_path / "helm.log"
    script = tmp_path / "helm"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        # copy the values file: it is deleted when helm returns
        'while [ $# -gt 0 ]; do if [ "$1" = --values ]; then cat "$2" >> ' + str(tmp_path / "values.log") + "; fi; shift; done\n"
        + ("echo 'Error: UPGRADE FAILED: admission webhook \"validation.webhook.serving.knative.dev\" denied the request' >&2\n"
           if exit_code else "")
        + f"exit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_the_first_upgrade_runs_chart_hooks_and_later_ones_do_not(tmp_path):
    helm = _fake_helm(tmp_path)
    cluster = HelmCluster("exam-results", "exam-results", str(CHART), helm=str(helm))
    cluster.apply("get-result", "abc1234", DIGEST, [TrafficTarget("get-result-0a1b2c3", 100),
                                                              TrafficTarget("get-result-abc1234", 0, "candidate")])
    cluster.apply("get-result", "abc1234", None, [TrafficTarget("get-result-0a1b2c3", 90),
                                                            TrafficTarget("get-result-abc1234", 10, "candidate")])
    calls = (tmp_path / "helm.log").read_text().splitlines()
    assert len(calls) == 2
    assert calls[0].startswith(f"upgrade exam-results {CHART} --namespace exam-results --reset-then-reuse-values "
                               "--values ")
    assert "--no-hooks" not in calls[0] and calls[1].endswith("--no-hooks")
    docs = list(yaml.safe_load_all((tmp_path / "values.log").read_text().replace("functions:", "---\nfunctions:")))
    docs = [d for d in docs if d]
    assert docs[0]["functions"]["getResult"]["image"] == {"digest": DIGEST}
    assert docs[1]["functions"]["getResult"]["traffic"][1] == {"revisionName": "get-result-abc1234", "percent": 10,
                                                               "tag": "candidate"}


def test_a_refused_upgrade_is_a_rollout_failure_with_helms_message(tmp_path):
    cluster = HelmCluster("exam-results", "exam-results", str(CHART), helm=str(_fake_helm(tmp_path, exit_code=1)))
    with pytest.raises(RolloutFailed, match="denied the request") as info:
        cluster.apply("get-result", None, None, [TrafficTarget("get-result-0a1b2c3", 100)])
    assert isinstance(info.value, ClusterError)


def test_kubectl_output_is_parsed_into_service_state(tmp_path, fixtures_dir):
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'args'}\ncat {fixtures_dir / 'get-result-candidate-ready.json'}\n")
    kubectl.chmod(0o755)
    state = HelmCluster("exam-results", "exam-results", str(CHART), kubectl=str(kubectl)).get("get-result")
    assert (tmp_path / "args").read_text().split() == ["get", "ksvc", "get-result", "--namespace", "exam-results",
                                                        "--output", "json"]
    assert state.tag_url("candidate") == "https://candidate-get-result.exam-results.example.org"


# -- the override through the real chart -------------------------------------

helm_python = pytest.importorskip("helm_python", reason="pip install helm-python-sdk (.ci/requirements-knative.txt)")


def _render(values: dict) -> dict[str, dict]:
    helm_python.disable_logging()
    with helm_python.Chart.load(CHART) as chart:
        manifests = chart.render(values, name="exam-results", namespace="exam-results", is_install=False)
    out = {}
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "Service" and doc["apiVersion"].startswith("serving.knative.dev/"):
                out[doc["metadata"]["name"]] = doc
    return out


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


@pytest.mark.skipif(not (CHART / "Chart.yaml").exists(), reason="chart not present")
def test_each_rollout_step_renders_the_intended_knative_service_and_leaves_the_others_alone():
    helm_python.disable_logging()
    # the release as it stands: get-result pinned to an earlier revision
    release = override_values("get-result", "0a1b2c3", "sha256:" + "11" * 32,
                              [TrafficTarget("get-result-0a1b2c3", 100)])
    before = _render(release)
    steps = [
        override_values("get-result", "abc1234", DIGEST,
                        [TrafficTarget("get-result-0a1b2c3", 100), TrafficTarget("get-result-abc1234", 0, "candidate")]),
        override_values("get-result", "abc1234", None,
                        [TrafficTarget("get-result-0a1b2c3", 90), TrafficTarget("get-result-abc1234", 10, "candidate")]),
        override_values("get-result", "abc1234", None,
                        [TrafficTarget("get-result-abc1234", 100), TrafficTarget("get-result-0a1b2c3", 0, "previous")]),
    ]
    values = release
    names = set()
    for over in steps:
        values = _merge(values, over)  # what --reset-then-reuse-values plus --values does
        after = _render(values)
        ksvc = after["get-result"]
        assert k8s_validate.validate_objects([ksvc]) == []
        # <service>-<commit>-<hash of the rendered template>: traffic steps leave the template alone
        name = ksvc["spec"]["template"]["metadata"]["name"]
        assert re.fullmatch(r"get-result-abc1234-[0-9a-f]{6}", name), name
        names.add(name)
        assert ksvc["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@" + DIGEST)
        wanted = over["functions"]["getResult"]["traffic"]
        assert [(t["revisionName"], t["percent"], t.get("tag")) for t in ksvc["spec"]["traffic"]] == [
            (t["revisionName"], t["percent"], t.get("tag")) for t in wanted]
        assert all(t["latestRevision"] is False for t in ksvc["spec"]["traffic"])
        for other in ("create-result", "list-results", "update-result", "delete-result"):
            assert after[other] == before[other], f"{other} changed while get-result was promoted"
    assert len(names) == 1, names


def test_the_recorded_states_are_valid_knative_services(fixtures_dir):
    import json

    files = sorted(fixtures_dir.glob("*.json"))
    assert len(files) >= 7
    for f in files:
        assert k8s_validate.validate_objects([json.loads(f.read_text())]) == [], f.name


def test_deploy_candidates_puts_every_candidate_at_zero_in_one_upgrade(tmp_path, fixtures_dir):
    """The CLI path: kubectl reads each Service, one helm upgrade carries all."""
    import json as _json
    import os
    import subprocess

    kubectl = tmp_path / "kubectl"
    # answers `kubectl get ksvc <name> ...` with the recorded stable state renamed to <name>
    kubectl.write_text("#!/bin/sh\nsed \"s/get-result/$3/g\" " + str(fixtures_dir / "get-result-stable.json") + "\n")
    kubectl.chmod(0o755)
    _fake_helm(tmp_path)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", PYTHONPATH=str(REPO / ".github" / "promote"))
    env.pop("GITHUB_SHA", None)
    digests = {"get-result": "sha256:" + "aa" * 32, "list-results": "sha256:" + "bb" * 32}
    proc = subprocess.run([sys.executable, "-m", "promote", "deploy-candidates", "--namespace", "exam-results",
                           "--functions", "get-result,list-results", "--suffix", "abc1234", "--commit", "f" * 40,
                           "--digests", _json.dumps(digests)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "helm.log").read_text().splitlines()
    assert len(calls) == 1 and f"--description chart@{'f' * 40}" in calls[0]
    values = yaml.safe_load((tmp_path / "values.log").read_text())
    assert values["functions"]["getResult"] == {
        "traffic": [{"revisionName": "get-result-0a1b2c3", "percent": 100},
                    {"latestRevision": True, "percent": 0, "tag": "candidate"},
                    {"revisionName": "get-result-7e8f901", "percent": 0, "tag": "previous"}],
        "revision": "abc1234", "image": {"digest": digests["get-result"]}}
    assert values["functions"]["listResults"]["traffic"][0] == {"revisionName": "list-results-0a1b2c3",
                                                                "percent": 100}
    assert values["functions"]["listResults"]["image"] == {"digest": digests["list-results"]}
