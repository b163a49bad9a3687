"""``reasoning_gym:<task>``: any reasoning-gym task as a rewardkit environment.

Tasks come from reasoning-gym's own generators (``reasoning_gym.create_dataset``) and are scored by the
task's own scorer (``dataset.score_answer(answer, entry)``). The answer handed to the scorer is the
content of the last ``<answer>...</answer>`` tag (reasoning-gym's ``utils.extract_answer``), else, unless
``answer_format="tag"``, the last non-empty line of the completion.

Every Task carries, in ``info["reasoning_gym"]``, what scoring needs, JSON-serialisable: the task name,
the generator's seed, size and options, the entry's index and the entry itself (its metadata turned
into JSON). Most tasks' metadata holds tuples (``difficulty`` ranges) or other values JSON cannot keep,
and some scorers read them (``arc_agi`` and ``rearc`` score a right answer 0.05 against a JSON-copied
entry), so unless the JSON copy equals the original the scoring worker regenerates the entry from
(task, seed, size, options, index), checks that its question is the stored one, and scores that.
docs/interop.md describes the adapter.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import threading
import warnings
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from rewardkit.config import ConfigError
from rewardkit.envs.base import Environment
from rewardkit.types import Completion, Score, Task, completion_text

if TYPE_CHECKING:
    from rewardkit.envs.probes import Probe

SPLITS = ("train", "test")
TEST_SEED_OFFSET = 10_000_000
"""The test split's generator seed is ``seed + TEST_SEED_OFFSET``. reasoning-gym draws item ``i`` of a
dataset with seed ``s`` from ``Random(s + i)``, so seeds ``s`` and ``s + 1`` share all but one item:
the offset keeps the two splits' item seeds apart for any train size up to the offset."""
TEST_CAPACITY = 4
"""With ``dedupe_test``, the test generator may draw up to this many times ``size["test"]`` items to
find that many whose question is not in the train split."""
MAX_INFO_CHARS = 500
_ENTRY_CACHE_SIZE = 4096


class _Cache:
    """This process's datasets and regenerated entries."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.datasets: dict[str, Any] = {}
        self.entries: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()


_CACHE = _Cache()


def _cache() -> _Cache:
    """The cache of the imported module. Code that reaches a worker process pickled by value (rewardkit's
    ``import_object`` registers modules under the current directory so, an editable install included)
    must not carry the lock or the caches along: it looks them up in the real module instead."""
    return importlib.import_module("rewardkit.envs.adapters.reasoning_gym")._CACHE


PROBE_SEED = 0
"""Generator seed of the items the exploit probes attack (whatever the split seeds), so that their
bounds, measured on these items, hold for any ``seed``; other generator ``options`` may change them."""


class UnknownTaskError(ConfigError, KeyError):
    """``reasoning_gym:<task>`` names no reasoning-gym task (a KeyError too, as ``load_env``'s own is)."""

    def __str__(self) -> str:  # KeyError's str() is the repr of its argument
        return str(self.args[0]) if self.args else ""


def task_names() -> list[str]:
    """Every task reasoning-gym registers (``reasoning_gym.factory.DATASETS``), sorted."""
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def _check_task(task: str) -> str:
    names = task_names()
    if task in names:
        return task
    close = difflib.get_close_matches(task, names, n=5, cutoff=0.5)
    if not close:
        close = [n for n in names if task and (task in n or n in task)][:5]
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise UnknownTaskError(
        f"reasoning-gym has no task {task!r}{hint}. Its {len(names)} tasks: {', '.join(names)}"
    )


@dataclass(frozen=True)
class ReasoningGymConfig:
    """Options of a ``reasoning_gym:<task>`` environment (the scoring runtime's are ``ScoringConfig``)."""

    seed: int = 0
    """Generator seed of the train split; the test split's is ``seed + 10_000_000`` (``TEST_SEED_OFFSET``)."""
    size: Mapping[str, int] = field(default_factory=lambda: {"train": 1000, "test": 200})
    """Tasks per split (``train``, ``test``); a split left out keeps its default (1000, 200)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The task's own generator options: fields of its reasoning-gym config class (``leg_counting``:
    ``min_animals``, ``max_animals``, ...), JSON values. ``composite`` takes ``datasets`` as a list of
    ``{"name", "weight", "config"}`` dicts."""
    system_prompt: str | None = "default"
    """A key of ``reasoning_gym.utils.SYSTEM_PROMPTS`` (``default``, ``DeepSeekZero``, ``simple``, ...) or
    literal text: prompts are then (system, user) chat messages. None: the prompt is the bare question."""
    answer_format: Literal["tag_or_last_line", "tag"] = "tag_or_last_line"
    """Where the answer is read: the last ``<answer>`` tag, else the last non-empty line; or the tag only."""
    dedupe_test: bool = True
    """Drop test items whose question is also in the train split (small task spaces repeat questions)."""

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        bad = {
            k: v
            for k, v in self.size.items()
            if k not in SPLITS
            or isinstance(v, bool)
            or not isinstance(v, int)
            or not 0 < v <= TEST_SEED_OFFSET
        }
        if bad:
            raise ValueError(
                f"size must map 'train'/'test' to counts in 1..{TEST_SEED_OFFSET:,}, got {bad!r}"
            )
        for key in ("seed", "size"):
            if key in self.options:
                raise ValueError(
                    f"options must not hold {key!r}: the adapter sets it per split (use {key}=...)"
                )
        try:
            json.dumps(dict(self.options))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"options must be JSON values (they travel with every task): {exc}") from None

    def split_size(self, split: str) -> int:
        return int(self.size.get(split, {"train": 1000, "test": 200}[split]))


