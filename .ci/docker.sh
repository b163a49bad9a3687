#!/usr/bin/env bash
# Provide a Docker engine and the rewardkit sandbox image, idempotently. Run as root (CI does).
#   bash .ci/docker.sh
# Installs docker.io, debootstrap and bubblewrap with apt-get when missing, starts dockerd in the
# background when no engine answers, waits for it, and builds the default image when absent (offline
# path: debootstrap a minimal Debian with python3 and `docker import` it; no registry needed).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo ".ci/docker.sh must run as root" >&2
  exit 1
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v bwrap >/dev/null || missing+=(bubblewrap)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log: /tmp/dockerd.log)"
  nohup dockerd >/tmp/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "dockerd did not come up; last log lines:" >&2
    tail -20 /tmp/dockerd.log >&2
    exit 1
  fi
fi

image="${REWARDKIT_SANDBOX_IMAGE:-rewardkit-sandbox:latest}"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  echo "building $image (debootstrap, about a minute)"
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
  "$python" -c "from rewardkit.sandbox import build_image; print(build_image('$image', method='debootstrap'))"
fi
echo "docker sandbox ready: $image"
