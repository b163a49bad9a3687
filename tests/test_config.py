"""``rewardkit.config``: field docstrings, building a dataclass from data, --help-config text, argparse flags;
and every config dataclass of the package documents every field."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from rewardkit.config import (
    ConfigError,
    add_arguments,
    bad_value,
    build,
    check_choices,
    check_ranges,
    describe,
    field_docs,
    in_range,
    indent_doc,
    load_yaml,
    suggest,
    values_from_args,
)


@dataclass(frozen=True)
class Inner:
    """A nested config."""

    depth: int = 1
    """How deep."""
    mode: Literal["a", "b"] = "a"
    """Which mode."""


@dataclass(frozen=True)
class Sample:
    """A config with one field of each kind build() knows."""

    name: str
    """Required: no default."""
    backend: Literal["hf", "vllm", "auto"] = "hf"
    """Generation back end."""
    steps: int = 10
    """Optimizer steps, a multi-line
    docstring whose second line is indented."""
    lr: float = 1e-3
    """Learning rate; 100% of it."""
    greedy: bool = False
    """Sample greedily."""
    limit: int | None = None
    """At most this many (None: no limit)."""
    stop: tuple[str, ...] = ()
    """Stop strings."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Two floats."""
    ks: tuple[int, ...] | None = None
    """Several ints."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Passed through."""
    anything: Any = None
    """Passed through too."""
    inner: Inner = field(default_factory=Inner)
    """A nested config, built from a mapping."""
    undocumented: int = 0

    def __post_init__(self) -> None:
        check_ranges(self, {"steps": ">= 0", "lr": "> 0", "limit": "[1, 100]"}, where="sample")


# ---- field_docs -----------------------------------------------------------------------------------------
def test_field_docs_reads_the_string_under_each_field() -> None:
    docs = field_docs(Sample)
    assert docs["backend"] == "Generation back end."
    assert docs["steps"] == "Optimizer steps, a multi-line\ndocstring whose second line is indented."
    assert "undocumented" not in docs
    assert set(docs) == {f.name for f in dataclasses.fields(Sample)} - {"undocumented"}


def test_field_docs_of_a_nested_class_with_an_unindented_continuation_line() -> None:
    @dataclass
    class Local:
        x: int = 0
        """First line
and a continuation at column 0."""
        y: str = ""  # a comment, then no docstring
        z: str = ""
        """Zed."""

    assert field_docs(Local) == {"x": "First line\nand a continuation at column 0.", "z": "Zed."}


def test_field_docs_include_the_bases_and_a_subclass_wins() -> None:
    @dataclass
    class Base:
        a: int = 0
        """Base a."""
        b: int = 0
        """Base b."""

    @dataclass
    class Child(Base):
        b: int = 1
        """Child b."""
        c: int = 2
        """Child c."""

    assert field_docs(Child) == {"a": "Base a.", "b": "Child b.", "c": "Child c."}


def test_field_docs_of_a_class_without_source_is_empty() -> None:
    assert field_docs(dataclasses.make_dataclass("Made", [("x", int)])) == {}


# ---- build ----------------------------------------------------------------------------------------------
def test_unknown_key_names_the_key_the_config_the_allowed_keys_and_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        build(Sample, {"name": "x", "setps": 3, "bakend": "hf", "zzz": 1}, where="sample config")
    message = str(info.value)
    assert message.startswith("sample config: unknown keys ")
    assert "'setps' (did you mean 'steps'?)" in message and "'bakend' (did you mean 'backend'?)" in message
    assert "'zzz'" in message and "'zzz' (did you mean" not in message
    assert "allowed keys: name, backend, steps, lr," in message
    assert isinstance(info.value, ValueError)


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match="sample: missing required key.* name"):
        build(Sample, {}, where="sample")


