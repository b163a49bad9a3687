"""Building the sandbox image, with or without a container registry.

``dockerfile`` builds images/Dockerfile (needs registry access for its Debian base image).
``debootstrap`` needs only a Debian package mirror: it bootstraps a minimal Debian root filesystem
with python3 and imports it as an image (``tar -C DIR -c . | docker import``), which is how CI and
air-gapped machines get the image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rewardkit.sandbox.base import SandboxError
from rewardkit.sandbox.docker import DEFAULT_IMAGE

IMAGES_DIR = Path(__file__).parent / "images"
METHODS = ("auto", "debootstrap", "dockerfile")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Bulk that a sandbox never reads: dropping it makes the image about a third smaller.
TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
)


def build_image(
    name: str = DEFAULT_IMAGE,
    *,
    method: str = "auto",
    suite: str = "bookworm",
    mirror: str = DEFAULT_MIRROR,
    packages: tuple[str, ...] = (),
    force: bool = False,
) -> str:
    """Build the sandbox image ``name`` and return it; a no-op when it exists unless ``force``.

    ``auto`` uses debootstrap when it is installed and we are root (it works offline of any
    registry), else the Dockerfile. ``packages`` are extra Debian packages (debootstrap only; for
    the Dockerfile, edit it).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    import docker

    client = docker.from_env()
    if not force and _exists(client, name):
        return name
    if method == "auto":
        method = "debootstrap" if shutil.which("debootstrap") and os.geteuid() == 0 else "dockerfile"
    if method == "dockerfile":
        client.images.build(path=str(IMAGES_DIR), tag=name, rm=True)
    else:
        _debootstrap_import(client, name, suite, mirror, packages)
    return name


def _exists(client, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _debootstrap_import(client, name: str, suite: str, mirror: str, packages: tuple[str, ...]) -> None:
    if shutil.which("debootstrap") is None:
        raise SandboxError(
            "debootstrap is not installed (apt-get install debootstrap), or use method='dockerfile'"
        )
    if os.geteuid() != 0:
        raise SandboxError("the debootstrap method must run as root (it creates device nodes and chroots)")
    include = ",".join(("python3", *packages))
    with tempfile.TemporaryDirectory(prefix="rewardkit-rootfs-") as tmp:
        rootfs = os.path.join(tmp, "rootfs")
        cmd = ["debootstrap", "--variant=minbase", f"--include={include}", suite, rootfs, mirror]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SandboxError(
                f"debootstrap failed ({done.returncode}): {done.stderr[-2000:] or done.stdout[-2000:]}"
            )
        for path in TRIM:
            shutil.rmtree(os.path.join(rootfs, path), ignore_errors=True)
        tarball = os.path.join(tmp, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tarball, "."], check=True)
        repository, _, tag = name.partition(":")
        client.api.import_image_from_file(
            tarball,
            repository=repository,
            tag=tag or "latest",
            changes=["ENV PATH=/usr/local/bin:/usr/bin:/bin", "ENV LANG=C.UTF-8", "WORKDIR /tmp"],
        )
    if not _exists(client, name):
        raise SandboxError(f"docker import did not produce image {name!r}")
