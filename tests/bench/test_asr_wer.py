"""The pure parts of bench/asr_wer.py (excerpt cut, WER, corpus vocabulary) and conf/asr/base.yaml."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mmrag_assets.config import load_config

_spec = importlib.util.spec_from_file_location(
    "asr_wer", Path(__file__).resolve().parents[2] / "bench" / "asr_wer.py"
)
asr_wer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(asr_wer)


def test_an_excerpt_ends_after_the_last_line_said_before_the_cut() -> None:
    lines = [{"text": "one", "end_s": 10.0}, {"text": "two", "end_s": 55.0}, {"text": "three", "end_s": 70.0}]
    cut, ref = asr_wer._cut(lines, 60.0)
    assert ref == ["one", "two"] and cut == pytest.approx(55.4)
    cut, ref = asr_wer._cut(lines, 5.0)  # a first line longer than the excerpt is still read whole
    assert ref == ["one"] and cut == pytest.approx(10.4)


def test_wer_ignores_case_and_punctuation_and_pools_words() -> None:
    assert asr_wer.wer_of(["Run the VACUUM command."], ["run the vacuum command"]) == 0.0
    # 1 substitution in 4 words + 1 deletion in 2 words = 2 errors / 6 reference words
    assert asr_wer.wer_of(["a b c d", "e f"], ["a b x d", "e"]) == pytest.approx(2 / 6)
    assert asr_wer.wer_of(["a b"], [""]) == pytest.approx(1.0)  # an empty transcript is all errors


class _Pieces:
    """A stand-in tokenizer: words of 7+ letters are two pieces, shorter ones one."""

    class _Enc:
        def __init__(self, n: int) -> None:
            self.ids = list(range(n))

    def encode(self, text: str, add_special_tokens: bool = True) -> _Enc:
        assert not add_special_tokens
        return self._Enc(2 if len(text.strip()) >= 7 else 1)


def test_corpus_vocabulary_takes_frequent_words_the_tokenizer_splits(tmp_path: Path) -> None:
    units = [{"channel": "page", "text": "The SConscript ﬁle and the Privoxy conﬁguration"} for _ in range(3)]
    units += [
        {"channel": "page", "text": "Privoxy again"},
        {"channel": "audio", "text": "Spokenwordsonly " * 9},
    ]
    (tmp_path / "units.jsonl").write_text("\n".join(json.dumps(u) for u in units) + "\n")
    vocab = asr_wer.corpus_vocabulary(tmp_path, _Pieces(), min_df=3, max_tokens=100).split(", ")
    assert vocab == ["Privoxy", "configuration", "SConscript"]  # most pages first, ties by name
    assert "Spokenwordsonly" not in vocab and "file" not in vocab  # audio is not a page; 'file' is one piece
    assert "configuration" in vocab  # the ﬁ ligature unfolded (NFKC)
    short = asr_wer.corpus_vocabulary(tmp_path, _Pieces(), min_df=3, max_tokens=3).split(", ")
    assert short == ["Privoxy"]  # 2 pieces + a separator fill the budget of 3


def test_the_base_tier_composes_offline_settings() -> None:
    cfg = load_config(["asr=base"])
    assert cfg.asr.tier == "base" and cfg.asr.language == "en" and cfg.asr.model_path is None
    assert cfg.asr.beam_size == load_config([]).asr.beam_size  # everything else as tiny.en
