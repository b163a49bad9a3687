"""The tool_use environment driven through ``env.rollout`` by a scripted policy with a real tokenizer.

The tokenizer is a byte-level BPE trained here (``tokenizers``) and wrapped in transformers'
``PreTrainedTokenizerFast`` with a ChatML template, so chat rendering, special tokens and decoding are
the real code paths. The "model" is a function of the conversation so far; it returns text that is
turned into token ids the way a sampler would (optionally in a non-canonical split), and every prompt
it receives is recorded, so the tests can check that the sampler saw exactly what the trainer gets.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time

import pytest

from rewardkit import check_env, load_env
from rewardkit.envs.tool_use import ToolUseEnv
from rewardkit.generation.base import Generation, SamplingParams
from rewardkit.types import Score

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen3 style: the last assistant message gets an empty think block, earlier ones do not, so a
# re-render of the history is not a prefix of the render with the environment's reply.
QWEN3_LIKE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' and loop.last %}<think>\n\n</think>\n\n{% endif %}"
    "{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# A template with its own rules: the probe conversation is refused, so the history fallback is used.
SYSTEM_FIRST = (
    "{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system message must come first') }}"
    "{% endif %}" + CHATML
)
# Llama 3 style: the content is trimmed, so the sampled text does not appear verbatim in a re-render.
TRIMMING = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer(template: str = CHATML):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [
        '<tool_call>{"name": "calculator", "arguments": {"expression": "123 * 456"}}</tool_call>',
        "<answer>56088</answer> system user assistant tool What is the exact integer? search founded",
        "You can call tools. Each result comes back in a tool message. population city river",
    ]
    tok.train_from_iterator(corpus * 30, trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    hf.chat_template = template
    return hf


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


class ScriptedGenerator:
    """A Generator whose policy is ``policy(conversation_text, sample_index) -> reply text``.

    ``split_chars`` samples each character as its own token(s): a valid but non-canonical tokenisation
    that a re-encode of the text would not reproduce. ``eos=False`` ends turns without an end-of-turn
    token, as when the sampler stops on a stop string such as ``</tool_call>``.
    """

    def __init__(self, tokenizer, policy, *, split_chars=False, eos=True, delay_s=0.0):
        self.tokenizer, self.policy = tokenizer, policy
        self.split_chars, self.eos, self.delay_s = split_chars, eos, delay_s
        self.calls: list[tuple[tuple[int, ...], Generation]] = []

    def sample_ids(self, text: str) -> list[int]:
        if self.split_chars:
            ids = [i for ch in text for i in self.tokenizer.encode(ch, add_special_tokens=False)]
        else:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
        return ids + ([self.tokenizer.eos_token_id] if self.eos else [])

    def generate(self, prompts, params: SamplingParams):
        out = []
        for prompt in prompts:
            group = []
            for k in range(params.n):
                time.sleep(self.delay_s)
                context = self.tokenizer.decode(list(prompt), skip_special_tokens=False)
                text = self.policy(context, k)
                ids = self.sample_ids(text)[: params.max_tokens]
                finish = "length" if len(self.sample_ids(text)) > params.max_tokens else "stop"
                logprobs = tuple(-0.01 * (j + 1) - 0.001 * len(self.calls) for j in range(len(ids)))
                gen = Generation(
                    tuple(ids), logprobs, finish, text=self.tokenizer.decode(ids, skip_special_tokens=True)
                )
                self.calls.append((tuple(prompt), gen))
                group.append(gen)
            out.append(group)
        return out

    samples_trained_module = False

    def update_weights(self, named_tensors) -> None:
        pass

    def sleep(self) -> None:
        pass


def call(name: str, **arguments) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def last_tool_result(context: str) -> str | None:
    results = re.findall(r"<\|im_start\|>tool\n(.*?)<\|im_end\|>", context, re.S)
    return results[-1] if results else None


def calculator_policy(context: str, k: int) -> str:
    """Calls the calculator on the question's expression, then answers with the result."""
    result = last_tool_result(context)
    if result is None:
        expression = re.search(r"What is (.*?)\? Give", context).group(1)
        return f"I will compute it.\n{call('calculator', expression=expression)}"
    return f"<answer>{result}</answer>"


