"""Math tasks from Hugging Face ``datasets``: a local file or anything ``datasets.load_dataset`` accepts.

Columns are mapped by name, and the gold answer is cut out of the answer column by format:

* ``gsm8k``: the text after the last ``####`` (GSM8K solutions end with ``#### 72``); thousands commas
  are dropped.
* ``boxed``: the content of the last ``\\boxed{...}`` (MATH solutions).
* ``plain``: the column as is (datasets that already hold just the answer).
* ``auto``: ``gsm8k`` if the text has ``####``, else ``boxed`` if it has ``\\boxed``, else ``plain``.

``datasets`` is imported only when a loader is called: the scoring core does not need it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rewardkit.config import ConfigError, suggest
from rewardkit.data.procedural import PROMPT_TEMPLATE
from rewardkit.types import Task
from rewardkit.verifiers.math import boxed_contents

ANSWER_FORMATS = ("auto", "gsm8k", "boxed", "plain")
FORMAT_SAMPLE_ROWS = 20
LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
QUESTION_COLUMNS = ("question", "problem", "prompt", "query", "input")
ANSWER_COLUMNS = ("answer", "solution", "final_answer", "target", "output")


@dataclass(frozen=True)
class HFMathConfig:
    """Where the tasks come from and how to read them."""

    path: str
    """A local .jsonl/.json/.parquet/.csv file, or a dataset name or folder for ``datasets.load_dataset``."""
    name: str | None = None
    """The dataset configuration name (e.g. ``main`` for ``openai/gsm8k``)."""
    split_map: Mapping[str, str] | None = None
    """rewardkit split -> dataset split (default: the same name). A local file has one split: ``train``."""
    question_key: str | None = None
    """Column with the problem text (default: the first of ``QUESTION_COLUMNS`` present)."""
    answer_key: str | None = None
    """Column with the answer or worked solution (default: the first of ``ANSWER_COLUMNS`` present)."""
    answer_format: str = "auto"
    """How to cut the gold answer out of the answer column: one of ``ANSWER_FORMATS``."""
    limit: int | None = None
    """Keep only the first ``limit`` rows (after skipping rows whose answer cannot be read)."""
    prompt_template: str = PROMPT_TEMPLATE
    """Prompt text with a ``{question}`` field."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"path must be a non-empty string, got {self.path!r}")
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {self.answer_format!r}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")
        if "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain a {question} field")


def gsm8k_answer(text: str) -> str | None:
    """The final answer of a GSM8K solution: what follows the last ``####``, without thousands commas."""
    if "####" not in text:
        return None
    answer = text.rsplit("####", 1)[1].strip().replace(",", "")
    return answer or None


def boxed_answer(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in a MATH-style solution."""
    boxes = boxed_contents(text)
    return boxes[-1].strip() if boxes and boxes[-1].strip() else None


def detect_format(values: Iterable[Any]) -> str:
    """The answer format of a dataset from sample values of its answer column."""
    texts = [str(v) for v in values if v is not None]
    if any("####" in t for t in texts):
        return "gsm8k"
    if any("\\boxed" in t or "\\fbox" in t for t in texts):
        return "boxed"
    return "plain"


def extract_gold(text: Any, answer_format: str = "auto") -> str | None:
    """The gold answer string from an answer column value, or None when the format does not match."""
    if text is None:
        return None
    text = str(text)
    if answer_format == "auto":
        answer_format = detect_format([text])
    if answer_format == "gsm8k":
        return gsm8k_answer(text)
    if answer_format == "boxed":
        return boxed_answer(text)
    return text.strip() or None


def _load_rows(config: HFMathConfig, split: str) -> Any:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("loading Hugging Face datasets needs `pip install datasets`") from exc
    ext = os.path.splitext(config.path)[1].lower()
    if os.path.isfile(config.path) and ext in LOCAL_BUILDERS:
        if split != "train":
            raise ValueError(f"a local file has only the 'train' split, asked for {split!r}: {config.path}")
        return datasets.load_dataset(LOCAL_BUILDERS[ext], data_files=config.path, split="train")
    dataset_split = (config.split_map or {}).get(split, split)
    return datasets.load_dataset(config.path, config.name, split=dataset_split)


def pick_column(
    columns: list[str],
    wanted: str | None,
    defaults: tuple[str, ...],
    key: str,
    what: str,
    *,
    needed: bool = True,
) -> str | None:
    """The column ``key`` names (``wanted``), else the first of ``defaults`` present; None when none is and
    the column is not ``needed``. ``ConfigError`` (a ValueError) naming ``key`` and the columns otherwise."""
    listed = ", ".join(columns)
    if wanted is not None:
        if wanted not in columns:
            raise ConfigError(
                f"{key}: column {wanted!r} not in the dataset (columns: {listed}){suggest(wanted, columns)}"
            )
        return wanted
    found = next((name for name in defaults if name in columns), None)
    if found is None and needed:
        raise ConfigError(
            f"the dataset has no {what} column (none of {', '.join(defaults)}); set {key} (columns: {listed})"
        )
    return found


def load_math_tasks(config: HFMathConfig, split: str = "train") -> list[Task]:
    """Read a dataset split into Tasks (``answer``: the gold string; ``info``: row index and raw answer)."""
    rows = _load_rows(config, split)
    columns = list(rows.column_names)
    q_col = pick_column(columns, config.question_key, QUESTION_COLUMNS, "question_key", "question")
    a_col = pick_column(columns, config.answer_key, ANSWER_COLUMNS, "answer_key", "answer")
    answer_format = config.answer_format
    if answer_format == "auto":
        answer_format = detect_format(rows[a_col][:FORMAT_SAMPLE_ROWS])
    tasks: list[Task] = []
    for index, row in enumerate(rows):
        if config.limit is not None and len(tasks) >= config.limit:
            break
        gold = extract_gold(row[a_col], answer_format)
        question = row[q_col]
        if gold is None or not isinstance(question, str) or not question.strip():
            continue
        prompt = config.prompt_template.format(question=question.strip())
        info = {"row": index, "question": question, "raw_answer": row[a_col]}
        tasks.append(
            Task(prompt=prompt, answer=gold, info=info, id=f"{os.path.basename(config.path)}-{split}-{index}")
        )
    return tasks
