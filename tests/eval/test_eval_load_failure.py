"""An evaluation whose model fails to load leaves nothing behind that blocks the rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewardkit.eval.suite import parse_suite

pytest.importorskip("torch", reason="evaluation runs need torch ([train] extra)")
pytest.importorskip("transformers", reason="evaluation runs need transformers ([train] extra)")

from rewardkit.eval.run import FINGERPRINT, ROLLOUTS, EvalConfig, evaluate  # noqa: E402


def _one_task_suite():
    demo = {"generator": "rewardkit.demo:demo_tasks", "kwargs": {"split": "test", "n": 4, "seed": 0}}
    return parse_suite(
        {
            "name": "one",
            "defaults": {
                "n": 1,
                "num_tasks": 1,
                "config": {"executor": "inline"},
                "tasks": demo,
                "sampling": {"temperature": 1.0, "max_tokens": 3, "seed": 0},
            },
            "environments": [{"env": "format"}],
        }
    )


def test_a_model_that_fails_to_load_does_not_block_the_rerun(tmp_path: Path) -> None:
    from rewardkit.demo import demo_tasks, solution
    from rewardkit.models.tiny import TinyConfig, build_tiny

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no_such_architecture"}')  # resolves, cannot load
    out = tmp_path / "eval"
    with pytest.raises(Exception):  # noqa: B017 - whatever transformers raises for a bad config
        evaluate(EvalConfig(model=str(broken), output_dir=str(out), progress=False), _one_task_suite())
    assert not (out / FINGERPRINT).exists() and not (out / ROLLOUTS).exists()

    good = tmp_path / "good"
    corpus = [t.prompt + solution(t) for t in demo_tasks("train", 8, 0)]
    build_tiny(
        corpus, TinyConfig(hidden_size=64, intermediate_size=64, num_layers=1, num_heads=2), save_to=good
    )
    summary = evaluate(EvalConfig(model=str(good), output_dir=str(out), progress=False), _one_task_suite())
    assert summary["environments"]["format"]["tasks"] == 1
    assert json.loads((out / FINGERPRINT).read_text())["model"]["path"] == str(good.resolve())
