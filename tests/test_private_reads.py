"""Tests assert behaviour through public interfaces. The few that read a private attribute
(`obj._name`, not on self/cls/a module) say why, and there stay fewer than ten."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

TESTS = Path(__file__).resolve().parent
LIMIT = 10
# namedtuple's documented API, underscored only to stay out of the field names' way
NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _module_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.asname or a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                if _is_module(f"{node.module}.{a.name}"):
                    names.add(a.asname or a.name)
    return names


def private_reads(path: Path) -> list[tuple[int, str, bool]]:
    """(line, expression, explained) for each private attribute read in one file."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    modules = _module_names(tree) | {"self", "cls"}
    docstring_lines: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and ast.get_docstring(fn):
            docstring_lines.update(range(fn.lineno, (fn.end_lineno or fn.lineno) + 1))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in NAMEDTUPLE_API:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in modules:
            continue
        near = lines[max(0, node.lineno - 3) : node.lineno]
        explained = any("#" in line for line in near) or node.lineno in docstring_lines
        found.append((node.lineno, ast.unparse(node), explained))
    return found


def test_private_attribute_reads_are_few_and_explained() -> None:
    reads = {
        f"{path.relative_to(TESTS)}:{line} {expr}": explained
        for path in sorted(TESTS.rglob("*.py"))
        for line, expr, explained in private_reads(path)
    }
    print(f"{len(reads)} private attribute reads in tests/:", *reads, sep="\n  ")
    assert len(reads) < LIMIT, sorted(reads)
    assert [where for where, explained in reads.items() if not explained] == []


def test_the_counter_sees_a_private_read(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nx = obj._secret\ny = os._exit\nz = self._mine\n# why\nw = t._ok\n"
    )
    assert private_reads(sample) == [(2, "obj._secret", False), (6, "t._ok", True)]
