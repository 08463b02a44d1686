"""The rendered NetworkPolicies, evaluated as a graph over the pods the chart,
Knative and CloudNativePG create, allow exactly
    Knative data plane -> functions -> PgBouncer -> Postgres
and nothing that bypasses the pooler."""

import itertools

import pytest

import chart_support as cs
from netpol_graph import Cluster, endpoint

QUEUE_PROXY_PORTS = [("http1", 8012, "TCP"), ("h2c", 8013, "TCP"), ("https", 8112, "TCP"),
                     ("http-queueadm", 8022, "TCP"), ("http-autometric", 9090, "TCP"),
                     ("http-usermetric", 9091, "TCP")]


def build_cluster(rendered, values):
    """Pods (labels as the chart, Knative and CloudNativePG set them) plus the rendered policies."""
    ns = cs.NAMESPACE
    pg_ns = values["postgres"]["namespace"] or ns
    cluster = Cluster()
    ips = (f"10.0.{i // 250}.{i % 250 + 1}" for i in itertools.count())
    eps = {"function": [], "pgbouncer": [], "postgres": [], "migrations": [], "upkeep": [], "tests": []}
    for ksvc in rendered.all("Service"):
        if ksvc["apiVersion"] != "serving.knative.dev/v1":
            continue
        name = ksvc["metadata"]["name"]
        template = ksvc["spec"]["template"]
        labels = dict(template["metadata"]["labels"])
        labels.update({"serving.knative.dev/service": name, "serving.knative.dev/configuration": name,
                       "serving.knative.dev/revision": template["metadata"].get("name", f"{name}-00001")})
        container = cs.ksvc_container(ksvc)
        metrics = int(cs.env_map(container)["METRICS_PORT"]["value"])
        ports = [("user-port", 8080, "TCP"), ("metrics", metrics, "TCP")] + QUEUE_PROXY_PORTS
        eps["function"].append(cluster.add(endpoint(name, ns, labels, next(ips), ports)))
    deployment = rendered.one("Deployment", "pgbouncer")
    for i in range(deployment["spec"]["replicas"]):
        eps["pgbouncer"].append(cluster.add(endpoint(
            f"pgbouncer-{i}", ns, deployment["spec"]["template"]["metadata"]["labels"], next(ips),
            [("pgbouncer", 6432, "TCP"), ("metrics", 9127, "TCP")])))
    for job in rendered.all("Job"):
        eps["migrations"].append(cluster.add(endpoint(
            job["metadata"]["name"], ns, job["spec"]["template"]["metadata"]["labels"], next(ips))))
    for pod in rendered.all("Pod"):  # helm test
        eps["tests"].append(cluster.add(endpoint(pod["metadata"]["name"], ns, pod["metadata"]["labels"], next(ips))))
    for cronjob in rendered.all("CronJob"):
        eps["upkeep"].append(cluster.add(endpoint(
            cronjob["metadata"]["name"], ns, cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"], next(ips))))
    for i, role in enumerate(["primary", "replica", "replica"]):
        eps["postgres"].append(cluster.add(endpoint(
            f"{values['postgres']['clusterName']}-{i + 1}", pg_ns,
            {"cnpg.io/cluster": values["postgres"]["clusterName"], "cnpg.io/instanceRole": role,
             "cnpg.io/podRole": "instance", "role": role},
            next(ips), [("postgresql", 5432, "TCP"), ("status", 8000, "TCP"), ("metrics", 9187, "TCP")])))
    others = {
        "activator": cluster.add(endpoint("activator", "knative-serving", {"app": "activator"}, next(ips))),
        "autoscaler": cluster.add(endpoint("autoscaler", "knative-serving", {"app": "autoscaler"}, next(ips))),
        "kourier": cluster.add(endpoint("kourier-gateway", "kourier-system", {"app": "3scale-kourier-gateway"}, next(ips),
                                        [("http2", 8080, "TCP"), ("http2-local", 8081, "TCP")])),
        "prometheus": cluster.add(endpoint("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, next(ips))),
        "dns": cluster.add(endpoint("coredns", "kube-system", {"k8s-app": "kube-dns"}, next(ips),
                                    [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")])),
        "operator": cluster.add(endpoint("cnpg-controller", "cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"}, next(ips))),
        "stranger": cluster.add(endpoint("debug-shell", ns, {"app": "debug"}, next(ips),
                                         [("http", 8080, "TCP"), ("pg", 5432, "TCP")])),
        "foreign": cluster.add(endpoint("other-team", "default", {"app.kubernetes.io/component": "function",
                                                                   "app.kubernetes.io/part-of": "exam-results"}, next(ips))),
        "internet": cluster.add(endpoint("internet", None, {}, "93.184.216.34", [("https", 443, "TCP"), ("pg", 5432, "TCP")])),
        # an RDS endpoint inside ci/rds-values.yaml's subnets
        "rds": cluster.add(endpoint("rds-primary", None, {}, "10.20.64.10", [("pg", 5432, "TCP"), ("https", 443, "TCP")])),
    }
    for policy in rendered.all("NetworkPolicy"):
        cluster.add_policy(ns, policy)
    return cluster, eps, others


@pytest.fixture(scope="module", params=["default", "prod"])
def graph(request, rendered_sets):
    return build_cluster(rendered_sets[request.param], cs.effective_values(request.param))


def everyone(eps, others):
    return [e for group in eps.values() for e in group] + list(others.values())


def test_functions_may_open_connections_only_to_pgbouncer_and_dns(graph):
    cluster, eps, others = graph
    for fn in eps["function"]:
        for dst in everyone(eps, others):
            if dst is fn:
                continue
            reachable = cluster.reachable_ports(fn, dst)
            if dst in eps["pgbouncer"]:
                assert reachable == {(6432, "TCP")}, (fn.name, dst.name)
            elif dst is others["dns"]:
                assert reachable == {(53, "UDP"), (53, "TCP")}
            else:
                assert reachable == set(), (fn.name, dst.name, reachable)


def test_no_function_can_reach_postgres_directly(graph):
    cluster, eps, _ = graph
    for fn, pg in itertools.product(eps["function"], eps["postgres"]):
        for port in (5432, 8000, 9187):
            assert not cluster.allowed(fn, pg, port), f"{fn.name} -> {pg.name}:{port}"


def test_pgbouncer_may_open_connections_only_to_postgres_and_dns(graph):
    cluster, eps, others = graph
    for pgb in eps["pgbouncer"]:
        for dst in everyone(eps, others):
            if dst is pgb:
                continue
            reachable = cluster.reachable_ports(pgb, dst)
            if dst in eps["postgres"]:
                assert reachable == {(5432, "TCP")}
            elif dst is others["dns"]:
                assert reachable == {(53, "UDP"), (53, "TCP")}
            else:
                assert reachable == set(), (pgb.name, dst.name, reachable)


def test_pgbouncer_accepts_clients_only_from_functions_and_metrics_only_from_the_scraper(graph):
    cluster, eps, others = graph
    for pgb in eps["pgbouncer"]:
        clients = {src.name for src in everyone(eps, others) if src is not pgb and cluster.allowed(src, pgb, 6432)}
        assert clients == {fn.name for fn in eps["function"]}
        scrapers = {src.name for src in everyone(eps, others) if cluster.allowed(src, pgb, 9127)}
        assert scrapers == {"prometheus"}


def test_postgres_accepts_sql_only_from_pgbouncer_its_peers_the_operator_and_migrations(graph):
    cluster, eps, others = graph
    for pg in eps["postgres"]:
        sources = {src.name for src in everyone(eps, others) if src is not pg and cluster.allowed(src, pg, 5432)}
        expected = ({e.name for e in eps["pgbouncer"]} | {e.name for e in eps["postgres"] if e is not pg}
                    | {e.name for e in eps["migrations"]} | {e.name for e in eps["upkeep"]} | {"cnpg-controller"})
        assert sources == expected
        assert {src.name for src in everyone(eps, others) if src is not pg and cluster.allowed(src, pg, 8000)} == (
            {e.name for e in eps["postgres"] if e is not pg} | {"cnpg-controller"})


def test_functions_accept_requests_only_from_knatives_data_plane(graph):
    cluster, eps, others = graph
    for fn in eps["function"]:
        for port in (8012, 8013):
            sources = {src.name for src in everyone(eps, others) if src is not fn and cluster.allowed(src, fn, port)}
            assert sources == {"activator", "autoscaler", "kourier-gateway"}
        # the user container's port is reached only through queue-proxy in the same pod
        assert not any(cluster.allowed(src, fn, 8080) for src in everyone(eps, others) if src is not fn)
        metrics = next(p for n, p, _ in fn.ports if n == "metrics")
        assert {src.name for src in everyone(eps, others) if cluster.allowed(src, fn, metrics)} == {"prometheus"}
        assert {src.name for src in everyone(eps, others) if cluster.allowed(src, fn, 9090)} == {"activator", "autoscaler"}


def test_the_app_tier_graph_is_exactly_functions_pgbouncer_postgres(graph):
    cluster, eps, _ = graph
    edges = set()
    for (src_kind, srcs), (dst_kind, dsts) in itertools.product(eps.items(), eps.items()):
        for src, dst in itertools.product(srcs, dsts):
            if src is not dst and cluster.reachable_ports(src, dst):
                edges.add((src_kind, dst_kind))
    assert edges == {("function", "pgbouncer"), ("pgbouncer", "postgres"),
                     ("migrations", "postgres"), ("upkeep", "postgres"), ("postgres", "postgres")}


def test_default_deny_isolates_any_other_pod_in_the_namespace(graph):
    cluster, eps, others = graph
    stranger = others["stranger"]
    for other in everyone(eps, others):
        if other is stranger:
            continue
        assert not cluster.reachable_ports(stranger, other), other.name
        assert not cluster.reachable_ports(other, stranger), other.name


def test_lookalike_labels_in_another_namespace_do_not_open_the_pooler(graph):
    cluster, eps, others = graph
    assert not any(cluster.allowed(others["foreign"], pgb, 6432) for pgb in eps["pgbouncer"])


def test_functions_cannot_reach_postgres_even_without_default_deny_and_postgres_elsewhere(rendered_sets):
    values = cs.effective_values("minimal")
    assert values["networkPolicy"]["defaultDeny"] is False and values["postgres"]["namespace"]
    cluster, eps, others = build_cluster(rendered_sets["minimal"], values)
    for fn, pg in itertools.product(eps["function"], eps["postgres"]):
        assert not cluster.allowed(fn, pg, 5432)
    for pgb, pg in itertools.product(eps["pgbouncer"], eps["postgres"]):
        assert cluster.allowed(pgb, pg, 5432)
    assert not cluster.allowed(eps["function"][0], others["internet"], 443)


def test_evaluator_sees_an_open_path_when_a_policy_allows_it(rendered_sets):
    """Guard against a vacuous evaluator: an extra allow-all egress policy plus an
    allow-from-functions ingress on Postgres must open function -> Postgres."""
    values = cs.effective_values("default")
    rendered = rendered_sets["default"]
    cluster, eps, _ = build_cluster(rendered, values)
    fn, pg = eps["function"][0], eps["postgres"][0]
    assert not cluster.allowed(fn, pg, 5432)
    cluster.add_policy(cs.NAMESPACE, {"kind": "NetworkPolicy", "spec": {
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "function"}},
        "policyTypes": ["Egress"], "egress": [{}]}})
    assert not cluster.allowed(fn, pg, 5432)  # Postgres's ingress still refuses it
    cluster.add_policy(cs.NAMESPACE, {"kind": "NetworkPolicy", "spec": {
        "podSelector": {"matchLabels": {"cnpg.io/cluster": values["postgres"]["clusterName"]}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "function"}}}]}]}})
    assert cluster.allowed(fn, pg, 5432)


