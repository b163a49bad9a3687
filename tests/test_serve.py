"""``rewardkit serve``: the OpenAI-compatible server over a tiny model, its record, token in / token out."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
torch = pytest.importorskip("torch")

from rewardkit.envs.rollout import ChatRenderer  # noqa: E402
from rewardkit.generation import make_generator  # noqa: E402
from rewardkit.generation.base import SamplingParams  # noqa: E402
from rewardkit.serve import ChatServer, RequestError  # noqa: E402

CORPUS = ["What is 2 + 3? <think>2 + 3 = 5</think><answer>5</answer>", "hello world, the answer is 42"] * 20
QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from rewardkit.models.tiny import build_tiny

    path = tmp_path_factory.mktemp("tiny")
    model, tok = build_tiny(CORPUS, save_to=path)
    return model, tok, path


@pytest.fixture(scope="module")
def server(tiny):
    model, tok, _ = tiny
    with ChatServer(make_generator("hf", model, tok), defaults=SamplingParams(max_tokens=8)) as srv:
        yield srv


def _post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_openai_client_round_trip_is_recorded_exactly(server, tiny):
    _, tok, _ = tiny
    client = openai.OpenAI(base_url=server.episode_url("rt"), api_key="unused")
    reply = client.chat.completions.create(model="policy", messages=QUESTION, max_tokens=6, logprobs=True)
    choice = reply.choices[0]
    (call,) = server.recorder.calls("rt")
    assert list(call.prompt_ids) == ChatRenderer(tok).prompt_ids(QUESTION)  # the chat template, once
    assert list(call.prompt_ids) == reply.model_extra["prompt_token_ids"]
    assert list(call.completion_ids) == choice.model_extra["token_ids"]
    assert 1 <= len(call.completion_ids) <= 6
    assert [t.logprob for t in choice.logprobs.content] == pytest.approx(list(call.logprobs))
    assert (
        choice.message.content == call.text == tok.decode(list(call.completion_ids), skip_special_tokens=True)
    )
    assert choice.finish_reason == call.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens == len(call.prompt_ids)
    assert [m.id for m in client.models.list().data] == ["policy"]


def test_recorded_logprobs_are_the_models_own(server, tiny):
    """At temperature 1 the recorded log-prob of each sampled token is log_softmax of the model's logits."""
    from rewardkit.rl.model import completion_logprobs, pack

    model, tok, _ = tiny
    server.complete({"messages": QUESTION, "max_tokens": 8}, "lp")
    (call,) = server.recorder.calls("lp")
    batch = pack([list(call.prompt_ids)], [list(call.completion_ids)], tok.pad_token_id, "cpu")
    with torch.no_grad():
        logprobs, _ = completion_logprobs(model, batch, 1.0, False)
    assert logprobs[0, : len(call.completion_ids)].tolist() == pytest.approx(list(call.logprobs), abs=1e-4)


def test_episode_id_from_path_header_or_user_and_none_is_not_recorded(server):
    base = server.base_url
    assert (
        _post(f"{base}/chat/completions", {"messages": QUESTION, "max_tokens": 2}, {"X-Episode-Id": "hdr"})[0]
        == 200
    )
    assert _post(f"{base}/chat/completions", {"messages": QUESTION, "max_tokens": 2, "user": "usr"})[0] == 200
    before = server.requests
    assert _post(f"{base}/chat/completions", {"messages": QUESTION, "max_tokens": 2})[0] == 200
    assert server.requests == before + 1
    assert len(server.recorder.calls("hdr")) == 1 and len(server.recorder.calls("usr")) == 1
    status, got = _post(
        f"{base}/chat/completions", {"messages": QUESTION, "max_tokens": 2}, {"X-Episode-Id": "hdr"}
    )
    assert status == 200
    with urllib.request.urlopen(f"{base}/episodes/hdr", timeout=30) as r:
        record = json.loads(r.read())
    assert [c["index"] for c in record["calls"]] == [0, 1]
    assert record["calls"][1]["completion_ids"] == got["choices"][0]["token_ids"]
    req = urllib.request.Request(f"{base}/episodes/hdr", method="DELETE")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert len(json.loads(r.read())["calls"]) == 2
    assert server.recorder.calls("hdr") == []


