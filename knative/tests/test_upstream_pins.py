"""Each upstream project is pinned at one version: every go.mod of the
repository that requires one of them (directly or indirectly) names the same
version, and the apiserver tests' fallback versions agree with it."""

from __future__ import annotations

import re
from collections import defaultdict

import chart_support as cs

UPSTREAMS = (
    "knative.dev/serving",
    "github.com/crossplane/crossplane/v2",
    "github.com/cloudnative-pg/cloudnative-pg",
    "github.com/cloudnative-pg/plugin-barman-cloud",
    "github.com/prometheus-operator/prometheus-operator",
    "k8s.io/kubernetes",
)
REQUIRE = re.compile(r"^\s*(?:require\s+)?(\S+)\s+(v\S+)", re.M)


def pins() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for gomod in sorted(cs.REPO.glob("**/go.mod")):
        if any(part in {".venv", "target", "node_modules"} for part in gomod.parts):
            continue
        for module, version in REQUIRE.findall(gomod.read_text()):
            if module in UPSTREAMS:
                found[module][str(gomod.relative_to(cs.REPO))] = version
    return found


def test_every_go_mod_pins_an_upstream_project_at_the_same_version():
    for module, where in pins().items():
        assert len(set(where.values())) == 1, f"{module} is pinned at several versions: {where}"


def test_the_apiserver_crd_fallbacks_agree_with_the_go_mod_pins():
    text = (cs.REPO / "knative" / "apiserver" / "crds_test.go").read_text()
    fallbacks = dict(re.findall(r'module: "([^"]+)", version: "([^"]+)"', text))
    for module, where in pins().items():
        if module in fallbacks:
            assert fallbacks[module] == next(iter(where.values())), (module, fallbacks[module], where)
