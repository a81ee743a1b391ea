"""``stengine serve`` as a subprocess: token file, bind refusal, restart after SIGKILL."""
import os
import signal
import subprocess
import sys
import time

import httpx

from .conftest import free_port, wait_job

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(state, port):
    env = {k: v for k, v in os.environ.items() if k != "STENGINE_TOKEN"}
    p = subprocess.Popen([sys.executable, "-m", "stengine.serve.cli", "--port", str(port),
                          "--state", str(state)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while time.time() - t0 < 40:
        if p.poll() is not None:
            raise AssertionError(p.stdout.read())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.2)
    p.kill()
    raise AssertionError("stengine serve did not come up")


def test_refuses_public_bind_without_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STENGINE_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "stengine.serve.cli", "--host", "0.0.0.0",
                        "--state", str(tmp_path / "s")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not loopback" in r.stderr and "token" in r.stderr


def test_restart_marks_running_jobs_failed(tmp_path, tif):
    state, port = tmp_path / "state", free_port()
    p = start(state, port)
    try:
        tok_file = state / "token"
        assert tok_file.stat().st_mode & 0o777 == 0o600
        token = tok_file.read_text().strip()
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                         headers={"Authorization": f"Bearer {token}"})
        assert c.post("/sources", json={"name": "cls", "kind": "geotiff",
                                        "location": str(tif[0])}).status_code == 201
        ok = c.post("/jobs", json={"kind": "ops", "source": "cls",
                                   "ops": [{"op": "local_count", "value": 1}]}).json()["id"]
        assert wait_job(c, ok)["status"] == "succeeded"
        # waits for a GPU no worker has: running until the service dies
        slow = c.post("/jobs", json={"kind": "ops", "source": "cls", "resources": {"GPU": 1},
                                     "ops": [{"op": "focal_mean", "window": 3}]}).json()["id"]
        wait_job(c, slow, until=("running",))
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        out = p.stdout.read()
    assert token in out and out.count(token) == 1  # printed once, on first start
    p = start(state, port)
    try:
        j = c.get(f"/jobs/{slow}").json()
        assert j["status"] == "failed" and j["error"] == "service restarted while the job " \
            "was running"
        assert c.get(f"/jobs/{ok}").json()["status"] == "succeeded"
        assert [s["name"] for s in c.get("/sources").json()] == ["cls"]
    finally:
        p.terminate()
        p.wait(30)
        out2 = p.stdout.read()
    assert token not in out2
