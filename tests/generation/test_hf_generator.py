"""The Hugging Face rollout back end against a real (tiny, randomly initialised) Llama and tokenizer."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch", reason="the HF back end needs torch")
pytest.importorskip("transformers", reason="the HF back end needs transformers")

from rewardkit.generation.base import Generator, SamplingParams, samples_policy_distribution  # noqa: E402
from rewardkit.generation.hf import HFGenerator, HFGeneratorConfig, filter_logits  # noqa: E402
from rewardkit.models.tiny import TinyConfig, build_tiny  # noqa: E402

CORPUS = ["the quick brown fox jumps over the lazy dog", "1 + 2 = 3", "<think>a</think><answer>4</answer>"]


@pytest.fixture(scope="module")
def tiny():
    """A 2-layer Llama (head_dim 32) and a byte-level BPE tokenizer trained on a few lines."""
    size = TinyConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=2,
        max_position_embeddings=256,
    )
    return build_tiny(CORPUS * 20, size)


@pytest.fixture
def prompts(tiny):
    _, tok = tiny
    texts = ["the quick brown", "1 + 2 =", "<think>the lazy dog jumps over</think>"]
    return [tok.encode(t) for t in texts]


def teacher_forced_logprobs(model, prompt, ids, temperature=1.0, params=None):
    """Logprob of each of ``ids`` after ``prompt`` from one full forward pass (the trainer's view)."""
    full = torch.tensor([list(prompt) + list(ids)])
    with torch.no_grad():
        logits = model(full).logits[0, len(prompt) - 1 : -1].float()  # [T, V]
    if params is not None:
        logits = filter_logits(logits / params.temperature, params)
    else:
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(ids)[:, None]).squeeze(-1)


def test_is_a_generator_that_samples_the_trained_module(tiny):
    """It runs the module it is given (the trainer's policy): its log-probs are the trainer's own."""
    model, tok = tiny
    gen = HFGenerator(model, tok)
    assert isinstance(gen, Generator)
    assert gen.samples_trained_module is True


def test_shapes_and_length_finish(tiny, prompts):
    model, tok = tiny
    gen = HFGenerator(model, tok)
    out = gen.generate(prompts, SamplingParams(n=4, max_tokens=6, seed=1))
    assert len(out) == len(prompts)
    for group in out:
        assert len(group) == 4
        for g in group:
            assert 1 <= len(g.token_ids) <= 6 and len(g.logprobs) == len(g.token_ids)
            ended_on_eos = g.token_ids[-1] == tok.eos_token_id
            assert g.finish_reason == ("stop" if ended_on_eos else "length")
            assert all(lp <= 0 for lp in g.logprobs)
            assert g.text == tok.decode(list(g.token_ids), skip_special_tokens=True)


def test_left_padding_matches_unbatched_greedy_and_hf_generate(tiny, prompts):
    model, tok = tiny
    gen = HFGenerator(model, tok, HFGeneratorConfig(max_batch_size=8))
    greedy = SamplingParams(temperature=0.0, max_tokens=8)
    batched = [g[0].token_ids for g in gen.generate(prompts, greedy)]
    alone = [gen.generate([p], greedy)[0][0].token_ids for p in prompts]
    assert batched == alone
    for prompt, ids in zip(prompts, alone):
        ref = model.generate(
            torch.tensor([prompt]), max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0
        )
        assert tuple(ref[0, len(prompt) :].tolist()) == ids


def test_micro_batches_do_not_change_greedy_results(tiny, prompts):
    model, tok = tiny
    greedy = SamplingParams(n=2, temperature=0.0, max_tokens=5)
    big = HFGenerator(model, tok, HFGeneratorConfig(max_batch_size=64)).generate(prompts, greedy)
    small = HFGenerator(model, tok, HFGeneratorConfig(max_batch_size=1)).generate(prompts, greedy)
    assert [[g.token_ids for g in grp] for grp in big] == [[g.token_ids for g in grp] for grp in small]
    for grp_big, grp_small in zip(big, small):
        for a, b in zip(grp_big, grp_small):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


