"""Every kind of storage damage ends in one ``error:`` line that names what is damaged and the
command that repairs it, and ``mmrag index --verify`` (plain ``mmrag index`` for the derived files)
repairs it: afterwards the store answers exactly like an undamaged one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mmrag_assets.cli import main
from mmrag_assets.lib.store.runtime import Runtime
from tests.faults.conftest import cfg_for, make_corpus, snapshot

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An indexed store, copied by each case before it damages it."""
    from mmrag_assets.orchestration.launch import index

    base = tmp_path_factory.mktemp("pristine")
    make_corpus(base / "corpus")
    index(cfg_for(base))
    return base


def _lance(storage: Path) -> Path:
    return next((storage / "lancedb").glob("*.lance"))


def _segment_files(storage: Path) -> list[Path]:
    return sorted(
        p for p in (storage / "index").rglob("segments/*/*") if p.is_file() and p.stat().st_size > 64
    )


def truncate_segment(s: Path) -> str:
    p = max(_segment_files(s), key=lambda f: f.stat().st_size)
    os.truncate(p, p.stat().st_size // 2)
    return p.name


def delete_segment_file(s: Path) -> str:
    p = _segment_files(s)[0]
    p.unlink()
    return p.name


def delete_lance_data_file(s: Path) -> str:
    p = min((_lance(s) / "data").glob("*.lance"))
    p.unlink()
    return p.name


def truncate_lance_manifest(s: Path) -> str:
    p = min((_lance(s) / "_versions").glob("*.manifest"))  # v2 names: the newest sorts first
    os.truncate(p, p.stat().st_size // 3)
    return "cannot be opened"


def delete_pages(s: Path) -> str:
    shutil.rmtree(s / "pages")
    return "pages"


def corrupt_catalog(s: Path) -> str:
    with open(s / "catalog.duckdb", "r+b") as fh:
        fh.write(b"\0" * 8192)  # the header: DuckDB no longer recognises the file
    return "catalog.duckdb is damaged"


CASES: dict[str, Callable[[Path], str]] = {
    f.__name__: f
    for f in (truncate_segment, delete_segment_file, delete_lance_data_file, truncate_lance_manifest,
              delete_pages, corrupt_catalog)
}  # fmt: skip


def _cli(capsys, *argv: str) -> tuple[int, list[str]]:

    capsys.readouterr()
    rc = main(list(argv))
    err = capsys.readouterr().err
    return rc, [line for line in err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("case", list(CASES))
def test_damage_is_one_error_line_and_verify_repairs_it(
    case: str, tmp_path: Path, pristine: Path, capsys
) -> None:
    from mmrag_assets.lib.status import catalog_status
    from mmrag_assets.orchestration.launch import index

    shutil.copytree(pristine, tmp_path / "s", symlinks=True)
    base = tmp_path / "s"
    cfg = cfg_for(base)
    clean = snapshot(cfg)
    what = CASES[case](base / "storage")

    if case == "delete_pages":  # search still answers from text; status names the missing files
        st = catalog_status(Runtime(cfg))
        assert any("18 rendered page file" in p or "missing under pages/" in p for p in st["problems"]), st[
            "problems"
        ]
        assert all("mmrag index --verify" in p for p in st["problems"])
    elif case == "corrupt_catalog":  # search never reads the catalog; the commands that do say so
        for argv in (["status"], ["index"]):
            rc, errors = _cli(capsys, *argv, *cfg.overrides)
            assert rc == 2 and len(errors) == 1, (argv, errors)
            assert what in errors[0] and "mmrag index --verify" in errors[0], errors[0]
    else:
        for argv in (["search", "basalt volcano"], ["status"]):
            rc, errors = _cli(capsys, *argv, *cfg.overrides)
            if argv[0] == "search":
                assert rc == 2 and len(errors) == 1, (argv, errors)
                assert what in errors[0] and "mmrag index --verify" in errors[0], errors[0]
                assert "Traceback" not in errors[0] and "unexpected" not in errors[0]
            else:  # status reports the damage and the repair, without failing itself
                st = catalog_status(Runtime(cfg))
                assert any(what in p and "mmrag index --verify" in p for p in st["index"]["problems"]), st[
                    "index"
                ]

    index(cfg, verify=True)
    after = snapshot(cfg)
    for key in ("item_ids", "rows", "served_documents", "results", "status", "index_items"):
        assert after[key] == clean[key], key
    st = catalog_status(Runtime(cfg))
    assert not st["problems"] and not st["index"]["problems"]
    assert index(cfg, verify=True)["run_id"] is None  # verified clean: nothing left to do


def test_duplicated_item_ids_are_repaired_not_fatal(tmp_path: Path, pristine: Path) -> None:
    """Two writers that raced (before the writer pools) left repeated item ids: the next `mmrag index`
    keeps one row of each instead of failing on them forever."""
    from mmrag_assets.lib.index.embedding import version_key_for
    from mmrag_assets.lib.status import catalog_status
    from mmrag_assets.lib.store import table as lx
    from mmrag_assets.orchestration.launch import index

    shutil.copytree(pristine, tmp_path / "s", symlinks=True)
    cfg = cfg_for(tmp_path / "s")
    clean = snapshot(cfg)
    tbl = lx.open_table(Runtime(cfg), version_key_for(cfg.model), lx.model_schema(cfg.model), create=False)
    tbl.add(tbl.to_arrow().slice(0, 7))  # 7 item ids now held twice
    assert tbl.count_rows() == 25
    assert any(
        "7 item ids held more than once" in p for p in catalog_status(Runtime(cfg))["index"]["problems"]
    )
    index(cfg)
    after = snapshot(cfg)
    tbl.checkout_latest()
    assert (
        tbl.count_rows() == 18
        and after["item_ids"] == clean["item_ids"]
        and after["results"] == clean["results"]
    )
    assert not catalog_status(Runtime(cfg))["index"]["problems"]
