#!/usr/bin/env python3
"""Set up and run stengine's main jobs with nothing but Python 3.11+ and git.

    python3 tasks.py demo     # create .venv on first use, install, run `stengine demo`
    python3 tasks.py test     # create .venv on first use, install test extras, run the tests
    python3 tasks.py bench    # install bench extras, run the side-by-side benchmarks

Extra arguments after the task go to the command it runs
(e.g. ``python3 tasks.py test -k focal``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
EXTRAS = {"demo": ["learn", "maps"], "test": ["test"], "bench": ["bench"]}


def _ensure_env(extras: list[str]) -> None:
    """Create .venv and (re)install the package when pyproject.toml or the extras changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - runs before anything is installed
        sys.exit(f"stengine needs Python >= 3.11; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    spec = "." + (f"[{','.join(extras)}]" if extras else "")
    stamp_key = (ROOT / "pyproject.toml").read_bytes() + spec.encode()
    stamp = VENV / f".installed-{hashlib.sha1(stamp_key).hexdigest()[:12]}"
    if stamp.exists():
        return
    print(f"installing stengine{spec[1:]} into {VENV}", flush=True)
    t0 = time.perf_counter()
    pip = [str(PY), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", spec], check=True, cwd=ROOT)
    stamp.touch()
    print(f"installed in {time.perf_counter() - t0:.0f} s (once; not part of the demo's "
          "timings)", flush=True)


def _ensure_web() -> None:
    """Leaflet for the service's pages and exported maps, from npm (pinned by a lockfile)."""
    web = ROOT / "stengine" / "web"
    if (web / "node_modules" / "leaflet" / "dist" / "leaflet.js").exists():
        return
    code = "import stengine.web as w, sys; sys.exit(0 if w.install() else 3)"
    if subprocess.call([str(PY), "-c", code], cwd=ROOT) != 0:
        print("npm not found: map pages will not load until `npm ci --prefix stengine/web` runs",
              file=sys.stderr)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    task, rest = argv[0], argv[1:]
    _ensure_env(EXTRAS[task])
    _ensure_web()
    env = dict(os.environ)
    if task == "demo":
        cmd = [str(BIN / "stengine"), "demo", *rest]
    elif task == "test":
        cmd = [str(PY), "-m", "pytest", *rest]
    else:
        cmd = [str(PY), "-m", "benchmarks", *rest]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
