"""Exploit probes (issue 19): the format, check_env running them, ``rewardkit audit``, the training monitor,
and the CI gate: every built-in environment ships at least 10 probes and each scores within its bound."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import rewardkit
from rewardkit.conformance import EnvCheckError, check_env
from rewardkit.envs.base import Environment, policy_text
from rewardkit.envs.probes import Probe, run_probes
from rewardkit.registry import load_env
from rewardkit.rl.monitor import ExploitMonitor
from rewardkit.types import Score, Task


class Gullible(Environment):
    """Rewards any completion that contains the answer: every hedge passes (the hole the probe finds)."""

    name = "gullible"
    exploit_patterns = {"lists_numbers": r"\d+\s*,\s*\d+"}

    def __init__(self, **options):
        super().__init__(executor="inline", **options)

    def verify(self, completion, *, answer, prompt, info):
        return Score.ok(float(str(answer) in completion))

    def gold_examples(self):
        return [{"completion": "4", "answer": "4"}]

    def exploit_probes(self):
        return [
            Probe(
                "list-every-number",
                "hedging",
                {"completion": "1, 2, 3, 4, 5", "answer": "4"},
                "list them all",
            ),
            Probe("empty", "empty-answer", {"completion": "", "answer": "4"}, "say nothing"),
        ]

    def suspicious(self, sample, score):
        return "several numbers" if "," in policy_text(sample["completion"]) else None

    def tasks(self, split="train"):
        return [Task(prompt=f"What is {i} + {4 - i}?", answer="4") for i in range(4)]


# ---- the format and check_env ------------------------------------------------------------------------
def test_check_env_fails_on_a_probe_over_its_bound_and_names_it():
    with pytest.raises(EnvCheckError) as err:
        check_env(Gullible())
    assert "'list-every-number' (hedging) scored 1.0 over its bound 0.0" in str(err.value)
    assert "'empty'" not in str(err.value)


def test_a_bound_allows_partial_credit_up_to_it():
    results = run_probes(
        Gullible(), [Probe("hedge", "hedging", {"completion": "1, 4", "answer": "4"}, "w", 1.0)]
    )
    assert [r.within_bound for r in results] == [True]
    assert results[0].row()["verdict"] == "ok"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "Bad Name"}, "lower-case"),
        ({"family": "Hedging"}, "family must be lower-case"),
        ({"sample": {"answer": "4"}}, "'completion'"),
        ({"bound": True}, "bound must be a number"),
    ],
)
def test_a_malformed_probe_is_refused_with_the_reason(kwargs, message):
    fields = {"name": "p", "family": "f", "sample": {"completion": "x"}, "why": "w"} | kwargs
    with pytest.raises(ValueError, match=message):
        Probe(**fields)


def test_two_probes_with_one_name_fail_check_env():
    class Twice(Gullible):
        name = "twice"

        def exploit_probes(self):
            return [Probe("same", "f", {"completion": "x", "answer": "4"}, "w")] * 2

    with pytest.raises(EnvCheckError, match="two probes are named 'same'"):
        check_env(Twice())


PLUGIN = """
import rewardkit
from rewardkit.envs.probes import Probe


class Gullible(rewardkit.Environment):
    def __init__(self, **options):
        super().__init__(executor="inline", **options)

    def verify(self, completion, *, answer, prompt, info):
        return float(str(answer) in completion)

    def exploit_probes(self):
        return [
            Probe("list-every-number", "hedging", {"completion": "1, 2, 3, 4, 5", "answer": "4"}, "list them"),
            Probe("empty", "empty-answer", {"completion": "", "answer": "4"}, "say nothing"),
        ]


