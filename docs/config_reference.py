"""The configuration reference page (``config-reference.md``), generated at every docs build by
``hooks.py`` from the config schemas themselves, so it cannot drift from the code:

- every key of ``MmragConfig`` (the dataclasses in ``mmrag_assets/config.py``), walked recursively,
  with its type (a ``Literal`` lists its choices), its value in the default composition
  (``conf/config.yaml``; the ``model`` group's default depends on the machine, see below) and the
  comment written beside the field in the schema;
- every option of every config group (the YAML files under ``conf/<group>/``) with its first
  comment line.

``python docs/config_reference.py`` prints it.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import itertools
import json
import re
import tokenize
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "mmrag_assets" / "config.py"
CONF = ROOT / "conf"


def field_comments(source: str) -> dict[str, dict[str, str]]:
    """{class name: {field name: the comment on the field's line}} of every class in ``source``."""
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    out: dict[str, dict[str, str]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            out[node.name] = {
                stmt.target.id: comments.get(stmt.lineno, "")
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            }
    return out


def type_name(tp: Any) -> str:
    """``int``, ``str | None``, ``one of plaid, binary`` (Literal), ``dict[str, float]``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(type_name(a) for a in args)
    if tp is type(None):
        return "None"
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def value_text(v: Any) -> str:
    if isinstance(v, (dict, list)):
        text = json.dumps(v, sort_keys=True)
        return text if len(text) <= 80 else text[:77] + "..."
    return "null" if v is None else str(v)


def rows(
    cls: type, obj: Any, prefix: str, comments: dict[str, dict[str, str]]
) -> list[tuple[str, str, str, str]]:
    """(key, type, default value, comment) of every leaf field of dataclass ``cls``, depth first."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, str, str, str]] = []
    for f in dataclasses.fields(cls):
        if f.name == "overrides":  # set by load_config, not a knob
            continue
        tp, value, key = hints[f.name], getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(tp):
            out += rows(tp, value, key + ".", comments)
        else:
            out.append(
                (key, type_name(tp), value_text(value), comments.get(cls.__name__, {}).get(f.name, ""))
            )
    return out


def group_options() -> list[tuple[str, str, str]]:
    """(group, option, the first sentence of the option file's leading comment) for every ``conf/<group>/*.yaml``."""
    out = []
    for d in sorted(p for p in CONF.iterdir() if p.is_dir()):
        for y in sorted(d.glob("*.yaml")):
            lines = y.read_text(encoding="utf-8").splitlines()
            head = " ".join(
                ln.lstrip("#").strip() for ln in itertools.takewhile(lambda ln: ln.startswith("#"), lines)
            )
            out.append((d.name, y.stem, re.split(r"(?<=\.)\s", head, maxsplit=1)[0]))
    return out


def yaml_comment(key: str) -> str:
    """The comment beside ``leaf: value`` in the key's group folder (the schema has none for it)."""
    group, _, rest = key.partition(".")
    leaf = key.rsplit(".", 1)[-1]
    folder = CONF / group
    if not rest or not folder.is_dir():
        return ""
    pat = re.compile(rf"^\s*{re.escape(leaf)}:[^#]*#\s*(.+)$")
    for y in sorted(folder.glob("*.yaml")):
        for ln in y.read_text(encoding="utf-8").splitlines():
            m = pat.match(ln)
            if m:
                return m.group(1).strip()
    return ""


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference() -> str:
    from mmrag_assets.config import MmragConfig, load_config

    cfg = load_config(["model=lite"], resolve_paths=False)
    comments = field_comments(SCHEMA.read_text(encoding="utf-8"))
    keys = rows(MmragConfig, cfg, "", comments)
    lines = [
        "# Configuration reference",
        "",
        (
            "Generated at every docs build from the schemas in `mmrag_assets/config.py` and the files under `conf/` "
            "(`docs/config_reference.py`): every key, its type, its value in the default composition and the "
            "schema's comment. How composition, overrides and errors work: [Configuration](configuration.md)."
        ),
        "",
        (
            "The `model` group's default depends on the machine, as `default_model` (below) says: `lite` "
            "without CUDA, a visual tier with it; the values below are composed with `model=lite`."
        ),
        "",
        "## Groups and their options",
        "",
        "| group | option | what it is |",
        "|---|---|---|",
        *[f"| `{g}` | `{o}` | {cell(c)} |" for g, o, c in group_options()],
        "",
        f"## Keys ({len(keys)})",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        *[f"| `{k}` | {cell(t)} | `{cell(v)}` | {cell(c or yaml_comment(k))} |" for k, t, v, c in keys],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference())
