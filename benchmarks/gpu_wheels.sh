#!/usr/bin/env bash
# Download, here (PyPI reachable), the wheels the GPU machine lacks, into .whl/ (ignored by git:
# `/.whl/` in .git/info/exclude; never commit wheels). benchmarks/gpu_check.sh installs them there.
#
# That machine: Python 3.12, torch 2.11, transformers 5.17, accelerate 1.15, pyarrow, pandas, fsspec,
# xxhash, huggingface-hub 1.33, timm, regex, ... (/work/.library/device/KINDS.md). Missing there:
#   open_clip_torch (+ ftfy, wcwidth)        CLIP towers
#   datasets (+ dill, multiprocess)           the dataset directories (pyarrow, pandas, xxhash are there)
#   transformers 5.24                         models/decoding.py passes the KV cache as `cache=`, the
#                                             name transformers adopted after 5.17 (5.17 calls it
#                                             `past_key_values`); 5.24's needs (huggingface-hub >= 1.31,
#                                             tokenizers 0.23, safetensors >= 0.8) are met there
# Versions: those this project is tested with (pip list in the project's environment).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
        transformers==5.24.0)
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
ls -la .whl
du -sh .whl
