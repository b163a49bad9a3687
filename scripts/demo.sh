#!/usr/bin/env bash
# Set up, then run the CPU demo (no downloads). Extra arguments go to `rewardkit demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
rewardkit demo "$@"
