"""The chart's partition-upkeep CronJob (knative/exam-results/templates/partition-upkeep-cronjob.yaml):
valid Kubernetes, and its script really keeps partitions ready."""

import datetime
import os
import pathlib
import subprocess
import sys

import yaml

from conftest import OWNER_ROLE, REPO

def documents():
    """The CronJob's objects from the chart rendered with its defaults."""
    rendered = subprocess.run([sys.executable, str(REPO / "knative" / "helm_template.py")],
                              capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(rendered.stdout)
            if d and "partition-upkeep" in d["metadata"]["name"]]


def cronjob():
    return next(d for d in documents() if d["kind"] == "CronJob")


def test_every_object_passes_kubernetes_validate_strict_at_the_floor(tmp_path):
    manifest = tmp_path / "partition-upkeep.yaml"
    manifest.write_text(yaml.safe_dump_all(documents()))
    result = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", _kube_floor(), str(manifest)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(documents()) == 4


def test_the_cronjob_never_overlaps_runs_daily_and_is_hardened():
    spec = cronjob()["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["schedule"].split()[2:] == ["*", "*", "*"]  # every day
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    assert "limits" in container["resources"] and "requests" in container["resources"]
    assert {v["name"]: v for v in pod["volumes"]}["db-secret"]["secret"]["secretName"] == "exam-results-db"
    labels = spec["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "exam-results"


def test_network_policies_open_only_the_path_to_the_primary_and_dns():
    policies = {d["metadata"]["name"]: d for d in documents() if d["kind"] == "NetworkPolicy"}
    egress = policies["exam-results-partition-upkeep"]["spec"]["egress"]
    assert egress[0]["to"][0]["podSelector"]["matchLabels"] == {"cnpg.io/cluster": "exam-results-db"}
    assert egress[0]["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert {p["port"] for p in egress[1]["ports"]} == {53}
    ingress = policies["postgres-from-partition-upkeep"]["spec"]["ingress"][0]
    assert ingress["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "partition-upkeep"


def run_job_script(server, database, tmp_path, lead_years="1"):
    container = cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    secret = tmp_path / "secret"
    secret.mkdir(exist_ok=True)
    for key, value in {"rw-host": "127.0.0.1", "port": str(server.port), "dbname": database,
                       "username": OWNER_ROLE, "password": server.password_of(OWNER_ROLE)}.items():
        (secret / key).write_text(value)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({e["name"]: e["value"] for e in container["env"]})
    env.update(DATABASE_SECRET_DIR=str(secret), PGSSLMODE="disable", LEAD_YEARS=lead_years, HOME=str(tmp_path))
    return subprocess.run([*container["command"], *container["args"]], env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_job_script_creates_this_and_next_years_partition_and_is_idempotent(server, database, tmp_path):
    year = datetime.datetime.now(datetime.timezone.utc).year
    server.psql(database, f"DROP TABLE IF EXISTS student_results_{year}, student_results_{year + 1}")

    first = run_job_script(server, database, tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"ensured: student_results_{year} student_results_{year + 1}" in first.stdout
    parts = first.stdout.split("partitions: ")[1].split()
    assert f"student_results_{year}" in parts and f"student_results_{year + 1}" in parts

    second = run_job_script(server, database, tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split("partitions: ")[1] == first.stdout.split("partitions: ")[1]


def test_the_job_fails_loudly_when_the_schema_is_missing(server, empty_database, tmp_path):
    result = run_job_script(server, empty_database, tmp_path)
    assert result.returncode != 0
    assert "ensure_exam_year_partition" in result.stderr


def _kube_floor() -> str:
    """The chart's Kubernetes floor (Chart.yaml's kubeVersion), as .ci/k8s_validate.py reads it."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / ".ci"))
    import k8s_validate

    return k8s_validate.DEFAULT_KUBE_VERSION
