"""One generator (grafana/generate.py, grafana/mixin/) writes the rules and the dashboards: the
committed files are its output, and a dashboard reads what a recording rule names instead of
recomputing it."""
from __future__ import annotations

import json
import re

import pytest
import yaml

import generate
from conftest import CHART_RULES, DASHBOARD_DIR, RULES

RECORD_NAME = re.compile(r"(?<![\w:])([a-z_]+:[a-z0-9_:]+)")
SELECTOR = re.compile(r"(?<![\w:])([a-zA-Z_][a-zA-Z0-9_]*)\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def records() -> dict[str, dict]:
    return {r["record"]: r for r in rules() if "record" in r}


def dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        dash = json.loads(path.read_text())
        for p in dash["panels"]:
            for t in p.get("targets", []):
                out.append((f"{path.name} / {p['title']} / {t['refId']}", t["expr"]))
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                out.append((f"{path.name} / variable {v['name']}", v["query"]["query"]))
    return out


def selectors(expr: str, drop_variables: bool = False) -> list[tuple[str, frozenset]]:
    """Every ``metric{matchers}`` of a raw metric in expr (recording rules' names excluded)."""
    out = []
    for metric, body in SELECTOR.findall(expr):
        matchers = {m for m in MATCHER.findall(body) if not (drop_variables and "$" in m[2])}
        out.append((metric, frozenset(matchers)))
    return out


def grouping(expr: str) -> list[set[str]]:
    return [{x.strip() for x in g.split(",") if x.strip()} for g in re.findall(r"\bby \(([^)]*)\)", expr)]


def recomputed(expr: str, recs: dict[str, dict]) -> list[str]:
    """The recording rules whose raw input expr reads again at a granularity the rule keeps: the
    same metric under the rule's matchers (dashboard variables aside), aggregated by no label
    the rule drops."""
    found = []
    wanted = selectors(expr, drop_variables=True)
    for name, rule in recs.items():
        kept = (grouping(rule["expr"]) or [set()])[0]
        for metric, matchers in selectors(rule["expr"]):
            if any(m == metric and matchers <= got for m, got in wanted):
                if all(g <= kept for g in grouping(expr)):
                    found.append(name)
                break
    return found


def test_committed_files_are_the_generator_output():
    assert generate.stale() == [], "run python3 grafana/generate.py"


def test_check_names_a_file_that_differs(monkeypatch, tmp_path, capsys):
    edited = tmp_path / "exam-results.rules.yml"
    edited.write_text(RULES.read_text() + "# edited by hand\n")
    monkeypatch.setattr(generate, "REPO", tmp_path)
    monkeypatch.setattr(generate, "outputs", lambda: {edited: RULES.read_text()})
    assert generate.main(["--check"]) == 1
    assert "exam-results.rules.yml" in capsys.readouterr().out


def test_the_generator_writes_the_chart_rules_file_not_a_link():
    assert not CHART_RULES.is_symlink()
    assert CHART_RULES in generate.outputs() and RULES in generate.outputs()


def test_every_recording_rule_is_read_by_a_dashboard_an_alert_or_another_rule():
    readers = [e for _, e in dashboard_exprs()] + [r["expr"] for r in rules()]
    for name, rule in records().items():
        others = [e for e in readers if e is not rule["expr"]]
        assert any(name in RECORD_NAME.findall(e) for e in others), f"{name} is recorded but never read"


def test_dashboards_read_only_recording_rules_the_rules_file_defines():
    defined = set(records())
    for where, expr in dashboard_exprs():
        unknown = set(RECORD_NAME.findall(expr)) - defined
        assert not unknown, f"{where}: {unknown}"


def test_no_dashboard_query_recomputes_a_recording_rule():
    recs = records()
    for where, expr in dashboard_exprs():
        assert recomputed(expr, recs) == [], f"{where} recomputes {recomputed(expr, recs)}: read the record"


@pytest.mark.parametrize("expr, rule", [
    ('sum by (function) (rate(http_server_request_duration_seconds_count{namespace=~"$namespace", '
     'function=~"$function", http_route!~"/healthz|/readyz"}[$__rate_interval]))',
     "function:http_server_requests:rate5m"),
    ('max(kubelet_volume_stats_used_bytes{job="kubelet", namespace="exam-results", '
     'persistentvolumeclaim=~"exam-results-db-[0-9]+(-wal|-tbs-.+)?"})',
     "exam_results:postgres_volume_used:bytes"),
], ids=["request-rate", "volume-used"])
def test_the_recompute_check_catches_a_query_that_recomputes(expr, rule):
    assert rule in recomputed(expr, records())


def test_the_recompute_check_allows_a_finer_grouping_than_the_rule_keeps():
    expr = ('sum by (function, http_response_status_code) (rate(http_server_request_duration_seconds_count'
            '{namespace=~"$namespace", function=~"$function", http_route!~"/healthz|/readyz"}[$__rate_interval]))')
    assert recomputed(expr, records()) == []
