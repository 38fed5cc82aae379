"""Deterministic synthetic multi-vector corpus at the real ColPali/ColQwen page shape.

Design (a topic model on the sphere, so that queries have true neighbours and the ranking is
not trivial):

* ``n_topics`` topic centres, random unit vectors in R^d. Each topic owns
  ``concepts_per_topic`` *concepts* = normalise(rho * centre + sqrt(1 - rho^2) * noise); with
  rho = 0.5 concepts of one topic have cosine ~0.25 with each other, so same-topic pages look
  alike. ``n_background`` further concepts stand for white space, margins, rulings: every
  page uses them.
* A page has a primary topic and, with probability 1/2, a secondary one. It uses a random
  subset (8-20) of its topics' concepts with Zipf-like weights, so two pages of a topic
  share some concepts but not all.
* Layout: ``n_special`` leading tokens (the prompt tokens every page gets, concept = one
  fixed background concept each), then the patch grid in raster order cut into segments of
  geometric length (mean ~12 patches, a phrase). A segment is background with a per-page
  probability in [0.3, 0.6], else one of the page's concepts. A token is
  normalise(a * concept + sqrt(1 - a^2) * gaussian), with a ~ U(0.65, 0.9) per segment, so
  tokens of a segment are near-duplicates of one another but not identical.
* A query (``q_tokens`` = 20 tokens) targets one page: 4 generic tokens near background
  concepts (they match every page about equally, like ColPali's query-prompt tokens),
  14 content tokens near the target page's concepts (a ~ U(0.55, 0.8)) and 2 tokens near
  concepts of the target's topic that the page does not use (the query asks for more than
  the page shows). The target and the same-topic pages that share most of its concepts are
  the true neighbours; with ~25 pages per topic at 10k and ~375 at 100k the top-10 is a
  crowded race, not a needle.
* ``pool`` > 1 mean-pools consecutive runs of ``pool`` tokens (raster order) and
  renormalises: a stand-in for colpali-engine's ``pool_factor`` token pooling. The 100k
  benchmark uses pool=3 (1,030 -> 344 vectors/page, ~8.8 GB float16 instead of 26 GB).

Everything derives from ``seed``: page specs from one generator, token noise from one torch
generator per chunk of pages, so a cache can be rebuilt bit for bit.

The pages are written the way the product stores them: rows of a LanceDB items table (the
``vector`` column, float16) with content-key item ids ``{doc}:{page}``, ten pages per document.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from _paths import DATA  # bench/ is on sys.path for every script that imports synth

CACHE = DATA
CHUNK_PAGES = 256
PAGES_PER_TOPIC = 250
PAGES_PER_DOC = 10
ADD_PAGES = 2560  # pages per LanceDB append (one fragment each)


@dataclass(frozen=True)
class SynthSpec:
    n_pages: int
    n_tokens: int = 1030  # 6 special + 32 x 32 patches (ColPali); ColQwen pages are similar
    dim: int = 128
    pool: int = 1
    n_topics: int | None = None  # None: n_pages // PAGES_PER_TOPIC (at least 8)
    concepts_per_topic: int = 24
    n_background: int = 16
    n_special: int = 6
    rho: float = 0.5  # concept-to-topic-centre mixing
    seg_mean: float = 12.0
    q_tokens: int = 20
    seed: int = 0

    @property
    def key(self) -> str:
        return f"p{self.n_pages}_t{self.n_tokens}_d{self.dim}_pool{self.pool}_k{self.topics}_s{self.seed}"

    @property
    def topics(self) -> int:
        return self.n_topics or max(8, self.n_pages // PAGES_PER_TOPIC)

    @property
    def vectors_per_page(self) -> int:
        return -(-self.n_tokens // self.pool)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class World:
    """Concepts and per-page specs (cheap; regenerated from the seed, never cached)."""

    def __init__(self, spec: SynthSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng([spec.seed, 1])
        d, nt, cpt = spec.dim, spec.topics, spec.concepts_per_topic
        centres = _unit(rng.standard_normal((nt, d)))
        noise = _unit(rng.standard_normal((nt, cpt, d)))
        content = _unit(spec.rho * centres[:, None, :] + np.sqrt(1 - spec.rho**2) * noise)
        background = _unit(rng.standard_normal((spec.n_background, d)))
        # concept table: [background..., topic0 concepts..., topic1 concepts...]
        self.concepts = np.concatenate([background, content.reshape(nt * cpt, d)]).astype(np.float32)
        self.n_bg = spec.n_background
        prng = np.random.default_rng([spec.seed, 2])
        self.page_concepts: list[np.ndarray] = []  # concept ids used by each page
        self.page_weights: list[np.ndarray] = []
        self.page_topics = np.empty((spec.n_pages, 2), dtype=np.int64)
        self.page_bg = prng.uniform(0.3, 0.6, spec.n_pages)
        for i in range(spec.n_pages):
            t0 = prng.integers(nt)
            t1 = prng.integers(nt) if prng.random() < 0.5 else -1
            self.page_topics[i] = (t0, t1)
            m0 = prng.integers(8, 21)
            ids = self.n_bg + t0 * cpt + prng.choice(cpt, m0, replace=False)
            if t1 >= 0:
                m1 = prng.integers(2, 7)
                ids = np.concatenate([ids, self.n_bg + t1 * cpt + prng.choice(cpt, m1, replace=False)])
            w = 1.0 / np.arange(1, len(ids) + 1) ** 0.7
            self.page_concepts.append(ids)
            self.page_weights.append(w / w.sum())

    def page_token_concepts(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(n_tokens,) concept id and (n_tokens,) mixing weight a of every token of page i."""
        s = self.spec
        n_patch = s.n_tokens - s.n_special
        cid = np.empty(s.n_tokens, dtype=np.int64)
        a = np.empty(s.n_tokens, dtype=np.float32)
        cid[: s.n_special] = np.arange(s.n_special) % self.n_bg
        a[: s.n_special] = 0.95
        n_seg = int(n_patch / s.seg_mean * 1.5) + 8
        lens = rng.geometric(1.0 / s.seg_mean, n_seg)
        while lens.sum() < n_patch:
            lens = np.concatenate([lens, rng.geometric(1.0 / s.seg_mean, n_seg)])
        n_seg = int(np.searchsorted(np.cumsum(lens), n_patch) + 1)
        lens = lens[:n_seg]
        is_bg = rng.random(n_seg) < self.page_bg[i]
        seg_c = np.where(
            is_bg,
            s.n_special + rng.integers(0, self.n_bg - s.n_special, n_seg),
            rng.choice(self.page_concepts[i], n_seg, p=self.page_weights[i]),
        )
        seg_a = np.where(is_bg, rng.uniform(0.8, 0.95, n_seg), rng.uniform(0.65, 0.9, n_seg))
        cid[s.n_special :] = np.repeat(seg_c, lens)[:n_patch]
        a[s.n_special :] = np.repeat(seg_a, lens)[:n_patch]
        return cid, a


