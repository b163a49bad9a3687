"""``rewardkit serve``: an OpenAI-compatible chat endpoint in front of a policy, recording every call.

``ChatServer(generator)`` serves ``POST /v1/chat/completions`` and ``GET /v1/models`` over any
``rewardkit.generation`` back end (``make_generator("hf", model, tokenizer)``, or vLLM's: the server
only calls ``generator.generate(prompt_ids, SamplingParams)`` and reads ``generator.tokenizer``). Chat
messages are rendered to token ids with the tokenizer's chat template (``rewardkit.envs.rollout.
ChatRenderer``, the same renderer the multi-turn rollout loop uses).

Episodes and the record. A request belongs to an episode when it names one, first found of:

1. the path: ``/e/{episode_id}/v1/chat/completions`` (so an agent that can only set ``base_url`` needs
   nothing else: hand it ``server.episode_url(episode_id)``);
2. the header ``X-Episode-Id``;
3. the request body's ``user`` field (the OpenAI API's end-user id).

For every call of an episode the server records (``Recorder``) the prompt token ids, the sampled token
ids and the sampler's log-prob of each, the finish reason, the request's messages and the reply text.
Requests without an episode id are served and not recorded. ``GET /v1/episodes/{id}`` returns an
episode's calls, ``DELETE /v1/episodes/{id}`` returns and forgets them.

Token in, token out. When a call of an episode sends the previous call's messages followed by the
assistant reply the server gave (same role and text), and then new messages, its prompt ids are the
previous call's prompt ids + sampled ids, exactly, followed by the chat template's text for the new
messages (``ChatRenderer.reply_ids``): the sampled ids are never decoded and re-encoded. Any other
request (a first call, or an agent that edited its history) is rendered from scratch; the call's
``continued`` flag says which happened. ``rewardkit.envs.harness`` turns an episode's calls into one
training ``Trajectory``.

Generation: requests are queued and a single thread calls ``generator.generate``; requests with equal
sampling parameters that arrive within ``batch_wait_s`` of each other share one call (one batch).
With ``lock_sampling`` (what the harness uses in training), temperature, top-p and top-k are the
server's ``defaults`` whatever a request asks, and ``max_tokens`` is capped at the default's, so the
recorded log-probs are those of the distribution the trainer optimises.

Not supported: streaming (``stream: true`` is a 400), tools/function calling (``tools`` is a 400),
``logit_bias``, ``response_format``, the legacy ``/v1/completions``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import queue
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from rewardkit.envs.rollout import ChatRenderer
from rewardkit.generation.base import Generation, Generator, SamplingParams
from rewardkit.types import Message

EPISODE_HEADER = "X-Episode-Id"


class RequestError(ValueError):
    """A request the server refuses; ``status`` is its HTTP status code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Call:
    """One recorded policy call: what the sampler saw and what it produced."""

    episode_id: str
    index: int
    """Position of the call in its episode (0, 1, ...); choices of one request share it."""
    messages: tuple[Message, ...]
    """The request's messages, as sent."""
    prompt_ids: tuple[int, ...]
    """The ids the generator was given."""
    completion_ids: tuple[int, ...]
    """The ids it sampled."""
    logprobs: tuple[float, ...]
    """The sampler's log-prob of each sampled id."""
    finish_reason: str
    text: str
    """The reply's content as returned."""
    continued: bool = False
    """True when ``prompt_ids`` extend the previous call's prompt + sampled ids (token in, token out)."""
    choice: int = 0
    n: int = 1
    """Choices the request asked for (a harness episode needs 1)."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["messages"] = [dict(m) for m in self.messages]
        return out


class Recorder:
    """Calls by episode id, thread-safe; the oldest episodes are forgotten past ``max_episodes``."""

    def __init__(self, max_episodes: int = 10_000) -> None:
        self.max_episodes = max_episodes
        self._calls: collections.OrderedDict[str, list[Call]] = collections.OrderedDict()
        self._closed: set[str] = set()
        self._lock = threading.Lock()

    def add(self, calls: Sequence[Call]) -> None:
        with self._lock:
            for call in calls:
                self._calls.setdefault(call.episode_id, []).append(call)
                self._calls.move_to_end(call.episode_id)
            while len(self._calls) > self.max_episodes:
                self._calls.popitem(last=False)

    def calls(self, episode_id: str) -> list[Call]:
        with self._lock:
            return list(self._calls.get(episode_id, ()))

    def next_index(self, episode_id: str) -> int:
        with self._lock:
            calls = self._calls.get(episode_id)
            return calls[-1].index + 1 if calls else 0

    def check_open(self, episode_id: str) -> None:
        with self._lock:
            if episode_id in self._closed:
                raise RequestError(f"episode {episode_id!r} is over: no more calls are taken for it", 409)

    def pop(self, episode_id: str, *, close: bool = False) -> list[Call]:
        """The episode's calls, forgotten; with ``close`` later calls for it are refused (409)."""
        with self._lock:
            if close:
                self._closed.add(episode_id)
            return self._calls.pop(episode_id, [])


