"""Model specs that fail fast and clearly, and checkpoints (LoRA ones too) that load from anywhere.

Everything here runs on tiny models on a CPU; nothing is downloaded (the hub is made unreachable or
offline where a test names a hub id).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed ([train] extra)")
pytest.importorskip("transformers", reason="transformers is not installed ([train] extra)")

from rewardkit.cli import main  # noqa: E402
from rewardkit.models import load_model, resolve_model  # noqa: E402

LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
SMALL_RUN = {
    "model": "tiny",
    "env": "math",
    "env_config": {"levels": [1]},
    "prompts_per_step": 2,
    "group_size": 2,
    "max_new_tokens": 8,
    "steps": 1,
    "save_every": 1,
    "lr": 1.0e-2,
    "dtype": "fp32",
    "max_tasks": 16,
}


def _write_config(path: Path, **values) -> Path:
    path.write_text(json.dumps(values))  # JSON is YAML
    return path


def _cli(capsys, argv: list[str]) -> tuple[int, str, float]:
    """``rewardkit ARGV`` in this process: exit code, stderr, seconds taken."""
    import rewardkit.eval.run  # noqa: F401  (imports are not what is timed)
    import rewardkit.rl.trainer  # noqa: F401

    capsys.readouterr()
    start = time.perf_counter()
    code = main(argv)
    return code, capsys.readouterr().err, time.perf_counter() - start


def _no_network(monkeypatch) -> list:
    """Make every connection attempt fail at once, and record it."""
    import socket

    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def _assert_one_clear_line(err: str, spec: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert lines[0].startswith("error: ") and spec in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


# ---- item 3: mistyped paths fail fast ---------------------------------------------------------------------
BAD_PATHS = ["./mdoels/qwen", "/nonexistent/dir", "~/no-such-dir-rewardkit/model", "runs/a/b/c"]


@pytest.mark.parametrize("spec", BAD_PATHS)
def test_train_with_a_mistyped_model_path_fails_fast_with_one_line(spec, tmp_path, capsys, monkeypatch):
    attempts = _no_network(monkeypatch)
    cfg = _write_config(
        tmp_path / "t.yaml", **{**SMALL_RUN, "model": spec, "output_dir": str(tmp_path / "o")}
    )
    code, err, seconds = _cli(capsys, ["train", str(cfg)])
    assert code != 0 and seconds < 1, (code, seconds)  # imports done: no loading, no network
    line = _assert_one_clear_line(err, spec)
    assert "does not exist" in line and "config.json" in line and "ORG/NAME" in line
    assert attempts == [], "a local path must not be looked up on the hub"


@pytest.mark.parametrize("spec", BAD_PATHS)
def test_eval_with_a_mistyped_model_path_fails_fast_with_one_line(spec, tmp_path, capsys, monkeypatch):
    attempts = _no_network(monkeypatch)
    argv = [
        "eval",
        "--model",
        spec,
        "--envs",
        "math",
        "--num-tasks",
        "1",
        "--output-dir",
        str(tmp_path / "e"),
    ]
    code, err, seconds = _cli(capsys, argv)
    assert code != 0 and seconds < 1, (code, seconds)  # imports done: no loading, no network
    assert "does not exist" in _assert_one_clear_line(err, spec)
    assert attempts == []


def test_a_path_under_an_existing_directory_is_local_not_a_hub_id(tmp_path, monkeypatch):
    """``runs/exp1`` looks like ORG/NAME, but ``runs`` is a local directory: a typo, not a hub repo."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match="runs/exp1 does not exist"):
        resolve_model("runs/exp1")
    assert resolve_model("some-org/some-model").path == "some-org/some-model"  # still a hub id


def test_a_mistyped_tokenizer_path_fails_fast_naming_the_tokenizer(tmp_path, capsys, monkeypatch):
    attempts = _no_network(monkeypatch)
    cfg = _write_config(
        tmp_path / "t.yaml", **{**SMALL_RUN, "tokenizer": "./tokenizr", "output_dir": str(tmp_path / "o")}
    )
    code, err, seconds = _cli(capsys, ["train", str(cfg)])
    assert code != 0 and seconds < 10, (code, seconds)  # builds the tiny model first
    line = _assert_one_clear_line(err, "./tokenizr")
    assert "tokenizer" in line and "does not exist" in line
    assert attempts == []


def test_a_hub_id_not_in_the_cache_fails_clearly_when_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = "rewardkit-tests/no-such-model"
    cfg = _write_config(
        tmp_path / "t.yaml", **{**SMALL_RUN, "model": spec, "output_dir": str(tmp_path / "o")}
    )
    code, err, seconds = _cli(capsys, ["train", str(cfg)])
    assert code != 0 and seconds < 15, (code, seconds)  # imports transformers, then fails: no retries
    line = _assert_one_clear_line(err, spec)
    assert "cache" in line and "HF_HUB_OFFLINE" in line


