#!/usr/bin/env bash
# The command run on the lent NVIDIA GPU for issues 4 and 12 (results: benchmarks/RESULTS.md).
# Needs amd_aiter-0.1.7.post2.dev18-py3-none-any.whl (pip download, see .library/device/README.md) in $WHEELS (default
# .whl), carried along. SMOKE and PROBE name the scripts to run (default: this checkout's checks/).
# Runs the full smoke test cold (empty Triton and bytecode caches), warm (both caches kept), warm with the Triton cache
# only (how issue 4 measured "warm"), with an empty Triton cache but bytecode (as in an image pip installed: pip
# compiles bytecode at install), --quick cold, and cold again with new empty caches ("cold2"), then the probe; with
# SMOKE_BEFORE set (another version of the script), that one cold and Triton-only warm on the same machine. JSON and logs
# go to $OUT/runs.tar.gz, the summary to $OUT (at most 8 files come back from the device).
set -uo pipefail
OUT=${OUT:-/tmp/smoke-out}
WHEELS=${WHEELS:-.whl}
SMOKE=${SMOKE:-checks/smoke_layernorm.py}
PROBE=${PROBE:-checks/probe.py}
SMOKE_BEFORE=${SMOKE_BEFORE:-}
SUMMARY=${SUMMARY:-$(dirname "$0")/gpu_smoke_summary.py}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
unset PYTHONDONTWRITEBYTECODE  # the bytecode cache lives under PYTHONPYCACHEPREFIX, never in the image's site-packages

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$OUT/machine.txt"
python3 -B -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)' |
  tee -a "$OUT/machine.txt"

case "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" in
  *H200*) peak=4800 ;;   # H200 SXM HBM3e datasheet
  *H100*PCIe*) peak=2000 ;;
  *H100*NVL*) peak=3900 ;;
  *H100*) peak=3350 ;;   # H100 SXM5 HBM3 datasheet
  *) peak=0 ;;
esac

smoke() {  # smoke NAME TRITON_CACHE_DIR BYTECODE_CACHE_DIR|- [extra flags]: one timed run; JSON to $OUT, log to /tmp
  local name=$1 cache=$2 pyc=$3 start rc wall own
  shift 3
  start=$(date +%s%N)
  if [ "$pyc" = - ]; then
    TRITON_CACHE_DIR=$cache python3 -B -P "$SMOKE" --json --impl aiter-triton,torch,torch-upcast --device cuda \
      --peak-bandwidth-gbs "$peak" --gate-max-kernels 1 --gate-min-speedup 2 --gate-min-ceiling-frac 0.4 "$@" \
      >"$OUT/smoke-$name.json" 2>"/tmp/smoke-$name.log"
  else
    TRITON_CACHE_DIR=$cache PYTHONPYCACHEPREFIX=$pyc python3 -P "$SMOKE" --json --impl aiter-triton,torch,torch-upcast \
      --device cuda --peak-bandwidth-gbs "$peak" --gate-max-kernels 1 --gate-min-speedup 2 --gate-min-ceiling-frac 0.4 "$@" \
      >"$OUT/smoke-$name.json" 2>"/tmp/smoke-$name.log"
  fi
  rc=$?
  wall=$(( ($(date +%s%N) - start) / 1000000 ))
  # the script's own last line gives the seconds from its torch import to its end; the rest is start-up and exit
  own=$(grep -o 'done: [0-9.]* s' "/tmp/smoke-$name.log")
  echo "$name: exit $rc, $wall ms wall (process start to exit), script's own: $own" |
    tee -a "$OUT/machine.txt"
}
smoke cold /tmp/triton-full /tmp/pyc-full          # fresh machine: empty caches, every aiter-triton specialization compiles
smoke warm /tmp/triton-full /tmp/pyc-full          # same caches, now warm
smoke warm-triton-only /tmp/triton-full -          # Triton cache warm, no bytecode cache: issue 4's "warm"
smoke cold-bytecode /tmp/triton-empty /tmp/pyc-full  # empty Triton cache, bytecode kept: a fresh image (pip compiles it)
smoke quick-cold /tmp/triton-quick /tmp/pyc-quick --quick
smoke cold2 /tmp/triton-full2 /tmp/pyc-full2        # cold again on the same machine (its page cache now warm)
names="cold warm warm-triton-only cold-bytecode quick-cold cold2"
if [ -n "$SMOKE_BEFORE" ]; then
  SMOKE=$SMOKE_BEFORE smoke before-cold /tmp/triton-before /tmp/pyc-before
  SMOKE=$SMOKE_BEFORE smoke before-warm-triton-only /tmp/triton-before -
  names="$names before-cold before-warm-triton-only"
fi
python3 -B -P "$PROBE" --json >"$OUT/probe.json" 2>/dev/null
echo "probe on this NVIDIA machine: exit $?" | tee -a "$OUT/machine.txt"
for name in $names; do
  python3 -B "$SUMMARY" "$OUT/smoke-$name.json" --brief | sed "s/^/$name: /" | tee -a "$OUT/machine.txt"
done
python3 -B "$SUMMARY" "$OUT/smoke-warm.json" | tee "$OUT/summary.txt"
cp /tmp/smoke-*.log "$OUT/" && (cd "$OUT" && tar czf runs.tar.gz smoke-*.json smoke-*.log && rm -f smoke-*.json smoke-*.log)
