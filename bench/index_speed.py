"""Indexing speed (issue 23): `mmrag index` of ~600 pages of real manuals, this checkout against a
baseline commit, side by side in the same run, plus PyMuPDF rendering the same pages alone.

    uv run python bench/index_speed.py [--baseline REV] [--pages 620] [--only new|both] [--profile] [--no-write]

Corpus: three real manuals from Debian documentation packages (``apt-get download`` once into
``$MMRAG_BENCH_DATA/index_speed``): the SCons user guide (351 pages), the dblatex manual (143) and
the Doxygen manual's first pages up to ``--pages`` in all; the added document is the next 10 pages
of the Doxygen manual (its own PDF). Each version runs the real command line (`python -m
mmrag_assets.cli ...`, default config, a fresh process each time, its package first on
``PYTHONPATH`` as in bench/cli_search.py, same virtual environment) on its own storage root:

1. ``mmrag index`` of the corpus (first build): wall, CPU (user + sys), peak RSS;
2. ``mmrag index`` again, nothing changed (no-op);
3. the 10-page PDF copied into the corpus, ``mmrag index`` (one-file add);
4. ``mmrag search`` (lite + dense), median of 3 queries.

Steps alternate between the versions so both see similar machine load. The ONNX export of the
dense encoder (made once per machine, cached by content hash) is timed on its own first and then
reused, as a user's later builds would. ``--profile`` (use it with ``--only new``) records the new
version's first build, no-op and add with py-spy (every thread, sampled without stopping the
process) and prints the share of samples per stage. Writes the section "Indexing speed" (or, with
``--profile``, "Indexing speed: where the time goes (py-spy)") of BENCHMARKS.md.

``--warm REV`` measures only the small changes, this checkout against REV: one store of the corpus
is built by this checkout (not reported), and each of ``--rounds`` rounds gives both versions, in
turn, a fresh copy of it (same path) for a no-op ``mmrag index``, an add of the 10-page PDF above
(9 screenshot regions to OCR), an add of 10 text-only Doxygen pages (no image: the add without OCR)
and ``mmrag search`` (3 queries); medians. Writes "Indexing speed: small changes". ``--served`` adds
this checkout through a running ``mmrag warm`` server (started once before the rounds, on its own
runtime folder; not timed) as a third version: the same commands, handed to the server's forks; its
CPU is the client's plus what the server's reaped children used (``/proc/<pid>/stat`` cutime+cstime).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._paths import DATA
from bench._report import commit, emit, table

ROOT = Path(__file__).resolve().parents[1]
OUT = DATA / "index_speed"
PACKAGES = ("scons-doc", "dblatex-doc", "doxygen-doc")
MANUALS = [  # corpus name, path in the unpacked packages (.gz decompressed)
    ("scons-user.pdf", "usr/share/doc/scons/PDF/scons-user.pdf.gz"),
    ("dblatex-manual.pdf", "usr/share/doc/dblatex/manual.pdf.gz"),
    ("doxygen-manual.pdf", "usr/share/doc/doxygen/doxygen_manual.pdf"),
]
ADDED_PAGES = 10
QUERIES = [
    "how does scons decide that a target must be rebuilt",
    "document the parameters of a C function with doxygen",
    "change the title page of the generated PDF with dblatex",
]
DEFAULT_BASELINE = "4de345f"  # main before issue 23: sentence-transformers dense channel
# where a profile's samples went, by the first frame (innermost last) that matches; order matters
STAGES = [
    ("ONNX encoder (dense windows)", ("onnx_encoder.py",)),
    ("sentence-transformers / torch (dense windows)", ("sentence_transformers", "torch/nn")),
    ("render pages (PyMuPDF)", ("render.py",)),
    ("OCR", ("ocr", "rapidocr")),
    ("catalog writes (DuckDB)", ("catalog.py",)),
    ("LanceDB writes", ("lib/store/table.py",)),
    ("publish: encode segments", ("lib/index/encode.py",)),
    ("publish: table compaction / indexes", ("compact_table", "ensure_table_indexes")),
    ("publish: other", ("lib/index/publish.py",)),
    ("data contracts (Great Expectations)", ("great_expectations",)),
    ("store verification", ("lib/store/verify.py",)),
    ("corpus scan / run plan", ("lib/plan.py", "ingest/corpus.py")),
    ("Dagster event log / run", ("dagster/_core/storage", "dagster/_core/execution")),
    ("imports", ("<frozen importlib._bootstrap>",)),
]


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, **kw)


def build_corpus(pages: int) -> tuple[Path, Path, dict[str, int]]:
    """corpus dir, the added PDF, pages per document."""
    import gzip

    import pymupdf

    debs, root = OUT / "debs", OUT / "unpacked"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        sh(["apt-get", "download", *missing], cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        marker = root / f".{deb.name}"
        if not marker.exists():
            root.mkdir(parents=True, exist_ok=True)
            sh(["dpkg-deb", "-x", str(deb), str(root)])
            marker.touch()
    corpus = OUT / f"corpus-{pages}"
    added = OUT / f"added-{pages}.pdf"
    counts: dict[str, int] = {}
    docs = []
    for name, rel in MANUALS:
        data = (root / rel).read_bytes()
        docs.append(
            (
                name,
                pymupdf.open(stream=gzip.decompress(data) if rel.endswith(".gz") else data, filetype="pdf"),
            )
        )
    left = pages
    corpus.mkdir(parents=True, exist_ok=True)
    for name, doc in docs:
        n = min(doc.page_count, left)
        left -= n
        counts[name] = n
        dest = corpus / name
        if not dest.exists():
            out = pymupdf.open()
            out.insert_pdf(doc, from_page=0, to_page=n - 1)
            out.save(dest, garbage=3, deflate=True)
    name, last = docs[-1]
    if not added.exists():
        out = pymupdf.open()
        out.insert_pdf(last, from_page=counts[name], to_page=counts[name] + ADDED_PAGES - 1)
        out.save(added, garbage=3, deflate=True)
    return corpus, added, counts


RENDER_ONLY = """
import sys, time, pymupdf
from pathlib import Path
from mmrag_assets.config import load_config
dpi = load_config([]).ingest.dpi
t = time.perf_counter(); n = 0
for p in sorted(Path(sys.argv[1]).glob("*.pdf")):
    for page in pymupdf.open(p):
        page.get_pixmap(dpi=dpi).tobytes("png"); n += 1