@dataclass
class _Job:
    prompt_ids: list[int]
    params: SamplingParams
    future: Future = field(default_factory=Future)


class _Batcher:
    """One thread calls the generator; jobs with equal sampling parameters queued together share a call."""

    def __init__(self, generator: Generator, wait_s: float) -> None:
        self.generator, self.wait_s = generator, wait_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="rewardkit-serve-generate", daemon=True)
        self._thread.start()

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> list[Generation]:
        job = _Job(prompt_ids, params)
        self._queue.put(job)
        return job.future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while (job := self._queue.get()) is not None:
            jobs, stop = [job], False
            deadline = time.monotonic() + self.wait_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    more = self._queue.get(timeout=left)
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            self._run(jobs)
            if stop:
                return

    def _run(self, jobs: list[_Job]) -> None:
        groups: dict[SamplingParams, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(job.params, []).append(job)
        for params, group in groups.items():
            try:
                outputs = self.generator.generate([j.prompt_ids for j in group], params)
            except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
                for j in group:
                    j.future.set_exception(exc)
                continue
            for j, out in zip(group, outputs):
                j.future.set_result(out)


class ChatServer:
    """An OpenAI-compatible chat server over ``generator`` (see the module docstring).

    ``start()`` serves in a background thread on ``host``:``port`` (0: a free port) and returns self;
    ``stop()`` ends it (a ``with`` block does both). ``complete(body, episode_id)`` is the request
    handler without HTTP. ``run()`` serves in the calling thread until interrupted (the CLI).
    """

    def __init__(
        self,
        generator: Generator,
        *,
        model_name: str = "policy",
        defaults: SamplingParams | None = None,
        lock_sampling: bool = False,
        max_calls: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        batch_wait_s: float = 0.005,
        recorder: Recorder | None = None,
    ) -> None:
        self.generator = generator
        self.model_name = model_name
        self.defaults = defaults or SamplingParams()
        self.lock_sampling = lock_sampling
        self.max_calls = max_calls
        self.host, self.port = host, port
        self.recorder = recorder or Recorder()
        self.requests = 0
        """Chat requests received (recorded or not, served or refused)."""
        self._renderer = ChatRenderer(generator.tokenizer)
        self._render_lock = threading.Lock()  # fast tokenizers must not be used from two threads at once
        self._count_lock = threading.Lock()
        self._batch_wait_s = batch_wait_s
        self._batcher: _Batcher | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ---- URLs -------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: give it to an OpenAI client as ``base_url``."""
        return f"http://{self.host}:{self.port}/v1"

    def episode_url(self, episode_id: str) -> str:
        """A ``base_url`` whose every request belongs to ``episode_id``."""
        return f"http://{self.host}:{self.port}/e/{episode_id}/v1"

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> ChatServer:
        """Serve in a daemon thread; returns once the port accepts connections."""
        server, sock = self._uvicorn()
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="rewardkit-serve", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the chat server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def run(self, announce: Any = None) -> None:
        """Serve in this thread until interrupted (Ctrl-C); ``announce(base_url)`` once the port is bound."""
        server, sock = self._uvicorn()
        self._server = server
        if announce is not None:
            announce(self.base_url)
        try:
            server.run(sockets=[sock])
        finally:
            self._close_batcher()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._server = self._thread = None
        self._close_batcher()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _uvicorn(self) -> tuple[Any, socket.socket]:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(2048)  # connections made before uvicorn starts accepting wait in the backlog
        self.port = sock.getsockname()[1]
        self._batcher = _Batcher(self.generator, self._batch_wait_s)
        config = uvicorn.Config(
            build_app(self), log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30
        )
        return uvicorn.Server(config), sock

    def _close_batcher(self) -> None:
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    # ---- the handler --------------------------------------------------------------------------------------
    def complete(self, body: Mapping[str, Any], episode_id: str | None = None) -> dict[str, Any]:
        """The chat completion for a request ``body`` (OpenAI's fields); RequestError when refused."""
        with self._count_lock:
            self.requests += 1
        if not isinstance(body, Mapping):
            raise RequestError("the request body must be a JSON object")
        episode_id = episode_id or _str_or_none(body.get("user"))
        messages = _messages(body.get("messages"))
        _refuse_unsupported(body)
        params = self._params(body)
        if self._batcher is None:
            raise RequestError("the server is not running", 503)
        if episode_id is not None:
            self.recorder.check_open(episode_id)
            index = self.recorder.next_index(episode_id)
            if self.max_calls is not None and index >= self.max_calls:
                raise RequestError(f"episode {episode_id!r} has made its {self.max_calls} calls", 429)
        prompt_ids, continued = self._prompt_ids(messages, episode_id)
        generations = self._batcher.generate(prompt_ids, params)
        if episode_id is not None:
            self.recorder.add(
                [
                    Call(
                        episode_id,
                        index,
                        tuple(messages),
                        tuple(prompt_ids),
                        tuple(g.token_ids),
                        tuple(g.logprobs),
                        g.finish_reason,
                        self._text(g),
                        continued,
                        choice,
                        params.n,
                    )
                    for choice, g in enumerate(generations)
                ]
            )
        return self._response(body, prompt_ids, generations)

    def _params(self, body: Mapping[str, Any]) -> SamplingParams:
        d = self.defaults
        max_tokens = _given(body, "max_completion_tokens", _given(body, "max_tokens", d.max_tokens))
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        try:
            if self.lock_sampling:
                return dataclasses.replace(
                    d, n=int(body.get("n") or 1), max_tokens=min(int(max_tokens), d.max_tokens),
                    stop=tuple(dict.fromkeys(d.stop + stop)), seed=None,
                )  # fmt: skip
            return SamplingParams(
                n=int(body.get("n") or 1),
                temperature=float(_given(body, "temperature", d.temperature)),
                top_p=float(_given(body, "top_p", d.top_p)),
                top_k=int(_given(body, "top_k", d.top_k)),
                max_tokens=int(max_tokens),
                stop=stop,
                seed=None if body.get("seed") is None else int(body["seed"]),
            )
        except (TypeError, ValueError) as exc:
            raise RequestError(f"bad sampling parameter: {exc}") from exc

    def _prompt_ids(self, messages: list[Message], episode_id: str | None) -> tuple[list[int], bool]:
        """The prompt's ids: the previous call's ids extended (token in, token out) or a fresh render."""
        previous = self.recorder.calls(episode_id) if episode_id is not None else []
        last = previous[-1] if previous and previous[-1].n == 1 else None
        with self._render_lock:
            if last is not None:
                history = [*last.messages, {"role": "assistant", "content": last.text}]
                if len(messages) >= len(history) and all(
                    _same_message(a, b) for a, b in zip(messages, history)
                ):
                    reply = messages[len(history) :]
                    tail = self._renderer.reply_ids(history, last.completion_ids, reply, chat=True)
                    return [*last.prompt_ids, *last.completion_ids, *tail], True
            try:
                return self._renderer.prompt_ids(messages), False
            except Exception as exc:  # noqa: BLE001 - a template that refuses these messages
                raise RequestError(f"the chat template cannot render these messages: {exc}") from exc

    def _text(self, generation: Generation) -> str:
        if generation.text:
            return generation.text
        with self._render_lock:
            return self._renderer.decode(generation.token_ids)

    def _response(
        self, body: Mapping[str, Any], prompt_ids: list[int], generations: list[Generation]
    ) -> dict[str, Any]:
        want_logprobs = bool(body.get("logprobs"))
        choices = []
        for i, g in enumerate(generations):
            choice: dict[str, Any] = {
                "index": i,
                "message": {"role": "assistant", "content": self._text(g)},
                "finish_reason": g.finish_reason,
                "token_ids": list(g.token_ids),
                "logprobs": self._logprobs(g) if want_logprobs else None,
            }
            choices.append(choice)
        completion_tokens = sum(len(g.token_ids) for g in generations)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "prompt_token_ids": list(prompt_ids),
            "usage": {
                "prompt_tokens": len(prompt_ids),
                "completion_tokens": completion_tokens,
                "total_tokens": len(prompt_ids) + completion_tokens,
            },
        }

    def _logprobs(self, generation: Generation) -> dict[str, Any]:
        tok = self.generator.tokenizer
        with self._render_lock:
            tokens = [tok.decode([i]) for i in generation.token_ids]
        return {
            "content": [
                {"token": t, "logprob": float(lp), "bytes": list(t.encode()), "top_logprobs": []}
                for t, lp in zip(tokens, generation.logprobs)
            ]
        }

    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": self.model_name, "object": "model", "created": 0, "owned_by": "rewardkit"}],
        }


