#!/usr/bin/env bash
# Provide the headless browser the viewer's browser test drives: Debian's chromium and its matching
# chromedriver (Selenium talks to it; no driver is downloaded). Idempotent. Run as root (CI does).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo ".ci/browser.sh must run as root" >&2
  exit 1
fi
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
echo "installing: chromium chromium-driver"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
