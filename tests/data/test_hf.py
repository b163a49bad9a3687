"""Hugging Face loaders on small local files in the GSM8K, MATH and plain formats (no hub downloads)."""

from __future__ import annotations

import json

import pytest

from rewardkit.data.hf import (
    HFMathConfig,
    boxed_answer,
    detect_format,
    extract_gold,
    gsm8k_answer,
    load_math_tasks,
)
from rewardkit.verifiers.math import verify_math

GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
    {
        "question": "A farm sells 1,200 eggs a day. How many in 2 days?",
        "answer": "1200 * 2 = 2400\n#### 2,400",
    },
    {"question": "Broken row", "answer": "no final marker"},
]
MATH_ROWS = [
    {
        "problem": "What is $\\frac{1}{2} + \\frac{1}{3}$?",
        "solution": "We get $\\boxed{\\frac{5}{6}}$.",
        "level": "1",
    },
    {"problem": "Solve $x^2 = 4$.", "solution": "So $x = \\pm 2$, i.e. $\\boxed{-2, 2}$.", "level": "2"},
    {
        "problem": "Nested",
        "solution": "First \\boxed{1}, finally \\boxed{\\sqrt{\\frac{1}{4}}}",
        "level": "3",
    },
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(autouse=True)
def _need_datasets():
    pytest.importorskip("datasets", reason="datasets is not installed")


def test_gsm8k_jsonl(tmp_path):
    tasks = load_math_tasks(HFMathConfig(path=_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)))
    assert [t.answer for t in tasks] == ["7", "2400"]  # the row without #### is skipped
    assert "Tom has 3 apples" in tasks[0].prompt and "<answer>" in tasks[0].prompt
    assert tasks[1].info["row"] == 1
    assert verify_math("<answer>2,400</answer>", tasks[1].answer).correct


def test_math_parquet_with_column_mapping(tmp_path):
    import pandas as pd

    path = tmp_path / "math.parquet"
    pd.DataFrame(MATH_ROWS).to_parquet(path)
    config = HFMathConfig(
        path=str(path), question_key="problem", answer_key="solution", answer_format="boxed"
    )
    tasks = load_math_tasks(config)
    assert [t.answer for t in tasks] == ["\\frac{5}{6}", "-2, 2", "\\sqrt{\\frac{1}{4}}"]
    assert verify_math("\\boxed{0.5}", tasks[2].answer).correct
    assert verify_math("<answer>\\pm 2</answer>", tasks[1].answer).correct


def test_auto_format_is_decided_per_dataset_and_limit(tmp_path):
    boxed = [{"prompt": "q1", "target": "so \\boxed{5}"}, {"prompt": "q2", "target": "\\boxed{6}"}]
    plain = [
        {"prompt": "q1", "target": "5"},
        {"prompt": "q2", "target": " 6 "},
        {"prompt": "q3", "target": ""},
    ]
    assert [t.answer for t in load_math_tasks(HFMathConfig(path=_jsonl(tmp_path / "b.jsonl", boxed)))] == [
        "5",
        "6",
    ]
    assert [t.answer for t in load_math_tasks(HFMathConfig(path=_jsonl(tmp_path / "p.jsonl", plain)))] == [
        "5",
        "6",
    ]
    assert len(load_math_tasks(HFMathConfig(path=str(tmp_path / "b.jsonl"), limit=1))) == 1
    assert detect_format(["a", "b #### 3"]) == "gsm8k"
    assert detect_format(["a", None]) == "plain"


def test_csv_and_load_dataset_directory(tmp_path):
    csv = tmp_path / "plain.csv"
    csv.write_text("question,final_answer\nwhat is 2+2,4\n")
    assert [t.answer for t in load_math_tasks(HFMathConfig(path=str(csv), answer_format="plain"))] == ["4"]
    folder = tmp_path / "ds"
    folder.mkdir()
    _jsonl(folder / "test.jsonl", GSM8K_ROWS[:1])  # datasets.load_dataset(folder) maps test.jsonl to "test"
    _jsonl(folder / "train.jsonl", GSM8K_ROWS[1:2])
    assert [t.answer for t in load_math_tasks(HFMathConfig(path=str(folder)), "test")] == ["7"]
    mapped = HFMathConfig(path=str(folder), split_map={"train": "test"})
    assert [t.answer for t in load_math_tasks(mapped, "train")] == ["7"]


def test_clear_errors(tmp_path):
    path = _jsonl(tmp_path / "x.jsonl", GSM8K_ROWS)
    with pytest.raises(ValueError, match="column 'nope' not in the dataset"):
        load_math_tasks(HFMathConfig(path=path, question_key="nope"))
    with pytest.raises(ValueError, match="only the 'train' split"):
        load_math_tasks(HFMathConfig(path=path), "test")
    odd = _jsonl(tmp_path / "odd.jsonl", [{"foo": 1, "bar": 2}])
    with pytest.raises(ValueError, match="no question column"):
        load_math_tasks(HFMathConfig(path=odd))
    for bad in ({"path": ""}, {"path": "a", "answer_format": "xml"}, {"path": "a", "limit": -1}):
        with pytest.raises(ValueError):
            HFMathConfig(**bad)


def test_answer_extractors():
    assert gsm8k_answer("work\n#### 1,234") == "1234"
    assert gsm8k_answer("no marker") is None
    assert boxed_answer("\\boxed{1} then \\boxed{\\frac{a}{b}}") == "\\frac{a}{b}"
    assert boxed_answer("nothing") is None
    assert extract_gold(None) is None
    assert extract_gold(5) == "5"
