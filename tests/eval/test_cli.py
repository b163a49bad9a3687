"""``rewardkit eval``'s flags come from EvalConfig and Overrides; the spellings users rely on still parse.

No model runs here (tests/eval/test_evaluate.py runs the command end to end).
"""

from __future__ import annotations

import argparse

import pytest

from rewardkit.cli import build_parser
from rewardkit.config import ConfigError, field_docs
from rewardkit.eval.cli import _suite, cmd_eval
from rewardkit.eval.config import EvalConfig
from rewardkit.eval.suite import Overrides


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["eval", *argv])


def built(args: argparse.Namespace) -> tuple[EvalConfig, Overrides]:
    """The EvalConfig and Overrides that cmd_eval builds from ``args``."""
    from rewardkit.config import build, values_from_args

    return (
        build(EvalConfig, values_from_args(args, EvalConfig), where="t"),
        build(Overrides, values_from_args(args, Overrides), where="t"),
    )


def test_every_flag_spelling_parses_into_the_configs() -> None:
    args = parse(
        *("--model", "runs/x", "--step", "3", "--suite", "smoke", "--output-dir", "out"),
        *("--n", "4", "--k", "1,2,4", "--num-tasks", "5", "--batch-tasks", "2", "--chat"),
        *("--temperature", "0.5", "--top-p", "0.9", "--max-new-tokens", "6", "--seed", "7"),
        *("--backend", "vllm", "--dtype", "bf16", "--max-batch-size", "8", "--resume", "-q"),
    )
    cfg, overrides = built(args)
    assert cfg == EvalConfig(
        model="runs/x",
        output_dir="out",
        step=3,
        backend="vllm",
        dtype="bf16",
        max_batch_size=8,
        resume=True,
        progress=False,
    )
    assert overrides == Overrides(
        n=4,
        k=(1, 2, 4),
        num_tasks=5,
        batch_tasks=2,
        chat=True,
        temperature=0.5,
        top_p=0.9,
        max_tokens=6,
        seed=7,
    )
    assert args.suite == "smoke" and args.envs is None and args.tasks == "test" and args.tasks_arg == []


def test_flags_not_given_keep_the_dataclass_defaults() -> None:
    cfg, overrides = built(parse("--model", "m", "--output-dir", "o", "--envs", "math"))
    assert cfg == EvalConfig(model="m", output_dir="o")
    assert overrides == Overrides()


def test_boolean_flags_have_negations_and_quiet_turns_progress_off() -> None:
    assert built(parse("--model", "m", "--output-dir", "o", "--no-chat"))[1].chat is False
    assert built(parse("--model", "m", "--output-dir", "o", "--quiet"))[0].progress is False
    assert built(parse("--model", "m", "--output-dir", "o", "--no-progress"))[0].progress is False
    with pytest.raises(ConfigError, match="--resume and --overwrite"):
        built(parse("--model", "m", "--output-dir", "o", "--resume", "--overwrite"))


@pytest.mark.parametrize(
    "argv", [("--backend", "tgi"), ("--dtype", "fp16"), ("--k", "1,two"), ("--n", "many"), ("--top-p", "x")]
)
def test_bad_flag_values_are_refused_by_argparse(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_help_shows_each_field_docstring() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = " ".join(sub.choices["eval"].format_help().split())
    for cls in (EvalConfig, Overrides):
        for name, doc in field_docs(cls).items():
            assert " ".join(doc.replace("``", "").split()[:4]) in text, (cls.__name__, name)
    assert "--max-new-tokens MAX_NEW_TOKENS" in text and "--k INT,..." in text and "-q, --quiet" in text


def test_missing_model_or_output_dir_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_eval(parse("--suite", "smoke")) == 2
    assert "needs --model and --output-dir" in capsys.readouterr().err
    assert cmd_eval(parse("--model", "m", "--output-dir", "o")) == 2
    assert "exactly one of --suite" in capsys.readouterr().err


def test_overrides_reach_the_suite() -> None:
    suite = _suite(parse("--suite", "smoke", "--n", "4", "--k", "1,4", "--max-new-tokens", "9", "--no-chat"))
    for entry in suite.environments:
        assert (entry.n, entry.k, entry.sampling.max_tokens, entry.chat) == (4, (1, 4), 9, False)
    adhoc = _suite(parse("--envs", "math,format", "--tasks", "test", "--num-tasks", "2"))
    assert [e.env for e in adhoc.environments] == ["math", "format"]
    assert all(e.num_tasks == 2 and e.tasks.split == "test" for e in adhoc.environments)