def test_literal_error_names_the_key_the_value_and_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        build(Sample, {"name": "x", "backend": "vlm"}, where="sample")
    assert str(info.value) == (
        "sample: backend: got 'vlm', expected one of 'hf', 'vllm', 'auto' (did you mean 'vllm'?)"
    )
    assert (info.value.key, info.value.detail) == ("backend", str(info.value).split("backend: ", 1)[1])


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("steps", "3", "steps: got '3', expected an int"),
        ("steps", True, "steps: got True, expected an int"),
        ("steps", 2.5, "steps: got 2.5, expected an int"),
        ("lr", "fast", "lr: got 'fast', expected a float"),
        ("lr", False, "lr: got False, expected a float"),
        ("greedy", 1, "greedy: got 1, expected a bool (true or false)"),
        ("name", 7, "name: got 7, expected a string"),
        ("name", None, "name: got None, expected a string"),
        ("limit", "many", "limit: got 'many', expected an int or None"),
        ("extra", [1], "extra: got [1], expected a mapping"),
        ("stop", {"a": 1}, "stop: got {'a': 1}, expected a list (tuple[str, ...])"),
        ("stop", ["x", 3], "stop[1]: got 3, expected a string"),
        ("betas", [0.9], "betas: got [0.9], expected a list of 2 items (tuple[float, float])"),
        ("ks", [1, "two"], "ks[1]: got 'two', expected an int"),
    ],
)
def test_type_errors_name_the_key_and_the_expected_type(key: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(Sample, {"name": "x", key: value}, where="sample")
    assert str(info.value) == f"sample: {expected}"


def test_values_are_converted_to_the_annotation() -> None:
    cfg = build(
        Sample,
        {"name": "x", "lr": 1, "stop": ["a", "b"], "betas": [0, 0.5], "ks": [1, 2], "limit": None},
        where="sample",
    )
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.stop == ("a", "b") and cfg.betas == (0.0, 0.5) and cfg.ks == (1, 2) and cfg.limit is None
    assert build(Sample, {"name": "x", "stop": "\n"}, where="s").stop == ("\n",)  # one value: one item
    assert build(Sample, load_yaml("name: x\nlr: 1e-5"), where="s").lr == 1e-5  # YAML 1.1 would read a str
    with pytest.raises(ConfigError, match="lr"):
        build(Sample, {"name": "x", "lr": "1e-5"}, where="s")  # a string is no float


def test_dict_and_any_pass_through() -> None:
    extra = {"nested": [1, {"x": None}]}
    cfg = build(Sample, {"name": "x", "extra": extra, "anything": object}, where="s")
    assert cfg.extra == extra and cfg.anything is object


def test_nested_dataclass_is_built_from_a_mapping() -> None:
    cfg = build(Sample, {"name": "x", "inner": {"depth": 3, "mode": "b"}}, where="s")
    assert cfg.inner == Inner(depth=3, mode="b")
    assert build(Sample, {"name": "x", "inner": Inner(2)}, where="s").inner == Inner(2)
    with pytest.raises(ConfigError, match=r"s: unknown key 'inner.dept' \(did you mean 'inner.depth'\?\)"):
        build(Sample, {"name": "x", "inner": {"dept": 3}}, where="s")
    with pytest.raises(ConfigError, match="s: inner.mode: got 'c', expected one of 'a', 'b'"):
        build(Sample, {"name": "x", "inner": {"mode": "c"}}, where="s")
    with pytest.raises(ConfigError, match="s: inner: got 3, expected a mapping of Inner fields"):
        build(Sample, {"name": "x", "inner": 3}, where="s")


def test_post_init_still_runs_and_data_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="steps: got -1, expected >= 0"):
        build(Sample, {"name": "x", "steps": -1}, where="s")
    with pytest.raises(ConfigError, match=r"s: got \['name'\], expected a mapping of Sample fields"):
        build(Sample, ["name"], where="s")  # type: ignore[arg-type]


def test_check_choices_checks_literals_of_a_constructed_instance() -> None:
    check_choices(Sample(name="x"), where="s")
    with pytest.raises(ConfigError, match="s: backend: got 'tgi', expected one of 'hf', 'vllm', 'auto'"):
        check_choices(Sample(name="x", backend="tgi"), where="s")  # type: ignore[arg-type]


def test_suggest() -> None:
    assert suggest("temprature", ["temperature", "top_p"]) == " (did you mean 'temperature'?)"
    assert suggest("zzz", ["temperature"]) == ""


def test_every_bad_value_message_puts_the_key_first() -> None:
    error = bad_value("train config", "lr", "fast", "a float")
    assert str(error) == "train config: lr: got 'fast', expected a float"
    assert (error.key, error.detail) == ("lr", "got 'fast', expected a float")
    moved = error.at("run", "optim.")
    assert str(moved) == "run: optim.lr: got 'fast', expected a float" and moved.key == "optim.lr"
    plain = ConfigError("no key in this one")
    assert plain.at("run", "x.") is plain


# ---- ranges ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "rule", "ok"),
    [
        (1, ">= 1", True),
        (0, ">= 1", False),
        (1e-9, "> 0", True),
        (0.0, "> 0", False),
        (-1, "<= 0", True),
        (0.5, "(0, 1]", True),
        (1, "(0, 1]", True),
        (0, "(0, 1]", False),
        (1.0, "[0, 1)", False),
        (10**9, "[1, inf)", True),
        ("3", ">= 1", False),  # no number satisfies no rule
        (True, ">= 0", False),
    ],
)
def test_in_range(value: Any, rule: str, ok: bool) -> None:
    assert in_range(value, rule) is ok


