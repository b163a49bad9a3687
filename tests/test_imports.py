"""Environments in the user's own code, named from the CLI: ``module:attr``, ``file.py:attr``, ``--import``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import rewardkit
from rewardkit.cli import main

CLASS_ENV = textwrap.dedent(
    """
    import rewardkit

    class Loud(rewardkit.Environment):
        name = "loud_class"

        def verify(self, completion, *, answer, prompt, info):
            return 1.0 if str(completion).isupper() else 0.0
    """
)

DECORATED = textwrap.dedent(
    """
    import rewardkit

    @rewardkit.reward_env(name="shouty_{tag}")
    def shouty(completion, *, answer=None, prompt=None, info=None):
        return 1.0 if str(completion).isupper() else 0.0
    """
)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A fresh current directory, with sys.path restored afterwards (each test's module names are its own)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


def test_a_class_in_a_py_file_scores_in_worker_processes(user_dir):
    # The file's module has a made-up name no worker can import: it must travel by value.
    (user_dir / "loud.py").write_text(CLASS_ENV)
    with rewardkit.load_env("./loud.py:Loud") as env:
        assert env.scoring.executor == "process"
        scores = env.score_batch([{"completion": "HEY"}, {"completion": "hey"}])
    assert [(s.reward, s.info["status"]) for s in scores] == [(1.0, "ok"), (0.0, "ok")]


def test_a_module_in_the_current_directory_by_dotted_name(user_dir):
    (user_dir / "my_rewards_a.py").write_text(DECORATED.format(tag="a"))
    with rewardkit.load_env("my_rewards_a:shouty") as env:
        assert env.score("HEY").reward == 1.0


def test_errors_name_what_is_missing(user_dir):
    (user_dir / "my_rewards_b.py").write_text(DECORATED.format(tag="b"))
    with pytest.raises(ImportError, match="has no attribute 'shoty'.*did you mean 'shouty'"):
        rewardkit.load_env("my_rewards_b:shoty")
    with pytest.raises(ImportError, match="no module named 'nope_rewards'"):
        rewardkit.load_env("nope_rewards:x")
    with pytest.raises(ImportError, match="no such file"):
        rewardkit.load_env("./missing.py:x")
    with pytest.raises(KeyError, match=r"module:attr .*--import MODULE"):
        rewardkit.load_env("not_registered_anywhere")


def test_score_cli_with_module_attr_and_with_import(user_dir, capsys):
    (user_dir / "my_rewards_c.py").write_text(DECORATED.format(tag="c"))
    (user_dir / "in.jsonl").write_text('{"completion": "HEY"}\n{"completion": "hey"}\n')
    assert main(["score", "my_rewards_c:shouty", "-i", "in.jsonl", "-o", "out1.jsonl", "-q"]) == 0
    assert (
        main(["score", "shouty_c", "--import", "my_rewards_c", "-i", "in.jsonl", "-o", "out2.jsonl", "-q"])
        == 0
    )
    for out in ("out1.jsonl", "out2.jsonl"):
        rows = [json.loads(x) for x in (user_dir / out).read_text().splitlines()]
        assert [(r["reward"], r["status"]) for r in rows] == [(1.0, "ok"), (0.0, "ok")]
    assert main(["score", "my_rewards_c:nothing", "-i", "in.jsonl", "-o", "out3.jsonl", "-q"]) == 2
    assert "has no attribute 'nothing'" in capsys.readouterr().err


def test_the_console_script_finds_modules_in_the_current_directory(tmp_path):
    # `rewardkit` (the console script) does not put the current directory on sys.path by itself.
    (tmp_path / "my_rewards_d.py").write_text(DECORATED.format(tag="d"))
    (tmp_path / "in.jsonl").write_text('{"completion": "HEY"}\n')
    script = [
        sys.executable,
        "-c",
        "import sys; sys.path.pop(0); from rewardkit.cli import main; sys.exit(main())",
    ]
    proc = subprocess.run(
        [*script, "score", "shouty_d", "--import", "my_rewards_d", "-i", "in.jsonl", "-o", "-", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[0])["reward"] == 1.0


def test_rewardkits_own_modules_are_never_pickled_by_value_from_a_checkout(monkeypatch):
    """From the repo root (an editable install), ``import_module`` used to register rewardkit's own modules
    for pickling by value, so a module-level lock in one of them broke every environment's pickle."""
    import threading
    from pathlib import Path

    import cloudpickle

    from rewardkit.imports import import_module

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    module = import_module("rewardkit.envs.math", what="test")
    monkeypatch.setattr(module, "_test_lock", threading.Lock(), raising=False)  # unpicklable module state
    assert module.__name__ not in cloudpickle.list_registry_pickle_by_value()
    cloudpickle.loads(cloudpickle.dumps(module.MathEnv()))  # by reference: the lock stays home


def test_import_rewardkit_turns_on_mkls_reproducible_mode_unless_the_user_chose_one():
    """Without MKL_CBWR, async rollouts at staleness 0 drifted from the synchronous run in the last bits on
    an AMD EPYC (a matmul's result depended on memory alignment): tests/rl/test_async.py caught it."""
    import os
    import subprocess
    import sys

    code = "import os, rewardkit, torch; print(os.environ['MKL_CBWR'])"
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "AUTO", done.stderr[-500:]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "MKL_CBWR": "COMPATIBLE"}
    )
    assert done.stdout.strip() == "COMPATIBLE", done.stderr[-500:]
