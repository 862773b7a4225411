#!/usr/bin/env bash
# The GPU run: executes a bundle built by scripts/gpu_bundle.sh on a machine with a GPU, CUDA
# driver, compute-sanitizer, PyTorch and SciPy (no Rust toolchain needed). From the repository
# root:
#
#   bash gpu-bundle/gpu_suite.sh
#
# Steps, with their STEP names in suite.log (each bounded by `timeout`; a failure does not stop
# the later steps):
#   a. smi: nvidia-smi query (read-only: clocks, power and modes are never changed)
#   b. tests: every test binary in gpu-bundle/tests with SPHEREKIT_REQUIRE_GPU=1, --test-threads=1
#   c. compute-sanitizer over the tests matching `gpu_` of the `hypersphere`, `bessel`, `gram` and
#      `simplex` test binaries: memcheck, memcheck-bessel, memcheck-gram, memcheck-simplex, racecheck, racecheck-bessel,
#      racecheck-gram, racecheck-simplex, then (only if time allows; optional) initcheck, initcheck-bessel (a step
#      without -bessel or -gram is hypersphere's)
#   d. bench: benches/hypersphere --bench; bench-bessel: benches/bessel --bench, which also dumps
#      its CPU inputs to a temporary folder (SPHEREKIT_BENCH_DUMP); bench-gram: benches/gram
#      --bench, which dumps its matrices and bounds to another (SPHEREKIT_BENCH_DUMP); all three
#      with SPHEREKIT_BENCH_QUICK=1, all into bench.log; bench-bessel and bench-gram fail if they
#      printed no GPU (spherekit_gpu) RESULT line
#      torch: the PyTorch baselines hypersphere.py; torch-bessel: bessel.py, SciPy on the dumped
#      inputs (--cpu-inputs) then torch i0e/i1e (--gpu), as two runs into torch_bessel.log; fails
#      if either run fails or prints no RESULT line (e.g. scipy or torch missing); torch-gram:
#      gram.py on the matrices benches/gram dumped (torch.linalg.matrix_norm, the Gram iteration
#      as a bmm chain, per layer and under torch.compile) into torch_gram.log; fails if it fails
#      or prints no torch RESULT line with a time (skipped when bench-gram dumped nothing);
#      bench-simplex: benches/simplex --bench (feature map and FAVOR+, into bench.log; fails
#      without a spherekit RESULT line); torch-simplex: simplex.py into torch_simplex.log
#   e. report: ./gpu-bundle/spherekit report; example-<name>: every example (into report.log);
#      tiers (optional, with 60 s to spare): the hypersphere tier sweep into tiers.log
#   f. summary: gpu_summary.py, a short table (hypersphere, then log-Bessel, then Gram
#      iteration), printed last
#
# Logs go to ${OUT:-/tmp/sk-out} (up to 12 files: suite.log tests.log sanitizer.log bench.log
# torch.log torch_bessel.log torch_gram.log torch_simplex.log report.log tiers.log summary.txt
# summary.md). The whole run keeps within
# SK_SUITE_BUDGET seconds (default 480). Exit status: 0 when every step passed, 1 otherwise.
#
# Environment: OUT, SK_SUITE_BUDGET, SK_BUNDLE (bundle folder; default: this script's folder, or
# ./gpu-bundle), SK_TORCH_ARGS (extra arguments for hypersphere.py, e.g. --quick),
# COMPUTE_SANITIZER (path), PYTHON (default python3).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bundle="${SK_BUNDLE:-$here}"
if [[ ! -d "$bundle/tests" && -d "$here/../gpu-bundle/tests" ]]; then
    bundle="$(cd "$here/../gpu-bundle" && pwd)"
fi
out="${OUT:-/tmp/sk-out}"
budget="${SK_SUITE_BUDGET:-480}"
python="${PYTHON:-python3}"
mkdir -p "$out"
suite_log="$out/suite.log"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
failed_steps=()

export SPHEREKIT_REQUIRE_GPU=1
# gpu_bundle.sh packs the binaries into bins.tar.xz: unpack them in place (once).
if [[ -f "$bundle/bins.tar.xz" && ! -e "$bundle/spherekit" ]]; then
    if ! tar -C "$bundle" -xJf "$bundle/bins.tar.xz" 2>/dev/null; then
        "$python" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
            "$bundle/bins.tar.xz" "$bundle" || echo "gpu_suite: could not unpack $bundle/bins.tar.xz" >&2
    fi