def runs(mask, ids, value):
    """Maximal runs of ``ids`` where ``mask == value``, as lists."""
    out, current = [], []
    for m, i in zip(mask, ids):
        if m == value:
            current.append(i)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def rollout(env, generator, tasks, n=1, max_tokens=128):
    return env.rollout(generator, tasks, n=n, sampling=SamplingParams(max_tokens=max_tokens, seed=0))


# ---- exact masks and no re-tokenisation -------------------------------------------------------------
@pytest.mark.parametrize("template", ["chatml", "qwen3_like", "system_first"])
def test_multi_turn_mask_is_exactly_the_policy_turns(tokenizer, template):
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = {"chatml": CHATML, "qwen3_like": QWEN3_LIKE, "system_first": SYSTEM_FIRST}[
        template
    ]
    env = ToolUseEnv(task="calculator", executor="inline")
    tasks = list(env.tasks("test"))[:2]
    gen = ScriptedGenerator(tokenizer, calculator_policy)
    trajectories = rollout(env, gen, tasks, n=2)
    assert len(trajectories) == 4
    by_prompt = {}
    for prompt, g in gen.calls:
        by_prompt.setdefault(prompt, []).append(g)
    for traj in trajectories:
        assert traj.turns == 2 and traj.stop_reason == "done"
        assert traj.info["status"] == "ok" and traj.info["end"] == "answer" and traj.info["tool_calls"] == 1
        policy_runs = runs(traj.completion_mask, traj.completion_ids, 1)
        env_runs = runs(traj.completion_mask, traj.completion_ids, 0)
        assert len(policy_runs) == 2 and len(env_runs) == 1
        # The masked-in tokens decode to exactly the model's turns, end-of-turn token included.
        sampled = [m["content"] for m in traj.completion if m["role"] == "assistant"]
        decoded = [tokenizer.decode(r, skip_special_tokens=False) for r in policy_runs]
        assert decoded == [s + "<|im_end|>" for s in sampled]
        # The masked-out tokens are exactly the template's rendering of the tool message.
        tool_text = traj.completion[1]["content"]
        assert tokenizer.decode(env_runs[0], skip_special_tokens=False) == (
            f"\n<|im_start|>tool\n{tool_text}<|im_end|>\n<|im_start|>assistant\n"
        )
        assert tool_text == traj.task.answer
        # The second turn's prompt is exactly prompt + everything before it: nothing re-rendered.
        second_prompt = traj.prompt_ids + tuple(policy_runs[0]) + tuple(env_runs[0])
        assert second_prompt in by_prompt
        assert traj.completion_ids[len(second_prompt) - len(traj.prompt_ids) :] in [
            g.token_ids for g in by_prompt[second_prompt]
        ]
        # Log-probabilities sit on policy tokens only.
        assert all((lp == 0.0) == (m == 0) for lp, m in zip(traj.logprobs, traj.completion_mask))
        assert traj.turn_rewards == (1.0, 1.0)
        assert env.score(traj.completion, answer=traj.task.answer, info=traj.task.info).reward == 1.0


def test_full_sequence_matches_a_fresh_template_render(tokenizer):
    env = ToolUseEnv(task="calculator", executor="inline")
    [traj] = rollout(env, ScriptedGenerator(tokenizer, calculator_policy), list(env.tasks("test"))[:1])
    text = tokenizer.decode(list(traj.prompt_ids + traj.completion_ids), skip_special_tokens=False)
    rendered = tokenizer.apply_chat_template(list(traj.task.prompt) + list(traj.completion), tokenize=False)
    assert rendered == text + "\n"  # the template's newline after the final turn was never sampled


def test_sampled_ids_are_kept_even_when_not_canonical(tokenizer):
    env = ToolUseEnv(task="calculator", executor="inline")
    gen = ScriptedGenerator(tokenizer, calculator_policy, split_chars=True)
    [traj] = rollout(env, gen, list(env.tasks("test"))[:1], max_tokens=400)
    policy_runs = runs(traj.completion_mask, traj.completion_ids, 1)
    sampled = [g.token_ids for _, g in gen.calls]
    assert [tuple(r) for r in policy_runs] == sampled
    canonical = [
        tuple(tokenizer.encode(g.text, add_special_tokens=False)) + (tokenizer.eos_token_id,)
        for _, g in gen.calls
    ]
    assert canonical != sampled, "the test needs a tokenisation that a re-encode would change"
    assert traj.info["end"] == "answer"


