"""The ``math`` environment: its Score, its cache key, bounded time on pathological inputs, concurrency."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewardkit import Score, Task, check_env, load_env
from rewardkit.config import ConfigError
from rewardkit.envs.math import MathEnv
from rewardkit.types import STATUSES

TIMEOUT_S = 2.0
BOUND_S = TIMEOUT_S + 1.0


@pytest.fixture(scope="module")
def env():
    with load_env("math", timeout_s=TIMEOUT_S, workers=2) as math_env:
        math_env.score("<answer>1</answer>", answer="1")  # start the workers outside any timed test
        yield math_env


def test_load_env_and_conformance(env):
    assert isinstance(env, MathEnv) and env.name == "math"
    report = check_env(env)
    assert report["gold_examples"] >= 5


def test_score_has_metrics_and_extracted_answer(env):
    right = env.score("<think>6*7</think><answer>42</answer>", answer="42")
    assert right.reward == 1.0 and right.status == "ok"
    assert right.metrics == {"correct": 1.0, "has_answer": 1.0}
    assert right.info["extracted"] == "42"
    wrong = env.score("The answer is \\boxed{41}.", answer="$42$")
    assert (wrong.reward, wrong.metrics, wrong.info["extracted"]) == (
        0.0,
        {"correct": 0.0, "has_answer": 1.0},
        "41",
    )
    assert wrong.info["reason"]
    none = env.score("no idea", answer="42")
    assert none.metrics == {"correct": 0.0, "has_answer": 0.0}


def test_memory_cap_by_default_and_long_answers_cut_in_info(env):
    assert env.scoring.memory_mb == 1024
    assert MathEnv(memory_mb=None, executor="inline").scoring.memory_mb is None
    score = env.score("<answer>" + "7" * 5000 + "</answer>", answer="7" * 5000)
    assert score.reward == 1.0 and len(score.info["extracted"]) < 600


def test_chat_messages_score_the_last_assistant_turn(env):
    messages = [
        {"role": "user", "content": "What is 2+2? Say 5 if unsure."},
        {"role": "assistant", "content": "<answer>4</answer>"},
    ]
    assert env.score(messages, answer="4").reward == 1.0


def test_multi_valued_golds_rounding_and_hedges_through_the_worker_pool(env):
    batch = [
        ("So $\\boxed{1}, \\boxed{2}, \\boxed{3}$.", "\\{1,2,3\\}", 1.0),
        ("$\\boxed{1}$ and $\\boxed{2}$", "\\boxed{1}, \\boxed{2}", 1.0),
        ("\\boxed{1}, \\boxed{2}, \\boxed{3}", "3", 0.0),
        ("So maybe 12 and 15.", "15", 0.0),
        ("<answer>0.33</answer>", "1/3", 1.0),
        ("<answer>1,22</answer>", "1.22", 1.0),
        ("<answer>-2 \\le x \\le 7</answer>", "x \\in [-2, 7]", 1.0),
    ]
    scores = env.score_batch([{"completion": c, "answer": g} for c, g, _ in batch])
    assert [s.reward for s in scores] == [r for _, _, r in batch]
    assert "hedging" in scores[2].info["reason"] and "hedging" in scores[3].info["reason"]


def test_missing_gold_is_invalid_input(env):
    score = env.score("<answer>4</answer>")
    assert score.status == "invalid_input" and "gold" in score.info["reason"]


@pytest.mark.parametrize(
    ("gold", "kind"), [({"a": 1}, "dict"), ([1, 2], "list"), ((1, 2), "tuple"), ({4}, "set"), (4j, "complex")]
)
def test_a_gold_that_is_not_a_string_or_number_is_invalid_input(gold, kind):
    with load_env("math", executor="inline") as math_env:
        score = math_env.score("<answer>1</answer>", answer=gold)
    assert (score.status, score.reward) == ("invalid_input", 0.0)
    assert f"gold answer is a {kind}" in score.info["reason"] and "string or a number" in score.info["reason"]


@pytest.mark.parametrize(
    "config",
    [
        {"rel_tol": -1},
        {"rel_tol": "1e-6"},
        {"levels": [7]},
        {"levels": []},
        {"num_tasks": {"train": -1}},
        {"dataset": ""},
        {"dataset": "x.jsonl", "dataset_options": {"answer_format": "nope"}},
        {"dataset": "x.jsonl", "dataset_options": {"no_such_field": 1}},
    ],
)
def test_bad_config_fails_at_load_env(config):
    with pytest.raises((ValueError, TypeError)):
        load_env("math", **config)


@pytest.mark.parametrize("dataset", ["data/missing.jsonl", "./missing_dir", "/no/such/file.parquet"])
def test_a_dataset_path_that_does_not_exist_fails_at_load_env_naming_it(dataset):
    with pytest.raises(ConfigError) as info:
        load_env("math", dataset=dataset)
    message = str(info.value)
    assert message.startswith(f"environment 'math': dataset: got {dataset!r}, expected an existing file")
    assert "does not exist" in message


def test_an_existing_dataset_file_and_a_hub_id_are_accepted(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text('{"question": "1+1?", "answer": "2"}\n')
    load_env("math", dataset=str(path)).close()
    load_env("math", dataset="openai/gsm8k", dataset_options={"name": "main"}).close()  # not fetched at load


# ---- caching and dedup ------------------------------------------------------------------------------
class CountingMathEnv(MathEnv):
    """Counts verify() calls; inline executor, so the count lives in this process."""

    calls = 0

    def verify(self, completion, *, answer, prompt, info):
        CountingMathEnv.calls += 1
        return super().verify(completion, answer=answer, prompt=prompt, info=info)


def test_equal_gold_and_answer_are_scored_once_per_batch_and_cached():
    env = CountingMathEnv(executor="inline")
    group = [
        {"completion": "<think>a</think><answer>12</answer>", "answer": "12"},
        {"completion": "<think>b, different reasoning</think><answer>12</answer>", "answer": "12"},
        {"completion": "so $\\boxed{12}$", "answer": "$12$"},  # same gold after normalisation, same answer
        {"completion": "<answer>13</answer>", "answer": "12"},
    ] * 4
    CountingMathEnv.calls = 0
    scores = env.score_batch(group)
    assert [s.reward for s in scores] == [1.0, 1.0, 1.0, 0.0] * 4
    assert CountingMathEnv.calls == 2  # (12, "12") and (12, "13")
    env.score_batch(group)
    assert CountingMathEnv.calls == 2  # every verdict came from the cache


def test_cache_key_separates_what_changes_the_verdict():
    env = MathEnv(executor="inline")

    def key(completion, answer="7"):
        return env.cache_key(completion, answer=answer, prompt=None, info={})

    assert key("<answer>7</answer>") == key("x \\boxed{7}")
    assert key("<answer>7</answer>") != key("<answer>7</answer>", answer="8")
    assert key("\\boxed{7}") != key("\\boxed{8} \\boxed{7}")  # a hedge changes the verdict
    assert key("the answer is 7") != key("the answer is 7 or 8")
    assert key("<answer>7</answer>", answer=None) is None


# ---- bounded: pathological inputs -------------------------------------------------------------------
PATHOLOGICAL = [
    ("<answer>9^{9^{9^{9}}}</answer>", "9^{9^{9^{9}}} + 1"),
    ("<answer>2^{10^9}</answer>", "3"),
    ("<answer>(10^6)!</answer>", "(10^6)! - 1"),
    ("<answer>" + "\\frac{1}{" * 2000 + "2" + "}" * 2000 + "</answer>", "2"),
    ("\\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}", "1"),
    ("<answer>" + "1+" * 300_000 + "1</answer>", "600001"),
    ("x" * 999_000, "5"),
    ("$" + "\\sqrt{" * 1000 + "2" + "}" * 1000 + "$ " * 10, "2"),
    ("The answer is " + "9" * 900_000, "9"),
    ("<answer>" + "2^" * 50 + "2</answer>", "4"),
]


@pytest.mark.parametrize(
    ("completion", "gold"), PATHOLOGICAL, ids=[f"case{i}" for i in range(len(PATHOLOGICAL))]
)
def test_pathological_inputs_return_within_the_bound(env, completion, gold):
    start = time.monotonic()
    score = env.score(completion, answer=gold)
    elapsed = time.monotonic() - start
    assert score.status in ("ok", "timeout"), score
    assert score.reward == 0.0
    assert elapsed < BOUND_S, f"took {elapsed:.1f}s"


ADVERSARIAL_MB = {
    "open-boxes": "\\boxed{" * 140_000,
    "open-tags": "<answer>" * 120_000,
    "space-boxes": "\\boxed " * 140_000,
    "many-boxes": "\\boxed{1}" * 110_000,
    "many-tags": "<answer>1</answer>" * 55_000,
    "tags-and-boxes": "<answer>\\boxed{" * 60_000,
    "braces": "{" * 999_000,
}


@pytest.mark.parametrize("text", ADVERSARIAL_MB.values(), ids=ADVERSARIAL_MB.keys())
def test_cache_key_is_fast_on_megabyte_inputs(env, text):
    """cache_key runs in the caller's process, outside the worker timeout: it must stay linear."""
    start = time.monotonic()
    env.cache_key(text, answer="7", prompt=None, info={})
    assert time.monotonic() - start < 1.5
    assert env.score(text, answer="7").status in ("ok", "timeout")
    assert time.monotonic() - start < 1.5 + BOUND_S


