"""Shared fixtures: the promote package on sys.path, and one real Prometheus
(Debian's ``prometheus`` package) serving the synthetic series."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # .github/promote
sys.path.insert(0, str(HERE))

import synthetic  # noqa: E402


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: install the Debian package listed in .ci/apt-cicd.txt", pytrace=False)
    return path


@dataclass(frozen=True)
class PromServer:
    url: str
    #: unix time of the first synthetic sample
    start: int


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> PromServer:
    """A real Prometheus on 127.0.0.1, its TSDB built with promtool from
    the synthetic OpenMetrics in tests/synthetic.py."""
    promtool, prom = _tool("promtool"), _tool("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    # two hours back keeps the data inside one block and inside retention
    start = (int(time.time()) // 60) * 60 - 2 * 3600
    (work / "series.om").write_text(synthetic.openmetrics(start))
    data = work / "data"
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "series.om"), str(data)],
                   check=True, capture_output=True)
    (work / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    port = _free_port()
    log = open(work / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [prom, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
         "--storage.tsdb.retention.time=30d", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("Prometheus did not start:\n" + (work / "prometheus.log").read_text()[-3000:])
            time.sleep(0.2)
        yield PromServer(url, start)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def fixtures_dir() -> Path:
    return HERE / "fixtures" / "ksvc"


def pytest_report_header(config):  # noqa: D103
    return [f"promote tests: prometheus={shutil.which('prometheus')} promtool={shutil.which('promtool')} "
            f"actionlint={shutil.which('actionlint')} cwd={os.getcwd()}"]
