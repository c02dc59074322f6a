"""`screenshot(page, png, width, height)`: a headless-Chromium screenshot of a local HTML file as a
grey-level pixel array; skips the calling test with a message when Chromium is not installed
(.ci/run installs it, or fails; under CI=true the skip itself is a failure, tests/conftest.py)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 2000) -> np.ndarray:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium); screenshot check skipped")
    from PIL import Image

    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                    f"--window-size={width},{height}", Path(page).resolve().as_uri()],
                   check=True, timeout=60, capture_output=True)
    return np.asarray(Image.open(png).convert("L"), dtype=np.float64)
