"""How well the pipeline's mirror completion (``models/stages/completion.py``) recovers the unseen back of
single-view clouds, measured against the full mesh.

Run: ``.venv/bin/python bench/completion.py [--split validation] [--objects 20] [--viewpoint]
[--picture docs/example_completion.png] [--out FILE]``.

Per object (one per family in turn): the mesh is placed on the table, one depth-camera view with
the table in view goes through the service's ``preprocess`` (as a query would), and the result is
compared in the canonical frame with a dense cloud of the whole mesh:

* ``coverage_observed`` / ``coverage_completed``: share of the true surface within 5 mm of the
  observed / completed cloud;
* ``mirrored_on_surface``: share of mirrored points within 5 mm of the true surface;
  ``mirrored_outside`` (more than 5 mm outside: a phantom back, the object guessed too thick) and
  ``mirrored_inside`` (more than 5 mm inside: guessed too thin, a hand could still enter the back);
* the complete cloud of the same object must not be completed (``false_completion``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from tqdm import tqdm

from bench.foundation import hardware
from bench.proposer_quality import pick_objects, query_cloud, query_table
from models import objects
from models.core.geometry import object_signed_distance
from models.pipeline import GraspQuery, PipelineConfig, preprocess

NEAR_M = 0.005


def to_canonical(points: np.ndarray, to_request: torch.Tensor) -> torch.Tensor:
    m = to_request.double()
    return (torch.from_numpy(np.asarray(points, dtype=np.float64)) - m[:3, 3]) @ m[:3, :3]


def measure(oid: str, viewpoint: bool, cfg: PipelineConfig) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    mesh = objects.load_mesh(oid)
    world, _, _ = objects.place_on_table(mesh, seed=0)
    dense_p, dense_n = objects.complete_cloud(world, n=20_000, seed=1)
    view = objects.partial_cloud(world, seed=0, with_normals=False)
    prep = preprocess(GraspQuery(points=np.asarray(view.points, dtype=np.float32),
                                 viewpoint=tuple(view.camera_position) if viewpoint else None), cfg)
    dense = to_canonical(dense_p, prep.to_request)
    dense_nrm = torch.from_numpy(np.asarray(dense_n, dtype=np.float64)) @ prep.to_request[:3, :3].double()
    observed = (prep.observed[0] if prep.observed is not None else prep.points).double()
    completed = prep.points.double()
    row: dict[str, Any] = {"object": oid, "completed": prep.observed is not None,
                           "coverage_observed": float((torch.cdist(dense, observed).min(1).values < NEAR_M).double().mean()),
                           "coverage_completed": float((torch.cdist(dense, completed).min(1).values < NEAR_M).double().mean())}
    # the mirrored points: those of the completed cloud farther than 1 mm from every observed point
    mirrored = completed[torch.cdist(completed, observed).min(1).values > 0.001] if prep.observed is not None else completed[:0]
    if mirrored.shape[0]:
        sd = object_signed_distance(mirrored[None].float(), dense.float(), dense_nrm.float())[0]
        row.update({"mirrored_points": int(mirrored.shape[0]),
                    "mirrored_on_surface": float((sd.abs() <= NEAR_M).float().mean()),
                    "mirrored_outside": float((sd > NEAR_M).float().mean()),
                    "mirrored_inside": float((sd < -NEAR_M).float().mean())})
    full = preprocess(GraspQuery(points=query_cloud("complete", world, 0), **query_table("complete", "given", 0.0)), cfg)
    row["false_completion"] = full.observed is not None
    return row, {"dense": dense, "observed": observed, "mirrored": mirrored}


def picture(clouds: dict[str, torch.Tensor], title: str, path: Path) -> None:
    """Top view and side view: true surface grey, observed blue, mirrored orange."""
    from PIL import Image, ImageDraw

    size, pad = 420, 20
    img = Image.new("RGB", (2 * size, size + 30), "white")
    draw = ImageDraw.Draw(img)
    allp = torch.cat([clouds["dense"], clouds["observed"]])
    views = [("top (x, y)", (0, 1)), ("side (x, z)", (0, 2))]
    for k, (name, (a, b)) in enumerate(views):
        lo, hi = allp[:, [a, b]].min(0).values, allp[:, [a, b]].max(0).values
        scale = (size - 2 * pad) / float((hi - lo).max())

        def xy(p: torch.Tensor, a: int = a, b: int = b, lo: torch.Tensor = lo, scale: float = scale, k: int = k) -> list[tuple[float, float]]:
            q = (p[:, [a, b]] - lo) * scale
            return [(k * size + pad + float(u), size - pad - float(v)) for u, v in q]

        for pts, colour, r in ((clouds["dense"][::8], (200, 200, 200), 1), (clouds["observed"], (40, 90, 200), 2),
                               (clouds["mirrored"], (240, 130, 20), 2)):
            for u, v in xy(pts):
                draw.ellipse((u - r, v - r, u + r, v + r), fill=colour)
        draw.text((k * size + pad, 4), name, fill="black")
    draw.text((pad, size + 8), f"{title}: grey = true surface, blue = observed view, orange = mirrored back", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--split", default="validation", choices=["train", "validation", "test"])
    ap.add_argument("--objects", type=int, default=20)
    ap.add_argument("--viewpoint", action="store_true", help="send the camera position with each view")
    ap.add_argument("--picture", type=Path, default=None, help="draw the first completed view here (PNG)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    cfg = PipelineConfig()
    rows, drawn = [], False
    for oid in tqdm(pick_objects(a.split, a.objects), desc="views", unit="obj"):
        row, clouds = measure(oid, a.viewpoint, cfg)
        rows.append(row)
        if a.picture is not None and not drawn and row["completed"]:
            picture(clouds, oid, a.picture)
            drawn = True
    done = [r for r in rows if r["completed"]]

    def mean(key: str, rs: list[dict[str, Any]]) -> float | None:
        vals = [r[key] for r in rs if key in r]
        return round(float(np.mean(vals)), 3) if vals else None

    summary = {
        "views": len(rows), "completed": len(done), "false_completions": sum(r["false_completion"] for r in rows),
        "coverage_observed_all": mean("coverage_observed", rows), "coverage_completed_all": mean("coverage_completed", rows),
        "coverage_observed_completed_views": mean("coverage_observed", done),
        "coverage_completed_completed_views": mean("coverage_completed", done),
        "mirrored_on_surface": mean("mirrored_on_surface", done), "mirrored_outside": mean("mirrored_outside", done),
        "mirrored_inside": mean("mirrored_inside", done),
    }
    out = {"command": " ".join(sys.argv), "hardware": hardware(), "split": a.split, "viewpoint_sent": a.viewpoint,
           "summary": summary, "per_object": rows}
    print(json.dumps(summary, indent=1))
    if a.out is not None:
        a.out.write_text(json.dumps(out, indent=1))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
