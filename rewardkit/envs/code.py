"""The ``code`` environment: run the completion's program against tests in a sandbox.

Two kinds of tests, per sample ``info``:
  * ``test_code``: Python tests run after the solution by a fixed harness, in their own namespace,
    with strict comparisons (docs/sandbox.md, "How tests are compared"); they pass iff they run to
    their end (assert-style tests, as in MBPP / HumanEval). Exiting early counts as failing, even
    with status 0, so tests must not call ``sys.exit`` on success (use ``unittest.main(exit=False)``).
  * ``io_tests``: a list of ``{"stdin", "stdout"}``; each passes iff the program exits 0 and its
    output matches, trailing whitespace ignored (optionally numbers within a tolerance).
Reward is the fraction of tests passed. Scoring uses the runtime's ``thread`` executor: the sandbox
isolates and times out each run itself, so a worker thread only waits on it, and threads spread a
batch over the sandbox's slots or warm containers (process workers would each need their own pool).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from rewardkit.config import bad_value, check_ranges, suggest
from rewardkit.data.code_tasks import code_tasks
from rewardkit.envs.base import Environment
from rewardkit.envs.code_probes import code_probes
from rewardkit.sandbox import SANDBOX_KINDS, ExecResult, Sandbox, SandboxError, get_sandbox, sandbox_config
from rewardkit.types import Completion, Score, Task, completion_text
from rewardkit.verifiers.code import (
    HARNESS_SOURCE,
    extract_code,
    outputs_match,
    python_syntax_error,
    solution_red_flags,
)

if TYPE_CHECKING:
    from rewardkit.envs.probes import Probe

_MARGIN_S = 0.5
"""Sample time kept back for bookkeeping, so the env's own deadline never fires before ours."""
WHERE = "environment 'code'"


@dataclass(frozen=True)
class _Test:
    """One program to run: the source, its stdin, and (io tests) the expected stdout."""

    source: str
    stdin: str = ""
    expected: str | None = None
    marker: str | None = None
    """test_code runs must print this last: a solution that exits early (``sys.exit(0)``) never does."""


@dataclass(frozen=True)
class CodeConfig:
    """Options of the ``code`` environment (``load_env("code", ...)``)."""

    sandbox: str | Any = "local"
    """``"local"``, ``"docker"``, or a Sandbox instance (shared, not closed by this environment)."""
    sandbox_options: Mapping[str, Any] = field(default_factory=dict)
    """Options for ``get_sandbox``: the fields of ``LocalConfig`` (``local``, e.g. ``{"max_parallel": 8}``)
    or ``DockerConfig`` (``docker``, e.g. ``{"image": ..., "pool_size": 4}``); checked at ``load_env``."""
    test_timeout_s: float = 5.0
    """Wall-clock limit per test program; ``info["timeout_s"]`` overrides it."""
    test_memory_mb: int = 512
    """Address-space limit per test program; ``info["memory_mb"]`` overrides it."""
    float_tolerance: float | None = None
    """io tests compare numbers within this tolerance (None: exact text); ``info["float_tolerance"]`` overrides it."""
    language: str = "python"
    """``python`` checks syntax before running; other languages need a sandbox ``command``/``filename`` in
    ``sandbox_options`` and an image that has the toolchain."""

    def __post_init__(self) -> None:
        if isinstance(self.sandbox, str):
            _check_sandbox_options(self.sandbox, self.sandbox_options, self.language)
        elif not isinstance(self.sandbox, Sandbox):
            kinds = ", ".join(map(repr, SANDBOX_KINDS))
            raise bad_value(WHERE, "sandbox", self.sandbox, f"one of {kinds} or a Sandbox instance")
        elif self.sandbox_options:
            raise bad_value(
                WHERE,
                "sandbox_options",
                dict(self.sandbox_options),
                "none with a Sandbox instance",
                ": it is built already; pass its options to get_sandbox(...) instead",
            )
        check_ranges(
            self, {"test_timeout_s": "> 0", "test_memory_mb": ">= 16", "float_tolerance": ">= 0"}, where=WHERE
        )


