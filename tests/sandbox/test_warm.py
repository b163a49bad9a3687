"""The warm-runner core both back ends share: framing, the run loop, and pool hygiene (no engine needed)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time

import pytest

from rewardkit.sandbox import ExecResult, RunnerLost, SandboxError, warm
from rewardkit.sandbox.docker import AttachStream

ANSWER = {"exit_code": 0, "stdout": "hi\n", "stderr": "", "timed_out": False, "truncated": False}
ANSWER = {**ANSWER, "wall_s": 0.01, "clean": True}


# ---- framing --------------------------------------------------------------------------------------
def pipe_runner(script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )


def test_pipe_stream_reads_lines_across_chunks_and_answers_in_order():
    script = (
        "import sys, time\nsys.stdout.write('{\"rea'); sys.stdout.flush(); time.sleep(0.1)\n"
        'print(\'dy": true}\\n{"n": 1}\', flush=True)\n'
        "for line in sys.stdin:\n    print(line.strip(), flush=True)\n"
    )
    proc = pipe_runner(script)
    stream = warm.PipeStream(proc)
    try:
        deadline = time.monotonic() + 10
        assert stream.receive(deadline) == {"ready": True}
        assert stream.receive(deadline) == {"n": 1}
        stream.send({"echo": [1, "é"]})
        assert stream.receive(deadline) == {"echo": [1, "é"]}
    finally:
        stream.close()
        proc.wait(timeout=10)
    assert proc.returncode == 0  # closing our end ended the runner


def test_pipe_stream_reports_hung_ended_and_garbage_runners():
    proc = pipe_runner("import time\ntime.sleep(30)")
    stream = warm.PipeStream(proc)
    started = time.monotonic()
    with pytest.raises(RunnerLost) as hung:
        stream.receive(time.monotonic() + 0.3)
    assert hung.value.hung and time.monotonic() - started < 3
    proc.kill()
    proc.wait()
    with pytest.raises(RunnerLost) as ended:
        stream.receive(time.monotonic() + 5)
    assert not ended.value.hung and "ended" in str(ended.value)
    stream.close()
    for garbage in ("not json", "[1, 2]"):
        proc = pipe_runner(f"print({garbage!r}, flush=True)")
        stream = warm.PipeStream(proc)
        with pytest.raises(RunnerLost, match="garbage") as bad:
            stream.receive(time.monotonic() + 10)
        assert not bad.value.hung
        stream.close()
        proc.wait()


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload


def test_attach_stream_demultiplexes_docker_frames():
    ours, theirs = socket.socketpair()
    stream = AttachStream(ours)
    data = frame(2, b"a warning\n") + frame(1, b'{"ready"') + frame(1, b"") + frame(1, b': true}\n{"n": 2}\n')
    for i in range(0, len(data), 5):  # headers and payloads split anywhere
        theirs.sendall(data[i : i + 5])
    deadline = time.monotonic() + 10
    assert stream.receive(deadline) == {"ready": True}
    assert stream.receive(deadline) == {"n": 2}
    stream.send({"job": 1})
    assert json.loads(theirs.recv(100)) == {"job": 1}
    with pytest.raises(RunnerLost) as hung:
        stream.receive(time.monotonic() + 0.2)
    assert hung.value.hung
    theirs.sendall(frame(2, b"runner crashed"))
    theirs.close()
    with pytest.raises(RunnerLost, match="container ended: a warning\nrunner crashed") as ended:
        stream.receive(time.monotonic() + 10)
    assert not ended.value.hung
    stream.close()
    stream.close()  # idempotent


# ---- the run loop ---------------------------------------------------------------------------------
class FakeRunner(warm.WarmRunner):
    """A runner whose answers are scripted: a dict is answered, an exception raised."""

    def __init__(self, *outcomes: object) -> None:
        super().__init__()
        self.outcomes = list(outcomes)
        self.destroyed = 0
        self.hung_up = 0

    def execute(self, job, deadline):
        self.jobs += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def hangup(self):
        self.hung_up += 1

    def destroy(self):
        self.destroyed += 1


class Pool:
    """acquire/release over scripted runners, recording each release."""

    def __init__(self, *runners: FakeRunner) -> None:
        self.runners = list(runners)
        self.released: list[tuple[FakeRunner, bool]] = []

    def acquire(self):
        return self.runners.pop(0)

    def release(self, runner, keep):
        self.released.append((runner, keep))

    def run(self, max_jobs: int = 100):
        job = {"code": "print('hi')"}
        return warm.run_with_retry(job, 5.0, max_jobs, self.acquire, self.release, "test runner")


def test_an_answer_becomes_the_result_and_the_runner_is_kept():
    runner = FakeRunner(ANSWER)
    pool = Pool(runner)
    assert pool.run() == ExecResult(0, "hi\n", "", timed_out=False, wall_s=0.01, truncated=False)
    assert pool.released == [(runner, True)]


def test_a_lost_runner_gets_one_fresh_retry():
    first, second = FakeRunner(RunnerLost("died")), FakeRunner(ANSWER)
    pool = Pool(first, second)
    assert pool.run().stdout == "hi\n"
    assert pool.released == [(first, False), (second, True)]


def test_a_runner_lost_twice_is_the_sandboxs_failure():
    first, second = FakeRunner(RunnerLost("died")), FakeRunner(RunnerLost("died again"))
    pool = Pool(first, second)
    with pytest.raises(RunnerLost, match="test runner lost twice.*died again") as lost:
        pool.run()
    assert isinstance(lost.value, SandboxError) and not lost.value.hung
    assert pool.released == [(first, False), (second, False)]


def test_a_hung_runner_is_a_timeout_without_retry():
    runner = FakeRunner(RunnerLost(warm.MISSED_DEADLINE, hung=True))
    pool = Pool(runner, FakeRunner(ANSWER))
    result = pool.run()
    assert result.timed_out and result.exit_code is None and not result.ok
    assert pool.released == [(runner, False)] and len(pool.runners) == 1


@pytest.mark.parametrize(
    "answer, max_jobs",
    [
        ({**ANSWER, "clean": False}, 100),
        ({k: v for k, v in ANSWER.items() if k != "clean"}, 100),
        (ANSWER, 1),
    ],
    ids=["unclean", "no-clean-flag", "max-jobs-reached"],
)
def test_a_runner_that_is_not_clean_or_spent_is_not_reused(answer, max_jobs):
    runner = FakeRunner(answer)
    pool = Pool(runner)
    assert pool.run(max_jobs).stdout == "hi\n"
    assert pool.released == [(runner, False)]


def test_an_error_answer_raises_and_the_runner_is_not_reused():
    runner = FakeRunner({"error": "KeyError: 'code'", "clean": True})
    pool = Pool(runner)
    with pytest.raises(SandboxError, match="sandbox runner failed: KeyError"):
        pool.run()
    assert pool.released == [(runner, False)]


def test_jobs_carry_the_config_and_back_end_fields():
    from rewardkit.sandbox.local import LocalConfig

    job = warm.make_job(LocalConfig(), "print(1)", "in", 2.0, 64, fsize_mb=16)
    assert job == {
        "code": "print(1)",
        "stdin": "in",
        "timeout_s": 2.0,
        "memory_mb": 64,
        "max_output_bytes": LocalConfig().max_output_bytes,
        "argv": ["python3", "{file}"],
        "filename": "main.py",
        "fsize_mb": 16,
    }
    argv = warm.runner_argv("/usr/bin/python3")
    assert argv[:5] == ["/usr/bin/python3", "-I", "-u", "-c", warm.runner.BOOTSTRAP] and argv[-1] == "serve"
    assert "def serve(" in argv[5]


# ---- pool hygiene ---------------------------------------------------------------------------------
def test_live_runners_register_take_and_destroy_all_once():
    pool = warm.LiveRunners()
    runners = [FakeRunner() for _ in range(4)]
    assert pool.put(runners[0]) and pool.put(runners[1], key=None) and pool.put(runners[2], key=7)
    assert pool.take(None) is runners[1] and pool.take(None) is None
    assert pool.put(runners[1], key=None)
    assert set(pool.live()) == set(runners[:3])
    pool.destroy_all()
    assert [(r.hung_up, r.destroyed) for r in runners[:3]] == [(1, 1)] * 3
    assert pool.closed and pool.live() == []
    assert pool.put(runners[3]) is False and runners[3].destroyed == 1  # closed: not registered, gone
    pool.destroy_all()  # idempotent
    assert [r.destroyed for r in runners] == [1, 1, 1, 1]


def test_a_forked_child_closing_leaves_the_parents_runners_alone(tmp_path):
    class Marking(FakeRunner):
        def destroy(self):
            (tmp_path / f"destroyed-{os.getpid()}").write_text("x")

    pool = warm.LiveRunners()
    pool.put(Marking())
    pid = os.fork()
    if pid == 0:
        try:
            pool.destroy_all()
            os._exit(0 if pool.closed and pool.forked else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert list(tmp_path.iterdir()) == [] and not pool.closed and len(pool.live()) == 1
    pool.destroy_all()
    assert [p.name for p in tmp_path.iterdir()] == [f"destroyed-{os.getpid()}"]
