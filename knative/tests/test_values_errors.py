"""A bad values file fails `helm template` with a message naming what is wrong."""

import pytest

import chart_support as cs


def test_a_misspelt_key_is_an_error_not_ignored():
    message = cs.render_error(cs.fixture_values("bad-typo.yaml"))
    assert "/functions/getResult/autoscaling" in message
    assert "maxScael" in message and "not allowed" in message


def test_client_connections_beyond_pgbouncer_capacity_fail_with_the_numbers():
    message = cs.render_error(cs.fixture_values("bad-pool-clients.yaml"))
    assert "pool arithmetic" in message
    # 400 x 8 x 2 = 6400 for get-result; the rest at defaults
    assert "get-result 6400" in message
    assert "PgBouncer accepts only 4000" in message
    assert "pgbouncer.maxClientConn 2000" in message


def test_server_connections_beyond_postgres_max_connections_fail_with_the_numbers():
    message = cs.render_error(cs.fixture_values("bad-pool-server.yaml"))
    assert "pool arithmetic" in message
    assert "database exam_results" in message
    assert "3 replicas x (pool size 90 + reservePoolSize 5)" in message
    assert "= 305, above postgres.maxConnections 200" in message


def test_raising_max_connections_makes_the_same_pools_fit():
    values = cs.deep_merge(cs.fixture_values("bad-pool-server.yaml"), {"postgres": {"maxConnections": 305}})
    assert cs.render(values).one("Deployment", "pgbouncer")


def test_traffic_percents_must_add_up_to_100():
    message = cs.render_error(cs.fixture_values("bad-traffic.yaml"))
    assert "functions.getResult.traffic: percents add up to 110" in message


def test_a_reserved_metrics_port_is_refused():
    message = cs.render_error(cs.fixture_values("bad-metrics-port.yaml"))
    assert "/functionDefaults/metricsPort" in message


@pytest.mark.parametrize("sets, expected", [
    (("functions.getResult.autoscaling.minScale=200",), "minScale 200 is above maxScale 100"),
    (("functions.getResult.autoscaling.target=500",), "autoscaling.target 500 is above containerConcurrency 128"),
    (("functions.createResult.revision=V2",), "/functions/createResult/revision"),
    (("functions.createResult.traffic[0].revision=v1", "functions.createResult.traffic[0].latestRevision=true",
      "functions.createResult.traffic[0].percent=100"), "set exactly one of revision, revisionName or latestRevision"),
    (("functions.createResult.traffic[0].revisionName=get-result-v1", "functions.createResult.traffic[0].percent=100"),
     "does not belong to service create-result"),
    (("functions.getResult.autoscaling.maxScale=0",), "/functions/getResult/autoscaling/maxScale"),
    (("functions.getResult.timeoutSeconds=10",), "shutdownDrainSeconds 20 must be below timeoutSeconds 10"),
    (("functionDefaults.securityContext.runAsNonRoot=false",), "/functionDefaults/securityContext/runAsNonRoot"),
    (("functions.getResult.extraEnv[0].name=DATABASE_URL", "functions.getResult.extraEnv[0].value=postgres://db:5432/x"),
     "functions.getResult.extraEnv: DATABASE_URL is set by the chart"),
    (("functions.listResults.database.statementTimeoutMs=15000",),
     "functions.listResults: database.statementTimeoutMs 15000 must be below pgbouncer.serverStatementTimeoutMs 10000"),
])
def test_inconsistent_settings_are_refused(sets, expected):
    assert expected in cs.render_error(sets=sets)


@pytest.mark.parametrize("sets, expected", [
    # Knative refuses each of these (knative/checks/rules_test.go runs its validation on them)
    (("functions.getResult.traffic[0].latestRevision=true", "functions.getResult.traffic[0].percent=100",
      "functions.getResult.traffic[0].tag=7f3e2a1"),
     'functions.getResult.traffic[0].tag "7f3e2a1" is not a DNS-1035 label'),
    (("functions.getResult.autoscaling.scaleDownDelay=2h",),
     'functions.getResult.autoscaling.scaleDownDelay "2h" is above Knative\'s maximum of 1h'),
    (("functions.getResult.autoscaling.scaleDownDelay=61m",),
     'functions.getResult.autoscaling.scaleDownDelay "61m" is above Knative\'s maximum of 1h'),
    (("functions.updateResult.autoscaling.initialScale=0",),
     "functions.updateResult.autoscaling.initialScale 0 is refused by Knative unless the cluster's config-autoscaler "
     "sets allow-zero-initial-scale"),
    (("functions.getResult.autoscaling.window=5s",), 'functions.getResult.autoscaling.window "5s" is outside'),
    (("functions.getResult.autoscaling.activationScale=200",), "activationScale 200 is above maxScale 100"),
    (("functions.getResult.autoscaling.panicThresholdPercentage=1001",), "/functions/getResult/autoscaling/panicThresholdPercentage"),
    (("functions.getResult.revision=v0-1-0-abcdef1234567890abcdef1234567890abcd",), "/functions/getResult/revision"),
    (("functions.getResult.revision=v2", "functions.getResult.traffic[0].revision=v1", "functions.getResult.traffic[0].percent=100"),
     'functions.getResult.traffic[0].revision "v1" is not functions.getResult.revision "v2"'),
])
def test_values_knative_refuses_are_refused_at_render_time_naming_the_value(sets, expected):
    assert expected in cs.render_error(sets=sets)


@pytest.mark.parametrize("sets", [
    ("functions.getResult.autoscaling.scaleDownDelay=1h",),
    ("functions.getResult.autoscaling.scaleDownDelay=59m59s",),
    ("knative.allowZeroInitialScale=true", "functions.updateResult.autoscaling.initialScale=0"),
    ("functions.getResult.autoscaling.window=6s", "functions.getResult.autoscaling.panicWindowPercentage=10",
     "functions.getResult.autoscaling.panicThresholdPercentage=200", "functions.getResult.autoscaling.targetBurstCapacity=-1",
     "functions.getResult.autoscaling.activationScale=3"),
    ("functions.getResult.traffic[0].latestRevision=true", "functions.getResult.traffic[0].percent=100",
     "functions.getResult.traffic[0].tag=c7f3e2a1"),
])
def test_values_knative_accepts_render(sets):
    assert cs.render(sets=sets).one("Service", "get-result")


def test_the_concurrency_target_is_one_set_away_and_stays_valid():
    rendered = cs.render(sets=("functions.listResults.autoscaling.target=45",))
    ksvc = rendered.one("Service", "list-results")
    assert ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/target"] == "45"


def test_extra_env_reaches_the_container():
    rendered = cs.render(sets=("functions.getResult.extraEnv[0].name=RUST_BACKTRACE", "functions.getResult.extraEnv[0].value=full"))
    env = cs.env_map(cs.ksvc_container(rendered.one("Service", "get-result")))
    assert env["RUST_BACKTRACE"] == {"name": "RUST_BACKTRACE", "value": "full"}
