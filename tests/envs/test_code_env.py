"""The code environment against real sandboxes: extraction, both test kinds, limits, statuses, batches."""

from __future__ import annotations

import os
import time

import pytest

from rewardkit import load_env
from rewardkit.config import ConfigError
from rewardkit.conformance import check_env
from rewardkit.sandbox import SandboxError, get_sandbox
from rewardkit.verifiers.code import extract_code, outputs_match, python_syntax_error

SQUARE_TESTS = {"test_code": "assert square(3) == 9\nassert square(-1) == 1"}


def docker_env(**config):
    """A docker-backed env; load_env starts no containers (the pool starts on first use)."""
    return load_env("code", sandbox="docker", sandbox_options={"pool_size": 2}, **config)


@pytest.fixture(scope="module", params=["local", "docker"])
def env(request):
    if request.param == "docker":
        try:
            get_sandbox("docker", pool_size=1).close()
        except SandboxError as exc:
            if os.environ.get("REWARDKIT_NO_SKIP") or os.environ.get("REWARDKIT_REQUIRE_DOCKER"):
                pytest.fail(f"REWARDKIT_NO_SKIP is set but docker is unavailable: {exc}")
            pytest.skip(f"docker sandbox unavailable: {exc}")
        environment = docker_env()
    else:
        environment = load_env("code", sandbox="local")
    yield environment
    environment.close()


# ---- pure helpers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("print(1)", "print(1)"),
        ("intro\n```python\nprint(1)\n```\nthen\n```py\nprint(2)\n```\nbye", "print(2)\n"),
        ("~~~\nx = 1\n~~~", "x = 1\n"),
        ("````python\nprint('```')\n````", "print('```')\n"),
        ("```python\nprint(1)\n```\n```python\nprint(2)", "print(1)\n"),  # unclosed last fence is no block
        ("no fence ``` inline ``` here", "no fence ``` inline ``` here"),
    ],
)
def test_extract_code_takes_the_last_fenced_block(text, expected):
    assert extract_code(text) == expected


def test_outputs_match_rules():
    assert outputs_match("1 2  \n3\n\n\n", "1 2\n3")
    assert outputs_match("a\r\nb\r\n", "a\nb\n")
    assert not outputs_match(" 1", "1")  # leading space is significant
    assert not outputs_match("0.3333333", "0.333333333")
    assert outputs_match("0.3333333", "0.333333333", float_tolerance=1e-6)
    assert not outputs_match("0.34", "0.333333333", float_tolerance=1e-6)
    assert not outputs_match("1 2", "1", float_tolerance=0.5)
    assert not outputs_match("nan", "1.0", float_tolerance=1e9)
    assert not outputs_match("abc 1.0", "abd 1.0", float_tolerance=0.1)


def test_python_syntax_error_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    assert python_syntax_error(f"open({str(marker)!r}, 'w')") is None
    assert not marker.exists()
    assert "SyntaxError" in python_syntax_error("def f(:")
    assert python_syntax_error("x = '\\0'") is None and python_syntax_error("x\0 = 1") is not None


# ---- the environment, on both back ends -------------------------------------------------------------
def test_gold_examples_pass(env):
    check_env(env)


def test_assert_tests_pass_and_fail(env):
    good = env.score("def square(x):\n    return x * x\n", info=SQUARE_TESTS)
    bad = env.score("def square(x):\n    return x + x\n", info=SQUARE_TESTS)
    assert (good.reward, good.status, good.metrics["all_passed"]) == (1.0, "ok", 1.0)
    assert (bad.reward, bad.status, bad.metrics["pass_rate"]) == (0.0, "ok", 0.0)


@pytest.mark.parametrize(
    "hack",
    ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "exit()", "raise SystemExit"],
)
def test_exiting_before_the_tests_does_not_pass(env, hack):
    completion = f"def square(x):\n    return 0\n{hack}\n"
    assert env.score(completion, info=SQUARE_TESTS).reward == 0.0


def test_exiting_from_inside_the_tests_does_not_pass(env):
    completion = "import sys\ndef square(x):\n    sys.exit(0)\n"
    assert env.score(completion, info=SQUARE_TESTS).reward == 0.0


def test_io_tests_reward_is_the_fraction_passed(env):
    info = {
        "io_tests": [
            {"stdin": "2 3\n", "stdout": "5\n"},
            {"stdin": "10 -4", "stdout": "6   \n\n"},  # trailing whitespace ignored
            {"stdin": "1 1", "stdout": "3"},
        ]
    }
    score = env.score("```python\na, b = map(int, input().split())\nprint(a + b)\n```", info=info)
    assert score.status == "ok"
    assert score.reward == pytest.approx(2 / 3)
    assert score.metrics == {
        "pass_rate": pytest.approx(2 / 3),
        "all_passed": 0.0,
        "syntax_error": 0.0,
        "timeout": 0.0,
    }


