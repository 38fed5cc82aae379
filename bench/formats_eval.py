"""Every-format retrieval report: the default config against OCR + BM25, and conversion throughput.

    uv run python bench/formats_eval.py [--out DIR] [--split test|dev] [--no-write]

1. Builds the corpus and query sets (``bench/formats/build.py``) unless ``--out`` has them.
2. **Product**: one ``mmrag index`` of the corpus with the default config (Office files through the
   sandboxed LibreOffice, text formats laid out by PyMuPDF, OCR, lite + BM25 + dense), then
   ``mmrag eval --json`` on the split; per-query results from the ``experiments`` table.
3. **OCR + BM25**, converted the way a user would: one plain ``soffice --convert-to pdf`` over every
   Office and text file (LibreOffice's own pagination: print pages for sheets, no speaker notes; it
   cannot open EPUB), then each page's text layer, RapidOCR on the pages without a usable one
   (``bench/realdocs/baselines.py``: the same OCR and BM25 helpers as the real-document report).
4. **Throughput**: pages per second of the product's conversion (one sandboxed LibreOffice per
   file: fresh profile, namespace, caps; PyMuPDF layout for text formats) against the plain batch
   conversion of step 3, same files, same run.
5. Writes ``bench/formats/REPORT.md`` and the "Office and text formats" section of BENCHMARKS.md.

Judgements: a slide for decks (both sides number slides alike), the whole file otherwise (the
product and LibreOffice paginate sheets and text formats differently).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import commit, machine, table, write_section
from bench.formats import build
from bench.realdocs import baselines
from bench.realdocs_eval import mmrag, say
from mmrag_assets.lib.evaluation.evaluate import score_ranking
from mmrag_assets.lib.evaluation.experiments import load_experiments
from mmrag_assets.lib.evaluation.metrics import aggregate
from mmrag_assets.lib.evaluation.query_set import load_query_set

KS = (10,)
DEPTH = 10
FORMAT_ORDER = (
    "pptx",
    "odp",
    "ppt",
    "docx",
    "odt",
    "doc",
    "rtf",
    "xlsx",
    "ods",
    "xls",
    "epub",
    "html",
    "htm",
    "md",
    "markdown",
    "rst",
    "txt",
)
EVIDENCE = ("slide", "notes", "diagram", "document", "sheet", "html-section", "text")
REPORT = Path(__file__).resolve().parent / "formats" / "REPORT.md"
CONVERTED = ("office", "text")


# ---------------------------------------------------------------- product


def run_product(corpus: Path, storage: Path, queries: Path, qs: Any) -> dict[str, Any]:
    base = [f"corpus.root={corpus}", f"storage.root={storage}"]
    say("product: mmrag index (default config)")
    t0 = time.perf_counter()
    r = mmrag("index", *base)
    index_s = time.perf_counter() - t0
    say(f"  indexed in {index_s:.0f} s (exit {r.returncode})")
    r = mmrag("eval", "--json", *base, f"queries={queries}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    (row,) = load_experiments(storage / "catalog.duckdb", run_ids=[out["run_id"]])
    tags = {q.qid: q.tags for q in qs.queries}
    per_query = [{"qid": p["qid"], "tags": tags[p["qid"]], "mixed": p["reranked"]} for p in row["per_query"]]
    return {
        "name": "product: default",
        "per_query": per_query,
        "index_s": index_s,
        "latency_ms": out["latency_ms"]["total"],
    }


def product_conversion(corpus: Path, files: list[Path]) -> dict[str, Any]:
    """The product's conversion of each file alone (sandboxed LibreOffice or PyMuPDF layout)."""
    import pymupdf

    from mmrag_assets.config import load_config
    from mmrag_assets.lib.ingest.convert_checks import check_container
    from mmrag_assets.lib.ingest.convert_office import convert_office
    from mmrag_assets.lib.ingest.convert_text import layout_text
    from mmrag_assets.lib.ingest.sniff import sniff_file

    cfg = load_config([f"corpus.root={corpus}"])
    c = cfg.convert
    stats = {"office": [0.0, 0, 0], "text": [0.0, 0, 0]}  # seconds, pages, files
    for p in files:
        s = sniff_file(p)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            try:
                if s.kind == "office":
                    f = check_container(
                        p,
                        s.detail,
                        max_unpacked_bytes=c.max_unpacked_bytes,
                        max_ratio=c.max_ratio,
                        max_sheet_cells=c.max_sheet_cells,
                    )
                    pdf = convert_office(p, s.detail, Path(tmp), c, findings=f).pdf
                else:
                    pdf = layout_text(
                        p,
                        s.detail,
                        Path(tmp) / "d.pdf",
                        c,
                        corpus_root=corpus,
                        max_pages=cfg.ingest.max_pages,
                    ).pdf
                with pymupdf.open(pdf) as d:
                    n = d.page_count
            except Exception as e:  # noqa: BLE001 - a quarantined file counts its time, no pages
                say(f"  product conversion of {p.name}: {e}")
                n = 0
            st = stats[s.kind]
            st[0] += time.perf_counter() - t0
            st[1] += n
            st[2] += 1
    return stats


