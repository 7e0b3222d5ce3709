"""The package's layout is its pipeline: imports only point down the stages, and no stage uses another's
private names (README, "Architecture")."""

from __future__ import annotations

import ast
from pathlib import Path

FCLOOP = Path(__file__).resolve().parents[1] / "fcloop"
# Lower stages never import higher ones. The shared pieces sit below every stage, the commands above all.
STAGES = {"shared": 0, "data": 1, "model": 2, "evaluation": 3, "training": 4, "commands": 5}
SHARED = {"config", "errors", "hub", "hardware", "outputs"}
COMMANDS = {"train", "eval", "inspect", "export", "chat"}


def stage_of(module: str) -> str:
    """fcloop.data.readers -> "data"; fcloop.config -> "shared"; fcloop.train -> "commands"."""
    parts = module.split(".")
    if len(parts) > 2 or parts[1] in STAGES:
        return parts[1]
    return "shared" if parts[1] in SHARED else "commands" if parts[1] in COMMANDS else parts[1]


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every fcloop import in the file, inside functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fcloop"):
            if node.module == "fcloop":  # `from fcloop import hub`
                found += [(f"fcloop.{alias.name}", []) for alias in node.names]
            else:
                found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith("fcloop.")]
    return found


def modules() -> list[tuple[str, Path]]:
    return [
        (".".join(path.relative_to(FCLOOP.parent).with_suffix("").parts), path)
        for path in sorted(FCLOOP.rglob("*.py"))
        if path.name != "__init__.py"
    ]


def test_every_module_belongs_to_a_known_stage():
    unknown = {module for module, _ in modules() if stage_of(module) not in STAGES}
    assert unknown == set()


def test_imports_only_point_down_the_stages():
    upward = [
        f"{module} ({stage_of(module)}) imports {imported} ({stage_of(imported)})"
        for module, path in modules()
        for imported, _ in imports(path)
        if STAGES[stage_of(imported)] > STAGES[stage_of(module)]
    ]
    assert upward == []


def test_no_stage_imports_another_stages_private_names():
    private = [
        f"{module} imports {name} from {imported}"
        for module, path in modules()
        for imported, names in imports(path)
        for name in names
        if name.startswith("_") and stage_of(imported) != stage_of(module)
    ]
    assert private == []


def test_the_stage_map_would_see_an_upward_import(tmp_path):
    """The check itself can fail: a data module importing the loop is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from fcloop.training.loop import train\n")
    assert [stage_of(imported) for imported, _ in imports(bad)] == ["training"]
    assert STAGES["training"] > STAGES[stage_of("fcloop.data.bad")]
