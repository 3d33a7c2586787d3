#!/usr/bin/env bash
# One call on a lent GPU node (no network, its own PyTorch): preflight, the offline install of wheelhouse/ (make
# wheelhouse), the staged GPU check within a budget, and the GPU test tier; everything it writes goes under OUT,
# the folder the node gives back. Run from the checkout:
#
#   scripts/device_check.sh "$OUT" [BUDGET_S]      # BUDGET_S (default 360): no stage starts that would end past it
#   STAGES=compile_sd21 scripts/device_check.sh "$OUT" 150   # a second call: the compile stage alone
#   PYTHON=.venv/bin/python GPU_SCALE=tiny SKIP_TESTS=1 scripts/device_check.sh /tmp/dc   # here, on the CPU, tiny models
#
# OUT/preflight.txt   Python, torch, CUDA, the GPU, gcc (model.compile), memory and disk, pip check
# OUT/install.txt     pip install --no-index --find-links wheelhouse -e . (skipped when the project imports already)
# OUT/gpu-check.jsonl one JSON line per stage as it ends (docs/cluster.md); OUT/gpu-check.log: each failure's traceback
# OUT/gpu-check.md    the tables for docs/results.md; OUT/test-gpu.txt: the GPU tier (SKIP_TESTS=1 leaves it out)
set -u
OUT=${1:?usage: scripts/device_check.sh OUT [BUDGET_S]}
BUDGET=${2:-360}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
cd "$(dirname "$0")/.." || exit 1

{
  echo "== $(date -u +%FT%TZ) $(uname -srm)"
  "$PY" -c 'import sys; print("python", sys.version.split()[0], sys.executable)'
  "$PY" -c 'import torch; c = torch.cuda.is_available(); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", c,
        torch.cuda.get_device_name(0) if c else "-", f"{torch.cuda.mem_get_info()[0] / 2**30:.1f} GiB free" if c else "")'
  if command -v gcc >/dev/null; then gcc --version | head -1; else echo "gcc: none (model.compile needs a C compiler)"; fi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
  free -g 2>/dev/null | head -2
  df -h . | tail -1
  "$PY" -m pip check
} > "$OUT/preflight.txt" 2>&1
echo "preflight: $OUT/preflight.txt"; head -4 "$OUT/preflight.txt"

if "$PY" -c 'import pipeline, diffusers, hydra, webdataset' 2>/dev/null; then
  echo "install: the project imports already" | tee "$OUT/install.txt"
elif [ -d wheelhouse ]; then
  if ! "$PY" -m pip install --no-index --find-links wheelhouse -e . > "$OUT/install.txt" 2>&1; then
    echo "install failed (the last lines of $OUT/install.txt):"; tail -15 "$OUT/install.txt"; exit 1
  fi
  echo "install: $(grep -c . "$OUT/install.txt") lines in $OUT/install.txt"
else
  echo "install: no wheelhouse/ here and the project does not import: make wheelhouse where there is network" | tee "$OUT/install.txt"
  exit 1
fi

"$PY" scripts/bench.py --only gpu --budget-s "$BUDGET" ${STAGES:+--gpu-stages "$STAGES"} ${GPU_SCALE:+--gpu-scale "$GPU_SCALE"} --out "$OUT/gpu-check.jsonl" \
  > "$OUT/gpu-check.md" 2> "$OUT/gpu-check.log"
status=$?
tail -40 "$OUT/gpu-check.md"
if [ -z "${SKIP_TESTS:-}" ] && [ -z "${STAGES:-}" ]; then
  "$PY" -m pytest -q -p no:cacheprovider -m gpu tests > "$OUT/test-gpu.txt" 2>&1
  echo "test-gpu: $(tail -1 "$OUT/test-gpu.txt")"
fi
exit $status
