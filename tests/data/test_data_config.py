"""Tasks from the user's own data (``data:``) or function (``tasks: module:function``), for train and eval."""

from __future__ import annotations

import json
import sys

import pytest

from rewardkit.config import ConfigError, build
from rewardkit.data.tasks import DataConfig, call_task_function, load_tasks, tasks_from
from rewardkit.types import Task


def _jsonl(path, rows, *, bom=False, blank_after=None):
    lines = [json.dumps(r) for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_default_columns_are_the_math_loaders(tmp_path):
    path = _jsonl(
        tmp_path / "p.jsonl", [{"question": "1+1?", "answer": 2}, {"question": "x?", "answer": "x+1"}]
    )
    tasks = load_tasks(DataConfig(path=path))
    assert [(t.prompt, t.answer) for t in tasks] == [
        ("1+1?", 2),
        ("x?", "x+1"),
    ]  # mixed types kept as written
    assert tasks[0].id == "p.jsonl-1" and tasks[1].id == "p.jsonl-2"


def test_named_fields_info_and_ids(tmp_path):
    rows = [
        {"q": "hi", "gold": "HI", "level": 3, "key": "a"},
        {"q": "yo", "gold": "YO", "level": 1, "key": "b"},
    ]
    path = _jsonl(tmp_path / "p.jsonl", rows, bom=True, blank_after=1)  # a BOM and a blank line are fine
    cfg = build(
        DataConfig,
        {
            "path": path,
            "prompt_field": "q",
            "answer_field": "gold",
            "info_fields": ["level"],
            "id_field": "key",
        },
        where="data",
    )
    tasks = load_tasks(cfg)
    assert [(t.prompt, t.answer, dict(t.info), t.id) for t in tasks] == [
        ("hi", "HI", {"level": 3}, "a"),
        ("yo", "YO", {"level": 1}, "b"),
    ]


def test_prompts_without_answers_are_reward_only_tasks(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "shout"}])
    assert load_tasks(DataConfig(path=path))[0].answer is None


def test_chat_prompts_with_a_system_message_and_message_lists_kept(tmp_path):
    messages = [{"role": "user", "content": "already chat"}]
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "hello"}, {"prompt": messages}])
    tasks = load_tasks(DataConfig(path=path, chat=True, system_prompt="Be loud."))
    assert tasks[0].prompt == [
        {"role": "system", "content": "Be loud."},
        {"role": "user", "content": "hello"},
    ]
    assert tasks[1].prompt == messages
    assert load_tasks(DataConfig(path=path))[0].prompt == "hello"  # chat: false keeps plain text


def test_worked_solutions_are_cut_by_answer_format(tmp_path):
    path = _jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "work... #### 1,200"}])
    assert load_tasks(DataConfig(path=path, answer_format="gsm8k"))[0].answer == "1200"
    bad = _jsonl(tmp_path / "b.jsonl", [{"question": "q", "answer": "no marker"}])
    with pytest.raises(ConfigError, match=r"b.jsonl line 1: no gsm8k answer in 'answer'"):
        load_tasks(DataConfig(path=bad, answer_format="gsm8k"))


def test_a_row_without_the_prompt_field_is_named_by_line(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"promt": "b"}])
    with pytest.raises(ConfigError, match=r"p.jsonl line 2: missing field 'prompt' \(it has: promt\)"):
        load_tasks(DataConfig(path=path))


