"""The sql/ops scripts pass shellcheck (warnings and errors)."""

import shutil
import subprocess

import pytest

from conftest import OPS


def test_ops_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (apt-get install shellcheck; listed in .ci/apt-database.txt)")
    scripts = sorted(str(p) for p in OPS.glob("*.sh"))
    assert len(scripts) >= 7
    result = subprocess.run(["shellcheck", "-x", "-S", "warning", *scripts], capture_output=True, text=True,
                            cwd=OPS.parent.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_ops_script_is_executable_and_prints_usage_on_bad_arguments(tmp_path):
    for name in ("partitions.sh", "load-csv.sh", "backup.sh", "restore.sh", "replica-lag.sh",
                 "migrate-to-partitioned.sh", "census.sh"):
        script = OPS / name
        assert script.stat().st_mode & 0o111, name
        result = subprocess.run([str(script), "--no-such-flag", "x", "y", "z"], capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin", "PGUSER": "nobody", "PGPORT": "1",
                                     "STATE_DIR": str(tmp_path)}, timeout=30)
        assert result.returncode == 2, (name, result.stdout, result.stderr)
