"""``rewardkit rm`` and the ``reward_model`` environment: a tiny Llama learns a preference it can see
(chosen completions say "yes", rejected ones "no") from pairs in the ``rewardkit pairs`` format; its
held-out pairwise accuracy rises above chance, and the environment then ranks completions by it,
batched or one at a time, alone or inside ``weighted``."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardkit import load_env  # noqa: E402
from rewardkit.rl.reward_model import RewardModelConfig, train_reward_model  # noqa: E402


def _pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        filler = " ".join(rng.choice(["a", "b", "c", "7"]) for _ in range(rng.randint(1, 4)))
        rows.append({"prompt": f"Say {i}:", "chosen": f" {filler} yes", "rejected": f" {filler} no"})
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from rewardkit.models.tiny import TinyConfig, build_tiny

    tmp = tmp_path_factory.mktemp("rm")
    rows = _pairs(60)
    build_tiny(
        [r["prompt"] + r["chosen"] + r["rejected"] for r in rows] * 4,
        TinyConfig(seed=0),
        save_to=tmp / "base",
    )
    data = tmp / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RewardModelConfig(
        model=str(tmp / "base"), data=str(data), output_dir=str(tmp / "rm"), steps=60, batch_size=8, lr=1e-3
    )
    return train_reward_model(cfg), tmp


def test_the_reward_model_learns_the_preference(trained):
    summary, tmp = trained
    assert summary["heldout_pairs"] == 12 and summary["train_pairs"] == 48
    assert summary["heldout_accuracy_after"] >= 0.9
    rows = [json.loads(line) for line in (tmp / "rm" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and sum(r["loss"] for r in rows[-10:]) < sum(r["loss"] for r in rows[:10])


def test_the_environment_scores_with_it_batched_or_not(trained):
    summary, _ = trained
    env = load_env("reward_model", model=summary["model"], batch_size=3)
    samples = [
        {"completion": f" a b {word}", "prompt": f"Say {i}:"} for i in range(5) for word in ("yes", "no")
    ]
    batched = env.score_batch(samples)
    alone = [env.score(s["completion"], prompt=s["prompt"]) for s in samples]
    assert [b.reward for b in batched] == pytest.approx([a.reward for a in alone], abs=1e-4)
    assert all(batched[2 * i].reward > batched[2 * i + 1].reward for i in range(5))  # yes over no
    assert env.score(" yes").status == "invalid_input"  # no prompt: a clear status, not a guess
    squashed = load_env("reward_model", model=summary["model"], squash=True).score(" a yes", prompt="Say 1:")
    assert 0 < squashed.reward < 1 and "rm_score" in squashed.metrics
    mixed = load_env(
        "weighted", components={"format": 1.0, "reward_model": {"weight": 0.5, "model": summary["model"]}}
    )
    score = mixed.score(" a yes", prompt="Say 1:")
    raw = env.score(" a yes", prompt="Say 1:").reward
    assert score.status == "ok" and score.metrics["reward_model/rm_score"] == pytest.approx(raw, abs=1e-4)
    assert score.reward == pytest.approx(score.metrics["format/reward"] + 0.5 * raw, abs=1e-4)


def test_the_cli_trains_and_bad_data_is_a_clear_error(trained, tmp_path):
    _, tmp = trained
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    cli = [sys.executable, "-m", "rewardkit", "rm", "--model", str(tmp / "base")]
    proc = subprocess.run(
        [*cli, "--data", str(bad), "--output-dir", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0 and "line 1: missing rejected" in proc.stderr
    proc = subprocess.run(
        [*cli, "--data", str(tmp / "pairs.jsonl"), "--output-dir", str(tmp_path / "rm"), "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "held-out pairwise accuracy" in proc.stdout and (tmp_path / "rm" / "model" / "config.json").exists()
    )
    with pytest.raises(ValueError, match="eval_fraction: got 1.0"):
        RewardModelConfig(model="m", data="d", eval_fraction=1.0)
