"""``check_env``: built-ins pass it, and each kind of broken environment is caught with a clear reason.

(math, code and tool_use are checked in their own test files by their owners.)
"""

from __future__ import annotations

import threading

import pytest

from rewardkit import EnvCheckError, Environment, Score, Task, check_env, load_env


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("format", {}),
        ("format", {"strict": False, "allow_text_outside": False}),
        ("efficiency", {}),
        ("efficiency", {"length_penalty": "soft_overlong", "max_length": 64}),
        ("weighted", {"components": {"format": 1.0}}),
    ],
)
def test_builtins_pass(name, config):
    with load_env(name, **config) as env:
        report = check_env(env)
    assert report["name"] == env.name and report["gold_examples"] >= 1


class Good(Environment):
    name = "good"

    def __init__(self, **config):
        super().__init__(executor="inline", **config)

    def verify(self, completion, *, answer, prompt, info):
        return Score.ok(float(completion == answer))

    def gold_examples(self):
        return [{"completion": "yes", "answer": "yes"}]

    def tasks(self, split="train"):
        return [Task(prompt=f"say yes {i}", answer="yes") for i in range(7)]


def test_a_good_custom_env_passes_and_reports():
    assert check_env(Good()) == {"name": "good", "gold_examples": 1, "tasks_checked": 5, "probes": 0}


def _problems(env: Environment, **kwargs) -> str:
    with pytest.raises(EnvCheckError) as err:
        check_env(env, **kwargs)
    return str(err.value)


def test_not_an_environment():
    with pytest.raises(EnvCheckError, match="not a rewardkit.Environment"):
        check_env(object())  # type: ignore[arg-type]


def test_missing_verify_and_name():
    class Empty(Environment):
        def gold_examples(self):
            return [{"completion": "x"}]

    message = _problems(Empty(executor="inline"))
    assert "env.name must be a non-empty string" in message
    assert "verify() is not implemented" in message
    assert "gold example 0" in message  # the base verify raises: the gold example errors


def test_gold_example_below_threshold():
    class Wrong(Good):
        def gold_examples(self):
            return [{"completion": "yes", "answer": "yes"}, {"completion": "no", "answer": "yes"}]

    message = _problems(Wrong())
    assert "gold example 1 scored 0.0" in message and "gold example 0" not in message


def test_no_gold_examples():
    class NoGold(Good):
        def gold_examples(self):
            return []

    assert "gold_examples() is empty" in _problems(NoGold())
    check_env(NoGold(), require_gold=False)


def test_unpicklable_env():
    class HoldsALock(Good):
        def __init__(self):
            super().__init__()
            self.lock = threading.Lock()

    assert "cannot be pickled" in _problems(HoldsALock())


def test_env_that_scores_bad_input_as_ok():
    class Lenient(Good):
        """Overrides score_batch and lets garbage through: exactly what check_env must catch."""

        def score_batch(self, samples):
            return [
                Score.ok(0.0)
                if not isinstance(s["completion"], str) or s["completion"] != "yes"
                else Score.ok(1.0)
                for s in samples
            ]

    message = _problems(Lenient())
    assert "bad input None gave status ok" in message and "b'bytes'" in message


def test_tasks_that_are_not_tasks():
    class BadTasks(Good):
        def tasks(self, split="train"):
            return [{"prompt": "a dict, not a Task"}]

    class BrokenTasks(Good):
        def tasks(self, split="train"):
            raise OSError("dataset file missing")

    assert "yielded a dict, not a Task" in _problems(BadTasks())
    assert "tasks('train') raised OSError: dataset file missing" in _problems(BrokenTasks())


def test_every_problem_is_listed_at_once():
    class Everything(Environment):
        lock = None

        def __init__(self):
            super().__init__(executor="inline")
            self.lock = threading.Lock()

        def tasks(self, split="train"):
            return [1]

    lines = [
        line for line in _problems(Everything(), require_gold=True).splitlines() if line.startswith("- ")
    ]
    assert len(lines) >= 5  # name, verify, pickling, gold, tasks