def _page_chunk(world: World, start: int, stop: int) -> np.ndarray:
    """Token vectors of pages [start, stop): (B, vectors_per_page, d) float16."""
    import torch

    s = world.spec
    rng = np.random.default_rng([s.seed, 3, start])
    gen = torch.Generator().manual_seed(int(s.seed) * 1_000_003 + start)
    cids, avals = zip(*(world.page_token_concepts(i, rng) for i in range(start, stop)), strict=True)
    cid = torch.from_numpy(np.stack(cids))  # (B, n_tokens)
    a = torch.from_numpy(np.stack(avals))[..., None]  # (B, n_tokens, 1)
    conc = torch.from_numpy(world.concepts)[cid]  # (B, n_tokens, d)
    noise = torch.randn(conc.shape, generator=gen) / np.sqrt(s.dim)
    x = a * conc + torch.sqrt(1 - a**2) * noise
    x = x / x.norm(dim=-1, keepdim=True)
    if s.pool > 1:
        b, n, d = x.shape
        pad = (-n) % s.pool
        if pad:
            x = torch.cat([x, x[:, -1:].expand(b, pad, d)], dim=1)  # repeat the last token
        x = x.reshape(b, -1, s.pool, d).mean(dim=2)
        x = x / x.norm(dim=-1, keepdim=True)
    return x.to(torch.float16).numpy()