def test_a_pathological_batch_does_not_delay_the_normal_samples(env):
    batch = [{"completion": c, "answer": g} for c, g in PATHOLOGICAL[:3]]
    batch += [{"completion": f"<answer>{i}</answer>", "answer": str(i)} for i in range(20)]
    start = time.monotonic()
    scores = env.score_batch(batch)
    assert time.monotonic() - start < 2 * BOUND_S
    assert [s.reward for s in scores[3:]] == [1.0] * 20


# ---- concurrency ------------------------------------------------------------------------------------
def test_score_from_threads(env):
    cases = [(f"<answer>\\frac{{{i}}}{{2}}</answer>", f"{i / 2}", 1.0) for i in range(1, 13)]
    cases += [("<answer>7 or 8</answer>", "7", 0.0)] * 4
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        rewards = list(pool.map(lambda c: env.score(c[0], answer=c[1]).reward, cases))
    assert rewards == [c[2] for c in cases]


def test_ascore_from_asyncio(env):
    async def main():
        return await asyncio.gather(*(env.ascore(f"\\boxed{{{i}}}", answer=str(i % 5)) for i in range(10)))

    scores = asyncio.run(main())
    assert [s.reward for s in scores] == [1.0 if i < 5 else 0.0 for i in range(10)]


def test_inline_executor_runs_in_a_thread_without_signals():
    env = MathEnv(executor="inline")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        score = pool.submit(env.score, "<answer>\\sqrt{8}</answer>", answer="2\\sqrt{2}").result()
    assert score.reward == 1.0


