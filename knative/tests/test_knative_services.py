"""Each function is a Knative Service that respects Knative's rules and carries
every autoscaling knob from values."""

import re

import pytest

import chart_support as cs

AUTOSCALING_ANNOTATIONS = {
    "class": "autoscaling.knative.dev/class",
    "metric": "autoscaling.knative.dev/metric",
    "target": "autoscaling.knative.dev/target",
    "targetUtilizationPercentage": "autoscaling.knative.dev/target-utilization-percentage",
    "minScale": "autoscaling.knative.dev/min-scale",
    "maxScale": "autoscaling.knative.dev/max-scale",
    "initialScale": "autoscaling.knative.dev/initial-scale",
    "scaleDownDelay": "autoscaling.knative.dev/scale-down-delay",
}
KNATIVE_RESERVED_PORTS = {8008, 8012, 8013, 8022, 9090, 9091}


def ksvcs(rendered):
    return {o["metadata"]["name"]: o for o in rendered.all("Service") if o["apiVersion"] == "serving.knative.dev/v1"}


def test_every_function_is_a_knative_service(default_render):
    assert set(ksvcs(default_render)) == {name for name, _ in cs.FUNCTIONS.values()}


@pytest.mark.parametrize("value_set", cs.VALUE_SETS)
def test_every_service_has_all_autoscaling_annotations_as_strings_from_values(rendered_sets, value_set):
    values = cs.effective_values(value_set)
    for key, (name, _) in cs.FUNCTIONS.items():
        fn = values["functions"][key]
        if not fn["enabled"]:
            assert name not in ksvcs(rendered_sets[value_set])
            continue
        annotations = ksvcs(rendered_sets[value_set])[name]["spec"]["template"]["metadata"]["annotations"]
        for knob, annotation in AUTOSCALING_ANNOTATIONS.items():
            assert isinstance(annotations[annotation], str), annotation
            assert annotations[annotation] == str(fn["autoscaling"][knob]), (name, annotation)
        assert annotations["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"
        assert annotations["autoscaling.knative.dev/metric"] == "concurrency"


def max_scale(ksvc):
    return int(ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"])


@pytest.mark.parametrize("value_set", ["default", "prod"])
def test_read_functions_scale_wider_than_write_functions(rendered_sets, value_set):
    services = ksvcs(rendered_sets[value_set])
    reads = [max_scale(services[n]) for n, access in cs.FUNCTIONS.values() if access == "read"]
    writes = [max_scale(services[n]) for n, access in cs.FUNCTIONS.values() if access == "write"]
    assert min(reads) > max(writes)
    get_result = services["get-result"]["spec"]["template"]["metadata"]["annotations"]
    assert int(get_result["autoscaling.knative.dev/min-scale"]) >= 2


def test_one_set_flag_changes_one_functions_concurrency_target():
    before = ksvcs(cs.render())
    after = ksvcs(cs.render(sets=("functions.getResult.autoscaling.target=80",)))
    target = "autoscaling.knative.dev/target"
    assert after["get-result"]["spec"]["template"]["metadata"]["annotations"][target] == "80"
    assert before["get-result"]["spec"]["template"]["metadata"]["annotations"][target] != "80"
    for name in before:
        if name != "get-result":
            assert after[name] == before[name]


@pytest.mark.parametrize("value_set", cs.VALUE_SETS)
def test_pod_specs_follow_knatives_rules(rendered_sets, value_set):
    for name, ksvc in ksvcs(rendered_sets[value_set]).items():
        spec = ksvc["spec"]["template"]["spec"]
        container = cs.ksvc_container(ksvc)
        # one declared port; Knative sets PORT itself
        assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
        env = cs.env_map(container)
        assert "PORT" not in env
        # probes on the serving port
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8080}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
        assert "lifecycle" not in container
        # metrics on an undeclared port that avoids Knative's reserved ports
        metrics_port = int(env["METRICS_PORT"]["value"])
        assert metrics_port not in KNATIVE_RESERVED_PORTS | {8080}
        assert spec["timeoutSeconds"] > 0
        assert spec["containerConcurrency"] >= int(
            ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/target"]
        )
        # features Knative gates behind flags are not used
        for gated in ("affinity", "topologySpreadConstraints", "initContainers", "securityContext", "volumes"):
            assert gated not in spec, (name, gated)


@pytest.mark.parametrize("value_set", cs.VALUE_SETS)
def test_function_containers_are_hardened_with_requests_and_limits(rendered_sets, value_set):
    for name, ksvc in ksvcs(rendered_sets[value_set]).items():
        container = cs.ksvc_container(ksvc)
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
        assert container["resources"]["limits"]["memory"]


def test_each_function_runs_as_its_own_service_account_without_a_token(default_render):
    accounts = {sa["metadata"]["name"]: sa for sa in default_render.all("ServiceAccount")}
    for name, ksvc in ksvcs(default_render).items():
        spec = ksvc["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == name
        assert spec["automountServiceAccountToken"] is False
        assert accounts[name]["automountServiceAccountToken"] is False


def test_pods_carry_the_contract_labels(default_render):
    for name, ksvc in ksvcs(default_render).items():
        labels = ksvc["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == name
        assert labels["app.kubernetes.io/part-of"] == "exam-results"
        assert labels["app.kubernetes.io/component"] == "function"


def test_reads_use_the_read_only_pooler_and_writes_the_read_write_one(default_render):
    services = ksvcs(default_render)
    for name, access in cs.FUNCTIONS.values():
        env = cs.env_map(cs.ksvc_container(services[name]))
        url = env["DATABASE_URL"]["value"]
        assert url.startswith("postgres://$(DATABASE_USER)@pgbouncer.exam-results.svc:6432/")
        database = url.rsplit("/", 1)[1]
        if access == "read":
            assert database == "exam_results_ro"
            assert env["READ_FALLBACK_DATABASE_URL"]["value"].endswith("/exam_results")
            assert "WRITE_TOKENS" not in env
        else:
            assert database == "exam_results"
            assert "READ_FALLBACK_DATABASE_URL" not in env
        # credentials only from Secrets; the user is declared before the URL that references it
        names = [e["name"] for e in cs.ksvc_container(services[name])["env"]]
        assert names.index("DATABASE_USER") < names.index("DATABASE_URL")
        # least privilege: read functions log in as the reader role, writes as the app role
        login = "reader" if access == "read" else "app"
        assert env["DATABASE_USER"]["valueFrom"]["secretKeyRef"] == {"name": "exam-results-db", "key": f"{login}-username"}
        assert env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "exam-results-db", "key": f"{login}-password"}


def test_tokio_worker_threads_follow_values_not_the_nodes_cpu_count(default_render):
    for name, _ in cs.FUNCTIONS.values():
        env = cs.env_map(cs.ksvc_container(ksvcs(default_render)[name]))
        assert env["TOKIO_WORKER_THREADS"]["value"] == "2"


def test_no_plain_text_secret_reaches_a_manifest():
    rendered = cs.render({"database": {"existingSecret": "other-db"}, "writeTokens": {"existingSecret": "other-tokens", "key": "t"}})
    text = "\n".join(rendered.manifests.values())
    assert "other-db" in text and "other-tokens" in text
    for ksvc in ksvcs(rendered).values():
        for entry in cs.ksvc_container(ksvc)["env"]:
            if entry["name"] in ("DATABASE_PASSWORD", "WRITE_TOKENS", "READ_TOKENS"):
                assert "value" not in entry and "secretKeyRef" in entry["valueFrom"]


REVISION_NAME = re.compile(r"(?P<service>[a-z-]+?)-(?P<suffix>v0-1-0-abc1234|v[12])-(?P<hash>[0-9a-f]{6})")


def test_byo_revision_names_and_traffic_come_from_values(prod_render):
    services = ksvcs(prod_render)
    get_result = services["get-result"]
    name = get_result["spec"]["template"]["metadata"]["name"]
    assert REVISION_NAME.fullmatch(name).group("service", "suffix") == ("get-result", "v0-1-0-abc1234")
    assert get_result["spec"]["traffic"] == [
        {"revisionName": "get-result-v0-0-9-0fedcba-5d1f0e", "latestRevision": False, "percent": 90, "tag": "stable"},
        {"revisionName": name, "latestRevision": False, "percent": 10, "tag": "canary"},
        {"latestRevision": True, "percent": 0, "tag": "latest"},
    ]
    # no traffic block: Knative routes 100% to the latest ready revision
    assert "traffic" not in services["list-results"]["spec"]
    assert REVISION_NAME.fullmatch(services["list-results"]["spec"]["template"]["metadata"]["name"])


def test_default_values_let_knative_name_revisions(default_render):
    for ksvc in ksvcs(default_render).values():
        assert "name" not in ksvc["spec"]["template"]["metadata"]
        assert "traffic" not in ksvc["spec"]


def test_revision_and_traffic_can_be_driven_by_set_flags():
    rendered = cs.render(sets=(
        "functions.createResult.revision=v2",
        "functions.createResult.traffic[0].revisionName=create-result-v1-0a1b2c",
        "functions.createResult.traffic[0].percent=80",
        "functions.createResult.traffic[1].revision=v2",
        "functions.createResult.traffic[1].percent=20",
        "functions.createResult.traffic[1].tag=canary",
    ))
    ksvc = ksvcs(rendered)["create-result"]
    name = ksvc["spec"]["template"]["metadata"]["name"]
    assert REVISION_NAME.fullmatch(name).group("suffix") == "v2"
    assert [(t["revisionName"], t["percent"]) for t in ksvc["spec"]["traffic"]] == [
        ("create-result-v1-0a1b2c", 80), (name, 20)]


def template_name(sets):
    return ksvcs(cs.render(sets=("functions.getResult.revision=abc1234", *sets)))["get-result"]["spec"]["template"]["metadata"]["name"]


def test_a_byo_revision_name_follows_the_rendered_template():
    """A tuned target on a CD-managed release (BYO name set) renders a new
    revision name, so Knative accepts it; an unchanged template keeps its
    name, so a traffic-only change creates no revision."""
    before = template_name(())
    assert before == template_name(())
    assert before == template_name(("functions.getResult.traffic[0].latestRevision=true",
                                    "functions.getResult.traffic[0].percent=100"))
    tuned = template_name(("functions.getResult.autoscaling.target=80",))
    assert tuned != before
    assert tuned.rsplit("-", 1)[0] == before.rsplit("-", 1)[0] == "get-result-abc1234"
    # another function's change leaves this template, and its name, alone
    assert template_name(("functions.listResults.autoscaling.target=20",)) == before


def test_images_are_per_function_and_can_be_pinned_by_digest(default_render, prod_render):
    for name, _ in cs.FUNCTIONS.values():
        image = cs.ksvc_container(ksvcs(default_render)[name])["image"]
        assert image == f"ghcr.io/exam-board/exam-results/{name}:0.1.0"
        pinned = cs.ksvc_container(ksvcs(prod_render)[name])["image"]
        assert re.fullmatch(rf"ghcr\.io/exam-board/exam-results/{name}@sha256:[0-9a-f]{{64}}", pinned)


def test_disabled_function_renders_nothing_for_it(rendered_sets):
    minimal = rendered_sets["minimal"]
    assert "delete-result" not in ksvcs(minimal)
    assert "delete-result" not in minimal.names("ServiceAccount")


def test_scaling_docs_table_matches_the_chart_defaults():
    """docs/scaling.md's defaults table is what values.yaml says."""
    text = (cs.REPO / "docs" / "scaling.md").read_text()
    table = text.split("## Defaults (from the benchmark)", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    values = cs.chart_defaults()["functions"]
    assert set(rows) == {name for name, _ in cs.FUNCTIONS.values()}
    for key, (name, access) in cs.FUNCTIONS.items():
        fn, row = values[key], rows[name]
        a = fn["autoscaling"]
        expected = [name, access, str(a["target"]), f"{a['targetUtilizationPercentage']}%", str(fn["containerConcurrency"]),
                    str(a["minScale"]), str(a["maxScale"]), str(a["initialScale"]), a["scaleDownDelay"]]
        assert row[:9] == expected, name
        pool = str(fn["database"]["poolSize"])
        if fn["database"].get("readFallback"):
            pool += f" (+{fn['database']['poolSize']} fallback)"
        assert row[9] == pool, name


def test_each_function_gets_the_tokens_or_the_rate_limit_its_auth_names(default_render):
    """functions.yaml's auth decides: write tokens, read tokens (never both),
    or, for a public function, the per-client limit keyed on the header the
    ingress fills (without it every client would be the queue-proxy and the
    function refuses to start under Knative)."""
    services = ksvcs(default_render)
    for entry in cs.MANIFEST:
        env = cs.env_map(cs.ksvc_container(services[entry["name"]]))
        tokens = {k for k in ("WRITE_TOKENS", "READ_TOKENS") if k in env}
        if entry["auth"] == "write-token":
            assert tokens == {"WRITE_TOKENS"}
            assert env["WRITE_TOKENS"]["valueFrom"]["secretKeyRef"] == {"name": "exam-results-write-tokens",
                                                                        "key": "tokens"}
        elif entry["auth"] == "read-token":
            assert tokens == {"READ_TOKENS"}
            assert env["READ_TOKENS"]["valueFrom"]["secretKeyRef"] == {"name": "exam-results-read-tokens",
                                                                       "key": "tokens"}
        elif entry.get("staff") == "read-token":  # public, and staff read unpublished years
            assert tokens == {"READ_TOKENS"}
            assert env["RATE_LIMIT_CLIENT_HEADER"]["value"] == "x-forwarded-for"
        else:
            assert tokens == set()
            assert env["RATE_LIMIT_CLIENT_HEADER"]["value"] == "x-forwarded-for"
            assert env["RATE_LIMIT_PER_SECOND"]["value"] == "20"
        if entry["auth"] != "public":
            assert not any(k.startswith("RATE_LIMIT") for k in env)


def test_the_rate_limit_can_be_turned_off_for_the_public_functions():
    rendered = cs.render(sets=("functionDefaults.rateLimit.perSecond=0",))
    env = cs.env_map(cs.ksvc_container(ksvcs(rendered)["get-result"]))
    assert env["RATE_LIMIT_PER_SECOND"]["value"] == "0" and "RATE_LIMIT_CLIENT_HEADER" not in env


def test_the_results_page_origin_reaches_exactly_the_public_functions(default_render):
    """functionDefaults.corsAllowOrigin becomes CORS_ALLOW_ORIGIN of every function whose
    functions.yaml entry says auth: public, and of no other; unset, of none."""
    origin = "https://results.example.org"
    services = ksvcs(cs.render(sets=(f"functionDefaults.corsAllowOrigin={origin}",)))
    for entry in cs.MANIFEST:
        env = cs.env_map(cs.ksvc_container(services[entry["name"]]))
        expected = origin if entry["auth"] == "public" else None
        assert env.get("CORS_ALLOW_ORIGIN", {}).get("value") == expected, entry["name"]
    for ksvc in ksvcs(default_render).values():
        assert "CORS_ALLOW_ORIGIN" not in cs.env_map(cs.ksvc_container(ksvc))
    assert {e["auth"] for e in cs.MANIFEST} >= {"public", "read-token", "write-token"}
