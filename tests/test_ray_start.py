"""docs/scale.md's Ray commands, run: ``ray start --head`` brings up a cluster in its own processes,
and a separate driver with ``RAY_ADDRESS`` set scores on it with ``executor: ray`` (it joins that
cluster; it does not start one of its own)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

pytest.importorskip("ray", reason="the ray executor needs Ray (pip install ray)")

DRIVER = """
import json, ray
from rewardkit import load_env
env = load_env("math", executor="ray", workers=2)
scores = env.score_batch([
    {"completion": "<answer>4</answer>", "answer": "4"},
    {"completion": "<answer>5</answer>", "answer": "4"},
])
print(json.dumps({"rewards": [s.reward for s in scores], "status": [s.status for s in scores],
                  "info": [s.info for s in scores], "nodes": len(ray.nodes()),
                  "address": ray.get_runtime_context().gcs_address}))
env.close()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TOKEN_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
"""Ray's token authentication (on by default since Ray 2.59): the same token for the head and drivers."""


@pytest.fixture
def head(tmp_path):
    """A Ray head node started by ``ray start --head --block`` (stopped with its process group)."""
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    port = _free_port()
    cmd = [ray_cli, "start", "--head", "--block", "--port", str(port), "--num-cpus", "2"]
    cmd += ["--include-dashboard", "false", "--disable-usage-stats"]
    # its own temp dir: `ray start` records "the cluster on this node" there, and a later bare
    # ray.init() (another test's local cluster) would otherwise try to join this one, gone by then
    temp = tempfile.mkdtemp(prefix="rk-ray-", dir="/tmp")  # short: Ray's socket paths live under it
    cmd += ["--temp-dir", temp]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **TOKEN_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the GCS port answers once the head is up
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    yield address
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    shutil.rmtree(temp, ignore_errors=True)


def test_a_driver_scores_on_the_cluster_ray_start_brought_up(head):
    env = {**os.environ, **TOKEN_ENV, "RAY_ADDRESS": head}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("{")))
    assert result["status"] == ["ok", "ok"], result["info"]
    assert result["rewards"][0] > result["rewards"][1]  # the right answer scores higher
    # the driver joined the started cluster (Ray names it by this machine's own address, not loopback)
    assert result["address"].rsplit(":", 1)[1] == head.rsplit(":", 1)[1]
    assert result["nodes"] == 1
