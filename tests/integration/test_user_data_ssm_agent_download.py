"""The Sentinel hosts' user data downloads the SSM agent before apt runs, so with or without curl.

The download block of the rendered user data runs here with bash against a loopback HTTP server
(the agent's regional S3 URL replaced by it): once with curl on PATH, once without, where the
python3 fallback must fetch the same bytes. Rule: the agent is installed before apt (a host whose
package mirror is unreachable must still be reachable through Session Manager), and a Debian AMI
has python3 (cloud-init runs on it) but not necessarily curl before apt installs it.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from infra.components.sentinel_hosts import user_data

PAYLOAD = b"!<arch>\nnot really a .deb, only bytes to compare\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    (root / "debian_amd64").mkdir(parents=True)
    (root / "debian_amd64" / "amazon-ssm-agent.deb").write_bytes(PAYLOAD)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/debian_$ARCH/amazon-ssm-agent.deb"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def download_block(target: Path) -> str:
    """The lines of the real user data from the agent URL to the end of the download."""
    script = user_data(region="eu-west-1", prefix="/redisstack/prod/redis", node="node-0", tls=True, exporter="",
                       agent_config="{}", agent_prometheus="{}", data_volume_id="vol-0123456789abcdef0",
                       namespace="redisstack/redisstack/prod")
    start = script.index("SSM_AGENT_URL=")
    end = script.index("dpkg -i /tmp/amazon-ssm-agent.deb")
    return script[start:end].replace("/tmp/amazon-ssm-agent.deb", str(target))


def run_block(block: str, url: str, path: str) -> subprocess.CompletedProcess[str]:
    # The URL of the real block points at S3; only that assignment is swapped for the local server.
    first, rest = block.split("\n", 1)
    assert first.startswith('SSM_AGENT_URL="https://s3.eu-west-1.amazonaws.com/amazon-ssm-eu-west-1/')
    script = f'set -euo pipefail\nARCH=amd64\nSSM_AGENT_URL="{url}"\n{rest}'
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run([bash, "-c", script], env={"PATH": path, "HOME": os.environ.get("HOME", "/tmp")},
                          text=True, capture_output=True, timeout=60, check=False)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_the_agent_downloads_with_curl(server: str, tmp_path: Path) -> None:
    target = tmp_path / "with-curl.deb"
    result = run_block(download_block(target), server, os.environ["PATH"])
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == PAYLOAD


def test_the_agent_downloads_without_curl_through_python3(server: str, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # The interpreter itself (a PATH entry may be a shim script needing more of PATH).
    (bindir / "python3").symlink_to(os.path.realpath(sys.executable))
    target = tmp_path / "without-curl.deb"
    result = run_block(download_block(target), server, str(bindir))
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == PAYLOAD
