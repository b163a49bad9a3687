"""rewardkit.rl.algorithms: hand-computed values, slow reference loops vs the vectorised code, gradient
accumulation, edge cases (groups of one, equal rewards, empty masks), registries, presets and their docs."""

from __future__ import annotations

import inspect
import itertools
import math
import pathlib
import random

import pytest

torch = pytest.importorskip("torch", reason="rewardkit.rl needs torch (pip install rewardkit[train])")

from rewardkit.rl import algorithms as A  # noqa: E402

OUTCOME_ESTIMATORS = ["grpo", "grpo_batch_std", "dr_grpo", "rloo", "pass_at_k", "reinforce_pp"]
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "algorithms.md"


def sequence_advantages(name: str, rewards, groups, **cfg_fields) -> torch.Tensor:
    """Advantage [B] of an outcome estimator on one-token responses (so token = sequence)."""
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    mask = torch.ones(len(rewards), 1, dtype=torch.bool)
    cfg = A.AlgorithmConfig(advantage=name, **cfg_fields)
    adv, _ = A.ADVANTAGES[name](A.token_rewards(rewards, mask, cfg), mask, torch.as_tensor(groups), None, cfg)
    return adv[:, 0]


def assert_close(actual, expected, tol=1e-5):
    torch.testing.assert_close(
        torch.as_tensor(actual).double(), torch.as_tensor(expected).double(), atol=tol, rtol=tol
    )


# ---------------------------------------------------------------------------------------------------------------
# Outcome advantages: hand-computed values


def test_grpo_hand_computed():
    std = math.sqrt((4 * 0.25) / 3)  # unbiased std of [1, 0, 0, 1]
    expected = [0.5 / (std + 1e-6), -0.5 / (std + 1e-6)] * 2
    assert_close(sequence_advantages("grpo", [1, 0, 1, 0], [0, 0, 0, 0]), expected)


def test_std_is_unbiased():
    # G = 2, rewards {0, 1}: unbiased std = 1/sqrt(2) -> +-0.7071; a biased std (0.5) would give +-1.
    assert_close(sequence_advantages("grpo", [1, 0], [0, 0], adv_eps=0.0), [math.sqrt(0.5), -math.sqrt(0.5)])


def test_eps_is_added_to_std_not_variance():
    # std = 1e-6 / sqrt(2); (r - mean) / (std + eps) = 5e-7 / (7.07e-7 + 1e-6) = 0.2929.
    # eps inside the square root would give 5e-7 / sqrt(2.5e-13 + 1e-6) = 5e-4.
    adv = sequence_advantages("grpo", [1e-6, 0.0], [0, 0], adv_eps=1e-6)
    expected = 5e-7 / (1e-6 / math.sqrt(2) + 1e-6)
    assert_close(adv, [expected, -expected], tol=1e-4)


def test_dr_grpo_hand_computed():
    assert_close(
        sequence_advantages("dr_grpo", [1, 0, 0, 1, 3, 1], [0, 0, 0, 0, 1, 1]), [0.5, -0.5, -0.5, 0.5, 1, -1]
    )


def test_rloo_hand_computed():
    # r_i minus the mean of the other samples: [1,0,0,1] -> 1 - 1/3, 0 - 2/3; [3,1,2] -> 3-1.5, 1-2.5, 2-2.
    adv = sequence_advantages("rloo", [1, 0, 0, 1, 3, 1, 2], [0, 0, 0, 0, 1, 1, 1])
    assert_close(adv, [2 / 3, -2 / 3, -2 / 3, 2 / 3, 1.5, -1.5, 0.0])


def test_reinforce_pp_hand_computed():
    # Two responses of 2 and 1 policy tokens, rewards 1 and 0, gamma 1: token returns [1, 1 | 0].
    # Batch whitening over the three tokens: mean 2/3, unbiased std sqrt(1/3).
    mask = torch.tensor([[True, True], [True, False]])
    cfg = A.preset("reinforce_pp", adv_eps=0.0)
    rewards = A.token_rewards(torch.tensor([1.0, 0.0]), mask, cfg)
    adv, returns = A.ADVANTAGES["reinforce_pp"](rewards, mask, torch.tensor([0, 0]), None, cfg)
    s = math.sqrt(1 / 3)
    assert_close(adv, [[(1 / 3) / s, (1 / 3) / s], [(-2 / 3) / s, 0.0]])
    assert_close(returns, [[1.0, 1.0], [0.0, 0.0]])


def test_gae_hand_computed():
    # gamma .9, lam .8, rewards [0, 0, 1], values [.5, .6, .7]:
    # delta = [0 + .9*.6 - .5, 0 + .9*.7 - .6, 1 - .7] = [.04, .03, .3]; A_t = delta_t + .72 A_{t+1}
    cfg = A.AlgorithmConfig(advantage="gae", gamma=0.9, lam=0.8, whiten_advantages=False)
    mask = torch.ones(1, 3, dtype=torch.bool)
    values = torch.tensor([[0.5, 0.6, 0.7]])
    adv, returns = A.ADVANTAGES["gae"](torch.tensor([[0.0, 0.0, 1.0]]), mask, torch.tensor([0]), values, cfg)
    a2 = 0.3
    a1 = 0.03 + 0.72 * a2
    a0 = 0.04 + 0.72 * a1
    assert_close(adv, [[a0, a1, a2]])
    assert_close(returns, [[a0 + 0.5, a1 + 0.6, a2 + 0.7]])


