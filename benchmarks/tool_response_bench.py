"""How long the tool_use environment takes to answer a turn's episodes: one after another vs a thread pool.

A scripted policy (the tests' ``ScriptedGenerator``: a real tokenizer and chat template, no model) makes
every episode call one tool per turn for ``--turns`` turns; the tool waits ``--tool-ms`` ms, as a call
to a sandbox or a search service does. The same rollout runs with ``response_workers`` 1 and N, and
the trajectories are checked to be identical. Printed: wall time of each and the speed-up.

    python benchmarks/tool_response_bench.py [--episodes 64] [--turns 3] [--tool-ms 50] [--workers 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "envs"))


def wait_and_echo(text: str) -> str:
    """Echo the text after a pause (the benchmark's stand-in for a tool that waits on I/O).

    Args:
        text: what to echo.
    """
    time.sleep(DELAY_S)
    return text


DELAY_S = 0.05


def main(argv: list[str] | None = None) -> None:
    global DELAY_S
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--tool-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    DELAY_S = args.tool_ms / 1000

    from test_tool_use import ScriptedGenerator, call, make_tokenizer

    from rewardkit.envs.tool_use import ToolUseEnv
    from rewardkit.generation.base import SamplingParams
    from rewardkit.types import Task

    tokenizer = make_tokenizer()

    def policy(context: str, k: int) -> str:
        done = context.count("<|im_start|>tool")
        return "<answer>done</answer>" if done >= args.turns else call("wait_and_echo", text=f"{k} {done}")

    task = Task(({"role": "user", "content": "Echo."},), "done", {"match": "exact"}, "echo")
    results = {}
    for workers in (1, args.workers):
        env = ToolUseEnv(
            task=None,
            tools=(wait_and_echo,),
            max_turns=args.turns + 1,
            response_workers=workers,
            executor="inline",
        )
        gen = ScriptedGenerator(tokenizer, policy)
        start = time.perf_counter()
        trajectories = env.rollout(
            gen, [task], n=args.episodes, sampling=SamplingParams(max_tokens=64, seed=0)
        )
        results[workers] = (
            time.perf_counter() - start,
            [(t.completion_ids, t.completion_mask) for t in trajectories],
        )
    (t1, a), (tn, b) = results[1], results[args.workers]
    assert a == b, "the thread pool changed the trajectories"
    print(
        f"{args.episodes} episodes x {args.turns} tool turns, tool {args.tool_ms:g} ms, {os.cpu_count()} cores: "
        f"response_workers 1: {t1:.2f} s; {args.workers}: {tn:.2f} s; {t1 / tn:.1f}x; trajectories identical"
    )


if __name__ == "__main__":
    main()
