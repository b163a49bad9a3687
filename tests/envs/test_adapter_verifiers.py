"""The ``verifiers:<module>`` adapter against the real verifiers package (0.4, ``verifiers.v1``).

The fixture environments in tests/fixtures/vf_envs are written with verifiers' own classes: a
single-turn taskset whose rubric is two weighted ``@vf.reward`` functions and a metric, and a
multi-turn guessing game whose ``Env.run`` plays the user's side. Scores are compared with what
verifiers' own ``Task.score`` gives on traces built here with verifiers' types, the multi-turn game is
played by rewardkit's episode loop with a scripted policy, and ``to_verifiers`` is checked by running
verifiers' scoring on a rewardkit environment's tasks.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

vf = pytest.importorskip("verifiers.v1", reason="verifiers is not installed")

from rewardkit import Environment, Score, Task, check_env, load_env  # noqa: E402
from rewardkit.envs.adapters.verifiers import VerifiersEnv, to_verifiers  # noqa: E402
from rewardkit.generation.base import SamplingParams  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_multiturn import ScriptedGenerator  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vf_envs"
ARITH = str(FIXTURES / "vf_arith.py")
GUESS = str(FIXTURES / "vf_guess.py")
ARITH_GOLD = (
    {"task": 0, "completion": "<answer>5</answer>"},
    {"task": 1, "completion": "<answer>42</answer>"},
)
GUESS_GOLD = (
    {"task": 1, "completion": [{"role": "assistant", "content": "3"}]},
    {
        "task": 0,
        "completion": [
            {"role": "assistant", "content": "5"},
            {"role": "user", "content": "higher"},
            {"role": "assistant", "content": "7"},
        ],
    },
)


@pytest.fixture(scope="module")
def arith():
    with load_env(f"verifiers:{ARITH}", gold=ARITH_GOLD, pass_threshold=1.25) as env:
        yield env


@pytest.fixture(scope="module")
def guess():
    with load_env(f"verifiers:{GUESS}", gold=GUESS_GOLD, max_turns=4, executor="thread") as env:
        yield env


def _vf_reference(vf_task, messages) -> tuple[float, dict[str, float]]:
    """verifiers' own verdict: ``Task.score`` on a ``vf.Trace`` of ``messages`` (assistant turns after the
    prompt are the sampled ones), its weighted reward and every reward's and metric's value."""
    from verifiers.v1.dialects.chat import parse_message
    from verifiers.v1.graph import MessageNode

    n_prompt = len(messages) - 1
    nodes = [
        MessageNode(parent=i - 1 if i else None, message=parse_message(m), sampled=i >= n_prompt)
        for i, m in enumerate(messages)
    ]
    trace = vf.Trace(
        task=vf.TraceTask(type=type(vf_task).__name__, data=vf_task.data, key=vf_task.key, hash=vf_task.hash),
        agent=vf.AgentInfo(config=vf.AgentConfig()),
        nodes=nodes,
    )
    asyncio.run(vf_task.score(trace))
    values = {k: r.score for k, r in trace.rewards.items()} | dict(trace.metrics)
    return trace.reward, values


# ---- single turn ------------------------------------------------------------------------------------
def test_tasks_are_the_taskset_prompts_as_verifiers_builds_them():
    sys.path.insert(0, str(FIXTURES))
    import vf_arith

    with load_env(f"verifiers:{ARITH}", env_args={"few_shot": True}, executor="inline") as env:
        tasks = env.tasks("train")
    assert [t.id for t in tasks] == ["arith-0", "arith-1", "arith-2"]
    assert tasks[1].prompt == (
        {"role": "system", "content": vf_arith.SYSTEM_PROMPT},
        *vf_arith.FEW_SHOT,
        {"role": "user", "content": "What is 7 * 6?"},
    )
    assert tasks[1].answer == "42"
    json.dumps([t.to_dict() for t in tasks])  # tasks travel to workers and into rollout files
    with load_env(f"verifiers:{ARITH}", executor="inline") as env:
        assert env.tasks()[0].prompt == (
            {"role": "system", "content": vf_arith.SYSTEM_PROMPT},
            {"role": "user", "content": "What is 2 + 3?"},
        )
        with pytest.raises(ValueError, match="no split 'test'"):
            env.tasks("test")


def test_single_turn_env_passes_check_env(arith):
    report = check_env(arith)
    assert report["gold_examples"] == 2 and report["tasks_checked"] == 3


@pytest.mark.parametrize(
    "completion",
    ["<answer>42</answer>", "it is 42", "<answer>41</answer>", "no idea", "<answer> 42 </answer> or 43"],
)
def test_scores_equal_the_verifiers_rubric_own(arith, completion):
    task = arith.tasks()[1]
    score = arith.score(completion, answer=task.answer, prompt=task.prompt, info=task.info)
    vf_task = arith._vf_task(task)
    reward, values = _vf_reference(vf_task, [*task.prompt, {"role": "assistant", "content": completion}])
    assert score.status == "ok"
    assert score.reward == pytest.approx(reward)
    assert score.metrics == pytest.approx(values)
    assert score.info["weights"] == {"correct": 1.0, "formatted": 0.25}
    assert score.reward == pytest.approx(score.metrics["correct"] + 0.25 * score.metrics["formatted"])


def test_weighted_sum_is_the_reward(arith):
    info = arith.tasks()[0].info
    rewards = [
        arith.score(c, info=info).reward for c in ("<answer>5</answer>", "5", "<answer>6</answer>", "6")
    ]
    assert rewards == [1.25, 1.0, 0.25, 0.0]


def test_a_raising_reward_function_gives_status_error_not_zero():
    with load_env(f"verifiers:{ARITH}", env_args={"boom": True}) as env:
        task = env.tasks()[0]
        score = env.score("<answer>5</answer>", info=task.info)
    assert score.status == "error" and score.reward == 0.0
    assert "this reward function is broken" in score.info["reason"]


def test_a_reward_function_needing_a_sandbox_is_an_error_not_skipped():
    """verifiers' own ``Task.score`` skips runtime-bound rewards without a runtime; here that is loud."""
    with load_env(f"verifiers:{ARITH}", env_args={"sandboxed": True}, executor="inline") as env:
        score = env.score("<answer>5</answer>", info=env.tasks()[0].info)
    assert score.status == "error" and "in_sandbox" in score.info["reason"]


