"""The ``harness`` environment: train on any agent that talks to an OpenAI-compatible endpoint.

An agent is a plain function ``agent(base_url, task, episode_id)`` that solves ``task`` by calling the
chat completions API at ``base_url`` (with the ``openai`` client, ``httpx``, ``urllib``, any agent
framework that takes a ``base_url``) and returns its final answer: a string, a list of messages, or
None (then the last reply is the answer). ``base_url`` already names the episode
(``http://127.0.0.1:PORT/e/EPISODE/v1``), so nothing else is needed; an agent may also send the
``X-Episode-Id`` header or ``user=episode_id``.

``HarnessEnv.rollout`` (what the trainer and the evaluator call) starts ``rewardkit.serve.ChatServer``
in this process on 127.0.0.1 and a free port, in front of the trainer's own generator, runs
``len(tasks) * n`` agent episodes on ``agent_workers`` threads, and turns each episode's recorded calls
into one ``Trajectory``, token in, token out:

- ``prompt_ids`` are the first call's prompt ids;
- each call's sampled ids follow, mask 1, with the sampler's log-probs;
- between two calls come the ids by which the next call's prompt extends the previous call's prompt +
  sampled ids (the chat template's end of turn, the tool results or user messages the agent added,
  the next generation prompt), mask 0, log-prob 0.

So the trained tokens are exactly the sampled ones. The server keeps that true for an agent that
continues its conversation (it sends back the reply it got and appends messages): the next prompt is
built on the previous call's ids, never a re-tokenisation (``rewardkit.serve``).

An episode that cannot be one such sequence fails, never a silent 0: a later call whose prompt does not
start with the previous call's prompt + sampled ids (the agent edited, dropped or summarised its
history), a call with ``n > 1``, more than ``max_calls`` calls, no call at all, an agent that raises
(status ``error``) or runs past ``agent_timeout_s`` (status ``timeout``). Its Score has that status and
reason, and its trajectory keeps the consistent calls with ``completion_mask`` all 0, so no token of a
failed episode is trained. (Splitting such an episode into several trajectories is not done: the trainer
groups ``n`` trajectories per task, one per episode.)

The reward is another environment's verdict on the agent's answer: ``reward_env`` (default ``math``)
scores it, and its tasks, gold examples and exploit probes are the harness's.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rewardkit.envs.base import Environment
from rewardkit.generation.base import Generator, SamplingParams
from rewardkit.scoring import ScoringConfig, score_one
from rewardkit.types import Completion, Message, Sample, Score, Task, Trajectory

if TYPE_CHECKING:
    from rewardkit.envs.probes import Probe
    from rewardkit.serve import Call, ChatServer

WHERE = "environment 'harness'"


@dataclass(frozen=True)
class HarnessConfig:
    """Options of ``load_env("harness", ...)``."""

    agent: Any = "rewardkit.envs.harness:single_call_agent"
    """The agent ``agent(base_url, task, episode_id) -> answer``: ``module:function``,
    ``path/to/file.py:function`` or the function itself. The default sends the task's prompt once."""
    reward_env: str = "math"
    """The registered environment that scores the agent's answer (and gives the tasks)."""
    reward_env_config: Mapping[str, Any] = field(default_factory=dict)
    """Options of ``reward_env``."""
    agent_workers: int = 8
    """Agent episodes run at once (threads); their calls are batched by the server."""
    agent_timeout_s: float = 300.0
    """An episode running longer is abandoned with status ``timeout``."""
    max_calls: int = 32
    """Calls one episode may make; the next is refused (HTTP 429) and the episode fails."""

    def __post_init__(self) -> None:
        if not (callable(self.agent) or (isinstance(self.agent, str) and ":" in self.agent)):
            raise ValueError(f"{WHERE}: agent: expected module:function or a function, got {self.agent!r}")
        if self.agent_workers < 1 or self.max_calls < 1 or self.agent_timeout_s <= 0:
            raise ValueError(f"{WHERE}: agent_workers and max_calls must be >= 1, agent_timeout_s > 0")