def test_check_ranges_names_the_key_and_the_range_and_skips_none() -> None:
    Sample(name="x", limit=None)  # None is the annotation's business, not the range's
    with pytest.raises(ConfigError) as info:
        Sample(name="x", lr=0.0)
    assert str(info.value) == "sample: lr: got 0.0, expected > 0"
    with pytest.raises(ConfigError, match=r"^sample: limit: got 101, expected a value in \[1, 100\]$"):
        Sample(name="x", limit=101)
    with pytest.raises(ValueError, match="not a range rule"):
        check_ranges(Sample(name="x"), {"steps": "positive"}, where="s")


def test_build_prefix_names_the_keys_of_a_nested_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        build(Inner, {"dept": 2}, where="run", prefix="inner.")
    assert str(info.value).startswith("run: unknown key 'inner.dept' (did you mean 'inner.depth'?)")
    assert "allowed keys of inner: depth, mode" in str(info.value)
    with pytest.raises(ConfigError, match="^run: inner.mode: got 'c', expected one of 'a', 'b'$"):
        build(Inner, {"mode": "c"}, where="run", prefix="inner.")
    with pytest.raises(ConfigError, match="^run: inner: got 3, expected a mapping of Inner fields$"):
        build(Inner, 3, where="run", prefix="inner.")  # type: ignore[arg-type]


def test_a_post_init_error_is_re_addressed_to_the_builder() -> None:
    """``Sample.__post_init__`` says "sample"; built as part of something else, the message says where."""
    with pytest.raises(ConfigError, match=r"^job config: sample.steps: got -1, expected >= 0$"):
        build(Sample, {"name": "x", "steps": -1}, where="job config", prefix="sample.")


# ---- describe -------------------------------------------------------------------------------------------
def test_describe_lists_every_field_with_type_default_and_docstring() -> None:
    text = describe(Sample)
    for f in dataclasses.fields(Sample):
        assert f"\n{f.name}: " in "\n" + text
    assert "name: str (required)\n    Required: no default." in text
    assert "backend: 'hf' | 'vllm' | 'auto' = 'hf'\n    Generation back end." in text
    assert "steps: int = 10\n    Optimizer steps, a multi-line\n    docstring whose second line" in text
    assert "limit: int | None = None" in text and "stop: tuple[str, ...] = ()" in text
    assert "extra: dict[str, Any] = {}" in text and "inner: Inner = Inner(depth=1, mode='a')" in text
    assert text.endswith("undocumented: int = 0")
    assert describe(Inner, prefix="inner.").startswith("inner.depth: int = 1\n    How deep.")


def test_describe_prints_whole_docstrings_and_wraps_only_long_lines() -> None:
    @dataclass
    class Long:
        x: int = 0
        """Short first line.
        Second line, kept where the author broke it.

        A paragraph after a blank line, then a line longer than the width of sixty: word word word word word.
        """

    text = describe(Long, width=60)
    lines = text.splitlines()
    assert lines[:4] == [
        "x: int = 0",
        "    Short first line.",
        "    Second line, kept where the author broke it.",
        "",
    ]
    assert all(len(line) <= 60 for line in lines)
    assert " ".join(text.split()).endswith(
        "then a line longer than the width of sixty: word word word word word."
    )
    assert len(lines) == 6  # the long line became two
    assert indent_doc("a\n  b", width=80) == "    a\n      b"  # a line's own indent is kept


# ---- argparse -------------------------------------------------------------------------------------------
def _parser(**kw: Any) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    add_arguments(parser, Sample, skip=("extra", "anything", "inner"), **kw)
    return parser


def test_argparse_round_trip() -> None:
    parser = _parser(flag_names={"limit": ("-l", "--max-items")})
    argv = "--name run --backend vllm --steps 3 --lr 0.5 --greedy -l 4 --stop a,b --betas 0.8,0.9 --ks 1,2,4"
    values = values_from_args(parser.parse_args(argv.split()), Sample)
    assert values == {
        "name": "run",
        "backend": "vllm",
        "steps": 3,
        "lr": 0.5,
        "greedy": True,
        "limit": 4,
        "stop": ("a", "b"),
        "betas": (0.8, 0.9),
        "ks": (1, 2, 4),
    }
    cfg = build(Sample, values, where="t")
    assert cfg == Sample(name="run", backend="vllm", steps=3, lr=0.5, greedy=True, limit=4, stop=("a", "b"),
                         betas=(0.8, 0.9), ks=(1, 2, 4))  # fmt: skip


def test_flags_not_given_leave_no_value() -> None:
    parser = _parser()
    assert values_from_args(parser.parse_args([]), Sample) == {}
    assert values_from_args(parser.parse_args(["--no-greedy"]), Sample) == {"greedy": False}