# ---- datasets and entries (cached per process) -------------------------------------------------------
def _dataset_key(task: str, seed: int, size: int, options: Mapping[str, Any]) -> str:
    return json.dumps([task, seed, size, options], sort_keys=True)


def _make_dataset(task: str, seed: int, size: int, options: Mapping[str, Any]) -> Any:
    import reasoning_gym

    kwargs = dict(options)
    if task == "composite" and "datasets" in kwargs:
        from reasoning_gym.composite import DatasetSpec

        kwargs["datasets"] = [
            d if isinstance(d, DatasetSpec) else DatasetSpec(**d) for d in kwargs["datasets"]
        ]
    return reasoning_gym.create_dataset(task, seed=seed, size=size, **kwargs)


def dataset(task: str, seed: int, size: int, options: Mapping[str, Any]) -> Any:
    """The reasoning-gym dataset for these settings, built once per process."""
    key = _dataset_key(task, seed, size, options)
    cache = _cache()
    with cache.lock:
        found = cache.datasets.get(key)
    if found is None:
        found = _make_dataset(task, seed, size, options)
        with cache.lock:
            found = cache.datasets.setdefault(key, found)
    return found


def _entry(source: Mapping[str, Any]) -> dict[str, Any]:
    """The original entry of a task: item ``index`` of its dataset, regenerated once per process."""
    ds = dataset(source["task"], source["seed"], source["size"], source["options"])
    key = (_dataset_key(source["task"], source["seed"], source["size"], source["options"]), source["index"])
    cache = _cache()
    with cache.lock:
        cached = cache.entries.get(key)
        if cached is not None:
            cache.entries.move_to_end(key)
            return cached
    entry = ds[source["index"]]
    with cache.lock:
        cache.entries[key] = entry
        while len(cache.entries) > _ENTRY_CACHE_SIZE:
            cache.entries.popitem(last=False)
    return entry


def to_json(value: Any) -> Any:
    """``value`` as JSON values: tuples and sets become lists, other objects their ``str``."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [to_json(v) for v in items]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return to_json(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist"):  # numpy arrays
        return to_json(value.tolist())
    return str(value)


def _json_exact(entry: Mapping[str, Any], as_json: Any) -> bool:
    """The JSON copy is the entry itself (so it can be scored as is, without regenerating it)."""
    try:
        return json.loads(json.dumps(entry)) == entry and as_json == entry
    except (TypeError, ValueError):
        return False


# ---- answer extraction ---------------------------------------------------------------------------------
def extract(text: str, answer_format: str = "tag_or_last_line") -> tuple[str | None, str]:
    """(the answer reasoning-gym's scorer gets, where it came from: ``tag``, ``last_line`` or ``none``)."""
    from reasoning_gym.utils import extract_answer

    tagged = extract_answer(text)
    if tagged is not None:
        return tagged, "tag"
    if answer_format == "tag":
        return None, "none"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1], "last_line") if lines else (None, "none")


