#!/usr/bin/env bash
# The command run on the lent NVIDIA GPU for issue 4 (results: benchmarks/RESULTS.md).
# Needs .whl/amd_aiter-0.1.7.post2.dev18-py3-none-any.whl (pip download, see .library/device/README.md) carried along.
# Runs the full smoke test cold (empty Triton cache), warm, and --quick cold, then the probe; JSON, logs and a summary
# go to $OUT (at most 8 files come back from the device).
set -uo pipefail
OUT=${OUT:-/tmp/smoke-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$OUT/machine.txt"
python3 - <<'EOF' | tee -a "$OUT/machine.txt"
import torch, triton
print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, "gpu", torch.cuda.get_device_name(0))
# Measured copy ceiling (METHOD.md): bytes read + written by a 1 GiB device-to-device copy.
a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record(); [b.copy_(a) for _ in range(20)]; e.record(); e.synchronize()
print(f"d2d copy: {2 * 20 * a.numel() / (s.elapsed_time(e) * 1e-3) / 1e9:.0f} GB/s (read+write)")
EOF

case "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" in
  *H200*) peak=4800 ;;   # H200 SXM HBM3e datasheet
  *H100*PCIe*) peak=2000 ;;
  *H100*NVL*) peak=3900 ;;
  *H100*) peak=3350 ;;   # H100 SXM5 HBM3 datasheet
  *) peak=0 ;;
esac

smoke() {  # smoke NAME TRITON_CACHE_DIR [extra flags]: one timed run; JSON to $OUT, log to /tmp
  local name=$1 cache=$2 start rc
  shift 2
  start=$(date +%s%N)
  TRITON_CACHE_DIR=$cache python3 -P checks/smoke_layernorm.py --json --impl aiter-triton,torch,torch-upcast --device cuda \
    --peak-bandwidth-gbs "$peak" --gate-max-kernels 1 --gate-min-speedup 2 "$@" >"$OUT/smoke-$name.json" 2>"/tmp/smoke-$name.log"
  rc=$?
  echo "$name: exit $rc, $(( ($(date +%s%N) - start) / 1000000 )) ms wall (process start to exit)," \
    "phases $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["phase_s"])' "$OUT/smoke-$name.json")" | tee -a "$OUT/machine.txt"
}
smoke cold /tmp/triton-full            # fresh machine: empty Triton cache, every aiter-triton specialization compiles
smoke warm /tmp/triton-full            # same cache, now warm
smoke quick-cold /tmp/triton-quick --quick
python3 -P checks/probe.py --json >"$OUT/probe.json" 2>/dev/null
echo "probe on this NVIDIA machine: exit $?" | tee -a "$OUT/machine.txt"
cp /tmp/smoke-cold.log /tmp/smoke-warm.log "$OUT/"  # at most 8 files come back

python3 - "$OUT/smoke-warm.json" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
d = json.load(open(sys.argv[1]))
print("status", d["status"], "scope", d["scope"], "wall_s", d["wall_s"], "device", d["device"]["name"], d["device"]["arch"])
print("aiter-triton:", {k: v for k, v in d["impls"]["aiter-triton"].items() if k != "aiter_import_error"})
for g in d["gates"]:
    print("gate", g["name"], g["passed"], g["detail"])
print(f"{'impl':7} {'dt':4} {'shape':>10} {'kind':8} {'graph':>6} {'kern':>6} {'g-k%':>5} {'span':>6} {'g-s%':>5} {'gap':>4} "
      f"{'sprd%':>5} {'n':>3} {'eager':>5} {'GB/s':>4} {'frac':>4} {'xUp':>4} st")
for c in d["cases"]:
    g = lambda k: c.get(k) or 0  # noqa: E731
    print(f"{c['impl'][:7]:7} {c['dtype'][:4]:4} {c['tokens']:>5}x{c['hidden']:<5}{c['kind'][:8]:8} {g('graph_us'):6.2f} "
          f"{g('profiler_kernel_us'):6.2f} {g('graph_vs_profiler_pct'):5.1f} {g('profiler_span_us'):6.2f} {g('graph_vs_span_pct'):5.1f} "
          f"{g('gap_us_per_kernel'):4.2f} {g('spread_pct'):5.2f} {g('kernels_per_call'):3.0f} {g('eager_us'):5.0f} {g('bandwidth_gbs'):4.0f} "
          f"{g('bandwidth_frac'):4.2f} {g('speedup_vs_torch_upcast'):4.2f} {c['status'][:4]}")
timed = [c for c in d["cases"] if c.get("graph_us")]
print(f"timed {len(timed)}; graph vs kernel time within 10%: {sum(abs(c.get('graph_vs_profiler_pct') or 999) <= 10 for c in timed)}; "
      f"graph vs span within 10%: {sum(abs(c.get('graph_vs_span_pct') or 999) <= 10 for c in timed)}; spread < 3%: {sum(c['spread_pct'] < 3 for c in timed)}")
bad = [c for c in d["cases"] if c["status"] != "pass"]
print("non-pass cases:", [(c["impl"], c["kind"], c["tokens"], c["hidden"], c["reason"]) for c in bad])
EOF
