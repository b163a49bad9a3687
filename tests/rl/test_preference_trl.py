"""rewardkit's preference losses against TRL's own trainers, on the same batch of the same tiny model.

Each test builds TRL's real trainer (``DPOTrainer``, ``CPOTrainer``, ``ORPOTrainer``, ``KTOTrainer``) around a
tiny random float64 Llama and a perturbed copy of it as the reference, feeds one collated batch to the
method TRL trains with (``compute_loss``) and backpropagates it; then scores the same token ids with
``rewardkit.rl.model.completion_logprobs`` (left-padded prompts, right-padded completions: another layout
than TRL's), sums them per completion into a ``PreferenceBatch`` and backpropagates rewardkit's loss. The
losses, every parameter's gradient and the reward metrics TRL logs must agree to 1e-5. (The model is
float64, but rewardkit's and TRL's fused LM head (DPO, KTO) take the log-softmax in float32, so the two
agree to about 1e-7, not 1e-15; a beta off by 0.01 moves the losses by 1e-4 and the gradients by 1e-3.)

Conventions aligned (TRL 1.16), each explained where it is used:

* cDPO: TRL 1.16's ``loss_type="sigmoid"`` ignores ``label_smoothing``; cDPO is TRL's ``sigmoid`` and
  ``robust`` losses combined with ``loss_weights`` (an exact identity, see ``test_cdpo_matches_trl``).
* SimPO: ``CPOTrainer(loss_type="simpo", cpo_alpha=0)``; TRL's ``simpo_gamma`` is the margin gamma itself.
* ORPO: TRL's ``beta`` is ORPO's lambda and also scales its rewards; TRL's NLL covers the prompt and is a
  token-weighted mean over the batch, so the ORPO batch has one-token prompts and equal chosen lengths.
* KTO: TRL estimates the KL reference point on mismatched (prompt, completion) pairs that its dataset
  preparation builds; the batch here passes each completion as its own "KL completion", which makes TRL's
  estimate the batch mean of the log-ratios, rewardkit's ``z0``.
* IPO: both log its rewards on summed log-ratios (DPO's rewards), though the loss uses per-token means.
"""

from __future__ import annotations

import copy
import random

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers", reason="transformers is not installed ([train] extra)")
datasets = pytest.importorskip("datasets", reason="datasets is not installed")
trl = pytest.importorskip("trl", reason="trl is not installed ([dev] extra)")

from rewardkit.rl.model import completion_logprobs, pack  # noqa: E402
from rewardkit.rl.preference import PREFERENCE_LOSSES, PreferenceBatch, PreferenceConfig  # noqa: E402

