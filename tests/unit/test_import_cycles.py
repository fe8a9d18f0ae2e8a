"""No import cycles in the package, not even hidden ones.

Every ``reliability_center`` import of every module counts: at the top, inside a function
(a "lazy" import that only postpones the cycle) and under ``TYPE_CHECKING`` (a cycle the type
checker still walks, and the sign of two modules reaching into each other). ``from pkg import
name`` counts as an import of ``pkg.name`` when that is a module, else of ``pkg`` itself.
"""

import ast
import graphlib
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[2] / "src" / "reliability_center"
ROOT = "reliability_center"


def sources(pkg: pathlib.Path = PKG) -> dict[str, tuple[str, bool]]:
    """Every module of the package: its dotted name → (its source, whether it is a package's __init__)."""
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
        init = parts[-1] == "__init__"
        out[".".join(parts[:-1] if init else parts)] = (path.read_text(), init)
    return out


def import_graph(modules: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module → the package's modules it imports (anywhere in its body)."""
    graph: dict[str, set[str]] = {}
    for name, (source, init) in modules.items():
        package = name if init else name.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package, up level - 1
                    up = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                for alias in node.names:
                    child = f"{base}.{alias.name}" if base else alias.name
                    imported.add(child if child in modules else base)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of the graph, in import order, its first module last again ([] when there is none)."""
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return list(reversed(exc.args[1]))  # graphlib lists it from importer to imported
    return []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles of the graph, each found with the edge that closed the one before it removed:
    every cycle there is has at least one of them in it."""
    graph = {name: set(imported) for name, imported in graph.items()}
    found = []
    while one := cycle(graph):
        found.append(one)
        graph[one[-2]].discard(one[-1])
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph(sources())
    assert len(graph) > 50, "the walk found the package's modules"
    found = cycles(graph)
    assert found == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_check_sees_a_cycle_hidden_behind_type_checking_or_a_lazy_import():
    """The detector itself, on made-up modules: each kind of hidden cycle is found, and a clean graph passes."""
    hidden = {"p": ("", True),
              "p.runner": ("from p import governance\n", False),
              "p.governance": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.runner import Turn\n",
                               False)}
    lazy = {"p": ("", True),
            "p.main": ("from p.get import describe\n", False),
            "p.get": ("def f():\n    from p.main import lines\n", False)}
    relative = {"p": ("", True), "p.r": ("", False), "p.q": ("", True), "p.q.sibling": ("", False),
                "p.q.child": ("from .. import r\nfrom . import sibling\nfrom .sibling import x\n", False)}
    package_back = {"p": ("", True), "p.f": ("X = 1\nfrom p.f import g\n", True),
                    "p.f.g": ("from p import f\n", False)}
    three = {"p": ("", True), "p.a": ("import p.b\n", False), "p.b": ("from p import c\n", False),
             "p.c": ("def f():\n    import p.a\n", False), "p.d": ("import p.a\n", False)}
    clean = {"p": ("", True), "p.a": ("from p import b\n", False), "p.b": ("import json\n", False)}
    assert sorted(set(cycle(import_graph(hidden)))) == ["p.governance", "p.runner"]
    assert sorted(set(cycle(import_graph(lazy)))) == ["p.get", "p.main"]
    assert import_graph(relative)["p.q.child"] == {"p.r", "p.q.sibling"}
    assert sorted(set(cycle(import_graph(package_back)))) == ["p.f", "p.f.g"]
    [found] = cycles(import_graph(three))  # p.d imports into the cycle but is not in it
    assert set(found) == {"p.a", "p.b", "p.c"} and found[0] == found[-1]
    assert all(after in import_graph(three)[before] for before, after in zip(found, found[1:]))
    assert cycles(import_graph(clean)) == []
