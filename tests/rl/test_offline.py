"""``rewardkit sft`` and ``rewardkit train`` with preference losses (``rewardkit.rl.offline``): the losses
against plain forward passes, packing and micro-batching that change nothing, exact resume, learning on
a toy task, and clear errors for bad data and configs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardkit.config import ConfigError  # noqa: E402
from rewardkit.rl.offline import sft_nll, train_offline  # noqa: E402
from rewardkit.rl.offline_config import OfflineConfig  # noqa: E402
from rewardkit.rl.offline_data import Encoder, load_examples  # noqa: E402


def _rows(n: int) -> list[dict]:
    """``Say i:`` prompts whose right completion repeats the number; the wrong one says ``abc``."""
    return [
        {
            "prompt": f"Say {i}:",
            "completion": f" {i} {i}",
            "chosen": f" {i} {i}",
            "rejected": " abc 7 77 abc",
            "score_chosen": 1.0,
            "score_rejected": 0.0,
        }
        for i in range(n)
    ]


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def data(tmp_path):
    return _write(tmp_path / "data.jsonl", _rows(40))


def _cfg(model: str, data: str, out: Path, **kw) -> OfflineConfig:
    base = dict(
        model=model,
        data=data,
        output_dir=str(out),
        steps=4,
        batch_size=8,
        micro_batch_size=4,
        lr=1e-3,
        eval_fraction=0.1,
        progress=False,
    )
    return OfflineConfig(**{**base, **kw})


def _tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def _model(model: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)


def test_sft_loss_is_the_nll_of_the_completion_tokens_only(say_model, data, tmp_path):
    """The reference: a plain forward pass over prompt + completion, NLL of the completion's tokens."""
    path = say_model("small")
    cfg = _cfg(path, data, tmp_path / "run", eval_fraction=0.0)
    tok, model = _tokenizer(path), _model(path)
    examples = load_examples(cfg, tok)[0][:5]
    assert examples[0].completions[0][-1] == tok.eos_token_id  # a plain completion ends as a sample does
    want, count = 0.0, 0
    for e in examples:
        ids = torch.tensor([e.prompt + e.completions[0]])
        logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        targets = ids[0, 1:]
        token_lp = logp[torch.arange(len(targets)), targets][len(e.prompt) - 1 :]
        want -= token_lp.sum().item()
        count += len(token_lp)
    got, n = sft_nll(model, examples, tok.pad_token_id, packing=False, max_length=cfg.max_length)
    assert n == count
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_packing_gives_the_unpacked_loss_and_gradient(say_model, data, tmp_path):
    """Packed rows restart position ids per example; attention must not cross into the previous one."""
    path = say_model("small")
    cfg = _cfg(path, data, tmp_path / "run", eval_fraction=0.0)
    tok, model = _tokenizer(path), _model(path)
    examples = load_examples(cfg, tok)[0][:6]
    grads = []
    for packing in (False, True):
        model.zero_grad()
        loss, n = sft_nll(model, examples, tok.pad_token_id, packing=packing, max_length=64)
        loss.backward()
        grads.append((loss.item(), n, [p.grad.clone() for p in model.parameters()]))
    (l0, n0, g0), (l1, n1, g1) = grads
    assert n0 == n1 and l1 == pytest.approx(l0, rel=1e-5)
    assert max((a - b).abs().max().item() for a, b in zip(g0, g1)) < 1e-5


@pytest.mark.parametrize("algorithm", ["sft", "dpo", "rrhf"])
def test_micro_batching_changes_nothing(say_model, data, tmp_path, algorithm):
    """The step's loss is the batch's whatever ``micro_batch_size`` is: the same weights after 2 steps."""
    path = say_model("small")
    weights = []
    for micro in (8, 3):
        cfg = _cfg(path, data, tmp_path / f"run{micro}", algorithm=algorithm, steps=2, micro_batch_size=micro)
        train_offline(cfg)
        weights.append(
            _model(str(tmp_path / f"run{micro}" / "checkpoints" / "step_000002" / "model")).state_dict()
        )
    assert max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0]) < 1e-5


