"""The package's shape: arrows point down the stages, and no module imports itself back through others.

Every `import` counts, the ones inside functions too (a lazy import is still an arrow). The order is the one
workbench/__init__.py documents; a module may import its own package and any package below it.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "workbench"
ORDER = ["cli", "train", "export", "schedule", "evaluate", "scale", "model", "recipe", "moe", "data", "track", "base"]
BASE = {"errors", "files", "paths", "console"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return "base" if len(parts) == 1 or parts[1] in BASE else parts[1]


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py") if "sandboxed" not in p.parts}


def imports(path: Path, known: set[str]) -> set[str]:
    """The workbench modules `path` imports (a `from package import name` counts `package.name` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "workbench":
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "workbench"}
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, set(known)) - {name} for name, path in known.items()}


def upward_arrows(edges: dict[str, set[str]]) -> list[str]:
    wrong = []
    for source, targets in edges.items():
        for target in targets:
            here, there = package_of(source), package_of(target)
            if there != here and ORDER.index(there) < ORDER.index(here):
                wrong.append(f"{source} ({here}) imports {target} ({there}), a package above it")
    return sorted(wrong)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_package_is_placed():
    packages = {package_of(name) for name in modules()}
    assert packages <= set(ORDER), f"packages missing from ORDER: {packages - set(ORDER)}"


def test_arrows_point_down():
    assert upward_arrows(graph()) == []


def test_no_import_circles():
    assert circles(graph()) == []


def test_the_checks_see_a_planted_arrow_and_circle():
    """The checks themselves can fail: an upward arrow and a two-module circle planted into the real graph."""
    edges = graph()
    edges["workbench.track.tracker"] = edges["workbench.track.tracker"] | {"workbench.train.build"}
    assert any("workbench.track.tracker (track) imports workbench.train.build" in line for line in upward_arrows(edges))
    assert circles(edges), "track.tracker -> train.build -> ... -> track.tracker is a circle"


@pytest.mark.parametrize("package", [p for p in ORDER if p not in ("cli", "base")])
def test_each_package_says_what_it_holds_and_may_import(package):
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8")))
    assert doc and "May import" in doc or "may import" in (doc or "").lower(), f"workbench/{package}/__init__.py"


def test_files_stay_small():
    """House style: files under ~400 lines (split along their seams past that)."""
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 420}
    assert long == {}
