"""``dexgrasp sim validate`` / ``sim execute`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    return subprocess.run([sys.executable, "-m", "models.cli", "sim", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_validate_known_good_pinch(tmp_path: Path):
    r = _run("validate", str(DATA / "box_pinch.json"), "--primitive", "box:0.015,0.015,0.015", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["summary"]["n"] == 3 and out["summary"]["success_rate"] == 1.0


def test_execute_writes_keyframes(tmp_path: Path):
    r = _run("execute", str(DATA / "cylinder_power.json"), "--primitive", "cylinder:0.03,0.05", "--limit", "1",
             "--render-dir", str(tmp_path / "frames"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["summary"]["n"] == 1
    assert len(list((tmp_path / "frames").glob("*.png"))) == 3


def test_missing_file_is_a_clear_error(tmp_path: Path):
    r = _run("validate", str(tmp_path / "nope.json"), "--primitive", "box:0.01,0.01,0.01", cwd=tmp_path)
    assert r.returncode == 2
    assert "nope.json" in r.stderr
