"""``stengine serve [--host] [--port] [--scheduler] [--state] [--ssl-certfile --ssl-keyfile]``."""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from ._state import ensure_token, read_token


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stengine serve", description="The stengine web service.")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--scheduler", default=None, help="tcp://host:port of a Dask scheduler "
                   "(default: a local cluster)")
    p.add_argument("--state", default=os.environ.get("STENGINE_STATE", "stengine-state"),
                   help="state directory (SQLite, token, key, job results)")
    p.add_argument("--token-file", default=None,
                   help="file holding the access token (default: STATE/token, made on first start)")
    p.add_argument("--ssl-certfile", default=None)
    p.add_argument("--ssl-keyfile", default=None)
    p.add_argument("--workers-threads", type=int, default=2, help="threads of the local worker")
    return p


def main(argv=None) -> int:
    """Run the service; returns the exit code."""
    a = parser().parse_args(argv)
    state = Path(a.state)
    if bool(a.ssl_certfile) != bool(a.ssl_keyfile):
        print("stengine serve: give both --ssl-certfile and --ssl-keyfile", file=sys.stderr)
        return 2
    file_token = None
    if a.token_file:
        try:
            file_token = Path(a.token_file).read_text().strip()
        except OSError as e:
            print(f"stengine serve: --token-file {a.token_file}: {e.strerror}", file=sys.stderr)
            return 2
        if not file_token:
            print(f"stengine serve: --token-file {a.token_file} is empty", file=sys.stderr)
            return 2
    if not is_loopback(a.host) and not (file_token or read_token(state)):
        print(f"stengine serve: refusing to bind {a.host} (not loopback) without a token: "
              f"set $STENGINE_TOKEN or write one to {state / 'token'} (mode 0600), or start "
              "once on 127.0.0.1 to generate it", file=sys.stderr)
        return 2
    state.mkdir(parents=True, exist_ok=True)
    token, created = (file_token, False) if file_token else ensure_token(state)
    if created:
        print(f"stengine serve: new access token (saved to {state / 'token'}, mode 0600):\n"
              f"  {token}", flush=True)
    import uvicorn

    from ._app import create_app
    app = create_app(state, scheduler=a.scheduler, token=token,
                     cluster_kwargs={"threads_per_worker": a.workers_threads,
                                     "dashboard_address": ":0"})
    scheme = "https" if a.ssl_certfile else "http"
    print(f"stengine serve: {scheme}://{a.host}:{a.port}/ (state {state})", flush=True)
    uvicorn.run(app, host=a.host, port=a.port, ssl_certfile=a.ssl_certfile,
                ssl_keyfile=a.ssl_keyfile, log_level="warning", proxy_headers=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
