"""Where environment names come from: built-ins, ``register_env``, ``@reward_env`` and entry points.

A third-party environment is an ordinary pip package that declares an entry point in the group
``rewardkit.envs``, named after the environment::

    [project.entry-points."rewardkit.envs"]
    my_env = "my_package.rewards:my_env"

The object it names is an ``Environment`` subclass, a factory returning an ``Environment``, a
function decorated with ``@rewardkit.reward_env``, or a plain reward function
``fn(completion, *, answer=None, prompt=None, info=None)`` (see ``ENV_KINDS``). Entry points are read when a name is first looked
up, not at import time, and they are keyed by the environment's name, never by module name, so two
packages with a ``rewards.py`` cannot collide.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rewardkit.config import suggest
from rewardkit.envs.base import Environment
from rewardkit.imports import import_object
from rewardkit.types import Completion, Score

ENTRY_POINT_GROUP = "rewardkit.envs"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")

# name -> "module:attribute". Loaded lazily so `import rewardkit` stays light.
BUILTIN_ENVS: dict[str, str] = {
    "math": "rewardkit.envs.math:MathEnv",
    "code": "rewardkit.envs.code:CodeEnv",
    "format": "rewardkit.envs.format:FormatEnv",
    "efficiency": "rewardkit.envs.efficiency:EfficiencyEnv",
    "weighted": "rewardkit.envs.composite:WeightedEnv",
    "tool_use": "rewardkit.envs.tool_use:ToolUseEnv",
    "function_call": "rewardkit.envs.function_call:FunctionCallEnv",
    "reward_model": "rewardkit.envs.reward_model:RewardModelEnv",
    "judge": "rewardkit.envs.judge:JudgeEnv",
    "harness": "rewardkit.envs.harness:HarnessEnv",
}

ENV_FAMILIES: dict[str, str] = {
    "reasoning_gym": "rewardkit.envs.adapters.reasoning_gym:load",
    "verifiers": "rewardkit.envs.adapters.verifiers:load",
    "openenv": "rewardkit.envs.adapters.openenv:load",
}
"""Environment families, named ``PREFIX:ARG`` (``reasoning_gym:leg_counting``): prefix -> "module:factory",
where ``factory(arg, **config)`` builds the environment. A family prefix wins over a module of that name
in ``module:attr`` names."""


@dataclass(frozen=True)
class EnvSpec:
    name: str
    target: Any
    """An Environment subclass, a factory callable, a ``RewardFunction``, or a "module:attr" string."""
    source: str
    """Where the name came from: ``rewardkit`` (built-in), a distribution name, or a module."""


_registry: dict[str, EnvSpec] = {}
_entry_points_loaded = False


def register_env(name: str, target: Any, *, source: str | None = None) -> None:
    """Register an environment under ``name``. A second, different registration of a name is an error."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"invalid environment name {name!r}: use letters, digits, '_', '-', '.'")
    if source is None:
        source = getattr(target, "__module__", None) or "unknown"
    existing = _registry.get(name) or _builtin_spec(name)
    if existing is not None:
        if not _same_target(existing.target, target):
            raise ValueError(
                f"environment name {name!r} is already registered by {existing.source}; choose another name"
            )
        if isinstance(existing.target, importlib.metadata.EntryPoint):
            source = existing.source  # a plugin's decorator ran on import: keep the distribution's name
    _registry[name] = EnvSpec(name, target, source)


def list_envs() -> list[str]:
    """Names of every environment that ``load_env`` can build (built-ins, registered, entry points)."""
    return sorted(env_specs())


def env_specs() -> dict[str, EnvSpec]:
    _load_entry_points()
    specs = {name: spec for name in BUILTIN_ENVS if (spec := _builtin_spec(name)) is not None}
    specs.update(_registry)
    return specs


