"""Static web assets (Leaflet) for stengine's pages, installed from npm by ``tasks.py``.

Pages never load JavaScript from a CDN: they are served from :func:`asset_dir` by the
app that serves the page, or copied next to an exported page.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules"


def leaflet_dir() -> Path:
    """The folder holding ``leaflet.js``, ``leaflet.css`` and ``images/``.

    Raises FileNotFoundError with the command that installs it when it is missing.
    """
    d = MODULES / "leaflet" / "dist"
    if not (d / "leaflet.js").exists():
        raise FileNotFoundError(
            f"Leaflet is not installed under {MODULES}: run `python3 tasks.py test` or "
            f"`npm ci --prefix {HERE}` (needs Node.js and npm)")
    return d


def install(quiet: bool = True) -> bool:
    """Install the pinned npm packages (package-lock.json); False when npm is missing."""
    if (MODULES / "leaflet" / "dist" / "leaflet.js").exists():
        return True
    npm = shutil.which("npm")
    if npm is None:
        return False
    cmd = [npm, "ci", "--no-audit", "--no-fund", *(["--silent"] if quiet else [])]
    subprocess.run(cmd, cwd=HERE, check=True)
    return True
