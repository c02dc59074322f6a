#!/usr/bin/env bash
# The GPU check in one command (benchmarks/gpu_check.py says what it measures):
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine: ~7 minutes, JSON to $OUT or benchmarks/results
#   bash benchmarks/gpu_check.sh --cpu-dry-run   # every part at toy size on a CPU (tests/test_gpu_check.py)
#
# The GPU machine has no network and lacks a few packages: benchmarks/gpu_wheels.sh downloads their
# wheels into .whl/ beforehand (here), and this script installs them into /tmp/site first. The
# project runs from this checkout, uninstalled (PYTHONPATH). PYTHON overrides the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
dry=0
for arg in "$@"; do [[ $arg == --cpu-dry-run ]] && dry=1; done
if [[ $dry == 0 ]] && compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || echo "WARNING: installing the carried wheels failed; the environment part of the JSON says what is missing"
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec "$PYTHON" benchmarks/gpu_check.py "$@"
