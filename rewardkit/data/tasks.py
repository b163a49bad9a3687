"""Your own tasks, for ``train`` and ``eval`` alike: a data file or dataset, or a ``module:function``.

A ``DataConfig`` (the ``data:`` key of a train config or of a suite's environment) reads prompts and
answers from a JSONL/JSON file (read here, line by line, so mixed-type answers stay as written and a bad
line is named), a parquet/CSV file, or anything ``datasets.load_dataset`` accepts (a hub id or folder)::

    data:
      path: prompts.jsonl         # or openai/gsm8k with name: main, split: train
      prompt_field: question      # default: the first of question, problem, prompt, query, input
      answer_field: answer        # default: the first of answer, solution, ...; none present: no answer
      info_fields: [difficulty]   # columns copied into Task.info
      system_prompt: Be brief.    # with chat: true, the system message
      chat: true                  # prompts as [system?, user] messages (the tokenizer's chat template)

Column defaults are the math loaders' (``rewardkit.data.hf``). A prompt that is already a list of
``{"role", "content"}`` messages is kept as messages. ``tasks: module:function`` instead names a
function returning ``Task`` objects or dicts of Task's fields (``prompt``, ``answer``, ``info``, ``id``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rewardkit.config import ConfigError
from rewardkit.data.hf import ANSWER_COLUMNS, LOCAL_BUILDERS, QUESTION_COLUMNS, extract_gold, pick_column
from rewardkit.imports import import_object
from rewardkit.types import Task

__all__ = ["DataConfig", "call_task_function", "load_tasks", "tasks_from"]

_JSON_FILES = (".jsonl", ".json")
_TASK_KEYS = ("prompt", "answer", "info", "id")


@dataclass(frozen=True)
class DataConfig:
    """Where tasks come from and which columns hold what (see the module doc)."""

    path: str
    """A local .jsonl/.json/.parquet/.csv file, or a dataset id or folder for ``datasets.load_dataset``."""
    name: str | None = None
    """The dataset's configuration name (e.g. ``main`` for ``openai/gsm8k``); not for local files."""
    split: str = "train"
    """The dataset split to read (``datasets``); a local file is one split, read whole."""
    prompt_field: str | None = None
    """Column with the prompt: a string, or a list of chat messages. None: the first of question,
    problem, prompt, query, input that the data has."""
    answer_field: str | None = None
    """Column with the gold answer. None: the first of answer, solution, final_answer, target, output that
    the data has, or no answer at all (reward-only environments) when it has none of them."""
    answer_format: Literal["plain", "auto", "gsm8k", "boxed"] = "plain"
    """How to read the answer column: ``plain`` as written (any JSON value), or cut out of a worked
    solution: ``gsm8k`` (after ``####``), ``boxed`` (the last ``\\boxed{}``), ``auto`` (either, by content)."""
    info_fields: tuple[str, ...] = ()
    """Columns copied into each task's ``info`` (for the environment's reward function)."""
    id_field: str | None = None
    """Column with a task id; None: ``FILE-LINE`` (``FILE-ROW`` for datasets)."""
    system_prompt: str | None = None
    """System message put before each prompt; needs ``chat: true``."""
    chat: bool = False
    """Make string prompts chat messages (``system_prompt``, then the prompt as the user's message), sent
    through the tokenizer's chat template; False sends them as plain text (base models)."""
    limit: int | None = None
    """Read only the first N rows (None: all)."""

    def __post_init__(self) -> None:
        where = "data"
        if not self.path:
            raise ConfigError(f"{where}: path is required (a .jsonl file, or a dataset id)")
        if self.system_prompt is not None and not self.chat:
            raise ConfigError(f"{where}: system_prompt needs chat: true (a system message is a chat message)")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"{where}: limit: got {self.limit}, expected an int >= 0 or null")
        if _local(self.path) is None and _looks_like_file(self.path):
            raise ConfigError(f"{where}: path: no such file {self.path!r} (cwd: {os.getcwd()})")


def load_tasks(data: DataConfig) -> list[Task]:
    """The tasks ``data`` describes; ``ConfigError`` naming the file and row for a row that lacks a column."""
    rows = _rows(data)
    source = os.path.basename(data.path.rstrip("/")) or data.path
    first = next(iter(rows), None)
    if first is None:
        raise ConfigError(f"data: {data.path} holds no rows")
    columns = list(first[1])
    try:
        prompt_field = pick_column(columns, data.prompt_field, QUESTION_COLUMNS, "prompt_field", "prompt")
        answer_field = pick_column(
            columns, data.answer_field, ANSWER_COLUMNS, "answer_field", "answer", needed=False
        )
    except ConfigError as exc:
        raise ConfigError(f"data: {data.path}: {exc}") from None
    tasks = []
    for where, row in rows:
        if data.limit is not None and len(tasks) >= data.limit:
            break
        tasks.append(_task(data, row, where, source, prompt_field, answer_field))
    return tasks