def _check_sandbox_options(kind: str, options: Mapping[str, Any], language: str) -> None:
    """A sandbox named by kind: its options checked now (names, values), not at the first sample."""
    if kind not in SANDBOX_KINDS:
        kinds = ", ".join(map(repr, SANDBOX_KINDS))
        raise bad_value(
            WHERE, "sandbox", kind, f"one of {kinds} or a Sandbox instance", suggest(kind, SANDBOX_KINDS)
        )
    sandbox_config(kind, options, where=WHERE, prefix="sandbox_options.")
    if language != "python" and "command" not in options:
        raise bad_value(
            WHERE,
            "language",
            language,
            "python, or a sandbox_options command that runs it",
            " (e.g. command: [node, '{file}'], filename: main.js); the default command runs python3",
        )


class CodeEnv(Environment):
    """Scores code completions by running tests in a sandbox (options: ``CodeConfig``).

    Scoring options differ from the other environments': the ``thread`` executor (``process`` is
    refused), ``timeout_s`` 60 s for a whole sample (tests that do not fit are failed), and
    ``workers`` = the sandbox's parallelism (the docker pool size, else the CPU count).
    """

    name = "code"
    correctness_metric = "all_passed"
    Config = CodeConfig

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.scoring.executor == "process":
            raise ValueError(
                "the code env waits on its sandbox from threads; executor='process' is not supported"
            )
        cfg = self.config
        self._sandbox: Sandbox | None = None if isinstance(cfg.sandbox, str) else cfg.sandbox
        self._sandbox_lock = threading.Lock()

    @classmethod
    def scoring_defaults(cls, config: CodeConfig) -> Mapping[str, Any]:
        # One sample per container or CPU keeps the sandbox busy without queueing threads on it.
        return {
            "executor": "thread",
            "timeout_s": 60.0,
            "workers": _parallelism(config.sandbox, config.sandbox_options),
        }

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox, started on first use (a docker pool takes a moment to warm up)."""
        with self._sandbox_lock:
            if self._sandbox is None:
                self._sandbox = get_sandbox(self.config.sandbox, **self.config.sandbox_options)
            return self._sandbox

    def close(self) -> None:
        """Stop scoring threads and the sandbox this env created."""
        super().close()
        with self._sandbox_lock:
            if self._sandbox is not None and isinstance(self.config.sandbox, str):
                self._sandbox.close()
                self._sandbox = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_sandbox_lock", None)
        if isinstance(self.config.sandbox, str):
            state["_sandbox"] = None  # a sandbox holds processes and sockets; rebuilt where unpickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sandbox_lock = threading.Lock()

    # ---- scoring --------------------------------------------------------------------------------
    def cache_key(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> str:
        """Equal programs under equal tests share a verdict (GRPO groups often repeat a solution)."""
        solution = extract_code(completion_text(completion))
        fields = {
            k: info.get(k) for k in ("test_code", "io_tests", "timeout_s", "memory_mb", "float_tolerance")
        }
        blob = json.dumps([solution, fields], sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()

    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        deadline = time.monotonic() + self.scoring.timeout_s - _MARGIN_S
        solution = extract_code(completion_text(completion))
        try:
            tests, limits = self._plan(solution, info)
        except ValueError as exc:
            return Score.failure("invalid_input", str(exc))
        if self.config.language == "python" and (error := python_syntax_error(solution)) is not None:
            metrics = {"pass_rate": 0.0, "all_passed": 0.0, "syntax_error": 1.0, "timeout": 0.0}
            return Score.ok(0.0, metrics, reason=error, tests=len(tests))
        outcomes = [self._run_test(test, limits, deadline) for test in tests]
        return _summarize(outcomes)

    def _plan(self, solution: str, info: Mapping[str, Any]) -> tuple[list[_Test], dict[str, Any]]:
        """The test programs of a sample and their limits; ValueError names what is wrong with ``info``."""
        test_code, io_tests = info.get("test_code"), info.get("io_tests")
        if test_code is None and io_tests is None:
            raise ValueError(
                "code env needs info['test_code'] (str) or info['io_tests'] (list of {stdin, stdout})"
            )
        tests: list[_Test] = []
        if io_tests is not None:
            tests += [_io_test(solution, i, t) for i, t in enumerate(_as_list(io_tests))]
        if test_code is not None:
            if not isinstance(test_code, str):
                raise ValueError(f"info['test_code'] must be a string, got {type(test_code).__name__}")
            if self.config.language == "python" and (error := python_syntax_error(test_code)) is not None:
                raise ValueError(f"info['test_code'] does not compile: {error}")
            tests.append(_assert_test(solution, test_code, self.config.language))
        limits = {
            "timeout_s": _positive(info, "timeout_s", self.config.test_timeout_s),
            "memory_mb": int(_positive(info, "memory_mb", self.config.test_memory_mb)),
            "float_tolerance": info.get("float_tolerance", self.config.float_tolerance),
        }
        return tests, limits

    def _run_test(self, test: _Test, limits: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Run one test program; a test that no longer fits in the sample's time counts as timed out."""
        timeout_s = min(limits["timeout_s"], deadline - time.monotonic())
        if timeout_s < 0.05:
            return {"passed": False, "timed_out": True, "skipped": True}
        try:
            result = self.sandbox.run(
                test.source, stdin=test.stdin, timeout_s=timeout_s, memory_mb=limits["memory_mb"]
            )
        except SandboxError as exc:
            return {"passed": False, "timed_out": False, "error": str(exc)}
        return {
            "passed": _passed(result, test, limits["float_tolerance"]),
            "timed_out": result.timed_out,
            "exit_code": result.exit_code,
            "truncated": result.truncated,
            "stderr": "" if result.ok else result.stderr[-300:],  # why it failed, kept short for logs
        }

    # ---- reward-hacking audit (docs/hacking.md, "## code") ------------------------------------------
    exploit_patterns: ClassVar[Mapping[str, str]] = {
        "eq-override": r"def\s+__(eq|ne|hash|bool)__\s*\(|__(eq|ne)__\s*=",
        "early-exit": r"\bsys\.exit\s*\(|\bos\._exit\s*\(|\bSystemExit\b|\bos\.kill(pg)?\s*\(",
        "proc-access": r"/proc/",
        "introspection": (
            r"\binspect\b|\bsys\._getframe\b|\.f_(back|globals|locals|code)\b|\bco_consts\b"
            r"|\.__closure__\b|\.cell_contents\b"
        ),
        "ctypes-or-gc": r"\bctypes\b|\bimport\s+gc\b|\bgc\.get_",
        "tracing": r"\bset(trace|profile)\b|\.f_trace\b",
        "builtins-patching": r"\bbuiltins\.\w+\s*=[^=]|__builtins__\s*[\[.]|setattr\(\s*builtins\b",
        "test-framework-patching": r"\b(unittest|TestCase|TestResult)\.\w+(\.\w+)?\s*=[^=]",
        "own-source-read": r"open\(\s*__file__|__main__\.__file__",
    }

    def exploit_probes(self) -> list[Probe]:
        """Exploits of assert tests, the harness, the sandbox and io tests (``rewardkit.envs.code_probes``)."""
        return code_probes()

    def suspicious(self, sample: Mapping[str, Any], score: Score) -> str | None:
        """A passing solution that does not define what the tests call, or that pokes at the harness."""
        completion = sample.get("completion")
        if not isinstance(completion, str | list | tuple):
            return None
        try:
            solution = extract_code(completion_text(completion))
        except (TypeError, ValueError):
            return None
        info = sample.get("info") or {}
        return solution_red_flags(solution, info.get("test_code"), info.get("entry_point"))

    def tasks(self, split: str = "train") -> Sequence[Task]:
        """The bundled Python problems (``rewardkit.data.code_tasks``): ``train`` or ``test``, disjoint.

        Each asks for a ```python block; ``info`` has ``test_code`` or ``io_tests`` and a ``reference``.
        """
        return code_tasks(split)

    def gold_examples(self) -> list[dict[str, Any]]:
        square = "def square(x):\n    return x * x\n"
        fenced = f"Here is my solution.\n\n```python\n# draft\n```\n\nFinal:\n```python\n{square}```\n"
        echo_sum = "import sys\nnums = [float(t) for t in sys.stdin.read().split()]\nprint(sum(nums) / 3)\n"
        return [
            {"completion": square, "info": {"test_code": "assert square(3) == 9\nassert square(-2) == 4"}},
            {
                "completion": [{"role": "assistant", "content": fenced}],
                "info": {"test_code": "assert square(5) == 25"},
            },
            {
                "completion": f"```\n{echo_sum}```",
                "info": {
                    "io_tests": [
                        {"stdin": "1 1 1\n", "stdout": "1.0\n"},
                        {"stdin": "1 0 0", "stdout": "0.333333"},
                    ],
                    "float_tolerance": 1e-5,
                },
            },
        ]


