"""The README's examples work as written: its Python blocks run and its scoring commands succeed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    first_two = re.findall(r"```bash\n(.*?)```", README, flags=re.S)[:2]
    assert [b.strip() for b in first_two] == ["bash scripts/demo.sh", "bash scripts/test.sh"]


def test_readme_score_and_plugin_blocks_run(tmp_path):
    blocks = [b for b in python_blocks() if "sandbox=" not in b]  # the docker block runs in tests/envs
    assert len(blocks) >= 2
    script = tmp_path / "readme.py"
    script.write_text("\n".join(blocks))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1.0" in proc.stdout and "invalid_input" in proc.stdout


def test_readme_score_commands_run(tmp_path):
    for line in re.findall(r"^rewardkit score .*$", README, flags=re.M):
        args = line.split()[1:]
        out = tmp_path / args[args.index("-o") + 1]
        args[args.index("-i") + 1] = str(REPO / args[args.index("-i") + 1])
        args[args.index("-o") + 1] = str(out)
        proc = subprocess.run(
            [sys.executable, "-m", "rewardkit", *args], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        source = Path(args[args.index("-i") + 1]).read_text().splitlines()
        assert len(rows) == len([s for s in source if s.strip()])
        assert "mean reward" in proc.stderr


def test_readme_audit_commands_without_a_model_pass():
    lines = [x for x in re.findall(r"^rewardkit audit \S+.*$", README, flags=re.M) if "--model" not in x]
    assert lines
    for line in lines:
        args = line.split("#")[0].split()[1:]
        proc = subprocess.run(
            [sys.executable, "-m", "rewardkit", *args], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "probes, 0 over their bound." in proc.stdout