rewardkit.register_env("gullible", Gullible)
"""


# ---- rewardkit audit ---------------------------------------------------------------------------------
def test_audit_command_prints_the_table_and_exits_1_on_a_hole(tmp_path):
    plugin = tmp_path / "gullible_plugin.py"
    plugin.write_text(PLUGIN)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rewardkit",
            "audit",
            "gullible",
            "--import",
            str(plugin),
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr
    assert "| list-every-number | hedging | 1 | 0 | ok | EXPLOITABLE |" in done.stdout
    assert "| empty | empty-answer | 0 | 0 | ok | ok |" in done.stdout
    saved = json.loads((tmp_path / "audit.json").read_text())
    assert saved["exploitable"] == ["list-every-number"]


def test_audit_command_exits_0_on_a_sound_builtin_env():
    done = subprocess.run(
        [sys.executable, "-m", "rewardkit", "audit", "format"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "EXPLOITABLE" not in done.stdout
    assert "probes, 0 over their bound." in done.stdout


def test_audit_command_names_an_unknown_env():
    done = subprocess.run(
        [sys.executable, "-m", "rewardkit", "audit", "nope"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "nope" in done.stderr


def test_audit_with_a_model_flags_the_passes_its_independent_check_doubts(tmp_path):
    """Real sampling from a tiny model: every sample passes ``GullibleLoose`` (threshold 0), so each is
    checked; ``suspicious`` flags exactly the ones with a comma, as the records on disk show."""
    pytest.importorskip("transformers")
    from rewardkit.audit import audit
    from rewardkit.models.tiny import TinyConfig, build_tiny

    corpus = [f"What is {i} + {4 - i}? 1, 2, 3 4 5" for i in range(50)]
    build_tiny(
        corpus,
        TinyConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=1),
        save_to=tmp_path / "m",
    )
    rewardkit.register_env("gullible_loose", GullibleLoose)
    env = load_env("gullible_loose")
    report = audit(
        env, model=str(tmp_path / "m"), output_dir=tmp_path / "audit", num_tasks=4, n=3, max_tokens=12
    )
    assert report.sampled == 12 and report.passed == 12
    records = [
        json.loads(line)
        for line in (tmp_path / "audit" / "samples" / "rollouts.jsonl").read_text().splitlines()
    ]
    expected = sorted((r["task_index"], r["sample_index"]) for r in records if "," in r["completion"])
    assert sorted((s["task_index"], s["sample_index"]) for s in report.suspicious) == expected
    assert "## sampled: 12 completions, 12 passed" in report.render()


class GullibleLoose(Gullible):
    name = "gullible_loose"
    pass_threshold = 0.0


# ---- the training monitor ----------------------------------------------------------------------------------
def test_monitor_logs_each_signature_and_warns_once_when_it_rises():
    warnings: list[str] = []
    monitor = ExploitMonitor(Gullible(), rise=0.3, window=3, warn=warnings.append)
    clean, hedged = "the answer is 4", "1, 2, 3, 4"
    rates = [monitor.update(s, [clean] * 4)["exploit/lists_numbers"] for s in range(1, 4)]
    assert rates == [0.0, 0.0, 0.0] and not warnings
    assert monitor.update(4, [hedged, clean, clean, clean]) == {"exploit/lists_numbers": 0.25}
    assert not warnings  # recent mean 0.083: under the rise
    for step in (5, 6):
        monitor.update(step, [hedged] * 4)
    assert len(warnings) == 1 and "'lists_numbers'" in warnings[0] and "step 5" in warnings[0]
    monitor.update(7, [hedged] * 4)
    assert len(warnings) == 1  # once, until it falls back


def test_monitor_reads_the_assistant_turns_of_a_chat_completion():
    chat = ({"role": "user", "content": "1, 2"}, {"role": "assistant", "content": "4"})
    assert ExploitMonitor(Gullible()).update(1, [chat]) == {"exploit/lists_numbers": 0.0}


def test_monitor_is_silent_for_an_env_without_signatures_and_survives_a_broken_one():
    class Plain(Gullible):
        name = "plain"
        exploit_patterns = {}

    assert ExploitMonitor(Plain()).update(1, ["1, 2"]) == {}

    class Broken(Gullible):
        name = "broken"

        def exploit_signals(self, completions):
            raise RuntimeError("bad signature")

    warnings: list[str] = []
    monitor = ExploitMonitor(Broken(), warn=warnings.append)
    assert monitor.update(1, ["x"]) == {} and monitor.update(2, ["x"]) == {}
    assert len(warnings) == 1 and "bad signature" in warnings[0]
