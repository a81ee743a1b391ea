"""Headless Chromium for page tests: Debian's ``chromium`` driven by playwright.

``page(url)`` yields a playwright Page and the list of requests that went to a host
other than loopback (a page must make none). Tests skip when chromium is absent.
"""

from __future__ import annotations

import contextlib
import shutil
from urllib.parse import urlparse

import pytest

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]", ""}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


def chromium_path() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    return exe


@contextlib.contextmanager
def page(url: str | None = None, *, width: int = 1024, height: int = 768, timeout_ms: int = 30000):
    """A fresh browser page; ``foreign`` collects URLs of requests to non-local hosts."""
    pw_sync = pytest.importorskip("playwright.sync_api")
    exe = chromium_path()
    foreign: list[str] = []
    with pw_sync.sync_playwright() as pw:
        # playwright gives each launch a fresh, empty profile of its own
        browser = pw.chromium.launch(executable_path=exe, args=FLAGS)
        try:
            ctx = browser.new_context(viewport={"width": width, "height": height})
            pg = ctx.new_page()
            pg.set_default_timeout(timeout_ms)

            def _watch(req):
                u = urlparse(req.url)
                if u.scheme in ("http", "https", "ws", "wss") and u.hostname not in LOCAL_HOSTS:
                    foreign.append(req.url)
            pg.on("request", _watch)
            if url is not None:
                pg.goto(url)
            yield pg, foreign
        finally:
            browser.close()
