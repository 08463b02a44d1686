"""The migration hook ships sql/migrations in the chart and runs before any
function rolls out."""

import os

import chart_support as cs

HOOKS = "pre-install,pre-upgrade"


def test_chart_links_the_lead_owned_sql_migrations():
    link = cs.CHART / "migrations"
    assert link.is_symlink() and os.readlink(link) == "../../sql/migrations"
    assert sorted(p.name for p in link.glob("*.sql")) == sorted(p.name for p in (cs.REPO / "sql" / "migrations").glob("*.sql"))


def test_chart_links_the_one_migration_runner():
    link = cs.CHART / "migrate.sh"
    assert link.is_symlink() and os.readlink(link) == "../../sql/migrate.sh"


def test_configmap_carries_the_runner_verbatim_and_the_job_runs_it(default_render):
    data = default_render.one("ConfigMap", "exam-results-migrations")["data"]
    assert data["migrate.sh"] == (cs.REPO / "sql" / "migrate.sh").read_text()
    container = default_render.one("Job", "exam-results-migrations")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "/migrations/migrate.sh"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MIGRATIONS_DIR"] == "/migrations"
    assert env["DATABASE_SECRET_DIR"] == "/etc/exam-results-db"
    assert env["DATABASE_SECRET_NAME"] == "exam-results-db"


def test_configmap_carries_every_migration_verbatim(default_render):
    data = default_render.one("ConfigMap", "exam-results-migrations")["data"]
    files = sorted((cs.REPO / "sql" / "migrations").glob("*.sql"))
    assert files, "sql/migrations has no .sql files"
    for path in files:
        assert data[path.name].rstrip("\n") == path.read_text().rstrip("\n"), path.name
    assert "migrate.sh" in data


def hook(obj):
    annotations = obj["metadata"].get("annotations") or {}
    return annotations.get("helm.sh/hook"), int(annotations.get("helm.sh/hook-weight", "0"))


def test_everything_the_job_needs_is_created_before_it_as_a_hook(default_render):
    sa = default_render.one("ServiceAccount", "exam-results-migrations")
    cm = default_render.one("ConfigMap", "exam-results-migrations")
    policy = default_render.one("NetworkPolicy", "exam-results-migrations")
    job = default_render.one("Job", "exam-results-migrations")
    for obj in (sa, cm, policy, job):
        assert hook(obj)[0] == HOOKS
    assert hook(sa)[1] < hook(cm)[1] < hook(policy)[1] < hook(job)[1]
    # the functions and PgBouncer are ordinary release objects, applied after the hooks
    for ksvc in default_render.all("Service"):
        assert hook(ksvc)[0] is None


def test_job_is_bounded_hardened_and_reads_credentials_from_the_secret(default_render):
    job = default_render.one("Job", "exam-results-migrations")
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert not any("valueFrom" in e for e in container["env"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["db-secret"]["secret"]["secretName"] == "exam-results-db"
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["db-secret"] == "/etc/exam-results-db"
    script = default_render.one("ConfigMap", "exam-results-migrations")["data"]["migrate.sh"]
    assert "PGHOST:rw-host" in script  # the primary, never the read-only service


def test_migrations_can_be_turned_off():
    rendered = cs.render({"migrations": {"enabled": False}})
    assert not rendered.all("Job")
    assert "exam-results-migrations" not in rendered.names("ConfigMap")
