from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mmrag_assets.config import MmragConfig, load_config

# No test may reach a model hub: fail fast instead of hanging on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MMRAG_FORCE_CPU", "1")
os.environ["MMRAG_WARM"] = (
    "0"  # a developer's `mmrag warm` server never runs the tests' commands (test_warm_cli sets 1)
)
os.environ.pop("DAGSTER_HOME", None)  # each test gets its own instance under its storage root


def _pin_onnxruntime_threads(n: int) -> None:
    """Every onnxruntime session of this process runs ``n`` intra-op threads (tests/cpu_variants.sh).
    CTranslate2, torch and numpy read their thread counts and instruction sets from the environment;
    onnxruntime has no such variable (nor a switch for its instruction set), so it is set here."""
    import onnxruntime as ort

    init = ort.InferenceSession.__init__

    def pinned(self, path_or_bytes, sess_options=None, *args, **kwargs):
        opts = sess_options if sess_options is not None else ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = n, 1
        init(self, path_or_bytes, opts, *args, **kwargs)

    ort.InferenceSession.__init__ = pinned


if int(os.environ.get("MMRAG_TEST_ORT_THREADS") or 0) > 0:
    _pin_onnxruntime_threads(int(os.environ["MMRAG_TEST_ORT_THREADS"]))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast profile, `pytest -m "not slow"`, leaves out every test that builds its own index, starts a
    server or runs Dagster, whether or not its module says `slow`: integration, faults and browser tests
    count as slow. So do gpu and scale tests, because `-m` replaces the default `-m 'not gpu and not scale'`
    of addopts."""
    implied = ("integration", "faults", "browser", "gpu", "scale")
    for item in items:
        if any(item.get_closest_marker(name) for name in implied):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path_factory.getbasetemp() / "hf-cache"
    monkeypatch.setenv("HF_HOME", str(cache))
    # the dense channel's ONNX export, made once per test session (lib/index/embedding/onnx_encoder.py)
    monkeypatch.setenv("MMRAG_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mmrag-cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., MmragConfig]:
    """Compose a config whose corpus and storage live under this test's tmp_path."""

    def make(*overrides: str, corpus: Path | None = None, storage: Path | None = None) -> MmragConfig:
        corpus = corpus or tmp_path / "corpus"
        storage = storage or tmp_path / "storage"
        corpus.mkdir(parents=True, exist_ok=True)
        return load_config([f"corpus.root={corpus}", f"storage.root={storage}", *overrides])

    return make