def test_choices_types_and_help_come_from_the_dataclass() -> None:
    parser = _parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--backend", "tgi"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--ks", "1,x"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--steps", "many"])
    text = " ".join(parser.format_help().split())
    assert "--backend {hf,vllm,auto} Generation back end. (default: hf)" in text
    assert "--greedy, --no-greedy Sample greedily." in text
    assert "Optimizer steps, a multi-line docstring whose second line is indented. (default: 10)" in text
    assert "Learning rate; 100% of it. (default: 0.001)" in text  # % survives argparse's formatting
    assert (
        "--ks INT,... Several ints." in text and "--betas FLOAT,... Two floats. (default: 0.9,0.99)" in text
    )


def test_only_skip_and_fields_without_a_flag_form() -> None:
    group = argparse.ArgumentParser().add_argument_group("g")
    assert add_arguments(group, Sample, only=("steps", "lr"), skip=("lr",)) == ["steps"]
    with pytest.raises(TypeError, match=r"Sample.extra: dict\[str, Any\] has no command-line form"):
        add_arguments(argparse.ArgumentParser(), Sample)
    with pytest.raises(ValueError, match="no field"):
        add_arguments(argparse.ArgumentParser(), Sample, only=("nope",))


# ---- every config of the package documents every field --------------------------------------------------
PACKAGE = Path(importlib.util.find_spec("rewardkit").origin).parent  # type: ignore[arg-type, union-attr]
MODULES = sorted(
    ".".join(("rewardkit", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
)
DOCUMENTED = ("SamplingParams", "Overrides")


def _import_or_skip(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top and top != "rewardkit" and importlib.util.find_spec(top) is None:
            pytest.skip(f"{module} needs {top}, which is not installed")
        raise


@pytest.mark.parametrize("module", MODULES)
def test_every_config_field_has_a_docstring(module: str) -> None:
    mod = _import_or_skip(module)
    configs = [
        obj
        for obj in vars(mod).values()
        if isinstance(obj, type)
        and dataclasses.is_dataclass(obj)
        and obj.__module__ == module
        and (obj.__name__.endswith("Config") or obj.__name__ in DOCUMENTED)
    ]
    missing = {}
    for cls in configs:
        docs = field_docs(cls)
        undocumented = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name, "").strip()]
        if undocumented:
            missing[cls.__qualname__] = undocumented
    assert not missing, f"{module}: fields without an attribute docstring: {missing}"


def test_the_walk_finds_the_configs() -> None:
    assert {"rewardkit.rl.config", "rewardkit.eval.config", "rewardkit.generation.base"} <= set(MODULES)
    assert "rewardkit.config" in MODULES and "rewardkit" in MODULES


# ---- the eval configs check their ranges too ------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"n": 0}, "rewardkit eval: n: got 0, expected >= 1"),
        ({"temperature": -0.5}, "rewardkit eval: temperature: got -0.5, expected >= 0"),
        ({"top_p": 0.0}, "rewardkit eval: top_p: got 0.0, expected a value in (0, 1]"),
        ({"max_tokens": 0}, "rewardkit eval: max_tokens: got 0, expected >= 1"),
        ({"num_tasks": 0}, "rewardkit eval: num_tasks: got 0, expected >= 1"),
        ({"batch_tasks": 0}, "rewardkit eval: batch_tasks: got 0, expected >= 1"),
        ({"k": (0, 2)}, "rewardkit eval: k: got [0, 2], expected one or more values >= 1"),
        ({"n": 4, "k": (1, 8)}, "rewardkit eval: k: got [1, 8], expected values <= n=4"),
    ],
)
def test_eval_overrides_are_checked_when_the_flags_are_read(values: dict[str, Any], message: str) -> None:
    from rewardkit.eval.suite import Overrides

    with pytest.raises(ConfigError) as info:
        build(Overrides, values, where="rewardkit eval")
    assert str(info.value).startswith(message)
    # without --n, the suite's n is the bound: EnvEval checks k there
    assert build(Overrides, {"k": (1, 8)}, where="rewardkit eval").k == (1, 8)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_batch_size": 0}, "rewardkit eval: max_batch_size: got 0, expected >= 1"),
        ({"step": -1}, "rewardkit eval: step: got -1, expected >= 0"),
        ({"model": ""}, "rewardkit eval: model: got '', expected a run directory"),
        (
            {"backend": "vlm"},
            "rewardkit eval: backend: got 'vlm', expected one of 'hf', 'vllm', 'auto' (did you mean",
        ),
    ],
)
def test_eval_config_ranges(values: dict[str, Any], message: str) -> None:
    from rewardkit.eval.config import EvalConfig

    with pytest.raises(ConfigError) as info:
        build(EvalConfig, {"model": "m", "output_dir": "o", **values}, where="rewardkit eval")
    assert str(info.value).startswith(message)
