"""The ``judge`` environment: an LLM grades each completion through any OpenAI-compatible endpoint.

``load_env("judge", base_url="http://127.0.0.1:8000/v1", model="my-judge")`` sends, for every sample,
one chat completion request whose user message is ``template`` filled with ``{prompt}``,
``{completion}`` and ``{answer}`` (the sample's; a chat completion is its last assistant message, a
chat prompt its messages as ``role: content`` lines), and parses the judge's reply:

- ``mode: score``: the first group of ``score_regex`` (default: ``Score: 7``) is a number that must lie
  in ``score_range``; the reward is it mapped linearly onto [0, 1] (``normalize``, default) or as is;
- ``mode: verdict``: the first group of ``verdict_regex`` (default: ``Verdict: PASS``) is looked up,
  case-insensitively, in ``verdicts`` (default PASS 1.0, FAIL 0.0).

Failures are never a silent 0: a reply that does not parse, a score out of range or an unknown
verdict is status ``error`` with the reply in the reason; a server that does not answer within
``request_timeout_s`` is ``timeout``; a refused connection or an HTTP error is ``error``. Connection
errors, timeouts, 429 and 5xx are retried ``retries`` times (``retry_backoff_s`` doubling); other
HTTP errors are not.

Requests are cached by their content (endpoint, model, messages, sampling): a sample whose judge
request was already answered with a parsed verdict is not sent again (the scoring runtime's
``cache_key`` cache; failures are never cached). At most ``concurrency`` requests are in flight: the
scoring runs on ``concurrency`` threads (``executor: thread``) and a semaphore bounds the requests of
the process whatever the executor (with ``executor: process`` the bound is per worker process).
The scoring ``timeout_s`` defaults to room for every retry.

Needs no package beyond the standard library (``urllib``). Judge holes depend on the judge model, so
the environment ships no exploit probes.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rewardkit.envs.base import Environment
from rewardkit.types import Completion, Score, completion_text

WHERE = "environment 'judge'"

DEFAULT_TEMPLATE = """You are grading an answer to a task.

Task:
{prompt}

Reference answer (may be empty):
{answer}

Answer to grade:
{completion}

