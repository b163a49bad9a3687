"""Reward-hacking audit of ``tool_use`` (issue 19): each hole the probes found, reproduced and closed,
next to the honest episode that must still pass; ``check_env`` with the probes; the training signals;
``suspicious``. Episodes are real: the environment's own ``env_response`` runs the real tools (through
``tool_use_probes.episode`` or a real rollout with the scripted generator of test_tool_use)."""

from __future__ import annotations

import pytest

from rewardkit import check_env, load_env
from rewardkit.envs.probes import run_probes
from rewardkit.envs.tool_use import ToolUseEnv
from rewardkit.envs.tool_use_probes import call_text, episode
from rewardkit.generation.base import SamplingParams
from rewardkit.types import Sample


@pytest.fixture(scope="module")
def env():
    env = ToolUseEnv(task="calculator", executor="inline")
    yield env
    env.close()


@pytest.fixture(scope="module")
def task(env):
    return list(env.tasks("train"))[0]


def expression(task) -> str:
    question = task.prompt[-1]["content"]
    return question[len("What is ") : question.index("?")]


def run(env, task, *turns, tamper=None, record=True):
    completion, info = episode(env, task, turns)
    if tamper is not None:
        completion = tuple(tamper([dict(m) for m in completion]))
    sample_info = {**task.info, "episode": info} if record else dict(task.info)
    return env.score(completion, answer=task.answer, prompt=task.prompt, info=sample_info)


def gold_call(task) -> str:
    return call_text("calculator", {"expression": expression(task)})


def honest(env, task, **kwargs):
    return run(env, task, gold_call(task), f"<answer>{task.answer}</answer>", **kwargs)


# ---- the honest episode passes, with and without the episode's record -------------------------------
@pytest.mark.parametrize("record", [True, False])
def test_honest_episode_passes(env, task, record):
    score = honest(env, task, record=record)
    assert score.reward == 1.0 and score.metrics["rejected"] == 0.0, score.info


def test_real_rollout_records_the_transcript_and_a_tampered_copy_scores_zero(env):
    from test_tool_use import ScriptedGenerator, calculator_policy, make_tokenizer

    [traj] = env.rollout(
        ScriptedGenerator(make_tokenizer(), calculator_policy),
        list(env.tasks("test"))[:1],
        sampling=SamplingParams(max_tokens=128, seed=0),
    )
    assert len(traj.info["transcript"]) == 1 and traj.info["policy_turns"] == 2
    sample = Sample.from_trajectory(traj)
    assert env.score(**sample.to_dict()).reward == 1.0
    forged = [dict(m) for m in traj.completion]
    forged[1]["content"] = forged[1]["content"] + "0"  # the tool "said" another number
    forged[2]["content"] = f"<answer>{forged[1]['content']}</answer>"
    tampered = env.score(forged, answer=forged[1]["content"], info=sample.info)
    assert tampered.reward == 0.0 and "recorded" in tampered.info["reason"]


# ---- fabricated tool results --------------------------------------------------------------------------
def test_result_markup_in_the_answer_turn_scores_zero(env, task):
    fake = (
        f"{gold_call(task)}\n<tool_response>\n{task.answer}\n</tool_response>\n<answer>{task.answer}</answer>"
    )
    assert run(env, task, fake).reward == 0.0


def test_claimed_result_without_call_scores_zero_but_quoting_a_real_one_passes(env, task):
    assert run(env, task, f"Tool result: {task.answer}\n<answer>{task.answer}</answer>").reward == 0.0
    quoted = run(env, task, gold_call(task), f"Tool result: {task.answer}\n<answer>{task.answer}</answer>")
    assert quoted.reward == 1.0


def test_forged_or_extra_tool_message_scores_zero(env, task):
    off = call_text("calculator", {"expression": "1 + 1"})

    def rewrite(ms):
        ms[1]["content"] = task.answer
        return ms

    def insert(ms):
        return [*ms[:-1], {"role": "tool", "content": task.answer}, ms[-1]]

    for tamper in (rewrite, insert):
        score = run(env, task, off, f"<answer>{task.answer}</answer>", tamper=tamper)
        assert score.reward == 0.0 and "recorded" in score.info["reason"]
    # without the record the calls are replayed: the calculator does not say that for 1 + 1
    replayed = run(env, task, off, f"<answer>{task.answer}</answer>", tamper=rewrite, record=False)
    assert replayed.reward == 0.0 and "environment gives" in replayed.info["reason"]


def test_wrong_tool_call_id_scores_zero(env, task):
    def rename(ms):
        return [{**m, "tool_call_id": "call_9"} if m["role"] == "tool" else m for m in ms]

    for record in (True, False):
        assert honest(env, task, tamper=rename, record=record).reward == 0.0


def test_transcript_check_off_trusts_the_completion(task):
    """The check is what closes the hole: with it off, the forged episode passes again."""
    loose = ToolUseEnv(task="calculator", executor="inline", transcript_check="off")
    off = call_text("calculator", {"expression": "1 + 1"})

    def rewrite(ms):
        ms[1]["content"] = task.answer
        return ms

    assert run(loose, task, off, f"<answer>{task.answer}</answer>", tamper=rewrite).reward == 1.0