TOL = 1e-5
METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def _trl_class(name: str, *modules: str):
    """``name`` from the first of ``modules`` that has it (TRL moves trainers between trl.experimental and
    the stable API across releases)."""
    for module in modules:
        try:
            found = getattr(__import__(module, fromlist=[name]), name, None)
        except ImportError:
            found = None
        if found is not None:
            return found
    pytest.skip(f"TRL {trl.__version__} has no {name} in {', '.join(modules)}")


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def models(hf_tokenizer):
    """The config and the state dicts of a random reference model and of a policy that is the reference
    with every weight perturbed (by a tenth of its tensor's spread), so that log-ratios are non-zero and
    of both signs."""
    config = transformers.LlamaConfig(
        vocab_size=len(hf_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attention_dropout=0.0,
        pad_token_id=hf_tokenizer.pad_token_id,
        eos_token_id=hf_tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(config).to(torch.float64)
    policy = copy.deepcopy(ref)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1 * p.std().clamp(min=0.02) * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return config, ref.state_dict(), policy.state_dict()


def _build(models, which: str, swap: bool = False):
    """A fresh model from the saved weights (TRL's trainers patch the model's forward, so each gets its
    own): the policy in train mode with gradients, or the frozen reference in eval mode; ``swap`` trades
    the two sets of weights."""
    config, ref_state, policy_state = models
    model = transformers.LlamaForCausalLM(config).to(torch.float64)
    model.load_state_dict(policy_state if (which == "policy") != swap else ref_state)
    if which == "policy":
        return model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _pairs(tok, n: int = 6, seed: int = 0, prompt_len=(2, 5), chosen_len=(2, 7)):
    """Random (prompt, chosen, rejected) token ids of varied lengths (no special tokens)."""
    rng = random.Random(seed)
    first = max(tok.all_special_ids) + 1
    ids = lambda lo_hi: [rng.randrange(first, len(tok)) for _ in range(rng.randint(*lo_hi))]  # noqa: E731
    return [(ids(prompt_len), ids(chosen_len), ids((2, 7))) for _ in range(n)]


def _args(cls, tmp_path, **kwargs):
    return cls(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        fp16=False,
        report_to="none",
        disable_tqdm=True,
        save_strategy="no",
        seed=0,
        **kwargs,
    )


def _summed(model, tok, prompts, completions):
    """rewardkit's summed completion log-probs [B] (with grad when ``model`` has it)."""
    batch = pack(prompts, completions, tok.pad_token_id, "cpu")
    logprobs, _ = completion_logprobs(model, batch, 1.0, False)  # [B, T], right-padded completions
    lengths = torch.tensor([len(c) for c in completions])
    mask = torch.arange(logprobs.shape[1])[None, :] < lengths[:, None]
    return (logprobs * mask).sum(-1), lengths.to(logprobs.dtype)


def _paired_batch(policy, ref, tok, pairs) -> PreferenceBatch:
    prompts = [p for p, _, _ in pairs]
    chosen, chosen_len = _summed(policy, tok, prompts, [c for _, c, _ in pairs])
    rejected, rejected_len = _summed(policy, tok, prompts, [r for _, _, r in pairs])
    ref_chosen = ref_rejected = None
    if ref is not None:
        with torch.no_grad():
            ref_chosen, _ = _summed(ref, tok, prompts, [c for _, c, _ in pairs])
            ref_rejected, _ = _summed(ref, tok, prompts, [r for _, _, r in pairs])
    return PreferenceBatch(
        chosen_logps=chosen,
        rejected_logps=rejected,
        ref_chosen_logps=ref_chosen,
        ref_rejected_logps=ref_rejected,
        chosen_lengths=chosen_len,
        rejected_lengths=rejected_len,
    )


def _take_grads(model) -> dict[str, torch.Tensor]:
    grads = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            grads[name] = p.grad.detach().clone()
        p.grad = None
    return grads


def _trl_metrics(trainer) -> dict[str, float]:
    """The metrics the trainer logged for the one batch (DPO/KTO's ``_metrics``, CPO/ORPO's
    ``_stored_metrics``)."""
    store = getattr(trainer, "_metrics", None)
    if store is None:
        store = trainer._stored_metrics
    mode = "train" if "train" in store and store["train"] else "eval"
    return {k: v[-1] for k, v in store[mode].items() if v}


def _assert_parity(name, trl_loss, trl_grads, rk_loss, rk_grads, trl_metrics, rk_metrics, keys=METRICS):
    loss_diff = abs(float(trl_loss) - float(rk_loss))
    assert set(trl_grads) == set(rk_grads) and trl_grads, f"{name}: gradients on different parameters"
    grad_diff = max((trl_grads[k] - rk_grads[k]).abs().max().item() for k in trl_grads)
    grad_scale = max(g.abs().max().item() for g in trl_grads.values())
    print(
        f"{name}: loss {float(rk_loss):.6f} |d|={loss_diff:.2e}; max |grad|={grad_scale:.3f} |d|={grad_diff:.2e}"
    )
    assert loss_diff <= TOL, f"{name}: loss rewardkit {float(rk_loss)} vs TRL {float(trl_loss)}"
    assert grad_diff <= TOL, f"{name}: gradients differ by up to {grad_diff}"
    assert grad_scale > 1e-3, f"{name}: gradients too small for the comparison to mean anything"
    for key in keys:
        assert key in trl_metrics, f"{name}: TRL logged no {key}"
        assert rk_metrics[key] == pytest.approx(trl_metrics[key], abs=TOL), (name, key)


# -------------------------------------------------------------------------------------------------- DPO


def _dpo(models, tok, tmp_path, pairs, **config):
    policy, ref = _build(models, "policy"), _build(models, "ref")
    dataset = datasets.Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}] * 2)
    trainer = trl.DPOTrainer(
        model=policy,
        ref_model=ref,
        args=_args(trl.DPOConfig, tmp_path, **config),
        train_dataset=dataset,
        processing_class=tok,
    )
    batch = trainer.data_collator(
        [{"prompt_ids": p, "chosen_ids": c, "rejected_ids": r} for p, c, r in pairs]
    )
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return policy, ref, loss.detach(), _take_grads(policy), _trl_metrics(trainer)