def _assert_test(solution: str, test_code: str, language: str = "python") -> _Test:
    """The tests' program: a fixed harness that gets the solution, the tests and a fresh marker on stdin.

    Exit status 0 alone is gameable: ``import sys; sys.exit(0)`` at the top of a solution skips every
    assert. So the program must also print a marker, new per run, after the tests ran to the end; the
    harness (``rewardkit.verifiers.code.HARNESS_SOURCE``) keeps that marker and the tests out of the
    program file, runs the tests in their own namespace and compares through strict comparisons
    (docs/sandbox.md, "How tests are compared"). Other languages get the solution, the tests and a
    marker print appended, as before.
    """
    marker = f"rewardkit-tests-done-{secrets.token_hex(8)}"
    if language != "python":
        return _Test(source=f"{solution}\n\n{test_code}\n\nprint({marker!r}, flush=True)\n", marker=marker)
    payload = {
        "solution": solution,
        "tests": test_code,
        "marker": marker,
        "unittest": "unittest" in test_code,
    }
    return _Test(source=HARNESS_SOURCE, stdin=json.dumps(payload), marker=marker)


def _io_test(solution: str, index: int, test: Any) -> _Test:
    if not isinstance(test, Mapping) or not isinstance(test.get("stdout"), str):
        raise ValueError(
            f"info['io_tests'][{index}] must be a dict with a string 'stdout', got {test!r:.200}"
        )
    stdin = test.get("stdin", "")
    if not isinstance(stdin, str):
        raise ValueError(f"info['io_tests'][{index}]['stdin'] must be a string, got {type(stdin).__name__}")
    return _Test(source=solution, stdin=stdin, expected=test["stdout"])


