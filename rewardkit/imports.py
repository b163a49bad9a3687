"""Importing the user's own code by name: ``--import MODULE``, ``env: module:attr``, ``tasks: module:function``.

A module is a dotted name importable from the current directory (as with ``python -m``; the
``rewardkit`` console script does not put the current directory on ``sys.path`` by itself) or a path to
a ``.py`` file. Modules found in the current directory or loaded from a file are pickled *by value*
(``cloudpickle.register_pickle_by_value``), so the scoring runtime's worker processes, which do not
import them, still receive their reward functions.

Standard library and cloudpickle, nothing of rewardkit's: every layer may use it.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["add_import_argument", "import_module", "import_modules", "import_object"]


def import_module(spec: str, *, what: str = "import") -> ModuleType:
    """The module ``spec`` names (a dotted name or a ``.py`` path); ImportError saying what was tried."""
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        return _from_file(Path(spec).expanduser(), what)
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)  # after site-packages: a local file never shadows an installed module
    try:
        module = importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and spec.startswith(exc.name):  # the module itself, not one it imports
            raise ImportError(
                f"{what}: no module named {spec!r} (looked in the current directory {cwd} and the installed "
                "packages; give a .py path, or pip install the package)"
            ) from exc
        raise
    _by_value_if_local(module, cwd)
    return module


def import_object(spec: str, *, what: str) -> Any:
    """The object ``module:attr`` names (``module`` as in :func:`import_module`)."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what}: expected module:name, got {spec!r}")
    module = import_module(module_name, what=what)
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in vars(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, names, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (it has: {', '.join(sorted(names)[:20])})"
        raise ImportError(
            f"{what}: cannot import {spec!r}: module {module_name!r} has no attribute {attr!r}{hint}"
        ) from None


def _from_file(path: Path, what: str) -> ModuleType:
    if not path.is_file():
        raise ImportError(f"{what}: no such file {str(path)!r} (cwd: {os.getcwd()})")
    name = f"rewardkit_user_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"{what}: cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    _by_value(module)
    return module


def _by_value_if_local(module: ModuleType, cwd: str) -> None:
    """The user's own module (under the current directory) travels to workers by value; rewardkit's own
    modules never do, even from a checkout in the current directory: workers import them, and by value
    would drag their module globals (locks, caches) into every pickle."""
    file = getattr(module, "__file__", None)
    ours = module.__name__ == "rewardkit" or module.__name__.startswith("rewardkit.")
    if (
        file
        and not ours
        and os.path.abspath(file).startswith(os.path.join(cwd, ""))
        and "site-packages" not in file
    ):
        _by_value(module)


def _by_value(module: ModuleType) -> None:
    import cloudpickle

    try:
        cloudpickle.register_pickle_by_value(module)
    except ValueError:  # a module cloudpickle cannot track (already registered or not in sys.modules)
        pass


def add_import_argument(parser: Any) -> None:
    """``--import MODULE`` (repeatable) on an argparse parser: the user's modules, imported before the run."""
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module (dotted name from the current directory, or a .py path) first, so the "
        "environments it registers with @rewardkit.reward_env can be named; repeatable",
    )


def import_modules(modules: Any, *, what: str = "--import") -> None:
    """Import each of ``modules`` (see :func:`import_module`)."""
    for module in modules or ():
        import_module(module, what=what)
