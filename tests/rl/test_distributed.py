"""Data-parallel training with real torch.distributed (gloo, 2 ranks via torchrun on this CPU).

The equivalence test runs ``dist_update.py`` once as one process and once under ``torchrun
--nproc-per-node 2``: on the same global batches, split by prompt groups over the ranks, the two ranks
must produce the loss metrics and parameters of the single process (to 1e-5), for presets that
exercise every global quantity (token-mean and per-sequence denominators, a KL reference, batch-level
std, whitening, a critic), and the two replicas must stay bit-identical. The end-to-end test trains
through the CLI (``rewardkit train --nproc 2``), then resumes the run on one process and again on two."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "dist_update.py"


@pytest.fixture(scope="module")
def tiny_model(say_model):
    return say_model("small", vocab=200)


def _env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")
    }
    env["OMP_NUM_THREADS"] = "1"  # two ranks on two cores
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1]), env.get("PYTHONPATH", "")])
    return env


def _torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]


def _run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.mark.parametrize(
    "preset,split,strategy",
    [
        ("grpo", "even", "ddp"),
        ("dr_grpo", "even", "ddp"),
        ("dapo", "even", "ddp"),
        ("reinforce_pp", "even", "ddp"),
        ("ppo", "even", "ddp"),
        ("grpo", "lopsided", "ddp"),  # ranks of 3 and 1 groups, then of 4 and 0
        ("ppo", "lopsided", "ddp"),
        # FSDP2: policy, reference and critic sharded; uneven ranks run zero-weight micro-batches
        ("grpo", "even", "fsdp"),
        ("dapo", "even", "fsdp"),
        ("grpo", "lopsided", "fsdp"),
        ("ppo", "lopsided", "fsdp"),
    ],
)
def test_two_ranks_take_the_single_process_step(preset, split, strategy, tiny_model, tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    _run([sys.executable, str(SCRIPT), tiny_model, str(tmp_path / "run1"), preset, str(one)])
    _run([*_torchrun(2), str(SCRIPT), tiny_model, str(tmp_path / "run2"), preset, str(two), split, strategy])
    single, ranks = torch.load(one), torch.load(two)
    assert ranks["replicas_equal"], "the two ranks' parameters must stay identical"
    assert len(single["losses"]) == len(ranks["losses"]) == 2
    for a, b in zip(single["losses"], ranks["losses"]):
        assert a.keys() == b.keys() and "loss" in a
        for key in a:
            assert b[key] == pytest.approx(a[key], abs=1e-5, rel=1e-5), (preset, key, a[key], b[key])
    torch.testing.assert_close(ranks["params"], single["params"], atol=1e-5, rtol=0)


def test_train_on_two_ranks_through_the_cli_then_resume_on_one(tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(
        "\n".join(
            [
                "model: tiny",
                "env: math",
                "algorithm: grpo",
                "prompts_per_step: 4",
                "group_size: 4",
                "max_new_tokens: 12",
                "micro_batch_size: 8",
                "steps: 3",
                "save_every: 2",
                "max_tasks: 64",
                "algo: {kl_coef: 0.0}",
                f"output_dir: {out}",
            ]
        )
    )
    cli = [sys.executable, "-m", "rewardkit", "train", str(config)]
    proc = _run([*cli, "--nproc", "2"])
    assert proc.stdout.count("finished at step 3") == 1  # rank 0 alone reports
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]  # rank 0 alone logs, once per step
    assert all(r["num_samples"] == 16 for r in rows)  # the global batch: 4 prompts x 4 over both ranks
    assert all(r["world_size"] == 2 for r in rows)
    assert (out / "checkpoints" / "step_000003" / "model" / "config.json").exists()
    rollouts = (out / "rollouts").glob("step_*.jsonl")
    assert all(len(f.read_text().splitlines()) == 16 for f in rollouts)  # both ranks' samples

    _run([*cli, "--resume", "--set", "steps=4"])  # the same run continues on one process
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["world_size"] == 1

    _run([*cli, "--resume", "--set", "steps=5", "--nproc", "2"])  # and back on two ranks, both loading it
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5] and rows[-1]["world_size"] == 2
    assert (out / "checkpoints" / "step_000005" / "model" / "config.json").exists()


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _trained(row: dict) -> dict:
    """A metrics row without its timings (they differ from run to run)."""
    return {k: v for k, v in row.items() if not k.endswith(("_time_s", "_per_s")) and k != "step_time_s"}


def test_fsdp_checkpoint_resumes_exactly_on_two_ranks_and_on_one(tmp_path):
    """strategy fsdp: the checkpoint is a full Hugging Face model (gathered by rank 0) plus DCP shards of
    the weights and optimizer state; resuming it on 2 ranks continues the uninterrupted run exactly, and
    it also resumes on one process (DCP reshards)."""
    config = tmp_path / "train.yaml"
    lines = [
        "model: tiny",
        "env: math",
        "algorithm: grpo",
        "algo: {kl_coef: 0.05}",  # a reference model, sharded and checkpointed too,
        "ref_reset_every: 2",  # reset at step 2: that checkpoint's optimizer has no state to save
        "strategy: fsdp",
        "prompts_per_step: 4",
        "group_size: 4",
        "max_new_tokens: 12",
        "micro_batch_size: 4",
        "steps: 4",
        "save_every: 2",
        "keep_checkpoints: 0",
        "max_tasks: 64",
    ]
    config.write_text("\n".join(lines))
    cli = [sys.executable, "-m", "rewardkit", "train", str(config), "--nproc", "2"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _run([*cli, "--set", f"output_dir={whole}"])
    _run([*cli, "--set", f"output_dir={parts}", "--set", "steps=2"])
    ckpt = parts / "checkpoints" / "step_000002"
    assert json.loads((ckpt / "model" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert len(list((ckpt / "state").glob("*.distcp"))) == 2  # one shard file per rank
    import torch.distributed.checkpoint as dcp

    from rewardkit.models import load_model

    model, _ = load_model(str(ckpt / "model"), None, "fp32")  # a plain model loads from it,
    weights = {f"policy.{k}": torch.zeros_like(v) for k, v in model.named_parameters()}
    with warnings.catch_warnings():  # that it loads in one process, as meant
        warnings.simplefilter("ignore")
        dcp.load({"models": weights}, checkpoint_id=ckpt / "state", no_dist=True)
    for name, value in model.named_parameters():  # and holds the weights the shards hold
        torch.testing.assert_close(value, weights[f"policy.{name}"], atol=0, rtol=0)

    _run([*cli, "--set", f"output_dir={parts}", "--set", "steps=4", "--resume"])
    a, b = _rows(whole), _rows(parts)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert [_trained(r) for r in b] == [_trained(r) for r in a]

    one = [sys.executable, "-m", "rewardkit", "train", str(config)]
    _run([*one, "--set", f"output_dir={parts}", "--set", "steps=5", "--resume"])
    rows = _rows(parts)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5] and rows[-1]["world_size"] == 1


def test_a_ddp_checkpoint_resumes_sharded(tmp_path):
    """A run of replicas checkpointed at step 2 and resumed with strategy fsdp continues as the ddp run
    does: the same rollouts (the weights are the checkpoint's, bit for bit, only sharded) and, to float
    rounding (reduce-scatter sums in another order), the same losses, with the optimizer's moments."""
    config = tmp_path / "train.yaml"
    config.write_text(
        "model: tiny\nenv: math\nalgorithm: grpo\nalgo: {kl_coef: 0.05}\nprompts_per_step: 4\ngroup_size: 4\n"
        "max_new_tokens: 12\nmicro_batch_size: 4\nsteps: 4\nsave_every: 2\nmax_tasks: 64\n"
    )
    cli = [sys.executable, "-m", "rewardkit", "train", str(config), "--nproc", "2"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _run([*cli, "--set", f"output_dir={whole}"])
    _run([*cli, "--set", f"output_dir={parts}", "--set", "steps=2"])
    _run([*cli, "--set", f"output_dir={parts}", "--set", "strategy=fsdp", "--resume"])
    a, b = _rows(whole), _rows(parts)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for x, y in zip(a[2:], b[2:]):
        assert y["num_samples"] == x["num_samples"] and y["reward_mean"] == x["reward_mean"]
        for key in ("loss", "kl_ref", "grad_norm", "response_len_mean"):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), (x["step"], key)


def test_fsdp_on_a_group_of_one(tmp_path):
    """``torchrun --nproc-per-node 1`` with strategy fsdp shards over a group of one (FSDP2's mixed
    precision on one GPU): the run trains and writes the sharded checkpoint."""
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: tiny\nenv: math\nstrategy: fsdp\nfsdp: {{param_dtype: bf16}}\nprompts_per_step: 2\n"
        f"group_size: 4\nmax_new_tokens: 8\nsteps: 1\nmax_tasks: 32\nalgo: {{kl_coef: 0.0}}\noutput_dir: {out}\n"
    )
    _run([*_torchrun(1), "-m", "rewardkit", "train", str(config)])
    assert [r["world_size"] for r in _rows(out)] == [1]
    assert list((out / "checkpoints" / "step_000001" / "state").glob("*.distcp"))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_meet_through_torchruns_rendezvous(tmp_path):
    """docs/scale.md's several-node command, run as two "nodes" on this machine: two torchrun launches
    (one rank each) meet at a c10d rendezvous on loopback and train one sharded run together."""
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: tiny\nenv: math\nstrategy: fsdp\nprompts_per_step: 2\ngroup_size: 4\nmax_new_tokens: 8\n"
        f"steps: 2\nmax_tasks: 32\nalgo: {{kl_coef: 0.0}}\noutput_dir: {out}\n"
    )
    endpoint = f"127.0.0.1:{_free_port()}"
    node = [
        *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"),
        *("--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "two-nodes"),
        *("-m", "rewardkit", "train", str(config)),
    ]
    nodes = [subprocess.Popen(node, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    nodes.append(
        subprocess.Popen(node, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    )
    try:
        for proc in nodes:
            stdout, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"{stdout[-2000:]}\n{stderr[-4000:]}"
    finally:  # a node that failed leaves the other waiting at the rendezvous
        for proc in nodes:
            if proc.poll() is None:
                proc.kill()
    rows = _rows(out)
    assert [r["step"] for r in rows] == [1, 2] and all(r["world_size"] == 2 for r in rows)
    assert all(r["num_samples"] == 8 for r in rows)  # both nodes' groups in the one batch


_LEAVES_THE_GROUP = """
import sys
import torch.distributed as dist
from rewardkit.rl import distributed
from rewardkit.rl.config import TrainConfig
from rewardkit.rl.trainer import train

cfg = TrainConfig(model="tiny", env="math", prompts_per_step=2, group_size=2, max_new_tokens=4, steps=1,
                  max_tasks=8, algo={"kl_coef": 0.0}, output_dir=sys.argv[1], progress=False)
train(cfg)
print("after train:", dist.is_initialized())
dist.init_process_group("gloo")  # a group the caller made
distributed.setup()
distributed.close()
print("caller's group:", dist.is_initialized())
"""


def test_train_leaves_the_process_group_it_joined(tmp_path):
    """A rank that exits still in a gloo group can abort at interpreter shutdown (CI saw rank 1 of an
    fsdp run die with SIGABRT, "terminate called without an active exception"): train() leaves the
    group it joined, and leaves alone a group its caller made."""
    env = {**_env(), "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    env["MASTER_PORT"] = str(_free_port())
    proc = subprocess.run(
        [sys.executable, "-c", _LEAVES_THE_GROUP, str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "after train: False" in proc.stdout and "caller's group: True" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, cpu_offload is allowed")
def test_fsdp_cpu_offload_without_a_gpu_is_a_clear_error(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: tiny\nenv: math\nstrategy: fsdp\nfsdp: {{cpu_offload: true}}\nprompts_per_step: 2\n"
        f"steps: 1\noutput_dir: {tmp_path / 'run'}\n"
    )
    cmd = [*_torchrun(2), "-m", "rewardkit", "train", str(config)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "fsdp.cpu_offload: got True, expected false without a GPU" in proc.stderr


def test_too_few_prompts_for_the_ranks_is_a_clear_error(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: tiny\nenv: math\nprompts_per_step: 1\nsteps: 1\noutput_dir: {tmp_path / 'run'}\n"
    )
    proc = subprocess.run(
        [*_torchrun(2), "-m", "rewardkit", "train", str(config)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    assert "prompts_per_step: got 1, expected at least the number of ranks (2)" in proc.stderr