# ---------------------------------------------------------------------------------------------------------------
# Outcome advantages: slow reference loops and edge cases


def reference_outcome(name: str, rewards: list[float], groups: list[int], eps: float) -> list[float]:
    """The textbook formulas, one sample at a time, in float64."""
    out = []
    batch_mean = sum(rewards) / len(rewards)
    batch_std = math.sqrt(sum((x - batch_mean) ** 2 for x in rewards) / (len(rewards) - 1))
    for r, g in zip(rewards, groups):
        mates = [x for x, h in zip(rewards, groups) if h == g]
        n = len(mates)
        mean = sum(mates) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in mates) / (n - 1)) if n > 1 else 0.0
        if max(mates) == min(mates):
            out.append(0.0)
        elif name == "grpo":
            out.append((r - mean) / (std + eps))
        elif name == "grpo_batch_std":
            out.append((r - mean) / (batch_std + eps))
        elif name == "dr_grpo":
            out.append(r - mean)
        else:  # rloo
            out.append(r - (sum(mates) - r) / (n - 1))
    return out


@pytest.mark.parametrize("name", ["grpo", "grpo_batch_std", "dr_grpo", "rloo"])
def test_group_estimators_match_reference_loop(name):
    rng = random.Random(0)
    rewards, groups = [], []
    for gid in rng.sample(range(1000), 12):  # non-contiguous ids, ragged group sizes, some all-equal groups
        size = rng.choice([1, 2, 3, 5, 8])
        constant = rng.random() < 0.3
        rewards += [0.5 if constant else rng.choice([0.0, 0.25, 1.0, rng.random()]) for _ in range(size)]
        groups += [gid] * size
    order = list(range(len(rewards)))
    rng.shuffle(order)  # groups need not be contiguous in the batch
    rewards, groups = [rewards[i] for i in order], [groups[i] for i in order]
    expected = reference_outcome(name, rewards, groups, eps=1e-6)
    assert_close(sequence_advantages(name, rewards, groups), expected, tol=1e-5)


def reference_pass_at_k(rewards: list[float], k: int, eps: float) -> list[float]:
    """Pass@k / max@k advantages of one group by enumeration: every k-subset scored by its best reward."""
    n = len(rewards)
    if max(rewards) == min(rewards):
        return [0.0] * n
    subsets = list(itertools.combinations(range(n), min(k, n)))
    scores = [max(rewards[j] for j in subset) for subset in subsets]
    mean = sum(scores) / len(scores)
    sigma = math.sqrt(sum((x - mean) ** 2 for x in scores) / len(scores))  # over subsets: population std
    out = []
    for i in range(n):
        mine = [score for subset, score in zip(subsets, scores) if i in subset]
        out.append((sum(mine) / len(mine) - mean) / (sigma + eps))
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_pass_at_k_matches_enumeration_of_subsets(k):
    rng = random.Random(k)
    rewards, groups, expected = [], [], []
    for gid in rng.sample(range(1000), 8):  # ragged groups, some smaller than k, ties, continuous rewards
        size = rng.choice([1, 2, 4, 6, 8])
        group = [rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(size)]
        rewards, groups, expected = (
            rewards + group,
            groups + [gid] * size,
            expected + reference_pass_at_k(group, k, 1e-6),
        )
    adv = sequence_advantages("pass_at_k", rewards, groups, pass_k=k)
    assert_close(adv, expected, tol=1e-6)


@pytest.mark.parametrize("n", [4, 8])
def test_pass_at_k_on_binary_rewards_is_the_papers_closed_form(n):
    # Chen et al. 2025 (arXiv 2508.10751), analytical derivation: c of n correct, R = 1 - C(n-c, k) / C(n, k)
    for c in range(n + 1):
        for k in range(1, n + 1):
            expected = [0.0] * n  # all right or all wrong: no signal
            if 0 < c < n:
                rho = 1 - math.comb(n - c, k) / math.comb(n, k)
                sigma = math.sqrt(rho * (1 - rho))
                right = (1 - rho) / (sigma + 1e-6)
                wrong = (1 - rho - math.comb(n - c - 1, k - 1) / math.comb(n - 1, k - 1)) / (sigma + 1e-6)
                expected = [right] * c + [wrong] * (n - c)
            adv = sequence_advantages("pass_at_k", [1.0] * c + [0.0] * (n - c), [0] * n, pass_k=k)
            assert_close(adv, expected, tol=1e-6)


def test_pass_at_1_is_grpo_with_the_population_std():
    rewards, groups = [0.0, 1.0, 0.25, 1.0, 0.3, 0.9], [0, 0, 0, 0, 1, 1]
    grpo = sequence_advantages("grpo", rewards, groups, adv_eps=0.0)
    sizes = torch.tensor([4, 4, 4, 4, 2, 2], dtype=torch.float32)
    assert_close(
        sequence_advantages("pass_at_k", rewards, groups, adv_eps=0.0), grpo * ((sizes / (sizes - 1)).sqrt())
    )


