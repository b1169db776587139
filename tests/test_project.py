"""Project-level promises: the CLI reference matches the code, and the layering holds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def generated_cli_docs() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "typer", "animegan_cli.app", "utils", "docs", "--name", "animegan"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    return out.stdout


def test_cli_reference_is_current():
    """docs/cli.md is generated from the code: regenerate it with the command below when this fails.

    python -m typer animegan_cli.app utils docs --name animegan --output docs/cli.md
    """
    assert (ROOT / "docs" / "cli.md").read_text().rstrip() == generated_cli_docs().rstrip()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_pipelines_never_import_the_cli_or_console_libraries():
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & {"typer", "rich", "animegan_cli", "click"})
        for p in (ROOT / "pipelines").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_weights_are_never_unpickled_unsafely():
    """Every torch.load in the code base passes weights_only=True."""
    for p in list((ROOT / "pipelines").rglob("*.py")) + list((ROOT / "animegan_cli").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and \
                    getattr(getattr(node.func, "value", None), "id", None) == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kw and getattr(kw["weights_only"], "value", None) is True, f"{p}:{node.lineno}"
