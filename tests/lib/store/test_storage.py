"""storage.root as a local folder or an s3:// URI; any other scheme is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmrag_assets.config import load_config
from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.store.runtime import Runtime
from mmrag_assets.roots import mirror_dir, parse_root


@pytest.mark.parametrize(
    ("root", "why"),
    [
        ("gs://bucket/store", "the gs: scheme is not supported"),
        ("foo://x", "the foo: scheme is not supported"),
        ("s3:bucket/store", "two slashes after s3:"),
        ("s3:/bucket", "two slashes after s3:"),
        ("s3://Bad_Bucket/x", "is not an S3 bucket name"),
        ("file:relative", "file:///absolute/path"),
    ],
)
def test_unsupported_roots_are_errors_never_folders(tmp_path: Path, monkeypatch, root: str, why: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=why) as e:
        load_config([f"corpus.root={tmp_path}", f"storage.root={root}"])
    assert "\n" not in str(e.value) and str(e.value).startswith(f"storage.root={root} is not valid")
    assert list(tmp_path.iterdir()) == []  # no folder named "gs:" or "s3:" appeared


def test_s3_root_is_mirrored_under_the_cache_dir(tmp_path: Path) -> None:
    cfg = load_config([f"corpus.root={tmp_path}", "storage.root=s3://my-bucket/team/store/", "catalog=postgres",
                       f"storage.cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    assert cfg.storage.root == "s3://my-bucket/team/store/" and cfg.storage_remote
    assert cfg.storage_root == tmp_path / "cache" / "s3" / "my-bucket" / "team" / "store"
    assert parse_root("s3://my-bucket").prefix == ""
    assert mirror_dir(parse_root("s3://b-1/x"), "/c") == Path("/c/s3/b-1/x")


def test_local_root_unchanged(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config([f"corpus.root={tmp_path}", "storage.root=store"])
    assert cfg.storage_root == tmp_path / "store" and not cfg.storage_remote
    cfg = load_config([f"corpus.root={tmp_path}", f"storage.root=file://{tmp_path}/x"])
    assert cfg.storage_root == tmp_path / "x" and cfg.storage.root == str(tmp_path / "x")


def test_plain_http_endpoint_needs_allow_http(tmp_path: Path, monkeypatch) -> None:
    from mmrag_assets.lib.store import table as lx

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    cfg = load_config(
        [
            f"corpus.root={tmp_path}",
            "storage.root=s3://bucket-a/x",
            "catalog=postgres",
            f"storage.cache_dir={tmp_path}",
        ]
    )
    with pytest.raises(ConfigError, match="storage.allow_http=true"):
        lx.connect(Runtime(cfg))