# ---- fuzzing ----------------------------------------------------------------------------------------
TOKENS = st.sampled_from(
    [
        "\\frac{", "}", "{", "\\boxed{", "<answer>", "</answer>", "</think>", "^", "9", "1", "0", "x", "=", ",",
        " or ", "\\sqrt", "(", ")", "[", "]", "\\pi", ".", "-", "/", "\\%", "\\left(", "\\right)", "$", "\\{",
        "\\}", "e", "!", "\\infty", "\\pm", "\\begin{pmatrix}", "\\end{pmatrix}", "&", "\\\\", "i", " ", "\\text{",
    ]
)  # fmt: skip
LATEXISH = st.lists(TOKENS, max_size=40).map("".join)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    completion=st.one_of(LATEXISH, st.text(max_size=200)),
    gold=st.one_of(LATEXISH, st.text(max_size=50), st.integers()),
)
def test_fuzz_score_never_raises_and_is_bounded(env, completion, gold):
    start = time.monotonic()
    score = env.score(completion, answer=gold)
    assert isinstance(score, Score) and score.status in STATUSES
    assert score.reward in (0.0, 1.0)
    assert time.monotonic() - start < BOUND_S


# ---- data -------------------------------------------------------------------------------------------
def test_tasks_are_procedural_by_default_and_solvable(env):
    train, test = env.tasks("train"), env.tasks("test")
    assert len(train) == 1000 and len(test) == 200
    assert all(isinstance(t, Task) for t in train[:5])
    assert not {t.prompt for t in train} & {t.prompt for t in test}
    samples = [{"completion": f"<answer>{t.answer}</answer>", "answer": t.answer} for t in test[:40]]
    assert all(s.reward == 1.0 for s in env.score_batch(samples))
    with pytest.raises(ValueError, match="split"):
        env.tasks("validation")


def test_tasks_from_a_local_dataset(tmp_path):
    pytest.importorskip("datasets", reason="datasets is not installed")
    path = tmp_path / "gsm.jsonl"
    path.write_text('{"question": "1+1?", "answer": "one and one #### 2"}\n')
    env = MathEnv(dataset=str(path), executor="inline")
    tasks = env.tasks("train")
    assert [t.answer for t in tasks] == ["2"]
    assert env.score("<answer>2</answer>", answer=tasks[0].answer).reward == 1.0
