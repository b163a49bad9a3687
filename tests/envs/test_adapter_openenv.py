"""The ``openenv:<name>`` adapter against the real openenv-core: a number-guessing game written with its
base classes (tests/fixtures/openenv_envs/guess_env.py), run in-process (``mode: local``) and behind the
real OpenEnv FastAPI server under uvicorn on 127.0.0.1 (``mode: http``), played by a scripted policy
through ``env.rollout``. No network beyond loopback, no mocks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("openenv.core", reason="openenv-core is not installed")
httpx = pytest.importorskip("httpx")

from test_multiturn import ScriptedGenerator  # noqa: E402

from rewardkit import check_env, load_env  # noqa: E402
from rewardkit.config import ConfigError  # noqa: E402
from rewardkit.generation.base import SamplingParams  # noqa: E402
from rewardkit.scoring import score_trajectories  # noqa: E402
from rewardkit.types import Task  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openenv_envs"
GAME = f"{FIXTURES / 'guess_env.py'}:GuessEnvironment"
LOCAL = f"openenv:{GAME}"
TEXT = {"action_field": "guess", "max_turns": 4, "n_train": 6, "n_test": 2, "executor": "thread"}
JSON = {"max_turns": 4, "n_train": 6, "n_test": 2, "executor": "thread"}

# Targets (guess_env.target_for): seed 0 -> 4, 1 -> 1, 2 -> 8, 3 -> 5.
SCRIPTS = {
    "0": [["3", "9", "4"], ["4"]],  # higher, lower, correct: -0.1 - 0.1 + 1.0; a first-guess win
    "1": [["x", "1"], ["1"]],  # not an action (a reply, nothing stepped), then the win
    "2": [["1", "2", "3", "5"], ["8"]],  # four wrong guesses: game over (done) with -0.4
    "3": [[("I will think about this for a very long", "length")], ["5"]],  # cut off: never answered
}
EXPECTED_SUM = {("0", 0): 0.8, ("0", 1): 1.0, ("1", 0): 1.0, ("1", 1): 1.0, ("2", 0): -0.4, ("2", 1): 1.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The fixture's OpenEnv server (create_fastapi_app + uvicorn) in a subprocess on 127.0.0.1."""

    def __init__(self, max_sessions: int = 8) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, str(FIXTURES / "guess_env.py"), str(self.port), str(max_sessions)],
            cwd=FIXTURES,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # openenv-core 0.3.0 logs a traceback for each closed session
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the OpenEnv server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the OpenEnv server did not start in 60 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server():
    srv = Server()
    yield srv
    srv.stop()


def _rollout(env, tokenizer, scripts=SCRIPTS, seeds=("0", "1", "2", "3"), n=2, max_tokens=16):
    tasks = [t for t in env.tasks("train") if str(t.info["seed"]) in seeds]
    gen = ScriptedGenerator(tokenizer, scripts)
    trajectories = env.rollout(gen, tasks, n=n, sampling=SamplingParams(max_tokens=max_tokens, seed=0))
    return trajectories, score_trajectories(env, trajectories)


def _view(trajectories, scores):
    """What must not depend on where the environment runs (the reply to an Action the environment
    rejects is the same but for its reason: pydantic's words locally, the server's error code over http)."""
    return [
        (
            tuple(_same_reason(m) for m in t.completion),
            t.turn_rewards,
            t.stop_reason,
            t.info.get("openenv_rewards"),
            s.reward,
            s.status,
        )
        for t, s in zip(trajectories, scores)
    ]


def _same_reason(message):
    content = message["content"]
    for rejected in ("GuessAction rejects it (", "the server rejects it ("):
        if rejected in content:
            return {**message, "content": content[: content.index(rejected)] + "REJECTED"}
    return message


# ---- conformance ---------------------------------------------------------------------------------------
def test_check_env_local_text_actions():
    with load_env(LOCAL, gold_actions=[["4"], ["1"]], **TEXT) as env:
        report = check_env(env)
    assert report["gold_examples"] == 2 and report["probes"] == 3 and report["tasks_checked"] == 5


def test_check_env_http_json_actions(server):
    gold = [['<action>{"guess": 4}</action>']]
    with load_env(f"openenv:{server.url}", gold_actions=gold, **JSON) as env:
        assert env.mode == "http"
        report = check_env(env)
        system = env.tasks("train")[0].prompt[0]["content"]
    assert report["gold_examples"] == 1 and report["probes"] == 3
    assert '"guess" (integer, required)' in system  # the action's fields, read from the server's /schema