def test_turn_closed_by_environment_when_model_stops_without_eos_under_trimming_template():
    """A stop string (no end-of-turn token) and a template that trims content: the environment must
    close the model's turn with the template's end-of-turn text, as a fresh render would."""
    tok = make_tokenizer(TRIMMING)
    env = ToolUseEnv(task="calculator", executor="inline")

    def policy(context, k):
        return " " + calculator_policy(context, k)  # leading space: trimmed away in a re-render

    gen = ScriptedGenerator(tok, policy, eos=False)
    [traj] = rollout(env, gen, list(env.tasks("test"))[:1])
    env_runs = runs(traj.completion_mask, traj.completion_ids, 0)
    assert tok.decode(env_runs[0], skip_special_tokens=False).startswith("<|im_end|><|im_start|>tool\n")
    full = tok.decode(list(traj.prompt_ids + traj.completion_ids), skip_special_tokens=False)
    rendered = tok.apply_chat_template(list(traj.task.prompt) + list(traj.completion), tokenize=False)
    # Identical up to the stripped leading spaces the model really sampled, and the final closing.
    assert full.replace("assistant\n ", "assistant\n") + "<|im_end|>" == rendered


# ---- episode endings --------------------------------------------------------------------------------
def test_malformed_call_goes_back_as_tool_result_and_episode_continues(tokenizer):
    env = ToolUseEnv(task="calculator", executor="inline")

    def policy(context, k):
        results = re.findall(r"<\|im_start\|>tool\n(.*?)<\|im_end\|>", context, re.S)
        if not results:
            return '<tool_call>{"name": "calculator", "arguments": {"expression": </tool_call>'
        if len(results) == 1:
            return calculator_policy(context.split("<|im_start|>assistant")[0] + "<|im_start|>assistant\n", k)
        return f"<answer>{results[-1]}</answer>"

    [traj] = rollout(env, ScriptedGenerator(tokenizer, policy), list(env.tasks("test"))[:1])
    assert "not valid JSON" in traj.completion[1]["content"]
    assert traj.turns == 3 and traj.turn_rewards == (0.0, 1.0, 1.0)
    score = env.score(traj.completion, answer=traj.task.answer, info=traj.task.info)
    assert score.reward == 1.0
    assert score.metrics["parse_errors"] == 1 and score.metrics["tool_calls"] == 2
    assert traj.info["parse_errors"] == 1 and traj.info["tool_errors"] == 1


def test_hanging_tool_ends_with_status_not_a_hang(tokenizer):
    release = threading.Event()

    def wait_forever(seconds: int) -> str:
        """Never returns (until the test releases it).

        Args:
            seconds: ignored.
        """
        release.wait()
        return "too late"

    env = ToolUseEnv(
        task=None, tools=[wait_forever], tool_timeout_s=0.2, max_tool_errors=1, executor="inline"
    )
    task = env.make_task("Wait.", answer="1")
    start = time.monotonic()
    [traj] = rollout(env, ScriptedGenerator(tokenizer, lambda c, k: call("wait_forever", seconds=5)), [task])
    release.set()
    assert time.monotonic() - start < 3.0
    assert traj.stop_reason == "done"
    assert traj.info["status"] == "error" and traj.info["end"] == "too_many_tool_errors"
    assert traj.info["tool_timeouts"] == 1


def test_episode_time_limit_ends_with_timeout_status(tokenizer):
    release = threading.Event()

    def slow(x: int) -> int:
        """Takes its time.

        Args:
            x: any integer.
        """
        release.wait(0.4)
        return x

    env = ToolUseEnv(
        task=None, tools=[slow], episode_timeout_s=1.0, tool_timeout_s=10.0, max_turns=50, executor="inline"
    )
    start = time.monotonic()
    [traj] = rollout(
        env, ScriptedGenerator(tokenizer, lambda c, k: call("slow", x=1)), [env.make_task("?", "1")]
    )
    release.set()
    assert time.monotonic() - start < 4.0
    assert traj.info["status"] == "timeout" and traj.info["end"] == "episode_timeout"
    assert traj.turns < 50


