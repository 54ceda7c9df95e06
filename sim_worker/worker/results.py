"""A simulation job's result document: per-grasp results with their summary (from
:func:`~sim_worker.validate.summarize_validation` / :func:`~sim_worker.execute.summarize_execution`)
and, apart from it, the execution keyframes as PNG bytes for the job's frames hash."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from ..jobs import JobRequest


def job_result(
    request: JobRequest, grasp_results: Sequence[dict[str, Any]], execute: bool, worker: str, attempt: int,
    wall_time_s: float,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(result, frames): ``frames`` maps ``"{grasp}:{frame}"`` to PNG bytes and ``"{grasp}:names"`` to
    the JSON list of keyframe names; in the result a grasp's ``keyframes`` is that list of names."""
    grasps: list[dict[str, Any]] = []
    frames: dict[str, bytes] = {}
    for i, g0 in enumerate(grasp_results):
        g = {"index": i, **g0}
        kf = g.pop("keyframes", None) or {}
        g.pop("gif", None)
        if kf:
            names = list(kf)
            for fi, name in enumerate(names):
                frames[f"{i}:{fi}"] = base64.b64decode(kf[name])
            frames[f"{i}:names"] = json.dumps(names).encode()
            g["keyframes"] = names
        grasps.append(g)
    if execute:
        from ..execute import summarize_execution as summarize
    else:
        from ..validate import summarize_validation as summarize
    req = request
    result: dict[str, Any] = {
        "mode": req.mode, "backend": req.backend, "hand": req.hand, "object_hash": req.object_hash,
        "n_grasps": len(req.grasps), "completed": len(grasps), "summary": summarize(grasps), "grasps": grasps,
        "worker": worker, "attempt": attempt, "wall_time_s": round(wall_time_s, 6),
    }
    if execute:
        result.update({"policy": req.policy, "seed": req.seed, "render": req.render})
    if req.sim:
        result["sim"] = req.sim
    return result, frames


__all__ = ["job_result"]