fi
chmod +x "$bundle"/spherekit "$bundle"/tests/* "$bundle"/benches/* 2>/dev/null

say() { echo "[gpu_suite $((SECONDS - start))s] $*"; }

# Seconds a step may take: at most `cap`, leaving `reserve` seconds for the steps after it.
allow() {
    local cap="$1" reserve="$2" left
    left=$((budget - (SECONDS - start) - reserve))
    ((left < cap)) && cap=$left
    ((cap < 0)) && cap=0
    echo "$cap"
}

# record NAME RC SECS: one STEP line in suite.log (read by gpu_summary.py).
record() {
    echo "STEP $1 rc=$2 secs=$3" >>"$suite_log"
    if [[ "$2" != 0 ]]; then
        failed_steps+=("$1")
        say "$1: FAILED (rc $2, $3 s)"
    else
        say "$1: ok ($3 s)"
    fi
}

# skip NAME WHY [optional]: a step that did not run; counts as a failure unless optional.
skip() {
    echo "SKIP $1 $2" >>"$suite_log"
    say "$1: SKIPPED ($2)"
    [[ "${3:-}" == optional ]] || failed_steps+=("$1")
}

# ---- header ------------------------------------------------------------------------------------
{
    if [[ -f "$bundle/COMMIT" ]]; then cat "$bundle/COMMIT"; else echo "commit: unknown (no COMMIT in $bundle)"; fi
    echo "run: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname 2>/dev/null || echo '?')"
    echo "bundle: $bundle"
    echo "budget: ${budget}s"
} >"$suite_log"
: >"$out/tests.log"
: >"$out/sanitizer.log"
# (so that a step skipped for time leaves no stale log of an earlier run in the same $OUT)
: >"$out/bench.log"
: >"$out/torch.log"
: >"$out/torch_bessel.log"
: >"$out/torch_gram.log"
: >"$out/torch_simplex.log"
rm -f "$out/tiers.log"
cat "$suite_log"

# ---- a. GPU ----------------------------------------------------------------------------------------
t0=$SECONDS
timeout -k 5 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv >"$tmp/smi" 2>&1
rc=$?
cat "$tmp/smi" >>"$suite_log"
cat "$tmp/smi"
record smi "$rc" $((SECONDS - t0))

# ---- b. tests ----------------------------------------------------------------------------------------
# The tests come first and matter most: at least 60 s whatever the budget (a budget of 330 s
# once left them none, as everything after them reserves 330 s; now 400 s).
tests_t=$(allow 150 400)
((tests_t < 60)) && tests_t=60
tests_end=$((SECONDS + tests_t))
shopt -s nullglob
test_bins=("$bundle"/tests/*)
shopt -u nullglob
if ((${#test_bins[@]} == 0)); then
    skip tests "no test binaries in $bundle/tests"
else
    t0=$SECONDS
    tests_rc=0
    for bin in "${test_bins[@]}"; do
        name="$(basename "$bin")"
        t=$((tests_end - SECONDS))
        if ((t < 5)); then
            echo "=== SKIP test $name (time) ===" >>"$out/tests.log"
            say "test $name: SKIPPED (time)"
            tests_rc=1
            continue
        fi
        b0=$SECONDS
        timeout -k 5 "$t" "$bin" --test-threads=1 >"$tmp/test" 2>&1
        rc=$?
        {
            echo "=== BEGIN test $name ==="
            cat "$tmp/test"
            echo "=== END test $name rc=$rc secs=$((SECONDS - b0)) ==="
        } >>"$out/tests.log"
        ((rc != 0)) && tests_rc=$rc
        result="$(grep -h '^test result:' "$tmp/test" | tail -n 1)"
        say "test $name: rc=$rc ${result:-(no test result line)}"
        if ((rc != 0)); then
            grep -E '^test .* FAILED$|panicked at' "$tmp/test" | head -n 12
            [[ -z "$result" ]] && tail -n 8 "$tmp/test"
        fi
    done
    record tests "$tests_rc" $((SECONDS - t0))
fi

# ---- c. compute-sanitizer ------------------------------------------------------------------------
sanitizer="${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || true)}"
if [[ -z "$sanitizer" ]]; then
    for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda*/bin/compute-sanitizer \
        /usr/local/cuda*/compute-sanitizer/compute-sanitizer /opt/nvidia/*/compute-sanitizer/compute-sanitizer; do
        if [[ -x "$c" ]]; then
            sanitizer="$c"
            break
        fi
    done
fi
# TOOL:BINARY:CAP:RESERVE, in order. The reserves leave time for the required steps after each;
# initcheck is optional and runs only with time to spare. A step is named after the tool for the
# hypersphere binary (memcheck) and TOOL-BINARY for the others (memcheck-bessel, memcheck-gram).
for spec in memcheck:hypersphere:100:370 memcheck:bessel:45:345 memcheck:gram:45:320 memcheck:simplex:40:300 \
    racecheck:hypersphere:100:285 racecheck:bessel:45:260 racecheck:gram:45:235 racecheck:simplex:40:210 \
    initcheck:hypersphere:60:265 initcheck:bessel:45:265; do
    IFS=: read -r tool bin_name cap reserve <<<"$spec"
    step="$tool"
    min=30
    if [[ "$bin_name" != hypersphere ]]; then
        step="$tool-$bin_name"
        min=20 # the bessel and gram gpu_ tests are short
    fi
    bin="$bundle/tests/$bin_name"
    optional=""
    [[ "$tool" == initcheck ]] && optional=optional
    if [[ -z "$sanitizer" ]]; then
        echo "=== SKIP sanitizer $step (compute-sanitizer not found) ===" >>"$out/sanitizer.log"
        skip "$step" "compute-sanitizer not found"
        continue
    fi
    if [[ ! -x "$bin" ]]; then
        echo "=== SKIP sanitizer $step (no $bin) ===" >>"$out/sanitizer.log"
        skip "$step" "no tests/$bin_name binary in the bundle"
        continue
    fi
    t=$(allow "$cap" "$reserve")
    if ((t < min)); then
        echo "=== SKIP sanitizer $step (time) ===" >>"$out/sanitizer.log"
        skip "$step" "not enough time left (${t}s)" $optional
        continue
    fi
    t0=$SECONDS
    timeout -k 10 "$t" "$sanitizer" --tool "$tool" --error-exitcode 1 --print-limit 30 \
        "$bin" gpu_ --test-threads=1 >"$tmp/san" 2>&1
    rc=$?
    {
        echo "=== BEGIN sanitizer $step ==="
        cat "$tmp/san"
        echo "=== END sanitizer $step rc=$rc secs=$((SECONDS - t0)) ==="
    } >>"$out/sanitizer.log"
    grep -hE 'ERROR SUMMARY|RACECHECK SUMMARY|^test result:' "$tmp/san" | sed "s/^/  $step: /"
    if ((rc != 0)); then
        grep -h '^========= ' "$tmp/san" | grep -v 'ERROR SUMMARY\|RACECHECK SUMMARY' | head -n 15
        grep -hE '^test .* FAILED$|panicked at' "$tmp/san" | head -n 8
    fi
    record "$step" "$rc" $((SECONDS - t0))
done

# ---- d. benchmarks ---------------------------------------------------------------------------------
bench_bin="$bundle/benches/hypersphere"
if [[ -x "$bench_bin" ]]; then
    t=$(allow 90 205)
    if ((t < 20)); then
        skip bench "not enough time left (${t}s)"
    else
        t0=$SECONDS
        SPHEREKIT_BENCH_QUICK=1 timeout -k 5 "$t" "$bench_bin" --bench >"$out/bench.log" 2>&1
        rc=$?
        say "bench: $(grep -c 'RESULT ' "$out/bench.log") RESULT lines"
        ((rc != 0)) && tail -n 8 "$out/bench.log"
        record bench "$rc" $((SECONDS - t0))
    fi
else
    echo "no $bench_bin in the bundle" >"$out/bench.log"
    skip bench "no benches/hypersphere binary in the bundle"
fi

# benches/bessel: CPU figures (and the dumped inputs that bessel.py times SciPy on), then GPU ones.
bessel_bench="$bundle/benches/bessel"
bessel_inputs="$tmp/bessel-inputs"
mkdir -p "$bessel_inputs"
if [[ -x "$bessel_bench" ]]; then
    t=$(allow 120 165)
    if ((t < 30)); then
        echo "=== SKIP bench bessel (time) ===" >>"$out/bench.log"
        skip bench-bessel "not enough time left (${t}s)"
    else
        t0=$SECONDS
        SPHEREKIT_BENCH_QUICK=1 SPHEREKIT_BENCH_DUMP="$bessel_inputs" timeout -k 5 "$t" "$bessel_bench" --bench \
            >"$tmp/bench-bessel" 2>&1
        rc=$?
        {
            echo "=== BEGIN bench bessel ==="
            cat "$tmp/bench-bessel"
            echo "=== END bench bessel rc=$rc secs=$((SECONDS - t0)) ==="
        } >>"$out/bench.log"
        n_gpu=$(grep -cE '^RESULT .*"impl": ?"spherekit_gpu"' "$tmp/bench-bessel")
        say "bench-bessel: $(grep -c 'RESULT ' "$tmp/bench-bessel") RESULT lines ($n_gpu GPU)"
        if ((rc == 0 && n_gpu == 0)); then
            say "bench-bessel: no GPU RESULT line"
            rc=1
        fi
        ((rc != 0)) && grep -v '^RESULT ' "$tmp/bench-bessel" | tail -n 8
        record bench-bessel "$rc" $((SECONDS - t0))
    fi
else
    echo "no $bessel_bench in the bundle" >>"$out/bench.log"
    skip bench-bessel "no benches/bessel binary in the bundle"
fi

# benches/gram: the three precisions on every case, and the matrices and bounds gram.py times
# PyTorch on (and compares with).
gram_bench="$bundle/benches/gram"
gram_inputs="$tmp/gram-inputs"
mkdir -p "$gram_inputs"
if [[ -x "$gram_bench" ]]; then
    t=$(allow 60 140)
    if ((t < 20)); then
        echo "=== SKIP bench gram (time) ===" >>"$out/bench.log"
        skip bench-gram "not enough time left (${t}s)"
    else
        t0=$SECONDS
        SPHEREKIT_BENCH_QUICK=1 SPHEREKIT_BENCH_DUMP="$gram_inputs" timeout -k 5 "$t" "$gram_bench" --bench \
            >"$tmp/bench-gram" 2>&1
        rc=$?
        {
            echo "=== BEGIN bench gram ==="
            cat "$tmp/bench-gram"
            echo "=== END bench gram rc=$rc secs=$((SECONDS - t0)) ==="
        } >>"$out/bench.log"
        n_gpu=$(grep -cE '^RESULT .*"impl": ?"spherekit_gpu"' "$tmp/bench-gram")
        say "bench-gram: $(grep -c 'RESULT ' "$tmp/bench-gram") RESULT lines ($n_gpu GPU)"
        if ((rc == 0 && n_gpu == 0)); then
            say "bench-gram: no GPU RESULT line"
            rc=1
        fi
        ((rc != 0)) && grep -v '^RESULT ' "$tmp/bench-gram" | tail -n 8
        record bench-gram "$rc" $((SECONDS - t0))
    fi
else
    echo "no $gram_bench in the bundle" >>"$out/bench.log"
    skip bench-gram "no benches/gram binary in the bundle"
fi

if [[ -f "$bundle/hypersphere.py" ]]; then
    t=$(allow 170 90)
    if ((t < 40)); then
        skip torch "not enough time left (${t}s)"
    else
        t0=$SECONDS
        # shellcheck disable=SC2086 # SK_TORCH_ARGS is a list of words
        timeout -k 10 "$t" "$python" "$bundle/hypersphere.py" --time-budget $((t - 25)) ${SK_TORCH_ARGS:-} \
            >"$out/torch.log" 2>&1
        rc=$?
        say "torch: $(grep -c 'RESULT ' "$out/torch.log") RESULT lines; $(grep -h '^# torch\|^# done' "$out/torch.log" | tr '\n' ' ')"
        ((rc != 0)) && grep -v '^RESULT ' "$out/torch.log" | tail -n 8
        record torch "$rc" $((SECONDS - t0))
    fi
else
    skip torch "no hypersphere.py in the bundle"
fi

# bessel.py: SciPy on the inputs benches/bessel dumped, then torch i0e/i1e. Two runs, so that a
# missing scipy does not cost the torch figures (nor the reverse); both must print RESULT lines.
if [[ -f "$bundle/bessel.py" ]]; then
    t=$(allow 60 60)
    if ((t < 25)); then
        skip torch-bessel "not enough time left (${t}s)"
    else
        t0=$SECONDS
        rc_cpu=1 rc_gpu=1
        { # a group in this shell: rc_cpu and rc_gpu stay set after it
            echo "# bessel.py --cpu-inputs (SciPy, one thread)"
            timeout -k 5 $((t / 2)) "$python" "$bundle/bessel.py" --cpu-inputs "$bessel_inputs"
            rc_cpu=$?
            echo "# bessel.py --cpu-inputs rc=$rc_cpu"
            t_gpu=$((t - (SECONDS - t0)))
            ((t_gpu < 10)) && t_gpu=10
            echo "# bessel.py --gpu (torch i0e/i1e)"
            timeout -k 5 "$t_gpu" "$python" "$bundle/bessel.py" --gpu
            rc_gpu=$?
            echo "# bessel.py --gpu rc=$rc_gpu"
        } >>"$out/torch_bessel.log" 2>&1
        n_scipy=$(grep -cE '^RESULT .*"impl": ?"scipy_1thread"' "$out/torch_bessel.log")
        n_torch=$(grep -cE '^RESULT .*"impl": ?"torch_gpu"' "$out/torch_bessel.log")
        say "torch-bessel: $n_scipy SciPy and $n_torch torch RESULT lines (rc $rc_cpu and $rc_gpu)"
        rc=0
        if ((rc_cpu != 0)); then
            rc=$rc_cpu
        elif ((rc_gpu != 0)); then
            rc=$rc_gpu
        elif ((n_scipy == 0 || n_torch == 0)); then
            rc=1
        fi
        ((rc != 0)) && grep -v '^RESULT ' "$out/torch_bessel.log" | tail -n 8
        record torch-bessel "$rc" $((SECONDS - t0))
    fi
else
    skip torch-bessel "no bessel.py in the bundle"
fi

# gram.py: torch.linalg.matrix_norm and the Gram iteration in PyTorch on the matrices benches/gram
# dumped (and a 4096^2 GEMM, the 2023 per-layer method on ResNet-18's convolutions); it stops
# starting measurements 15 s before the step's limit and starts torch.compile only with 30 s of its
# budget left. Its eager measurements took ~52 s on an H200 (torch_matrix_norm of b4096_k64 alone
# ~30 s; d4096 and resnet18_conv ~8 s): a cap of 90 s keeps a margin for them.
if [[ -f "$bundle/gram.py" ]]; then
    t=$(allow 90 30)
    if ((t < 25)); then
        skip torch-gram "not enough time left (${t}s)"
    elif ! compgen -G "$gram_inputs/*.json" >/dev/null; then
        echo "# no inputs: benches/gram dumped nothing into $gram_inputs" >>"$out/torch_gram.log"
        skip torch-gram "no inputs (bench-gram dumped nothing)"
    else
        t0=$SECONDS
        timeout -k 10 "$t" "$python" "$bundle/gram.py" --inputs "$gram_inputs" --time-budget $((t - 15)) \
            >>"$out/torch_gram.log" 2>&1
        rc=$?
        n_torch=$(grep -cE '^RESULT .*"impl": ?"torch_[a-z_]*".*"median_us": ?[0-9]' "$out/torch_gram.log")
        say "torch-gram: $(grep -c 'RESULT ' "$out/torch_gram.log") RESULT lines ($n_torch timed); $(grep -h '^# torch\|^# done' "$out/torch_gram.log" | tr '\n' ' ')"
        if ((rc == 0 && n_torch == 0)); then
            say "torch-gram: no torch RESULT line with a time"
            rc=1
        fi
        ((rc != 0)) && grep -v '^RESULT ' "$out/torch_gram.log" | tail -n 8
        record torch-gram "$rc" $((SECONDS - t0))
    fi
else
    skip torch-gram "no gram.py in the bundle"
fi

# benches/simplex: the feature map and FAVOR+ (RESULT lines into bench.log), then simplex.py,
# the PyTorch baselines on the same shapes, into torch_simplex.log.
simplex_bench="$bundle/benches/simplex"
if [[ -x "$simplex_bench" ]]; then
    t=$(allow 60 60)
    if ((t < 20)); then
        skip bench-simplex "not enough time left (${t}s)"
    else
        t0=$SECONDS
        timeout -k 5 "$t" "$simplex_bench" --bench >"$tmp/bench-simplex" 2>&1
        rc=$?
        {
            echo "=== BEGIN bench simplex ==="
            cat "$tmp/bench-simplex"
            echo "=== END bench simplex rc=$rc secs=$((SECONDS - t0)) ==="
        } >>"$out/bench.log"
        n_gpu=$(grep -cE '^RESULT .*"impl": ?"spherekit"' "$tmp/bench-simplex")
        say "bench-simplex: $n_gpu spherekit RESULT lines"
        ((rc == 0 && n_gpu == 0)) && rc=1
        ((rc != 0)) && grep -v '^RESULT ' "$tmp/bench-simplex" | tail -n 8
        record bench-simplex "$rc" $((SECONDS - t0))
    fi
else
    skip bench-simplex "no benches/simplex binary in the bundle"
fi
if [[ -f "$bundle/simplex.py" ]]; then
    t=$(allow 90 30)
    if ((t < 30)); then
        skip torch-simplex "not enough time left (${t}s)"
    else
        t0=$SECONDS
        timeout -k 10 "$t" "$python" "$bundle/simplex.py" --time-budget $((t - 20)) \
            >"$out/torch_simplex.log" 2>&1
        rc=$?
        say "torch-simplex: $(grep -c 'RESULT ' "$out/torch_simplex.log") RESULT lines"
        ((rc != 0)) && grep -v '^RESULT ' "$out/torch_simplex.log" | tail -n 8
        record torch-simplex "$rc" $((SECONDS - t0))
    fi
else
    skip torch-simplex "no simplex.py in the bundle"
fi

# ---- e. report -------------------------------------------------------------------------------------
if [[ -x "$bundle/spherekit" ]]; then
    t0=$SECONDS
    t=$(allow 30 15)
    ((t < 10)) && t=10 # never 0: `timeout 0` means no limit
    timeout -k 5 "$t" "$bundle/spherekit" report >"$out/report.log" 2>&1
    rc=$?
    head -n 30 "$out/report.log"
    record report "$rc" $((SECONDS - t0))
else
    echo "no spherekit CLI in the bundle" >"$out/report.log"
    skip report "no spherekit CLI in the bundle"
fi

# ---- e2. examples (their output goes to report.log too) ----------------------------------------
shopt -s nullglob
examples=("$bundle"/examples/*)
shopt -u nullglob
for ex in "${examples[@]}"; do
    t0=$SECONDS
    t=$(allow 30 10)
    ((t < 10)) && t=10
    {
        echo
        echo "== example $(basename "$ex") =="
    } >>"$out/report.log"
    timeout -k 5 "$t" "$ex" >>"$out/report.log" 2>&1
    rc=$?
    say "example $(basename "$ex"): rc=$rc"
    record "example-$(basename "$ex")" "$rc" $((SECONDS - t0))
done

# ---- e3. tier sweep (optional, with time to spare) ---------------------------------------------
# Every tier of every hypersphere benchmark shape, the data behind the automatic tier choice
# (results/2026-11-28-h200/tiers-*.md); kernels that changed since the last sweep may have moved
# the best tier.
if [[ -x "$bench_bin" ]]; then
    t=$(allow 120 35)
    if ((t < 60)); then
        skip tiers "not enough time left (${t}s)" optional
    else
        t0=$SECONDS
        SPHEREKIT_BENCH_TIERS=1 timeout -k 5 "$t" "$bench_bin" --bench >"$out/tiers.log" 2>&1
        rc=$?
        say "tiers: $(grep -c 'RESULT ' "$out/tiers.log") RESULT lines"
        # A sweep cut short by the clock still has its lines: only a failure of its own counts.
        ((rc == 124 || rc == 137)) && rc=0
        record tiers "$rc" $((SECONDS - t0))
    fi
fi

# ---- f. summary (printed last) -------------------------------------------------------------------
echo
t0=$SECONDS
summary_t=$(allow 30 0)
((summary_t < 10)) && summary_t=10
timeout -k 5 "$summary_t" "$python" "$bundle/gpu_summary.py" "$out" >"$out/summary.txt" 2>&1
rc=$?
echo "STEP summary rc=$rc secs=$((SECONDS - t0))" >>"$suite_log"
((rc != 0)) && failed_steps+=(summary)
cat "$out/summary.txt"
echo
if ((${#failed_steps[@]} > 0)); then
    echo "gpu_suite: FAILED steps: ${failed_steps[*]} ($((SECONDS - start)) s; logs in $out)"
    exit 1
fi
echo "gpu_suite: all steps passed ($((SECONDS - start)) s; logs in $out)"
exit 0
