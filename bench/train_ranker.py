"""Fit the grasp-success ranker (``models/learned/success.py``) on ``bench/ranker_data.py`` output.

Run: ``nice -n 5 .venv/bin/python bench/train_ranker.py [--data runs/ranker_data] [--out models/weights/ranker_shadow]``

Fits every configuration of a small grid (logistic regression and one- or two-layer MLPs, several
weight decays, with and without a per-query listwise loss) on the train-split objects, and picks the one with the best validation top-4
success (mean over validation queries of the success rate of the 4 grasps it scores highest;
ties by validation AUC). The test split is never read. The chosen model is trained on the train
objects only, so its validation numbers stay honest, and is written to ``--out/ranker.json`` with
the grid, the numbers and the data summary in its ``meta``. Also printed for reference on the
validation queries: the pipeline's analytic ranking, a random order and an oracle (the top-4 the
best possible order of the same grasps gets), plus blends of the prediction with the analytic
quality (``RankConfig.learned_blend``); the best blend on validation (ties: the larger share of
the prediction) is stored as ``meta.recommended_blend``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench.foundation import hardware
from models.learned.success import FitConfig, fit_ranker, roc_auc, top_k_success

GRID_HIDDEN: list[tuple[int, ...]] = [(), (16,), (32,), (64, 32)]
GRID_DECAY = [1e-3, 1e-2, 3e-2]
GRID_LISTWISE = [0.0, 1.0]
BLENDS = [1.0, 0.9, 0.75, 0.5]


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as d:
        return dict(d)


def report(name: str, s: np.ndarray, d: dict[str, np.ndarray]) -> dict[str, float]:
    out = {"auc": roc_auc(s, d["success"]), "top4": top_k_success(s, d["success"], d["query"], 4)}
    for c in ("complete", "partial"):
        m = d["cloud"] == c
        out[f"top4_{c}"] = top_k_success(s[m], d["success"][m], d["query"][m], 4)
    print(f"{name:34} AUC {out['auc']:.3f}  top-4 {out['top4']:.3f}  "
          f"(complete {out['top4_complete']:.3f}, partial {out['top4_partial']:.3f})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=Path("runs/ranker_data"))
    ap.add_argument("--out", type=Path, default=Path("models/weights/ranker_shadow"))
    ap.add_argument("--epochs", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    tr, va = load(a.data / "train.npz"), load(a.data / "validation.npz")
    names = [str(n) for n in tr["feature_names"]]
    print(f"train: {len(set(tr['object'].tolist()))} objects, {tr['success'].size} grasps, {tr['success'].mean():.3f} succeed")
    print(f"validation: {len(set(va['object'].tolist()))} objects, {va['success'].size} grasps, {va['success'].mean():.3f} succeed")
    rng = np.random.default_rng(a.seed)
    baselines = {
        "analytic quality (served now)": report("analytic quality (served now)", va["quality"], va),
        "random order": report("random order", rng.random(va["success"].size), va),
        "oracle": report("oracle", va["success"].astype(np.float64) + 1e-3 * rng.random(va["success"].size), va),
    }
    grid: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], Any, dict[str, Any]] | None = None
    for hidden, decay, listwise in itertools.product(GRID_HIDDEN, GRID_DECAY, GRID_LISTWISE):
        cfg = FitConfig(hidden=hidden, weight_decay=decay, epochs=a.epochs, seed=a.seed, listwise=listwise)
        model = fit_ranker(tr["features"], tr["success"], names, cfg, groups=tr["query"])
        with torch.no_grad():
            p = model.predict(torch.from_numpy(va["features"])).numpy()
            p_tr = model.predict(torch.from_numpy(tr["features"])).numpy()
        row = {"hidden": list(hidden), "weight_decay": decay, "listwise": listwise,
               "train_auc": roc_auc(p_tr, tr["success"]),
               **report(f"hidden {hidden} decay {decay:g} listwise {listwise:g}", p, va)}
        grid.append(row)
        key = (row["top4"], row["auc"])
        if best is None or key > best[0]:
            best = (key, model, row)
    assert best is not None
    _, model, row = best
    print(f"chosen: hidden {tuple(row['hidden'])}, weight decay {row['weight_decay']:g}, listwise {row['listwise']:g}")
    with torch.no_grad():
        p = model.predict(torch.from_numpy(va["features"])).numpy()
    blends = {}
    for w in BLENDS:
        blends[str(w)] = report(f"blend {w} x P + {1 - w:g} x analytic", w * p + (1 - w) * va["quality"], va)
    blend = max(BLENDS, key=lambda w: (blends[str(w)]["top4"], w))
    print(f"recommended blend: {blend}")
    meta = {
        "trained": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware(),
        "data": {k: {"objects": len(set(d["object"].tolist())), "grasps": int(d["success"].size),
                     "success_rate": round(float(d["success"].mean()), 4)} for k, d in (("train", tr), ("validation", va))},
        "fit": {"hidden": row["hidden"], "weight_decay": row["weight_decay"], "listwise": row["listwise"],
                "epochs": a.epochs, "seed": a.seed,
                "loss": "class-balanced binary cross-entropy + listwise x per-query softmax loss, full-batch Adam lr 0.01"},
        "validation": {k: round(v, 4) for k, v in row.items() if k == "train_auc" or k.startswith(("auc", "top4"))},
        "validation_baselines": {k: {m: round(v, 4) for m, v in b.items()} for k, b in baselines.items()},
        "recommended_blend": blend,
        "validation_blends": {k: {m: round(v, 4) for m, v in b.items()} for k, b in blends.items()},
        "grid": grid,
        "command": " ".join([sys.executable, *sys.argv]),
    }
    model = type(model)(model.features, model.mean, model.std, model.weights, model.biases, meta)
    out = model.save(a.out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
