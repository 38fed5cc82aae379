"""The ``lite`` tier: wordllama's bundled static token embeddings, one vector per token.

CPU only, no download, ~1 ms per paragraph: the Llama-2 tokenizer splits a text and each
token id indexes wordllama's ``l2_supercat`` table (32,000 x 256, Matryoshka-trained, so the
first 64 or 128 columns are usable embeddings on their own; rows are renormalised after
truncation). Without context, a token's vector is the same wherever it appears: MaxSim over
these is a soft lexical match, a baseline, not a semantic retriever.

Text only: ``embed_images`` raises ``UnsupportedInput`` (check ``supports_images`` first).
Stop-word-like tokens are kept: MaxSim takes each query token's best match, so frequent
document tokens cost little, and dropping them would need a frequency list this tier lacks.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmrag_assets.errors import ConfigError, ModelUnavailable
from mmrag_assets.lib.index.embedding.base import Embedder, l2_normalize_rows

LITE_DIMS = (64, 128, 256)
_MAX_CHARS_PER_TOKEN = (
    32  # Llama-2 pieces are <= 16 chars: cutting at 32 x max_tokens never loses a kept token
)
# A document text longer than doc_max_tokens keeps its distinct token ids (token_ids' long_distinct), read
# from at most this many times the usual characters: a one-page sheet of 2,000 rows is ~11,000
# tokens but ~1,100 distinct ones.
_LONG_TEXT_FACTOR = 8


@functools.lru_cache(maxsize=1)
def _wordllama() -> Any:
    """The bundled 256-d model, loaded once per process without network access."""
    try:
        import wordllama
        from wordllama import WordLlama
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ModelUnavailable(
            "the lite tier needs the 'wordllama' package: install mmrag's dependencies"
        ) from e
    # 0.4.0.post1 looks for its tokenizer under wordllama/tokenizer/ (the folder is tokenizers/) and then
    # tries the hub; pointing cache_dir at the package finds both bundled files offline.
    try:
        return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    except (FileNotFoundError, OSError) as e:
        raise ModelUnavailable(f"wordllama's bundled weights could not be loaded offline: {e}") from e


# the bundled l2_supercat files inside the wordllama wheel, and the tensor WordLlama.load reads
_TOKENIZER_FILE = "tokenizers/l2_supercat_tokenizer_config.json"
_WEIGHTS_FILE, _TENSOR = "weights/l2_supercat_256.safetensors", "embedding.weight"


@functools.lru_cache(maxsize=1)
def _tokens() -> tuple[Any, np.ndarray]:
    """(tokenizer, (32000, 256) float32 table): the same two files ``WordLlama.load`` reads, opened
    directly: importing wordllama (pydantic, requests) cost ~0.35 s of every ``mmrag search``. The
    tokenizer pads a batch and never truncates, as in ``WordLlamaInference``. Another wordllama
    layout falls back to loading it."""
    import importlib.util

    spec = importlib.util.find_spec("wordllama")  # finds the package without importing it
    pkg = Path(next(iter(spec.submodule_search_locations or []), "")) if spec else None
    if pkg is None or not (pkg / _TOKENIZER_FILE).is_file() or not (pkg / _WEIGHTS_FILE).is_file():
        wl = _wordllama()
        return wl.tokenizer, wl.embedding
    from safetensors import safe_open
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(pkg / _TOKENIZER_FILE))
    tok.enable_padding()
    tok.no_truncation()
    with safe_open(str(pkg / _WEIGHTS_FILE), framework="np", device="cpu") as f:
        table = np.ascontiguousarray(f.get_tensor(_TENSOR).astype(np.float32))
    return tok, table


@functools.lru_cache(maxsize=4)
def _table(dim: int) -> np.ndarray:
    """(32000, dim) float32 token table: Matryoshka truncation of the 256-d table."""
    return np.ascontiguousarray(_tokens()[1][:, :dim], dtype=np.float32)


@functools.lru_cache(maxsize=4)
def vocabulary(dim: int) -> np.ndarray:
    """(32000, dim) float32 unit rows: the vector of every token id (what the index looks up)."""
    if dim not in LITE_DIMS:
        raise ConfigError(f"model.dim={dim} is not available for the lite tier: choose 64, 128 or 256")
    v = l2_normalize_rows(_table(dim))
    v.setflags(write=False)
    return v


class LiteEmbedder(Embedder):
    supports_images = False

    def __init__(
        self,
        *,
        model_id: str = "wordllama/l2_supercat",
        revision: str = "0.4.0.post1",
        dim: int = 256,
        batch_size: int = 64,
        query_max_tokens: int = 64,
        doc_max_tokens: int = 2048,
    ) -> None:
        if dim not in LITE_DIMS:
            raise ConfigError(f"model.dim={dim} is not available for the lite tier: choose 64, 128 or 256")
        super().__init__(
            arch="lite",
            model_id=model_id,
            revision=revision,
            dim=dim,
            device="cpu",
            dtype="float32",
            pool_factor=1,
            batch_size=batch_size,
            query_max_tokens=query_max_tokens,
            doc_max_tokens=doc_max_tokens,
        )
        t0 = time.perf_counter()
        self._tokenizer = _tokens()[0]
        self._emb = _table(dim)  # (vocab, dim)
        self.stats.load_seconds = time.perf_counter() - t0

    def token_ids(
        self, texts: list[str], max_tokens: int, *, long_distinct: bool = False
    ) -> list[np.ndarray]:
        """Llama-2 token ids per text (no BOS/EOS), at most ``max_tokens``; [] for blank texts.

        ``long_distinct`` (document texts): a text of more than ``max_tokens`` tokens keeps its
        distinct ids in order of first occurrence (then at most ``max_tokens``) instead of its first
        ``max_tokens`` ids. A lite vector is a lookup of the id alone, so MaxSim (each query token's
        best match), the first stages' posting lists and idf (each item's unique ids) score the
        distinct ids exactly as the whole text: a long page is no longer cut at its first ~2,000
        tokens (a sheet's later rows, a long web page's end). Shorter texts are stored as before,
        repeats included, so existing rows, fingerprints and drift baselines do not change."""
        out: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in texts]
        live = [i for i, t in enumerate(texts) if t and t.strip()]
        cap = max(1, max_tokens) * _MAX_CHARS_PER_TOKEN * (_LONG_TEXT_FACTOR if long_distinct else 1)
        for start in range(0, len(live), max(1, self.batch_size)):
            chunk = live[start : start + self.batch_size]
            # the tokenizer pads a batch to its longest text (right side): keep masked-in ids only
            encs = self._tokenizer.encode_batch([texts[i][:cap] for i in chunk], add_special_tokens=False)
            for i, enc in zip(chunk, encs, strict=True):
                ids = np.asarray(enc.ids, dtype=np.int64)
                keep = np.asarray(enc.attention_mask, dtype=bool)
                ids = ids[keep]
                if long_distinct and len(ids) > max_tokens:
                    _, first = np.unique(ids, return_index=True)
                    ids = ids[np.sort(first)]
                out[i] = np.clip(ids[:max_tokens], 0, self._emb.shape[0] - 1)
        return out

    def token_counts(self, texts: list[str]) -> list[int]:
        encs = self._tokenizer.encode_batch([t if t.strip() else "" for t in texts], add_special_tokens=False)
        return [int(sum(e.attention_mask)) for e in encs]  # the batch is right-padded to its longest text

    def vocabulary(self) -> np.ndarray:
        return vocabulary(self.dim)

    def embed_text_tokens(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of document texts (what the index stores): vectors are ``vocabulary()[ids]``."""
        return self._timed_tokens(
            lambda: self.token_ids(list(texts), self.doc_max_tokens, long_distinct=True)
        )

    def _embed(self, texts: list[str], max_tokens: int, *, long_distinct: bool = False) -> list[np.ndarray]:
        vocab = vocabulary(self.dim)
        return [
            vocab[ids] if ids.size else self.empty()
            for ids in self.token_ids(texts, max_tokens, long_distinct=long_distinct)
        ]  # (n, dim)

    def _embed_queries(self, texts: list[str]) -> list[np.ndarray]:
        return self._embed(texts, self.query_max_tokens)

    def _embed_texts(self, texts: list[str]) -> list[np.ndarray]:
        return self._embed(texts, self.doc_max_tokens, long_distinct=True)