Grade the answer from 0 (wrong or useless) to 10 (fully correct and clear). Reply with one line of the form
Score: N"""

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class JudgeConfig:
    """Options of ``load_env("judge", ...)``."""

    base_url: str = "http://127.0.0.1:8000/v1"
    """The OpenAI-compatible endpoint (its ``/chat/completions`` is called)."""
    model: str = "judge"
    """The ``model`` field of each request."""
    api_key: str | None = None
    """Sent as ``Authorization: Bearer ...`` when set."""
    template: str = DEFAULT_TEMPLATE
    """The judge's user message; ``{prompt}``, ``{completion}`` and ``{answer}`` are filled in (write
    other braces doubled: ``{{``)."""
    system: str | None = None
    """An optional system message before it."""
    mode: Literal["score", "verdict"] = "score"
    """``score``: a number parsed with ``score_regex``; ``verdict``: a word looked up in ``verdicts``."""
    score_regex: str = r"(?i)score\s*[:=]\s*(-?\d+(?:\.\d+)?)"
    """Its first group is the score (the first match in the reply counts)."""
    score_range: tuple[float, float] = (0.0, 10.0)
    """The scores allowed; one outside is status ``error``."""
    normalize: bool = True
    """Map the score linearly from ``score_range`` onto [0, 1]; False: the reward is the score."""
    verdict_regex: str = r"(?i)verdict\s*[:=]\s*\**\s*([A-Za-z_]+)"
    """Its first group is the verdict."""
    verdicts: Mapping[str, float] = field(default_factory=lambda: {"PASS": 1.0, "FAIL": 0.0})
    """Verdict -> reward (matched case-insensitively)."""
    max_tokens: int = 256
    """Most tokens the judge may write per reply."""
    temperature: float = 0.0
    """The judge's sampling temperature (0: greedy, so a cached verdict is the one it would give again)."""
    request_timeout_s: float = 60.0
    """Seconds to wait for a connection and for each read of the reply; past it the attempt timed out."""
    retries: int = 2
    """Further attempts after a connection error, a timeout, HTTP 429 or 5xx."""
    retry_backoff_s: float = 0.5
    """Wait before the first retry, doubled before each next one."""
    concurrency: int = 4
    """Most judge requests in flight at once (see the module docstring)."""
    pass_reward: float = 0.5
    """The reward that counts as a pass (pass@k, ``check_env``'s gold examples)."""
    gold: tuple[Mapping[str, Any], ...] = (
        {"prompt": "What is 2 + 2?", "completion": "2 + 2 = 4.", "answer": "4"},
        {"prompt": "What is the capital of France?", "completion": "Paris.", "answer": "Paris"},
    )
    """Samples a working judge must pass (``check_env``)."""

    def __post_init__(self) -> None:
        for key in ("score_regex", "verdict_regex"):
            try:
                if re.compile(getattr(self, key)).groups < 1:
                    raise ValueError(f"{WHERE}: {key} needs a capturing group")
            except re.error as exc:
                raise ValueError(f"{WHERE}: {key} is not a regular expression: {exc}") from exc
        try:
            self.template.format(prompt="", completion="", answer="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"{WHERE}: template may use only {{prompt}}, {{completion}}, {{answer}}: {exc!r}"
            ) from exc
        lo, hi = self.score_range
        if not lo < hi:
            raise ValueError(
                f"{WHERE}: score_range must be (low, high) with low < high, got {self.score_range}"
            )
        if self.request_timeout_s <= 0 or self.retries < 0 or self.concurrency < 1 or self.max_tokens < 1:
            raise ValueError(f"{WHERE}: request_timeout_s > 0, retries >= 0, concurrency and max_tokens >= 1")


class _Failure(Exception):
    def __init__(self, status: str, reason: str, retry: bool) -> None:
        super().__init__(reason)
        self.status, self.reason, self.retry = status, reason, retry


class JudgeEnv(Environment):
    """An LLM judge's grade as the reward (options: ``JudgeConfig``)."""

    name = "judge"
    Config = JudgeConfig

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.pass_threshold = self.config.pass_reward
        self._gate: threading.BoundedSemaphore | None = None

    @classmethod
    def scoring_defaults(cls, config: JudgeConfig) -> Mapping[str, Any]:
        waits = sum(config.retry_backoff_s * 2**i for i in range(config.retries))
        # each attempt may wait request_timeout_s to connect and again to read
        budget = 2 * config.request_timeout_s * (config.retries + 1) + waits + 5.0
        return {"executor": "thread", "workers": config.concurrency, "timeout_s": budget}

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_gate": None}

    # ---- the request -------------------------------------------------------------------------------------
    def request_body(self, completion: Completion, *, answer: Any, prompt: Any) -> dict[str, Any]:
        """The chat completion request that judges this sample."""
        text = self.config.template.format(
            prompt=_prompt_text(prompt),
            completion=completion_text(completion),
            answer="" if answer is None else str(answer),
        )
        messages = [{"role": "user", "content": text}]
        if self.config.system:
            messages.insert(0, {"role": "system", "content": self.config.system})
        return {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": self.config.max_tokens,
            "temperature": self.config.temperature,
        }

    def cache_key(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Hashable | None:
        body = self.request_body(completion, answer=answer, prompt=prompt)
        payload = json.dumps([self.config.base_url, body], sort_keys=True, default=str)
        return ("judge", hashlib.blake2b(payload.encode(), digest_size=16).hexdigest())

    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        if prompt is None and "{prompt}" in self.config.template:
            return Score.failure("invalid_input", "the judge's template needs the prompt (prompt=...)")
        body = self.request_body(completion, answer=answer, prompt=prompt)
        try:
            reply = self._ask(body)
        except _Failure as failure:
            return Score.failure(failure.status, failure.reason)  # type: ignore[arg-type]
        return self.parse(reply)

    def parse(self, reply: str) -> Score:
        """The Score of a judge's reply (status ``error``, the reply quoted, when it does not parse)."""
        cfg = self.config
        shown = reply if len(reply) <= 500 else reply[:500] + f"... [{len(reply)} chars]"
        if cfg.mode == "verdict":
            match = re.search(cfg.verdict_regex, reply)
            table = {k.upper(): float(v) for k, v in cfg.verdicts.items()}
            if match is None or match.group(1).upper() not in table:
                found = "no verdict" if match is None else f"unknown verdict {match.group(1)!r}"
                return Score.failure(
                    "error", f"judge reply unparsable ({found}): {shown!r}", judge_reply=shown
                )
            reward = table[match.group(1).upper()]
            return Score.ok(reward, {"judge_reward": reward}, verdict=match.group(1), judge_reply=shown)
        match = re.search(cfg.score_regex, reply)
        if match is None:
            return Score.failure("error", f"judge reply unparsable (no score): {shown!r}", judge_reply=shown)
        value = float(match.group(1))
        lo, hi = cfg.score_range
        if not lo <= value <= hi:
            return Score.failure(
                "error", f"judge score {value} outside {cfg.score_range}: {shown!r}", judge_reply=shown
            )
        reward = (value - lo) / (hi - lo) if cfg.normalize else value
        return Score.ok(reward, {"judge_score": value}, judge_reply=shown)

    # ---- HTTP --------------------------------------------------------------------------------------------
    def _ask(self, body: dict[str, Any]) -> str:
        """The judge's reply text, with retries; raises ``_Failure`` (status ``timeout`` or ``error``)."""
        cfg = self.config
        failures: list[str] = []
        for attempt in range(cfg.retries + 1):
            if attempt:
                time.sleep(cfg.retry_backoff_s * 2 ** (attempt - 1))
            try:
                with self._limit():
                    return self._post(body)
            except _Failure as failure:
                failures.append(failure.reason)
                if not failure.retry or attempt == cfg.retries:
                    tried = f" after {attempt + 1} attempts" if attempt else ""
                    others = [f for f in dict.fromkeys(failures[:-1]) if f != failure.reason]
                    earlier = f" (earlier: {'; '.join(others)})" if others else ""
                    raise _Failure(failure.status, f"{failure.reason}{tried}{earlier}", False) from None
        raise AssertionError("unreachable")

    def _limit(self) -> threading.BoundedSemaphore:
        if self._gate is None:
            self._gate = threading.BoundedSemaphore(self.config.concurrency)
        return self._gate

    def _post(self, body: dict[str, Any]) -> str:
        cfg = self.config
        url = cfg.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if cfg.api_key:
            headers["Authorization"] = f"Bearer {cfg.api_key}"
        request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=cfg.request_timeout_s) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise _Failure(
                "error", f"judge HTTP {exc.code} from {url}: {detail}", exc.code in RETRY_STATUSES
            ) from None
        except TimeoutError as exc:
            raise _Failure(
                "timeout", f"judge at {url} did not answer within {cfg.request_timeout_s} s ({exc})", True
            ) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _Failure(
                    "timeout", f"judge at {url} did not answer within {cfg.request_timeout_s} s", True
                ) from None
            raise _Failure("error", f"judge at {url} unreachable: {exc.reason}", True) from None
        except (ConnectionError, OSError) as exc:
            raise _Failure("error", f"judge at {url} failed: {type(exc).__name__}: {exc}", True) from None
        except http.client.HTTPException as exc:  # a broken response (cut short, bad status line)
            raise _Failure(
                "error", f"judge at {url} sent a broken response: {type(exc).__name__}: {exc}", True
            ) from None
        except ValueError as exc:  # the body was not JSON
            raise _Failure("error", f"judge at {url} sent a reply that is not JSON: {exc}", False) from None
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise _Failure(
                "error", f"judge at {url} sent no choices[0].message.content: {str(data)[:300]}", False
            ) from None
        return content if isinstance(content, str) else str(content or "")

    def gold_examples(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self.config.gold]


def _prompt_text(prompt: Any) -> str:
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    lines = []
    for m in prompt:
        if isinstance(m, Mapping):
            lines.append(f"{m.get('role', '')}: {m.get('content') or ''}")
    return "\n".join(lines)
