"""Shared fixtures for the knative/ tests (see chart_support.py)."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import chart_support  # noqa: E402


@pytest.fixture(scope="session")
def rendered_sets():
    """The chart rendered with each named value set (default, prod, minimal)."""
    return {name: chart_support.render(chart_support.value_set(name)) for name in chart_support.VALUE_SETS}


@pytest.fixture(scope="session")
def default_render(rendered_sets):
    return rendered_sets["default"]


@pytest.fixture(scope="session")
def prod_render(rendered_sets):
    return rendered_sets["prod"]
