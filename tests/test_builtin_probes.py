"""The CI gate of issue 19: every built-in environment ships at least 10 exploit probes, each within its
bound, covering several families, and docs/hacking.md names every family."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rewardkit.conformance import check_env
from rewardkit.envs.base import Environment
from rewardkit.envs.probes import Probe
from rewardkit.registry import BUILTIN_ENVS, load_env

MIN_PROBES = 10
NO_PROBES = {
    "reward_model": "a learned reward has no rule to attack: its holes depend on the trained model",
    "judge": "an LLM judge's holes depend on the judge model: there is no rule to attack",
}
"""Built-in environments exempt from the probe count, each with the reason (docs/hacking.md says it too)."""
WEIGHTED = {"components": {"math": 1.0, "format": 0.5}}
"""``weighted`` has no default components: the gate checks it as the demo composes it."""


def _env(name: str) -> Environment:
    return load_env(name, **WEIGHTED) if name == "weighted" else load_env(name)


# ---- the CI gate: every built-in environment --------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BUILTIN_ENVS))
def test_every_builtin_env_ships_probes_all_within_bounds(name):
    if name in NO_PROBES:
        assert _env_class_probes(name) == [], f"{name} now has probes: drop it from NO_PROBES"
        return
    env = _env(name)
    try:
        report = check_env(env)  # raises, naming the probe, when one is over its bound
        probes = env.exploit_probes()
    finally:
        env.close()
    assert report["probes"] >= MIN_PROBES, f"{name}: {report['probes']} probes, need {MIN_PROBES}"
    families = {p.family for p in probes}
    assert len(families) >= 3, f"{name}: probes cover only {sorted(families)}"
    assert all(p.why.strip() for p in probes)


def _env_class_probes(name: str) -> list[Probe]:
    """The probes of an environment that cannot be built without a trained model: the method must be
    the base class's (no probes) for the exemption to stand."""
    from rewardkit.imports import import_object

    cls = import_object(BUILTIN_ENVS[name], what="environment")
    return (
        [] if cls.exploit_probes is Environment.exploit_probes else [Probe("x", "x", {"completion": ""}, "x")]
    )


def test_docs_hacking_covers_every_builtin_env_and_family():
    text = (Path(__file__).resolve().parents[1] / "docs" / "hacking.md").read_text()
    for name in sorted(set(BUILTIN_ENVS) - set(NO_PROBES)):
        assert f"## {name}" in text, f"docs/hacking.md has no section for {name}"
        env = _env(name)
        missing = sorted({p.family for p in env.exploit_probes()} - set(_words(text)))
        env.close()
        assert not missing, f"docs/hacking.md does not name {name}'s probe families {missing}"
    for name in NO_PROBES:
        assert name in text


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9][a-z0-9_\-]*", text))


def test_the_probe_example_in_docs_hacking_runs():
    import subprocess
    import sys

    text = (Path(__file__).resolve().parents[1] / "docs" / "hacking.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)[:1]
    done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'probes': 2" in done.stdout