@pytest.mark.parametrize("algorithm", ["sft", "dpo", "kto"])
def test_resume_reproduces_the_uninterrupted_run(say_model, data, tmp_path, algorithm):
    """4 steps straight vs 2 steps, then --resume to 4: the same losses per step and the same weights."""
    path = say_model("small")
    whole = train_offline(_cfg(path, data, tmp_path / "whole", algorithm=algorithm))
    train_offline(_cfg(path, data, tmp_path / "cut", algorithm=algorithm, steps=2))
    resumed = train_offline(_cfg(path, data, tmp_path / "cut", algorithm=algorithm), resume=True)
    assert resumed.steps == 4
    rows = [
        [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        for d in ("whole", "cut")
    ]
    assert [r["step"] for r in rows[1]] == [1, 2, 3, 4]
    assert [r["loss"] for r in rows[0]] == pytest.approx([r["loss"] for r in rows[1]], rel=1e-6)
    a, b = (_model(str(r.final_model)).state_dict() for r in (whole, resumed))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    assert resumed.eval_before == whole.eval_before  # kept from the first part of the run


def test_sft_lowers_the_held_out_loss(say_model, data, tmp_path):
    cfg = _cfg(say_model("small"), data, tmp_path / "run", steps=15, lr=3e-3, eval_fraction=0.2)
    result = train_offline(cfg)
    assert result.eval_after["eval/loss"] < 0.7 * result.eval_before["eval/loss"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["eval_after"] == result.eval_after and summary["algorithm"] == "sft"
    assert (tmp_path / "run" / "curves.png").exists()


@pytest.mark.parametrize("algorithm", ["dpo", "ipo", "simpo", "orpo", "kto", "rrhf"])
def test_preference_losses_learn_to_prefer_the_right_completion(say_model, data, tmp_path, algorithm):
    """Held-out pairs: the chosen completion's implicit reward ends up above the rejected one's (KTO: the
    held-out loss falls), and every step logs the TRL-style metrics."""
    extra = {"loss": {"beta": 0.5}} if algorithm in ("dpo", "kto") else {}
    cfg = OfflineConfig.from_dict(
        {
            **dataclasses.asdict(
                _cfg(
                    say_model("small"),
                    data,
                    tmp_path / "run",
                    algorithm=algorithm,
                    steps=12,
                    eval_fraction=0.2,
                )
            ),
            **extra,
        }
    )
    result = train_offline(cfg)
    row = result.last_metrics
    if algorithm == "kto":
        assert result.eval_after["eval/loss"] < result.eval_before["eval/loss"]
        assert {"rewards/chosen", "rewards/rejected", "kl"} <= set(row)
        return
    assert result.eval_after["eval/rewards/accuracies"] >= 0.75
    assert result.eval_after["eval/rewards/margins"] > result.eval_before["eval/rewards/margins"]
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"} <= set(
        row
    )
    if algorithm in ("dpo", "ipo"):
        assert row["kl"] > 0  # KL(pi || ref), exact per token: the policy has moved


def test_lora_dpo_uses_the_base_model_as_reference(say_model, data, tmp_path):
    """Under LoRA the reference is the model with its adapters off: the first step's KL is exactly 0."""
    pytest.importorskip("peft")
    cfg = _cfg(
        say_model("small"),
        data,
        tmp_path / "run",
        algorithm="dpo",
        steps=3,
        lora={"r": 4, "target_modules": ["q_proj", "v_proj"]},
        lr=1e-2,
    )
    result = train_offline(cfg)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-7) and rows[-1]["kl"] > 0
    assert (result.final_model.parent / "adapter").exists()


def test_chat_sft_trains_on_the_assistant_turn_as_the_template_renders_it(say_model, tmp_path):
    path = say_model("small")
    rows = [
        {"messages": [{"role": "user", "content": f"Say {i}:"}, {"role": "assistant", "content": f"{i}"}]}
        for i in range(4)
    ]
    cfg = _cfg(path, _write(tmp_path / "chat.jsonl", rows), tmp_path / "run", eval_fraction=0.0)
    tok = _tokenizer(path)
    e = load_examples(cfg, tok)[0][0]
    history = rows[0]["messages"]
    assert tok.decode(e.prompt) == tok.apply_chat_template(
        history[:1], tokenize=False, add_generation_prompt=True
    )
    full = tok.apply_chat_template(history, tokenize=False)
    assert tok.decode(e.prompt + e.completions[0]) == full  # the turn's closing tokens are trained on too