def reference_reinforce_pp(rewards, mask, groups, gamma, baseline, eps):
    """REINFORCE++ with python loops: per-row reward-to-go over policy tokens, then whitening over the batch."""
    B, T = len(mask), len(mask[0])
    outcome = list(rewards)
    if baseline:
        outcome = [
            r - sum(x for x, h in zip(rewards, groups) if h == g) / groups.count(g)
            for r, g in zip(rewards, groups)
        ]
    returns = [[0.0] * T for _ in range(B)]
    for i in range(B):
        running = 0.0
        last = max(t for t in range(T) if mask[i][t])
        for t in reversed(range(T)):
            if mask[i][t]:
                running = (outcome[i] if t == last else 0.0) + gamma * running
                returns[i][t] = running
    flat = [returns[i][t] for i in range(B) for t in range(T) if mask[i][t]]
    mean = sum(flat) / len(flat)
    std = math.sqrt(sum((x - mean) ** 2 for x in flat) / (len(flat) - 1))
    return [[(returns[i][t] - mean) / (std + eps) if mask[i][t] else 0.0 for t in range(T)] for i in range(B)]


@pytest.mark.parametrize("baseline", [False, True])
@pytest.mark.parametrize("gamma", [0.9, 1.0])  # 1.0 takes the vectorised reverse-cumsum path
def test_reinforce_pp_matches_reference_loop(baseline, gamma):
    gen = torch.Generator().manual_seed(1)
    B, T = 8, 7
    mask = torch.rand(B, T, generator=gen) < 0.7  # interior gaps: environment tokens of multi-turn rollouts
    mask[:, 0] = True
    rewards = torch.rand(B, generator=gen)
    groups = [0, 0, 0, 1, 1, 2, 2, 2]
    cfg = A.preset("reinforce_pp", gamma=gamma, group_baseline=baseline)
    adv, _ = A.ADVANTAGES["reinforce_pp"](
        A.token_rewards(rewards, mask, cfg), mask, torch.tensor(groups), None, cfg
    )
    expected = reference_reinforce_pp(rewards.tolist(), mask.tolist(), groups, gamma, baseline, cfg.adv_eps)
    assert_close(adv, expected, tol=1e-5)


def reference_gae(rewards, values, mask, gamma, lam):
    """Textbook GAE on each row's policy tokens only (environment tokens removed), scattered back."""
    out = [[0.0] * len(row) for row in mask]
    for i, row in enumerate(mask):
        idx = [t for t, m in enumerate(row) if m]
        r, v = [rewards[i][t] for t in idx], [values[i][t] for t in idx]
        running = 0.0
        for k in reversed(range(len(idx))):
            next_v = v[k + 1] if k + 1 < len(idx) else 0.0
            running = r[k] + gamma * next_v - v[k] + gamma * lam * running
            out[i][idx[k]] = running
    return out


def test_gae_matches_reference_loop_with_environment_tokens():
    gen = torch.Generator().manual_seed(2)
    B, T = 5, 9
    mask = torch.rand(B, T, generator=gen) < 0.6
    mask[:, 0] = True
    rewards = torch.randn(B, T, generator=gen) * mask  # per-token rewards, e.g. KL penalties plus an outcome
    values = torch.randn(B, T, generator=gen)
    cfg = A.AlgorithmConfig(advantage="gae", gamma=0.95, lam=0.9, whiten_advantages=False)
    adv, returns = A.ADVANTAGES["gae"](rewards, mask, torch.arange(B), values, cfg)
    expected = reference_gae(rewards.tolist(), values.tolist(), mask.tolist(), 0.95, 0.9)
    assert_close(adv, expected, tol=1e-5)
    assert_close(returns, torch.where(mask, torch.tensor(expected) + values, 0.0), tol=1e-5)


def test_gae_whitens_and_needs_values():
    gen = torch.Generator().manual_seed(3)
    mask = torch.rand(4, 6, generator=gen) < 0.8
    mask[:, 0] = True
    rewards, values = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    cfg = A.preset("ppo")
    adv, _ = A.ADVANTAGES["gae"](rewards, mask, torch.arange(4), values, cfg)
    assert abs(float(A.masked_mean(adv, mask))) < 1e-5
    assert_close(adv[mask].std(), 1.0, tol=1e-4)
    assert (adv[~mask] == 0).all()
    with pytest.raises(ValueError, match="needs `values`"):
        A.ADVANTAGES["gae"](rewards, mask, torch.arange(4), None, cfg)


@pytest.mark.parametrize("name", OUTCOME_ESTIMATORS)
def test_group_of_one_gets_zero_advantage(name):
    adv = sequence_advantages(name, [0.7, 1.0, 0.0], [5, 6, 6])
    assert torch.isfinite(adv).all()
    if name != "reinforce_pp":  # reinforce_pp whitens over the batch: no per-group notion of "alone"
        assert adv[0] == 0.0
    assert sequence_advantages(name, [0.7], [0]).tolist() == [0.0]  # a batch of one sample