def test_right_output_with_a_crash_fails(env):
    info = {"io_tests": [{"stdin": "", "stdout": "42"}]}
    assert env.score("print(42)\nraise RuntimeError('late')", info=info).reward == 0.0


def test_float_tolerance_from_info(env):
    program = "print(1 / 3)"
    tests = [{"stdin": "", "stdout": "0.333333"}]
    assert env.score(program, info={"io_tests": tests}).reward == 0.0
    assert env.score(program, info={"io_tests": tests, "float_tolerance": 1e-5}).reward == 1.0


def test_timeout_is_reported_never_a_silent_zero(env):
    score = env.score("while True:\n    pass", info={"test_code": "pass", "timeout_s": 0.5})
    assert score.status == "timeout" and score.reward == 0.0
    assert score.metrics["timeout"] == 1.0 and "timed out" in score.info["reason"]


def test_partial_timeouts_keep_partial_credit_and_say_so(env):
    program = "n = int(input())\nwhile n < 0:\n    pass\nprint(n)"
    info = {"io_tests": [{"stdin": "5", "stdout": "5"}, {"stdin": "-1", "stdout": "-1"}], "timeout_s": 0.5}
    score = env.score(program, info=info)
    assert score.status == "ok" and score.reward == 0.5
    assert score.metrics["timeout"] == 1.0 and score.info["timed_out_tests"] == [1]


def test_memory_limit_from_info(env):
    program = "x = bytearray(200 << 20)\nprint('ok')"
    tests = [{"stdin": "", "stdout": "ok"}]
    assert env.score(program, info={"io_tests": tests, "memory_mb": 64}).reward == 0.0
    assert env.score(program, info={"io_tests": tests, "memory_mb": 512}).reward == 1.0


def test_syntax_error_metric(env):
    score = env.score("```python\ndef f(:\n```", info=SQUARE_TESTS)
    assert score.status == "ok" and score.reward == 0.0 and score.metrics["syntax_error"] == 1.0


def test_chat_completion_uses_the_last_assistant_message(env):
    messages = [
        {"role": "user", "content": "write square"},
        {"role": "assistant", "content": "```python\ndef square(x):\n    return x * x\n```"},
    ]
    assert env.score(messages, info=SQUARE_TESTS).reward == 1.0


@pytest.mark.parametrize(
    "info, fragment",
    [
        ({}, "test_code"),
        ({"io_tests": "1 2"}, "list"),
        ({"io_tests": []}, "empty"),
        ({"io_tests": [{"stdin": "1"}]}, "stdout"),
        ({"test_code": 5}, "string"),
        ({"test_code": "assert (", "timeout_s": 1}, "does not compile"),
        ({"test_code": "pass", "timeout_s": -1}, "timeout_s"),
        ({"test_code": "pass", "memory_mb": "lots"}, "memory_mb"),
    ],
)
def test_bad_info_is_invalid_input(env, info, fragment):
    score = env.score("print(1)", info=info)
    assert score.status == "invalid_input" and score.reward == 0.0
    assert fragment in score.info["reason"]


def test_batch_keeps_order(env):
    samples = [
        {
            "completion": f"print({i})",
            "info": {"io_tests": [{"stdin": "", "stdout": str(i if i % 3 else -1)}]},
        }
        for i in range(12)
    ]
    rewards = [s.reward for s in env.score_batch(samples)]
    assert rewards == [0.0 if i % 3 == 0 else 1.0 for i in range(12)]


# ---- configuration and sandbox plumbing --------------------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        {"sandbox": "vm"},
        {"sandbox": 3},
        {"test_timeout_s": 0},
        {"test_memory_mb": 1},
        {"float_tolerance": -1.0},
        {"executor": "process"},
    ],
)
def test_bad_config_raises_at_load_env(config):
    with pytest.raises((ValueError, TypeError)):
        load_env("code", **config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"sandbox_options": {"bogus": 1}},
            "environment 'code': unknown key 'sandbox_options.bogus'; allowed keys",
        ),
        (
            {"sandbox_options": {"max_paralel": 2}},
            "environment 'code': unknown key 'sandbox_options.max_paralel' (did you mean 'sandbox_options.max_parallel'?)",
        ),
        (
            {"sandbox": "docker", "sandbox_options": {"pool_size": 0}},
            "environment 'code': sandbox_options.pool_size: got 0, expected >= 1",
        ),
        (
            {"sandbox_options": {"pool_size": 4}},
            "environment 'code': sandbox_options.pool_size: an option of the docker sandbox, not of the local one",
        ),
        (
            {"sandbox": "docker", "sandbox_options": {"cpus": 0}},
            "environment 'code': sandbox_options.cpus: got 0.0, expected > 0",
        ),
        (
            {"sandbox_options": {"command": ["node", "main.js"]}},
            "environment 'code': sandbox_options.command: got ('node', 'main.js'), expected an argv with a '{file}'",
        ),
        (
            {"sandbox": "dokcer"},
            "environment 'code': sandbox: got 'dokcer', expected one of 'local', 'docker' or a",
        ),
        ({"language": "javascript"}, "environment 'code': language: got 'javascript', expected python, or a"),
        ({"test_timeout_s": 0}, "environment 'code': test_timeout_s: got 0.0, expected > 0"),
    ],
)
def test_sandbox_options_are_checked_at_load_env_without_starting_a_sandbox(config, message):
    """Each of these used to load fine and then score every sample ``error`` (or run the wrong program)."""
    with pytest.raises(ConfigError) as info:
        load_env("code", **config)
    assert str(info.value).startswith(message)


