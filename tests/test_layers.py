"""The package layout is the architecture: imports run one way between the stages, and never in a circle.

    shared (errors, fileio, progress, processes, memory)  <-  data, models  <-  training, inference  <-  demo  <-  animegan_cli

Stages on one level never import each other (training and inference share only what lives in models/
and data/). A lazy import inside a function still counts for the direction; circles are looked for among
imports run when a module is imported (module level, TYPE_CHECKING blocks included).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pipelines"

SHARED = {"pipelines", "pipelines.errors", "pipelines.fileio", "pipelines.progress", "pipelines.processes", "pipelines.memory"}
# stage -> the stages its modules may import (besides their own and the shared helpers)
ALLOWED: dict[str, set[str]] = {
    "shared": set(),
    "data": set(),
    "models": set(),
    "evaluation": {"data", "models"},
    "training": {"data", "models", "evaluation"},
    "inference": {"data", "models"},
    "top": {"data", "models", "evaluation", "training", "inference"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}


def stage(mod: str) -> str:
    if mod in SHARED:
        return "shared"
    parts = mod.split(".")
    if len(parts) >= 2 and parts[1] in ALLOWED and (ROOT / "pipelines" / parts[1]).is_dir():
        return parts[1]
    return "top"  # pipelines.demo and other entry points that tie the stages together


def imports(mod: str) -> list[tuple[str, bool]]:
    """(imported pipelines module, at import time?) for every import statement of `mod`."""
    path = MODULES[mod]
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: list[tuple[str, bool]] = []

    def resolve(node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node: ast.AST, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, eager) for a in child.names if a.name.split(".")[0] == "pipelines")
            elif isinstance(child, ast.ImportFrom):
                target = resolve(child)
                if target.split(".")[0] != "pipelines":
                    continue
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    found.append((sub if sub in MODULES else target, eager))
            visit(child, eager)

    visit(tree, True)
    return found


def test_every_module_has_a_stage():
    assert {"data", "models", "training", "inference"} <= {stage(m) for m in MODULES}


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_imports_run_one_way(mod):
    own = stage(mod)
    wrong = sorted({target for target, _ in imports(mod)
                    if stage(target) not in {own, "shared"} | ALLOWED[own]})
    assert wrong == [], f"{mod} ({own}) must not import {wrong}"


def find_circle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in graph.get(m, []):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (found := dfs(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := dfs(m)):
            return found
    return None


def test_no_import_circles():
    graph = {m: sorted({t for t, eager in imports(m) if eager and t in MODULES and t != m}) for m in MODULES}
    circle = find_circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_checker_catches_what_it_is_for(tmp_path, monkeypatch):
    """A planted wrong-way import, a TYPE_CHECKING circle and a lazy import are each seen as such."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "from ..training import loop\n"
        "if TYPE_CHECKING:\n    from .manifest import Dataset\n"
        "def later():\n    from ..inference.stylize import stylize\n"
    )
    monkeypatch.setitem(MODULES, "pipelines.data.probe", probe)
    got = dict(imports("pipelines.data.probe"))
    assert got == {"pipelines.training.loop": True, "pipelines.data.manifest": True,
                   "pipelines.inference.stylize": False}
    assert [t for t in got if stage(t) not in ALLOWED["data"] | {"data", "shared"}] == \
        ["pipelines.training.loop", "pipelines.inference.stylize"]
    assert find_circle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_circle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None