def test_sandbox_failure_ends_the_episode_as_an_infrastructure_error(tokenizer):
    from rewardkit.sandbox import SandboxError

    def run(code: str) -> str:
        """Runs code somewhere that is down.

        Args:
            code: a program.
        """
        raise SandboxError("docker engine is not running")

    env = ToolUseEnv(task=None, tools=[run], executor="inline")
    [traj] = rollout(
        env, ScriptedGenerator(tokenizer, lambda c, k: call("run", code="1")), [env.make_task("?", "1")]
    )
    assert traj.turns == 1
    assert traj.info["status"] == "error" and traj.info["end"] == "tool_infrastructure_error"
    score = env.score(traj.completion, answer="1", info={**traj.task.info, "episode": traj.info})
    assert score.status == "error" and "drop this episode" in score.info["reason"]


def test_past_the_deadline_an_answer_still_ends_as_an_answer():
    env = ToolUseEnv(task="calculator", executor="inline")
    state = env.initial_state(env.make_task("?", "1"))
    state["deadline"] = time.monotonic() - 1.0
    answer = env.env_response([{"role": "assistant", "content": "<answer>1</answer>"}], state)
    assert answer.done and answer.info["end"] == "answer" and answer.info["status"] == "ok"
    late = env.env_response([{"role": "assistant", "content": call("calculator", expression="1")}], state)
    assert late.done and late.info["end"] == "episode_timeout" and late.info["status"] == "timeout"
    assert late.info["tool_calls"] == 0  # nothing was started after the deadline


def test_no_tool_call_ends_the_episode_and_scores_zero(tokenizer):
    env = ToolUseEnv(task="calculator", executor="inline")
    [traj] = rollout(
        env, ScriptedGenerator(tokenizer, lambda c, k: "I think it is 5."), list(env.tasks("test"))[:1]
    )
    assert traj.turns == 1 and traj.info["end"] == "no_tool_call"
    score = env.score(traj.completion, answer=traj.task.answer, info=traj.task.info)
    assert score.reward == 0.0 and score.status == "ok" and "no <answer>" in score.info["reason"]


