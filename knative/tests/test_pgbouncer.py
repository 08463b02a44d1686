"""PgBouncer is highly available, pools in transaction mode with two logical
databases, authenticates with SCRAM from the Secret, shuts down gracefully and
exports metrics."""

import re

import pytest

import chart_support as cs


def selector_matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def pgbouncer_ini(rendered):
    script = rendered.one("ConfigMap", "pgbouncer-config")["data"]["render-config.sh"]
    ini = script.split('cat > "$out/pgbouncer.ini" <<EOF\n', 1)[1].split("\nEOF\n", 1)[0]
    sections, current = {}, None
    for line in ini.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current[key.strip()] = value.strip()
    return sections


@pytest.mark.parametrize("value_set", ["default", "prod"])
def test_pgbouncer_runs_at_least_two_replicas_never_two_on_one_node(rendered_sets, value_set):
    deployment = rendered_sets[value_set].one("Deployment", "pgbouncer")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]
    required = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert len(required) == 1
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"
    assert selector_matches(required[0]["labelSelector"], pod["metadata"]["labels"])
    spread = pod["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone"]
    assert selector_matches(spread[0]["labelSelector"], pod["metadata"]["labels"])


def test_default_replicas_is_three(default_render):
    assert default_render.one("Deployment", "pgbouncer")["spec"]["replicas"] == 3


@pytest.mark.parametrize("value_set", cs.VALUE_SETS)
def test_pdb_selects_pgbouncer_and_rollouts_never_drop_below_it(rendered_sets, value_set):
    rendered = rendered_sets[value_set]
    deployment = rendered.one("Deployment", "pgbouncer")
    pdb = rendered.one("PodDisruptionBudget", "pgbouncer")
    assert selector_matches(pdb["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] >= 1
    assert deployment["spec"]["minReadySeconds"] > 0


def test_pods_carry_the_contract_labels(default_render):
    labels = default_render.one("Deployment", "pgbouncer")["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "pgbouncer"
    assert labels["app.kubernetes.io/component"] == "pooler"


def test_service_fronts_the_pooler_pods(default_render):
    service = default_render.one("Service", "pgbouncer")
    labels = default_render.one("Deployment", "pgbouncer")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "ClusterIP"
    assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"pgbouncer": 6432, "metrics": 9127}


def test_image_is_pinned_to_pgbouncer_1_24_or_later(default_render):
    container = default_render.one("Deployment", "pgbouncer")["spec"]["template"]["spec"]["containers"][0]
    repository, tag = container["image"].rsplit(":", 1)
    assert repository.endswith("/pgbouncer")
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", tag).groups())
    assert (major, minor) >= (1, 24)


def test_config_pools_transactions_over_two_logical_databases(default_render):
    ini = pgbouncer_ini(default_render)
    databases = ini["databases"]
    assert set(databases) == {"exam_results", "exam_results_ro"}
    assert "host=${DB_RW_HOST}" in databases["exam_results"]
    assert "host=${DB_RO_HOST}" in databases["exam_results_ro"]
    settings = ini["pgbouncer"]
    assert settings["pool_mode"] == "transaction"
    assert settings["auth_type"] == "scram-sha-256"
    assert settings["listen_port"] == "6432"
    assert int(settings["max_prepared_statements"]) > 0
    assert set(settings["ignore_startup_parameters"].split(",")) >= {"extra_float_digits"}
    assert settings["max_client_conn"] == "2000"
    assert settings["unix_socket_dir"] == ""
    for database in databases.values():
        assert database.endswith("connect_query='SET statement_timeout = 10000'")


def test_server_statement_timeout_backstop_can_be_turned_off():
    ini = pgbouncer_ini(cs.render(sets=("pgbouncer.serverStatementTimeoutMs=0",)))
    assert not any("connect_query" in d for d in ini["databases"].values())


def test_credentials_come_from_the_connection_secret_as_files(default_render):
    pod = default_render.one("Deployment", "pgbouncer")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["db-secret"]["secret"]["secretName"] == "exam-results-db"
    init = pod["initContainers"][0]
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]}["db-secret"] == "/etc/pgbouncer-secret"
    script = default_render.one("ConfigMap", "pgbouncer-config")["data"]["render-config.sh"]
    for key in ("rw-host", "ro-host", "port", "dbname", "app-username", "app-password", "reader-username", "reader-password"):
        assert f"$(key {key})" in script
    # least privilege: the owner's credentials are neither read nor mounted
    assert "$(key username)" not in script and "$(key password)" not in script
    mounted = {item["key"] for item in volumes["db-secret"]["secret"]["items"]}
    assert "username" not in mounted and "password" not in mounted
    # no container takes a secret through its environment
    for container in pod["containers"] + pod["initContainers"]:
        assert not any("secretKeyRef" in (e.get("valueFrom") or {}) for e in container.get("env", []))
    # the generated files live in memory, never in the ConfigMap
    assert volumes["runtime"]["emptyDir"]["medium"] == "Memory"


def test_graceful_shutdown_waits_for_in_flight_transactions(default_render):
    pod = default_render.one("Deployment", "pgbouncer")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    command = container["command"]
    assert command[0] == "/usr/bin/pgbouncer"  # PID 1, so the preStop hook can signal it
    pre_stop = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert "kill -INT 1" in pre_stop
    delay = int(re.search(r"sleep (\d+)", pre_stop).group(1))
    assert 0 < delay < pod["terminationGracePeriodSeconds"]


def test_probes_and_hardening(default_render):
    pod = default_render.one("Deployment", "pgbouncer")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod["initContainers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["limits"]["memory"]
    for container in pod["containers"]:
        assert "readinessProbe" in container and "livenessProbe" in container


def test_exporter_sidecar_talks_to_pgbouncers_port_not_its_default(default_render):
    pod = default_render.one("Deployment", "pgbouncer")["spec"]["template"]["spec"]
    exporter = next(c for c in pod["containers"] if c["name"] == "exporter")
    connection = next(a for a in exporter["args"] if a.startswith("--pgBouncer.connectionString="))
    assert connection.endswith("=postgres://pgbouncer_exporter@127.0.0.1:6432/pgbouncer?sslmode=disable")
    assert "6543" not in connection
    assert {e["name"]: e["value"] for e in exporter["env"]} == {"PGPASSFILE": "/etc/pgbouncer-runtime/exporter.pgpass"}
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 9127, "protocol": "TCP"}]
    # PgBouncer lets only the exporter's own user read the console
    assert pgbouncer_ini(default_render)["pgbouncer"]["stats_users"] == "pgbouncer_exporter"
    assert pgbouncer_ini(default_render)["pgbouncer"]["admin_users"] == ""


def test_pods_run_with_a_high_uid(default_render):
    for kind, name in (("Deployment", "pgbouncer"), ("Job", "exam-results-migrations")):
        pod = default_render.one(kind, name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] >= 10000
        assert pod["securityContext"]["runAsGroup"] >= 10000


def test_config_change_rolls_the_pods():
    before = cs.render().one("Deployment", "pgbouncer")["spec"]["template"]["metadata"]["annotations"]
    after = cs.render(sets=("pgbouncer.maxClientConn=2200",)).one("Deployment", "pgbouncer")
    assert after["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != before["checksum/config"]
