"""The ``judge`` environment against real HTTP servers on loopback: a FastAPI app whose replies the test
controls (parsing, slowness, failures, request counts, in-flight counts), and ``rewardkit serve``
in front of a tiny model."""

from __future__ import annotations

import socket
import threading
import time

import pytest

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from rewardkit.conformance import check_env  # noqa: E402
from rewardkit.envs.judge import JudgeEnv  # noqa: E402
from rewardkit.registry import load_env  # noqa: E402

SAMPLE = {"completion": "2 + 2 = 4", "answer": "4", "prompt": "What is 2 + 2?"}


class JudgeServer:
    """Route ``/{mode}/v1/chat/completions`` answers as ``mode`` says; counts requests and in-flight."""

    REPLIES = {
        "score9": "The answer is right.\nScore: 9",
        "score3": "Score: 3",
        "garbage": "I refuse to grade this, sorry.",
        "outofrange": "Score: 42",
        "pass": "Verdict: PASS",
        "maybe": "Verdict: MAYBE",
    }

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        app = fastapi.FastAPI()

        @app.post("/{mode}/v1/chat/completions")
        def chat(mode: str, body: dict = fastapi.Body(...)):
            with self._lock:
                n = self.counts[mode] = self.counts.get(mode, 0) + 1
                self.in_flight[mode] = self.in_flight.get(mode, 0) + 1
                self.max_in_flight[mode] = max(self.max_in_flight.get(mode, 0), self.in_flight[mode])
                self.bodies.append(body)
            try:
                return self._answer(mode, n)
            finally:
                with self._lock:
                    self.in_flight[mode] -= 1

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def _answer(self, mode: str, n: int):
        if mode == "slow":
            time.sleep(3)
            reply = "Score: 9"
        elif mode == "busy":  # slowish: lets requests overlap
            time.sleep(0.3)
            reply = "Score: 5"
        elif mode == "flaky" and n == 1:
            return fastapi.responses.JSONResponse({"error": "overloaded"}, status_code=503)
        elif mode == "flaky":
            reply = "Score: 10"
        elif mode == "badrequest":
            return fastapi.responses.JSONResponse({"error": "no"}, status_code=400)
        else:
            reply = self.REPLIES[mode]
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def judge_server():
    server = JudgeServer()
    yield server
    server.stop()


def _judge(url: str, **options) -> JudgeEnv:
    env = load_env("judge", base_url=url, retry_backoff_s=0.05, **options)
    assert isinstance(env, JudgeEnv)
    return env


def test_a_parsable_score_is_the_reward_and_the_request_is_the_template(judge_server):
    with _judge(judge_server.url("score9")) as env:
        score = env.score(**SAMPLE)
    assert score.status == "ok" and score.reward == pytest.approx(0.9)
    assert score.metrics["judge_score"] == 9.0
    body = judge_server.bodies[-1]
    text = body["messages"][-1]["content"]
    assert "What is 2 + 2?" in text and "2 + 2 = 4" in text and body["model"] == "judge"
    with _judge(judge_server.url("score3"), normalize=False) as env:
        assert env.score(**SAMPLE).reward == 3.0


def test_verdict_mode(judge_server):
    with _judge(judge_server.url("pass"), mode="verdict") as env:
        assert env.score(**SAMPLE).reward == 1.0
    with _judge(judge_server.url("maybe"), mode="verdict") as env:
        score = env.score(**SAMPLE)
    assert score.status == "error" and "MAYBE" in score.info["reason"]


def test_an_unparsable_reply_is_an_error_quoting_it(judge_server):
    with _judge(judge_server.url("garbage")) as env:
        score = env.score(**SAMPLE)
    assert score.status == "error" and score.reward == 0.0
    assert "I refuse to grade this" in score.info["reason"]
    with _judge(judge_server.url("outofrange")) as env:
        score = env.score(**SAMPLE)
    assert score.status == "error" and "outside" in score.info["reason"]


def test_a_slow_server_times_out(judge_server):
    with _judge(judge_server.url("slow"), request_timeout_s=0.5, retries=1) as env:
        t0 = time.monotonic()
        score = env.score(**SAMPLE)
    assert score.status == "timeout" and score.reward == 0.0
    assert "did not answer within 0.5" in score.info["reason"] and "after 2 attempts" in score.info["reason"]
    assert time.monotonic() - t0 < 3


