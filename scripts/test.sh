#!/usr/bin/env bash
# Set up everything the tests need (venv; as root also a Docker engine and the sandbox image), then
# run the linter and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
if [ "$(id -u)" = 0 ] && [ -f .ci/docker.sh ]; then
  bash .ci/docker.sh
  bash .ci/browser.sh
fi
ruff check rewardkit tests benchmarks examples scripts
ruff format --check rewardkit tests benchmarks
python -m pytest -q -rs -p no:cacheprovider "$@"
