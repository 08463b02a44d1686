"""`helm test`: one Pod per enabled function; its script calls /readyz and,
for a read function, one read through the function's route from
functions.yaml. The script runs here for real (sh + curl) against an HTTP
server on 127.0.0.1 standing in for the function's URL."""

import http.server
import re
import subprocess

import pytest

import chart_support as cs


def test_pods(default_render):
    pods = {p["metadata"]["name"]: p for p in default_render.all("Pod")}
    assert set(pods) == {f"{name}-test" for name, _ in cs.FUNCTIONS.values()}
    for pod in pods.values():
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert pod["spec"]["restartPolicy"] == "Never"
        assert pod["spec"]["automountServiceAccountToken"] is False
    minimal = {p["metadata"]["name"] for p in cs.render(cs.value_set("minimal")).all("Pod")}
    assert "delete-result-test" not in minimal


def script_of(rendered, function):
    return rendered.one("Pod", f"{function}-test")["spec"]["containers"][0]["args"][0]


def test_each_read_function_reads_through_its_manifest_route(default_render):
    for entry in cs.MANIFEST:
        urls = re.findall(r'get "([^"]+)"', script_of(default_render, entry["name"]))
        base = f"http://{entry['name']}.exam-results.svc.cluster.local"
        expected = [f"{base}/readyz"]
        if entry["access"] == "read":
            path = entry["route"].replace("{exam_year}", "2025").replace("{roll_number}", "100000001")
            expected.append(f"{base}{path}" if "{" in entry["route"] else f"{base}{path}?exam_year=2025&limit=1")
        assert urls == expected


@pytest.fixture
def function_stub():
    answers = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            answers.setdefault("seen", []).append((self.path, self.headers.get("Authorization")))
            path = self.path.split("?")[0]
            status = answers.get(path, 404)
            body = b'{"error":{"code":"x","message":"y"}}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with cs.serve_http(Handler) as address:
        yield f"http://{address}", answers


@pytest.mark.parametrize("readyz, read, passes", [
    (200, 200, True),
    (200, 404, True),   # the function answered: no such result
    (503, 200, False),  # not ready
    (200, 500, False),
    (200, 400, False),
])
def test_the_script_passes_only_a_ready_function_that_answers_the_read(default_render, function_stub, tmp_path, readyz, read, passes):
    base, answers = function_stub
    answers.update({"/readyz": readyz, "/results/2025/100000001": read})
    script = script_of(default_render, "get-result").replace("http://get-result.exam-results.svc.cluster.local", base)
    script = script.replace("/tmp/body", str(tmp_path / "body"))
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    assert f"GET {base}/readyz -> {readyz}" in result.stdout
    if not passes:  # the failing answer's body is printed
        assert '{"error":{"code":"x","message":"y"}}' in result.stdout


def test_a_read_token_function_is_read_with_the_first_read_token_and_probed_without(
        default_render, function_stub, tmp_path):
    base, answers = function_stub
    answers.update({"/readyz": 200, "/results": 200})
    pod = default_render.one("Pod", "list-results-test")
    container = pod["spec"]["containers"][0]
    assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]} == {
        "READ_TOKENS": {"name": "exam-results-read-tokens", "key": "tokens"}}
    script = container["args"][0].replace("http://list-results.exam-results.svc.cluster.local", base)
    script = script.replace("/tmp/body", str(tmp_path / "body"))
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "READ_TOKENS": "first-read-token,second-read-token"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert answers["seen"] == [("/readyz", None),
                               ("/results?exam_year=2025&limit=1", "Bearer first-read-token")]