def test_bad_config_fails_before_reading(tmp_path):
    with pytest.raises(ConfigError, match="no such file 'missing.jsonl'"):
        DataConfig(path="missing.jsonl")
    with pytest.raises(ConfigError, match="system_prompt needs chat: true"):
        DataConfig(path=_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}]), system_prompt="x")
    path = _jsonl(tmp_path / "q.jsonl", [{"text": "a"}])
    with pytest.raises(
        ConfigError,
        match=r"q.jsonl: prompt_field: column 'txt' not in the dataset .* \(did you mean 'text'\?\)",
    ):
        load_tasks(DataConfig(path=path, prompt_field="txt"))
    with pytest.raises(
        ConfigError,
        match=r"has no prompt column \(none of question, problem, prompt, query, input\); set prompt_field",
    ):
        load_tasks(DataConfig(path=path))
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{not json\n')
    with pytest.raises(ConfigError, match="bad.jsonl line 2 is not valid JSON"):
        load_tasks(DataConfig(path=str(tmp_path / "bad.jsonl")))


def test_parquet_goes_through_datasets(tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets is not installed")
    path = str(tmp_path / "p.parquet")
    datasets.Dataset.from_list([{"problem": "2+2", "solution": "\\boxed{4}"}]).to_parquet(path)
    tasks = load_tasks(DataConfig(path=path, answer_format="boxed"))
    assert [(t.prompt, t.answer) for t in tasks] == [("2+2", "4")]


def test_task_functions_return_tasks_or_dicts(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(
        "from rewardkit import Task\n"
        "def make(n=2):\n"
        "    return [Task(prompt='a', answer=1)] + [{'prompt': f'p{i}', 'answer': i} for i in range(n)]\n"
        "def broken():\n"
        "    return [{'question': 'no prompt key'}]\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    tasks = call_task_function("my_tasks:make", {"n": 1})
    assert [(t.prompt, t.answer) for t in tasks] == [("a", 1), ("p0", 0)]
    assert all(isinstance(t, Task) for t in tasks)
    with pytest.raises(ConfigError, match="item 0 is dict .*expected a rewardkit.Task or a dict"):
        call_task_function("my_tasks:broken")
    with pytest.raises(ConfigError, match="has no attribute 'mak'.*did you mean 'make'"):
        call_task_function("my_tasks:mak")


def test_an_environment_without_tasks_gets_a_hint():
    def no_dataset():
        raise NotImplementedError("environment 'shouty' has no built-in dataset")

    with pytest.raises(ConfigError, match="has no built-in dataset; give your own with data:"):
        tasks_from(None, None, None, no_dataset, "give your own with data:")
    with pytest.raises(ConfigError, match="one of data and tasks"):
        tasks_from(DataConfig(path=__file__), "m:f", None, no_dataset, "")


def test_suites_take_data_beside_or_under_tasks(tmp_path):
    from rewardkit.eval.suite import parse_suite

    path = _jsonl(tmp_path / "held_out.jsonl", [{"text": "hi", "gold": "HI"}])
    data = {"path": path, "prompt_field": "text", "answer_field": "gold"}
    suite = parse_suite(
        {
            "name": "mine",
            "environments": [{"env": "format", "data": data}, {"env": "math", "tasks": {"data": path}}],
        }
    )
    beside, under = suite.environments
    assert beside.tasks.data == DataConfig(**data) and under.tasks.data == DataConfig(path=path)
    assert [(t.prompt, t.answer) for t in beside.tasks.load(env=None)] == [("hi", "HI")]
    with pytest.raises(ConfigError, match="unknown key 'prompt'"):
        parse_suite({"name": "x", "environments": [{"env": "format", "data": {"path": path, "prompt": "q"}}]})


def test_a_train_config_takes_one_task_source(tmp_path):
    from rewardkit.rl.config import TrainConfig

    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}])
    cfg = TrainConfig.from_dict({"model": "tiny", "data": path, "tasks_kwargs": {"n": 1}})
    assert cfg.data == DataConfig(path=path) and cfg.to_dict()["data"]["path"] == path
    with pytest.raises(ConfigError, match="data and tasks both given"):
        TrainConfig.from_dict({"model": "tiny", "data": path, "tasks": "m:f"})
    with pytest.raises(ConfigError, match=r"'data.prompt_feild' \(did you mean 'data.prompt_field'"):
        TrainConfig.from_dict({"model": "tiny", "data": {"path": path, "prompt_feild": "q"}})
