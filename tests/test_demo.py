"""`rewardkit demo --quick`: every stage of the README's main job runs and writes its summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardkit.demo import demo_tasks, solution  # noqa: E402


def test_solutions_are_correct_column_additions():
    for task in demo_tasks("train", 300, 0):
        steps = solution(task).split("<think>")[1].split("</think>")[0].split(", ")
        totals = [int(s.split("=")[1].split()[0]) for s in steps]
        # the answer is the last column's total followed by the other columns' units digits
        assert str(totals[-1]) + "".join(str(t % 10) for t in reversed(totals[:-1])) == task.answer
        assert f"<answer>{task.answer}</answer>" in solution(task)


def test_demo_splits_are_disjoint_and_sized():
    train, test = demo_tasks("train", 500, 0), demo_tasks("test", 200, 0)
    assert len(train) == 500 and len(test) == 200
    assert not {t.prompt for t in train} & {t.prompt for t in test}


def test_quick_demo_runs_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rewardkit", "demo", "--quick", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("accuracy_before", "accuracy_after", "format_rate_before", "format_rate_after"):
        assert 0.0 <= summary[key] <= 1.0
    assert (tmp_path / "grpo" / "curves.png").exists()
    assert "held-out accuracy" in proc.stdout
    # two GRPO steps teach nothing: the table must not pose as a result
    assert "smoke run: too few steps to learn; run without --quick for the real demo" in proc.stdout
    assert summary["smoke_run"] is True


def test_the_builtin_demo_suite_is_what_the_demo_measures():
    """`rewardkit eval --suite demo` reproduces the demo's numbers because it is the demo's own suite."""
    from rewardkit.demo import DemoConfig, demo_suite
    from rewardkit.eval.suite import load_suite

    assert load_suite("demo").to_dict()["environments"] == demo_suite(DemoConfig()).to_dict()["environments"]
    quick = demo_suite(DemoConfig.quick("unused")).to_dict()["environments"]["math"]
    assert quick["tasks"]["kwargs"]["n"] == DemoConfig.quick("unused").test_tasks
