"""The promotion program reads the functions from the chart's functions.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from promote import FUNCTIONS, READ_FUNCTIONS, WRITE_FUNCTIONS, manifest

REPO = Path(__file__).resolve().parents[3]


def test_the_functions_are_the_charts_manifest_in_its_order():
    doc = yaml.safe_load((REPO / "knative" / "exam-results" / "functions.yaml").read_text())
    assert list(FUNCTIONS) == [f["name"] for f in doc["functions"]]
    assert set(READ_FUNCTIONS) | set(WRITE_FUNCTIONS) == set(FUNCTIONS)
    assert not set(READ_FUNCTIONS) & set(WRITE_FUNCTIONS)


def test_a_function_added_to_the_manifest_is_known_without_code_changes(tmp_path):
    doc = yaml.safe_load((REPO / "knative" / "exam-results" / "functions.yaml").read_text())
    doc["functions"].append({"name": "year-statistics", "key": "yearStatistics", "access": "read",
                             "method": "GET", "route": "/results/{exam_year}/statistics", "port": 8086})
    path = tmp_path / "functions.yaml"
    path.write_text(yaml.safe_dump(doc))
    loaded = manifest.load(path)
    assert loaded[-1] == manifest.Function("year-statistics", "yearStatistics", "read", "GET",
                                           "/results/{exam_year}/statistics")


@pytest.mark.parametrize("text,msg", [
    ("functions: []", "non-empty list"),
    ("functions: [{name: a}]", "lacks"),
    ("functions: [{name: a, key: a, access: admin, method: GET, route: /}]", "read or write"),
    ("functions: [{name: a, key: a, access: read, method: GET, route: /},"
     " {name: a, key: b, access: read, method: GET, route: /}]", "duplicate"),
])
def test_a_malformed_manifest_is_refused_with_its_path(tmp_path, text, msg):
    path = tmp_path / "functions.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=msg):
        manifest.load(path)


def test_an_unknown_function_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown function 'nope'; choose from create-result"):
        manifest.function("nope")
