"""The rollout loop, proved with a number-guessing game and a scripted policy.

The environment answers "higher" / "lower" and ends the episode on the right guess. The policy is a
``Generator`` that plays fixed scripts, encoded with a real (trained-on-the-spot) tokenizer. The
generator also checks the loop's token-in/token-out promise: every later prompt must start with the
exact ids of the episode so far, else it cannot find its place in the script and fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from rewardkit import Environment, EnvStep, Score, Task, check_env, completion_text
from rewardkit.generation.base import Generation, Generator, SamplingParams

LOGPROB = -0.25
"""Every scripted token's log-probability: non-zero so a misplaced logprob shows."""


class GuessEnv(Environment):
    """Guess a hidden integer (``Task.answer``): the environment says higher or lower."""

    name = "guess"

    def __init__(self, *, max_turns: int = 4, **config: Any) -> None:
        config.setdefault("executor", "inline")
        super().__init__(**config)
        self.max_turns = max_turns  # type: ignore[misc]  # per-instance: the game's turn budget

    def initial_state(self, task: Task) -> dict[str, Any]:
        return {"target": int(task.answer), "guesses": []}

    def env_response(self, messages: list[dict], state: dict[str, Any]) -> EnvStep:
        guess = _number(messages[-1]["content"])
        state["guesses"].append(guess)
        if guess == state["target"]:
            return EnvStep(done=True, reward=1.0)
        hint = "say a number" if guess is None else ("higher" if guess < state["target"] else "lower")
        return EnvStep(messages=({"role": "user", "content": hint},), reward=0.0)

    def verify(self, completion, *, answer, prompt, info) -> Score:
        won = _number(completion_text(completion)) == int(answer)
        turns = 1 if isinstance(completion, str) else sum(m["role"] == "assistant" for m in completion)
        return Score.ok(float(won), {"turns": float(turns)})

    def gold_examples(self) -> list[dict[str, Any]]:
        return [
            {"completion": "7", "answer": 7},
            {
                "completion": [
                    {"role": "assistant", "content": "5"},
                    {"role": "user", "content": "higher"},
                    {"role": "assistant", "content": "7"},
                ],
                "answer": 7,
            },
        ]


def _number(text: str) -> int | None:
    match = re.search(r"-?\d+", text or "")
    return int(match.group()) if match else None


