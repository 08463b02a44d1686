"""Tests of the benchmark package's shape and of its sources of facts:
the functions come from knative/exam-results/functions.yaml, the scenarios
from their modules, the baseline's build from the functions' own settings."""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

BENCH_DIR = Path(__file__).resolve().parents[1]
ROOT = BENCH_DIR.parents[1]
sys.path.insert(0, str(BENCH_DIR))

from bench import callgrind, cpu, scenarios, settings  # noqa: E402
from bench.scenarios import instructions  # noqa: E402

# No module a reader cannot hold in their head.
MAX_MODULE_LINES = 300


def test_every_module_of_the_package_is_short():
    for path in sorted((BENCH_DIR / "bench").rglob("*.py")):
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_MODULE_LINES, f"{path.relative_to(BENCH_DIR)}: {lines} lines"


def test_the_functions_and_their_ports_come_from_the_manifest():
    manifest = yaml.safe_load((ROOT / "knative/exam-results/functions.yaml").read_text())["functions"]
    s = settings.Settings.from_env({})
    assert s.ports == {f["name"]: f["port"] for f in manifest}
    assert settings.NAMES == [f["name"] for f in manifest]
    overridden = settings.Settings.from_env({"LIST_RESULTS_PORT": "20713"})
    assert overridden.ports["list-results"] == 20713


def test_cpu_accounting_counts_every_function_as_its_own_group_and_reads_on_the_read_path():
    watch = cpu.CpuWatch({})
    for f in settings.FUNCTIONS:
        # /proc/PID/stat shows 15 bytes of the name (create-results-batch is "create-results-")
        assert watch.group(1, f.name[:15], 0) == f.name
        assert (f.name in cpu.READ_PATH) == (f.access == "read")


def test_scenario_names_are_unique_and_each_module_has_a_run():
    assert len(set(scenarios.NAMES)) == len(scenarios.NAMES)
    assert "instructions" in scenarios.NAMES
    for module in scenarios.ORDER:
        assert callable(module.run)
    assert settings.Settings.from_env({}).only == set(scenarios.NAMES)


def test_the_bench_source_keeps_no_list_of_the_functions():
    for path in sorted((BENCH_DIR / "bench").rglob("*.py")):
        text = path.read_text()
        names = [f.name for f in settings.FUNCTIONS if f'"{f.name}"' in text]
        assert len(names) < len(settings.FUNCTIONS), f"{path.name} lists the functions: {names}"
        assert not re.search(r'"[A-Z_]+_RESULTS?_PORT"', text), f"{path.name} names a port variable"


def test_callgrind_totals_come_from_the_dump_summary(tmp_path):
    dump = tmp_path / "callgrind.out.1"
    dump.write_text("# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 7\ncmd: get-result\n"
                    "part: 1\n\nevents: Ir\nsummary: 123456\n\nfn=(1) main\n0 123456\n\ntotals: 123456\n")
    assert callgrind.totals(dump) == 123456
    dump.write_text("events: Ir\n")
    with pytest.raises(ValueError):
        callgrind.totals(dump)


def test_the_request_list_is_the_same_for_the_same_arguments_and_inside_the_range():
    a = callgrind.point_read_paths(2025, 100000001, 100000100, 200)
    assert a == callgrind.point_read_paths(2025, 100000001, 100000100, 200)
    rolls = [int(p.rsplit("/", 1)[1]) for p in a]
    assert all(100000001 <= r <= 100000100 for r in rolls) and len(set(rolls)) > 50
    assert all(p.startswith("/results/2025/") for p in a)


def test_answers_agree_only_with_the_same_bodies_and_etags():
    one = [(200, {"etag": '"01"'}, b'{"marks":1}')]
    assert instructions.same_answers(one, list(one))
    assert not instructions.same_answers(one, [(200, {"etag": '"02"'}, b'{"marks":1}')])
    assert not instructions.same_answers(one, [(200, {"etag": '"01"'}, b'{"marks":2}')])
    assert not instructions.same_answers(one, [])


def test_the_baseline_is_built_like_the_functions_and_stays_out_of_their_workspace():
    root = tomllib.loads((ROOT / "Cargo.toml").read_text())
    baseline = tomllib.loads((BENCH_DIR / "baseline/Cargo.toml").read_text())
    assert baseline["profile"]["release"] == root["profile"]["release"]
    assert baseline["workspace"] == {}
    assert not any("bench" in member for member in root["workspace"]["members"])


def test_the_baseline_uses_the_functions_versions_of_shared_crates():
    def versions(lock):
        out: dict[str, set[str]] = {}
        for package in tomllib.loads(lock.read_text())["package"]:
            out.setdefault(package["name"], set()).add(package["version"])
        return out

    ours, theirs = versions(BENCH_DIR / "baseline/Cargo.lock"), versions(ROOT / "Cargo.lock")
    shared = {name for name in ours if name in theirs}
    assert {"hyper", "tokio", "tokio-postgres"} <= shared
    assert {n: ours[n] for n in shared if not ours[n] <= theirs[n]} == {}