def _rewardkit(name, policy, ref, tok, pairs, cfg):
    batch = _paired_batch(policy, ref, tok, pairs)
    loss, metrics = PREFERENCE_LOSSES[name](batch, cfg)
    loss.backward()
    return loss.detach(), _take_grads(policy), metrics


def test_dpo_matches_trl(models, hf_tokenizer, tmp_path):
    """DPO: TRL's ``loss_type="sigmoid"`` on summed log-probs, the same convention as rewardkit."""
    pairs = _pairs(hf_tokenizer)
    policy, ref, trl_loss, trl_grads, trl_metrics = _dpo(
        models, hf_tokenizer, tmp_path, pairs, beta=0.7, loss_type="sigmoid"
    )
    rk_loss, rk_grads, rk_metrics = _rewardkit(
        "dpo", policy, ref, hf_tokenizer, pairs, PreferenceConfig(beta=0.7)
    )
    assert 0 < trl_metrics["rewards/accuracies"] < 1, "want pairs ranked both ways"
    _assert_parity("dpo", trl_loss, trl_grads, rk_loss, rk_grads, trl_metrics, rk_metrics)
    assert rk_metrics["logps/chosen"] == pytest.approx(trl_metrics["logps/chosen"], abs=TOL)
    assert rk_metrics["logps/rejected"] == pytest.approx(trl_metrics["logps/rejected"], abs=TOL)


def test_rpo_matches_trl(models, hf_tokenizer, tmp_path):
    """RPO, DPO plus alpha times the chosen completions' NLL: TRL 1.16 writes it as ``loss_type=["sigmoid",
    "sft"]`` with ``loss_weights=[1, alpha]``. TRL's NLL is the mean over all the batch's chosen tokens,
    rewardkit's the per-pair mean (the paper's): equal when the chosen completions have one length."""
    pairs = _pairs(hf_tokenizer, chosen_len=(4, 4))
    alpha = 0.6
    policy, ref, trl_loss, trl_grads, trl_metrics = _dpo(
        models,
        hf_tokenizer,
        tmp_path,
        pairs,
        beta=0.7,
        loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, alpha],
    )
    rk_loss, rk_grads, rk_metrics = _rewardkit(
        "dpo", policy, ref, hf_tokenizer, pairs, PreferenceConfig(beta=0.7, rpo_alpha=alpha)
    )
    _assert_parity("rpo", trl_loss, trl_grads, rk_loss, rk_grads, trl_metrics, rk_metrics)
    _, plain_grads, _ = _rewardkit("dpo", policy, ref, hf_tokenizer, pairs, PreferenceConfig(beta=0.7))
    assert max((plain_grads[k] - rk_grads[k]).abs().max().item() for k in rk_grads) > 1e-3  # the NLL counts


def test_cdpo_matches_trl(models, hf_tokenizer, tmp_path):
    """cDPO, ``-(1-e) log s(b h) - e log s(-b h)``. TRL 1.16's ``sigmoid`` loss no longer reads
    ``label_smoothing`` (only ``robust``, ``exo_pair`` and ``aot*`` do), so cDPO is built from TRL's own
    losses: with ``L+ = log s(b h)``, ``L- = log s(-b h)``, TRL's ``sigmoid`` is ``-L+`` and its ``robust``
    (rDPO) is ``(-(1-e) L+ + e L-) / (1-2e)``, and ``2(1-e) sigmoid - (1-2e) robust`` is exactly cDPO."""
    eps = 0.2
    pairs = _pairs(hf_tokenizer)
    policy, ref, trl_loss, trl_grads, trl_metrics = _dpo(
        models,
        hf_tokenizer,
        tmp_path,
        pairs,
        beta=0.7,
        label_smoothing=eps,
        loss_type=["sigmoid", "robust"],
        loss_weights=[2 * (1 - eps), -(1 - 2 * eps)],
    )
    cfg = PreferenceConfig(beta=0.7, label_smoothing=eps)
    rk_loss, rk_grads, rk_metrics = _rewardkit("dpo", policy, ref, hf_tokenizer, pairs, cfg)
    _assert_parity("cdpo", trl_loss, trl_grads, rk_loss, rk_grads, trl_metrics, rk_metrics)


