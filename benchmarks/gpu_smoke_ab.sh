#!/usr/bin/env bash
# Two versions of smoke_layernorm.py on one lent GPU machine, interleaved (A, B, A, B, ...), so that the machine's own
# drift (a fresh machine settles over its first minutes) falls on both: ROUNDS rounds of a cold run of each (new, empty
# Triton and bytecode caches) and a warm run of each with its Triton cache kept and no bytecode (`python -B`, issue 4's
# "warm"). A and B name the scripts (A by default this checkout's checks/smoke_layernorm.py; B must be given). Needs the
# aiter wheel in $WHEELS as gpu_smoke_run.sh does. Prints one line per run and the per-version medians; JSON and logs
# go to $OUT/ab.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/smoke-out}
WHEELS=${WHEELS:-.whl}
A=${A:-checks/smoke_layernorm.py}
B=${B:?B names the other version of the script}
ROUNDS=${ROUNDS:-3}
SUMMARY=${SUMMARY:-$(dirname "$0")/gpu_smoke_summary.py}
mkdir -p "$OUT" /tmp/ab
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
unset PYTHONDONTWRITEBYTECODE
flags=(--json --impl aiter-triton,torch,torch-upcast --device cuda --peak-bandwidth-gbs 4800 --gate-max-kernels 1
  --gate-min-speedup 2 --gate-min-ceiling-frac 0.4)

run() {  # run NAME SCRIPT TRITON_CACHE BYTECODE_PREFIX|-: one timed run, wall ms from process start to exit
  local name=$1 script=$2 cache=$3 pyc=$4 start
  start=$(date +%s%N)
  if [ "$pyc" = - ]; then
    TRITON_CACHE_DIR=$cache python3 -B -P "$script" "${flags[@]}" >"/tmp/ab/$name.json" 2>"/tmp/ab/$name.log"
  else
    TRITON_CACHE_DIR=$cache PYTHONPYCACHEPREFIX=$pyc python3 -P "$script" "${flags[@]}" \
      >"/tmp/ab/$name.json" 2>"/tmp/ab/$name.log"
  fi
  echo "$name exit $? wall_ms $(( ($(date +%s%N) - start) / 1000000 )) $(python3 -B "$SUMMARY" "/tmp/ab/$name.json" --brief |
    grep -o "counts {[^}]*}")" | tee -a "$OUT/ab.txt"
}
for round in $(seq "$ROUNDS"); do
  for v in A B; do
    script=${!v}
    run "$v-cold-$round" "$script" "/tmp/triton-$v-$round" "/tmp/pyc-$v-$round"
  done
  for v in A B; do
    script=${!v}
    run "$v-warm-triton-only-$round" "$script" "/tmp/triton-$v-$round" -
  done
done
python3 - "$OUT/ab.txt" <<'PY' | tee -a "$OUT/ab.txt"
import re, statistics, sys
walls = {}
for line in open(sys.argv[1]):
    m = re.match(r"([AB])-(cold|warm-triton-only)-\d+ exit (\d+) wall_ms (\d+)", line)
    if m:
        walls.setdefault((m[1], m[2]), []).append(int(m[4]) / 1000)
for (version, kind), values in sorted(walls.items()):
    spread = f"range {min(values):.2f}-{max(values):.2f} s over {len(values)}"
    print(f"{version} {kind}: median {statistics.median(values):.2f} s, {spread}")
PY
(cd /tmp/ab && tar czf "$OUT/ab.tar.gz" ./*.json ./*.log)