@pytest.mark.parametrize("name", OUTCOME_ESTIMATORS)
@pytest.mark.parametrize("value", [0.1, 0.7, 1 / 3, 1e8, 0.0])
def test_all_equal_rewards_give_exactly_zero(name, value):
    # Values like 0.1 do not survive mean = sum / n exactly in floating point; the result must still be exactly 0.
    adv = (
        sequence_advantages(name, [value] * 7, [0] * 7, group_baseline=True)
        if name == "reinforce_pp"
        else None
    )
    adv = sequence_advantages(name, [value] * 7, [0] * 7) if adv is None else adv
    assert adv.tolist() == [0.0] * 7


def test_zero_group_std_elsewhere_does_not_affect_other_groups():
    adv = sequence_advantages("grpo", [0.3, 0.3, 1.0, 0.0], [0, 0, 1, 1])
    assert adv[:2].tolist() == [0.0, 0.0]
    assert adv[2] > 0.7 and adv[3] < -0.7


def test_empty_batch_and_empty_masks():
    mask = torch.zeros(3, 4, dtype=torch.bool)
    cfg = A.preset("grpo")
    rewards = A.token_rewards(torch.tensor([1.0, 0.0, 1.0]), mask, cfg)
    assert (rewards == 0).all()  # no policy token: nowhere to put the reward
    for name in A.ADVANTAGES.names():
        values = torch.zeros(3, 4)
        adv, returns = A.ADVANTAGES[name](rewards, mask, torch.tensor([0, 0, 1]), values, cfg)
        assert (adv == 0).all() and (returns == 0).all(), name
    empty = torch.zeros(0, 5, dtype=torch.bool)
    for name in OUTCOME_ESTIMATORS:
        adv, _ = A.ADVANTAGES[name](torch.zeros(0, 5), empty, torch.zeros(0, dtype=torch.long), None, cfg)
        assert adv.shape == (0, 5)


# ---------------------------------------------------------------------------------------------------------------
# Rewards, whitening