def test_the_reserved_kv_cache_gives_what_transformers_own_cache_gives(tiny, prompts):
    """The in-place cache (kv_cache.py) against transformers' concatenating one: the same tokens and
    log-probs when rows finish at different steps (eos, a stop string) and leave the cache, with
    several samples per prompt, and past the reserved capacity (the layer grows)."""
    from rewardkit.generation.kv_cache import reserved_cache

    model, tok = tiny
    params = SamplingParams(n=4, temperature=1.0, max_tokens=24, stop=("o",), seed=7)
    reserved = HFGenerator(model, tok).generate(prompts, params)
    plain = HFGenerator(model, tok, HFGeneratorConfig(reserve_kv_cache=False)).generate(prompts, params)
    ids = lambda out: [[(g.token_ids, g.finish_reason) for g in grp] for grp in out]  # noqa: E731
    assert ids(reserved) == ids(plain)
    lengths = {len(g.token_ids) for grp in reserved for g in grp}
    assert len(lengths) > 2, "rows must finish at different steps for this test to cover dropping them"
    for a, b in zip(sum(reserved, []), sum(plain, [])):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)

    cache = reserved_cache(capacity=2)  # smaller than the prompt: the layer must grow past it
    full = torch.tensor([prompts[2]])
    with torch.no_grad():
        out = model(input_ids=full[:, :-3], past_key_values=cache, use_cache=True)
        for t in range(3, 0, -1):  # three more tokens, one at a time, through the grown cache
            out = model(input_ids=full[:, -t:][:, :1], past_key_values=out.past_key_values, use_cache=True)
        reference = model(input_ids=full).logits[:, -1]
    torch.testing.assert_close(out.logits[:, -1], reference, rtol=0, atol=1e-5)


def test_seeded_sampling_is_deterministic(tiny, prompts):
    model, tok = tiny
    params = SamplingParams(n=3, max_tokens=6, seed=123)
    first = HFGenerator(model, tok).generate(prompts, params)
    again = HFGenerator(model, tok, HFGeneratorConfig(seed=99)).generate(prompts, params)
    other = HFGenerator(model, tok).generate(prompts, dataclasses.replace(params, seed=124))
    ids = lambda out: [[g.token_ids for g in grp] for grp in out]  # noqa: E731
    assert ids(first) == ids(again)
    assert ids(first) != ids(other)
    # Without a per-call seed the back end's own stream (config.seed) makes a run reproducible.
    unseeded = dataclasses.replace(params, seed=None)
    run_a = ids(HFGenerator(model, tok).generate(prompts, unseeded))
    gen_b = HFGenerator(model, tok)
    assert run_a == ids(gen_b.generate(prompts, unseeded))
    assert ids(gen_b.generate(prompts, unseeded)) != run_a  # the stream advances between calls


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(n=2, temperature=1.0, max_tokens=8, seed=3),
        SamplingParams(n=2, temperature=0.7, max_tokens=8, seed=4),
        SamplingParams(n=2, temperature=1.3, top_k=20, top_p=0.9, max_tokens=8, seed=5),
    ],
    ids=["t1", "t0.7", "t1.3-topk-topp"],
)
def test_logprobs_match_teacher_forced_forward(tiny, prompts, params):
    """The sampler's logprobs equal a full-sequence forward pass at the same temperature (and filters)."""
    model, tok = tiny
    out = HFGenerator(model, tok).generate(prompts, params)
    for prompt, group in zip(prompts, out):
        for g in group:
            ref = teacher_forced_logprobs(model, prompt, g.token_ids, params=params)
            assert torch.allclose(torch.tensor(g.logprobs), ref, atol=1e-4), (g.logprobs, ref.tolist())


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(n=4, top_k=20, max_tokens=8, seed=5),
        SamplingParams(n=4, top_p=0.7, max_tokens=8, seed=6),
    ],
    ids=["top_k20", "top_p0.7"],
)
def test_truncated_sampling_is_not_the_policy_distribution(tiny, prompts, params):
    """With top-k/top-p the reported log-probs are the truncated distribution's (what was sampled), above
    the full distribution the trainer scores by -log(kept mass): the generator's samples are then not the
    policy's own, so the trainer recomputes and corrects (tests/rl/test_is_correction.py)."""
    model, tok = tiny
    gen = HFGenerator(model, tok)
    assert gen.samples_trained_module and not samples_policy_distribution(gen, params)
    gaps = []
    for prompt, group in zip(prompts, gen.generate(prompts, params)):
        for g in group:
            full = teacher_forced_logprobs(model, prompt, g.token_ids, temperature=params.temperature)
            gap = torch.tensor(g.logprobs) - full  # [T]: -log of the mass top-k/top-p kept, >= 0
            assert bool((gap > -1e-4).all()), gap
            gaps.append(float(gap.max()))
    assert max(gaps) > 0.1


def test_untruncated_sampling_is_the_policy_distribution(tiny, prompts):
    """top_k=0, top_p=1: the sampler's log-probs are the trainer's full-distribution ones to 1e-4."""
    model, tok = tiny
    gen = HFGenerator(model, tok)
    params = SamplingParams(n=4, temperature=0.8, max_tokens=8, seed=7)
    assert samples_policy_distribution(gen, params)
    greedy = SamplingParams(temperature=0.0, top_k=5)
    assert samples_policy_distribution(gen, greedy)  # greedy truncates nothing
    for prompt, group in zip(prompts, gen.generate(prompts, params)):
        for g in group:
            full = teacher_forced_logprobs(model, prompt, g.token_ids, temperature=0.8)
            assert torch.allclose(torch.tensor(g.logprobs), full, atol=1e-4)


