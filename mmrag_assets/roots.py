"""``storage.root`` and ``corpus.root``: a local path or an ``s3://bucket/prefix`` URI, and the local
folders that stand in for an object-store root (its mirror, the corpus cache). Pure functions of
the configured strings, so the config (``MmragConfig.storage_root``, ``corpus_root``) and the
stores (``lib/store/storage.py``, ``lib/ingest/objects.py``) share them without importing each other."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mmrag_assets.errors import ConfigError

SCHEMES = ("s3",)
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<rest>.*)$")


@dataclass(frozen=True)
class RootUri:
    scheme: str  # "file" | "s3"
    bucket: str  # "" for a local root
    prefix: str  # key prefix inside the bucket (no leading or trailing slash); the path for "file"

    @property
    def remote(self) -> bool:
        return self.scheme != "file"


def parse_root(value: str, key: str = "storage.root") -> RootUri:
    """``storage.root`` (or ``key``: ``corpus.root``) as a local path or an ``s3://bucket/prefix`` URI.
    Any other scheme, and a malformed ``s3`` URI, is a :class:`ConfigError`: never a local folder
    named ``s3:``."""
    m = _SCHEME.match(value)
    if m is None or len(m["scheme"]) == 1 and os.name == "nt":  # no scheme (or a Windows drive letter)
        return RootUri("file", "", value)
    scheme, rest = m["scheme"].lower(), m["rest"]
    if scheme == "file":
        if not rest.startswith("//"):
            raise ConfigError(f"{key}={value} is not valid: write file:///absolute/path or a plain path")
        return RootUri("file", "", rest[2:] or "/")
    if scheme not in SCHEMES:
        raise ConfigError(
            f"{key}={value} is not valid: the {scheme}: scheme is not supported; "
            "use a local path or s3://bucket/prefix (S3 or an S3-compatible store via AWS_ENDPOINT_URL)"
        )
    if not rest.startswith("//"):
        raise ConfigError(f"{key}={value} is not valid: write s3://bucket/prefix (two slashes after s3:)")
    bucket, _, prefix = rest[2:].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ConfigError(
            f"{key}={value} is not valid: {bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-')"
        )
    return RootUri("s3", bucket, prefix.strip("/"))


def mirror_dir(uri: RootUri, cache_dir: str | Path) -> Path:
    """The local folder that mirrors an object-store root (what ``cfg.storage_root`` is for it)."""
    return Path(cache_dir) / uri.scheme / uri.bucket / uri.prefix


def cache_dir_of(uri: RootUri, cache_dir: str | Path) -> Path:
    """Where the objects of a corpus root are cached (what ``cfg.corpus_root`` is for it)."""
    return Path(cache_dir) / "corpus" / uri.bucket / uri.prefix
