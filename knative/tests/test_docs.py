"""The outputs pasted into docs/deploy.md and docs/scaling.md are what the
chart produces today, and the pool numbers in scaling.md follow from values.yaml."""

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
