#!/usr/bin/env bash
# Wheels that `python -m benchmarks.versus_trl --device cuda` needs on the GPU machine and that its image lacks
# (it has torch, transformers, peft, accelerate, pyarrow, pandas, xxhash, fsspec, huggingface-hub, but not trl,
# datasets, dill or multiprocess), for Python 3.12 on manylinux x86_64, into .whl/ (ignored by git).
# TRL imports `datasets` at import time and SFTTrainer accepts only a `datasets.Dataset`, so datasets travels too.
#
#   bash benchmarks/device_wheels.sh            # here, with network access to PyPI
#   # there, first in the command (the device README's recipe):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#       .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH
set -euo pipefail
cd "$(dirname "$0")/.."
# Pinned to the versions the CPU comparison ran with; dill and multiprocess are the ones datasets 5.2.0 accepts.
WHEELS=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19)
rm -rf .whl && mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl
du -sh .whl