def test_ipo_matches_trl(models, hf_tokenizer, tmp_path):
    """IPO: TRL divides each completion's summed log-ratio by its length, as rewardkit does."""
    pairs = _pairs(hf_tokenizer)
    policy, ref, trl_loss, trl_grads, trl_metrics = _dpo(
        models, hf_tokenizer, tmp_path, pairs, beta=0.7, loss_type="ipo"
    )
    rk_loss, rk_grads, rk_metrics = _rewardkit(
        "ipo", policy, ref, hf_tokenizer, pairs, PreferenceConfig(beta=0.7)
    )
    _assert_parity("ipo", trl_loss, trl_grads, rk_loss, rk_grads, trl_metrics, rk_metrics, keys=())


def test_ipo_reward_metrics_match_trl(models, hf_tokenizer, tmp_path):
    pairs = _pairs(hf_tokenizer)
    policy, ref, _, _, trl_metrics = _dpo(models, hf_tokenizer, tmp_path, pairs, beta=0.7, loss_type="ipo")
    _, _, rk_metrics = _rewardkit("ipo", policy, ref, hf_tokenizer, pairs, PreferenceConfig(beta=0.7))
    for key in METRICS:
        assert rk_metrics[key] == pytest.approx(trl_metrics[key], abs=TOL), key


# ------------------------------------------------------------------------------------------ SimPO, ORPO


def _reference_free(cls, config_cls, models, tok, tmp_path, pairs, **config):
    """CPOTrainer / ORPOTrainer (reference-free) on ``pairs``, through the trainer's own collator."""
    policy = _build(models, "policy")
    dataset = datasets.Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}] * 2)
    trainer = cls(
        model=policy,
        args=_args(config_cls, tmp_path, max_length=64, **config),
        train_dataset=dataset,
        processing_class=tok,
    )
    features = []
    for p, c, r in pairs:
        features.append(
            {
                "prompt_input_ids": p,
                "prompt_attention_mask": [1] * len(p),
                "chosen_input_ids": p + c,
                "chosen_attention_mask": [1] * (len(p) + len(c)),
                "chosen_labels": [-100] * len(p) + c,
                "rejected_input_ids": p + r,
                "rejected_attention_mask": [1] * (len(p) + len(r)),
                "rejected_labels": [-100] * len(p) + r,
            }
        )
    loss = trainer.compute_loss(trainer.model, trainer.data_collator(features))
    loss.backward()
    return policy, loss.detach(), _take_grads(policy), _trl_metrics(trainer)


def test_simpo_matches_trl(models, hf_tokenizer, tmp_path):
    """SimPO: TRL's CPOTrainer with ``loss_type="simpo"`` and ``cpo_alpha=0`` (no NLL term) is
    ``-log s(b (m_c - m_r - gamma / b))`` on per-token means m, rewardkit's formula; both log
    ``b * m`` as the rewards."""
    CPOTrainer = _trl_class("CPOTrainer", "trl.experimental.cpo", "trl")
    CPOConfig = _trl_class("CPOConfig", "trl.experimental.cpo", "trl")
    pairs = _pairs(hf_tokenizer)
    policy, trl_loss, trl_grads, trl_metrics = _reference_free(
        CPOTrainer,
        CPOConfig,
        models,
        hf_tokenizer,
        tmp_path,
        pairs,
        loss_type="simpo",
        cpo_alpha=0.0,
        beta=2.0,
        simpo_gamma=0.3,
    )
    cfg = PreferenceConfig(beta=2.0, simpo_gamma=0.3)
    rk_loss, rk_grads, rk_metrics = _rewardkit("simpo", policy, None, hf_tokenizer, pairs, cfg)
    _assert_parity("simpo", trl_loss, trl_grads, rk_loss, rk_grads, trl_metrics, rk_metrics)


def test_orpo_matches_trl(models, hf_tokenizer, tmp_path):
    """ORPO: TRL's ``beta`` is the odds-ratio weight lambda (and scales the logged rewards ``beta * m``).
    TRL's NLL term is ``CrossEntropyLoss`` over every attended token of the chosen sequences, prompt
    included, averaged over the batch's tokens; rewardkit's is each chosen completion's per-token mean,
    averaged over pairs. They coincide when prompts are one token (nothing predicts it) and the chosen
    completions have one length, which this batch has (the rejected lengths vary)."""
    ORPOTrainer = _trl_class("ORPOTrainer", "trl.experimental.orpo", "trl")
    ORPOConfig = _trl_class("ORPOConfig", "trl.experimental.orpo", "trl")
    pairs = _pairs(hf_tokenizer, seed=1, prompt_len=(1, 1), chosen_len=(5, 5))
    policy, trl_loss, trl_grads, trl_metrics = _reference_free(
        ORPOTrainer, ORPOConfig, models, hf_tokenizer, tmp_path, pairs, beta=0.4
    )
    cfg = PreferenceConfig(beta=0.4, orpo_lambda=0.4)
    rk_loss, rk_grads, rk_metrics = _rewardkit("orpo", policy, None, hf_tokenizer, pairs, cfg)
    _assert_parity("orpo", trl_loss, trl_grads, rk_loss, rk_grads, trl_metrics, rk_metrics)
    assert rk_metrics["nll"] == pytest.approx(trl_metrics["nll_loss"], abs=TOL)
    # TRL's "log_odds_chosen" is the mean log odds ratio; its "log_odds_ratio" is the mean log sigma of it
    assert rk_metrics["log_odds_ratio"] == pytest.approx(trl_metrics["log_odds_chosen"], abs=TOL)


