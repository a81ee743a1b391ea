"""The web UI in headless Chromium: sign in, watch a job reach 100 % / succeeded."""
import os

from tests.browser import page

from .conftest import TOKEN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ui_signs_in_and_shows_job_progress(server, tif):
    c = server.client
    c.post("/sources", json={"name": "classes", "kind": "geotiff", "location": str(tif[0]),
                             "options": {"chunks": 32}})
    with page(server.url + "/login") as (pg, foreign):
        pg.fill("#token", "wrong")
        pg.click("#signin")
        assert "Wrong token" in pg.content()
        pg.fill("#token", TOKEN)
        pg.click("#signin")
        pg.wait_for_selector("#sources td:text('classes')")
        # a job submitted from the page's own form
        pg.select_option("#job-op", "local_reclassify")
        pg.click("#submit button")
        pg.wait_for_selector(".job-status.succeeded", timeout=30000)
        assert "100 %" in pg.inner_text("#jobs")
        pg.wait_for_function("document.querySelector('#cluster').textContent.includes('GPUs')")
        assert "workers 1" in pg.inner_text("#cluster")
        jobs = c.get("/jobs").json()
        assert jobs[0]["status"] == "succeeded" and jobs[0]["spec"]["source"] == "classes"
        pg.wait_for_timeout(600)
        if os.environ.get("STENGINE_DOCS_IMG") == "1":  # refresh the docs' picture on request
            pg.screenshot(path=os.path.join(ROOT, "docs", "img", "serve-ui.png"))
        assert not foreign, foreign
