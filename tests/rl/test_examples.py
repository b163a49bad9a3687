"""Smoke-run every example config through the CLI, as a user would (one step each, tiny model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_there_is_one_example_per_algorithm():
    from rewardkit.rl.algorithms import ALGORITHM_PRESETS

    assert {p.stem for p in EXAMPLES} >= set(ALGORITHM_PRESETS)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(example, tmp_path):
    first = example.read_text().splitlines()[0]
    assert first == f"# rewardkit train examples/{example.name}", (
        "an example starts with the command that runs it"
    )
    cmd = [
        sys.executable,
        "-m",
        "rewardkit",
        "train",
        str(example),
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        "steps=1",
        "--set",
        "progress=false",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["step"] == 1
    assert "finished at step 1" in proc.stdout