def test_kto_labels_come_from_the_score_and_the_threshold(say_model, tmp_path):
    path = say_model("small")
    rows = [{"prompt": "Say 1:", "completion": " 1", "reward": r} for r in (0.2, 0.5, 0.9)]
    cfg = _cfg(
        path,
        _write(tmp_path / "k.jsonl", rows),
        tmp_path / "run",
        algorithm="kto",
        kto_threshold=0.5,
        eval_fraction=0.0,
    )
    assert [e.desirable for e in load_examples(cfg, _tokenizer(path))[0]] == [False, True, True]
    pairs = _write(tmp_path / "p.jsonl", _rows(2))  # a pairs file: chosen desirable, rejected not
    assert [
        e.desirable for e in load_examples(dataclasses.replace(cfg, data=pairs), _tokenizer(path))[0]
    ] == [True, False, True, False]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "Say 1:"}, "line 2: missing field 'completion'"),
        ({"prompt": 3, "completion": "x"}, "line 2: 'prompt' must be a string or a list"),
        ({"prompt": "", "completion": "x"}, "line 2: 'prompt' is empty"),
    ],
)
def test_a_bad_row_is_named_by_file_line_and_field(say_model, tmp_path, row, message):
    path = say_model("small")
    data = _write(tmp_path / "bad.jsonl", [{"prompt": "Say 0:", "completion": " 0"}, row])
    with pytest.raises(ConfigError, match=message):
        Encoder  # noqa: B018 - the public reader below is what users hit
        load_examples(_cfg(path, data, tmp_path / "run", eval_fraction=0.0), _tokenizer(path))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"algorithm": "dop"}, "algorithm"),
        ({"algorithm": "dpo", "packing": True}, "packing"),
        ({"max_prompt_length": 2000}, "max_prompt_length"),
        ({"algorithm": "kto", "online": {"env": "math"}}, "online"),
        ({"loss": {"betta": 0.1}}, "loss.betta"),
    ],
)
def test_bad_config_values_are_named(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        OfflineConfig.from_dict({"model": "m", "data": "d.jsonl", **change})


def test_cli_train_hands_preference_configs_to_the_offline_trainer(say_model, data, tmp_path, capsys):
    from rewardkit.cli import main

    config = tmp_path / "dpo.yaml"
    config.write_text(
        f"model: {say_model('small')}\ndata: {data}\nalgorithm: {{name: dpo, beta: 0.2}}\nsteps: 2\n"
        f"batch_size: 4\noutput_dir: {tmp_path / 'run'}\nprogress: false\n"
    )
    assert main(["train", str(config)]) == 0
    assert "finished at step 2" in capsys.readouterr().out
    stored = json.loads((tmp_path / "run" / "checkpoints" / "step_000002" / "config.json").read_text())
    assert stored["algorithm"] == "dpo" and stored["loss"]["beta"] == 0.2
    assert main(["train", str(config)]) != 0  # a second run in the same directory is refused, as for RL
    assert main(["sft", str(config)]) == 2  # sft trains sft only


def _online_cfg(model: str, data: str, out: Path, **kw) -> OfflineConfig:
    online = {
        "env": "efficiency",
        "env_config": {"max_length": 40},
        "every": 2,
        "prompts": 6,
        "samples": 4,
        "max_new_tokens": 12,
    }
    base = dataclasses.asdict(
        _cfg(model, data, out, algorithm="dpo", steps=6, batch_size=4, eval_fraction=0.0)
    )
    return OfflineConfig.from_dict({**base, "online": online, **kw})


def test_online_dpo_samples_fresh_pairs_every_k_steps(say_model, data, tmp_path):
    """Rounds at steps 1, 3, 5: each pairs the policy's own samples (best vs worst by the environment)."""
    result = train_offline(_online_cfg(say_model("small"), data, tmp_path / "run"))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "online/pairs" in r] == [1, 3, 5]
    assert all(r["online/pairs"] + r["online/prompts_without_pair"] == 6 for r in rows if "online/pairs" in r)
    assert all(r["online/pairs"] >= 1 for r in rows if "online/pairs" in r)
    assert result.steps == 6 and {"rewards/margins", "kl"} <= set(result.last_metrics)


def test_online_dpo_resumes_on_the_same_pairs(say_model, data, tmp_path):
    model = say_model("small")
    train_offline(_online_cfg(model, data, tmp_path / "whole", steps=4))
    train_offline(_online_cfg(model, data, tmp_path / "cut", steps=3))  # stops inside the second round
    train_offline(_online_cfg(model, data, tmp_path / "cut", steps=4), resume=True)
    losses = [
        [json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        for d in ("whole", "cut")
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_the_kl_to_the_reference_is_exact_over_the_vocabulary():
    from rewardkit.rl.offline import Sequences, _kl

    torch.manual_seed(0)
    p, q = torch.randn(3, 5, 11), torch.randn(3, 5, 11)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    none = torch.zeros(3)
    want = torch.nn.functional.kl_div(q.log_softmax(-1), p.log_softmax(-1), log_target=True, reduction="none")
    want = want.sum(-1)[mask].mean().item()  # KL(p || q) per masked token
    assert _kl(Sequences(none, none, p, mask), Sequences(none, none, q, mask), chunk=2) == pytest.approx(
        want, rel=1e-5
    )


def test_offline_training_refuses_several_ranks(say_model, data, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="one process"):
        train_offline(_cfg(say_model("small"), data, tmp_path / "run"))