def test_token_rewards_on_last_policy_token_and_kl_penalty():
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)  # row 1: multi-turn
    out = A.token_rewards(torch.tensor([1.0, 2.0, 3.0]), mask, A.preset("grpo"))
    assert out.tolist() == [[0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    cfg = A.preset("ppo", kl_coef=0.5)  # k1 in the reward
    old, ref = torch.full((3, 4), -1.0), torch.full((3, 4), -1.5)  # k1 = 0.5 per token
    out = A.token_rewards(torch.tensor([1.0, 2.0, 3.0]), mask, cfg, old, ref)
    assert_close(out, [[-0.25, 0.75, 0, 0], [-0.25, 0, 1.75, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="needs old_logprobs and ref_logprobs"):
        A.token_rewards(torch.tensor([1.0, 2.0, 3.0]), mask, cfg)


def test_masked_whiten():
    x = torch.tensor([[1.0, 2.0, 1e9], [3.0, 4.0, 5.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    out = A.masked_whiten(x, mask, eps=0.0)
    assert_close(out[mask].mean(), 0.0)
    assert_close(out[mask].std(), 1.0)
    assert out[0, 2] == 0.0
    # 7 copies of 0.1: sum / 7 != 0.1 in float32, so only the explicit all-equal rule gives exact zeros
    assert (A.masked_whiten(torch.full((1, 7), 0.1), torch.ones(1, 7, dtype=torch.bool), eps=1e-6) == 0).all()
    assert (A.masked_whiten(x, torch.zeros_like(mask), eps=1e-6) == 0).all()


# ---------------------------------------------------------------------------------------------------------------
# Policy loss


def test_ppo_clip_hand_values():
    ratio = torch.tensor([[1.5, 0.5, 1.1, 5.0, 1.5]])
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0, -1.0]])
    logprobs = ratio.log().requires_grad_()
    old, mask = torch.zeros(1, 5), torch.ones(1, 5, dtype=torch.bool)
    cfg = A.AlgorithmConfig(clip_eps_low=0.2, clip_eps_high=0.28)
    loss, stats = A.POLICY_LOSSES["ppo_clip"](logprobs, old, adv, mask, cfg)
    # 1.5*1 clipped at 1.28; 0.5 with A<0 clipped at 0.8; 1.1 inside; 5 with A<0: -min(-5, -1.28) = 5; 1.5 with A<0: 1.5
    assert_close(loss, [[-1.28, 0.8, -1.1, 5.0, 1.5]])
    assert stats["clip_frac_high"].tolist() == [[1, 0, 0, 0, 0]]
    assert stats["clip_frac_low"].tolist() == [[0, 1, 0, 0, 0]]
    loss.sum().backward()
    # Clipped tokens get no gradient; the others get -A * ratio (d rho / d logp = rho).
    assert_close(logprobs.grad, [[0.0, 0.0, -1.1, 5.0, 1.5]])

    dual = A.AlgorithmConfig(clip_eps_low=0.2, clip_eps_high=0.28, dual_clip_c=3.0)
    loss, stats = A.POLICY_LOSSES["ppo_clip"](ratio.log(), old, adv, mask, dual)
    assert_close(loss, [[-1.28, 0.8, -1.1, 3.0, 1.5]])  # dual clip caps the A<0 loss at c * |A| = 3
    assert stats["dual_clip_frac"].tolist() == [[0, 0, 0, 1, 0]]


def test_ppo_clip_on_policy_is_the_policy_gradient():
    logprobs = torch.randn(3, 4).requires_grad_()
    adv = torch.randn(3, 4)
    loss, _ = A.POLICY_LOSSES["ppo_clip"](
        logprobs, logprobs.detach(), adv, torch.ones(3, 4), A.preset("dapo")
    )
    loss.sum().backward()
    assert_close(logprobs.grad, -adv)


# ---------------------------------------------------------------------------------------------------------------
# Aggregation and gradient accumulation


def test_aggregations_hand_values():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0], [7.0, 7.0, 7.0]])
    mask = torch.tensor(
        [[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool
    )  # row 2: fully masked, not counted
    norm = A.StepNorm.from_masks([mask], constant=10)
    assert (norm.num_tokens, norm.num_seqs) == (4, 2)
    assert_close(A.AGGREGATIONS["token_mean"](loss, mask, norm), (1 + 2 + 3 + 4) / 4)
    assert_close(A.AGGREGATIONS["seq_mean_token_mean"](loss, mask, norm), (2 + 4) / 2)
    assert_close(A.AGGREGATIONS["seq_mean_token_sum"](loss, mask, norm), (6 + 4) / 2)
    assert_close(A.AGGREGATIONS["seq_mean_token_sum_norm"](loss, mask, norm), (6 + 4) / (2 * 10))
    with pytest.raises(ValueError, match="constant"):
        A.AGGREGATIONS["seq_mean_token_sum_norm"](loss, mask, A.StepNorm.from_masks([mask]))


def make_step(seed=0, B=6, T=9, V=11):
    """A fake optimizer step: logits as the parameter, sampled tokens, ragged masks, old/ref log-probs."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=gen).requires_grad_()
    tokens = torch.randint(V, (B, T), generator=gen)
    lengths = torch.tensor([9, 2, 5, 1, 7, 3])
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    mask[4, 2] = False  # an environment token inside a multi-turn response
    old = torch.randn(B, T, generator=gen) * 0.3 - 2.0
    ref = torch.randn(B, T, generator=gen) * 0.3 - 2.0
    adv = torch.randn(B, T, generator=gen)
    return logits, tokens, mask, old, ref, adv


def step_loss(cfg, logits, tokens, mask, old, ref, adv, rows, norm):
    """The loss of micro-batch `rows`, padded to its own longest response as a trainer would."""
    width = int(mask[rows].any(0).nonzero().max()) + 1
    z = logits[rows, :width]
    logprobs = A.logprobs_from_logits(z, tokens[rows, :width], chunk_size=5)
    entropy = A.entropy_from_logits(z, chunk_size=7)
    m = mask[rows, :width]
    return A.policy_loss(
        logprobs, old[rows, :width], adv[rows, :width], m, norm, cfg, ref[rows, :width], entropy
    )


def accumulated_grad(cfg, micro_batches, step_norm: bool):
    logits, tokens, mask, old, ref, adv = make_step()
    masks = [mask[rows] for rows in micro_batches]
    metrics_sum: dict[str, float] = {}
    for rows in micro_batches:
        norm = A.StepNorm.from_masks(masks if step_norm else [mask[rows]], constant=16)
        loss, metrics = step_loss(cfg, logits, tokens, mask, old, ref, adv, rows, norm)
        loss.backward()
        for k, v in metrics.items():
            metrics_sum[k] = metrics_sum.get(k, 0.0) + float(v)
    return logits.grad, metrics_sum


@pytest.mark.parametrize("loss", ["ppo_clip", "gspo", "gspo_token", "cispo", "sapo"])
@pytest.mark.parametrize(
    "agg", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"]
)
def test_gradient_accumulation_equals_full_batch(agg, loss):
    cfg = A.AlgorithmConfig(
        loss_agg=agg, policy_loss=loss, clip_eps_high=0.28, kl_coef=0.1, kl_estimator="k3", entropy_coef=0.01
    )
    full_grad, full_metrics = accumulated_grad(cfg, [torch.arange(6)], step_norm=True)
    micro_grad, micro_metrics = accumulated_grad(
        cfg, [torch.tensor([0, 1]), torch.tensor([2, 3, 4]), torch.tensor([5])], True
    )
    torch.testing.assert_close(micro_grad, full_grad, rtol=1e-5, atol=1e-7)
    assert full_metrics.keys() == micro_metrics.keys()
    for k in full_metrics:  # logged metrics add up over micro-batches as well
        assert math.isclose(micro_metrics[k], full_metrics[k], rel_tol=1e-5, abs_tol=1e-7), k


def test_per_micro_batch_normalisation_would_be_wrong():
    # The bug the StepNorm design prevents: normalising each micro-batch by its own token count.
    cfg = A.AlgorithmConfig(loss_agg="token_mean")
    full_grad, _ = accumulated_grad(cfg, [torch.arange(6)], step_norm=True)
    wrong_grad, _ = accumulated_grad(cfg, [torch.tensor([0, 1]), torch.tensor([2, 3, 4, 5])], step_norm=False)
    assert not torch.allclose(wrong_grad, full_grad, rtol=1e-3)


def test_empty_mask_gives_zero_loss_and_gradient():
    logprobs = torch.randn(2, 3).requires_grad_()
    values = torch.randn(2, 3).requires_grad_()
    mask = torch.zeros(2, 3, dtype=torch.bool)
    norm = A.StepNorm.from_masks([mask], constant=8)
    assert (norm.num_tokens, norm.num_seqs) == (0, 0)
    for agg in A.AGGREGATIONS.names():
        cfg = A.AlgorithmConfig(loss_agg=agg, kl_coef=0.1, entropy_coef=0.1)
        loss, metrics = A.policy_loss(logprobs, torch.zeros(2, 3), torch.ones(2, 3), mask, norm, cfg,
                                      torch.zeros(2, 3), torch.ones(2, 3))  # fmt: skip
        vloss, _ = A.value_loss(values, torch.zeros(2, 3), torch.ones(2, 3), mask, norm, cfg)
        (loss + vloss).backward()
        assert loss.item() == 0.0 and vloss.item() == 0.0, agg
        assert all(torch.isfinite(v) for v in metrics.values())
        assert (logprobs.grad == 0).all() and (values.grad == 0).all()


def test_kl_in_loss_needs_reference():
    with pytest.raises(ValueError, match="needs ref_logprobs"):
        A.policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2),
                      A.StepNorm(2, 1), A.preset("grpo"))  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# KL, value loss, entropy, log-probs


def test_kl_estimators_hand_values():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])  # r = pi_ref / pi = 0.5
    assert_close(A.KL_ESTIMATORS["k1"](logp, ref), [math.log(2)])
    assert_close(A.KL_ESTIMATORS["k2"](logp, ref), [0.5 * math.log(2) ** 2])
    assert_close(A.KL_ESTIMATORS["k3"](logp, ref), [(0.5 - 1) + math.log(2)])


def categorical(seed):
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(6, generator=gen, dtype=torch.float64).requires_grad_()
    ref = torch.log_softmax(torch.randn(6, generator=gen, dtype=torch.float64), -1)
    return theta, ref


def test_kl_estimators_expectations_exact():
    theta, ref = categorical(0)
    logp = torch.log_softmax(theta, -1).detach()
    p = logp.exp()
    kl = (p * (logp - ref)).sum()
    assert_close((p * A.KL_ESTIMATORS["k1"](logp, ref)).sum(), kl, tol=1e-10)  # unbiased
    assert_close((p * A.KL_ESTIMATORS["k3"](logp, ref)).sum(), kl, tol=1e-10)  # unbiased
    assert (A.KL_ESTIMATORS["k3"](logp, ref) >= 0).all() and (A.KL_ESTIMATORS["k2"](logp, ref) >= 0).all()


def expected_loss_grad(estimator, theta, ref):
    """Gradient of E_{x ~ pi (fixed sample weights)}[k(x)]: what a KL loss term contributes on average."""
    logp = torch.log_softmax(theta, -1)
    (grad,) = torch.autograd.grad((logp.exp().detach() * A.KL_ESTIMATORS[estimator](logp, ref)).sum(), theta)
    return grad


def test_kl_loss_gradients_in_expectation():
    # Documented in the module: k2's loss gradient is that of KL(pi || ref), k3's that of KL(ref || pi), k1's is 0.
    theta, ref = categorical(1)
    logp = torch.log_softmax(theta, -1)
    (reverse,) = torch.autograd.grad((logp.exp() * (logp - ref)).sum(), theta, retain_graph=True)
    (forward,) = torch.autograd.grad((ref.exp() * (ref - logp)).sum(), theta)
    assert_close(expected_loss_grad("k2", theta, ref), reverse, tol=1e-10)
    assert_close(expected_loss_grad("k3", theta, ref), forward, tol=1e-10)
    assert_close(expected_loss_grad("k1", theta, ref), torch.zeros(6), tol=1e-10)


def test_value_loss_hand_values():
    values = torch.tensor([[1.0, 0.0]]).requires_grad_()
    old, returns = torch.tensor([[0.5, 0.5]]), torch.tensor([[2.0, 0.4]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, metrics = A.value_loss(
        values, old, returns, mask, A.StepNorm(2, 1), A.preset("ppo", value_clip=0.2)
    )
    # token 0: clipped 0.7 -> max((1-2)^2, (0.7-2)^2) = 1.69; token 1: clipped 0.3 -> max(0.16, 0.01) = 0.16
    assert_close(loss, 0.5 * (1.69 + 0.16) / 2)
    assert_close(metrics["value_clip_frac"], 0.5)
    loss.backward()
    assert_close(values.grad, [[0.0, 0.5 * 2 * (0.0 - 0.4) / 2]])  # the clipped branch carries no gradient


def test_logprobs_and_entropy_from_logits():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 5, 17, generator=gen)
    tokens = torch.randint(17, (3, 5), generator=gen)
    dist = torch.distributions.Categorical(logits=logits)
    for chunk in [1, 4, 1000]:
        assert_close(A.logprobs_from_logits(logits, tokens, chunk_size=chunk), dist.log_prob(tokens))
        assert_close(A.entropy_from_logits(logits, chunk_size=chunk), dist.entropy())
    low = logits.bfloat16()
    assert A.entropy_from_logits(low).dtype == torch.float32
    assert A.logprobs_from_logits(low, tokens).dtype == torch.float32
    assert_close(A.entropy_from_logits(low), dist.entropy(), tol=3e-2)
    assert A.entropy_from_logits(torch.zeros(0, 4, 17)).shape == (0, 4)
    masked = torch.tensor([[0.0, 0.0, -math.inf, -math.inf]])  # vocabulary masked out, e.g. by top-k
    assert_close(A.entropy_from_logits(masked), [math.log(2)])
    assert_close(A.logprobs_from_logits(masked, torch.tensor([1])), [math.log(0.5)])


# ---------------------------------------------------------------------------------------------------------------
# Registries, config, presets, docs


@pytest.mark.parametrize("registry", [A.ADVANTAGES, A.POLICY_LOSSES, A.AGGREGATIONS, A.KL_ESTIMATORS])
def test_registry_signatures_are_uniform(registry):
    params = {name: list(inspect.signature(registry[name]).parameters) for name in registry.names()}
    assert len({tuple(p) for p in params.values()}) == 1, params


def test_registry_errors():
    reg = A.Registry("widget", "WIDGETS", "(x) -> y")
    reg.register("a")(lambda x: x)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda x: x)
    with pytest.raises(ValueError, match=r"unknown widget 'b'; known: a\. Add one with @WIDGETS\.register"):
        reg["b"]
    with pytest.raises(
        ValueError, match="known: dr_grpo, gae, grpo, grpo_batch_std, pass_at_k, reinforce_pp, rloo"
    ):
        A.ADVANTAGES["grpo_typo"]
    with pytest.raises(ValueError, match="already registered"):
        A.ADVANTAGES.register("grpo")(A.grpo_advantage)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"advantage": "nope"},
            "advantage: got 'nope', expected one of dr_grpo, gae, grpo, grpo_batch_std, pass_at_k, reinforce_pp",
        ),
        ({"loss_agg": "mean"}, "loss_agg: got 'mean', expected one of seq_mean_token_mean"),
        (
            {"kl_estimator": "k4"},
            r"kl_estimator: got 'k4', expected one of k1, k2, k3; add one with @KL_ESTIMATORS",
        ),
        ({"clip_eps_low": 1.5}, r"clip_eps_low: got 1.5, expected a value in \[0, 1\]"),
        ({"sapo_tau_pos": -1.0}, "sapo_tau_pos: got -1.0, expected > 0"),
        ({"pass_k": 0}, "pass_k: got 0, expected >= 1"),
        (
            {"policy_loss": "gspo_tok"},
            "policy_loss: got 'gspo_tok', expected one of cispo, gspo, gspo_token, ppo_clip, sapo",
        ),
        ({"dual_clip_c": 1.0}, "dual_clip_c: got 1.0, expected > 1"),
        ({"kl_coef": 0.1, "kl_estimator": "k1"}, "k1 as a loss term"),
        ({"lam": 1.5}, r"lam: got 1.5, expected a value in \[0, 1\]"),
    ],
)
def test_config_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        A.AlgorithmConfig(**fields)


def test_presets():
    assert sorted(A.ALGORITHM_PRESETS) == [
        "cispo", "dapo", "dr_grpo", "grpo", "gspo", "ppo", "reinforce_pp", "rloo", "sapo"
    ]  # fmt: skip
    configs = {name: A.preset(name) for name in A.ALGORITHM_PRESETS}
    assert [n for n, c in configs.items() if c.needs_values] == ["ppo"]
    assert [n for n, c in configs.items() if c.needs_reference] == ["grpo"]
    assert A.preset("dapo", clip_eps_high=0.3).clip_eps_high == 0.3
    with pytest.raises(ValueError, match="unknown algorithm 'trpo'; known: cispo, dapo, dr_grpo, grpo, gspo"):
        A.preset("trpo")
    with pytest.raises(ValueError, match="unknown algorithm option"):
        A.preset("grpo", clip_eps=0.3)


def docs_preset_table() -> dict[str, dict[str, str]]:
    lines = (
        DOCS.read_text()
        .split("<!-- presets:begin -->")[1]
        .split("<!-- presets:end -->")[0]
        .strip()
        .splitlines()
    )
    header = [c.strip(" `") for c in lines[0].strip("|").split("|")]
    rows = [[c.strip(" `") for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header[1:], row[1:])) for row in rows}


def test_docs_preset_table_matches_presets():
    if not DOCS.exists():
        pytest.skip(f"{DOCS} not found")
    table = docs_preset_table()
    assert sorted(table) == sorted(A.ALGORITHM_PRESETS)
    for name, row in table.items():
        cfg = A.preset(name)
        for field, text in row.items():
            value = getattr(cfg, field)
            assert text == (str(value).lower() if isinstance(value, bool) else str(value)), (name, field)


# ---------------------------------------------------------------------------------------------------------------
# Every preset end to end on a toy task


def toy_run(name: str, steps: int = 15, **overrides) -> tuple[float, float]:
    """Train a position-wise softmax policy (4 positions, 6 tokens) whose reward is the fraction of its policy
    tokens equal to token 2, using only this module: token rewards -> advantages -> 2 epochs of 2 accumulated
    micro-batches -> AdamW. Returns the probability of the target token before and after."""
    gen = torch.Generator().manual_seed(0)
    T, V, G, P, target = 4, 6, 8, 4, 2
    logits = torch.zeros(T, V, requires_grad=True)  # the policy
    values = torch.zeros(T, requires_grad=True)  # the critic, used by gae only
    ref_logp = torch.log_softmax(torch.zeros(T, V), -1)  # frozen reference
    cfg = A.preset(name, **overrides)
    opt = torch.optim.AdamW([logits, values], lr=0.1)
    group_ids = torch.arange(P).repeat_interleave(G)  # [B]
    positions = torch.arange(T).expand(G * P, T)  # [B, T]
    before = torch.softmax(logits, -1)[:, target].mean().item()
    for _ in range(steps):
        with torch.no_grad():
            tokens = torch.multinomial(
                torch.softmax(logits, -1), G * P, replacement=True, generator=gen
            ).T  # [B, T]
            mask = positions < torch.randint(1, T + 1, (G * P, 1), generator=gen)  # [B, T] ragged lengths
            reward = A.masked_mean((tokens == target).float(), mask, dim=-1)  # [B]
            old = torch.log_softmax(logits, -1)[positions, tokens]  # [B, T]
            ref = ref_logp[positions, tokens]
            old_values = values.expand(G * P, T).clone()
            rewards_t = A.token_rewards(reward, mask, cfg, old, ref)
            adv, returns = A.ADVANTAGES[cfg.advantage](rewards_t, mask, group_ids, old_values, cfg)
        for _epoch in range(2):
            norm = A.StepNorm.from_masks([mask], constant=T)
            for rows in torch.arange(G * P).chunk(2):
                logp_all = torch.log_softmax(logits, -1)
                logp = logp_all[positions[rows], tokens[rows]]  # [b, T]
                entropy = -(logp_all.exp() * logp_all).sum(-1).expand(len(rows), T)  # [b, T]
                loss, metrics = A.policy_loss(
                    logp, old[rows], adv[rows], mask[rows], norm, cfg, ref[rows], entropy
                )
                if cfg.needs_values:
                    v = values.expand(len(rows), T)
                    v_loss, _ = A.value_loss(v, old_values[rows], returns[rows], mask[rows], norm, cfg)
                    loss = loss + v_loss
                assert torch.isfinite(loss) and all(torch.isfinite(x) for x in metrics.values())
                loss.backward()
            opt.step()
            opt.zero_grad()
    return before, torch.softmax(logits, -1)[:, target].mean().item()


@pytest.mark.parametrize("name", sorted(A.ALGORITHM_PRESETS))
def test_every_preset_raises_the_reward_on_a_toy_task(name):
    before, after = toy_run(name)
    assert before == pytest.approx(1 / 6)
    assert after > 0.6, f"{name}: p(target) went from {before:.3f} to {after:.3f}"


VARIANTS = {  # registry entries no preset names, trained through the same toy run
    "gspo_token": ("gspo", {"policy_loss": "gspo_token"}),
    "grpo_batch_std": ("grpo", {"advantage": "grpo_batch_std"}),
    "pass_at_k": ("grpo", {"advantage": "pass_at_k", "pass_k": 4}),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_other_entry_raises_the_reward_on_a_toy_task(variant):
    name, overrides = VARIANTS[variant]
    before, after = toy_run(name, **overrides)
    assert after > 0.6, f"{variant}: p(target) went from {before:.3f} to {after:.3f}"


@pytest.mark.gpu
def test_same_results_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    logits, tokens, mask, old, ref, adv = make_step(seed=5)
    rewards = torch.rand(6, generator=torch.Generator().manual_seed(5))
    group_ids, values = torch.tensor([3, 3, 3, 9, 9, 1]), torch.randn(6, 9, generator=torch.Generator())
    norm = A.StepNorm.from_masks([mask], constant=16)

    def run(device):
        to = lambda t: t.detach().to(device)  # noqa: E731
        out = {}
        for name in sorted(A.ALGORITHM_PRESETS):
            in_reward = A.preset(name).kl_in_reward  # k1 only as a reward penalty
            cfg = A.preset(name, kl_coef=0.1, kl_estimator="k1" if in_reward else "k3")
            r = A.token_rewards(to(rewards), to(mask), cfg, to(old), to(ref))
            a, ret = A.ADVANTAGES[cfg.advantage](r, to(mask), to(group_ids), to(values), cfg)
            z = to(logits)
            logprobs = A.logprobs_from_logits(z.bfloat16(), to(tokens), chunk_size=7)
            loss, _ = A.policy_loss(
                logprobs, to(old), a, to(mask), norm, cfg, to(ref), A.entropy_from_logits(z)
            )
            v_loss, _ = A.value_loss(to(values) + 0.1, to(values), ret, to(mask), norm, cfg)
            out[name] = torch.stack([a.sum(), ret.sum(), loss, v_loss]).cpu()
        return out

    cpu, gpu = run("cpu"), run("cuda")
    for name in cpu:
        torch.testing.assert_close(gpu[name], cpu[name], rtol=2e-3, atol=2e-3)
