"""``rewardkit score``: one output row per input line, whatever the line holds."""

from __future__ import annotations

import json

from rewardkit.cli import main

GOOD = '{"completion": "<think>a</think><answer>4</answer>", "id": "g"}'


def _score(tmp_path, raw: bytes) -> list[dict]:
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(raw)
    argv = ["score", "format", "-i", str(src), "-o", str(dst), "-q", "--set", "executor=inline"]
    assert main(argv) == 0
    return [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]


def test_blank_lines_get_an_invalid_input_row(tmp_path):
    rows = _score(tmp_path, f"{GOOD}\n\n   \n{GOOD}\n".encode())
    assert [r["line"] for r in rows] == [1, 2, 3, 4]  # the newline that ends the file is not a line
    assert [r["status"] for r in rows] == ["ok", "invalid_input", "invalid_input", "ok"]
    assert rows[1]["info"]["reason"] == "line 2 is blank"
    assert rows[1]["reward"] == 0.0 and rows[3]["id"] == "g"


def test_last_line_without_a_newline_is_scored(tmp_path):
    rows = _score(tmp_path, f"{GOOD}\n{GOOD}".encode())
    assert [(r["line"], r["status"]) for r in rows] == [(1, "ok"), (2, "ok")]


def test_a_utf8_byte_order_mark_is_not_part_of_line_one(tmp_path):
    rows = _score(tmp_path, b"\xef\xbb\xbf" + f"{GOOD}\n{GOOD}\n".encode())
    assert [(r["line"], r["status"], r["reward"]) for r in rows] == [(1, "ok", 1.0), (2, "ok", 1.0)]


def test_malformed_lines_keep_their_rows(tmp_path):
    rows = _score(tmp_path, f'not json\n[1, 2]\n{GOOD}\n{{"answer": "4"}}\n'.encode())
    assert [r["status"] for r in rows] == ["invalid_input"] * 2 + ["ok", "invalid_input"]
    assert "line 1 is not valid JSON" in rows[0]["info"]["reason"]
    assert "line 2 is a JSON list" in rows[1]["info"]["reason"]
    assert "no 'completion' key" in rows[3]["info"]["reason"]