class ScriptedGenerator:
    """Plays ``scripts[game_id][sample] = [turn, ...]``; a turn is ``text`` or ``(text, "length")``.

    A finished ("stop") turn ends with the tokenizer's end-of-turn token, as a chat model's would.
    """

    def __init__(self, tokenizer: Any, scripts: dict[str, list[list[Any]]]) -> None:
        self.tokenizer = tokenizer
        self.scripts = scripts
        self.calls: list[tuple[int, SamplingParams]] = []
        self._histories: list[tuple[tuple[int, ...], str, int, int]] = []  # (ids, game, sample, turn)

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Generation]]:
        self.calls.append((len(prompts), params))
        out = []
        for prompt in prompts:
            prompt = tuple(prompt)
            place = self._find(prompt)
            if place is None:  # the first turn: the game id is in the prompt text
                game = re.search(r"Game (\w+)", self.tokenizer.decode(prompt)).group(1)
                places = [(game, j, 0) for j in range(params.n)]
            else:
                game, j, turn = place
                places = [(game, j, turn + 1)]
            out.append([self._play(prompt, *p) for p in places])
        return out

    def _find(self, prompt: tuple[int, ...]) -> tuple[str, int, int] | None:
        matches = [h for h in self._histories if prompt[: len(h[0])] == h[0]]
        if not matches:
            return None
        ids, game, j, turn = max(matches, key=lambda h: len(h[0]))
        assert len(prompt) > len(ids), "a later turn must add the environment's reply to the history"
        return game, j, turn

    def _play(self, prompt: tuple[int, ...], game: str, j: int, turn: int) -> Generation:
        entry = self.scripts[game][j][turn]
        text, finish = (entry, "stop") if isinstance(entry, str) else entry
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if finish == "stop":
            ids.append(self.tokenizer.eos_token_id)
        self._histories.append((prompt + tuple(ids), game, j, turn))
        return Generation(tuple(ids), (LOGPROB,) * len(ids), finish, text=text)

    samples_trained_module = False
    """A script is no trained module: its log-probs are not a policy's."""

    def update_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Scripts have no weights."""

    def sleep(self) -> None:
        pass


def _segments(mask: Sequence[int], ids: Sequence[int], value: int) -> list[list[int]]:
    """Maximal runs of ``ids`` where ``mask`` equals ``value``."""
    runs: list[list[int]] = []
    previous = None
    for m, i in zip(mask, ids, strict=True):
        if m == value:
            if previous != value:
                runs.append([])
            runs[-1].append(i)
        previous = m
    return runs


SCRIPTS = {
    "win": [["5", "8", "7"]],  # target 7: higher, lower, correct
    "slow": [["1", "2", "3", "4", "5"]],  # target 9: runs out of turns at 4
    "long": [["6", ("I will think about this for a very long", "length")]],  # target 2
}
TARGETS = {"win": 7, "slow": 9, "long": 2}


@pytest.fixture(scope="module")
def env():
    with GuessEnv(max_turns=4) as guess_env:
        yield guess_env


def _chat_task(game: str) -> Task:
    prompt = ({"role": "user", "content": f"Game {game}: guess my number from 1 to 10."},)
    return Task(prompt=prompt, answer=TARGETS[game], id=game)


def test_scripted_generator_implements_the_protocol(hf_tokenizer):
    assert isinstance(ScriptedGenerator(hf_tokenizer, SCRIPTS), Generator)


def test_turns_stop_reasons_and_turn_rewards(env, hf_tokenizer):
    gen = ScriptedGenerator(hf_tokenizer, SCRIPTS)
    trajs = env.rollout(
        gen, [_chat_task(g) for g in ("win", "slow", "long")], sampling=SamplingParams(max_tokens=16)
    )
    by_id = {t.task.id: t for t in trajs}
    assert [t.task.id for t in trajs] == ["win", "slow", "long"]  # grouped in task order

    assert (by_id["win"].turns, by_id["win"].stop_reason, by_id["win"].truncated) == (3, "done", False)
    assert by_id["win"].turn_rewards == (0.0, 0.0, 1.0)
    assert (by_id["slow"].turns, by_id["slow"].stop_reason) == (4, "max_turns")
    assert by_id["slow"].turn_rewards == (0.0, 0.0, 0.0, 0.0)
    # A truncated turn ends the episode before the environment is asked about it.
    assert (by_id["long"].turns, by_id["long"].stop_reason, by_id["long"].truncated) == (2, "length", True)
    assert by_id["long"].turn_rewards == (0.0,)
    # Lock-step: one call for the first turn of all games, then one per later turn of the live ones.
    assert [n for n, _ in gen.calls] == [3, 3, 2, 1]
    assert all(p.n == 1 and p.max_tokens == 16 for _, p in gen.calls)


def test_masks_mark_exactly_the_policy_tokens(env, hf_tokenizer):
    gen = ScriptedGenerator(hf_tokenizer, SCRIPTS)
    trajs = env.rollout(gen, [_chat_task(g) for g in ("win", "slow", "long")])
    for traj in trajs:
        script = [e if isinstance(e, str) else e[0] for e in SCRIPTS[traj.task.id][0]][: traj.turns]
        policy = _segments(traj.completion_mask, traj.completion_ids, 1)
        assert [hf_tokenizer.decode(s, skip_special_tokens=True) for s in policy] == script
        assert traj.num_policy_tokens == sum(map(len, policy))
        assert all((lp == LOGPROB) == (m == 1) for lp, m in zip(traj.logprobs, traj.completion_mask))
        # Environment tokens hold the hints, rendered by the chat template.
        env_text = [
            hf_tokenizer.decode(s, skip_special_tokens=False)
            for s in _segments(traj.completion_mask, traj.completion_ids, 0)
        ]
        assert len(env_text) == traj.turns - 1
        assert all(re.fullmatch(r"\n<\|user\|>(higher|lower)<\|end\|>\n<\|assistant\|>", t) for t in env_text)
        # Prompt + completion ids are exactly what the chat template renders for the whole episode.
        rendered = hf_tokenizer.apply_chat_template(
            list(traj.task.prompt) + list(traj.completion), tokenize=False
        )
        full = hf_tokenizer.decode(list(traj.prompt_ids + traj.completion_ids), skip_special_tokens=False)
        assert rendered.startswith(full) and len(rendered) - len(full) <= len("<|end|>\n")


def test_completion_messages_are_scored_by_the_same_env(env, hf_tokenizer):
    gen = ScriptedGenerator(hf_tokenizer, SCRIPTS)
    trajs = env.rollout(gen, [_chat_task(g) for g in ("win", "slow")])
    win, slow = trajs
    assert [m["role"] for m in win.completion] == ["assistant", "user", "assistant", "user", "assistant"]
    assert [m["content"] for m in win.completion] == ["5", "higher", "8", "lower", "7"]
    scores = env.score_batch([{"completion": t.completion, "answer": t.task.answer} for t in trajs])
    assert [(s.reward, s.metrics["turns"]) for s in scores] == [(1.0, 3.0), (0.0, 4.0)]


def test_group_of_samples_per_task(env, hf_tokenizer):
    scripts = {"g": [["7"], ["3", "9", "7"]]}
    gen = ScriptedGenerator(hf_tokenizer, scripts)
    task = Task(prompt=({"role": "user", "content": "Game g: guess."},), answer=7, id="g")
    first, second = env.rollout(gen, [task], n=2)
    assert gen.calls[0][0] == 1 and gen.calls[0][1].n == 2  # both samples share one first-turn call
    assert (first.turns, first.stop_reason, second.turns, second.stop_reason) == (1, "done", 3, "done")
    assert first.prompt_ids == second.prompt_ids


def test_plain_text_prompt_without_chat_template(hf_tokenizer):
    """Without a chat template the hints are appended as raw text, still with mask 0."""
    tokenizer = hf_tokenizer.__class__(tokenizer_object=hf_tokenizer.backend_tokenizer, eos_token="<|end|>")
    assert not getattr(tokenizer, "chat_template", None)
    gen = ScriptedGenerator(tokenizer, {"plain": [["5", "7"]]})
    with GuessEnv(max_turns=3) as plain_env:
        (traj,) = plain_env.rollout(gen, [Task(prompt="Game plain: guess 1-10.", answer=7, id="plain")])
    assert (traj.turns, traj.stop_reason, traj.turn_rewards) == (2, "done", (0.0, 1.0))
    assert [tokenizer.decode(s) for s in _segments(traj.completion_mask, traj.completion_ids, 0)] == [
        "higher"
    ]
    assert tokenizer.decode(traj.prompt_ids) == "Game plain: guess 1-10."


def test_single_turn_env_stops_after_one_turn(hf_tokenizer):
    """The default env_response ends the episode: a single-turn env needs no rollout code."""

    class Echo(Environment):
        name = "echo"

        def verify(self, completion, *, answer, prompt, info):
            return float(completion == answer)

    gen = ScriptedGenerator(hf_tokenizer, {"one": [["7"], ["8"]]})
    with Echo(executor="inline") as echo:
        trajs = echo.rollout(gen, [Task(prompt="Game one: say 7.", answer="7", id="one")], n=2)
        assert [(t.turns, t.stop_reason, t.completion) for t in trajs] == [(1, "stop", "7"), (1, "stop", "8")]
        assert all(set(t.completion_mask) == {1} for t in trajs)
        assert [
            s.reward for s in echo.score_batch([{"completion": t.completion, "answer": "7"} for t in trajs])
        ] == [1.0, 0.0]


def test_guess_env_passes_check_env(env):
    assert check_env(env)["gold_examples"] == 2


def test_max_total_tokens_ends_the_episode(hf_tokenizer):
    gen = ScriptedGenerator(hf_tokenizer, {"budget": [["1", "2", "3"]]})
    with GuessEnv(max_turns=10) as budget_env:
        budget_env.max_total_tokens = 3  # a turn (2 ids) plus one hint is already past it
        (traj,) = budget_env.rollout(gen, [_chat_task_for("budget", 9)])
    assert (traj.turns, traj.stop_reason) == (1, "max_total_tokens")
    assert traj.completion_mask[-1] == 0  # the hint that crossed the budget is kept, unmasked


def _chat_task_for(game: str, target: int) -> Task:
    return Task(prompt=({"role": "user", "content": f"Game {game}: guess."},), answer=target, id=game)


class StopStringGenerator(ScriptedGenerator):
    """Ends "stop" turns on a stop string: no end-of-turn token is sampled."""

    def _play(self, prompt: tuple[int, ...], game: str, j: int, turn: int) -> Generation:
        gen = super()._play(prompt, game, j, turn)
        if gen.finish_reason != "stop":
            return gen
        ids = gen.token_ids[:-1]
        self._histories[-1] = (prompt + ids, game, j, turn)
        return Generation(ids, gen.logprobs[:-1], "stop", text=gen.text)


@pytest.mark.parametrize("trim", [False, True])
def test_turn_closing_is_added_when_the_policy_did_not_sample_it(hf_tokenizer, trim):
    """The template's end-of-turn text must separate turns even when the model stopped on a stop
    string, also with templates that trim the content (Llama 3 style)."""
    tokenizer = hf_tokenizer.__class__(
        tokenizer_object=hf_tokenizer.backend_tokenizer, pad_token="<|pad|>", eos_token="<|end|>"
    )
    template = hf_tokenizer.chat_template
    assert "{{ m['content'] }}" in template
    tokenizer.chat_template = (
        template.replace("{{ m['content'] }}", "{{ m['content'] | trim }}") if trim else template
    )
    gen = StopStringGenerator(tokenizer, {"ws": [[" 5 ", "8", "7"]]})
    with GuessEnv(max_turns=4) as game:
        (traj,) = game.rollout(gen, [_chat_task_for("ws", 7)])
    assert (traj.turns, traj.stop_reason) == (3, "done")
    env_text = [
        tokenizer.decode(s, skip_special_tokens=False)
        for s in _segments(traj.completion_mask, traj.completion_ids, 0)
    ]
    assert env_text == [
        "<|end|>\n<|user|>higher<|end|>\n<|assistant|>",
        "<|end|>\n<|user|>lower<|end|>\n<|assistant|>",
    ]
    policy = [tokenizer.decode(s) for s in _segments(traj.completion_mask, traj.completion_ids, 1)]
    assert policy == [" 5 ", "8", "7"]  # exactly as sampled, never re-rendered
