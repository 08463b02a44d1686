"""The alert rules file: valid for promtool, unit-tested per alert, documented per alert."""
from __future__ import annotations

import re

import yaml

from conftest import DOC, FUNCTION_METRICS, RULE_TESTS, RULES, require_tool, run


def load_rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def alert_names() -> list[str]:
    return [r["alert"] for r in load_rules() if "alert" in r]


def test_promtool_check_rules_accepts_the_rules_file():
    promtool = require_tool("promtool")
    res = run([promtool, "check", "rules", str(RULES)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_unit_tests_pass():
    promtool = require_tool("promtool")
    res = run([promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_unit_tests_fail_when_a_threshold_changes(tmp_path):
    """The unit tests can fail: loosening the replica-lag threshold breaks its firing case."""
    promtool = require_tool("promtool")
    mutated = RULES.read_text().replace("(cnpg_pg_replication_lag) > 30", "(cnpg_pg_replication_lag) > 60")
    assert mutated != RULES.read_text()
    (tmp_path / RULES.name).write_text(mutated)
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    res = run([promtool, "test", "rules", RULE_TESTS.name], cwd=tmp_path)
    assert res.returncode != 0
    assert "ExamResultsReplicaLagHigh" in res.stdout + res.stderr


def test_the_issue_asks_for_these_alerts():
    names = set(alert_names())
    expected = {
        "ExamResultsPersistentVolumeFillingUp", "ExamResultsPersistentVolumeFullInFourDays",
        "ExamResultsErrorBudgetFastBurn", "ExamResultsErrorBudgetSlowBurn",
        "ExamResultsLatencyBudgetFastBurn", "ExamResultsLatencyBudgetSlowBurn",
        "ExamResultsReplicaLagHigh", "ExamResultsPgBouncerClientsWaiting",
        "ExamResultsPgBouncerPodsUnavailable", "ExamResultsReadFunctionAtMaxScale",
        "ExamResultsPostgresInstanceDown",
    }
    assert expected <= names, expected - names
    assert len(names) == len(alert_names()), "alert names must be unique"


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires, quiet = set(), set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    for name in alert_names():
        assert name in fires, f"{name} has no unit test where it fires"
        assert name in quiet, f"{name} has no unit test where it stays quiet"


def test_every_alert_has_severity_summary_description_and_runbook():
    for rule in load_rules():
        if "alert" not in rule:
            continue
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        ann = rule["annotations"]
        for key in ("summary", "description", "runbook"):
            assert ann.get(key), f"{rule['alert']} lacks annotation {key}"
        assert ann["runbook"] == f"docs/observability.md#{rule['alert'].lower()}"


def test_every_alert_has_a_runbook_section_in_the_docs():
    doc = DOC.read_text()
    headings = {h.strip() for h in re.findall(r"^###\s+(.+)$", doc, flags=re.M)}
    for name in alert_names():
        assert name in headings, f"docs/observability.md has no '### {name}' runbook section"


def test_rules_use_only_metric_names_the_functions_export():
    used = set()
    for rule in load_rules():
        used |= set(re.findall(r"(?<![:\w])((?:http_server|exam_results)_[a-z_]+)(?![:\w])", rule["expr"]))
    unknown = {m for m in used if m not in FUNCTION_METRICS and not m.startswith("exam_results:")}
    assert not unknown, f"not in the metrics contract: {unknown}"