# --------------------------------------------------------------------------------------------------- KTO


def test_kto_matches_trl(models, hf_tokenizer, tmp_path):
    """KTO on unpaired completions (the pairs' chosen ones desirable, rejected ones not), with unequal
    desirable/undesirable weights. TRL's reference point is ``max(0, mean(log pi(y'|x) - log ref(y'|x)))``,
    detached, over "KL completions" y' that its dataset preparation rotates by one within each batch
    (mismatched pairs). rewardkit's kto_loss takes ``z0`` from the batch's own log-ratios and leaves
    mismatched pairs to its caller, so the collated batch here gives each example its own completion as
    the KL completion; TRL's estimate is then exactly rewardkit's z0 (asserted positive, so the clamp is
    not what makes them agree)."""
    KTOTrainer = _trl_class("KTOTrainer", "trl", "trl.experimental.kto")
    KTOConfig = _trl_class("KTOConfig", "trl", "trl.experimental.kto")
    pairs = _pairs(hf_tokenizer, seed=2)
    examples = [(p, c, True) for p, c, _ in pairs] + [(p, r, False) for p, _, r in pairs[:4]]
    random.Random(0).shuffle(examples)
    # with the weights traded, this batch's mean log-ratio is positive, so z0 is not clamped to 0
    policy, ref = _build(models, "policy", swap=True), _build(models, "ref", swap=True)
    dataset = datasets.Dataset.from_list(
        [{"prompt": "a", "completion": "b", "label": i % 2 == 0} for i in range(4)]
    )
    trainer = KTOTrainer(
        model=policy,
        ref_model=ref,
        args=_args(
            KTOConfig,
            tmp_path,
            beta=0.5,
            desirable_weight=1.3,
            undesirable_weight=0.7,
            per_device_train_batch_size=2,
        ),
        train_dataset=dataset,
        processing_class=hf_tokenizer,
    )
    batch = trainer.data_collator(
        [
            {"prompt_ids": p, "completion_ids": c, "KL_completion_ids": c, "label": good}
            for p, c, good in examples
        ]
    )
    trl_loss = trainer.compute_loss(trainer.model, batch)
    trl_loss.backward()
    trl_loss = trl_loss.detach()
    trl_grads, trl_metrics = _take_grads(policy), _trl_metrics(trainer)

    prompts, completions = [p for p, _, _ in examples], [c for _, c, _ in examples]
    logps, _ = _summed(policy, hf_tokenizer, prompts, completions)
    with torch.no_grad():
        ref_logps, _ = _summed(ref, hf_tokenizer, prompts, completions)
    rk_batch = PreferenceBatch(
        chosen_logps=logps, ref_chosen_logps=ref_logps, desirable=torch.tensor([g for _, _, g in examples])
    )
    cfg = PreferenceConfig(beta=0.5, kto_desirable_weight=1.3, kto_undesirable_weight=0.7)
    rk_loss, rk_metrics = PREFERENCE_LOSSES["kto"](rk_batch, cfg)
    rk_loss.backward()
    rk_loss, rk_grads = rk_loss.detach(), _take_grads(policy)

    assert rk_metrics["kl"] > 1e-3, "the reference point should be positive, not clamped to 0"
    _assert_parity(
        "kto",
        trl_loss,
        trl_grads,
        rk_loss,
        rk_grads,
        trl_metrics,
        rk_metrics,
        keys=("rewards/chosen", "rewards/rejected", "kl"),
    )
    margins = rk_metrics["rewards/chosen"] - rk_metrics["rewards/rejected"]
    assert margins == pytest.approx(trl_metrics["rewards/margins"], abs=TOL)
