"""Warm slots for the local back end: one long-lived bubblewrap sandbox per slot uid.

Each slot runs the same job runner the docker containers run (rewardkit/sandbox/runner.py) as PID 1
of its own pid namespace, so a run costs a fork from a warm interpreter instead of a new namespace
set-up plus interpreter start-up. Between jobs the runner kills every other process of the slot and
wipes its tmpfs, exactly as in a container; a slot that misses a deadline, dies or reports leftovers
is destroyed and the next run starts a fresh one.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from rewardkit.sandbox import runner

START_TIMEOUT_S = 30.0


class SlotLost(Exception):
    """The slot stopped answering properly (died, garbage, or deadline passed)."""

    def __init__(self, reason: str, hung: bool = False) -> None:
        super().__init__(reason)
        self.hung = hung


class WarmSlot:
    """One bubblewrap sandbox running the job runner; talks JSON lines over its stdin/stdout."""

    def __init__(self, wrapper: list[str], python: str) -> None:
        source = Path(runner.__file__).read_text()
        argv = [*wrapper, python, "-I", "-u", "-c", runner.BOOTSTRAP, source, "serve"]
        self.jobs = 0
        self._buf = bytearray()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(runner.SANDBOX_ENV, HOME="/tmp", TMPDIR="/tmp"),
        )
        try:
            ready = self._read_line(time.monotonic() + START_TIMEOUT_S)
        except SlotLost:
            self.destroy()
            raise
        if not ready.get("ready"):
            self.destroy()
            raise SlotLost(f"runner did not report ready: {ready!r}")

    def execute(self, job: dict[str, Any], deadline: float) -> dict[str, Any]:
        self.jobs += 1
        try:
            self.proc.stdin.write(json.dumps(job).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise SlotLost(f"cannot send job: {exc}") from exc
        return self._read_line(deadline)

    def _read_line(self, deadline: float) -> dict[str, Any]:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise SlotLost("runner missed its deadline", hung=True)
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise SlotLost(f"sandbox slot ended (status {self.proc.poll()})")
            self._buf += chunk
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        try:
            return json.loads(line)
        except ValueError as exc:
            raise SlotLost(f"runner sent garbage: {line[:200]!r}") from exc

    def destroy(self) -> None:
        """Kill the slot's session; bubblewrap's pid namespace takes every process in it down."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class WarmSlots:
    """The live slots of one LocalSandbox, by uid; shared with its exit-time finalizer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_uid: dict[int | None, WarmSlot] = {}
        self.pid = os.getpid()

    def take(self, uid: int | None) -> WarmSlot | None:
        with self.lock:
            return self.by_uid.pop(uid, None)

    def put(self, uid: int | None, slot: WarmSlot) -> None:
        with self.lock:
            self.by_uid[uid] = slot

    def destroy_all(self) -> None:
        if os.getpid() != self.pid:  # a forked child exiting must not kill its parent's slots
            return
        with self.lock:
            slots, self.by_uid = list(self.by_uid.values()), {}
        for slot in slots:
            slot.destroy()
