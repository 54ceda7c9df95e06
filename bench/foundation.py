"""Foundation benchmark: FK + energy throughput and FK/SDF error against MuJoCo.

Run: ``.venv/bin/python bench/foundation.py [--batch 256] [--points 2048] [--device cpu|cuda]``.
Prints the hardware, the date, p50/p99 of each stage over repeated runs after warm-up, and the
max FK error against ``mj_kinematics`` on random configurations and root poses.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np
import torch

from models.core.geometry import ObjectCloud
from models.core.rotations import matrix_to_quat, random_rotations
from models.hands import get_hand, hand_model
from models.physics.energy import grasp_energy


def hardware() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    # the widest SIMD the CPU has: VMs named alike differ (an AVX2 one ran the same optimiser bench 1.9x slower than
    # an earlier one whose flags were not recorded), so figures are compared only within one run or one machine
    vector = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not vector:
                flags = set(line.split(":", 1)[1].split())
                vector = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "avx" if "avx" in flags else "none"
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "simd": vector or "unknown",
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "mujoco": mujoco.__version__,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def timeit(fn, repeats: int, sync) -> dict[str, float]:
    for _ in range(3):
        fn()
    sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    a = np.array(ts) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


def fk_error(n: int = 256) -> float:
    h = get_hand("shadow", dtype="float64")
    m = hand_model(h.spec, root="fixed", with_visual=False)
    d = mujoco.MjData(m)
    gen = torch.Generator().manual_seed(0)
    q = h.lower + torch.rand(n, h.num_joints, generator=gen, dtype=torch.float64) * (h.upper - h.lower)
    rot = random_rotations(n, gen)
    pos = (torch.rand(n, 3, generator=gen, dtype=torch.float64) - 0.5) * 2
    fr = h.forward_kinematics(pos, rot, q)
    palm = h.body_ids[0]
    worst = 0.0
    for i in range(n):
        m.body_pos[palm] = pos[i].numpy()
        m.body_quat[palm] = matrix_to_quat(rot[i]).numpy()
        for qi, j in enumerate(h.mj_joint_ids):
            d.qpos[m.jnt_qposadr[j]] = float(q[i, qi])
        mujoco.mj_kinematics(m, d)
        ref = np.array([d.xpos[b] for b in h.body_ids])
        worst = max(worst, float(np.abs(fr.translation[i].numpy() - ref).max()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--points", type=int, default=2048)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    dev = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    out: dict[str, object] = {
        "hardware": hardware(),
        "batch": a.batch,
        "object_points": a.points,
        "device": str(dev),
    }
    h = get_hand("shadow", device=a.device, dtype="float32")
    gen = torch.Generator().manual_seed(0)
    b = a.batch
    q = (h.lower.cpu() + torch.rand(b, 22, generator=gen) * (h.upper.cpu() - h.lower.cpu())).to(dev)
    rot = random_rotations(b, gen, dtype=torch.float32).to(dev)
    pos = (torch.randn(b, 3, generator=gen) * 0.05).to(dev)
    pts = torch.randn(a.points, 3, generator=gen)
    pts = (pts / pts.norm(dim=1, keepdim=True) * 0.04).to(dev)
    obj = ObjectCloud(pts, pts / pts.norm(dim=1, keepdim=True))
    contacts = torch.randint(h.contact_link.shape[0], (b, 4), generator=gen).to(dev)
    out["fk"] = timeit(lambda: h.forward_kinematics(pos, rot, q), a.repeats, sync)

    def energy_fwd_bwd() -> None:
        qq = q.clone().requires_grad_(True)
        pp = pos.clone().requires_grad_(True)
        e = grasp_energy(h, pp, rot, qq, contacts, obj)["total"].sum()
        e.backward()

    out["energy_forward"] = timeit(lambda: grasp_energy(h, pos, rot, q, contacts, obj), a.repeats, sync)
    out["energy_forward_backward"] = timeit(energy_fwd_bwd, a.repeats, sync)
    fb = out["energy_forward_backward"]["p50_ms"]  # type: ignore[index]
    out["grasps_per_s_energy_fwd_bwd"] = round(b / (fb / 1e3), 1)
    out["fk_max_error_vs_mujoco_m"] = fk_error()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
