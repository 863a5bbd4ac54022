#!/usr/bin/env bash
# GPU-only checks of sparsify, under 10 minutes on a GPU machine:
#   NCCL DDP on all GPUs, fp16 with GradScaler and HAM, bf16 + channels_last + torch.compile,
#   m ⊙ w vs dense step time on ResNet-50, 2:4 masks as torch.sparse semi-structured tensors.
# Usage, from anywhere:  bash scripts/gpu_check.sh [OUT]     (OUT: where logs go, default a temp dir)
# Without a GPU it says so and exits 0. Exit 1 if a check failed (its log is named).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "$GPUS" = "0" ]; then
    echo "gpu_check: no GPU here (torch.cuda.device_count() is 0): nothing to check"
    exit 0
fi
OUT=${1:-$(mktemp -d -t sparsify-gpu-check-XXXX)}
mkdir -p "$OUT"
echo "gpu_check: $GPUS GPU(s), logs in $OUT"
failed=0
# name and time limit (seconds) of each check; the limits add up to 9 min 45 s.
for check in ddp_nccl:120 fp16_ham:120 bf16_fast:180 step_time:120 semi_structured:45; do
    name=${check%%:*}
    limit=${check##*:}
    start=$(date +%s)
    if timeout "$limit" "$PYTHON" scripts/gpu_check.py "$name" "$OUT" > "$OUT/$name.out" 2>&1; then
        tail -n 1 "$OUT/$name.out"
    else
        echo "FAIL $name after $(( $(date +%s) - start )) s (limit $limit s): see $OUT/$name.out and $OUT/$name.log"
        failed=1
    fi
done
exit $failed
