"""The ``math`` environment: reward 1.0 when the final answer is equivalent to the gold answer.

Checking runs in the scoring runtime's worker processes (hard timeout, memory cap, replaced workers), so a
pathological answer costs one sample. For GRPO batches, where G completions share a gold answer and
often repeat a final answer, ``cache_key`` is (gold, extracted answer): the runtime scores each distinct
pair once per batch and caches the verdict across batches, and each worker parses a gold once.
The answer rules are in ``rewardkit.verifiers.math`` and docs/math.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rewardkit.config import bad_value
from rewardkit.data.hf import LOCAL_BUILDERS
from rewardkit.data.procedural import LEVELS, ProceduralConfig, generate_tasks
from rewardkit.envs.base import Environment
from rewardkit.types import Completion, Score, Task, completion_text
from rewardkit.verifiers.math import (
    DEFAULT_REL_TOL,
    ParsedAnswer,
    answers_equal,
    check,
    extract_answer,
    normalize_gold,
    parse_gold,
    parse_prediction,
    parse_text_fallback,
)
from rewardkit.verifiers.math_equal import is_single_valued

if TYPE_CHECKING:
    from rewardkit.envs.probes import Probe

DEFAULT_MEMORY_MB = 1024
"""Address-space cap per scoring worker unless the caller sets ``memory_mb``."""
MAX_INFO_CHARS = 500
"""``info["extracted"]`` is cut to this length."""
_WARMUP_ANSWERS = (
    "\\frac{\\pi}{3}",
    "2\\sqrt{2}",
    "x^2+1",
    "y = 2x + 1",
    "(1, 2]",
    "\\{1, 2\\}",
    "\\begin{pmatrix}1 & 2\\end{pmatrix}",
)
"""Parsed once per worker at start-up: the ANTLR parser builds its prediction tables lazily, on first use."""


_NUMBER_RE = re.compile(r"\\[dt]?frac\{-?\d+\}\{\d+\}|-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
_ANSWER_START_RE = {"answer_tag": re.compile(r"(?i)<answer>"), "boxed": re.compile(r"\\(?:boxed|fbox)")}
_TAG_RE = re.compile(r"(?i)</?\s*(?:think|answer)\s*>")


def _reasoning_before_answer(text: str, source: str) -> str:
    """The text before the last answer tag or box (the thinking included, its tags removed)."""
    starts = [m.start() for m in _ANSWER_START_RE[source].finditer(text)]
    return _TAG_RE.sub(" ", text[: starts[-1]] if starts else text)


def _last_number(text: str) -> str | None:
    """The last number written in text (an integer, decimal, ``a/b`` or ``\\frac{a}{b}``), or None."""
    found = _NUMBER_RE.findall(text[-20_000:])
    return found[-1].replace(",", "") if found else None


def _is_number(expr: Any) -> bool:
    return getattr(expr, "is_number", False) is True


@dataclass(frozen=True)
class MathConfig:
    """Configuration of the ``math`` environment (its own options; the runtime's are ``ScoringConfig``)."""

    rel_tol: float = DEFAULT_REL_TOL
    """Relative tolerance for numbers when either side is written as a decimal (see docs/math.md)."""
    dataset: str | None = None
    """Hugging Face dataset name or local file for ``tasks()``; None: the procedural generator."""
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    """Extra ``rewardkit.data.hf.HFMathConfig`` fields (name, question_key, answer_key, answer_format, ...)."""
    seed: int = 0
    """Seed of the procedural generator."""
    levels: tuple[int, ...] = (1, 2, 3)
    """Procedural difficulty levels (1: one operation ... 4: quadratics and systems)."""
    num_tasks: Mapping[str, int] = field(default_factory=lambda: {"train": 1000, "test": 200})
    """Procedural tasks per split."""

    def __post_init__(self) -> None:
        if (
            isinstance(self.rel_tol, bool)
            or not isinstance(self.rel_tol, int | float)
            or not 0 <= self.rel_tol < 1
        ):
            raise ValueError(f"rel_tol must be a number in [0, 1), got {self.rel_tol!r}")
        if self.dataset is not None and (not isinstance(self.dataset, str) or not self.dataset):
            raise ValueError(f"dataset must be a dataset name or file path, got {self.dataset!r}")
        if not isinstance(self.dataset_options, Mapping):
            raise ValueError(f"dataset_options must be a dict, got {type(self.dataset_options).__name__}")
        if (
            isinstance(self.levels, str | int)
            or not self.levels
            or any(lv not in LEVELS for lv in self.levels)
        ):
            raise ValueError(f"levels must be a non-empty list drawn from {LEVELS}, got {self.levels!r}")
        bad = {k: v for k, v in self.num_tasks.items() if not isinstance(v, int) or v < 0}
        if bad:
            raise ValueError(f"num_tasks must map split names to counts >= 0, got {bad!r}")


def _check_local_dataset(dataset: str) -> None:
    """A dataset written as a file path (a data-file suffix, or starting ``/``, ``.``, ``~``) must exist."""
    path = Path(dataset).expanduser()
    looks_local = path.suffix.lower() in LOCAL_BUILDERS or dataset.startswith(("/", ".", "~"))
    if looks_local and not path.exists():
        raise bad_value(
            "environment 'math'",
            "dataset",
            dataset,
            "an existing file or folder, or a Hugging Face dataset id",
            f": {path.resolve()} does not exist",
        )


class MathEnv(Environment):
    """Symbolic answer checking built on math-verify, stricter where it is wrong (see docs/math.md).

    Metrics: ``correct`` (1/0) and ``has_answer`` (an answer was found). ``info["extracted"]`` is the
    answer that was checked and ``info["reason"]`` says why a found answer scored 0.
    """

    name = "math"
    correctness_metric = "correct"

    Config = MathConfig

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.config.dataset is not None:
            self._hf_config("train")  # a bad option fails at load_env, not at tasks()
            _check_local_dataset(self.config.dataset)

    @classmethod
    def scoring_defaults(cls, config: MathConfig) -> Mapping[str, Any]:
        # A worker needs ~75 MB; sympy asked for a huge exact value can take gigabytes. memory_mb=None lifts it.
        return {"memory_mb": DEFAULT_MEMORY_MB}

    # ---- scoring -------------------------------------------------------------------------------------
    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        try:
            gold = normalize_gold(answer)
        except ValueError as exc:
            return Score.failure("invalid_input", f"math needs a gold answer: {exc}")
        verdict = check(extract_answer(completion_text(completion)), gold, rel_tol=self.config.rel_tol)
        metrics = {"correct": float(verdict.correct), "has_answer": float(verdict.has_answer)}
        extra = {"reason": verdict.reason} if verdict.reason else {}
        extracted = verdict.extracted
        if extracted is not None and len(extracted) > MAX_INFO_CHARS:  # scores are logged and cached
            extracted = extracted[:MAX_INFO_CHARS] + f"... [{len(extracted):,} chars]"
        return Score.ok(float(verdict.correct), metrics, extracted=extracted, **extra)

    def cache_key(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Hashable | None:
        """(gold, where the answer came from, digest of the offered answers): cheap text work only.

        The digest covers every candidate (a hedge changes the verdict) and, for answers left to
        math-verify's free-text extraction, the text it will search.
        """
        try:
            gold = normalize_gold(answer)
        except ValueError:
            return None  # verify() reports it
        found = extract_answer(completion_text(completion))
        payload = "\x00".join((found.answer or "", *found.candidates))
        # a tag and a box holding "42" share a verdict; free text is searched differently
        origin = "text" if found.source == "text" else "answer"
        return ("math", gold, origin, hashlib.blake2b(payload.encode(), digest_size=16).digest())

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Warm the LaTeX parser when the environment arrives in a worker, before any job's clock starts."""
        self.__dict__.update(state)
        for text in _WARMUP_ANSWERS:
            parse_gold(text)
        parse_text_fallback("so $x = \\frac{3}{4}$ and the answer is $7$.")

    # ---- reward hacking (docs/hacking.md) -------------------------------------------------------------
    exploit_patterns: ClassVar[Mapping[str, str]] = {
        "multiple-answer-tags": r"(?i)<answer>[\s\S]*<answer>",
        "multiple-boxes": r"\\(?:boxed|fbox)\s*\{[\s\S]*\\(?:boxed|fbox)",
        "answer-only-in-think": r"(?i)(?:<answer>|\\boxed)(?:(?!</think>)[\s\S])*</think>\s*$",
        "unclosed-think": r"(?i)<think>(?![\s\S]*</think>)",
        "long-digit-string": r"\d{100,}",
        "hidden-markup": r"\\(?:[hv]?phantom|iffalse|not|neg|lnot|sout|x?cancel)(?![a-zA-Z])|\\color\s*\{\s*white|<!--",
        "hedge-word-in-answer": r"(?i)<answer>[^<]*\b(?:or|either|maybe)\b[^<]*</answer>",
    }

    def exploit_probes(self) -> list[Probe]:
        from rewardkit.envs.math_probes import math_probes

        return math_probes()

    def suspicious(self, sample: Mapping[str, Any], score: Score) -> str | None:
        """A passing answer that is not where the reasoning ended, or one of several different candidates.

        Two checks independent of the verdict's rules: the tagged or boxed final answer, when it is a
        number, must be the last number of the text before it (the reasoning ended on it); and, for a
        single-valued gold, the completion must not offer candidates that differ from each other (each
        may be close enough to the gold: ``0.33`` and ``0.333333`` for 1/3).
        """
        try:
            text = completion_text(sample["completion"])
            gold = parse_gold(normalize_gold(sample.get("answer")))
        except (KeyError, TypeError, ValueError):
            return None
        found = extract_answer(text)
        if found.answer is None:
            return None
        if found.source != "text" and (not gold.exprs or is_single_valued(gold.exprs[0])):
            distinct: list[ParsedAnswer] = []
            for cand in found.candidates:
                parsed = parse_prediction(cand)
                if not any(answers_equal(seen, parsed, rel_tol=self.config.rel_tol) for seen in distinct):
                    distinct.append(parsed)
            if len(distinct) > 1:
                shown = ", ".join(repr(c.text[:40]) for c in distinct[:4])
                return f"offers {len(distinct)} different candidate answers: {shown}"
        if found.source == "text":
            return None
        last = _last_number(_reasoning_before_answer(text, found.source))
        final = parse_prediction(found.answer)
        if last is None or not final.exprs or not _is_number(final.exprs[0]):
            return None
        if not answers_equal(parse_prediction(last), final, rel_tol=self.config.rel_tol):
            return (
                f"final answer {found.answer[:40]!r} is not the last number of the reasoning ({last[:40]!r})"
            )
        return None

    # ---- data ----------------------------------------------------------------------------------------
    def gold_examples(self) -> list[dict[str, Any]]:
        long_int = "9" * 5000
        return [
            {"completion": "<think>2 + 2 = 4</think>\n<answer>4</answer>", "answer": "4"},
            {"completion": "So the result is $\\boxed{\\dfrac{1}{2}}$.", "answer": "0.5"},
            {"completion": "<answer>2\\sqrt{2}</answer>", "answer": "$\\sqrt{8}$"},
            {"completion": "<answer>x = \\frac{\\pi}{3}</answer>", "answer": "\\frac{\\pi}{3}"},
            {"completion": "<answer>\\{3, -2\\}</answer>", "answer": "-2, 3"},
            {"completion": "The final answer is 1,234.", "answer": 1234},
            {"completion": f"<answer>{long_int}</answer>", "answer": long_int},
            {
                "completion": [
                    {"role": "user", "content": "What is 6 * 7?"},
                    {"role": "assistant", "content": "<think>6*7=42</think><answer>42</answer>"},
                ],
                "answer": "42",
            },
        ]

    def tasks(self, split: str = "train") -> Sequence[Task]:
        """Procedural tasks by default; with ``dataset`` set, that dataset's split (``datasets`` needed)."""
        if self.config.dataset is not None:
            from rewardkit.data.hf import load_math_tasks

            return load_math_tasks(self._hf_config(split), split)
        if split not in self.config.num_tasks:
            raise ValueError(f"unknown split {split!r}; procedural splits: {sorted(self.config.num_tasks)}")
        procedural = ProceduralConfig(seed=self.config.seed, levels=self.config.levels)
        return generate_tasks(split, self.config.num_tasks[split], procedural)

    def _hf_config(self, split: str) -> Any:
        from rewardkit.data.hf import HFMathConfig

        try:
            return HFMathConfig(path=self.config.dataset, **self.config.dataset_options)
        except TypeError as exc:
            raise ValueError(f"bad dataset_options for the math environment: {exc}") from exc
