"""The rollout command line end to end, in real time: fake ``kubectl`` and
``helm`` executables on PATH that keep the Service's state in a file (helm
records the values, kubectl renders the Service from them as a Knative
controller that reconciles at once would), and the real Prometheus, whose
``get-result-live*`` series run past the wall clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PROMOTE = HERE.parent

FAKE_HELM = '''#!{python}
import json, sys, yaml
from pathlib import Path
state = Path({state!r})
args = sys.argv[1:]
with open(state / "helm.log", "a") as fh:
    fh.write(" ".join(args) + "\\n")
over = yaml.safe_load(open(args[args.index("--values") + 1]))
values = json.loads((state / "values.json").read_text()) if (state / "values.json").exists() else {{}}
for key, fn in over["functions"].items():
    values.setdefault(key, {{}}).update(fn)
(state / "values.json").write_text(json.dumps(values))
'''

FAKE_KUBECTL = '''#!{python}
import json, sys
from pathlib import Path
state = Path({state!r})
name = sys.argv[3]
obj = json.loads(Path({fixture!r}).read_text().replace("get-result", name))
values = json.loads((state / "values.json").read_text()) if (state / "values.json").exists() else {{}}
key = name.split("-")[0] + "".join(p.capitalize() for p in name.split("-")[1:])
fn = values.get(key)
if fn:
    rev = f"{{name}}-{{fn['revision']}}"
    obj["metadata"]["generation"] += 1
    obj["status"]["observedGeneration"] = obj["metadata"]["generation"]
    obj["spec"]["template"]["metadata"]["name"] = rev
    obj["status"]["latestCreatedRevisionName"] = obj["status"]["latestReadyRevisionName"] = rev
    spec, status = [], []
    for t in fn["traffic"]:
        latest = bool(t.get("latestRevision"))
        spec.append({{**({{}} if latest else {{"revisionName": t["revisionName"]}}), "latestRevision": latest,
                      "percent": t["percent"], **({{"tag": t["tag"]}} if t.get("tag") else {{}})}})
        status.append(dict(spec[-1], revisionName=rev if latest else t["revisionName"],
                           **({{"url": f"https://{{t['tag']}}-{{name}}.example.org"}} if t.get("tag") else {{}})))
    obj["spec"]["traffic"], obj["status"]["traffic"] = spec, status
print(json.dumps(obj))
'''


def _fakes(tmp_path: Path) -> dict:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    fixture = HERE / "fixtures" / "ksvc" / "get-result-stable.json"
    for name, text in (("helm", FAKE_HELM), ("kubectl", FAKE_KUBECTL)):
        exe = bin_dir / name
        exe.write_text(text.format(python=sys.executable, state=str(state), fixture=str(fixture)))
        exe.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=str(PROMOTE),
               GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"), GITHUB_OUTPUT=str(tmp_path / "output"))
    env.pop("GITHUB_SHA", None)
    return {"env": env, "state": state}


def _rollout(prometheus, tmp_path: Path, suffix: str) -> tuple[subprocess.CompletedProcess, dict]:
    fakes = _fakes(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "promote", "rollout", "--namespace", "exam-results", "--release", "exam-results",
         "--chart", "knative/exam-results", "--commit", "c" * 40, "--function", "get-result", "--suffix", suffix,
         "--digest", "sha256:" + "ab" * 32, "--environment", "staging",
         "--prometheus-url", prometheus.url, "--max-error-ratio", "0.01", "--max-p99-seconds", "0.5",
         "--min-requests", "10", "--window", "1m", "--steps", "50,100", "--bake-seconds", "2",
         "--check-interval", "1", "--no-smoke", "--report-json", str(tmp_path / "report.json")],
        capture_output=True, text=True, env=fakes["env"], timeout=120)
    return proc, fakes


def test_a_good_candidate_is_promoted_through_the_command_line(prometheus, tmp_path):
    proc, fakes = _rollout(prometheus, tmp_path, "live0ok")
    assert proc.returncode == 0, proc.stderr
    calls = (fakes["state"] / "helm.log").read_text().splitlines()
    assert len(calls) == 4  # candidate at 0 %, 50 %, 100 %, final tags
    assert "--no-hooks" not in calls[0] and all(c.endswith("--no-hooks") for c in calls[1:])
    assert all(f"--description chart@{'c' * 40}" in c for c in calls)
    values = json.loads((fakes["state"] / "values.json").read_text())["getResult"]
    assert values["traffic"] == [{"latestRevision": True, "percent": 100},
                                 {"revisionName": "get-result-0a1b2c3", "percent": 0, "tag": "previous"}]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["decision"] == "promoted" and report["environment"] == "staging"
    assert [len(s["checks"]) for s in report["steps"]] == [2, 2]
    assert all(c["error_ratio"] == 0.0 for s in report["steps"] for c in s["checks"])
    summary = (tmp_path / "summary.md").read_text()
    assert "`get-result` in staging: promoted" in summary and "| 50% | 2 | 0.0000 |" in summary
    assert (tmp_path / "output").read_text() == "decision=promoted\n"


def test_a_bad_candidate_is_rolled_back_through_the_command_line(prometheus, tmp_path):
    proc, fakes = _rollout(prometheus, tmp_path, "live0bad")
    assert proc.returncode == 1, proc.stderr
    values = json.loads((fakes["state"] / "values.json").read_text())["getResult"]
    assert values["traffic"] == [{"revisionName": "get-result-0a1b2c3", "percent": 100},
                                 {"revisionName": "get-result-7e8f901", "percent": 0, "tag": "previous"}]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["decision"] == "rolled back"
    assert "error ratio 0.2000 > 0.01" in report["reason"]
    assert "rolled back" in (tmp_path / "summary.md").read_text()
    assert yaml.safe_load((tmp_path / "output").read_text().replace("=", ": ")) == {"decision": "rolled back"}