def test_node_local_dns_cache_is_reachable_only_when_listed():
    from netpol_graph import endpoint as make_endpoint

    cache = make_endpoint("node-local-dns", None, {}, "169.254.20.10", [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")])
    for cidrs, expected in (([], False), (["169.254.20.10/32"], True)):
        values = cs.deep_merge(cs.effective_values("default"), {"networkPolicy": {"dns": {"cidrs": cidrs}}})
        rendered = cs.render({"networkPolicy": {"dns": {"cidrs": cidrs}}})
        cluster, eps, _ = build_cluster(rendered, values)
        cluster.add(cache)
        for src in eps["function"] + eps["pgbouncer"]:
            assert cluster.allowed(src, cache, 53, "UDP") is expected
            assert not cluster.allowed(src, cache, 443)


@pytest.mark.parametrize("value_set", ["default", "prod", "rds"])
def test_pgbouncer_and_the_migration_job_reach_the_database_of_the_value_set(rendered_sets, value_set):
    """CloudNativePG: the instance pods; RDS (postgres.provider external): the
    database's address ranges on postgres.port, and no CloudNativePG pod."""
    cluster, eps, others = build_cluster(rendered_sets[value_set], cs.effective_values(value_set))
    external = value_set == "rds"
    assert eps["migrations"] and eps["pgbouncer"] and eps["upkeep"]
    for src in eps["pgbouncer"] + eps["migrations"] + eps["upkeep"]:
        assert cluster.allowed(src, others["rds"], 5432) is external, src.name
        assert not cluster.allowed(src, others["rds"], 443), src.name
        assert not cluster.allowed(src, others["internet"], 5432), src.name
        for pg in eps["postgres"]:
            assert cluster.allowed(src, pg, 5432) is (not external), (src.name, pg.name)
    for fn in eps["function"]:
        assert not cluster.allowed(fn, others["rds"], 5432)
    if external:
        assert not any(p["spec"]["podSelector"].get("matchLabels", {}).get("cnpg.io/cluster")
                       for p in rendered_sets[value_set].all("NetworkPolicy"))


def test_an_external_database_without_address_ranges_is_refused():
    message = cs.render_error({"postgres": {"provider": "external"}})
    assert "postgres.external.cidrs is empty" in message
    assert cs.render({"postgres": {"provider": "external"}, "networkPolicy": {"enabled": False}}).all("Deployment")


def test_helm_test_pods_reach_only_the_knative_data_plane_and_dns(graph):
    cluster, eps, others = graph
    assert eps["tests"]
    for pod in eps["tests"]:
        assert cluster.allowed(pod, others["kourier"], 8081)
        assert cluster.allowed(pod, others["dns"], 53, "UDP")
        for dst in eps["function"] + eps["pgbouncer"] + eps["postgres"] + [others["internet"]]:
            assert not cluster.reachable_ports(pod, dst), (pod.name, dst.name)