def call_task_function(spec: str, kwargs: Mapping[str, Any] | None = None) -> list[Task]:
    """``module:function(**kwargs)`` as a list of Tasks (dicts of Task's fields are converted)."""
    produced = _task_function(spec)(**dict(kwargs or {}))
    tasks = []
    for i, item in enumerate(produced):
        if isinstance(item, Task):
            tasks.append(item)
        elif isinstance(item, Mapping) and "prompt" in item and set(item) <= set(_TASK_KEYS):
            tasks.append(Task(**item))
        else:
            raise ConfigError(
                f"tasks: {spec} item {i} is {type(item).__name__} {str(item)[:80]!r}; expected a "
                f"rewardkit.Task or a dict with keys from {', '.join(_TASK_KEYS)} (prompt required)"
            )
    return tasks


def _task_function(spec: str) -> Callable[..., Iterable[Any]]:
    if spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(f"tasks: expected package.module:function, got {spec!r}")
    try:
        function = import_object(spec, what="tasks")
    except (ImportError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    if not callable(function):
        raise ConfigError(f"tasks: {spec} is a {type(function).__name__}, not a function")
    return function


# ---- reading ------------------------------------------------------------------------------------
def _local(path: str) -> str | None:
    """``path`` when it is a file this module can read, else None."""
    expanded = os.path.expanduser(path)
    return expanded if os.path.isfile(expanded) else None


def _looks_like_file(path: str) -> bool:
    """A name with a data file's extension (or a path start) cannot be a dataset id: say it is missing."""
    ext = os.path.splitext(path)[1].lower()
    return ext in LOCAL_BUILDERS or path.startswith((".", "/", "~"))


def _rows(data: DataConfig) -> list[tuple[str, Mapping[str, Any]]]:
    """``(where, row)`` for each row: ``where`` is ``FILE line N`` or ``DATASET row N``."""
    local = _local(data.path)
    if local is not None and os.path.splitext(local)[1].lower() in _JSON_FILES:
        return list(_json_rows(local))
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("reading parquet/CSV files or hub datasets needs `pip install datasets`") from exc
    if local is not None:
        ext = os.path.splitext(local)[1].lower()
        if ext not in LOCAL_BUILDERS:
            raise ConfigError(
                f"data: path: cannot read {ext or 'extensionless'} files; use one of {sorted(LOCAL_BUILDERS)}"
            )
        table = datasets.load_dataset(LOCAL_BUILDERS[ext], data_files=local, split="train")
    else:
        table = datasets.load_dataset(data.path, data.name, split=data.split)
    return [(f"{data.path} row {i}", row) for i, row in enumerate(table)]


def _json_rows(path: str) -> Iterable[tuple[str, Mapping[str, Any]]]:
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    if path.lower().endswith(".json"):
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ConfigError(f"data: {path} must hold a JSON list of objects (or use .jsonl)")
        numbered: Iterable[tuple[int, Any]] = enumerate(rows)
        label = "item"
    else:
        numbered = _jsonl_lines(text, path)
        label = "line"
    for number, row in numbered:
        if not isinstance(row, Mapping):
            raise ConfigError(
                f"data: {path} {label} {number}: expected a JSON object, got {type(row).__name__}"
            )
        yield f"{path} {label} {number}", row


def _jsonl_lines(text: str, path: str) -> Iterable[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"data: {path} line {number} is not valid JSON: {exc.msg} (column {exc.colno})"
            ) from None


def _task(
    data: DataConfig,
    row: Mapping[str, Any],
    where: str,
    source: str,
    prompt_field: str | None,
    answer_field: str | None,
) -> Task:
    def get(field: str) -> Any:
        if field not in row:
            raise ConfigError(f"data: {where}: missing field {field!r} (it has: {', '.join(row)})")
        return row[field]

    prompt = get(prompt_field)  # type: ignore[arg-type]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ConfigError(f"data: {where}: {prompt_field!r} is empty")
        if data.chat:
            system = [{"role": "system", "content": data.system_prompt}] if data.system_prompt else []
            prompt = [*system, {"role": "user", "content": prompt}]
    elif not _is_messages(prompt):
        raise ConfigError(
            f"data: {where}: {prompt_field!r} must be a string or a list of {{role, content}} messages, "
            f"got {type(prompt).__name__}"
        )
    answer = get(answer_field) if answer_field is not None else None
    if answer_field is not None and data.answer_format != "plain":
        answer = extract_gold(answer, data.answer_format)
        if answer is None:
            raise ConfigError(
                f"data: {where}: no {data.answer_format} answer in {answer_field!r} "
                f"(answer_format: {data.answer_format}; use plain to take the column as written)"
            )
    info = {field: get(field) for field in data.info_fields}
    task_id = str(get(data.id_field)) if data.id_field else f"{source}-{where.rsplit(' ', 1)[-1]}"
    return Task(prompt=prompt, answer=answer, info=info, id=task_id)


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value)
    )


def tasks_from(
    data: DataConfig | None,
    function: str | None,
    function_kwargs: Mapping[str, Any] | None,
    builtin: Callable[[], Iterable[Task]],
    hint: str,
) -> list[Task]:
    """``data``'s tasks, else ``function``'s, else ``builtin()``'s; an environment without a built-in
    dataset (``NotImplementedError``) gets a ConfigError whose ``hint`` says how to give tasks."""
    if data is not None and function is not None:
        raise ConfigError("give one of data and tasks, not both")
    if data is not None:
        return load_tasks(data)
    if function is not None:
        return call_task_function(function, function_kwargs)
    try:
        return list(builtin())
    except NotImplementedError as exc:
        raise ConfigError(f"{exc}; {hint}") from None