print(n, time.perf_counter() - t)
"""


ENCODERS = """
import json, sys, time, numpy as np, pymupdf, torch
from pathlib import Path
from mmrag_assets.config import load_config
from mmrag_assets.lib.index.embedding.dense import DenseEncoder, windows
d = load_config([]).dense
text = " ".join(pg.get_text() for p in sorted(Path(sys.argv[1]).glob("*.pdf")) for pg in list(pymupdf.open(p))[40:80])
wins = windows(text, d.window_words, 10**9, d.stride_words)[: int(sys.argv[2])]
torch.set_num_threads(1)
out, ref = {}, None
for name in ("none", "fp32", "int8"):  # none: sentence-transformers (the reference vectors)
    t = time.perf_counter()
    enc = DenseEncoder("minilm", d.path, d.batch_size, name, 1)
    enc.encode(wins[:4])
    load = time.perf_counter() - t
    c, t = time.process_time(), time.perf_counter()
    v = enc.encode(wins)
    cpu, wall = time.process_time() - c, time.perf_counter() - t
    ref = v if ref is None else ref
    cos = (v * ref).sum(1)
    out[name] = {"load_s": load, "cpu_ms": 1000 * cpu / len(wins), "wall_ms": 1000 * wall / len(wins),
                 "cos_mean": float(cos.mean()), "cos_min": float(cos.min())}
