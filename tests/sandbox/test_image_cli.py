"""Image building and the ``rewardkit sandbox`` commands."""

from __future__ import annotations

import argparse
import json

import pytest

from rewardkit.sandbox import SandboxError, build_image
from rewardkit.sandbox.cli import add_parser
from rewardkit.sandbox.docker import DEFAULT_IMAGE
from rewardkit.sandbox.image import IMAGES_DIR

from .conftest import docker_or_skip


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rewardkit")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_dockerfile_ships_with_the_package():
    text = (IMAGES_DIR / "Dockerfile").read_text()
    assert "python3" in text and "USER 65534" in text


def test_build_image_arguments_parse():
    args = parse("sandbox", "build-image", "--name", "mine:1", "--method", "debootstrap", "--package", "gcc")
    assert (args.name, args.method, args.package, args.force) == ("mine:1", "debootstrap", ["gcc"], False)
    assert callable(args.func)
    with pytest.raises(SystemExit):
        parse("sandbox", "build-image", "--method", "magic")


def test_build_image_is_a_no_op_when_the_image_exists(capsys):
    docker_or_skip(pool_size=1).close()  # the engine and the default image are there
    assert build_image(DEFAULT_IMAGE) == DEFAULT_IMAGE
    args = parse("sandbox", "build-image")
    assert args.func(args) == 0
    assert DEFAULT_IMAGE in capsys.readouterr().out


def test_build_image_rejects_unknown_methods():
    with pytest.raises(ValueError, match="method"):
        build_image("x:1", method="magic")


def test_debootstrap_needs_the_tool(monkeypatch):
    """Without debootstrap on PATH the error says what to install instead of failing obscurely."""
    docker_or_skip(pool_size=1).close()
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxError, match="debootstrap"):
        build_image("rewardkit-test-never:0", method="debootstrap", force=True)


@pytest.mark.parametrize("kind", ["local", "docker"])
def test_check_command_runs_a_program_and_lists_protections(kind, capsys):
    if kind == "docker":
        docker_or_skip(pool_size=1).close()
    args = parse("sandbox", "check", "--kind", kind)
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["kind"] == kind
    assert report["protections"]["network"] is True