def _given(body: Mapping[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list of chat messages")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise RequestError(f"messages[{i}] must be an object with a 'role'")
        out.append({"role": m["role"], "content": _content_text(m.get("content"))})
    return out


def _content_text(content: Any) -> str:
    """A message's content as text: a string, or OpenAI text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    raise RequestError(f"message content must be a string or a list of text parts, got {content!r}")


def _same_message(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.get("role") == b.get("role") and _content_text(a.get("content")) == _content_text(
        b.get("content")
    )


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    if body.get("stream"):
        raise RequestError("streaming is not supported by rewardkit serve; send stream: false")
    for key in ("tools", "functions", "logit_bias", "response_format"):
        if body.get(key):
            raise RequestError(f"{key!r} is not supported by rewardkit serve")


def build_app(server: ChatServer) -> Any:
    """The FastAPI app of ``server``: chat completions, models, and the episode record."""
    from fastapi import Body, FastAPI, Header
    from fastapi.responses import JSONResponse

    app = FastAPI(title="rewardkit serve", docs_url=None, redoc_url=None)

    def chat(body: Any, episode_id: str | None) -> Any:
        try:
            return server.complete(body, episode_id)
        except RequestError as exc:
            kind = "invalid_request_error" if exc.status == 400 else "request_refused"
            return JSONResponse({"error": {"message": str(exc), "type": kind}}, status_code=exc.status)

    @app.post("/v1/chat/completions")
    def chat_completions(
        body: Any = Body(...), x_episode_id: str | None = Header(None, alias=EPISODE_HEADER)
    ) -> Any:
        return chat(body, x_episode_id)

    @app.post("/e/{episode_id}/v1/chat/completions")
    def episode_chat_completions(episode_id: str, body: Any = Body(...)) -> Any:
        return chat(body, episode_id)

    @app.get("/v1/models")
    @app.get("/e/{episode_id}/v1/models")
    def models(episode_id: str | None = None) -> Any:
        return server.models()

    @app.get("/v1/episodes/{episode_id}")
    def episode(episode_id: str) -> Any:
        return {"episode_id": episode_id, "calls": [c.to_dict() for c in server.recorder.calls(episode_id)]}

    @app.delete("/v1/episodes/{episode_id}")
    def forget(episode_id: str) -> Any:
        return {"episode_id": episode_id, "calls": [c.to_dict() for c in server.recorder.pop(episode_id)]}

    @app.get("/health")
    def health() -> Any:
        return {"status": "ok"}

    return app


# ---- the CLI -------------------------------------------------------------------------------------------
def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model behind an OpenAI-compatible /v1/chat/completions, recording token ids per episode",
        description="Serve MODEL at http://HOST:PORT/v1 (chat completions and models). Requests that name an "
        f"episode (path /e/ID/v1, header {EPISODE_HEADER}, or the body's 'user') have their prompt ids, "
        "sampled ids and log-probs recorded; read them at GET /v1/episodes/ID. See docs/interop.md.",
    )
    p.add_argument("--model", required=True, help="a model directory, training run or hub id")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: a free one)")
    p.add_argument("--backend", default="hf", choices=("hf", "vllm", "auto"), help="generation back end")
    p.add_argument("--name", default=None, help="the model name /v1/models reports (default: --model)")
    p.add_argument("--max-tokens", type=int, default=256, help="default max_tokens of a request")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rewardkit.generation import make_generator, resolve_backend
    from rewardkit.models.loading import load_model, load_tokenizer, resolve_model

    backend = resolve_backend(args.backend)
    if backend == "vllm":  # vLLM loads the weights itself, from the directory
        path = str(resolve_model(args.model).path)
        generator = make_generator("vllm", path, load_tokenizer(path))
    else:
        model, tokenizer = load_model(args.model)
        generator = make_generator("hf", model, tokenizer)
    server = ChatServer(
        generator,
        model_name=args.name or args.model,
        defaults=SamplingParams(max_tokens=args.max_tokens),
        host=args.host,
        port=args.port,
    )
    server.run(announce=lambda url: print(f"rewardkit serve: {args.model} at {url}", flush=True))
    return 0