def load_env(name: str, **config: Any) -> Environment:
    """Build the environment registered as ``name`` with its keyword ``config``.

    Raises ``KeyError`` for an unknown name (the message lists the known names and how to register
    one) and ``ValueError``/``TypeError`` for bad configuration.
    """
    family, sep, arg = name.partition(":")
    if sep and family in ENV_FAMILIES:
        return _family_env(name, family, arg, config)
    spec = _user_spec(name) if ":" in name else env_specs().get(name)
    if spec is None:
        known = ", ".join(list_envs()) or "(none)"
        raise KeyError(
            f"unknown environment {name!r}{suggest(name, list_envs())}. Known environments: {known}. "
            f"Name one in your own code as module:attr (my_rewards:shouty, or path/to/file.py:shouty), "
            f"import a module that registers it with --import MODULE, or register it with "
            f"rewardkit.register_env, the @rewardkit.reward_env decorator, or an entry point in the "
            f"'{ENTRY_POINT_GROUP}' group of your package's pyproject.toml."
        )
    try:
        factory = _resolve(spec.target)
    except (ImportError, AttributeError) as exc:  # say which plugin is broken, not just which module
        raise ImportError(f"environment {name!r} from {spec.source} cannot be imported: {exc}") from exc
    return _build(name, spec, factory, config)


def _family_env(name: str, family: str, arg: str, config: dict[str, Any]) -> Environment:
    """``PREFIX:ARG`` of a family in ``ENV_FAMILIES``: its factory called with ``ARG`` and the config."""
    if not arg:
        raise KeyError(
            f"environment {name!r}: the {family} family needs a name after the colon ({family}:NAME)"
        )
    module, _, attr = ENV_FAMILIES[family].partition(":")
    try:  # an installed module, imported as such (import_object would pickle a repo checkout's by value)
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"environment {name!r}: the {family} adapter cannot be imported: {exc}") from exc
    env = factory(arg, **config)
    if not isinstance(env, Environment):
        raise TypeError(f"the {family} adapter built a {type(env).__name__} for {name!r}, not an Environment")
    return env


