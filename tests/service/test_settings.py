"""Start-up refusals of the settings: they say what to fix and never print a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_settings_error_at_start_up_prints_no_api_key():
    short, long = "tiny7ch", "a-long-production-key-whose-tail-is-SECRET-TAIL-9876"
    env = {**os.environ, "DEXGRASP_ENVIRONMENT": "production", "DEXGRASP_API_KEYS": f"{long},{short}"}
    env.pop("REDIS_URL", None)
    out = subprocess.run([sys.executable, "-m", "service.cli", "serve"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    printed = out.stdout + out.stderr
    assert out.returncode != 0 and "at least 8 characters" in printed, printed[-2000:]
    assert short not in printed and long[-8:] not in printed and "SECRET" not in printed, printed[-2000:]