print(json.dumps(out))
"""


class Version:
    def __init__(self, label: str, pkg: Path, storage: Path, corpus: Path, env: dict[str, str]) -> None:
        self.label, self.pkg, self.storage, self.corpus = label, pkg, storage, corpus
        self.env = {**os.environ, "MMRAG_WARM": "0", **env, "PYTHONPATH": str(pkg)}
        self.results: dict[str, dict[str, float]] = {}
        self.server_pid: int | None = None  # Served: whose children's CPU counts too

    def overrides(self) -> list[str]:
        return [f"corpus.root={self.corpus}", f"storage.root={self.storage}"]

    def run(self, step: str, args: list[str], profile: Path | None = None) -> dict[str, float]:
        """wall, cpu, rss of one command (GNU time), optionally under py-spy."""
        cmd = [sys.executable, "-m", "mmrag_assets.cli", *args, *self.overrides()]
        if profile is not None:
            spy = str(Path(sys.executable).parent / "py-spy")
            cmd = [
                spy,
                "record",
                "--nonblocking",
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                "20",
                "-o",
                str(profile),
                "--",
                *cmd,
            ]
        load = os.getloadavg()[0]
        children0 = self.children_cpu()
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "TIME %U %S %M", *cmd], env=self.env, cwd=self.pkg,
                           capture_output=True, text=True, check=False)  # fmt: skip
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(
                f"{self.label} {step} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
            )
        u, s_, m = r.stderr.strip().splitlines()[-1].split()[1:]
        out = {
            "wall": wall,
            "cpu": float(u) + float(s_) + self.children_cpu() - children0,
            "rss_mib": int(m) / 1024,
            "load": load,
        }
        self.results[step] = out
        print(f"{self.label:>9} {step:<8} wall {wall:7.1f} s  cpu {out['cpu']:7.1f} s  rss {out['rss_mib']:6.0f} MiB  load {load:.1f}",
              flush=True)  # fmt: skip
        return out

    def children_cpu(self) -> float:
        return 0.0


class Served(Version):
    """This checkout through a ``mmrag warm`` server of its own (``--served``)."""

    def __init__(self, label: str, pkg: Path, storage: Path, corpus: Path, env: dict[str, str]) -> None:
        self.runtime = Path(tempfile.mkdtemp(prefix="mmrag-warm-"))  # short: a socket path is <108 bytes
        super().__init__(label, pkg, storage, corpus, {**env, "XDG_RUNTIME_DIR": str(self.runtime)})
        self.env["MMRAG_WARM"] = "1"

    def start(self) -> None:
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "mmrag_assets.cli", "warm", "start", *self.overrides()]
        subprocess.run(cmd, env=self.env, cwd=self.pkg, check=True)
        st = json.loads(
            sh([sys.executable, "-m", "mmrag_assets.cli", "warm", "status", "--json"], env=self.env).stdout
        )
        self.server_pid = st["pid"]
        print(f"warm server {self.server_pid} ready in {time.perf_counter() - t:.1f} s", flush=True)

    def stop(self) -> None:
        sh([sys.executable, "-m", "mmrag_assets.cli", "warm", "stop"], env=self.env)
        shutil.rmtree(self.runtime, ignore_errors=True)

    def children_cpu(self) -> float:
        """CPU s of the server's reaped children (each command's supervisor, which reaped the command):
        asked for after the server said none is running, so the last command is counted."""
        if self.server_pid is None:
            return 0.0
        for _ in range(50):
            st = sh(
                [sys.executable, "-m", "mmrag_assets.cli", "warm", "status", "--json"], env=self.env
            ).stdout
            if json.loads(st).get("active", 0) == 0:
                break
            time.sleep(0.1)
        fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime


def summarize_profile(path: Path) -> list[tuple[str, float]]:
    """Share of samples per stage (the innermost matching frame of each stack decides)."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = stack.split(";")
        stage = "other"
        for fr in reversed(frames):
            hit = next((name for name, keys in STAGES if any(x in fr for x in keys)), None)
            if hit:
                stage = hit
                break
        counts[stage] += k
    return [(s, n / max(total, 1)) for s, n in counts.most_common()]


