"""knative/resolve_digests.py: finds every third-party image block of
values.yaml, asks a registry (a real HTTP server on 127.0.0.1 speaking the
Distribution API's token and manifest endpoints) for the tag's digest, and
writes it into values.yaml without touching anything else."""

import http.server
import json
import subprocess
import sys

import pytest

import chart_support as cs

sys.path.insert(0, str(cs.REPO / "knative"))
import resolve_digests  # noqa: E402

SCRIPT = cs.REPO / "knative" / "resolve_digests.py"
DIGEST = "sha256:" + "ab" * 32


def test_every_third_party_image_of_values_yaml_is_listed():
    paths = {image.path for image in resolve_digests.images(cs.chart_defaults())}
    assert paths == {"pgbouncer.image", "pgbouncer.exporter.image", "migrations.image", "tests.image"}


@pytest.mark.parametrize("repository, registry, name", [
    ("ghcr.io/cloudnative-pg/pgbouncer", "ghcr.io", "cloudnative-pg/pgbouncer"),
    ("docker.io/prometheuscommunity/pgbouncer-exporter", "docker.io", "prometheuscommunity/pgbouncer-exporter"),
    ("curlimages/curl", "docker.io", "curlimages/curl"),
    ("postgres", "docker.io", "library/postgres"),
    ("127.0.0.1:5000/org/img", "127.0.0.1:5000", "org/img"),
])
def test_registry_and_name_of_a_repository(repository, registry, name):
    image = resolve_digests.Image("x.image", repository, "1", "")
    assert (image.registry, image.name) == (registry, name)


@pytest.fixture
def registry():
    """A registry answering one tag of one repository, with a token it checks."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            assert self.path.startswith("/token?scope=repository:")
            body = json.dumps({"token": "t0k"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self):
            seen.append((self.path, self.headers.get("Authorization"), self.headers.get("Accept")))
            if self.path == "/v2/org/pgbouncer/manifests/1.25.2" and self.headers.get("Authorization") == "Bearer t0k":
                self.send_response(200)
                self.send_header("Docker-Content-Digest", DIGEST)
            else:
                self.send_response(404)
            self.end_headers()

    with cs.serve_http(Handler) as address:
        yield address, seen


def test_write_fills_the_digest_of_the_image_and_keeps_the_rest_of_the_file(registry, tmp_path):
    address, seen = registry
    values = tmp_path / "values.yaml"
    original = (
        "# comment\n"
        "pgbouncer:\n"
        "  image:\n"
        f"    repository: {address}/org/pgbouncer  # note\n"
        '    tag: "1.25.2"\n'
        '    digest: ""\n'
        "  port: 6432\n"
        "functions:\n"
        "  getResult:\n"
        "    image: {tag: \"\", digest: \"\"}\n"
    )
    values.write_text(original)
    check = subprocess.run([sys.executable, SCRIPT, "--values", values, "--check"], capture_output=True, text=True)
    assert check.returncode == 1 and "missing" in check.stdout
    written = subprocess.run([sys.executable, SCRIPT, "--values", values, "--write"], capture_output=True, text=True)
    assert written.returncode == 0, written.stderr
    assert values.read_text() == original.replace('    digest: ""\n  port', f'    digest: "{DIGEST}"\n  port')
    again = subprocess.run([sys.executable, SCRIPT, "--values", values, "--check"], capture_output=True, text=True)
    assert again.returncode == 0 and f"-> {DIGEST} ok" in again.stdout
    assert "application/vnd.oci.image.index.v1+json" in seen[0][2]


def test_an_unreachable_registry_is_named_and_exits_2(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text("x:\n  image:\n    repository: 127.0.0.1:9/org/img\n    tag: \"1\"\n    digest: \"\"\n")
    result = subprocess.run([sys.executable, SCRIPT, "--values", values], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "cannot reach 127.0.0.1:9" in result.stderr