def test_module_class_name_and_url_option(server, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    with load_env("openenv:guess_env:GuessEnvironment", **TEXT) as env:
        assert env.mode == "local" and env.tasks("train")[0].info == {
            "seed": 0,
            "observation": "Game 0: guess my number from 1 to 10.",
        }
    with load_env("openenv:guess", mode="http", url=server.url, **TEXT) as env:
        assert env.mode == "http" and env.url == server.url and env.name == "openenv:guess"


# ---- the same episodes in both modes --------------------------------------------------------------------
def test_local_and_http_rollouts_give_the_same_turns_and_rewards(server, hf_tokenizer):
    with load_env(LOCAL, **TEXT) as local, load_env(f"openenv:{server.url}", **TEXT) as remote:
        assert local.tasks("train")[:4] == remote.tasks("train")[:4]
        local_view = _view(*_rollout(local, hf_tokenizer))
        remote_view = _view(*_rollout(remote, hf_tokenizer))
    assert local_view == remote_view
    completion, turn_rewards, stop, rewards, reward, status = local_view[0]  # game 0, sample 0
    assert [m["content"] for m in completion] == ["3", "higher", "9", "lower", "4"]
    assert turn_rewards == (-0.1, -0.1, 1.0) and rewards == [-0.1, -0.1, 1.0] and stop == "done"
    assert status == "ok" and reward == pytest.approx(0.8)
    game1 = local_view[2]
    assert game1[0][1]["content"] == "That is not a valid action: REJECTED"
    assert game1[1] == (0.0, 1.0) and game1[3] == [1.0]  # the invalid turn is not an OpenEnv step
    game2 = local_view[4]
    assert game2[0][-1]["content"] == "5" and game2[2] == "done" and game2[4] == pytest.approx(-0.4)
    cut = local_view[6]  # game 3, sample 0: the only turn ran out of tokens, nothing was stepped
    assert cut[2] == "length" and cut[1] == () and cut[4] == 0.0 and cut[5] == "ok"
    got = {(seed, j): local_view[2 * k + j][4] for k, seed in enumerate("012") for j in range(2)}
    assert got == pytest.approx(EXPECTED_SUM)


def test_json_actions_same_in_both_modes(server, hf_tokenizer):
    scripts = {
        "0": [['<action>{"guess": 2}</action>', '<action>{"guess": 4}</action>']],
        "1": [['<action>{"guess": "one"}</action>', "no action", '<action>{"guess": 1}</action>']],
    }
    with load_env(LOCAL, **JSON) as local, load_env(f"openenv:{server.url}", **JSON) as remote:
        views = [_rollout(e, hf_tokenizer, scripts, seeds=("0", "1"), n=1) for e in (local, remote)]
    (lt, ls), (rt, rs) = views
    assert [t.turn_rewards for t in lt] == [t.turn_rewards for t in rt] == [(-0.1, 1.0), (0.0, 0.0, 1.0)]
    assert [s.reward for s in ls] == [s.reward for s in rs] == pytest.approx([0.9, 1.0])
    assert [t.info["invalid_actions"] for t in lt] == [t.info["invalid_actions"] for t in rt] == [0, 2]
    # The reply to a rejected action says why: pydantic's words locally, the server's code over http.
    assert "valid integer" in lt[1].completion[1]["content"]
    assert "VALIDATION_ERROR" in rt[1].completion[1]["content"]
    assert "no <action>" in lt[1].completion[3]["content"] and lt[1].completion[3] == rt[1].completion[3]


def test_last_reward_mode(hf_tokenizer):
    with load_env(LOCAL, reward="last", **TEXT) as env:
        trajectories, scores = _rollout(env, hf_tokenizer, seeds=("0", "2"))
    assert [s.reward for s in scores] == pytest.approx([1.0, 1.0, -0.1, 1.0])
    assert scores[0].metrics["openenv_return"] == pytest.approx(0.8)


def test_max_turns_still_steps_the_last_turn(hf_tokenizer):
    with load_env(LOCAL, **{**TEXT, "max_turns": 2}) as env:
        (t, _), (s, _) = _rollout(env, hf_tokenizer, seeds=("0",))
    assert t.stop_reason == "max_turns" and t.turns == 2
    assert t.info["openenv_rewards"] == [-0.1, -0.1] and t.info["end"] == "max_turns"
    assert s.reward == pytest.approx(-0.2) and s.metrics["done"] == 0.0


# ---- failures are errors, never a silent 0 -------------------------------------------------------------
@pytest.mark.parametrize("mode", ["local", "http"])
def test_an_environment_that_raises_gives_error(mode, server, hf_tokenizer):
    name = LOCAL if mode == "local" else f"openenv:{server.url}"
    with load_env(name, **TEXT) as env:
        (t,), (s,) = _rollout(env, hf_tokenizer, {"0": [["2", "13"]]}, seeds=("0",), n=1)
    assert t.info["status"] == "error" and t.info["openenv_rewards"] == [-0.1]
    assert s.status == "error" and s.reward == 0.0 and "the guessing machine broke" in s.info["reason"]


def test_a_server_that_goes_down_gives_error(hf_tokenizer):
    srv = Server()
    try:
        env = load_env(f"openenv:{srv.url}", **TEXT)
        env.tasks("train")
    finally:
        srv.stop()
    trajectories, scores = _rollout(env, hf_tokenizer, seeds=("0", "1"), n=1)
    assert [s.status for s in scores] == ["error", "error"]
    assert all(srv.url in s.info["reason"] and s.reward == 0.0 for s in scores)
    assert all(t.turns == 1 and t.stop_reason == "done" for t in trajectories)
    env.close()


def test_a_server_that_was_never_up(hf_tokenizer):
    url = f"http://127.0.0.1:{_free_port()}"
    with load_env(f"openenv:{url}", **TEXT) as env:  # loading contacts nothing
        with pytest.raises(RuntimeError, match="cannot build the train tasks"):
            env.tasks("train")
        task = Task(
            ({"role": "user", "content": "Game 0: guess my number from 1 to 10."},), None, {"seed": 0}
        )
        (t,) = env.rollout(ScriptedGenerator(hf_tokenizer, {"0": [["4"]]}), [task])
        score = env.score(t.completion, prompt=task.prompt, info={**task.info, "episode": t.info})
        replayed = env.score(t.completion, prompt=task.prompt, info=task.info)  # no record: replay fails too
    assert score.status == "error" and "failed" in score.info["reason"]
    assert replayed.status == "error"


def test_sessions_are_released_and_a_full_server_is_an_error(hf_tokenizer):
    srv = Server(max_sessions=2)
    try:
        with load_env(f"openenv:{srv.url}", connect_timeout_s=2.0, **TEXT) as env:
            for _ in range(3):  # would exhaust 2 sessions if any episode (even a cut-off one) leaked its own
                _, scores = _rollout(env, hf_tokenizer, seeds=("3",), n=2)
                assert [s.status for s in scores] == ["ok", "ok"]
            _, scores = _rollout(env, hf_tokenizer, seeds=("0",), n=2)
            assert [s.status for s in scores] == ["ok", "ok"]
            scripts = {"0": [["4"], ["4"], ["4"]]}
            _, scores = _rollout(env, hf_tokenizer, scripts, seeds=("0",), n=3)  # 3 episodes at once
    finally:
        srv.stop()
    assert sorted(s.status for s in scores) == ["error", "ok", "ok"]
    reason = next(s.info["reason"] for s in scores if s.status == "error")
    assert "CAPACITY_REACHED" in reason or "it is probably full" in reason


def test_nondeterministic_reset_is_caught(hf_tokenizer):
    with load_env(LOCAL, **TEXT) as env:
        task = env.tasks("train")[0]
        forged = Task(task.prompt, None, {**task.info, "observation": "Game 9: something else"})
        (t,) = env.rollout(ScriptedGenerator(hf_tokenizer, {"0": [["4"]]}), [forged])
        score = env.score(t.completion, prompt=task.prompt, info={**forged.info, "episode": t.info})
    assert score.status == "error" and "another first observation" in score.info["reason"]


# ---- verify: records and replays ----------------------------------------------------------------------
def test_verify_replays_a_sample_without_record_and_rejects_forgeries():
    with load_env(LOCAL, **TEXT) as env:
        task = env.tasks("train")[0]
        messages, record = env.play(task, ["3", "4"])
        honest = env.score(messages, prompt=task.prompt, info=task.info)
        with_record = env.score(messages, prompt=task.prompt, info={**task.info, "episode": record})
        forged = [{"role": "assistant", "content": "3"}, {"role": "user", "content": "correct"}, messages[-1]]
        forged_score = env.score(forged, prompt=task.prompt, info=task.info)
        text = env.score("4", prompt=task.prompt, info=task.info)
    assert honest.reward == with_record.reward == pytest.approx(0.9) and honest.status == "ok"
    assert forged_score.reward == 0.0 and forged_score.metrics["rejected"] == 1.0
    assert text.status == "invalid_input"


# ---- configuration -------------------------------------------------------------------------------------
def test_configuration_errors():
    with pytest.raises(ConfigError, match="not a field of GuessAction"):
        load_env(LOCAL, action_field="number")
    with pytest.raises(ImportError, match="openenv-core ships no runnable environment"):
        load_env("openenv:no_such_module_here:Env")
    with pytest.raises(TypeError, match="not an OpenEnv Environment"):
        load_env(f"openenv:{FIXTURES / 'guess_env.py'}:GuessAction")
    with pytest.raises(ConfigError, match="reward"):
        load_env(LOCAL, reward="mean")
    with pytest.raises(ConfigError, match="action_parser"):
        load_env(LOCAL, action_field="guess", action_parser=json.loads)


def test_action_parser_and_observation_renderer(hf_tokenizer):
    def parse(text):
        return {"guess": int(text.split()[-1])}

    config = {
        **TEXT,
        "action_field": None,
        "action_parser": parse,
        "render_observation": lambda o: f">> {o['message']}",
    }
    with load_env(LOCAL, **config) as env:
        scripts = {"0": [["my guess is 2", "maybe 4"]]}
        (t,), (s,) = _rollout(env, hf_tokenizer, scripts, seeds=("0",), n=1)
    assert env.tasks("train")[0].prompt[-1]["content"] == ">> Game 0: guess my number from 1 to 10."
    assert [m["content"] for m in t.completion] == ["my guess is 2", ">> higher", "maybe 4"]
    assert s.reward == pytest.approx(0.9)


# ---- training ------------------------------------------------------------------------------------------
def test_grpo_smoke_run_on_cpu(grpo_smoke):
    grpo_smoke(LOCAL, {"action_field": "guess", "max_turns": 2, "n_train": 8, "n_test": 2})