def top_frames(path: Path, n: int) -> list[tuple[str, float]]:
    """The innermost mmrag frames holding the most samples (the leaves of the flame graph, in our code)."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, k = line.rpartition(" ")
        if not k.isdigit():
            continue
        total += int(k)
        ours = [f for f in stack.split(";") if "mmrag_assets/" in f]
        counts[
            ours[-1].split(" (")[0] + " (" + ours[-1].split("mmrag_assets/")[1] if ours else "(outside mmrag)"
        ] += int(k)
    return [(fr, c / max(total, 1)) for fr, c in counts.most_common(n)]


def text_pdf(pages: int, counts: dict[str, int]) -> Path:
    """10 Doxygen pages after the corpus's and the added PDF's that hold no image (nothing to OCR)."""
    import pymupdf

    out = OUT / f"added-text-{pages}.pdf"
    if out.exists():
        return out
    doc = pymupdf.open(OUT / "unpacked" / MANUALS[-1][1])
    start = next(
        s for s in range(counts[MANUALS[-1][0]] + ADDED_PAGES, doc.page_count - ADDED_PAGES)
        if all(not doc[i].get_images() and len(doc[i].get_text()) > 500 for i in range(s, s + ADDED_PAGES))
    )  # fmt: skip
    new = pymupdf.open()
    new.insert_pdf(doc, from_page=start, to_page=start + ADDED_PAGES - 1)
    new.save(out, garbage=3, deflate=True)
    return out


def archive(rev: str, dest: Path) -> Path:
    """``rev``'s package, config and contracts extracted into ``dest`` (run with it first on the path)."""
    dest.mkdir(parents=True, exist_ok=True)
    data = sh(
        ["git", "-C", str(ROOT), "archive", rev, "mmrag_assets", "conf", "data_contracts", "workspace.yaml"]
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=data, check=True)
    return dest


