"""A ``stengine serve`` subprocess killed mid-job restarts with its records intact."""
import os
import signal
import subprocess
import sys
import time

import httpx

from stengine.serve._state import RESTART_REASON, State

from .conftest import TOKEN, free_port


def _start(state, port, token_file):
    args = ["serve", "--state", str(state), "--port", str(port),
            "--token-file", str(token_file), "--workers-threads", "1"]
    cmd = f"import sys; from stengine.cli import main; sys.exit(main({args!r}))"
    p = subprocess.Popen([sys.executable, "-c", cmd],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while time.time() - t0 < 60:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return p, url
        except httpx.TransportError:
            pass
        assert p.poll() is None, p.stdout.read().decode()
        time.sleep(0.2)
    p.kill()
    raise AssertionError("stengine serve did not start in 60 s")


def test_sigkill_mid_job_keeps_records(tmp_path, tif):
    state, tf = tmp_path / "state", tmp_path / "tok"
    tf.write_text(TOKEN)
    h = {"Authorization": f"Bearer {TOKEN}"}
    p, url = _start(state, free_port(), tf)
    try:
        r = httpx.post(url + "/sources", headers=h, timeout=30,
                       json={"name": "cls", "kind": "geotiff", "location": str(tif[0])})
        assert r.status_code == 201, r.text
        r = httpx.post(url + "/jobs", headers=h, timeout=30, json={
            "kind": "ops", "source": "cls", "ops": [{"op": "focal_mean", "window": 3}]})
        assert r.status_code == 202, r.text
        jid = r.json()["id"]
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    # a job the killed service had marked running (the write the kill interrupted)
    st = State(state)
    orphan = st.add_job("ops", {"source": "cls", "ops": [{"op": "local_count", "value": 1}]})
    st.update_job(orphan, status="running", started=time.time())
    st.close()
    p, url = _start(state, free_port(), tf)
    try:
        assert httpx.get(url + "/sources/cls", headers=h, timeout=30).status_code == 200
        o = httpx.get(url + f"/jobs/{orphan}", headers=h, timeout=30).json()
        assert (o["status"], o["error"]) == ("failed", RESTART_REASON)
        j = httpx.get(url + f"/jobs/{jid}", headers=h, timeout=30).json()
        assert j["status"] in ("succeeded", "failed"), j
        if j["status"] == "failed":
            assert j["error"] == RESTART_REASON
    finally:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