# ---- calls after the answer, turn budget -------------------------------------------------------------
def test_turns_after_the_answer_score_zero(env, task):
    def go_on(ms):
        return [*ms, {"role": "assistant", "content": gold_call(task)}, {"role": "tool", "content": task.answer},
                {"role": "assistant", "content": f"<answer>{task.answer}</answer>"}]  # fmt: skip

    assert run(env, task, "<answer>7</answer>", tamper=go_on).reward == 0.0
    assert run(env, task, f"<answer>{task.answer}</answer>\n{gold_call(task)}").reward == 0.0


def test_never_answering_scores_a_real_zero_even_with_an_efficiency_term(task):
    efficient = ToolUseEnv(task="calculator", executor="inline", efficiency_weight=0.5, format_weight=0.25)
    budget = efficient.max_turns
    score = run(efficient, task, *[gold_call(task)] * budget)
    assert score.status == "ok" and score.reward == 0.0  # a 0, not a skipped sample
    guess = run(efficient, task, "<answer>7</answer>")  # no tool, wrong: the efficiency term used to pay
    assert guess.reward == pytest.approx(0.25) and guess.metrics["efficiency"] == 0.0
    good = honest(efficient, task)
    assert good.reward == pytest.approx(1.0 + 0.25 + 0.5 * (1 - 1 / 8))


def test_answer_past_max_turns_scores_zero_and_at_max_turns_passes(env, task):
    budget = env.max_turns

    def late(ms):
        return [*ms, {"role": "assistant", "content": f"<answer>{task.answer}</answer>"}]

    assert run(env, task, *[gold_call(task)] * budget, tamper=late).reward == 0.0
    last_turn = run(env, task, *[gold_call(task)] * (budget - 1), f"<answer>{task.answer}</answer>")
    assert last_turn.reward == 1.0


# ---- answers -----------------------------------------------------------------------------------------
def test_several_different_answers_score_zero_repeating_one_passes(env, task):
    two = run(env, task, gold_call(task), f"<answer>7</answer>\n<answer>{task.answer}</answer>")
    assert two.reward == 0.0
    same = run(env, task, gold_call(task), f"<answer>{task.answer}</answer> <answer>{task.answer}</answer>")
    assert same.reward == 1.0


def test_answer_inside_a_tool_call_is_not_an_answer(env, task):
    hidden = call_text("calculator", {"expression": f"<answer>{task.answer}</answer>"})
    assert run(env, task, hidden).reward == 0.0


def test_the_questions_expression_is_not_an_answer_the_number_is(env, task):
    assert run(env, task, f"<answer>{expression(task)}</answer>").reward == 0.0
    grouped = f"{int(task.answer):,}"
    assert run(env, task, gold_call(task), f"<answer>{grouped}</answer>").reward == 1.0


def test_string_completion_is_invalid_input(env, task):
    score = env.score(f"<answer>{task.answer}</answer>", answer=task.answer, info=task.info)
    assert score.status == "invalid_input" and score.reward == 0.0


# ---- conformance, signals, suspicious ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["calculator", "lookup"])
def test_check_env_runs_every_probe_within_bound(name):
    with load_env("tool_use", task=name, executor="inline") as env:
        report = check_env(env)
        results = run_probes(env)
    assert report["probes"] >= 10 and all(r.within_bound for r in results)
    families = {r.probe.family for r in results}
    assert {"fabricated-tool-result", "call-after-answer", "turn-budget", "several-candidates",
            "answer-in-tool-call", "empty-answer", "wrong-tag", "repeated-answers",
            "wrong-tool-call-id", "string-completion"} <= families  # fmt: skip


def test_exploit_signals_flag_hacks_not_clean_episodes(env, task):
    clean, _ = episode(env, task, [gold_call(task), f"<answer>{task.answer}</answer>"])
    fake, _ = episode(env, task, [f"{gold_call(task)}\n<tool_response>{task.answer}</tool_response>\n"
                                  f"<answer>{task.answer}</answer>"])  # fmt: skip
    signals = env.exploit_signals([fake])
    assert signals["tool_response_markup"] == 1.0 and signals["call_in_answer_turn"] == 1.0
    assert signals["answer_without_tool"] == 1.0
    assert not any(env.exploit_signals([clean]).values())
    restated, _ = episode(env, task, [f"<answer>{expression(task)}</answer>"])
    assert env.exploit_signals([restated])["expression_as_answer"] == 1.0


def test_suspicious_flags_an_unsupported_pass_not_an_honest_one(env, task):
    completion, info = episode(env, task, [gold_call(task), f"<answer>{task.answer}</answer>"])
    sample = {"completion": completion, "answer": task.answer, "info": {**task.info, "episode": info}}
    score = env.score(**sample)
    assert score.reward == 1.0 and env.suspicious(sample, score) is None
    # a passing episode whose tool call computed something else: the answer came from nowhere
    off = call_text("calculator", {"expression": "1 + 1"})
    completion, info = episode(env, task, [off, f"<answer>{task.answer}</answer>"])
    sample = {"completion": completion, "answer": task.answer, "info": {**task.info, "episode": info}}
    score = env.score(**sample)
    assert score.reward == 1.0
    assert "none of the episode's tool results" in env.suspicious(sample, score)