def _as_list(io_tests: Any) -> list[Any]:
    if isinstance(io_tests, str | bytes) or not hasattr(io_tests, "__iter__"):
        raise ValueError(
            f"info['io_tests'] must be a list of {{stdin, stdout}} dicts, got {type(io_tests).__name__}"
        )
    tests = list(io_tests)
    if not tests:
        raise ValueError("info['io_tests'] is empty: nothing to score against")
    return tests


def _positive(info: Mapping[str, Any], key: str, default: float) -> float:
    value = info.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"info[{key!r}] must be a positive number, got {value!r}")
    return float(value)


def _passed(result: ExecResult, test: _Test, float_tolerance: float | None) -> bool:
    if not result.ok:
        return False
    if test.marker is not None:
        return result.stdout.rstrip().endswith(test.marker)
    return outputs_match(result.stdout, test.expected, float_tolerance=float_tolerance)


def _summarize(outcomes: list[dict[str, Any]]) -> Score:
    """Reward = fraction passed; a timeout is always visible (metric, and status when nothing passed)."""
    passed = sum(o["passed"] for o in outcomes)
    rate = passed / len(outcomes)
    timed_out = [i for i, o in enumerate(outcomes) if o["timed_out"]]
    errors = [o["error"] for o in outcomes if "error" in o]
    metrics = {
        "pass_rate": rate,
        "all_passed": float(passed == len(outcomes)),
        "syntax_error": 0.0,
        "timeout": float(bool(timed_out)),
    }
    details = {"tests": len(outcomes), "passed": passed, "timed_out_tests": timed_out, "results": outcomes}
    if errors:  # the sandbox failed, not the program: never a silently lower reward
        return Score(0.0, metrics, {"status": "error", "reason": f"sandbox failed: {errors[0]}", **details})
    if timed_out and not passed:
        reason = f"{len(timed_out)} of {len(outcomes)} test(s) timed out"
        return Score(0.0, metrics, {"status": "timeout", "reason": reason, **details})
    return Score.ok(rate, metrics, **details)


def _parallelism(sandbox: str | Sandbox, options: Mapping[str, Any]) -> int:
    """How many runs the sandbox serves at once: the docker pool size, else the CPU count."""
    pool_size = options.get("pool_size") if isinstance(sandbox, str) else getattr(sandbox, "pool_size", None)
    return pool_size if isinstance(pool_size, int) and pool_size > 0 else (os.cpu_count() or 2)