def test_a_hub_id_fails_fast_when_the_hub_cannot_be_reached(tmp_path):
    """No offline flag, but no hub either (a closed local port stands in for it): no minute of retries."""
    spec = "rewardkit-tests/no-such-model"
    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9", TOKENIZERS_PARALLELISM="false")
    for var in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        env.pop(var, None)
    argv = [
        "eval",
        "--model",
        spec,
        "--envs",
        "math",
        "--num-tasks",
        "1",
        "--output-dir",
        str(tmp_path / "e"),
    ]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rewardkit", *argv], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    assert proc.returncode != 0 and seconds < 30, (proc.returncode, seconds, proc.stderr[-2000:])
    line = _assert_one_clear_line(proc.stderr, spec)
    assert "cannot be reached" in line and "cache" in line


# ---- item 5: LoRA checkpoints evaluate, from any directory ------------------------------------------------
@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    """A 1-step LoRA run on ``model: tiny``, trained with a relative output_dir from its own cwd."""
    from rewardkit.config import build
    from rewardkit.rl.config import TrainConfig
    from rewardkit.rl.trainer import train

    work = tmp_path_factory.mktemp("train_cwd")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        train(
            build(TrainConfig, {**SMALL_RUN, "lora": LORA, "output_dir": "runs/lora"}, where="train config")
        )
    finally:
        os.chdir(cwd)
    return work / "runs" / "lora"


def test_a_lora_checkpoint_holds_a_merged_model_and_the_adapter(lora_run):
    from transformers import AutoModelForCausalLM

    ckpt = lora_run / "checkpoints" / "step_000001"
    assert (ckpt / "model" / "config.json").is_file() and not (
        ckpt / "model" / "adapter_config.json"
    ).exists()
    adapter = json.loads((ckpt / "adapter" / "adapter_config.json").read_text())
    base = Path(adapter["base_model_name_or_path"])
    assert base.is_absolute() and base == (lora_run / "tiny_model").resolve()
    merged = AutoModelForCausalLM.from_pretrained(ckpt / "model").state_dict()
    assert set(merged) == set(AutoModelForCausalLM.from_pretrained(base).state_dict())
    # the adapter, loaded on its base, is the same model as the merged copy
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    via_adapter, _ = load_model(str(ckpt / "adapter"), dtype="fp32")
    via_merged, _ = load_model(str(ckpt / "model"), dtype="fp32")
    with torch.no_grad():
        torch.testing.assert_close(via_adapter(ids).logits, via_merged(ids).logits, atol=1e-5, rtol=1e-5)


def test_rewardkit_eval_of_a_lora_run_from_another_directory(lora_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["eval", "--model", str(lora_run), "--envs", "math", "--num-tasks", "2", "--n", "1"]
    argv += ["--max-new-tokens", "4", "--output-dir", "ev", "--dtype", "fp32", "-q"]
    code, err, _ = _cli(capsys, argv)
    assert code == 0, err
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert "math" in summary["environments"]


def test_an_adapter_only_checkpoint_of_an_older_version_still_loads(lora_run, tmp_path, monkeypatch):
    """Older versions wrote only the adapter to model/, its base a path relative to the training cwd."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work = tmp_path / "old_cwd"
    (work / "runs" / "old").mkdir(parents=True)
    shutil.copytree(lora_run / "tiny_model", work / "runs" / "old" / "tiny_model")
    monkeypatch.chdir(work)
    base = AutoModelForCausalLM.from_pretrained("runs/old/tiny_model")
    policy = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", init_lora_weights=False, **LORA))
    ckpt = Path("runs/old/checkpoints/step_000003")
    policy.save_pretrained(ckpt / "model")
    AutoTokenizer.from_pretrained("runs/old/tiny_model").save_pretrained(ckpt / "model")
    (ckpt / "trainer_state.pt").write_bytes(b"")
    (ckpt.parent / "latest").write_text(ckpt.name)
    assert json.loads((ckpt / "model" / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "runs/old/tiny_model"
    )
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    with torch.no_grad():
        expected = policy(ids).logits

    monkeypatch.chdir(tmp_path)  # elsewhere: the relative base path no longer resolves from the cwd
    ref = resolve_model(str(work / "runs" / "old"))
    assert ref.step == 3 and ref.digest is not None
    model, tok = load_model(ref.path, dtype="fp32")
    assert tok.pad_token_id is not None
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, expected, atol=1e-5, rtol=1e-5)


def test_saving_a_lora_policy_merges_it_and_leaves_it_training_on_its_adapters(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from rewardkit.models import save_model
    from rewardkit.rl.model import load_policy

    base = lora_run / "tiny_model"
    policy, tok = load_policy(str(base), None, "fp32", False, LORA)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)  # a non-zero adapter, so merging changes the weights
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    save_model(policy, tok, tmp_path / "ckpt")

    after = policy.state_dict()
    assert set(after) == set(before)
    for k in before:
        torch.testing.assert_close(after[k], before[k], atol=1e-6, rtol=1e-6)
    assert any(p.requires_grad and "lora_A" in n for n, p in policy.named_parameters())
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt" / "model")
    q = next(n for n in merged.state_dict() if n.endswith("self_attn.q_proj.weight"))
    assert not torch.equal(merged.state_dict()[q], AutoModelForCausalLM.from_pretrained(base).state_dict()[q])
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, policy(ids).logits, atol=1e-5, rtol=1e-5)
    assert (tmp_path / "ckpt" / "adapter" / "adapter_config.json").is_file()
