"""TLS to PostgreSQL is verified by default: PgBouncer (server_tls_sslmode) and
the migration Job (PGSSLMODE) use verify-full with a mounted CA: the
connection Secret's ca.crt, another Secret, or an inline bundle (RDS)."""

import pytest

import chart_support as cs
from test_pgbouncer import pgbouncer_ini

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def volumes(pod_spec):
    return {v["name"]: v for v in pod_spec["volumes"]}


def ca_mount(container):
    return next(m for m in container["volumeMounts"] if m["name"] == "postgres-ca")


@pytest.mark.parametrize("value_set", cs.VALUE_SETS)
def test_pgbouncer_verifies_the_server_certificate_by_default(rendered_sets, value_set):
    settings = pgbouncer_ini(rendered_sets[value_set])["pgbouncer"]
    assert settings["server_tls_sslmode"] == "verify-full"
    pod = rendered_sets[value_set].one("Deployment", "pgbouncer")["spec"]["template"]["spec"]
    mount = ca_mount(pod["containers"][0])
    assert settings["server_tls_ca_file"] == "${PGBOUNCER_CA_FILE:-" + mount["mountPath"] + "/ca.crt}"
    assert mount["readOnly"] is True


def test_the_ca_comes_from_the_connection_secret_by_default(default_render):
    pod = default_render.one("Deployment", "pgbouncer")["spec"]["template"]["spec"]
    assert volumes(pod)["postgres-ca"]["secret"] == {
        "secretName": "exam-results-db", "items": [{"key": "ca.crt", "path": "ca.crt"}], "defaultMode": 0o444}


def test_the_ca_can_come_from_cloudnative_pgs_own_secret():
    rendered = cs.render(sets=("database.tls.caSecret.secretName=exam-results-db-ca",))
    pod = rendered.one("Deployment", "pgbouncer")["spec"]["template"]["spec"]
    assert volumes(pod)["postgres-ca"]["secret"]["secretName"] == "exam-results-db-ca"
    assert volumes(pod)["postgres-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_an_inline_bundle_is_stored_in_configmaps_for_pgbouncer_and_the_hook():
    rendered = cs.render(cs.value_set("rds"), sets=(f"database.tls.caBundle={PEM}".replace(",", "\\,"),))
    for name, hook in (("postgres-ca", False), ("postgres-ca-hook", True)):
        cm = rendered.one("ConfigMap", name)
        assert cm["data"]["ca.crt"] == PEM
        assert ("helm.sh/hook" in cm["metadata"].get("annotations", {})) is hook
    pod = rendered.one("Deployment", "pgbouncer")["spec"]["template"]["spec"]
    assert volumes(pod)["postgres-ca"]["configMap"]["name"] == "postgres-ca"
    # a new bundle restarts PgBouncer
    other = cs.render(cs.value_set("rds"), sets=(f"database.tls.caBundle={PEM}x",))
    annotations = lambda r: r.one("Deployment", "pgbouncer")["spec"]["template"]["metadata"]["annotations"]
    assert annotations(rendered)["checksum/ca-bundle"] != annotations(other)["checksum/ca-bundle"]


def test_without_a_bundle_no_ca_configmap_is_rendered(default_render):
    assert not {"postgres-ca", "postgres-ca-hook"} & default_render.names("ConfigMap")


def test_plain_text_fallback_modes_are_refused():
    for mode in ("prefer", "allow"):
        assert "/database/tls/sslmode" in cs.render_error(sets=(f"database.tls.sslmode={mode}",))


@pytest.mark.parametrize("value_set", cs.VALUE_SETS)
def test_the_migration_job_verifies_the_server_with_the_same_ca(rendered_sets, value_set):
    rendered = rendered_sets[value_set]
    (job,) = rendered.all("Job")
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == ca_mount(container)["mountPath"] + "/ca.crt"
    ca = volumes(pod)["postgres-ca"]
    pgbouncer_ca = volumes(rendered.one("Deployment", "pgbouncer")["spec"]["template"]["spec"])["postgres-ca"]
    assert ca.get("secret") == pgbouncer_ca.get("secret")
