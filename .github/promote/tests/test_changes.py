"""Which functions a commit touches, and the CLI that feeds the CD matrix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promote import FUNCTIONS
from promote.changes import changed_functions

PROMOTE = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("paths,expected", [
    (["functions/get-result/src/main.rs"], ["get-result"]),
    (["functions/delete-result/Cargo.toml", "functions/create-result/src/main.rs"], ["create-result", "delete-result"]),
    (["./functions/list-results/src/main.rs"], ["list-results"]),
    (["functions/exam-results/src/db.rs"], list(FUNCTIONS)),
    (["Cargo.lock"], list(FUNCTIONS)),
    (["knative/Dockerfile"], list(FUNCTIONS)),
    (["knative/exam-results/templates/_knative-service.tpl"], list(FUNCTIONS)),
    (["sql/migrations/0002_add_index.sql"], list(FUNCTIONS)),
    (["docs/cicd.md", "grafana/alerts/exam-results.rules.yml", "crossplane/x.yaml", ".github/workflows/ci.yml"], []),
    (["functions/README.md"], []),
    ([], []),
])
def test_changed_functions(paths, expected):
    assert changed_functions(paths) == expected


def _cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promote", *args], cwd=cwd or PROMOTE, capture_output=True,
                          text=True, env=env)


def test_the_cli_reads_a_file_list_and_writes_github_outputs(tmp_path):
    files = tmp_path / "files"
    files.write_text("functions/update-result/src/main.rs\ndocs/cicd.md\n")
    out = tmp_path / "out"
    env = dict(os.environ, GITHUB_OUTPUT=str(out))
    proc = _cli("changed-functions", "--files", str(files), env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["update-result"]
    assert out.read_text() == 'functions=["update-result"]\nany=true\n'


def test_the_cli_diffs_a_real_git_range(tmp_path):
    def git(*a):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *a], cwd=tmp_path, check=True,
                       capture_output=True)
    git("init", "-q")
    (tmp_path / "README.md").write_text("x\n")
    git("add", ".")
    git("commit", "-qm", "one")
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "functions" / "get-result" / "src").mkdir(parents=True)
    (tmp_path / "functions" / "get-result" / "src" / "main.rs").write_text("fn main() {}\n")
    git("add", ".")
    git("commit", "-qm", "two")
    env = dict(os.environ, PYTHONPATH=str(PROMOTE))
    env.pop("GITHUB_OUTPUT", None)
    proc = _cli("changed-functions", "--base", base, "--head", "HEAD", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["get-result"]
    # a new branch (before = 40 zeros) deploys everything
    proc = _cli("changed-functions", "--base", "0" * 40, cwd=tmp_path, env=env)
    assert json.loads(proc.stdout) == list(FUNCTIONS)


def test_bad_steps_are_a_usage_error(tmp_path):
    proc = _cli("rollout", "--namespace", "n", "--prometheus-url", "http://127.0.0.1:9", "--max-error-ratio",
                "0.01", "--max-p99-seconds", "0.5", "--function", "get-result", "--suffix", "abc", "--steps",
                "10,50", "--no-smoke")
    assert proc.returncode == 64
    assert "steps must end at 100" in proc.stderr


def test_plan_diffs_each_function_against_the_commit_it_serves(tmp_path):
    from promote.changes import git_diff_since, plan

    def git(*a):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *a], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    for fn in FUNCTIONS:
        (tmp_path / "functions" / fn).mkdir(parents=True)
        (tmp_path / "functions" / fn / "main.rs").write_text("v1\n")
    git("add", ".")
    git("commit", "-qm", "v1")
    v1 = git("rev-parse", "--short=7", "HEAD")
    (tmp_path / "functions" / "get-result" / "main.rs").write_text("v2\n")
    git("commit", "-qam", "get-result v2")
    v2 = git("rev-parse", "--short=7", "HEAD")
    (tmp_path / "functions" / "list-results" / "main.rs").write_text("v3\n")
    git("commit", "-qam", "list-results v3")
    serving = {
        "create-result": f"create-result-{v1}-5f0c2",  # untouched since v1 (named after commit and template)
        "get-result": f"get-result-{v1}",  # changed in v2 (e.g. its v2 rollout was rolled back)
        "list-results": f"list-results-{v2}",  # changed in v3
        "update-result": "update-result-00007",  # a Knative-generated name
        "delete-result": None,  # never deployed
    }
    reasons = plan(serving, git_diff_since("HEAD", cwd=str(tmp_path)))
    assert reasons == {
        "get-result": f"changed since {v1}",
        "list-results": f"changed since {v2}",
        "update-result": "serves update-result-00007, whose suffix is not a commit of this repository",
        "delete-result": "nothing serves traffic yet",
    }
