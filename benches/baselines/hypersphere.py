#!/usr/bin/env python3
"""PyTorch baselines for spherekit's hypersphere ops (run on the GPU machine).

Same shapes and semantics as the Rust bench (benches/hypersphere.rs):

- normalize:      y = F.normalize(x, dim=-1, eps=1e-12)          (spherekit Eps::Clamp(1e-12))
- lerp_normalize: a = N(h), b = N(u), alpha = |c * p| (c = 0.05, p a vector of D entries),
                  z = a + alpha * (b - a), y = N(z)               (nGPT form, all N with clamp 1e-12)

Forward ops are timed under torch.no_grad(); backward ops time torch.autograd.grad of the forward
output with respect to the inputs (x; or h, u, p) for a fixed random upstream gradient, with
retain_graph=True, so only the backward kernels are timed. Implementations: eager and
torch.compile (default mode, static shapes; AOTAutograd compiles the backward).

Shapes: D in {64, 128, 512, 4096, 16384, 131072} with rows = 256 MiB / (D * dtype size), for bf16
and f32, plus the SimbaV2-sized step rows=256, D=512 (a latency measurement). Inputs are random
normal; shapes whose traffic is small rotate among several input sets so that the L2 cache does
not flatter them. Timing: CUDA events around batches of calls, median over batches.

Output: one line per measurement on stdout, `RESULT {json}` with keys family, op, dtype, rows,
cols, impl (torch_eager | torch_compile | copy_d2d), median_us, bytes, gbps, frac_copy (gbps over
the measured device-to-device copy bandwidth) and error (only when something failed). Lines that
start with '#' are information.

Usage: python3 hypersphere.py [--quick] [--time-budget SECONDS] [--no-compile]
                              [--ops normalize_fwd,...] [--dtypes bf16,f32] [--dry-run]
"""

import argparse
import gc
import json
import math
import statistics
import sys
import time

try:  # not needed for --dry-run
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None
    F = None

FAMILY = "hypersphere"
MIB = 1 << 20
TARGET_BYTES = 256 * MIB  # input size of the bandwidth shapes
COPY_BYTES = 1 << 30  # buffer of the device-to-device copy measurement
COLS = [64, 128, 512, 4096, 16384, 131072]
QUICK_COLS = [128, 4096, 131072]
SIMBA_SHAPE = (256, 512)  # SimbaV2 critic: batch 256, width 512 (latency)
DTYPE_SIZE = {"bf16": 2, "f32": 4}
OPS = ["normalize_fwd", "normalize_bwd", "lerp_fwd", "lerp_bwd"]
# Bytes moved per element of one (rows, cols) matrix: inputs read plus outputs written.
TRAFFIC = {"normalize_fwd": 2, "normalize_bwd": 3, "lerp_fwd": 3, "lerp_bwd": 5}
EPS = 1e-12
LERP_C = 0.05
ROTATE_BYTES = 256 * MIB  # traffic a rotation of input sets should at least cover (L2 is 50 MB)
MAX_SETS = 256


def normalize(x):
    return F.normalize(x, p=2.0, dim=-1, eps=EPS)


def lerp_normalize(h, u, p):
    a = F.normalize(h, p=2.0, dim=-1, eps=EPS)
    b = F.normalize(u, p=2.0, dim=-1, eps=EPS)
    alpha = (LERP_C * p).abs()
    z = a + alpha * (b - a)
    return F.normalize(z, p=2.0, dim=-1, eps=EPS)


def op_bytes(op, dtype, rows, cols):
    return TRAFFIC[op] * rows * cols * DTYPE_SIZE[dtype]