def test_sandbox_options_with_a_sandbox_instance_are_refused():
    sandbox = get_sandbox("local")
    try:
        with pytest.raises(ConfigError, match="sandbox_options: got {'max_parallel': 2}, expected none"):
            load_env("code", sandbox=sandbox, sandbox_options={"max_parallel": 2})
        load_env("code", sandbox=sandbox).close()
    finally:
        sandbox.close()


def test_good_sandbox_options_load_and_start_nothing():
    env = load_env("code", sandbox="docker", sandbox_options={"pool_size": 2, "image": "no-such-image:1"})
    assert env._sandbox is None  # the pool starts at the first sample, not at load_env
    env.close()
    node = {"command": ["node", "{file}"], "filename": "main.js"}
    load_env("code", language="javascript", sandbox_options=node).close()


def test_batches_spread_over_the_docker_pool():
    """Eight one-second programs on a pool of two take about four seconds, not eight."""
    env = docker_env()
    try:
        assert env.sandbox.pool_size == 2
    except SandboxError as exc:
        if os.environ.get("REWARDKIT_NO_SKIP") or os.environ.get("REWARDKIT_REQUIRE_DOCKER"):
            pytest.fail(str(exc))
        pytest.skip(f"docker sandbox unavailable: {exc}")
    sample = {"completion": "import time\ntime.sleep(1)", "info": {"test_code": "pass"}}
    started = time.monotonic()
    scores = env.score_batch([{**sample, "completion": sample["completion"] + f"\n# {i}"} for i in range(8)])
    elapsed = time.monotonic() - started
    env.close()
    assert all(s.reward == 1.0 for s in scores)
    assert env.scoring.workers == 2 and elapsed < 6.5


def test_a_failing_sandbox_is_an_error_not_a_zero():
    sandbox = get_sandbox("local")
    env = load_env("code", sandbox=sandbox)

    class Broken:
        kind = "broken"

        def run(self, *args, **kwargs):
            raise SandboxError("engine went away")

        def protections(self):
            return {}

        def close(self):
            pass

    env._sandbox = Broken()
    score = env.score("def square(x):\n    return x * x", info=SQUARE_TESTS)
    assert score.status == "error" and "engine went away" in score.info["reason"]


def test_env_pickles_without_its_sandbox():
    """Envs travel to worker processes by pickle; the sandbox (processes, sockets) is rebuilt there."""
    import pickle

    env = load_env("code", sandbox="local")
    assert env.score("def square(x):\n    return x * x", info=SQUARE_TESTS).reward == 1.0
    clone = pickle.loads(pickle.dumps(env))
    assert clone._sandbox is None
    assert clone.score("def square(x):\n    return x * x", info=SQUARE_TESTS).reward == 1.0
    env.close()
    clone.close()


def test_equal_samples_share_one_verdict():
    """GRPO groups repeat solutions: equal programs under equal tests are run once per batch."""
    from rewardkit.sandbox.local import LocalSandbox

    class CountingSandbox(LocalSandbox):
        runs = 0

        def run(self, code, **limits):
            CountingSandbox.runs += 1
            return super().run(code, **limits)

    sandbox = CountingSandbox()
    CountingSandbox.runs = 0  # construction runs a probe
    env = load_env("code", sandbox=sandbox)
    same = {"completion": "```python\ndef square(x):\n    return x * x\n```", "info": SQUARE_TESTS}
    other_text = {
        "completion": "Sure!\n```python\ndef square(x):\n    return x * x\n```",
        "info": SQUARE_TESTS,
    }
    key = env.cache_key(same["completion"], answer=None, prompt=None, info=same["info"])
    assert key == env.cache_key(other_text["completion"], answer=None, prompt=None, info=other_text["info"])
    assert key != env.cache_key(same["completion"], answer=None, prompt=None, info={"test_code": "pass"})
    assert [s.reward for s in env.score_batch([same, other_text, same])] == [1.0, 1.0, 1.0]
    assert CountingSandbox.runs == 1
    env.score_batch([same])  # and across batches, from the verdict cache
    assert CountingSandbox.runs == 1
    env.close()