def test_a_continued_conversation_extends_the_previous_ids_exactly(server):
    first = server.complete({"messages": QUESTION, "max_tokens": 8}, "conv")
    text = first["choices"][0]["message"]["content"]
    follow = [*QUESTION, {"role": "assistant", "content": text}, {"role": "user", "content": "Are you sure?"}]
    server.complete({"messages": follow, "max_tokens": 8}, "conv")
    c0, c1 = server.recorder.calls("conv")
    assert not c0.continued and c1.continued
    sequence = list(c0.prompt_ids + c0.completion_ids)
    assert list(c1.prompt_ids[: len(sequence)]) == sequence  # sampled ids kept, never re-tokenised
    gap = c1.prompt_ids[len(sequence) :]
    assert "Are you sure?" in server.generator.tokenizer.decode(list(gap))
    # an edited history is rendered from scratch, and the record says so
    edited = [{"role": "user", "content": "What is 2 + 3, really?"}]
    server.complete({"messages": edited, "max_tokens": 4}, "conv")
    assert not server.recorder.calls("conv")[2].continued


def test_refusals_are_openai_style_errors(server):
    url = f"{server.base_url}/chat/completions"
    for body, word in [
        ({"messages": QUESTION, "stream": True}, "stream"),
        ({"messages": QUESTION, "tools": [{"type": "function"}]}, "tools"),
        ({"messages": []}, "messages"),
        ({"messages": QUESTION, "max_tokens": 0}, "max_tokens"),
    ]:
        status, got = _post(url, body)
        assert status == 400, body
        assert word in got["error"]["message"]
    server.recorder.pop("closed", close=True)
    status, got = _post(server.episode_url("closed") + "/chat/completions", {"messages": QUESTION})
    assert status == 409 and "over" in got["error"]["message"]


def test_max_calls_and_locked_sampling(tiny):
    model, tok, _ = tiny
    defaults = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=4, stop=("\n",))
    srv = ChatServer(make_generator("hf", model, tok), defaults=defaults, lock_sampling=True, max_calls=1)
    params = srv._params({"temperature": 0.0, "top_p": 1.0, "max_tokens": 100, "stop": "x"})
    assert (params.temperature, params.top_p, params.max_tokens) == (0.7, 0.9, 4)  # the trainer's sampling
    assert params.stop == ("\n", "x")
    with srv:
        srv.complete({"messages": QUESTION}, "once")
        with pytest.raises(RequestError) as exc:
            srv.complete({"messages": QUESTION}, "once")
    assert exc.value.status == 429
    assert len(srv.recorder.calls("once")[0].completion_ids) <= 4


def test_concurrent_requests_are_all_served_and_recorded(server):
    errors = []

    def one(i: int) -> None:
        try:
            client = openai.OpenAI(base_url=server.episode_url(f"par{i}"), api_key="x")
            client.chat.completions.create(model="policy", messages=QUESTION, max_tokens=4)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert all(len(server.recorder.calls(f"par{i}")) == 1 for i in range(6))


def test_cli_serves_a_model_directory(tiny):
    _, _, path = tiny
    code = (
        "import argparse, sys; from rewardkit import serve; p = argparse.ArgumentParser(); "
        "sub = p.add_subparsers(); serve.add_parser(sub); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--model", str(path), "--port", "0", "--max-tokens", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "rewardkit serve:" in line, proc.stderr.read() if proc.poll() is not None else line
        base = line.rsplit(" at ", 1)[1].strip()
        with urllib.request.urlopen(f"{base}/models", timeout=60) as r:
            assert json.loads(r.read())["data"][0]["id"] == str(path)
        status, got = _post(f"{base}/chat/completions", {"messages": QUESTION})
        assert status == 200 and len(got["choices"][0]["token_ids"]) <= 3
    finally:
        proc.terminate()
        proc.wait(30)
