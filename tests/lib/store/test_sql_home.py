"""Catalog SQL lives in ``lib/store`` only (issue 26): no other module of mmrag_assets holds a SQL
statement in a string literal. Docstrings are prose and may show SQL to users."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mmrag_assets

PACKAGE = Path(mmrag_assets.__file__).parent
HOME = PACKAGE / "lib" / "store"
STATEMENT = re.compile(
    r"""\s*\(?\s*(
        SELECT\s.+\bFROM\b | SELECT\s+(count|\*) | INSERT\s+(OR\s+\w+\s+)?INTO\s | UPDATE\s+\w+\s+SET\s
      | DELETE\s+FROM\s | CREATE\s+(OR\s+REPLACE\s+)?(TEMP\w*\s+)?(TABLE|VIEW|INDEX|SEQUENCE|SCHEMA)\s
      | WITH\s+(RECURSIVE\s+)?\w+\s+AS\s*\(
    )""",
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _leading_text(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's up to its first placeholder, with ``{}`` for it."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{} " for v in node.values)
    return None


def sql_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    docs = _docstrings(tree)
    inner = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    out = []
    for node in ast.walk(tree):
        if id(node) in docs or id(node) in inner:
            continue
        text = _leading_text(node)
        if text is not None and STATEMENT.match(text):
            out.append((node.lineno, " ".join(text.split())[:70]))
    return sorted(out)


def test_catalog_sql_only_in_lib_store() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if HOME not in path.parents
        for line, text in sql_literals(path)
    ]
    assert not offenders, "SQL outside mmrag_assets/lib/store (move it into a store method):\n" + "\n".join(
        offenders
    )


def test_the_scan_sees_sql(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        '"""SELECT * FROM documents: a docstring is documentation."""\n'
        'a = "select doc_id FROM documents"\n'
        'b = f"INSERT INTO {t} VALUES (?)"\n'
        'c = "Update the index when it changes"\n'
        'd = "with a few words as (an aside)"\n'
        'e = "DELETE FROM pages WHERE doc_id = ?"\n'
    )
    assert [line for line, _ in sql_literals(src)] == [2, 3, 6]