def test_greedy_logprobs_are_untempered(tiny, prompts):
    model, tok = tiny
    out = HFGenerator(model, tok).generate(prompts[:1], SamplingParams(temperature=0.0, max_tokens=6))
    g = out[0][0]
    ref = teacher_forced_logprobs(model, prompts[0], g.token_ids, temperature=1.0)
    assert torch.allclose(torch.tensor(g.logprobs), ref, atol=1e-4)


def test_eos_stops_with_stop_reason(tiny, prompts):
    model, tok = tiny
    greedy = SamplingParams(temperature=0.0, max_tokens=8)
    free = HFGenerator(model, tok).generate(prompts[:1], greedy)[0][0].token_ids
    # Declare the third greedy token an end-of-sequence id: generation must stop right after it.
    model.generation_config.eos_token_id = free[2]
    try:
        g = HFGenerator(model, tok).generate(prompts[:1], greedy)[0][0]
    finally:
        model.generation_config.eos_token_id = tok.eos_token_id
    first = free.index(free[2])
    assert g.token_ids == free[: first + 1]
    assert g.finish_reason == "stop"


def test_stop_string_truncates_after_match(tiny, prompts):
    model, tok = tiny
    greedy = SamplingParams(temperature=0.0, max_tokens=12)
    free = HFGenerator(model, tok).generate(prompts[:1], greedy)[0][0]
    text = free.text
    assert len(text) >= 4, text
    stop = text[2:4]
    g = HFGenerator(model, tok).generate(prompts[:1], dataclasses.replace(greedy, stop=(stop, "never!")))[0][
        0
    ]
    assert g.finish_reason == "stop"
    assert g.text == text[: text.find(stop) + len(stop)]
    assert free.token_ids[: len(g.token_ids)] == g.token_ids
    assert stop in tok.decode(list(g.token_ids), skip_special_tokens=True)
    assert stop not in tok.decode(list(g.token_ids[:-1]), skip_special_tokens=True)


def test_stop_string_completed_late_in_a_long_sample(tiny, prompts):
    """The stop check looks at a tail of tokens: a match far from the start must still be found."""
    model, tok = tiny
    sampled = SamplingParams(max_tokens=40, seed=3)  # seeded: the same tokens again up to the stop
    free = HFGenerator(model, tok).generate(prompts[1:2], sampled)[0][0].token_ids
    for k in range(20, len(free)):
        # the generator matches stop strings on the text it returns: special tokens skipped
        prev = tok.decode(list(free[:k]), skip_special_tokens=True)
        cur = tok.decode(list(free[: k + 1]), skip_special_tokens=True)
        if len(cur) >= 2 and cur[-2:] not in prev:
            break
    else:
        raise AssertionError(f"no 2-character string first completed after token 20 in {free}")
    g = HFGenerator(model, tok).generate(prompts[1:2], dataclasses.replace(sampled, stop=(cur[-2:],)))[0][0]
    assert g.finish_reason == "stop" and g.token_ids == free[: k + 1]
    assert g.text == cur


def test_restores_train_mode_and_records_no_grad(tiny, prompts):
    model, tok = tiny
    model.train()
    try:
        HFGenerator(model, tok).generate(prompts[:1], SamplingParams(max_tokens=3, seed=0))
        assert model.training
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()


def test_empty_prompt_is_rejected(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        HFGenerator(model, tok).generate([[]], SamplingParams())


def test_filter_logits_top_k_then_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    keep = lambda **kw: torch.isfinite(filter_logits(logits, SamplingParams(**kw)))[0].tolist()  # noqa: E731
    assert keep(top_p=0.5) == [True, False, False, False]  # mass above token 1 is 0.5, not < 0.5
    assert keep(top_p=0.81) == [True, True, True, False]
    assert keep(top_k=2) == [True, True, False, False]
    assert keep(top_k=3, top_p=0.6) == [True, True, False, False]  # top-p on the renormalised top-3
    assert keep() == [True] * 4


def test_inverse_cdf_sampling_matches_the_distribution_and_never_draws_masked_tokens():
    import torch

    from rewardkit.generation.hf import _inverse_cdf_sample

    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 12, generator=gen) * 2, -1)
    probs[:, 5] = 0.0  # a token top-k/top-p removed
    probs = probs / probs.sum(-1, keepdim=True)
    draws = 40_000
    tokens = _inverse_cdf_sample(probs.repeat_interleave(draws, 0), gen).view(3, draws)  # [3, draws]
    freq = torch.zeros(3, 12).scatter_add_(1, tokens, torch.ones(3, draws)) / draws
    assert freq[:, 5].sum() == 0
    # 5 standard errors of a binomial frequency at p = 0.25 with 40k draws is ~0.011
    assert (freq - probs).abs().max() < 0.011