def test_no_call_reply_nudges_instead_of_ending(tokenizer):
    env = ToolUseEnv(
        task="calculator", no_call_reply="Call a tool or answer.", max_turns=3, executor="inline"
    )
    [traj] = rollout(env, ScriptedGenerator(tokenizer, lambda c, k: "hmm"), list(env.tasks("test"))[:1])
    assert traj.stop_reason == "max_turns" and traj.turns == 3 and traj.info["nudges"] == 2
    assert [m["role"] for m in traj.completion] == ["assistant", "user"] * 2 + ["assistant"]
    env_runs = runs(traj.completion_mask, traj.completion_ids, 0)
    assert tokenizer.decode(env_runs[0], skip_special_tokens=False) == (
        "\n<|im_start|>user\nCall a tool or answer.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_max_turns_and_max_total_tokens_stop_the_episode(tokenizer):
    loop = ScriptedGenerator(tokenizer, lambda c, k: call("calculator", expression="1 + 1"))
    env = ToolUseEnv(task="calculator", max_turns=3, max_tool_errors=10, executor="inline")
    [traj] = rollout(env, loop, list(env.tasks("test"))[:1])
    assert traj.stop_reason == "max_turns" and traj.turns == 3
    assert "end" not in traj.info and traj.info["tool_calls"] == 2 and traj.info["status"] == "ok"
    env = ToolUseEnv(task="calculator", max_turns=50, max_total_tokens=120, executor="inline")
    [traj] = rollout(env, loop, list(env.tasks("test"))[:1])
    assert traj.stop_reason == "max_total_tokens" and len(traj.completion_ids) >= 120


def test_python_tool_runs_code_in_the_sandbox_during_episodes(tokenizer):
    env = ToolUseEnv(task="calculator", tools=["calculator", "python"], executor="inline")
    if not env.tools["python"].fn.available():
        pytest.skip("the local sandbox cannot run here")

    def policy(context, k):
        result = last_tool_result(context)
        if result is None:
            expression = re.search(r"What is (.*?)\? Give", context).group(1)
            return call("python", code=f"print({expression})")
        return f"<answer>{result.strip()}</answer>"

    tasks = list(env.tasks("test"))[:2]
    trajectories = rollout(env, ScriptedGenerator(tokenizer, policy), tasks, n=2)
    assert all(t.info["calls_by_tool"] == {"python": 1} for t in trajectories)
    assert [env.score(t.completion, answer=t.task.answer, info=t.task.info).reward for t in trajectories] == [
        1.0
    ] * 4


def test_lookup_two_hop_episode(tokenizer):
    env = ToolUseEnv(task="lookup", executor="inline")
    task = next(t for t in env.tasks("test") if "founder of" in t.prompt[-1]["content"])
    city = re.search(r"founder of (\w+) born", task.prompt[-1]["content"]).group(1)

    def policy(context, k):
        results = re.findall(r"<\|im_start\|>tool\n(.*?)<\|im_end\|>", context, re.S)
        if not results:
            return call("search", query=city)
        if len(results) == 1:
            founder = re.search(r"founded in \d+ by ([A-Z]\w+ [A-Z]\w+)", results[0]).group(1)
            return call("search", query=founder)
        year = re.search(r"born in (\d+)", results[1]).group(1)
        return f"<answer>{year}</answer>"

    [traj] = rollout(env, ScriptedGenerator(tokenizer, policy), [task])
    assert traj.turns == 3 and traj.info["calls_by_tool"] == {"search": 2}
    assert env.score(traj.completion, answer=task.answer, info=task.info).reward == 1.0


# ---- scoring, tasks, config -------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["calculator", "lookup"])
def test_check_env_passes_with_worker_processes(task):
    env = load_env("tool_use", task=task, workers=1)
    try:
        report = check_env(env)
    finally:
        env.close()
    assert report["gold_examples"] == 3


def test_gold_examples_show_call_result_and_answer():
    env = ToolUseEnv(task="calculator", executor="inline")
    for sample in env.gold_examples():
        roles = [m["role"] for m in sample["completion"]]
        assert roles == ["assistant", "tool", "assistant"]
        assert sample["completion"][1]["content"] == sample["answer"]


def test_splits_are_disjoint_and_deterministic():
    env = ToolUseEnv(task="calculator", n_train=2000, n_test=200)
    train = {t.prompt[-1]["content"] for t in env.tasks("train")}
    test = {t.prompt[-1]["content"] for t in env.tasks("test")}
    assert len(train) == 2000 and len(test) == 200 and not train & test
    assert [t.answer for t in ToolUseEnv(task="calculator", n_test=200).tasks("test")] == [
        t.answer for t in env.tasks("test")
    ]
    lookup = ToolUseEnv(task="lookup")
    cities = [
        {re.search(r"(?:of|city of) (\w+)[ ?]", t.prompt[-1]["content"]).group(1) for t in lookup.tasks(s)}
        for s in ("train", "test")
    ]
    assert cities[0] and cities[1] and not cities[0] & cities[1]


def test_reward_composes_format_and_efficiency_terms():
    env = ToolUseEnv(
        task="calculator", executor="inline", format_weight=0.5, efficiency_weight=0.25, max_tool_calls=4
    )
    gold = env.gold_examples()[0]
    score = env.score(gold["completion"], answer=gold["answer"], info=gold["info"])
    assert score.metrics["outcome"] == 1.0 and score.metrics["tool_calls"] == 1
    assert score.reward == pytest.approx(1.0 + 0.5 * 1.0 + 0.25 * (1 - 1 / 4))
    wrong = list(gold["completion"][:-1]) + [{"role": "assistant", "content": "<answer>7</answer>"}]
    assert env.score(wrong, answer=gold["answer"], info=gold["info"]).metrics["outcome"] == 0.0


def test_weighted_composition_with_registered_efficiency_env():
    env = load_env(
        "weighted",
        components={
            "tool_use": {"weight": 1.0, "task": "calculator"},
            "efficiency": {"weight": 0.5, "length_penalty": "none", "max_ops": 4},
        },
        executor="inline",
    )
    gold = env.primary.gold_examples()[0]  # one call out of a budget of 4: efficiency 0.75
    score = env.score(gold["completion"], answer=gold["answer"], info=gold["info"])
    assert score.reward == pytest.approx(1.0 + 0.5 * 0.75)
    assert score.metrics["efficiency/ops"] == 1.0
    assert env.max_turns == 6


def test_openai_style_tool_calls_are_counted():
    env = ToolUseEnv(task="calculator", executor="inline")
    args = json.dumps({"expression": "2 * 3"})
    completion = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "calculator", "arguments": args}}
            ],
        },
        {"role": "tool", "content": "6", "tool_call_id": "a"},
        {"role": "assistant", "content": "<answer>6</answer>"},
    ]
    score = env.score(completion, answer="6")
    assert score.reward == 1.0 and score.metrics["tool_calls"] == 1
    step = env.env_response([completion[0]], env.initial_state(env.make_task("?", "6")))
    assert step.messages[0]["content"] == "6" and step.messages[0]["tool_call_id"] == "a"


