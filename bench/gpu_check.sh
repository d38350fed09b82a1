#!/usr/bin/env bash
# The one-shot GPU check (see bench/gpu_check.py): versions and CUDA agreement, every test marked
# gpu, zero-copy gather vs pinned cudaMemcpy vs CPU gather + copy, GPU vs CPU sampler, 2 epochs
# with --features uva / gpu / cpu; the last line is one JSON summary. Installs nothing: gnnsys
# runs from this checkout. Without a GPU, --dry-run (or any run) exits 1 at once with one line.
#
#   bash bench/gpu_check.sh [--dry-run] [--scale 0.5] [--max-batches 60]
set -u
cd "$(dirname "$0")/.." || exit 1
PY="$(command -v python || command -v python3)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OUTDATED_IGNORE=1
exec "$PY" bench/gpu_check.py "$@"
