"""Shared fixtures: the XRD, the Compositions (by their exam-results.io/provider label), the
example XRs as written and as the API server would store them (validated and defaulted)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import crossplane_support as xp  # noqa: E402

API = xp.API
EXAMPLE_NAMES = xp.EXAMPLE_NAMES


@pytest.fixture(scope="session")
def xrd() -> dict[str, Any]:
    (doc,) = xp.load_docs(API / "definition.yaml")
    return doc


@pytest.fixture(scope="session")
def compositions() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(API.glob("composition-*.yaml")):
        for doc in xp.load_docs(path):
            found[doc["metadata"]["labels"][xp.PROVIDER_LABEL]] = doc
    return found


@pytest.fixture(scope="session")
def examples() -> dict[str, dict[str, Any]]:
    return {name: xp.load_docs(xp.CROSSPLANE / "examples" / f"{name}.yaml")[0] for name in EXAMPLE_NAMES}


@pytest.fixture
def admit(xrd):
    """admit(xr, **spec_overrides) -> the stored (validated, defaulted) XR."""

    def _admit(xr: dict[str, Any], **spec: Any) -> dict[str, Any]:
        xr = copy.deepcopy(xr)
        xr["spec"].update(spec)
        return xp.admit_xr(xrd, xr)

    return _admit