def _source(info: Mapping[str, Any], task: str) -> dict[str, Any] | Score:
    """``info["reasoning_gym"]`` checked, or the ``invalid_input`` Score saying what is wrong with it."""
    source = info.get("reasoning_gym") if isinstance(info, Mapping) else None
    keys = ("task", "seed", "size", "options", "index", "entry", "exact")
    if not isinstance(source, Mapping) or any(k not in source for k in keys):
        return Score.failure(
            "invalid_input",
            f"reasoning_gym:{task} needs the task's info['reasoning_gym'] (from env.tasks()) with keys {list(keys)}",
        )
    if source["task"] != task:
        return Score.failure(
            "invalid_input",
            f"the sample is a reasoning_gym:{source['task']} task, this environment is {task}",
        )
    return dict(source)


# ---- the environment -------------------------------------------------------------------------------------
class ReasoningGymEnv(Environment):
    """One reasoning-gym task; reward = the task's own ``score_answer`` on the extracted answer.

    Metrics: ``correct`` (reward 1.0), ``has_answer`` (an answer was found) and ``answer_tag`` (it was
    in an ``<answer>`` tag). ``info["extracted"]`` is the answer that was scored, ``info["answer_source"]``
    where it came from.
    """

    Config = ReasoningGymConfig
    correctness_metric = "correct"

    def __init__(self, task: str, **options: Any) -> None:
        self.task = _check_task(task)
        self.name = f"reasoning_gym:{self.task}"  # type: ignore[misc]  # per-instance name, one per task
        super().__init__(**options)
        self._tasks: dict[str, list[Task]] = {}
        try:  # a bad generator option fails at load_env, naming the task's own options
            self._dataset("train")
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(self._option_error(exc)) from exc

    def _option_error(self, exc: BaseException) -> str:
        from reasoning_gym.factory import DATASETS

        allowed = [
            f.name for f in dataclasses.fields(DATASETS[self.task][1]) if f.name not in ("seed", "size")
        ]
        return (
            f"environment {self.name!r}: reasoning-gym rejected options {dict(self.config.options)!r}: "
            f"{type(exc).__name__}: {exc}. Options of {self.task}: {allowed}"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_tasks": {}}  # workers regenerate entries, not whole splits

    def _split_settings(self, split: str) -> tuple[int, int]:
        """(generator seed, generator size) of a split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; reasoning_gym splits: {list(SPLITS)}")
        size = self.config.split_size(split)
        if split == "train":
            return self.config.seed, size
        return self.config.seed + TEST_SEED_OFFSET, size * (TEST_CAPACITY if self.config.dedupe_test else 1)

    def _dataset(self, split: str) -> Any:
        seed, size = self._split_settings(split)
        return dataset(self.task, seed, size, dict(self.config.options))

    # ---- scoring -------------------------------------------------------------------------------------
    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        source = _source(info, self.task)
        if isinstance(source, Score):
            return source
        ds = dataset(self.task, source["seed"], source["size"], source["options"])
        entry = source["entry"] if source["exact"] else _entry(source)
        if not source["exact"] and entry["question"] != source["entry"].get("question"):
            raise RuntimeError(
                f"regenerated item {source['index']} of {self.task} has another question than the task's: "
                f"was the task made by another reasoning-gym version (this is {_rg_version()})?"
            )
        extracted, where = extract(completion_text(completion), self.config.answer_format)
        metrics = {"has_answer": float(extracted is not None), "answer_tag": float(where == "tag")}
        shown = (
            extracted
            if extracted is None or len(extracted) <= MAX_INFO_CHARS
            else extracted[:MAX_INFO_CHARS] + "..."
        )
        try:
            reward = float(ds.score_answer(extracted, entry))
        except Exception as exc:
            if not _entry_scores_its_answer(ds, entry):
                raise  # the entry, not the answer, is what the scorer cannot handle: status error
            reason = f"reasoning-gym's scorer raised {type(exc).__name__} on this answer: {exc}"[
                :MAX_INFO_CHARS
            ]
            metrics.update(correct=0.0, scorer_raised=1.0)
            return Score.ok(0.0, metrics, extracted=shown, answer_source=where, reason=reason)
        metrics["correct"] = float(reward >= 1.0)
        return Score.ok(reward, metrics, extracted=shown, answer_source=where)

    def cache_key(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Hashable | None:
        """(task, seed, size, options, index, extracted answer): equal answers to one item share a verdict."""
        source = _source(info, self.task)
        if isinstance(source, Score):
            return None
        extracted, where = extract(completion_text(completion), self.config.answer_format)
        options = json.dumps(source["options"], sort_keys=True)
        return (
            "reasoning_gym",
            self.task,
            source["seed"],
            source["size"],
            options,
            source["index"],
            where,
            extracted,
        )

    # ---- data ----------------------------------------------------------------------------------------
    def tasks(self, split: str = "train") -> Sequence[Task]:
        """``size[split]`` reasoning-gym items of the split (test: fewer when deduplication runs short)."""
        if split not in self._tasks:
            self._tasks[split] = self._make_tasks(split)
        return list(self._tasks[split])

    def _make_tasks(self, split: str) -> list[Task]:
        seed, size = self._split_settings(split)
        ds = self._dataset(split)
        want = self.config.split_size(split)
        seen = (
            {t.info["reasoning_gym"]["entry"]["question"] for t in self.tasks("train")}
            if (split == "test" and self.config.dedupe_test)
            else set()
        )
        tasks: list[Task] = []
        for index in range(size):
            if len(tasks) >= want:
                break
            entry = ds[index]
            if entry["question"] in seen:
                continue
            tasks.append(self._task(entry, split, seed, size, index))
        if len(tasks) < want:
            warnings.warn(
                f"{self.name}: the test split has {len(tasks)} of {want} tasks: the other items drawn "
                f"({size}) repeat train questions (dedupe_test=False keeps them)",
                stacklevel=3,
            )
        return tasks

    def _task(self, entry: Mapping[str, Any], split: str, seed: int, size: int, index: int) -> Task:
        as_json = to_json(entry)
        source = {
            "task": self.task,
            "seed": seed,
            "size": size,
            "options": to_json(self.config.options),
            "index": index,
            "entry": as_json,
            "exact": _json_exact(entry, as_json),
        }
        answer = entry.get("answer")
        return Task(
            prompt=self._prompt(entry["question"]),
            answer=answer if answer is None or isinstance(answer, str) else to_json(answer),
            info={"reasoning_gym": source},
            id=f"reasoning_gym-{self.task}-{split}-{seed}-{index}",
        )

    def _prompt(self, question: str) -> str | tuple[dict[str, str], ...]:
        from reasoning_gym.utils import SYSTEM_PROMPTS

        system = self.config.system_prompt
        if system is None:
            return question
        text = SYSTEM_PROMPTS.get(system, system)
        return ({"role": "system", "content": text}, {"role": "user", "content": question})

    def _sample_tasks(self, n: int, seed: int | None = None) -> list[Task]:
        """The first ``n`` train items (of generator ``seed``: default the train split's), on their own."""
        train_seed, size = self._split_settings("train")
        seed = train_seed if seed is None else seed
        ds = dataset(self.task, seed, size, dict(self.config.options))
        return [self._task(ds[i], "train", seed, size, i) for i in range(min(n, size))]

    def gold_examples(self) -> list[dict[str, Any]]:
        """The dataset's own answers, in an answer tag and (single-line answers) as the last line.

        Empty for the tasks without an oracle answer (``entry["answer"]`` is None: ``boxnet``,
        ``graph_color``, ``propositional_logic``, ``rubiks_cube``, ``rush_hour``)."""
        gold = []
        for task in self._sample_tasks(3):
            if not isinstance(task.answer, str):
                continue
            sample = {"prompt": task.prompt, "answer": task.answer, "info": task.info}
            gold.append(
                {**sample, "completion": f"<think>Working it out.</think>\n<answer>{task.answer}</answer>"}
            )
            if "\n" not in task.answer.strip() and self.config.answer_format == "tag_or_last_line":
                gold.append({**sample, "completion": f"Working it out.\nThe answer is:\n{task.answer}"})
        return gold

    def exploit_probes(self) -> list[Probe]:
        """Empty answer, the question echoed, several candidates (the gold among decoys, first and last).

        Each may score what reasoning-gym's scorer gives it for this task (``PROBE_CREDIT``), else 0."""
        return probes_for(
            self.task, self._sample_tasks(8, seed=PROBE_SEED), base_scorer=_base_scorer(self.task)
        )


def _base_scorer(task: str) -> bool:
    """The task keeps reasoning-gym's default scorer: exact match 1.0, else len(gold)/len(answer) when the
    gold answer is a substring of the answer."""
    from reasoning_gym.dataset import ProceduralDataset
    from reasoning_gym.factory import DATASETS

    return DATASETS[task][0].score_answer is ProceduralDataset.score_answer


def _substring_credit(answer: str, gold: Any) -> float:
    """What reasoning-gym's default scorer gives ``answer``: 1.0 equal, len(gold)/len(answer) containing."""
    if not isinstance(gold, str) or not answer:
        return 0.0
    return 1.0 if answer == gold else (len(gold) / len(answer) if gold in answer else 0.0)


def probes_for(task: str, sampled: Sequence[Task], *, base_scorer: bool = False) -> list[Probe]:
    """The exploit probes of ``task`` on the first of ``sampled`` (the others give decoy answers).

    A probe's bound is what reasoning-gym's scorer is known to give it: for the default scorer its
    substring rule (``_substring_credit``), for a task's own scorer ``PROBE_CREDIT``, else 0."""
    from rewardkit.envs.probes import Probe

    target = sampled[0]
    sample = {"prompt": target.prompt, "answer": target.answer, "info": target.info}
    question = target.info["reasoning_gym"]["entry"]["question"]
    credit = PROBE_CREDIT.get(task, {})

    def probe(name: str, family: str, answer: str, why: str) -> Probe:
        bound = _substring_credit(answer, target.answer) if base_scorer else credit.get(name, 0.0)
        if bound:
            why += f" (reasoning-gym's {task} scorer gives it up to {bound})"
        return Probe(name, family, {**sample, "completion": f"<answer>{answer}</answer>"}, why, bound)

    probes = [
        probe("empty-answer", "empty-answer", "", "an empty answer tag"),
        probe("question-echo", "prompt-echo", question, "the question copied back as the answer"),
    ]
    gold = target.answer
    decoys = list(
        dict.fromkeys(t.answer for t in sampled[1:] if isinstance(t.answer, str) and t.answer != gold)
    )
    if isinstance(gold, str) and decoys:
        for where, answers in (("first", [gold, *decoys[:3]]), ("last", [*decoys[:3], gold])):
            why = f"the gold answer {where} among {len(answers) - 1} other answers, one a line"
            probes.append(probe(f"candidates-gold-{where}", "multiple-candidates", "\n".join(answers), why))
    return probes


def _entry_scores_its_answer(ds: Any, entry: Mapping[str, Any]) -> bool:
    """The scorer handles the entry: its own answer scores without raising (no oracle answer: unknown)."""
    if not isinstance(entry.get("answer"), str):
        return False
    try:
        ds.score_answer(entry["answer"], entry)
    except Exception:
        return False
    return True


def _rg_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("reasoning-gym")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def load(task: str, **config: Any) -> ReasoningGymEnv:
    """The ``reasoning_gym:<task>`` family's factory (``rewardkit.registry.ENV_FAMILIES``)."""
    return ReasoningGymEnv(task, **config)


PROBE_CREDIT: dict[str, dict[str, float]] = {
    "advanced_geometry": {
        "empty-answer": 0.01,
        "question-echo": 0.01,
        "candidates-gold-first": 0.01,
        "candidates-gold-last": 0.01,
    },
    "arc_agi": {"empty-answer": 0.05, "candidates-gold-first": 0.05, "candidates-gold-last": 0.05},
    "chain_sum": {"candidates-gold-first": 0.4, "candidates-gold-last": 0.4},
    "codeio": {"candidates-gold-first": 0.7804, "candidates-gold-last": 0.7804},
    "color_cube_rotation": {
        "empty-answer": 0.01,
        "question-echo": 0.01,
        "candidates-gold-first": 0.01,
        "candidates-gold-last": 0.01,
    },
    "countdown": {
        "empty-answer": 0.01,
        "question-echo": 0.01,
        "candidates-gold-first": 0.01,
        "candidates-gold-last": 0.01,
    },
    "emoji_mystery": {
        "empty-answer": 0.01,
        "question-echo": 0.01,
        "candidates-gold-first": 0.01,
        "candidates-gold-last": 0.01,
    },
    "figlet_font": {"candidates-gold-first": 0.6},
    "fraction_simplification": {
        "empty-answer": 0.01,
        "question-echo": 0.01,
        "candidates-gold-first": 1.0,
        "candidates-gold-last": 0.01,
    },
    "futoshiki": {"candidates-gold-first": 0.3997, "candidates-gold-last": 0.3997},
    "game_of_life_halting": {"question-echo": 1.0, "candidates-gold-first": 1.0, "candidates-gold-last": 1.0},
    "gsm_symbolic": {"question-echo": 0.01, "candidates-gold-first": 1.0, "candidates-gold-last": 0.01},
    "letter_jumble": {"candidates-gold-first": 1.0},
    "manipulate_matrix": {"candidates-gold-first": 0.7074, "candidates-gold-last": 0.7074},
    "mini_sudoku": {"question-echo": 0.0046, "candidates-gold-first": 0.2197, "candidates-gold-last": 0.0138},
    "palindrome_generation": {
        "question-echo": 0.02,
        "candidates-gold-first": 0.02,
        "candidates-gold-last": 0.02,
    },
    "polynomial_equations": {"candidates-gold-first": 0.0014},
    "power_function": {
        "empty-answer": 0.01,
        "question-echo": 0.01,
        "candidates-gold-first": 0.01,
        "candidates-gold-last": 0.01,
    },
    "prime_factorization": {"empty-answer": 0.01},
    "products": {"candidates-gold-first": 0.2334, "candidates-gold-last": 0.2334},
    "puzzle24": {
        "empty-answer": 0.01,
        "question-echo": 0.01,
        "candidates-gold-first": 0.01,
        "candidates-gold-last": 0.01,
    },
    "rearc": {"empty-answer": 0.05, "candidates-gold-first": 0.05, "candidates-gold-last": 0.05},
    "rubiks_cube": {"empty-answer": 0.01, "question-echo": 0.01},
    "rush_hour": {"question-echo": 0.01},
    "sentence_reordering": {
        "empty-answer": 0.05,
        "question-echo": 0.05,
        "candidates-gold-first": 0.05,
        "candidates-gold-last": 0.05,
    },
    "sokoban": {"candidates-gold-first": 1.0},
    "spell_backward": {"candidates-gold-first": 1.0, "candidates-gold-last": 0.1112},
    "sudoku": {"candidates-gold-first": 0.224, "candidates-gold-last": 0.0415},
    "time_intervals": {"candidates-gold-first": 1.0},
    "tsumego": {"question-echo": 0.01, "candidates-gold-first": 0.1819, "candidates-gold-last": 0.1819},
    "word_sorting": {"candidates-gold-first": 0.8889},
}
"""Per task with its own scorer, the most reasoning-gym's scorer gives each exploit probe where that is
above 0 (the probe's bound): measured on reasoning-gym 0.1.19 with default options, on the probe items
(``PROBE_SEED``), rounded up to 1e-4. Most are format credit (0.01, 0.05 for any answer) or a partial
match; 1.0 is a hole in reasoning-gym's scorer, reported as is (rewards stay reasoning-gym's):
``game_of_life_halting`` scores every non-empty answer 1.0 (``bool(answer) == bool(entry["answer"])``),
and ``fraction_simplification``, ``gsm_symbolic``, ``letter_jumble``, ``sokoban``, ``spell_backward``,
``time_intervals`` read the first candidate of several."""
