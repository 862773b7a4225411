#!/usr/bin/env bash
# The CPU comparison of the log-Bessel family in one run: the spherekit f64 reference (one thread,
# every core) and SciPy's log(ive(v,x)) + x, log(kve(v,x)) - x on exactly the same inputs, then a
# table. Needs python3 with numpy and scipy.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
SPHEREKIT_BENCH_DUMP="$dir" cargo bench --bench bessel -- --bench | tee "$dir/rust.log"
python3 benches/baselines/bessel.py --cpu-inputs "$dir" | tee "$dir/scipy.log"
python3 - "$dir/rust.log" "$dir/scipy.log" <<'PY'
import json, sys
rows = [json.loads(l[7:]) for f in sys.argv[1:] for l in open(f) if l.startswith("RESULT ")]
print()
print(f"{'op':6} {'mix':10} {'spherekit ns':>12} {'scipy ns':>9} {'scipy ok ns':>11} {'speedup':>8} {'scipy fails':>11} {'all cores /s':>13}")
for op in ("log_i", "log_k"):
    for mix in ("uniform", "debye", "broadcast"):
        sk = [r for r in rows if r["op"] == op and r["mix"] == mix and r["impl"] == "spherekit_cpu_1thread"]
        sp = [r for r in rows if r["op"] == op and r["mix"] == mix and r["impl"] == "scipy_1thread"]
        mt = [r for r in rows if r["op"] == op and r["mix"] == mix and r["impl"].startswith("spherekit_cpu_") and "evals_per_s" in r]
        if not sk or not sp:
            continue
        a, b = sk[0]["ns_per_eval"], sp[0]
        best = max(r["evals_per_s"] for r in mt) if mt else float("nan")
        print(f"{op:6} {mix:10} {a:12.1f} {b['ns_per_eval']:9.1f} {b['ns_per_eval_successful']:11.1f} "
              f"{b['ns_per_eval_successful'] / a:7.2f}x {b['failures']:11d} {best:13.3e}")
PY