def test_a_sample_without_its_verifiers_task_is_invalid_input(arith):
    score = arith.score("<answer>5</answer>", answer="5")
    assert score.status == "invalid_input" and "info['verifiers']" in score.info["reason"]


def test_module_name_and_load_environment_conventions(monkeypatch):
    """An importable module name works as a path does; ``env_args`` reach ``load_environment``, and a
    bad one fails at load_env."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    with load_env("verifiers:vf_arith", env_args={"few_shot": True}, executor="inline") as env:
        assert isinstance(env, VerifiersEnv) and env.max_turns == 1
        assert len(env.tasks()[0].prompt) == 4
        assert env.score("<answer>5</answer>", info=env.tasks()[0].info).reward == 1.25
    with pytest.raises(Exception, match="few_shots"):
        load_env("verifiers:vf_arith", env_args={"few_shots": True}, executor="inline")
    with pytest.raises(ValueError, match="unknown option"):
        load_env("verifiers:vf_arith", env_arg={}, executor="inline")


# ---- multi turn -------------------------------------------------------------------------------------
def test_multi_turn_env_passes_check_env(guess):
    assert guess.max_turns == 4
    assert check_env(guess)["gold_examples"] == 2


SCRIPTS = {
    "0": [["5", "8", "7"]],  # target 7: higher, lower, right
    "1": [["3"]],  # target 3: right at once
    "2": [["1", "2", "3", "4", "5"]],  # target 9: out of turns at 4
}


def test_multi_turn_rollout_is_driven_by_the_verifiers_env(hf_tokenizer):
    with load_env(
        f"verifiers:{GUESS}", env_config={"hint_prefix": "> "}, max_turns=4, executor="thread"
    ) as env:
        tasks = env.tasks()
        trajs = env.rollout(
            ScriptedGenerator(hf_tokenizer, SCRIPTS), tasks, sampling=SamplingParams(max_tokens=8)
        )
        by_game = {t.task.id: t for t in trajs}
        win = by_game["guess-0"]
        assert (win.turns, win.stop_reason) == (3, "done")
        assert [m["content"] for m in win.completion] == ["5", "> higher", "8", "> lower", "7"]
        assert [m["role"] for m in win.completion] == ["assistant", "user"] * 2 + ["assistant"]
        assert win.info["vf_rewards"] == {"won": [1.0, 1.0]} and win.info["vf_metrics"] == {"guesses": 3.0}
        assert (by_game["guess-1"].turns, by_game["guess-1"].stop_reason) == (1, "done")
        slow = by_game["guess-2"]
        assert (slow.turns, slow.stop_reason) == (4, "max_turns")
        # run() got a terminated segment at the turn limit and finished: its outcome is recorded
        assert slow.info["vf_done"] is True and slow.info["vf_rewards"] == {"won": [0.0, 1.0]}
        assert [m["content"] for m in slow.completion if m["role"] == "user"] == ["> higher"] * 3

        scores = env.score_batch(
            [
                {
                    "completion": t.completion,
                    "prompt": t.task.prompt,
                    "info": {**t.task.info, "episode": t.info},
                }
                for t in trajs
            ]
        )
    got = {t.task.id: (s.status, s.reward, s.metrics) for t, s in zip(trajs, scores)}
    assert got["guess-0"] == ("ok", 1.5, {"won": 1.0, "brief": 1.0, "guesses": 3.0})
    assert got["guess-1"] == ("ok", 1.5, {"won": 1.0, "brief": 1.0, "guesses": 1.0})
    assert got["guess-2"] == ("ok", 0.0, {"won": 0.0, "brief": 0.0, "guesses": 4.0})


def test_multi_turn_score_replays_the_env_and_rejects_fabricated_replies(guess):
    info = guess.tasks()[0].info
    honest = [
        {"role": "assistant", "content": "9"},
        {"role": "user", "content": "lower"},
        {"role": "assistant", "content": "7"},
    ]
    assert guess.score(honest, info=info).reward == 1.5
    forged = [dict(honest[0]), {"role": "user", "content": "correct, well done"}, dict(honest[2])]
    score = guess.score(forged, info=info)
    assert (score.status, score.reward, score.metrics) == ("ok", 0.0, {"rejected": 1.0})
    after_the_end = [*honest, {"role": "user", "content": "again"}, {"role": "assistant", "content": "7"}]
    assert guess.score(after_the_end, info=info).metrics == {"rejected": 1.0}
    cut = honest[:1]  # an episode cut at its first turn: run() is told the exchange is over
    assert guess.score(cut, info=info).metrics == {"won": 0.0, "brief": 0.0, "guesses": 1.0}


# ---- GRPO -------------------------------------------------------------------------------------------
def test_grpo_smoke_run_on_the_single_turn_fixture(grpo_smoke):
    for row in grpo_smoke(f"verifiers:{ARITH}", {"env_args": {"few_shot": True}}):
        assert row["status_invalid_input"] == 0.0
        assert {"env/correct", "env/formatted", "env/reply_chars"} <= set(row)  # the rubric's own terms


# ---- the other direction ----------------------------------------------------------------------------
class EchoEnv(Environment):
    """Reward 1.0 for a completion equal to the gold answer; a failure status for a ``!``."""

    name = "echo_for_vf"

    def verify(self, completion, *, answer, prompt, info):
        from rewardkit import completion_text

        text = completion_text(completion)
        if "!" in text:
            return Score.failure("error", "the checker broke")
        return Score.ok(float(text.strip() == answer), {"chars": float(len(text))})

    def tasks(self, split="train"):
        system = {"role": "system", "content": "Repeat the word."}
        return [
            Task(prompt=(system, {"role": "user", "content": w}), answer=w, id=w) for w in ("red", "blue")
        ]


def _vf_scores(vf_task, reply: str) -> tuple[dict, dict]:
    from verifiers.v1.dialects.chat import message_to_wire

    data = vf_task.data
    prompt = [{"role": "system", "content": data.system_prompt}] if data.system_prompt else []
    if isinstance(data.prompt, str):
        prompt.append({"role": "user", "content": data.prompt})
    else:
        prompt += [message_to_wire(m) for m in data.prompt]
    _, values = _vf_reference(vf_task, [*prompt, {"role": "assistant", "content": reply}])
    return values


def test_to_verifiers_scores_gold_and_wrong_completions_with_verifiers_scoring():
    with EchoEnv(executor="inline") as env:
        taskset = to_verifiers(env)
        assert isinstance(taskset, vf.Taskset)
        vf_tasks = list(taskset)
        assert [t.data.prompt_text for t in vf_tasks] == ["red", "blue"]
        assert vf_tasks[0].data.system_prompt == "Repeat the word."
        assert _vf_scores(vf_tasks[1], "blue") == {"rewardkit": 1.0, "chars": 4.0}
        assert _vf_scores(vf_tasks[1], "red") == {"rewardkit": 0.0, "chars": 3.0}
        with pytest.raises(vf.TaskError, match="status error: the checker broke"):
            _vf_scores(vf_tasks[0], "red!")


def test_verifiers_loader_loads_a_rewardkit_env_by_name(tmp_path, monkeypatch):
    """A one-line shim module is a verifiers taskset plugin; verifiers' own loader builds it."""
    (tmp_path / "rk_math_shim.py").write_text(
        "from rewardkit.envs.adapters.verifiers import RewardkitTaskset\n__all__ = ['RewardkitTaskset']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    options = {"num_tasks": {"train": 2, "test": 1}, "executor": "inline"}
    config = vf.resolve_env_config({"taskset": {"id": "rk_math_shim", "env": "math", "env_config": options}})
    taskset = vf.load_environment(config).taskset
    vf_tasks = list(taskset)
    assert len(vf_tasks) == 2
    gold = vf_tasks[0].data.answer
    assert _vf_scores(vf_tasks[0], f"<answer>{gold}</answer>")["rewardkit"] == 1.0
    assert _vf_scores(vf_tasks[0], "<answer>not a number</answer>")["rewardkit"] == 0.0
    taskset.env.close()
