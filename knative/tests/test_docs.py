"""The outputs pasted into docs/deploy.md and docs/scaling.md are what the
chart produces today, and the pool numbers in scaling.md follow from values.yaml."""

import shlex

import chart_support as cs

DEPLOY = (cs.REPO / "docs" / "deploy.md").read_text()
SCALING = (cs.REPO / "docs" / "scaling.md").read_text()


def error_line(fixture):
    message = cs.render_error(cs.fixture_values(fixture))
    return message.strip().splitlines()


def test_pasted_error_messages_are_current():
    for line in error_line("bad-typo.yaml"):
        assert line.strip() in DEPLOY
    (server,) = [l for l in error_line("bad-pool-server.yaml") if "pool arithmetic" in l]
    assert server.split("pool arithmetic:", 1)[1] in DEPLOY
    (clients,) = [l for l in error_line("bad-pool-clients.yaml") if "pool arithmetic" in l]
    assert clients.split("pool arithmetic:", 1)[1] in SCALING


def test_pool_numbers_in_scaling_md_follow_from_the_defaults():
    v = cs.chart_defaults()
    clients = 0
    for key, (_, access) in cs.FUNCTIONS.items():
        fn = v["functions"][key]
        per_pod = fn["database"]["poolSize"] * (2 if access == "read" and fn["database"].get("readFallback") else 1)
        clients += fn["autoscaling"]["maxScale"] * per_pod
    p = v["pgbouncer"]
    capacity = p["maxClientConn"] * max(1, p["replicas"] - 1)
    assert f"**{clients} ≤ {p['maxClientConn']} × {max(1, p['replicas'] - 1)} = {capacity}**" in SCALING
    rw = p["replicas"] * (p["readWritePoolSize"] + p["reservePoolSize"]) + v["postgres"]["reservedConnections"]
    ro = p["replicas"] * (p["readOnlyPoolSize"] + p["reservePoolSize"]) + v["postgres"]["reservedConnections"]
    assert f"= **{rw} ≤ {v['postgres']['maxConnections']}**" in SCALING
    assert f"= **{ro} ≤ {v['postgres']['maxConnections']}**" in SCALING
    assert clients <= capacity and rw <= v["postgres"]["maxConnections"] and ro <= v["postgres"]["maxConnections"]


def test_docs_name_the_exact_set_path_for_the_concurrency_target():
    assert "--set functions.getResult.autoscaling.target=80" in SCALING
    assert "provisional" in SCALING.lower()
    rendered = cs.render(sets=("functions.getResult.autoscaling.target=80",))
    annotations = rendered.one("Service", "get-result")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/target"] == "80"


def test_the_pasted_target_render_in_scaling_md_is_current():
    block = SCALING.split("$ python3 knative/helm_template.py --set functions.getResult.autoscaling.target=80", 1)[1]
    pasted = block.split("\n```", 1)[0].strip().splitlines()[1:]
    rendered = cs.render(sets=("functions.getResult.autoscaling.target=80",))
    targets = [o["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/target"]
               for o in rendered.all("Service") if o["apiVersion"] == "serving.knative.dev/v1"]
    assert [line.split(": ")[1].strip('"') for line in pasted] == targets


def test_one_knative_floor_everywhere():
    floor = cs.yaml.safe_load((cs.CHART / "Chart.yaml").read_text())["annotations"]["exam-results/knative-serving-version"]
    assert floor == ">=1.19"
    assert "**Knative Serving 1.19 or later**" in DEPLOY
    for path in ("docs/deploy.md", "docs/scaling.md", "knative/exam-results/README.md"):
        text = (cs.REPO / path).read_text()
        assert "1.15" not in text and "1.26" not in text, path


def install_command(heading):
    """The `helm upgrade --install` command under a heading of deploy.md's Install section."""
    section = DEPLOY.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    (command,) = [line for line in block.splitlines() if line.startswith("helm upgrade --install")]
    return shlex.split(command)


def render_install(argv, tmp_path):
    """Render the values of a documented install command (-f, --set, --set-file)."""
    values, sets = {}, []
    it = iter(argv)
    for arg in it:
        if arg == "-f":
            values = cs.deep_merge(values, cs.yaml.safe_load((cs.REPO / next(it)).read_text()))
        elif arg == "--set":
            sets.append(next(it))
        elif arg == "--set-file":
            key, _, path = next(it).partition("=")
            assert path == "global-bundle.pem"  # downloaded by the command before it
            value = PEM
            for part in reversed(key.split(".")):
                value = {part: value}
            values = cs.deep_merge(values, value)
    assert argv[:4] == ["helm", "upgrade", "--install", "exam-results"] and "knative/exam-results" in argv
    assert argv[argv.index("--namespace") + 1] == cs.NAMESPACE
    return cs.render(values or None, sets=tuple(sets))


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def database_egress(rendered, policy):
    return rendered.one("NetworkPolicy", policy)["spec"]["egress"][0]["to"]


def test_the_cloudnative_pg_install_renders_policies_to_its_pods_and_verifies_tls(tmp_path):
    rendered = render_install(install_command("CloudNativePG (in the cluster)"), tmp_path)
    for policy in ("pgbouncer", "exam-results-migrations", "exam-results-partition-upkeep"):
        assert database_egress(rendered, policy) == [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "exam-results-db"}}}]
    assert "postgres" in rendered.names("NetworkPolicy")
    assert "server_tls_sslmode = verify-full" in rendered.one("ConfigMap", "pgbouncer-config")["data"]["render-config.sh"]


def test_the_rds_install_renders_egress_to_its_subnets_and_its_ca_bundle(tmp_path):
    rendered = render_install(install_command("Amazon RDS"), tmp_path)
    cidrs = cs.value_set("rds")["postgres"]["external"]["cidrs"]
    for policy in ("pgbouncer", "exam-results-migrations", "exam-results-partition-upkeep"):
        assert database_egress(rendered, policy) == [{"ipBlock": {"cidr": c}} for c in cidrs]
    assert not {"postgres", "postgres-from-migrations"} & rendered.names("NetworkPolicy")
    assert rendered.one("ConfigMap", "postgres-ca")["data"]["ca.crt"] == PEM
    assert "truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in DEPLOY


def test_the_values_overview_states_the_defaults():
    v = cs.chart_defaults()
    p = v["pgbouncer"]
    row = f"| {p['replicas']} replicas, max_client_conn {p['maxClientConn']}, pools {p['readWritePoolSize']} rw / {p['readOnlyPoolSize']} ro |"
    assert row in DEPLOY
    assert f"| `{v['database']['tls']['sslmode']}`, CA from the Secret's `{v['database']['tls']['caSecret']['key']}` |" in DEPLOY
    assert f"`ghcr.io/cloudnative-pg/pgbouncer:{p['image']['tag']}`" in DEPLOY
    assert f"`{p['exporter']['image']['repository'].removeprefix('docker.io/')}:{p['exporter']['image']['tag']}`" in DEPLOY
