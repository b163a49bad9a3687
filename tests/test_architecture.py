"""The package's layering, as docs/architecture.md states it: a module imports only what stands below it.

Lowest first: types/config/inputs/imports/console -> verifiers -> sandbox, tools, data -> scoring, interop -> models,
generation -> envs (with the registry and check_env) -> rl, eval, audit -> demo, pipeline -> cli. Imports inside
functions count (a lazy import is still a dependency); ``if TYPE_CHECKING`` blocks do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rewardkit"

LAYERS: list[tuple[str, ...]] = [
    ("types", "config", "inputs", "imports", "console"),
    ("verifiers",),
    ("sandbox", "tools", "data", "ray_pool"),
    ("scoring", "interop"),
    ("models", "generation"),
    ("envs", "registry", "conformance", "serve"),
    ("rl", "eval", "audit"),
    ("demo", "pipeline"),
    ("cli", "__main__", "__init__"),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _part(module: str) -> str:
    """``rewardkit.envs.math`` -> ``envs``; the package's own ``__init__`` is ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rewardkit.")}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("rewardkit")
        ):
            found.add(node.module)
    return found


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return (
        ".".join(p for p in rel.parts if p != "__init__") if rel.name == "__init__" else ".".join(rel.parts)
    )


def test_every_top_level_module_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    names -= {"__pycache__", "examples", "suites"}
    assert names <= set(RANK), (
        f"give these a layer in LAYERS and docs/architecture.md: {sorted(names - set(RANK))}"
    )


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _module(path)
        if here == "rewardkit":
            continue  # the package root re-exports the public API from every layer
        for target in _imports(path):
            if target == "rewardkit":
                upward.append(f"{here} imports the package root")
            elif RANK[_part(target)] > RANK[_part(here)]:
                upward.append(
                    f"{here} (layer {RANK[_part(here)]}) imports {target} (layer {RANK[_part(target)]})"
                )
    assert not upward, "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The test above can fail: a lazy import of the trainer from an environment is caught."""
    fake = tmp_path / "rewardkit" / "envs" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from rewardkit.rl.trainer import train\n")
    assert _imports(fake) == {"rewardkit.rl.trainer"}
    assert RANK[_part("rewardkit.rl.trainer")] > RANK[_part("rewardkit.envs.bad")]
