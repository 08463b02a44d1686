"""The in-cluster composition, rendered by a real Go text/template + sprig engine for the example
XRs (and variations of them), produces valid CloudNativePG resources with the properties the
exam-results service depends on."""

from __future__ import annotations

import copy

import pytest

import crossplane_support as xp

CONTRACT_SECRET_KEYS = {"rw-host", "ro-host", "port", "dbname", "username", "password"}
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"


@pytest.fixture
def render(compositions):
    def _render(xr, observed=None):
        return xp.render_composition(compositions["in-cluster"], xr, observed)

    return _render


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_every_rendered_resource_is_valid_against_its_schema(render, examples, admit, name):
    rendered = render(admit(examples[name]))
    assert rendered.resources
    for obj in rendered.resources.values():
        xp.validate(obj)
        assert obj["metadata"]["namespace"] == "exam-results"


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_cluster_has_at_least_two_instances_spread_over_nodes_by_required_anti_affinity(render, examples, admit, name):
    xr = admit(examples[name])
    cluster = render(xr).one("Cluster")
    assert cluster["spec"]["instances"] == xr["spec"]["instances"] >= 2
    assert cluster["spec"]["affinity"] == {
        "enablePodAntiAffinity": True, "podAntiAffinityType": "required", "topologyKey": "kubernetes.io/hostname"}


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_cluster_storage_follows_the_request(render, examples, admit, name):
    xr = admit(examples[name])
    storage = render(xr).one("Cluster")["spec"]["storage"]
    assert storage["size"] == xr["spec"]["storage"]["size"]
    assert storage.get("storageClass") == xr["spec"]["storage"].get("storageClass")
    assert storage["resizeInUseVolumes"] is True


def test_wal_gets_its_own_volume_only_when_asked(render, examples, admit):
    assert render(admit(examples["prod"])).one("Cluster")["spec"]["walStorage"] == {"size": "20Gi", "storageClass": "fast-ssd"}
    assert "walStorage" not in render(admit(examples["dev"])).one("Cluster")["spec"]


def test_cluster_bootstraps_the_exams_database_owned_by_the_app_role(render, examples, admit):
    rendered = render(admit(examples["dev"]))
    initdb = rendered.one("Cluster")["spec"]["bootstrap"]["initdb"]
    assert (initdb["database"], initdb["owner"]) == ("exam_results", "exam_app")
    credentials = rendered.resources["app-credentials"]
    assert credentials["type"] == "kubernetes.io/basic-auth"
    assert initdb["secret"]["name"] == credentials["metadata"]["name"]
    assert xp.secret_data(credentials)["username"] == "exam_app"


def test_parameters_reach_postgresql_as_strings(render, examples, admit):
    params = render(admit(examples["prod"])).one("Cluster")["spec"]["postgresql"]["parameters"]
    assert params == {"max_connections": "400", "shared_buffers": "2GB"}


def test_image_follows_the_major_version_unless_overridden(render, examples, admit):
    assert render(admit(examples["dev"], postgresVersion="16")).one("Cluster")["spec"]["imageName"] == \
        "ghcr.io/cloudnative-pg/postgresql:16-standard-trixie"
    pinned = "ghcr.io/cloudnative-pg/postgresql:17.6-standard-trixie@sha256:" + "a" * 64
    assert render(admit(examples["dev"], imageName=pinned)).one("Cluster")["spec"]["imageName"] == pinned


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_connection_secret_has_the_keys_the_chart_reads(render, examples, admit, name):
    xr = admit(examples[name])
    rendered = render(xr)
    secret = rendered.resources["connection-secret"]
    assert secret["metadata"]["name"] == "exam-results-db"
    data = xp.secret_data(secret)
    assert set(data) == CONTRACT_SECRET_KEYS
    assert data["rw-host"] == "exam-results-db-rw.exam-results.svc"   # CloudNativePG's primary service
    assert data["ro-host"] == "exam-results-db-ro.exam-results.svc"   # its replicas-only service
    assert data["port"] == "5432"
    assert (data["dbname"], data["username"]) == ("exam_results", "exam_app")
    assert data["password"] == xp.secret_data(rendered.resources["app-credentials"])["password"]
    assert len(data["password"]) == 32 and data["password"].isalnum()


def test_connection_secret_name_is_configurable(render, examples, admit):
    rendered = render(admit(examples["dev"], connectionSecretName="results-db-staging"))
    assert rendered.resources["connection-secret"]["metadata"]["name"] == "results-db-staging"
    assert rendered.composite_status["connectionSecret"] == "results-db-staging"