# ---------------------------------------------------------------- the user's way: LibreOffice batch + OCR + BM25


def user_conversion(
    corpus: Path, files: list[Path], out: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One plain ``soffice --convert-to pdf`` over the files (per kind), then page items."""
    import pymupdf

    from mmrag_assets.lib.ingest.sniff import sniff_file

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    stats: dict[str, list[float]] = {}
    by_kind: dict[str, list[Path]] = {}
    for p in files:
        by_kind.setdefault(sniff_file(p).kind, []).append(p)
    items: list[dict[str, Any]] = []
    for kind, group in by_kind.items():
        # same-named files in different folders would overwrite each other's PDF: one folder each
        t0 = time.perf_counter()
        for folder in sorted({p.parent for p in group}):
            dest = out / folder.relative_to(corpus)
            with tempfile.TemporaryDirectory() as prof:
                subprocess.run(
                    [
                        "soffice",
                        f"-env:UserInstallation=file://{prof}",
                        "--headless",
                        "--norestore",
                        "--convert-to",
                        "pdf",
                        "--outdir",
                        str(dest),
                        *map(str, [p for p in group if p.parent == folder]),
                    ],
                    capture_output=True,
                    check=False,
                    timeout=1800,
                )
        secs = time.perf_counter() - t0
        pages = 0
        for p in group:
            rel = p.relative_to(corpus)
            pdf = out / rel.parent / f"{p.stem}.pdf"
            if not pdf.is_file():
                continue  # LibreOffice could not open it (EPUB): the user has nothing to search
            with pymupdf.open(pdf) as d:
                for i, page in enumerate(d, 1):
                    img = out / "pages" / f"{rel.as_posix().replace('/', '__')}.p{i}.png"
                    img.parent.mkdir(parents=True, exist_ok=True)
                    page.get_pixmap(dpi=150).save(img)
                    items.append(
                        {
                            "item_id": f"{rel.as_posix()}:{i}",
                            "source": rel.as_posix(),
                            "page": i,
                            "modality": "page",
                            "text": page.get_text(),
                            "image_path": str(img),
                            "start_s": None,
                            "end_s": None,
                        }
                    )
                    pages += 1
        stats[kind] = [secs, pages, len(group)]
    return stats, items


def run_baseline(items: list[dict[str, Any]], work: Path, qs: Any) -> dict[str, Any]:
    ocr = baselines.RapidOcr(work / "ocr-cache")
    with_ocr = baselines.with_ocr(items, Path("/"), ocr, say)
    engine = baselines.Bm25(with_ocr, work / "bm25", "formats_ocr_bm25")
    per_query = []
    for q in qs.queries:
        ranking, _ = engine.search(q.query, DEPTH)
        per_query.append(
            {"qid": q.qid, "tags": q.tags, "mixed": score_ranking(ranking, list(q.relevant), KS)}
        )
    return {"name": "OCR + BM25", "per_query": per_query, "ocr_calls": ocr.calls, "ocr_s": ocr.seconds}


# ---------------------------------------------------------------- report


def groups(per_query: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {"all": aggregate([q["mixed"] for q in per_query])}
    for tag, values in (
        ("channel", FORMAT_ORDER),
        ("evidence", EVIDENCE),
        ("kind", ("literal", "paraphrase")),
    ):
        for v in values:
            sel = [q["mixed"] for q in per_query if q["tags"].get(tag) == v]
            if sel:
                out[f"{tag}={v}"] = aggregate(sel)
    return out


def cell(m: Mapping[str, Any] | None) -> str:
    return "-" if not m or not m.get("n_queries_evaluated") else f"{m['hit@10']:.2f} / {m['mrr@10']:.2f}"


def report(
    prod: dict[str, Any],
    base: dict[str, Any],
    conv: dict[str, Any],
    user: dict[str, Any],
    split: str,
    n_files: int,
) -> str:
    gp, gb = groups(prod["per_query"]), groups(base["per_query"])
    rows, met = [], []
    for g in gp:
        n = gp[g].get("n_queries_evaluated", 0)
        ok = all(gp[g][k] >= (gb.get(g) or {}).get(k, 0) - 1e-9 for k in ("hit@10", "mrr@10"))
        rows.append([f"{g} ({n})", cell(gp[g]), cell(gb.get(g)), "yes" if ok else "**no**"])
        if g.startswith("channel=") or g == "all":
            met.append(ok)
    misses = sorted(q["qid"] for q in prod["per_query"] if not q["mixed"].get("hit@10"))
    tput = []
    for kind in CONVERTED:
        if kind in conv and conv[kind][2]:
            s, pg, nf = conv[kind]
            us = user.get(kind, [0, 0, 0])
            ratio = (pg / s) / (us[1] / us[0]) if s and us[0] and us[1] else None
            tput.append(
                [
                    kind,
                    nf,
                    pg,
                    f"{pg / s:.2f}" if s else "-",
                    us[1],
                    f"{us[1] / us[0]:.2f}" if us[0] else "-",
                    f"{ratio:.2f}x" if ratio else "-",
                ]
            )
    body = [
        (
            f"Commit {commit()}, {machine()}; split `{split}`; {n_files} files (every listed format, and 24 "
            "python-pptx/python-docx test files that must ingest); `bench/formats_eval.py`."
        ),
        "",
        (
            f"Retrieval, mixed ranking (hit@10 / MRR@10; judgements: the slide for decks, the file otherwise). "
            f"Default config >= OCR + BM25 on both metrics for every format and overall: **{'yes' if all(met) else 'no'}**."
        ),
        "",
        table(
            [
                "queries (n)",
                "product: default",
                "OCR + BM25 (LibreOffice PDF, layer + RapidOCR)",
                "default >= baseline",
            ],
            rows,
        ),
        "",
        (
            f"Product misses at 10: {', '.join(misses) or 'none'}. Index of the corpus {prod['index_s']:.0f} s; search p50 "
            f"{prod['latency_ms'].get('p50') or 0:.0f} ms. Baseline OCR: {base['ocr_calls']} pages OCRed in {base['ocr_s']:.0f} s."
        ),
        "",
        (
            "Conversion throughput (pages/s, wall time, same files, same run): the product's single-file path converts "
            "each file alone in a sandboxed LibreOffice (fresh profile, network namespace, memory cap, timeout; what a batch "
            "falls back to: `mmrag index` converts Office files in batches of `convert.batch_files`, see 'Office "
            "conversion') or lays text formats out with PyMuPDF; the baseline is one plain `soffice --convert-to pdf` per folder (a user's batch; its page counts "
            "differ: print pages for sheets, no notes, no EPUB)."
        ),
        "",
        table(
            [
                "kind",
                "files",
                "product pages",
                "product pages/s",
                "batch pages",
                "batch pages/s",
                "product / batch",
            ],
            tput,
        ),
    ]
    return "\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> int:
    # every `mmrag` process of this run a fresh one (MMRAG_WARM=auto would start a server), none left behind
    os.environ.setdefault("MMRAG_WARM", "0")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=build.default_out())
    ap.add_argument("--split", choices=("test", "dev", "all"), default="test")
    ap.add_argument(
        "--no-write", action="store_true", help="print only; BENCHMARKS.md and REPORT.md untouched"
    )
    ap.add_argument("--per-query", type=Path, help="also write each query's scores under both systems (JSON)")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()  # the baseline's page images are read by absolute path
    if not (out / "queries" / "all.jsonl").exists():
        build.main(["--out", str(out)])
    corpus = out / "corpus"
    queries = out / "queries" / f"{args.split}.jsonl"
    qs = load_query_set(queries)
    from mmrag_assets.lib.ingest.sniff import sniff_file

    files = sorted(p for p in corpus.rglob("*") if p.is_file() and sniff_file(p).kind in CONVERTED)
    storage = out / "storage"
    shutil.rmtree(storage, ignore_errors=True)
    prod = run_product(corpus, storage, queries, qs)
    say("product conversion, file by file")
    conv = product_conversion(corpus, files)
    say("user's way: soffice --convert-to pdf, layer + RapidOCR, BM25")
    user, items = user_conversion(corpus, files, out / "user")
    base = run_baseline(items, out / "user", qs)
    md = report(prod, base, conv, user, args.split, len(files))
    print(md)
    if args.per_query:
        args.per_query.write_text(
            json.dumps({"product": prod["per_query"], "baseline": base["per_query"]}, indent=1)
        )
    if not args.no_write:
        REPORT.write_text("# Every-format evaluation (issue 24)\n\n" + md)
        write_section("Office and text formats", md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
