"""``rewardkit pipeline``: stages chained by their outputs, the suite measured after each model, resumable
stage by stage, changed stages refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardkit.config import ConfigError  # noqa: E402
from rewardkit.pipeline import load_pipeline, run_pipeline, table  # noqa: E402

SUITE = {
    "defaults": {
        "n": 1,
        "k": [1],
        "sampling": {"temperature": 0.0, "max_tokens": 24},
        "tasks": {"generator": "rewardkit.demo:demo_tasks", "kwargs": {"split": "test", "n": 8, "seed": 0}},
    },
    "environments": [{"env": "math"}, {"env": "format"}],
}

CALLS: list[str] = []


def counted_inputs(output_dir: str, **kwargs) -> dict[str, str]:
    """``rewardkit.demo.pipeline_inputs``, counting its calls (a finished stage must not run again)."""
    from rewardkit.demo import pipeline_inputs

    CALLS.append(output_dir)
    return pipeline_inputs(output_dir, **kwargs)


def _pipeline(tmp_path: Path, **changes) -> Path:
    stages = [
        {
            "name": "start",
            "kind": "call",
            "function": f"{__name__}:counted_inputs",
            "kwargs": {"train_tasks": 120},
        },
        {
            "name": "sft",
            "kind": "sft",
            "config": {"steps": 8, "batch_size": 16, "lr": 3e-3, "eval_fraction": 0.0},
        },
        {
            "name": "samples",
            "kind": "sample",
            "n": 4,
            "temperature": 1.0,
            "suite": {
                "defaults": {
                    "sampling": {"max_tokens": 24, "seed": 1},
                    "tasks": {
                        "generator": "rewardkit.demo:demo_tasks",
                        "kwargs": {"split": "train", "n": 12, "seed": 0},
                    },
                },
                "environments": [
                    {"env": "efficiency", "config": {"max_length": 60}}
                ],  # rewards always differ
            },
        },
        {"name": "pairs", "kind": "pairs", "config": {"min_margin": 0.0}},
        {
            "name": "dpo",
            "kind": "train",
            "config": {"algorithm": "dpo", "steps": 2, "batch_size": 4, "eval_fraction": 0.0},
        },
    ]
    for name, change in changes.items():
        next(s for s in stages if s["name"] == name)["config"].update(change)
    path = tmp_path / "pipe.yaml"
    path.write_text(
        yaml.safe_dump({"output_dir": str(tmp_path / "out"), "suite": SUITE, "threads": 1, "stages": stages})
    )
    return path


def test_stages_feed_each_other_and_the_suite_is_measured_after_each_model(tmp_path, capsys):
    CALLS.clear()
    state = run_pipeline(load_pipeline(_pipeline(tmp_path)))
    out = tmp_path / "out"
    stages = state["stages"]
    assert stages["sft"]["outputs"]["model"].startswith(str(out / "sft" / "run" / "checkpoints"))
    dpo_cfg = json.loads((out / "dpo" / "run" / "checkpoints" / "step_000002" / "config.json").read_text())
    assert dpo_cfg["model"] == stages["sft"]["outputs"]["model"]  # dpo trained from sft's model ...
    assert dpo_cfg["data"] == stages["pairs"]["outputs"]["data"]  # ... on the pairs of sft's samples
    samples = json.loads((out / "samples" / "summary.json").read_text())
    assert samples["model"]["path"] == stages["sft"]["outputs"]["model"]  # sampled from sft's model
    assert [m["stage"] for m in state["measures"]] == ["start", "sft", "dpo"]
    assert set(state["measures"][0]) == {"stage", "model", "math", "format"}
    printed = capsys.readouterr().out
    assert "| after stage | math | format |" in printed and "| dpo |" in printed
    assert (out / "summary.md").read_text().strip() == table(state["measures"])


def test_a_second_run_skips_finished_stages_and_a_changed_one_is_refused(tmp_path):
    CALLS.clear()
    run_pipeline(load_pipeline(_pipeline(tmp_path)))
    assert len(CALLS) == 1
    run_pipeline(load_pipeline(_pipeline(tmp_path)))
    assert len(CALLS) == 1  # nothing ran again
    changed = _pipeline(tmp_path, dpo={"steps": 3})
    with pytest.raises(ConfigError, match="stage dpo .*--restart-from dpo"):
        run_pipeline(load_pipeline(changed))
    state = run_pipeline(load_pipeline(changed), restart_from="dpo")
    assert len(CALLS) == 1  # the stages before dpo stand
    assert state["stages"]["dpo"]["outputs"]["model"].endswith("step_000003/model")


def test_an_interrupted_stage_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """A failure inside dpo leaves the stages before it done; the next run starts at dpo."""
    import rewardkit.pipeline as pipeline

    CALLS.clear()
    real = pipeline._RUNNERS["train"]

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setitem(pipeline._RUNNERS, "train", broken)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(load_pipeline(_pipeline(tmp_path)))
    state = json.loads((tmp_path / "out" / "pipeline.json").read_text())
    assert set(state["stages"]) == {"start", "sft", "samples", "pairs"}
    monkeypatch.setitem(pipeline._RUNNERS, "train", real)
    state = run_pipeline(load_pipeline(_pipeline(tmp_path)))
    assert "dpo" in state["stages"] and len(CALLS) == 1


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"stages": []}, "stages"),
        ({"stages": [{"kind": "dance"}]}, "kind: got 'dance'"),
        ({"stages": [{"kind": "sample"}]}, "needs a suite"),
        ({"stages": [{"kind": "sft", "confg": {}}]}, "unknown keys \\['confg'\\]"),
        ({"stages": [{"kind": "sft", "name": "a"}, {"kind": "sft", "name": "a"}]}, "unique"),
        ({"stagse": []}, "unknown keys"),
    ],
)
def test_a_bad_pipeline_file_is_named(tmp_path, doc, message):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=message):
        load_pipeline(path)


def test_a_stage_without_its_input_says_what_is_missing(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump({"output_dir": str(tmp_path / "o"), "stages": [{"kind": "sft", "name": "s"}]})
    )
    with pytest.raises(ConfigError, match="stage s: no model"):
        run_pipeline(load_pipeline(path))


def test_the_example_pipelines_parse():
    root = Path(__file__).parents[1] / "examples" / "pipelines"
    files = sorted(root.glob("*.yaml"))
    assert files
    for f in files:
        assert f.read_text().splitlines()[0] == f"# rewardkit pipeline examples/pipelines/{f.name}"
        assert load_pipeline(f).stages


def _shrunk(path: Path, out: Path) -> dict:
    """An example pipeline at smoke size: every stage, a few steps each, samples scored by length (so
    that pairs and kept samples exist whatever a barely trained model writes)."""
    doc = yaml.safe_load(path.read_text())
    doc["output_dir"], doc["suite"] = str(out), SUITE
    for stage in doc["stages"]:
        config = stage.get("config", {})
        if stage["kind"] == "call":
            stage["kwargs"]["train_tasks"] = 120
        elif stage["kind"] in ("sft", "train"):
            config["steps"] = 2
            if "tasks_kwargs" not in config:  # an offline stage: too few examples to hold some out
                config["eval_fraction"] = 0.0
            else:
                config["tasks_kwargs"]["n"] = 120
                config["prompts_per_step"] = 2
        elif stage["kind"] == "sample":
            stage["suite"]["defaults"]["tasks"]["kwargs"]["n"] = 6
            stage["suite"]["environments"] = [{"env": "efficiency", "config": {"max_length": 60}}]
        elif stage["kind"] == "pairs":
            config["min_margin"] = 0.0
        elif stage["kind"] == "reject":
            config["threshold"] = 0.0
    return doc


@pytest.mark.parametrize("name", ["cpu", "r1"])
def test_the_example_pipelines_run_end_to_end(tmp_path, name):
    example = Path(__file__).parents[1] / "examples" / "pipelines" / f"{name}.yaml"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_shrunk(example, tmp_path / "out")))
    state = run_pipeline(load_pipeline(path))
    pipe = load_pipeline(example)
    assert list(state["stages"]) == [s.name for s in pipe.stages]
    makers = [s.name for s in pipe.stages if s.kind in ("call", "sft", "train")]
    assert [m["stage"] for m in state["measures"]] == makers  # a row after every model


def test_a_reference_under_data_is_the_stages_data_even_when_it_also_made_a_model():
    """``data: "@start"`` of a call stage that returns both a model and a dataset: the dataset (it used to
    resolve to the model's directory, so a second SFT from the start stage could not be written)."""
    from types import SimpleNamespace

    from rewardkit.pipeline import _ref

    pipe = SimpleNamespace(state={"stages": {"start": {"outputs": {"model": "m/", "data": "d.jsonl"}}}})
    assert _ref(pipe, "@start", "data") == "d.jsonl"
    assert _ref(pipe, "@start", "model") == "m/"
    assert _ref(pipe, "@start", "teacher") == "m/"
    with pytest.raises(ConfigError, match="no finished stage named 'nope'"):
        _ref(pipe, "@nope", "data")
