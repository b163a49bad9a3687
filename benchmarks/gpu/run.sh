#!/usr/bin/env bash
# The GPU benchmark in one call, for a lent GPU machine with no network (see benchmarks/gpu/bench.py).
#
#   bash benchmarks/gpu/run.sh            # writes benchmarks/gpu/out/section.md (and the JSON on stderr)
#   bash benchmarks/gpu/run.sh --dry-run  # the same code path at toy size, on CPU (CI runs this)
#
# The machine has torch, transformers, peft, accelerate, safetensors and tokenizers, nothing else.
# rewardkit runs from this tree (PYTHONPATH); its other pure-Python needs, and TRL and datasets for the
# TRL column, are installed from wheels carried in benchmarks/gpu/wheels when that folder is there
# (made beforehand on a machine with PyPI: bash benchmarks/gpu/run.sh --fetch-wheels; about 15 MB).
# vLLM does not fit in what can be carried: its column says "not installed" unless the machine has it.
set -euo pipefail
PY="${PYTHON:-$(command -v python || command -v python3)}"
cd "$(dirname "$0")/../.."
WHEELS=benchmarks/gpu/wheels
if [ "${1:-}" = "--fetch-wheels" ]; then
  # rewardkit's own light dependencies (sympy may already be there with torch), then TRL's and datasets'
  "$PY" -m pip download --no-deps -d "$WHEELS" cloudpickle "math-verify[antlr4_13_2]" \
    latex2sympy2_extended antlr4-python3-runtime==4.13.2 pyyaml tqdm docker \
    trl datasets pyarrow dill multiprocess xxhash fsspec
  exit 0
fi
if [ -d "$WHEELS" ]; then
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps "$WHEELS"/*.whl || \
    echo "[run.sh] some carried wheels did not install; the measurements that need them will say so" >&2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "${OUT:-benchmarks/gpu/out}"
"$PY" benchmarks/gpu/bench.py --out "${OUT:-benchmarks/gpu/out}/section.md" "$@"