def test_bad_inputs_and_missing_answer_are_statuses():
    env = ToolUseEnv(task="calculator", executor="inline")
    assert env.score(None, answer="1").status == "invalid_input"
    score = env.score("<answer>1</answer>")
    assert isinstance(score, Score) and score.status == "invalid_input"


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"task": "chess"},
            "environment 'tool_use': task: got 'chess', expected one of 'calculator', 'lookup'",
        ),
        (
            {"sandbox": "nope"},
            "environment 'tool_use': sandbox: got 'nope', expected one of 'local', 'docker'",
        ),
        (
            {"sandbox": "dockr"},
            r"sandbox: got 'dockr', expected one of 'local', 'docker' \(did you mean 'docker'\?\)",
        ),
        ({"max_output_chars": 0}, "environment 'tool_use': max_output_chars: got 0, expected >= 1"),
        ({"task": None}, "pass tools="),
        ({"max_turns": 0}, "max_turns"),
        ({"tools": ["shell"]}, "unknown built-in tool"),
        ({"answer_match": "fuzzy"}, "answer_match"),
        ({"tool_timeout_s": 0}, "tool_timeout_s"),
    ],
)
def test_bad_config_raises_at_load(config, message):
    with pytest.raises(ValueError, match=message):
        load_env("tool_use", **config)


# ---- the docs example -------------------------------------------------------------------------------
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "tool_use.md"


def docs_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert blocks, "docs/tool_use.md has no python example"
    return blocks[0]


def test_docs_example_is_under_40_lines_and_runs(tmp_path):
    code = docs_example()
    assert len([line for line in code.splitlines() if line.strip()]) < 40
    script = tmp_path / "shop_env.py"
    script.write_text(code)
    root = DOCS.parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "'name': 'shop', 'gold_examples': 2, 'tasks_checked': 2" in done.stdout


def test_docs_example_env_runs_episodes(tokenizer):
    namespace: dict = {"__name__": "shop_example"}
    exec(compile(docs_example(), "shop_example", "exec"), namespace)
    env = namespace["ShopEnv"](executor="inline")

    def policy(context, k):
        result = last_tool_result(context)
        if result is None:
            return call("price", item=re.search(r"How much do \d+ (\w+?)s cost", context).group(1))
        n = int(re.search(r"How much do (\d+)", context).group(1))
        return f"<answer>{float(result) * n}</answer>"

    trajectories = rollout(env, ScriptedGenerator(tokenizer, policy), list(env.tasks("train")), n=2)
    scores = [env.score(t.completion, answer=t.task.answer, info=t.task.info).reward for t in trajectories]
    assert scores == [1.0] * 4


def test_docs_train_config_and_eval_suite_parse():
    yaml = pytest.importorskip("yaml")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)]
    train_raw = next(b for b in blocks if "algorithm" in b)
    suite_raw = next(b for b in blocks if "environments" in b)
    try:
        from rewardkit.eval.suite import parse_suite
        from rewardkit.rl.config import TrainConfig
    except ImportError as exc:
        pytest.skip(f"trainer/evaluator config is not available: {exc}")
    cfg = TrainConfig.from_dict(train_raw)
    # no </tool_call> stop string: it would end a turn after its first call (parallel calls need the whole turn)
    assert cfg.env == "tool_use" and tuple(cfg.stop) == ()
    load_env(cfg.env, **cfg.env_config).close()
    suite = parse_suite(suite_raw)
    for entry in suite.environments:
        env = load_env(entry.env, **entry.config)
        assert entry.tasks.load(env)
        env.close()
