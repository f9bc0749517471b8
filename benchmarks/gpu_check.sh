#!/usr/bin/env bash
# The GPU checks, as one command for a machine with a CUDA GPU (on this project's lent machines: the
# device tool's `run`, command `bash benchmarks/gpu_check.sh`, timeout_s 580). It uses the machine's own
# python3 and packages (nothing is downloaded) and writes every log and JSON to $OUT (default
# results/gpu-check). Most important first, each step under its own time limit, so a run cut short still
# leaves the correctness results:
#   1. tests on CUDA: tests/test_cuda.py (every method's GPU recipe under autocast, the fp16 GradScaler,
#      resume, CUDA vs CPU scores, nvJPEG decoding vs Pillow's, a --no-cache run on JPEGs decoded on the GPU,
#      pinned prefetched batches) and the colour and metric tests against scikit-image (BENCH_DEVICE=cuda);
#   2. training benchmark at the GPU recipes: bare step vs harness, FLOP/s as a share of a bf16 matmul
#      (unet's is the figure the 40%-of-peak aim is about);
#   3. the other benchmarks (colour, metrics, evaluation, data loading: crops per loader core from the cache,
#      from decoding and from nvJPEG, the unet step fed by the loader at the gpu recipe) on CUDA.
set -uo pipefail
OUT=${OUT:-results/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BENCH_DEVICE=${BENCH_DEVICE:-cuda} BENCH_RECIPE=${BENCH_RECIPE:-gpu}  # overridable for a dry run on CPU
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
PY=${PY:-python3}
status=0

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, remember a failure
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0))s"
    tail -n 25 "$OUT/$name.log"
    [ "$rc" -eq 0 ] || status=1
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    "$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0),
'bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported())"
    nproc
} 2>&1 | tee "$OUT/environment.txt"

step tests 230 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_color.py tests/test_metrics_functional.py \
    tests/test_metrics.py
step bench-train 170 "$PY" -m pytest -q -s -p no:cacheprovider benchmarks/test_bench_train.py --benchmark-only \
    --benchmark-json="$OUT/bench-train.json"
step bench-rest 150 "$PY" -m pytest -q -s -p no:cacheprovider benchmarks/test_bench_color.py \
    benchmarks/test_bench_metrics.py benchmarks/test_bench_eval.py benchmarks/test_bench_data.py --benchmark-only \
    --benchmark-json="$OUT/bench-rest.json"
exit $status
