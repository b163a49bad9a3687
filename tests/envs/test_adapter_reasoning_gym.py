"""The ``reasoning_gym:<task>`` adapter against the real reasoning-gym package (no network)."""

from __future__ import annotations

import json

import pytest

reasoning_gym = pytest.importorskip("reasoning_gym")

import rewardkit  # noqa: E402
from rewardkit.conformance import check_env  # noqa: E402
from rewardkit.envs.adapters.reasoning_gym import (  # noqa: E402
    TEST_SEED_OFFSET,
    UnknownTaskError,
    extract,
    task_names,
)

SMALL = {"train": 40, "test": 20}


def _env(task: str, **options):
    return rewardkit.load_env(f"reasoning_gym:{task}", size=SMALL, **options)


def _own_score(task: str, source: dict, answer: str | None) -> float:
    """reasoning-gym's own scorer on a freshly generated copy of the task's entry."""
    ds = reasoning_gym.create_dataset(task, seed=source["seed"], size=source["size"], **source["options"])
    return float(ds.score_answer(answer, ds[source["index"]]))


@pytest.mark.parametrize("task", ["leg_counting", "basic_arithmetic", "chain_sum", "arc_1d"])
def test_check_env_passes_in_worker_processes(task):
    """check_env pickles the environment and scores gold, bad inputs and probes in worker processes."""
    with _env(task) as env:
        assert env.scoring.executor == "process"
        report = check_env(env)
    assert report["gold_examples"] >= 3 and report["probes"] == 4 and report["tasks_checked"] == 5


@pytest.mark.parametrize("task", ["leg_counting", "knights_knaves", "arc_agi", "word_sorting"])
def test_rewards_equal_reasoning_gyms_own_scorer(task):
    """Right, partly right and wrong answers get exactly what ``dataset.score_answer`` gives them.

    ``arc_agi`` entries hold tuples that JSON cannot keep (the scorer gives a right answer 0.05 against
    a JSON copy), so its scores also show that the worker scores the regenerated entry.
    """
    with _env(task) as env:
        tasks = env.tasks("train")[:4]
        pairs = []
        for i, t in enumerate(tasks):
            other = tasks[(i + 1) % len(tasks)].answer
            half = t.answer[: len(t.answer) // 2]
            flipped = t.answer.replace("knight", "knave", 1)  # knights_knaves: one assignment wrong
            for a in (t.answer, other, f"{t.answer} {other}", "", "I do not know", half, flipped):
                pairs.append((t, a))
        samples = [{"completion": f"<think>hm</think><answer>{a}</answer>", "info": t.info} for t, a in pairs]
        scores = env.score_batch(samples)
    expected = [_own_score(task, t.info["reasoning_gym"], a.strip()) for t, a in pairs]
    assert [s.status for s in scores] == ["ok"] * len(samples)
    assert [s.reward for s in scores] == pytest.approx(expected)
    assert max(expected) == 1.0 and min(expected) == 0.0
    if task == "knights_knaves":  # the scorer's partial credit comes through unchanged
        assert any(0.0 < e < 1.0 for e in expected)
    if task == "arc_agi":
        assert not tasks[0].info["reasoning_gym"]["exact"]


def test_samples_survive_a_jsonl_file(tmp_path):
    """Tasks written as JSON lines and read back score as they did: everything needed travels in info."""
    with _env("leg_counting") as env:
        tasks = env.tasks("test")[:5]
        path = tmp_path / "samples.jsonl"
        with path.open("w") as f:
            for t in tasks:
                row = t.to_dict()
                f.write(json.dumps({**row, "completion": f"<answer>{t.answer}</answer>"}) + "\n")
                f.write(json.dumps({**row, "completion": "<answer>-1</answer>"}) + "\n")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        scores = env.score_batch(
            [{k: r[k] for k in ("completion", "answer", "prompt", "info")} for r in rows]
        )
    assert [s.reward for s in scores] == [1.0, 0.0] * 5
    assert all(s.status == "ok" for s in scores)


def test_splits_are_disjoint_and_reproducible():
    with _env("leg_counting") as env, _env("leg_counting") as again:
        train, test = env.tasks("train"), env.tasks("test")
        assert (len(train), len(test)) == (SMALL["train"], SMALL["test"])
        sources = [t.info["reasoning_gym"] for t in train + test]
        assert {s["seed"] for s in sources} == {0, TEST_SEED_OFFSET}
        assert not {t.id for t in train} & {t.id for t in test}
        assert not {s["entry"]["question"] for s in sources[: len(train)]} & {
            s["entry"]["question"] for s in sources[len(train) :]
        }
        assert [t.to_dict() for t in train] == [t.to_dict() for t in again.tasks("train")]
    with _env("leg_counting", seed=7) as other:
        assert other.tasks("train")[0].info["reasoning_gym"]["entry"] != sources[0]["entry"]
    with pytest.raises(ValueError, match="unknown split"):
        env.tasks("validation")


def test_dedupe_drops_test_questions_seen_in_train():
    """A tiny task space repeats questions across seeds: the test split keeps only unseen ones."""
    options = {"min_animals": 1, "max_animals": 1, "min_instances": 1, "max_instances": 1}
    size = {"train": 200, "test": 20}

    def questions(env, split):
        return [t.info["reasoning_gym"]["entry"]["question"] for t in env.tasks(split)]

    kw = {"options": options, "size": size, "executor": "inline"}
    with rewardkit.load_env("reasoning_gym:leg_counting", dedupe_test=False, **kw) as raw:
        assert set(questions(raw, "train")) & set(questions(raw, "test"))  # without it they overlap
    with (
        rewardkit.load_env("reasoning_gym:leg_counting", **kw) as env,
        pytest.warns(UserWarning, match="repeat"),
    ):
        train_q, test_q = set(questions(env, "train")), questions(env, "test")
    assert not train_q & set(test_q)
    assert len(test_q) < size["test"]  # never padded with repeats: here it runs short (documented)


def test_generator_options_reach_reasoning_gym():
    options = {"min_animals": 2, "max_animals": 2}
    with _env("leg_counting", options=options) as env:
        metadata = [t.info["reasoning_gym"]["entry"]["metadata"] for t in env.tasks("train")]
    assert {m["num_animals"] for m in metadata} == {2}


def test_unknown_task_names_close_matches():
    with pytest.raises(KeyError, match="close matches: leg_counting") as err:
        rewardkit.load_env("reasoning_gym:leg_countin")
    assert isinstance(err.value, UnknownTaskError)
    assert "basic_arithmetic" in str(err.value)  # the full list of tasks follows
    assert "leg_counting" in task_names()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"options": {"min_animalz": 3}}, "Options of leg_counting: .*min_animals"),
        ({"options": {"seed": 3}}, "options must not hold 'seed'"),
        ({"size": {"validation": 3}}, "size must map"),
        ({"answer_format": "boxed"}, "answer_format"),
        ({"sead": 1}, "did you mean 'seed'"),
    ],
)
def test_bad_options_fail_at_load_env(options, match):
    with pytest.raises(ValueError, match=match):
        rewardkit.load_env("reasoning_gym:leg_counting", **options)


