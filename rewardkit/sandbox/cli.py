"""``rewardkit sandbox ...`` commands. rewardkit/cli.py calls ``add_parser(subparsers)``.

Each leaf command stores its handler as ``func`` (``handler(args) -> int`` exit status).
"""

from __future__ import annotations

import argparse
import json

from rewardkit.sandbox.docker import DEFAULT_IMAGE
from rewardkit.sandbox.image import DEFAULT_MIRROR, METHODS


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``sandbox build-image`` and ``sandbox check`` under ``subparsers``."""
    parser = subparsers.add_parser("sandbox", help="build and check the code-execution sandbox")
    commands = parser.add_subparsers(dest="sandbox_command", required=True)

    build = commands.add_parser("build-image", help="build the docker sandbox image (offline-capable)")
    build.add_argument("--name", default=DEFAULT_IMAGE, help=f"image name (default {DEFAULT_IMAGE})")
    build.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="debootstrap: no registry needed, root only; dockerfile: docker build; auto: debootstrap when possible",
    )
    build.add_argument("--mirror", default=DEFAULT_MIRROR, help="Debian mirror for debootstrap")
    build.add_argument("--package", action="append", default=[], help="extra Debian package (repeatable)")
    build.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    build.set_defaults(func=_build_image)

    check = commands.add_parser("check", help="run a trivial program in a sandbox and print its protections")
    check.add_argument("--kind", choices=("local", "docker"), default="docker")
    check.add_argument("--image", default=DEFAULT_IMAGE, help="docker image (docker kind only)")
    check.set_defaults(func=_check)
    return parser


def _build_image(args: argparse.Namespace) -> int:
    from rewardkit.sandbox.image import build_image

    name = build_image(
        args.name, method=args.method, mirror=args.mirror, packages=tuple(args.package), force=args.force
    )
    print(f"image ready: {name}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from rewardkit.sandbox import get_sandbox

    options = {"image": args.image, "pool_size": 1} if args.kind == "docker" else {}
    sandbox = get_sandbox(args.kind, **options)
    try:
        result = sandbox.run("print(6 * 7)", timeout_s=10.0)
        report = {
            "kind": args.kind,
            "ok": result.stdout.strip() == "42",
            "protections": sandbox.protections(),
        }
    finally:
        sandbox.close()
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1