def plan(quick, dtypes):
    """(dtype, rows, cols) in measurement order: bandwidth shapes by D, then the latency shape."""
    cols_list = QUICK_COLS if quick else COLS
    out = []
    for dtype in dtypes:
        size = DTYPE_SIZE[dtype]
        for cols in cols_list:
            out.append((dtype, TARGET_BYTES // (cols * size), cols))
        out.append((dtype,) + SIMBA_SHAPE)
    return out


def n_sets(op, dtype, rows, cols):
    return max(1, min(MAX_SETS, math.ceil(ROTATE_BYTES / op_bytes(op, dtype, rows, cols))))


def emit(op, dtype, rows, cols, impl, median_us=None, nbytes=None, copy_gbps=None, error=None):
    if nbytes is None:
        nbytes = op_bytes(op, dtype, rows, cols)
    gbps = None
    frac = None
    if median_us is not None and median_us > 0:
        gbps = nbytes / (median_us * 1e-6) / 1e9
        if copy_gbps:
            frac = gbps / copy_gbps
    rec = {
        "family": FAMILY,
        "op": op,
        "dtype": dtype,
        "rows": rows,
        "cols": cols,
        "impl": impl,
        "median_us": None if median_us is None else round(median_us, 3),
        "bytes": nbytes,
        "gbps": None if gbps is None else round(gbps, 2),
        "frac_copy": None if frac is None else round(frac, 4),
    }
    if error is not None:
        rec["error"] = str(error).replace("\n", " ")[:300]
    print("RESULT " + json.dumps(rec, sort_keys=False), flush=True)


def short_error(exc):
    return f"{type(exc).__name__}: {exc}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer shapes and samples")
    ap.add_argument("--time-budget", type=float, default=150.0,
                    help="seconds; torch.compile measurements that would start after 80%% of it "
                         "and everything after it are reported as skipped (default 150)")
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--dtypes", default="bf16,f32")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the plan and RESULT lines without timings (no torch needed)")
    args = ap.parse_args()
    ops = [o for o in args.ops.split(",") if o]
    dtypes = [d for d in args.dtypes.split(",") if d]
    for o in ops:
        if o not in TRAFFIC:
            ap.error(f"unknown op {o!r}; known: {', '.join(OPS)}")
    for d in dtypes:
        if d not in DTYPE_SIZE:
            ap.error(f"unknown dtype {d!r}; known: bf16, f32")
    shapes = plan(args.quick, dtypes)

    if args.dry_run:
        print(f"# dry run: {len(shapes)} shapes x {len(ops)} ops x "
              f"{1 if args.no_compile else 2} impls")
        emit("copy", "u8", 1, COPY_BYTES, "copy_d2d", nbytes=2 * COPY_BYTES, error="dry-run")
        impls = ["torch_eager"] + ([] if args.no_compile else ["torch_compile"])
        for dtype, rows, cols in shapes:
            for op in ops:
                print(f"# {op} {dtype} {rows}x{cols}: input {rows * cols * DTYPE_SIZE[dtype] / MIB:.3f} MiB, "
                      f"{n_sets(op, dtype, rows, cols)} input set(s)")
                for impl in impls:
                    emit(op, dtype, rows, cols, impl, error="dry-run")
        return 0

    if torch is None:
        print("# ERROR: torch is not installed (use --dry-run to check the plan without it)", flush=True)
        return 2
    return Runner(args, ops, shapes).run()