def test_answer_extraction_tag_then_last_line():
    assert extract("a\n<answer> 4 </answer>\n<answer>5</answer>\ntrailing") == ("5", "tag")
    assert extract("reasoning\n\n  12  \n\n") == ("12", "last_line")
    assert extract("") == (None, "none")
    assert extract("just 12", "tag") == (None, "none")
    with (
        _env("leg_counting", executor="inline") as env,
        _env("leg_counting", executor="inline", answer_format="tag") as strict,
    ):
        t = env.tasks("train")[0]
        last_line = f"I counted.\n{t.answer}"
        assert env.score(last_line, answer=t.answer, info=t.info).reward == 1.0
        score = strict.score(last_line, answer=t.answer, info=t.info)
        assert (score.reward, score.metrics["has_answer"]) == (0.0, 0.0)


def test_missing_or_foreign_info_is_invalid_input_and_a_changed_entry_is_an_error():
    with _env("leg_counting", executor="inline") as env:
        t = env.tasks("train")[0]
        assert env.score(f"<answer>{t.answer}</answer>", answer=t.answer).status == "invalid_input"
        with _env("chain_sum", executor="inline") as other:
            foreign = other.tasks("train")[0]
        assert env.score("<answer>1</answer>", info=foreign.info).status == "invalid_input"
        source = t.info["reasoning_gym"]
        tampered = {**source, "index": source["index"] + 1}
        score = env.score(f"<answer>{t.answer}</answer>", info={"reasoning_gym": tampered})
    assert score.status == "error" and "another question" in score.info["reason"]


def test_a_scorer_that_raises_on_a_bad_answer_scores_it_zero_with_the_reason():
    """prime_factorization's scorer raises ValueError on prose; its own answer still scores 1.0."""
    with _env("prime_factorization", executor="inline") as env:
        t = env.tasks("train")[0]
        score = env.score("<answer>no idea, sorry</answer>", info=t.info)
        assert env.score(f"<answer>{t.answer}</answer>", info=t.info).reward == 1.0
    assert (score.status, score.reward, score.metrics["scorer_raised"]) == ("ok", 0.0, 1.0)
    assert "ValueError" in score.info["reason"]


def test_probe_bounds_record_reasoning_gyms_partial_credit():
    """Probes score at most their bound; where the scorer gives credit the bound says so, and it is tight."""
    with (
        _env("game_of_life_halting", executor="inline") as hole,
        _env("leg_counting", executor="inline") as plain,
        _env("chain_sum", executor="inline") as arithmetic,
    ):
        results = {e.task: rewardkit.envs.probes.run_probes(e) for e in (hole, plain, arithmetic)}
    for rs in results.values():
        assert all(r.within_bound and r.score.status == "ok" for r in rs)
    # game_of_life_halting's scorer gives any non-empty answer 1.0: recorded, not hidden
    assert {r.probe.name: r.probe.bound for r in results["game_of_life_halting"]}["question-echo"] == 1.0
    leg = {r.probe.name: r for r in results["leg_counting"]}
    assert leg["empty-answer"].probe.bound == 0.0 and leg["question-echo"].probe.bound == 0.0
    assert (
        0.0
        < leg["candidates-gold-last"].score.reward
        == pytest.approx(leg["candidates-gold-last"].probe.bound)
    )


def test_tasks_without_an_oracle_answer_have_no_gold_but_score():
    with _env("propositional_logic", executor="inline") as env:
        assert env.gold_examples() == []
        t = env.tasks("train")[0]
        assert t.answer is None
        assert env.score("<answer>P</answer>", info=t.info).status == "ok"
        assert check_env(env, require_gold=False)["probes"] == 2


def test_grpo_smoke_run_on_cpu(grpo_smoke):
    grpo_smoke("reasoning_gym:leg_counting", {"size": {"train": 8, "test": 4}})
