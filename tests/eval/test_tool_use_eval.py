"""``rewardkit eval`` on a tool-use suite whose tool sandbox is down: every sample is an ``error``, not an ``ok`` 0.

The evaluator used to score an episode from its task alone, dropping the episode's own account
(``Trajectory.info``), so an episode that died on a tool-infrastructure failure was reported as an
ordinary wrong answer: the silent zero. The sandbox failure here is real: the ``python`` tool asks the
docker back end for an engine at an address where none listens. The policy is scripted (it calls the
tool at once, with ids from the real tokenizer); everything after generation is the real path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch", reason="evaluation runs need torch ([train] extra)")
pytest.importorskip("transformers", reason="evaluation runs need transformers ([train] extra)")

from rewardkit.generation.base import Generation, SamplingParams  # noqa: E402

CALL = '<tool_call>{"name": "python", "arguments": {"code": "print(6 * 7)"}}</tool_call>'


class CallsPythonAtOnce:
    """A policy whose every turn is one call of the ``python`` tool."""

    samples_trained_module = False

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def generate(self, prompts, params: SamplingParams) -> list[list[Generation]]:
        ids = tuple(self.tokenizer.encode(CALL, add_special_tokens=False))
        one = Generation(ids, (0.0,) * len(ids), "stop", CALL)
        return [[one] * params.n for _ in prompts]

    def update_weights(self, named_tensors) -> None:
        pass

    def sleep(self) -> None:
        pass


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rewardkit.models.tiny import TinyConfig, build_tiny

    path = tmp_path_factory.mktemp("tiny_tools") / "model"
    build_tiny([CALL, "What is 6 * 7? <answer>42</answer>"] * 8, TinyConfig(num_layers=1), save_to=path)
    return path


def test_eval_reports_a_broken_tool_sandbox_as_error_not_a_zero(tmp_path, tiny_model, monkeypatch):
    from transformers import AutoTokenizer

    from rewardkit.cli import main
    from rewardkit.eval import run

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine-here.sock")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    monkeypatch.setattr(run, "build_generator", lambda model, backend, cfg: CallsPythonAtOnce(tokenizer))
    suite = tmp_path / "tools.yaml"
    env = {"task": "calculator", "tools": ["python"], "sandbox": "docker", "executor": "thread"}
    suite.write_text(
        yaml.safe_dump(
            {
                "name": "broken_tools",
                "defaults": {
                    "n": 2,
                    "num_tasks": 2,
                    "sampling": {"max_tokens": 32, "stop": ["</tool_call>"]},
                },
                "environments": [{"env": "tool_use", "config": env, "tasks": {"split": "test"}}],
            }
        )
    )
    out = tmp_path / "eval"
    assert (
        main(["eval", "--model", str(tiny_model), "--suite", str(suite), "--output-dir", str(out), "-q"]) == 0
    )

    rows = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert {r["status"] for r in rows} == {"error"}, [(r["status"], r["score_info"]) for r in rows]
    assert all("drop this episode" in r["score_info"]["reason"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())["environments"]["tool_use"]
    assert summary["status_counts"]["error"] == 4 and summary["status_counts"]["ok"] == 0
