"""config/ is a leaf: no module in it imports from the layers above it (they hand their registries in)."""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline

CONFIG = Path(pipeline.__file__).parent / "config"
ABOVE = ("stages", "datasets", "scoring", "engine", "text")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (top level, inside functions, under TYPE_CHECKING alike)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module == "pipeline":  # `from pipeline import stages`
                out += [(node.lineno, f"pipeline.{a.name}") for a in node.names]
    return out


def upward_imports(folder: Path) -> list[str]:
    return [
        f"{p.name}:{line} imports {mod}"
        for p in sorted(folder.glob("*.py"))
        for line, mod in _imports(p)
        if any(mod == f"pipeline.{a}" or mod.startswith(f"pipeline.{a}.") for a in ABOVE)
    ]


def test_config_imports_nothing_above_it() -> None:
    assert sorted(p.name for p in CONFIG.glob("*.py")), "no config modules found"
    assert upward_imports(CONFIG) == []


def test_the_check_sees_every_import_form(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "import pipeline.stages\n"
        "def f():\n    from pipeline.datasets import DATASETS\n"
        "from pipeline import scoring\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pipeline.engine.protocol import Pool\n"
        "from pipeline.errors import UserError\n"
    )
    assert sorted(s.split(" imports ")[1] for s in upward_imports(tmp_path)) == [
        "pipeline.datasets",
        "pipeline.engine.protocol",
        "pipeline.scoring",
        "pipeline.stages",
    ]