def make_queries(
    world: World, n_queries: int, seed: int = 0, targets: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(n_queries, q_tokens, d) float32 unit queries and (n_queries,) int64 target pages
    (random pages, or the given ``targets``)."""
    s = world.spec
    rng = np.random.default_rng([s.seed, 4, seed])
    if targets is None:
        targets = rng.choice(s.n_pages, n_queries, replace=n_queries > s.n_pages)
    n_queries = len(targets)
    n_generic, n_extra = 4, 2
    n_content = s.q_tokens - n_generic - n_extra
    cpt = s.concepts_per_topic
    qs = np.empty((n_queries, s.q_tokens, s.dim), dtype=np.float32)
    for j, t in enumerate(targets):
        own = world.page_concepts[t]
        topic = world.page_topics[t, 0]
        others = np.setdiff1d(world.n_bg + topic * cpt + np.arange(cpt), own)
        if len(others) == 0:
            others = own
        cid = np.concatenate(
            [
                s.n_special + rng.integers(0, world.n_bg - s.n_special, n_generic),
                rng.choice(own, n_content),
                rng.choice(others, n_extra),
            ]
        )
        a = np.concatenate([np.full(n_generic, 0.5), rng.uniform(0.55, 0.8, s.q_tokens - n_generic)])
        noise = rng.standard_normal((s.q_tokens, s.dim)) / np.sqrt(s.dim)
        qs[j] = _unit(a[:, None] * world.concepts[cid] + np.sqrt(1 - a[:, None] ** 2) * noise)
    return qs, targets.astype(np.int64)


def doc_id(spec: SynthSpec, page: int) -> str:
    import hashlib

    return hashlib.sha256(
        f"synth{spec.seed}:{spec.n_tokens}:doc{page // PAGES_PER_DOC}".encode()
    ).hexdigest()[:16]


def item_id(spec: SynthSpec, page: int) -> str:
    return f"{doc_id(spec, page)}:{page % PAGES_PER_DOC + 1}"


def page_rows(spec: SynthSpec, pages: range, vectors: np.ndarray, schema: pa.Schema) -> pa.Table:
    """Product rows (``lib/store/table.py`` schema) for ``pages`` with their (B, n, d) vectors."""
    from mmrag_assets.lib.store import table as lx

    rows = []
    for j, i in enumerate(pages):
        it = {"item_id": item_id(spec, i), "doc_id": doc_id(spec, i), "source": f"synth/{doc_id(spec, i)}.pdf",
              "modality": "page", "page": i % PAGES_PER_DOC + 1, "start_s": None, "end_s": None,
              "text": f"synthetic page {i}", "image_path": None, "thumb_path": None, "ingest_fp": "synth"}  # fmt: skip
        v = vectors[j]
        rows.append({**it, "n_tokens": len(v), "vector": v, "item_fp": lx.item_fingerprint(it, v)})
    return lx._to_arrow(rows, schema)


def generate(spec: SynthSpec, db_dir: Path, table_name: str, *, verbose: bool = True, start: int = 0):
    """Write pages ``start..spec.n_pages`` of ``spec`` into the LanceDB table ``table_name`` (created
    if missing); a marker file makes a finished table a cache hit. Returns the table."""
    import lancedb

    from mmrag_assets.lib.store import table as lx

    marker = db_dir / f"{table_name}.{spec.key}.from{start}.done"
    db = lancedb.connect(str(db_dir))
    names = getattr(db.list_tables(), "tables", None) or db.list_tables()
    schema = lx.schema(spec.dim)
    tbl = db.open_table(table_name) if table_name in names else db.create_table(table_name, schema=schema)
    if marker.exists():
        return tbl
    t0 = time.perf_counter()
    world = World(spec)
    buf: list[pa.Table] = []
    for lo in range(start, spec.n_pages, CHUNK_PAGES):
        hi = min(lo + CHUNK_PAGES, spec.n_pages)
        buf.append(page_rows(spec, range(lo, hi), _page_chunk(world, lo, hi), schema))
        if sum(b.num_rows for b in buf) >= ADD_PAGES or hi == spec.n_pages:
            tbl.add(pa.concat_tables(buf))
            buf = []
        if verbose and (lo // CHUNK_PAGES) % 40 == 0:
            print(
                f"  synth {spec.key}: {hi:,}/{spec.n_pages:,} pages, {time.perf_counter() - t0:.0f}s",
                flush=True,
            )
    marker.write_text(json.dumps(asdict(spec) | {"gen_s": time.perf_counter() - t0}))
    return tbl


def queries(
    spec: SynthSpec, n_queries: int, cache: Path = CACHE, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(queries (Q, Tq, d) float32, target page numbers (Q,)), cached."""
    cache.mkdir(parents=True, exist_ok=True)
    qfile = cache / f"{spec.key}_queries_{n_queries}_s{seed}.npz"
    if qfile.exists():
        z = np.load(qfile)
        return z["queries"], z["targets"]
    qs, targets = make_queries(World(spec), n_queries, seed=seed)
    np.savez(qfile, queries=qs, targets=targets)
    return qs, targets


TAKE_ROWS = 200  # rows a rerank reads per query: the first stage's default candidates


def take_table(n_pages: int, cache: Path = CACHE):
    """The pooled synthetic table that bench/rerank.py and bench/fragments.py take ``TAKE_ROWS``-row
    reads from (one cached table per size)."""
    if n_pages < TAKE_ROWS:
        raise SystemExit(f"--pages must be >= {TAKE_ROWS} (each read takes {TAKE_ROWS} distinct rows)")
    return generate(
        SynthSpec(n_pages=n_pages, pool=3), cache / "lancedb", f"items__rerank{n_pages}", verbose=False
    )


def take_rows(rng: np.random.Generator, n_rows: int) -> np.ndarray:
    """``TAKE_ROWS`` distinct row positions out of ``n_rows``, sorted (disk order, as the rerank reads)."""
    return np.sort(rng.choice(n_rows, TAKE_ROWS, replace=False))
