"""Sandbox cost: per-run latency of a trivial program, and a batch of assert-style tests end to end.

    python benchmarks/sandbox_bench.py            # print the figures
    python benchmarks/sandbox_bench.py --write    # and record them in BENCHMARKS.md (## Sandbox)

Latency: median wall time of one ``run`` of ``pass`` through the local sandbox, the docker warm pool,
and ``docker run --rm`` (the usual way, as the peer). Batch: about 160 assert-style programs (a mix
of correct and wrong solutions) scored through the code environment on each back end with 2
workers, beside the same programs run as plain unsandboxed subprocesses by 2 threads. One run each.
Targets: docker warm median <= 30 ms; the docker batch no slower than unsandboxed subprocesses.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_report import write_section  # noqa: E402 - benchmarks/ is on sys.path when run as a script

from rewardkit import load_env
from rewardkit.sandbox import get_sandbox
from rewardkit.sandbox.docker import DEFAULT_IMAGE

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
UNSANDBOXED = "unsandboxed subprocesses"
DOCKER_BATCH = "code env, docker warm pool"

# (solution, test_code): correct and wrong variants of small MBPP-style functions.
PROBLEMS = [
    ("def square(x):\n    return x * x\n", "assert square(3) == 9\nassert square(-4) == 16\n"),
    ("def square(x):\n    return x + x\n", "assert square(3) == 9\n"),
    (
        "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        "assert fib(10) == 55\nassert fib(30) == 832040\n",
    ),
    (
        "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))\n",
        "assert is_prime(97)\nassert not is_prime(91)\nassert [p for p in range(20) if is_prime(p)] == [2, 3, 5, 7, 11, 13, 17, 19]\n",
    ),
    ("def rev(s):\n    return s[::-1]\n", "assert rev('abc') == 'cba'\nassert rev('') == ''\n"),
    ("def rev(s):\n    return s\n", "assert rev('abc') == 'cba'\n"),
    (
        "import re\ndef words(s):\n    return re.findall(r'[a-z]+', s.lower())\n",
        "assert words('Hello, World!') == ['hello', 'world']\n",
    ),
    ("def total(xs):\n    return sum(sorted(xs)[-3:])\n", "assert total([5, 1, 9, 3, 7]) == 21\n"),
]


def batch_samples(n: int = 160) -> list[dict]:
    """n samples cycling through PROBLEMS; a comment makes each distinct so no verdict cache hides work."""
    samples = []
    for i in range(n):
        solution, tests = PROBLEMS[i % len(PROBLEMS)]
        samples.append(
            {"completion": f"```python\n# sample {i}\n{solution}```", "info": {"test_code": tests}}
        )
    return samples


def median_latency(run, n: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(n):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def latencies(runs: int) -> dict[str, float]:
    figures = {}
    with get_sandbox("local") as local:
        figures["local"] = median_latency(lambda: local.run("pass"), runs)
    with get_sandbox("local", warm=False) as local_cold:
        figures["local_cold"] = median_latency(lambda: local_cold.run("pass"), runs)
    with get_sandbox("docker", pool_size=WORKERS) as docker_sandbox:
        figures["docker_warm"] = median_latency(lambda: docker_sandbox.run("pass"), runs)
    cmd = ["docker", "run", "--rm", "--network", "none", DEFAULT_IMAGE, "python3", "-c", "pass"]
    figures["docker_run_rm"] = median_latency(lambda: subprocess.run(cmd, check=True), max(5, runs // 5))
    return figures


def unsandboxed(samples: list[dict]) -> float:
    """The same programs (solution + tests) as plain subprocesses, 2 at a time: no isolation at all."""
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, sample in enumerate(samples):
            solution = re.search(r"```python\n(.*?)```", sample["completion"], re.S).group(1)
            path = Path(tmp, f"p{i}.py")
            path.write_text(f"{solution}\n\n{sample['info']['test_code']}\n")
            paths.append(path)
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            codes = list(
                pool.map(
                    lambda p: subprocess.run([python, str(p)], capture_output=True, timeout=10).returncode,
                    paths,
                )
            )
        elapsed = time.perf_counter() - started
    assert sum(c == 0 for c in codes) == expected_passes(samples), "unsandboxed run disagrees with the tests"
    return elapsed


def expected_passes(samples: list[dict]) -> int:
    wrong = {1, 5}  # indexes of the wrong solutions in PROBLEMS
    return sum(1 for i in range(len(samples)) if i % len(PROBLEMS) not in wrong)


def through_env(kind: str, samples: list[dict], **sandbox_options) -> float:
    options = {"pool_size": WORKERS, **sandbox_options} if kind == "docker" else {}
    env = load_env("code", sandbox=kind, sandbox_options=options, workers=WORKERS, cache_size=0)
    env.score_batch(samples[:WORKERS])  # start the sandbox and the threads outside the timing
    started = time.perf_counter()
    scores = env.score_batch(samples)
    elapsed = time.perf_counter() - started
    env.close()
    passed = sum(s.reward == 1.0 for s in scores)
    assert passed == expected_passes(samples), f"{kind}: {passed} passed, expected {expected_passes(samples)}"
    return elapsed


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    docker_version = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
    ).stdout.strip()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Docker engine {docker_version}; "
        f"load average {load} when the figures were taken (the machine is shared)"
    )


def report(lat: dict[str, float], batch: dict[str, float], n: int) -> str:
    ms = {k: v * 1000 for k, v in lat.items()}
    warm_ok = "yes" if ms["docker_warm"] <= 30 else "NO"
    batch_ok = "yes" if batch[DOCKER_BATCH] <= batch[UNSANDBOXED] else "NO"
    return "\n".join(
        [
            "## Sandbox",
            "",
            f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
            f"- Machine: {machine()}",
            "- Command: `python benchmarks/sandbox_bench.py --write` (one run)",
            "",
            "Median latency of one run of a trivial program (`pass`):",
            "",
            "| back end | median ms |",
            "|---|---|",
            f"| local, warm slots (bwrap + rlimits + slot uid) | {ms['local']:.1f} |",
            f"| local, a fresh bwrap sandbox per run (`warm=False`) | {ms['local_cold']:.1f} |",
            f"| docker warm pool | {ms['docker_warm']:.1f} |",
            f"| `docker run --rm` (peer) | {ms['docker_run_rm']:.1f} |",
            "",
            f"Wall time of {n} assert-style test programs, {WORKERS} workers:",
            "",
            "| path | seconds | programs/s |",
            "|---|---|---|",
            *(f"| {name} | {secs:.2f} | {n / secs:.1f} |" for name, secs in batch.items()),
            "",
            f"Targets: docker warm median <= 30 ms: {warm_ok}. "
            f"Docker batch no slower than unsandboxed subprocesses: {batch_ok}.",
            "",
            "Why the sandboxed batch can beat bare subprocesses: each container's runner forks Python",
            "jobs from a warm, job-free interpreter, so no run pays interpreter start-up, which",
            "dominates small test programs; the bare baseline starts `python3` for every program.",
            "The local back end's warm slots run the same runner inside one bubblewrap sandbox per slot.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help="record the figures in BENCHMARKS.md")
    parser.add_argument("--runs", type=int, default=50, help="runs per latency median")
    parser.add_argument("--programs", type=int, default=160, help="programs in the batch")
    args = parser.parse_args()
    samples = batch_samples(args.programs)
    lat = latencies(args.runs)
    batch = {
        UNSANDBOXED: unsandboxed(samples),
        "code env, local sandbox (warm slots)": through_env("local", samples),
        DOCKER_BATCH: through_env("docker", samples),
        "code env, docker, exec per run (fork_server=False)": through_env(
            "docker", samples, fork_server=False
        ),
    }
    text = report(lat, batch, args.programs)
    print(text)
    if args.write:
        write_section(ROOT / "BENCHMARKS.md", "## Sandbox", text)
        print("wrote the ## Sandbox section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
