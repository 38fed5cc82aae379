"""A BERT sentence encoder in numpy, for queries: all-MiniLM-L6-v2 from the same files
sentence-transformers reads (``model.safetensors``, ``tokenizer.json``, the pooling config).

Why our own forward pass: loading sentence-transformers imports torch and transformers, ~8 s
of a shell ``mmrag search`` (measured: the whole command took 10 s with the dense channel, 1.3 s of
CPU without it), for one query of a few tokens. Six layers of a 384-wide encoder on one short
sequence are a few small matrix products in numpy (~60 ms for a query on a loaded core). Documents are still encoded in
batches by sentence-transformers at publish time; a test checks that both give the same vectors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _erf(x: np.ndarray) -> np.ndarray:
    """erf by Abramowitz & Stegun 7.1.26 (absolute error under 1.5e-7, below float32's resolution
    of the activations here): numpy has no erf, and scipy.special would be another import."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
    return s * y


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x) (not the tanh approximation)."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class NumpyBert:
    """``NumpyBert(folder).encode(["a query"])`` -> (n, hidden) float32 unit rows (mean pooling)."""

    def __init__(self, folder: str | Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu":
            raise ValueError(f"{folder}: not a BERT encoder with GELU ({cfg.get('model_type')}, {cfg.get('hidden_act')})")
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError(f"{folder}: pooling is not mean pooling")
        st = folder / "sentence_bert_config.json"
        max_len = int(json.loads(st.read_text()).get("max_seq_length", 512)) if st.is_file() else 512
        w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in load_file(str(folder / "model.safetensors")).items()}
        self.w = w
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg["layer_norm_eps"])
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(max_len)
        self.dim = int(cfg["hidden_size"])

    def _one(self, ids: list[int]) -> np.ndarray:
        w, n = self.w, len(ids)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        h, dh = self.heads, self.dim // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(name: str, v: np.ndarray, p: str = p) -> np.ndarray:
                return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q = lin("attention.self.query", x).reshape(n, h, dh).transpose(1, 0, 2)
            k = lin("attention.self.key", x).reshape(n, h, dh).transpose(1, 0, 2)
            v = lin("attention.self.value", x).reshape(n, h, dh).transpose(1, 0, 2)
            att = q @ k.transpose(0, 2, 1) / math.sqrt(dh)  # (h, n, n); one unpadded sequence: no mask
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(1, 0, 2).reshape(n, self.dim)
            x = _layer_norm(x + lin("attention.output.dense", ctx), w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], self.eps)  # fmt: skip
            ff = lin("output.dense", _gelu(lin("intermediate.dense", x)))
            x = _layer_norm(x + ff, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        return x.mean(0)

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.stack([self._one(e.ids) for e in self.tok.encode_batch(list(texts))]).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