def test_password_is_generated_per_cluster_and_kept_once_it_exists(render, examples, admit):
    xr = admit(examples["dev"])
    first, other = render(xr), render(xr)
    generated = xp.secret_data(first.resources["app-credentials"])["password"]
    assert generated != xp.secret_data(other.resources["app-credentials"])["password"]  # really random
    # Next reconcile: Crossplane observes the Secret it created; the password must not change.
    again = render(xr, observed={"app-credentials": copy.deepcopy(first.resources["app-credentials"])})
    assert xp.secret_data(again.resources["app-credentials"])["password"] == generated
    assert xp.secret_data(again.resources["connection-secret"])["password"] == generated


def test_backups_enabled_compose_an_object_store_a_schedule_and_wal_archiving(render, examples, admit):
    xr = admit(examples["prod"])
    rendered = render(xr)
    cluster = rendered.one("Cluster")
    store = rendered.one("ObjectStore")
    schedule = rendered.one("ScheduledBackup")
    assert cluster["spec"]["plugins"] == [{
        "name": BARMAN_PLUGIN, "enabled": True, "isWALArchiver": True,
        "parameters": {"barmanObjectName": store["metadata"]["name"]}}]
    assert store["spec"]["configuration"]["destinationPath"] == "s3://exam-results-backups/prod"
    assert store["spec"]["retentionPolicy"] == "14d"
    assert store["spec"]["configuration"]["s3Credentials"] == {
        "accessKeyId": {"name": "exam-results-backup-s3", "key": "ACCESS_KEY_ID"},
        "secretAccessKey": {"name": "exam-results-backup-s3", "key": "ACCESS_SECRET_KEY"}}
    assert schedule["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert schedule["spec"]["method"] == "plugin"
    assert schedule["spec"]["pluginConfiguration"]["name"] == BARMAN_PLUGIN
    assert schedule["spec"]["schedule"] == "0 30 1 * * *"
    assert len(schedule["spec"]["schedule"].split()) == 6  # CloudNativePG's cron has seconds


def test_backups_disabled_compose_no_backup_machinery(render, examples, admit):
    rendered = render(admit(examples["dev"]))
    assert not rendered.by_kind("ObjectStore")
    assert not rendered.by_kind("ScheduledBackup")
    assert "plugins" not in rendered.one("Cluster")["spec"]


def test_turning_backups_off_on_the_production_example_removes_them(render, examples, admit):
    prod = copy.deepcopy(examples["prod"])
    prod["spec"]["backup"]["enabled"] = False
    rendered = render(admit(prod))
    assert not rendered.by_kind("ObjectStore") and not rendered.by_kind("ScheduledBackup")


def test_backups_without_a_credentials_secret_use_the_iam_role(render, examples, admit):
    prod = copy.deepcopy(examples["prod"])
    del prod["spec"]["backup"]["s3CredentialsSecretName"]
    prod["spec"]["backup"]["endpointURL"] = "https://minio.storage.svc:9000"
    store = render(admit(prod)).one("ObjectStore")
    assert store["spec"]["configuration"]["s3Credentials"] == {"inheritFromIAMRole": True}
    assert store["spec"]["configuration"]["endpointURL"] == "https://minio.storage.svc:9000"
    xp.validate(store)


def test_backups_enabled_without_a_destination_fail_with_a_clear_message(render, examples, admit):
    import helm_python

    xr = admit(examples["dev"])
    xr["spec"]["backup"]["enabled"] = True  # as if the XRD's CEL rule had not run
    with pytest.raises(helm_python.HelmRenderError, match="spec.backup.destinationPath is required"):
        render(xr)


def test_pod_monitor_scrapes_the_cluster_instances_metrics_port(render, examples, admit):
    monitor = render(admit(examples["prod"])).one("PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "cnpg.io/cluster": "exam-results-db", "cnpg.io/podRole": "instance"}
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics"}]


def test_monitoring_can_be_switched_off(render, examples, admit):
    rendered = render(admit(examples["dev"], monitoring={"enabled": False}))
    assert not rendered.by_kind("PodMonitor")
    assert "monitoring" not in rendered.one("Cluster")["spec"]


def test_monitoring_loads_the_charts_partition_size_queries(render, examples, admit):
    cluster = render(admit(examples["prod"])).one("Cluster")
    assert cluster["spec"]["monitoring"]["customQueriesConfigMap"] == [
        {"name": "exam-results-cnpg-queries", "key": "queries"}]


def test_xr_status_reports_endpoints_and_ready_instances_from_the_observed_cluster(render, examples, admit):
    xr = admit(examples["prod"])
    first = render(xr)
    assert first.composite_status["endpoints"] == {
        "readWrite": "exam-results-db-rw.exam-results.svc", "readOnly": "exam-results-db-ro.exam-results.svc", "port": 5432}
    assert first.composite_status["readyInstances"] == 0
    assert first.ready["cluster"] == "False"

    cluster = copy.deepcopy(first.resources["cluster"])
    cluster["status"] = {"instances": 3, "readyInstances": 2, "phase": "Waiting for the instances to become active",
                         "conditions": [{"type": "Ready", "status": "False"}]}
    starting = render(xr, observed={"cluster": cluster})
    assert starting.composite_status["readyInstances"] == 2
    assert starting.ready["cluster"] == "False"

    cluster["status"].update(readyInstances=3, phase="Cluster in healthy state",
                             conditions=[{"type": "Ready", "status": "True"}])
    healthy = render(xr, observed={"cluster": cluster})
    assert healthy.composite_status["readyInstances"] == 3
    assert healthy.ready["cluster"] == "True"
    # Everything else is ready as soon as it exists, so the XR becomes Ready with the cluster.
    assert set(healthy.ready.values()) == {"True"}


def restored_from_prod(examples, **restore):
    xr = copy.deepcopy(examples["prod"])
    xr["metadata"]["name"] = "exam-results-db-restored"
    xr["spec"]["restore"] = {"fromCluster": "exam-results-db", **restore}
    return xr


def test_restore_bootstraps_from_the_source_clusters_archive_to_a_point_in_time(render, examples, admit):
    rendered = render(admit(restored_from_prod(examples, targetTime="2027-08-14T09:30:00Z")))
    for obj in rendered.resources.values():
        xp.validate(obj)
    cluster = rendered.one("Cluster")["spec"]
    assert "initdb" not in cluster["bootstrap"]
    recovery = cluster["bootstrap"]["recovery"]
    assert recovery["source"] == "origin"
    assert recovery["recoveryTarget"] == {"targetTime": "2027-08-14T09:30:00Z"}
    assert (recovery["database"], recovery["owner"]) == ("exam_results", "exam_app")
    assert recovery["secret"]["name"] == rendered.resources["app-credentials"]["metadata"]["name"]
    store = rendered.one("ObjectStore")
    assert cluster["externalClusters"] == [{"name": "origin", "plugin": {
        "name": BARMAN_PLUGIN,
        "parameters": {"barmanObjectName": store["metadata"]["name"], "serverName": "exam-results-db"}}}]
    # The restored cluster archives to the same store under its own name, so both histories survive.
    assert cluster["plugins"][0]["parameters"] == {"barmanObjectName": store["metadata"]["name"]}


def test_restore_without_backups_keeps_the_store_for_reading_but_archives_nothing(render, examples, admit):
    xr = restored_from_prod(examples)
    xr["spec"]["backup"]["enabled"] = False
    rendered = render(admit(xr))
    assert rendered.one("ObjectStore")
    assert not rendered.by_kind("ScheduledBackup")
    assert "plugins" not in rendered.one("Cluster")["spec"]
    assert "recoveryTarget" not in rendered.one("Cluster")["spec"]["bootstrap"]["recovery"]


def test_a_cluster_cannot_restore_over_its_own_archive(render, examples, admit):
    import helm_python

    xr = restored_from_prod(examples)
    xr["metadata"]["name"] = "exam-results-db"
    with pytest.raises(helm_python.HelmRenderError, match="restore.fromCluster must name another cluster"):
        render(admit(xr))


def test_the_restore_operation_example_renders_a_recovery_cluster(render, admit):
    (xr,) = xp.load_docs(xp.CROSSPLANE / "operations" / "restore-in-cluster.yaml")
    rendered = render(admit(xr))
    for obj in rendered.resources.values():
        xp.validate(obj)
    assert rendered.one("Cluster")["spec"]["bootstrap"]["recovery"]["recoveryTarget"]["targetTime"] == "2027-08-14T09:30:00Z"
    assert rendered.resources["connection-secret"]["metadata"]["name"] == "exam-results-db-restored"


def test_the_backup_now_operation_targets_the_example_cluster(examples):
    (backup,) = xp.load_docs(xp.CROSSPLANE / "operations" / "backup-now.yaml")
    assert backup["spec"]["cluster"]["name"] == examples["prod"]["metadata"]["name"]
    assert backup["spec"]["pluginConfiguration"]["name"] == BARMAN_PLUGIN