class HarnessEnv(Environment):
    """Episodes of an agent function against a local OpenAI endpoint (options: ``HarnessConfig``)."""

    name = "harness"
    Config = HarnessConfig

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from rewardkit.registry import load_env

        self.reward = load_env(self.config.reward_env, **dict(self.config.reward_env_config))
        self.pass_threshold = self.reward.pass_threshold
        self.correctness_metric = self.reward.correctness_metric  # type: ignore[misc]
        scoring_keys = {f.name for f in dataclasses.fields(ScoringConfig)}
        given = {k: v for k, v in options.items() if k in scoring_keys}
        self.scoring = dataclasses.replace(self.reward.scoring, **given)  # the scorer's needs, unless set

    # ---- scoring: the reward environment's verdict, unless the episode failed ----------------------------
    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        failed = _episode_failure(info)
        if failed is not None:
            return failed
        return score_one(self.reward, Sample(completion, answer, prompt, info))

    def cache_key(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Hashable | None:
        if _episode_failure(info) is not None:
            return None
        key = self.reward.cache_key(completion, answer=answer, prompt=prompt, info=info)
        return None if key is None else ("harness", key)

    def tasks(self, split: str = "train") -> Sequence[Task]:
        return self.reward.tasks(split)

    def gold_examples(self) -> list[dict[str, Any]]:
        return self.reward.gold_examples()

    def exploit_probes(self) -> list[Probe]:
        """The reward environment's probes: the harness's reward is its verdict on the agent's answer."""
        return self.reward.exploit_probes()

    def exploit_signals(self, completions: Sequence[Completion]) -> dict[str, float]:
        return self.reward.exploit_signals(completions)

    def suspicious(self, sample: Mapping[str, Any], score: Score) -> str | None:
        return self.reward.suspicious(sample, score)

    def close(self) -> None:
        self.reward.close()
        super().close()

    # ---- episodes ----------------------------------------------------------------------------------------
    def rollout(
        self,
        generator: Generator,
        tasks: Sequence[Task],
        *,
        n: int = 1,
        sampling: SamplingParams | None = None,
    ) -> list[Trajectory]:
        """``n`` agent episodes per task against a server on ``generator``; trajectories grouped by task.

        The server samples with ``sampling``'s temperature, top-p and top-k whatever the agent asks, and
        caps each call at its ``max_tokens`` (see ``rewardkit.serve``, ``lock_sampling``)."""
        from rewardkit.envs.rollout import ChatRenderer
        from rewardkit.serve import ChatServer

        sampling = dataclasses.replace(sampling or SamplingParams(), n=1, seed=None)
        server = ChatServer(generator, defaults=sampling, lock_sampling=True, max_calls=self.config.max_calls)
        run_id = uuid.uuid4().hex[:8]
        runs = [_Run(task, f"{run_id}-{i}-{j}") for i, task in enumerate(tasks) for j in range(n)]
        with server:
            self._run_agents(server, runs)
            calls = [server.recorder.pop(r.episode_id, close=True) for r in runs]
        renderer = ChatRenderer(generator.tokenizer)
        return [
            episode_trajectory(r.task, r.episode_id, c, r.answer, r.status, r.reason, renderer)
            for r, c in zip(runs, calls)
        ]

    def _run_agents(self, server: ChatServer, runs: list[_Run]) -> None:
        """Start at most ``agent_workers`` episodes at once; one past ``agent_timeout_s`` is abandoned (its
        thread is a daemon: it runs on until the agent returns, its calls refused)."""
        agent = self._agent()
        finished = threading.Semaphore(0)
        pending, running = list(reversed(runs)), []
        while pending or running:
            while pending and len(running) < self.config.agent_workers:
                run = pending.pop()
                run.start(agent, server, finished)
                running.append(run)
            deadline = min(r.started + self.config.agent_timeout_s for r in running)
            finished.acquire(timeout=max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            for run in list(running):
                if run.done.is_set():
                    running.remove(run)
                elif now - run.started >= self.config.agent_timeout_s:
                    run.status, run.reason = "timeout", f"the agent ran past {self.config.agent_timeout_s} s"
                    server.recorder.pop(run.episode_id, close=True)  # its later calls are refused
                    running.remove(run)

    def _agent(self) -> Any:
        agent = self.config.agent
        if isinstance(agent, str):
            from rewardkit.imports import import_object

            agent = import_object(agent, what=f"{WHERE} agent")
        if not callable(agent):
            raise TypeError(f"{WHERE}: agent {self.config.agent!r} is not callable")
        return agent


@dataclass
class _Run:
    """One agent episode: its thread's outcome."""

    task: Task
    episode_id: str
    answer: Any = None
    status: str = "ok"
    reason: str = ""
    started: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)

    def start(self, agent: Any, server: ChatServer, finished: threading.Semaphore) -> None:
        def work() -> None:
            try:
                self.answer = agent(server.episode_url(self.episode_id), self.task, self.episode_id)
            except BaseException as exc:  # noqa: BLE001 - any failure of the agent is its episode's error
                if self.status == "ok":
                    self.status, self.reason = "error", f"the agent raised {type(exc).__name__}: {exc}"
            finally:
                self.done.set()
                finished.release()

        self.started = time.monotonic()
        threading.Thread(target=work, name=f"harness-agent-{self.episode_id}", daemon=True).start()


def episode_trajectory(
    task: Task,
    episode_id: str,
    calls: Sequence[Call],
    answer: Any = None,
    status: str = "ok",
    reason: str = "",
    renderer: Any = None,
) -> Trajectory:
    """One episode's calls as a ``Trajectory`` (see the module docstring): the sampled ids with mask 1,
    the prompt growth between calls with mask 0; a failed episode keeps its consistent calls, mask 0."""
    if status == "ok" and not calls:
        status, reason = "error", "the agent made no call to the server"
    if status == "ok" and any(c.n != 1 for c in calls):
        status, reason = "error", "a call asked for n > 1 choices; a harness episode is one line of calls"
    used, ids, mask, logprobs = 0, [], [], []  # ids: everything after the first prompt
    for k, call in enumerate(calls):
        if k:
            full = [*calls[0].prompt_ids, *ids]
            if list(call.prompt_ids[: len(full)]) != full:
                if status == "ok":
                    status, reason = "error", _divergence(k, call, full)
                break
            gap = call.prompt_ids[len(full) :]
            ids += gap
            mask += [0] * len(gap)
            logprobs += [0.0] * len(gap)
        ids += call.completion_ids
        mask += [1] * len(call.completion_ids)
        logprobs += call.logprobs
        used = k + 1
    if status != "ok":
        mask = [0] * len(mask)
    if calls:
        prompt_ids = calls[0].prompt_ids
    else:  # nothing was sampled: the prompt as the default agent would have sent it
        prompt_ids = tuple(renderer.prompt_ids(_as_messages(task.prompt))) if renderer is not None else ()
    last = calls[used - 1] if used else None
    info: dict[str, Any] = {
        "status": status,
        "episode_id": episode_id,
        "calls": len(calls),
        "calls_used": used,
    }
    info["continued_calls"] = sum(c.continued for c in calls[:used])
    if reason:
        info["reason"] = reason
    return Trajectory(
        task=task,
        prompt_ids=tuple(prompt_ids),
        completion_ids=tuple(ids),
        completion_mask=tuple(mask),
        logprobs=tuple(logprobs),
        completion=_completion(answer, last),
        turns=used,
        stop_reason="length" if last is not None and last.finish_reason == "length" else "done",
        truncated=last is not None and last.finish_reason == "length",
        info=info,
    )


def _divergence(k: int, call: Call, full: list[int]) -> str:
    at = next((i for i, (a, b) in enumerate(zip(call.prompt_ids, full)) if a != b), len(call.prompt_ids))
    return (
        f"call {k}'s prompt does not extend call {k - 1}'s prompt + sampled ids (they differ at token {at} "
        f"of {len(full)}): the agent changed its history, so the episode is not one token sequence"
    )


def _completion(answer: Any, last: Call | None) -> str | tuple[Message, ...]:
    if isinstance(answer, str):
        return answer
    if isinstance(answer, Sequence) and answer and all(isinstance(m, Mapping) for m in answer):
        return tuple(dict(m) for m in answer)
    if answer is None and last is not None:
        return last.text
    return "" if answer is None else str(answer)


def _episode_failure(info: Mapping[str, Any]) -> Score | None:
    episode = info.get("episode") if isinstance(info, Mapping) else None
    if isinstance(episode, Mapping) and episode.get("status") in ("error", "timeout"):
        return Score.failure(episode["status"], str(episode.get("reason", "the agent episode failed")))
    return None


def _as_messages(prompt: str | Sequence[Message]) -> list[Message]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]


# ---- agents -------------------------------------------------------------------------------------------
def chat(
    base_url: str, messages: Sequence[Message], timeout_s: float = 300.0, **params: Any
) -> dict[str, Any]:
    """POST a chat completion to ``base_url`` with the standard library; the response as a dict."""
    body = json.dumps({"model": "policy", "messages": list(messages), **params}).encode()
    request = urllib.request.Request(
        base_url.rstrip("/") + "/chat/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def single_call_agent(base_url: str, task: Task, episode_id: str) -> str:
    """The default agent: the task's prompt as one chat call; the reply is the answer."""
    reply = chat(base_url, _as_messages(task.prompt))
    return reply["choices"][0]["message"]["content"]