class Runner:
    def __init__(self, args, ops, shapes):
        self.t0 = time.monotonic()
        self.args = args
        self.ops = ops
        self.shapes = shapes
        self.samples = 11 if args.quick else 25
        self.batch_ms = 2.0 if args.quick else 3.0
        self.copy_gbps = None
        self.failures = 0
        self.dt = {"bf16": torch.bfloat16, "f32": torch.float32}

    # ---- timing --------------------------------------------------------------------------------

    def elapsed(self):
        return time.monotonic() - self.t0

    def bench(self, calls):
        """Median µs per call; `calls` are zero-argument callables run in rotation."""
        n = len(calls)
        k = 0

        def run(m):
            nonlocal k
            for _ in range(m):
                calls[k % n]()
                k += 1

        run(max(3, min(n, 8)))  # warm-up (and compilation)
        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        run(5)
        end.record()
        end.synchronize()
        per_ms = max(start.elapsed_time(end) / 5, 1e-4)
        iters = max(1, min(2000, math.ceil(self.batch_ms / per_ms)))
        times = []
        for _ in range(self.samples):
            start.record()
            run(iters)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / iters)
        return statistics.median(times) * 1000.0

    def measure(self, op, dtype, rows, cols, impl, make_calls):
        try:
            us = self.bench(make_calls())
            emit(op, dtype, rows, cols, impl, us, copy_gbps=self.copy_gbps)
        except Exception as exc:  # noqa: BLE001 (every failure becomes a RESULT with an error)
            self.failures += 1
            emit(op, dtype, rows, cols, impl, error=short_error(exc))
        finally:
            self.cleanup()

    def cleanup(self):
        gc.collect()
        torch.cuda.empty_cache()

    # ---- inputs --------------------------------------------------------------------------------

    def randn(self, shape, dtype, requires_grad=False):
        t = torch.randn(shape, device="cuda", dtype=self.dt[dtype])
        return t.requires_grad_(requires_grad)

    def inputs(self, family, dtype, rows, cols, nsets, grad):
        sets = []
        for _ in range(nsets):
            if family == "normalize":
                sets.append((self.randn((rows, cols), dtype, grad),))
            else:
                p = (1.0 + 0.1 * torch.randn(cols, device="cuda")).to(self.dt[dtype])
                sets.append((self.randn((rows, cols), dtype, grad), self.randn((rows, cols), dtype, grad),
                             p.requires_grad_(grad)))
        return sets

    # ---- measurements --------------------------------------------------------------------------

    def copy_bandwidth(self):
        try:
            src = torch.randn(COPY_BYTES // 4, device="cuda", dtype=torch.float32)
            dst = torch.empty_like(src)
            us = self.bench([lambda: dst.copy_(src)])
            self.copy_gbps = 2 * COPY_BYTES / (us * 1e-6) / 1e9
            emit("copy", "u8", 1, COPY_BYTES, "copy_d2d", us, nbytes=2 * COPY_BYTES, copy_gbps=self.copy_gbps)
            del src, dst
        except Exception as exc:  # noqa: BLE001
            self.failures += 1
            emit("copy", "u8", 1, COPY_BYTES, "copy_d2d", nbytes=2 * COPY_BYTES, error=short_error(exc))
        self.cleanup()

    def fwd_calls(self, fn, op, dtype, rows, cols):
        """One call per input set: the forward under no_grad."""
        family = op.split("_")[0]
        sets = self.inputs(family, dtype, rows, cols, n_sets(op, dtype, rows, cols), grad=False)

        def one(s):
            def call():
                with torch.no_grad():
                    return fn(*s)
            return call
        return [one(s) for s in sets]

    def bwd_calls(self, fn, op, dtype, rows, cols):
        """One call per input set: the backward of a forward run once, for a fixed upstream grad."""
        family = op.split("_")[0]
        sets = self.inputs(family, dtype, rows, cols, n_sets(op, dtype, rows, cols), grad=True)
        out = []
        for s in sets:
            y = fn(*s)
            dy = torch.randn_like(y)

            def call(y=y, s=s, dy=dy):
                return torch.autograd.grad(y, s, grad_outputs=dy, retain_graph=True)
            out.append(call)
        return out

    def shape_ops(self, impl, dtype, rows, cols):
        """Measures every requested op of one shape with one implementation."""
        for family, base in (("normalize", normalize), ("lerp", lerp_normalize)):
            wanted = [op for op in (f"{family}_fwd", f"{family}_bwd") if op in self.ops]
            if not wanted:
                continue
            fn = base
            if impl == "torch_compile":
                try:
                    torch._dynamo.reset()
                    fn = torch.compile(base, dynamic=False, fullgraph=True)
                except Exception as exc:  # noqa: BLE001
                    self.failures += len(wanted)
                    for op in wanted:
                        emit(op, dtype, rows, cols, impl, error="torch.compile: " + short_error(exc))
                    continue
            for op in wanted:
                maker = self.fwd_calls if op.endswith("_fwd") else self.bwd_calls
                self.measure(op, dtype, rows, cols, impl, lambda: maker(fn, op, dtype, rows, cols))

    def skip(self, impl, dtype, rows, cols, why):
        for op in self.ops:
            emit(op, dtype, rows, cols, impl, error=f"skipped: {why}")

    def run(self):
        if not torch.cuda.is_available():
            print("# ERROR: torch sees no CUDA device", flush=True)
            for dtype, rows, cols in self.shapes:
                self.skip("torch_eager", dtype, rows, cols, "no CUDA device")
            return 1
        torch.manual_seed(0)
        props = torch.cuda.get_device_properties(0)
        print(f"# torch {torch.__version__}, CUDA {torch.version.cuda}, {props.name}, "
              f"{props.total_memory / 2**30:.0f} GiB, L2 {getattr(props, 'L2_cache_size', 0) / MIB:.0f} MiB, "
              f"budget {self.args.time_budget:.0f} s", flush=True)
        self.copy_bandwidth()
        budget = self.args.time_budget
        # Pass 1: eager, every shape (cheap). Pass 2: torch.compile while the budget lasts.
        for dtype, rows, cols in self.shapes:
            if self.elapsed() > budget:
                self.skip("torch_eager", dtype, rows, cols, "time budget")
                continue
            self.shape_ops("torch_eager", dtype, rows, cols)
        if not self.args.no_compile:
            # The timed backward runs repeatedly with retain_graph=True, which AOTAutograd refuses
            # for backwards compiled with donated buffers (a memory optimization).
            try:
                torch._functorch.config.donated_buffer = False
            except AttributeError:
                pass
            for dtype, rows, cols in self.shapes:
                if self.elapsed() > 0.8 * budget:
                    self.skip("torch_compile", dtype, rows, cols, "time budget")
                    continue
                self.shape_ops("torch_compile", dtype, rows, cols)
        print(f"# done in {self.elapsed():.1f} s, {self.failures} failed measurement(s)", flush=True)
        return 1 if self.failures else 0


if __name__ == "__main__":
    sys.exit(main())