# ---- @reward_env ----------------------------------------------------------------------------------
class FunctionEnv(Environment):
    """An environment made from a plain reward function ``fn(completion, *, answer, prompt, info)``."""

    def __init__(
        self,
        fn: Callable[..., Score | float],
        name: str,
        gold: list[dict[str, Any]] | None = None,
        **config: Any,
    ):
        super().__init__(**config)
        self.fn = fn
        self.name = name  # type: ignore[misc]  # per-instance name for function-made environments
        self._gold = list(gold or [])

    def verify(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Score | float:
        return self.fn(completion, answer=answer, prompt=prompt, info=info)

    def gold_examples(self) -> list[dict[str, Any]]:
        return list(self._gold)


class RewardFunction:
    """What ``@reward_env`` returns: still callable as the original function, plus ``.env(**config)``."""

    def __init__(
        self, fn: Callable[..., Score | float], name: str, gold: list[dict[str, Any]] | None
    ) -> None:
        _check_signature(fn)
        self.fn = fn
        self.name = name
        self.gold = gold
        self.__name__ = getattr(fn, "__name__", name)
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__

    def __call__(
        self, completion: Any, *, answer: Any = None, prompt: Any = None, info: Any = None
    ) -> Score | float:
        return self.fn(completion, answer=answer, prompt=prompt, info=info)

    def env(self, **config: Any) -> FunctionEnv:
        return FunctionEnv(self.fn, self.name, self.gold, **config)


def reward_env(
    name: str, *, gold: list[dict[str, Any]] | None = None, register: bool = True
) -> Callable[[Callable], RewardFunction]:
    """Turn ``fn(completion, *, answer=None, prompt=None, info=None) -> float | Score`` into an environment.

    Example::

        @rewardkit.reward_env(name="shouty")
        def shouty(completion, *, answer=None, prompt=None, info=None):
            return 1.0 if str(completion).isupper() else 0.0

        env = rewardkit.load_env("shouty")
    """

    def decorate(fn: Callable) -> RewardFunction:
        wrapped = RewardFunction(fn, name, gold)
        if register:
            register_env(name, wrapped, source=fn.__module__)
        return wrapped

    return decorate


def _check_signature(fn: Callable) -> None:
    params = inspect.signature(fn).parameters
    positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    has_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    missing = [k for k in ("answer", "prompt", "info") if k not in params and not has_kwargs]
    if not positional or missing:
        raise TypeError(
            f"a reward function must look like fn(completion, *, answer=None, prompt=None, info=None); "
            f"{getattr(fn, '__name__', fn)!r} is missing {['completion'] if not positional else missing}"
        )


# ---- resolution -----------------------------------------------------------------------------------
def _user_spec(name: str) -> EnvSpec:
    """``module:attr`` (or ``file.py:attr``): an environment in the user's own code, not registered."""
    return EnvSpec(name, name, name.rpartition(":")[0])


ENV_KINDS = (
    "a function decorated with @rewardkit.reward_env(name=...), a reward function "
    "fn(completion, *, answer=None, prompt=None, info=None) -> float | Score, an Environment subclass, "
    "or a factory that takes the config as keywords and returns an Environment"
)


def _build(name: str, spec: EnvSpec, factory: Any, config: dict[str, Any]) -> Environment:
    """The environment from what ``name`` resolved to: one of ``ENV_KINDS``, or a TypeError naming it."""
    if isinstance(factory, RewardFunction):
        return factory.env(**config)
    if _is_reward_function(factory):  # undecorated: the smallest plugin is still one function
        return FunctionEnv(factory, name, **config)
    where = f"environment {name!r} from {spec.source} names {_target_name(spec.target, factory)}"
    if not callable(factory):
        raise TypeError(f"{where}, a {type(factory).__name__}; it should be {ENV_KINDS}")
    if not inspect.isclass(factory):
        try:
            inspect.signature(factory).bind(**config)
        except TypeError as exc:  # e.g. fn(text): load_env passes only the config, as keywords
            raise TypeError(
                f"{where}, which cannot take the config as keywords ({exc}); it should be {ENV_KINDS}"
            ) from None
        except ValueError:  # no signature to check (a builtin): let the call say
            pass
    env = factory(**config)
    if not isinstance(env, Environment):
        raise TypeError(
            f"{where}, which built a {type(env).__name__}, not an Environment; it should be {ENV_KINDS}"
        )
    return env


def _is_reward_function(obj: Any) -> bool:
    """``fn(completion, *, answer, prompt, info)``: a required first argument and the three keywords by
    name (a factory takes only keywords, so it never has both)."""
    if inspect.isclass(obj) or not callable(obj):
        return False
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False
    first = next(iter(params.values()), None)
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = first is not None and first.kind in positional and first.default is first.empty
    return required and {"answer", "prompt", "info"} <= set(params)


def _target_name(target: Any, obj: Any) -> str:
    if isinstance(target, importlib.metadata.EntryPoint):
        return target.value
    if isinstance(target, str):
        return target
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


def _builtin_spec(name: str) -> EnvSpec | None:
    target = BUILTIN_ENVS.get(name)
    if target is None or importlib.util.find_spec(target.split(":")[0]) is None:
        return None  # a built-in whose module is not written yet is not listed
    return EnvSpec(name, target, "rewardkit")


def _resolve(target: Any) -> Any:
    if isinstance(target, str):
        return import_object(target, what="environment")
    if isinstance(target, importlib.metadata.EntryPoint):
        return target.load()
    return target


def _same_target(a: Any, b: Any) -> bool:
    """Re-registering the same object (e.g. a module imported twice) is not a conflict."""

    def ident(t: Any) -> str:
        if isinstance(t, str):
            return t
        if isinstance(t, importlib.metadata.EntryPoint):
            return t.value
        t = t.fn if isinstance(t, RewardFunction) else t
        return f"{getattr(t, '__module__', '')}:{getattr(t, '__qualname__', repr(t))}"

    def reexported(ep: Any, t: Any) -> bool:
        """An entry point may name an object through its package's re-export (``pkg:fn`` for
        ``pkg.rewards:fn``); importing the plugin then registers the object under its own module."""
        if not isinstance(ep, importlib.metadata.EntryPoint) or isinstance(t, importlib.metadata.EntryPoint):
            return False
        module, _, attr = ident(t).partition(":")
        return attr == ep.attr and module.split(".")[0] == ep.module.split(".")[0]

    return a is b or ident(a) == ident(b) or reexported(a, b) or reexported(b, a)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ep.module
        if ep.name in _registry and _registry[ep.name].source == dist:
            continue
        try:
            register_env(ep.name, ep, source=dist)
        except ValueError as exc:  # one clashing plugin must not break list_envs/load_env for all others
            warnings.warn(f"ignoring entry point {ep.name} = {ep.value} of {dist}: {exc}", stacklevel=3)


def refresh_entry_points() -> None:
    """Read entry points again (after a plugin package was installed in this process's lifetime)."""
    global _entry_points_loaded
    importlib.invalidate_caches()
    _entry_points_loaded = False
    _load_entry_points()