def test_a_dead_port_is_an_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with _judge(f"http://127.0.0.1:{port}/v1", retries=1) as env:
        score = env.score(**SAMPLE)
    assert score.status == "error" and "unreachable" in score.info["reason"]


def test_a_failed_first_call_is_retried(judge_server):
    with _judge(judge_server.url("flaky"), retries=2) as env:
        score = env.score(**SAMPLE)
    assert score.status == "ok" and score.reward == 1.0
    assert judge_server.counts["flaky"] == 2
    with _judge(judge_server.url("badrequest"), retries=3) as env:  # a 400 is not worth retrying
        score = env.score(**SAMPLE)
    assert score.status == "error" and "HTTP 400" in score.info["reason"]
    assert judge_server.counts["badrequest"] == 1


def test_identical_requests_are_sent_once(judge_server):
    with _judge(judge_server.url("score3")) as env:
        before = judge_server.counts.get("score3", 0)
        first = env.score(**SAMPLE)
        again = env.score_batch([SAMPLE, SAMPLE])
        assert judge_server.counts["score3"] == before + 1  # the cache answered the rest
        assert [s.reward for s in again] == [first.reward] * 2
        env.score(**{**SAMPLE, "completion": "four"})  # another request goes out
        assert judge_server.counts["score3"] == before + 2
    with _judge(judge_server.url("garbage")) as env:  # failures are never cached
        before = judge_server.counts["garbage"]
        env.score_batch([SAMPLE])
        env.score_batch([SAMPLE])
        assert judge_server.counts["garbage"] == before + 2


def test_concurrency_limit_holds_server_side(judge_server):
    samples = [{**SAMPLE, "completion": f"answer {i}"} for i in range(8)]
    with _judge(judge_server.url("busy"), concurrency=2) as env:
        scores = env.score_batch(samples)
    assert all(s.status == "ok" for s in scores)
    assert judge_server.max_in_flight["busy"] == 2
    # more scoring threads than the limit: the semaphore still holds it
    judge_server.max_in_flight["busy"] = 0
    samples = [{**SAMPLE, "completion": f"other {i}"} for i in range(6)]
    with _judge(judge_server.url("busy"), concurrency=2, workers=6) as env:
        assert all(s.status == "ok" for s in env.score_batch(samples))
    assert judge_server.max_in_flight["busy"] <= 2


def test_check_env_against_a_judge_server(judge_server):
    with _judge(judge_server.url("score9")) as env:
        report = check_env(env)
    assert report["gold_examples"] == 2


def test_bad_config_is_refused_at_load():
    with pytest.raises(ValueError, match="template"):
        load_env("judge", template="grade {completion} for {user}")
    with pytest.raises(ValueError, match="capturing group"):
        load_env("judge", score_regex=r"Score: \d+")
    with pytest.raises(ValueError, match="score_range"):
        load_env("judge", score_range=(10, 0))


def test_judge_through_rewardkit_serve_on_a_tiny_model():
    """The real path: rewardkit serve in front of a (random) tiny model as the judge. Its replies are
    noise, so the verdict is a parsed score or an ``error`` quoting the reply; never a silent 0."""
    pytest.importorskip("torch")
    from rewardkit.generation import make_generator
    from rewardkit.generation.base import SamplingParams
    from rewardkit.models.tiny import build_tiny
    from rewardkit.serve import ChatServer

    model, tok = build_tiny(["Score: 7", "The answer is right. Score: 9", "What is 2 + 2? 4"] * 20)
    server = ChatServer(make_generator("hf", model, tok), defaults=SamplingParams(max_tokens=8))
    with server, _judge(server.base_url, max_tokens=8, retries=0) as env:
        scores = env.score_batch([SAMPLE, {**SAMPLE, "completion": "5"}])
        assert server.requests == 2
    for score in scores:
        assert score.status in ("ok", "error")
        if score.status == "error":
            assert "unparsable" in score.info["reason"] or "outside" in score.info["reason"]
            assert repr(score.info["judge_reply"]) in score.info["reason"]
        else:
            assert 0.0 <= score.reward <= 1.0
