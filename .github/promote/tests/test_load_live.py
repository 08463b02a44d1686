"""The synthetic load against the real functions: every function of the
manifest (the workspace's debug binaries, built here if missing) on
127.0.0.1 over a throwaway database sandbox (.ci/sandbox.sh: PostgreSQL
primary and streaming replica behind PgBouncer, migrated), configured as
`make up` configures them (`.ci/stack.sh env`). Each function's load must
get only 2xx answers from a healthy function and leave no row behind.

Needs cargo and the Debian packages postgresql and pgbouncer (what
`make test-rust` needs); takes about half a minute once the binaries exist.
"""

from __future__ import annotations

import os
import secrets as secrets_module
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from promote.load import HttpLoad, LoadConfig
from promote.manifest import MANIFEST
from promote.smoke import SMOKE_EXAM_YEAR

ROOT = Path(__file__).resolve().parents[3]
SANDBOX = ROOT / ".ci" / "sandbox.sh"
STACK = ROOT / ".ci" / "stack.sh"


def _free_port_pair() -> int:
    """A port p with p and p + 1000 (its metrics) free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 1000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def _env(text: str) -> dict[str, str]:
    """VAR=value lines (comments skipped)."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


@pytest.fixture(scope="module")
def live():
    """(name -> base URL, write token, read token, psql on the primary)."""
    for tool in ("cargo", "psql", "pgbouncer"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} not found: `make deps` installs what `make test-rust` needs", pytrace=False)
    built = subprocess.run(["cargo", "build", "--workspace", "--bins", "-q"], cwd=ROOT, capture_output=True,
                           text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    state = Path(tempfile.mkdtemp(prefix="promote-load-live-"))
    env = {k: v for k, v in os.environ.items() if k not in ("PRIMARY_PORT", "REPLICA_PORT", "PGBOUNCER_PORT")}
    env.update(SANDBOX_FAST="1", SANDBOX_QUIET="1", SANDBOX_REPLICA="1")
    procs: list[subprocess.Popen] = []
    try:
        started = subprocess.run([str(SANDBOX), "start", str(state)], env=env, capture_output=True, text=True)
        assert started.returncode == 0, started.stdout + started.stderr
        subprocess.run([str(SANDBOX), "watch", str(state), str(os.getpid())], env=env, check=True)
        with (state / "secrets.env").open("a") as fh:  # the tokens `make up` writes beside the passwords
            fh.write(f"WRITE_TOKEN=live-write-{secrets_module.token_hex(12)}\n"
                     f"READ_TOKEN=live-read-{secrets_module.token_hex(12)}\n")
        facts, secrets = _env((state / "sandbox.env").read_text()), _env((state / "secrets.env").read_text())
        urls = {}
        for fn in MANIFEST:
            port = _free_port_pair()
            out = subprocess.run([str(STACK), "env", fn.name, str(port)], env=dict(env, STATE_DIR=str(state)),
                                 capture_output=True, text=True, check=True).stdout
            fn_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
            fn_env.update(_env(out))
            fn_env.update(RATE_LIMIT_PER_SECOND="0", LOG_LEVEL="warn")
            log = open(state / f"{fn.name}.log", "ab")
            procs.append(subprocess.Popen([str(ROOT / "target" / "debug" / fn.name)], env=fn_env, stdout=log,
                                          stderr=log, stdin=subprocess.DEVNULL))
            urls[fn.name] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        for (name, url), proc in zip(urls.items(), procs):
            while True:
                assert proc.poll() is None, f"{name} exited: " + (state / f"{name}.log").read_text()[-2000:]
                try:
                    if requests.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, f"{name} not ready: " + (state / f"{name}.log").read_text()[-2000:]
                time.sleep(0.1)

        def psql(sql: str) -> str:
            return subprocess.run(
                ["psql", "-X", "-tA", "-h", "127.0.0.1", "-p", facts["PRIMARY_PORT"], "-U", "postgres", "-d",
                 "exam_results", "-c", sql], env=dict(os.environ, PGPASSWORD=secrets["POSTGRES_PASSWORD"]),
                capture_output=True, text=True, check=True).stdout.strip()

        yield urls, secrets["WRITE_TOKEN"], secrets["READ_TOKEN"], psql
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run([str(SANDBOX), "destroy", str(state)], env=env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize("fn", MANIFEST, ids=[f.name for f in MANIFEST])
def test_a_healthy_function_answers_every_synthetic_request_with_a_2xx_and_keeps_no_row(live, fn):
    urls, write_token, read_token, psql = live
    stable = {name: url for name, url in urls.items() if name != fn.name}
    load = HttpLoad(fn, stable, LoadConfig(exam_year=SMOKE_EXAM_YEAR, token=write_token, read_token=read_token,
                                           max_rate=20, max_requests=6), seed=f"{fn.name}-live")
    load.start(urls[fn.name], rate=20, seconds=1)
    load.wait(timeout=15)
    stats = load.stop()
    assert stats.sent == 6, stats
    assert set(stats.statuses) <= set(range(200, 300)), f"{fn.name}: answers {dict(stats.statuses)}"
    assert psql(f"SELECT count(*) FROM student_results WHERE exam_year = {SMOKE_EXAM_YEAR}") == "0"
