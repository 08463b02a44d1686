"""The Grafana dashboards: valid classic JSON, conventions held, every query parsed by PromQL."""
from __future__ import annotations

import json
import re

import pytest
import yaml

import generate
from conftest import DASHBOARD_DIR, FUNCTION_METRICS, RULES, require_tool, run, substitute

FILES = sorted(DASHBOARD_DIR.glob("*.json"))
DS = {"type": "prometheus", "uid": "${datasource}"}


def load(path):
    return json.loads(path.read_text())


def panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def data_panels(dash):
    return [p for p in panels(dash) if p["type"] != "row"]


def test_the_two_dashboards_exist_with_their_titles():
    titles = {load(f)["title"] for f in FILES}
    assert titles == {"Exam results: service", "Exam results: data tier"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_model_basics(path):
    dash = load(path)
    assert dash["schemaVersion"] >= 39
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dash["uid"]), "stable, readable uid"
    assert "id" not in dash or dash["id"] is None, "no instance-specific id in provisioned JSON"
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids unique"
    for p in panels(dash):
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0, p["title"]


def test_uids_are_unique_across_dashboards():
    uids = [load(f)["uid"] for f in FILES]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_templating_has_datasource_namespace_and_function(path):
    variables = {v["name"]: v for v in load(path)["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "function"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DS
    assert variables["function"]["multi"] and variables["function"]["includeAll"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_panel_uses_the_datasource_variable_and_has_a_unit(path):
    for p in data_panels(load(path)):
        assert p["datasource"] == DS, p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), f"{p['title']} has no unit"
        assert p["targets"], f"{p['title']} has no query"
        for t in p["targets"]:
            assert t["datasource"] == DS, f"{p['title']} {t['refId']}"
        assert p.get("description"), f"{p['title']} has no description"


def range_windows_of_counter_functions(expr):
    """The range of every rate()/irate()/increase() call in expr."""
    windows = []
    for m in re.finditer(r"\b(rate|irate|increase)\(", expr):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            i += 1
        windows += re.findall(r"\[([^\]]+)\]", expr[m.end():i])
    return windows


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_rates_use_rate_interval(path):
    for p in data_panels(load(path)):
        for t in p["targets"]:
            for window in range_windows_of_counter_functions(t["expr"]):
                assert window == "$__rate_interval", f"{p['title']}: [{window}]"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_function_panels_filter_by_namespace_and_function(path):
    for p in data_panels(load(path)):
        for t in p["targets"]:
            names = re.findall(r"(?<![:\w])((?:http_server|exam_results)_[a-z_]+)(?![:\w])", t["expr"])
            assert set(names) <= FUNCTION_METRICS, f"{p['title']}: {set(names) - FUNCTION_METRICS}"
            # the functions' own series and the per-function recording rules
            for sel in re.findall(r"(?<![:\w])(?:(?:http_server|exam_results)_[a-z_]+|function:[a-z0-9_:]+)\{([^}]*)\}",
                                  t["expr"]):
                assert 'namespace=~"$namespace"' in sel and 'function=~"$function"' in sel, p["title"]


def test_every_promql_expression_parses(tmp_path):
    """Each panel query and variable query, variables substituted, goes through promtool's
    parser (Prometheus's own PromQL parser) as a recording rule."""
    promtool = require_tool("promtool")
    rules, origin = [], []
    for path in FILES:
        dash = load(path)
        for p in data_panels(dash):
            for t in p["targets"]:
                rules.append({"record": f"dashboard:query:{len(rules)}", "expr": substitute(t["expr"])})
                origin.append(f"{path.name} / {p['title']} / {t['refId']}")
        for v in dash["templating"]["list"]:
            if v["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"])
            assert m, v["query"]
            rules.append({"record": f"dashboard:query:{len(rules)}", "expr": substitute(m.group(1))})
            origin.append(f"{path.name} / variable {v['name']}")
    f = tmp_path / "dashboard-queries.rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    res = run([promtool, "check", "rules", str(f)])
    assert res.returncode == 0, res.stdout + res.stderr + "\n" + "\n".join(origin)
    assert f"SUCCESS: {len(rules)} rules found" in res.stdout


def test_the_parser_check_rejects_a_broken_query(tmp_path):
    promtool = require_tool("promtool")
    broken = substitute('sum by (function) (rate(http_server_active_requests{namespace=~"$namespace"}[$__rate_interval])')
    f = tmp_path / "broken.rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": broken}]}]}))
    assert run([promtool, "check", "rules", str(f)]).returncode != 0


def test_queries_are_scoped_local_or_kubernetes():
    """kubernetes: the query reads kubelet, kube-state-metrics or Knative series, directly or
    through a recording rule built from them; local: the local stack has every series it reads."""
    records = {r["record"]: r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"]
               for r in g["rules"] if "record" in r}

    def kubernetes(expr, seen=()):
        if re.search(r"(?<![:\w])(kubelet_|kube_|kn_)", expr):
            return True
        used = set(re.findall(r"(?<![\w:])([a-z_]+:[a-z0-9_:]+)", expr)) & set(records)
        return any(kubernetes(records[n], seen + (n,)) for n in used if n not in seen)

    queries = generate.panel_queries()
    assert {q["scope"] for q in queries} == {"local", "kubernetes"}
    for q in queries:
        assert (q["scope"] == "kubernetes") == kubernetes(q["expr"]), q