def warm_main(args: argparse.Namespace) -> int:
    """``--warm REV`` (see the module docstring)."""
    corpus_src, added, counts = build_corpus(args.pages)
    text = text_pdf(args.pages, counts)
    n_pages = sum(counts.values())
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        tmp_p = Path(tmp)
        store, corpus, built = tmp_p / "s", tmp_p / "c", tmp_p / "built"
        env = {"MMRAG_CACHE_DIR": str(OUT / "mmrag-cache")}
        new = Version("this", ROOT, store, corpus, env)
        old = Version(args.warm, archive(args.warm, tmp_p / "baseline"), store, corpus, env)
        served = Served("served", ROOT, store, corpus, env) if args.served else None
        shutil.copytree(corpus_src, corpus)
        t = time.perf_counter()
        new.run("build", ["index"])
        print(f"store built in {time.perf_counter() - t:.0f} s", flush=True)
        shutil.copytree(store, built)
        versions = [("old", old), ("new", new)]
        if served is not None:
            served.start()
            versions.append(("served", served))

        def fresh() -> None:
            shutil.rmtree(store)
            shutil.copytree(built, store)
            for extra in ("added.pdf", "text.pdf"):
                (corpus / extra).unlink(missing_ok=True)

        res: dict[str, dict[str, list[dict[str, float]]]] = {key: {} for key, _v in versions}
        for r in range(args.rounds):
            for key, v in versions if r % 2 == 0 else versions[::-1]:
                got = res[key]
                fresh()
                got.setdefault("noop", []).append(v.run("noop", ["index"]))
                shutil.copy(added, corpus / "added.pdf")
                got.setdefault("add", []).append(v.run("add", ["index"]))
                fresh()
                shutil.copy(text, corpus / "text.pdf")
                got.setdefault("add_text", []).append(v.run("add_text", ["index"]))
                for i, q in enumerate(QUERIES):
                    got.setdefault("search", []).append(v.run(f"q{i}", ["search", q, "--k", "5"]))
        if served is not None:
            served.stop()
    load1 = os.getloadavg()
    names = {"old": f"baseline `{args.warm}`", "new": f"this checkout `{commit()}`"}
    names["served"] = f"this checkout, `mmrag warm` server running `{commit()}`"

    def med(key: str, step: str, what: str) -> float:
        return statistics.median(x[what] for x in res[key][step])

    steps = ("noop", "add", "add_text", "search")
    rows = [
        [names[key]] + [f"{med(key, st, 'wall'):.2f} ({med(key, st, 'cpu'):.2f})" for st in steps]
        for key in res
    ]
    body = (
        f"`bench/index_speed.py --warm {args.warm} --rounds {args.rounds}`: small changes to the {n_pages}-page store of the\n"
        "corpus above (built once by this checkout; each version gets a fresh copy of it for every step, rounds\n"
        "alternating which version goes first): `mmrag index` with nothing changed, after adding the 10-page Doxygen\n"
        "PDF (9 screenshot regions to OCR), after adding 10 text-only Doxygen pages (nothing to OCR), and `mmrag\n"
        "search` (3 queries each round). Medians, wall s (CPU s: user + sys); load average "
        f"{load0[0]:.1f} at the start,\n{load1[0]:.1f} at the end, on 2 cores shared with other jobs.\n\n"
        + table(["version", "no-op s", "add 10 pages (OCR) s", "add 10 text pages s", "search s"], rows)
        + "\n\nTargets: add <= 10 s, no-op <= 3 s, search <= 1.5 s wall.\n"
    )
    emit("Indexing speed: small changes", body, write=not args.no_write)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=DEFAULT_BASELINE)
    ap.add_argument("--warm", metavar="REV", help="only the small changes, this checkout against REV")
    ap.add_argument("--rounds", type=int, default=3, help="--warm: rounds (medians)")
    ap.add_argument("--served", action="store_true", help="--warm: also through a `mmrag warm` server")
    ap.add_argument("--pages", type=int, default=620)
    ap.add_argument("--only", choices=["new", "both"], default="both")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="reuse a kept ONNX cache, no render-only run (implies --no-write)",
    )
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.warm:
        return warm_main(args)

    light = args.quick or args.profile  # a kept ONNX cache; no render-only run, no encoder comparison
    corpus, added, counts = build_corpus(args.pages)
    n_pages = sum(counts.values())
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        tmp_p = Path(tmp)
        cache = OUT / "mmrag-cache" if light else tmp_p / "mmrag-cache"  # fresh: the export is timed below
        versions = []
        if args.only == "both":
            old = tmp_p / "baseline"
            old.mkdir()
            archive = sh(
                [
                    "git",
                    "-C",
                    str(ROOT),
                    "archive",
                    args.baseline,
                    "mmrag_assets",
                    "conf",
                    "data_contracts",
                    "workspace.yaml",
                ]
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            versions.append(
                Version(
                    f"{args.baseline}", old, tmp_p / "s-old", tmp_p / "c-old", {"MMRAG_CACHE_DIR": str(cache)}
                )
            )
        versions.append(
            Version("this", ROOT, tmp_p / "s-new", tmp_p / "c-new", {"MMRAG_CACHE_DIR": str(cache)})
        )
        for v in versions:
            shutil.copytree(corpus, v.corpus)

        # the one-off export of the dense encoder (first use on a machine), timed alone
        t = time.perf_counter()
        code = ("from mmrag_assets.lib.index.embedding.dense import dense_encoder as d; e = d('minilm', None, 32); "
                "print(round(e._impl.export_seconds, 2), round(e._impl.load_ms, 1)); e.encode(['warm up'])")  # fmt: skip
        r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MMRAG_CACHE_DIR": str(cache)},
                           capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
        export_s, load_ms = (float(x) for x in r.stdout.split()[-2:])
        r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MMRAG_CACHE_DIR": str(cache)},
                           capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
        load_ms = float(r.stdout.split()[-1])
        print(f"ONNX export (once per machine): {export_s:.1f} s ({time.perf_counter() - t:.1f} s with the processes); "
              f"encoder load when cached: {load_ms:.0f} ms")  # fmt: skip

        render_s = float("nan")
        if not light:
            r = subprocess.run([sys.executable, "-c", RENDER_ONLY, str(corpus)], capture_output=True, text=True,
                               check=True, cwd=ROOT)  # fmt: skip
            render_s = float(r.stdout.split()[1])
        print(f"PyMuPDF render only: {n_pages} pages in {render_s:.1f} s", flush=True)

        n_win, encoders = 300, {}
        if not light:
            r = subprocess.run([sys.executable, "-c", ENCODERS, str(corpus), str(n_win)],
                               env={**os.environ, "MMRAG_CACHE_DIR": str(cache)}, capture_output=True, text=True,
                               check=True, cwd=ROOT)  # fmt: skip
            encoders = json.loads(r.stdout.strip().splitlines()[-1])
            print(json.dumps(encoders), flush=True)

        prof = OUT / "profiles"
        prof.mkdir(exist_ok=True)

        def spy(v: Version, step: str) -> Path | None:
            return prof / f"{step}.txt" if args.profile and v.pkg == ROOT else None

        for v in versions:
            v.run("build", ["index"], spy(v, "build"))
        for v in versions:
            v.run("noop", ["index"], spy(v, "noop"))
        for v in versions:
            shutil.copy(added, v.corpus / "added.pdf")
            v.run("add", ["index"], spy(v, "add"))
        for v in versions:
            v.results["search"] = {"wall": statistics.median(v.run(f"q{i}", ["search", q, "--k", "5"])["wall"]
                                                             for i, q in enumerate(QUERIES))}  # fmt: skip
    load1 = os.getloadavg()

    rows = []
    for v in versions:
        r = v.results
        rows.append([f"baseline `{v.label}`" if v.pkg != ROOT else f"this checkout `{commit()}`",
                     r["build"]["wall"], r["build"]["cpu"], n_pages / r["build"]["wall"], r["build"]["rss_mib"],
                     r["noop"]["wall"], r["add"]["wall"], r["search"]["wall"]])  # fmt: skip
    body = (
        f"`bench/index_speed.py --pages {args.pages}`: the real `mmrag index` (default config) of {n_pages} pages of three\n"
        f"real manuals ({', '.join(f'{k} {n}' for k, n in counts.items())} pages; Debian scons-doc, dblatex-doc,\n"
        "doxygen-doc), each version from its own package on the same virtual environment and its own storage root,\n"
        "steps alternating between versions; then `mmrag index` with nothing changed, after adding a 10-page PDF\n"
        "(the next Doxygen pages), and `mmrag search` (median of 3 queries). Load average "
        f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end, on 2 cores shared with other jobs.\n\n"
        + table(
            [
                "version",
                "first build wall s",
                "CPU s",
                "pages/s",
                "peak RSS MiB",
                "no-op s",
                "add 10 pages s",
                "search s",
            ],
            rows,
        )
        + "\n"
    )
    if not light:  # a profile run reuses a kept export and renders nothing alone
        body += (
            f"\nPyMuPDF rendering the same {n_pages} pages alone (pixmap at the configured DPI + PNG, one process): "
            f"{render_s:.1f} s. Dense encoder: ONNX export {export_s:.1f} s once per machine (cached by content "
            f"hash), then {load_ms:.0f} ms to open.\n"
        )
    names = {"none": "sentence-transformers (torch; the reference)", "fp32": "ONNX fp32 export",
             "int8": "ONNX int8 export (default)"}  # fmt: skip
    body += (
        ""
        if not encoders
        else (
            f"\nThe dense encoder alone, one thread, {n_win} windows of the corpus (64 words, stride 32), same process:\n\n"
            + table(
                [
                    "dense.onnx",
                    "load s (with its export if not cached)",
                    "CPU ms / window",
                    "wall ms / window",
                    "cosine to reference: mean",
                    "min",
                ],
                [
                    [
                        f"`{k}`: {names[k]}",
                        e["load_s"],
                        e["cpu_ms"],
                        e["wall_ms"],
                        round(e["cos_mean"], 4),
                        round(e["cos_min"], 4),
                    ]
                    for k, e in encoders.items()
                ],
            )
            + "\n"
        )
    )
    if len(versions) == 2:
        o, n = (v.results for v in versions)
        body += (
            f"\nFirst build {o['build']['wall'] / n['build']['wall']:.1f}x faster than the baseline (target 5x; CPU "
            f"{o['build']['cpu'] / n['build']['cpu']:.1f}x less), {n['build']['wall'] / render_s:.1f}x the render-only time "
            f"(target 3x); no-op {n['noop']['wall']:.1f} s (target 3 s), add {n['add']['wall']:.1f} s (target 10 s), "
            f"search {n['search']['wall']:.2f} s (target 1.5 s); peak RSS {n['build']['rss_mib']:.0f} vs "
            f"{o['build']['rss_mib']:.0f} MiB.\n"
        )
    if args.profile:
        body += ("\nWhere the new version's time goes (py-spy samples of every thread, share per stage; under py-spy\n"
                 "the CPU and RSS columns are py-spy's own, not the command's):\n\n")  # fmt: skip
        for step in ("build", "noop", "add"):
            p = prof / f"{step}.txt"
            if p.exists():
                body += (
                    f"- {step}: "
                    + ", ".join(f"{s} {f:.0%}" for s, f in summarize_profile(p) if f >= 0.01)
                    + "\n"
                    + "".join(f"  - {f:.0%} `{fr}`\n" for fr, f in top_frames(p, 6))
                )
    name = "Indexing speed: where the time goes (py-spy)" if args.profile else "Indexing speed"
    emit(name, body, write=not (args.no_write or args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
