"""The import graph of the product and the tools, read from the sources with `ast`.

Every import statement counts, wherever it stands (module level, inside a function, under
`if TYPE_CHECKING:`): a circle that only a late import hides is still a circle. Rules:

* no import circle anywhere (gateway, firmware, shared, tools);
* shared/ (lorawire) imports nothing of ours: it runs alone on a board and on the host;
* firmware/ and gateway/ never import each other;
* the product (shared, firmware, gateway) never imports tools/ or tests/;
* on the gateway, nothing imports upward: the mesh wing (loragate.mesh) knows the peer
  manager only through its MeshHost protocol, and only the process module
  (loragate.runner) wires it in; the manager does not know the views, the control
  socket or the process.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# source folder -> how its files are named on the import path
TREES = {
    "shared": ROOT / "shared",
    "firmware": ROOT / "firmware",
    "gateway": ROOT / "gateway",
    "tools": ROOT / "tools",
}
TESTS = ROOT / "tests"


def module_name(base: Path, path: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(tree: str) -> Iterator[tuple[str, Path]]:
    top = TREES[tree]
    base = top.parent if tree == "tools" else top  # tools is a package: tools.x.y
    for path in sorted(top.rglob("*.py")):
        if "__pycache__" in path.parts or path.name.startswith("manifest"):
            continue  # MicroPython manifests are read by the firmware build, not imported
        yield module_name(base, path), path


def names_of_test_modules() -> set[str]:
    """Top-level names the tests' modules are imported under (pythonpath: tests, ...)."""
    names = {"tests", "conftest"}
    for path in TESTS.rglob("*.py"):
        names.add(path.stem)
    return names


def imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules `module` imports, resolved to our own modules where they are ours
    (`from pkg import sub` names the submodule when there is one); others as written."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = module.split(".")
                if not is_package:
                    pkg = pkg[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return {_ours(name, known) for name in out}


def _ours(name: str, known: set[str]) -> str:
    """The longest prefix of `name` that is one of our modules (else `name`)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in known:
            return prefix
    return name


def graph() -> tuple[dict[str, set[str]], dict[str, str]]:
    """module -> the modules it imports; module -> its tree (shared, firmware, ...)."""
    files: dict[str, Path] = {}
    tree_of: dict[str, str] = {}
    for tree in TREES:
        for name, path in sources(tree):
            files[name] = path
            tree_of[name] = tree
    known = set(files)
    return {m: imported(m, p, known) - {m} for m, p in files.items()}, tree_of


GRAPH, TREE_OF = graph()


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def imports_from(tree: str) -> set[tuple[str, str]]:
    return {(m, dep) for m, deps in GRAPH.items() if TREE_OF[m] == tree for dep in deps}


def test_the_graph_is_read() -> None:
    # The rules below are only as good as the graph: it must hold what we know is there.
    assert {"lorawire.frame", "loranode.node", "loragate.manager", "tools.meshsim.medium"} <= set(
        GRAPH
    )
    assert "loragate.connector" in GRAPH["loragate.manager"]
    assert "tools.meshsim.topology" in GRAPH["tools.meshsim.medium"]  # a relative import
    assert "lorawire.frame" in GRAPH["loragate.mesh.receive"]


def test_no_import_circle_anywhere() -> None:
    assert cycles(GRAPH) == []


def test_the_codec_imports_nothing_of_ours_but_itself() -> None:
    bad = {(m, d) for m, d in imports_from("shared") if d in TREE_OF and TREE_OF[d] != "shared"}
    assert bad == set()


def test_firmware_and_gateway_never_import_each_other() -> None:
    both = [("firmware", "gateway"), ("gateway", "firmware")]
    bad = {(m, d) for a, b in both for m, d in imports_from(a) if TREE_OF.get(d) == b}
    assert bad == set()


def test_the_product_never_imports_tools_or_tests() -> None:
    tests = names_of_test_modules()
    bad = set()
    for tree in ("shared", "firmware", "gateway"):
        for m, d in imports_from(tree):
            if TREE_OF.get(d) == "tools" or d.split(".")[0] in tests:
                bad.add((m, d))
    assert bad == set()


MANAGER_SIDE = {
    "loragate.manager",
    "loragate.connector",
    "loragate.handler",
    "loragate.maintainer",
    "loragate.peertable",
    "loragate.ownnode",
    "loragate.tuning",
}
ABOVE_THE_MANAGER = {
    "loragate.liveview",
    "loragate.view",
    "loragate.control",
    "loragate.runner",
    "loragate.cli",
    "loragate.discovery",
}


def test_the_mesh_wing_imports_nothing_above_it_and_only_the_runner_wires_it() -> None:
    wing = {m for m in GRAPH if m.startswith("loragate.mesh.") or m == "loragate.mesh"}
    up = {(m, d) for m in wing for d in GRAPH[m] if d in MANAGER_SIDE | ABOVE_THE_MANAGER}
    assert up == set()
    users = {m for m, deps in GRAPH.items() if m not in wing and deps & wing}
    assert users == {"loragate.runner"}


def test_the_manager_side_knows_no_view_socket_or_process() -> None:
    bad = {(m, d) for m in MANAGER_SIDE for d in GRAPH[m] if d in ABOVE_THE_MANAGER}
    assert bad == set()


def test_the_gateway_composes_parts_and_mixes_none_in() -> None:
    """No mixins: a gateway class has at most one base, and the only bases of our own
    are exceptions (the rest are the library's: Protocol, NamedTuple, Generic, ...)."""
    ours: set[str] = set()
    bases: dict[str, list[str]] = {}
    for name, path in sources("gateway"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                ours.add(node.name)
                bases[f"{name}.{node.name}"] = [ast.unparse(b).split("[")[0] for b in node.bases]
    assert len(bases) > 40  # the walk found the gateway's classes
    several = {cls: b for cls, b in bases.items() if len(b) > 1}
    inherited = {
        cls: b
        for cls, b in bases.items()
        for base in b
        if base in ours and not base.endswith("Error")
    }
    assert several == {} and inherited == {}
