#!/usr/bin/env python3
"""PyTorch baselines for benches/gram.rs (Gram-iteration spectral-norm bounds), on the same matrices.

Inputs: the folder benches/gram wrote with SPHEREKIT_BENCH_DUMP=DIR, per case
  <case>.json       {"case", "shapes": [[rows, cols], ...], "iterations": T}
  <case>_w.f32      the matrices, raw little-endian f32, one after another, each row-major
  <case>_upper.f64  spherekit's upper bound per matrix (precision "fast"), raw little-endian f64
for the cases b4096_k64, b65536_k16 and net_mixed (a missing one is skipped with a `# ...` note;
any other <case>.json in DIR is run too).

On the GPU, the matrices as float32, with torch.set_float32_matmul_precision("highest") (no
TF32, PyTorch's default), implementations:
  torch_matrix_norm        torch.linalg.matrix_norm(W, ord=2) (the exact sigma_1, an SVD): one
                           call on the [B, m, n] batch, or one call per group of equal shapes
  torch_gram_bmm           the Gram iteration of Delattre et al. as the lip4conv reference code
                           writes it, with a batch dimension: X = W, or W^T when cols > rows (the
                           Gram is min(rows, cols) square); G = X, rescale = 0; T times:
                           r = ||G||_F per matrix, G = G / r, rescale = 2 (rescale + log r),
                           G = G^T G (a bmm); bound = ||G||_F^(1/2^T) exp(rescale / 2^T).
                           One chain on the batch, or one chain per group of equal shapes
  torch_gram_bmm_per_layer the same on one matrix at a time in a Python loop (what the reference
                           code does for a network's layers): cases with several shapes only
  torch_gram_bmm_compiled  torch_gram_bmm under torch.compile (default mode, dynamic=False,
                           fullgraph=True): cases with one shape only, after every eager
                           measurement, and only while at least 30 s of the budget remain
A case's groups are all timed together as one measurement. Timing: CUDA events around each call
after warm-up (two calls; the first compiles), median of 5-30 runs (fewer, down to 1, when a
call is slow against the budget left).

Output: `RESULT {json}` lines (flushed) with family "gram", op "dense", case, dtype "f32",
precision "f32", impl, matrices, iterations, median_us, matrices_per_s, gflops (the nominal flop
count of the plain algorithm, as benches/gram: per matrix 2 l k^2 + (T - 1) 2 k^3, k = min side,
l = max side), runs; the Gram implementations add max_rel_diff_vs_spherekit = max over the
matrices of |torch bound - spherekit upper| / spherekit upper (f32 against f32 arithmetic:
expect ~1e-6); torch_matrix_norm adds spherekit_rel_excess_min / _max = (spherekit upper -
sigma_1) / sigma_1 (the bound's excess over the exact norm; a negative minimum is the fast
mode's rounding); torch_gram_bmm_compiled adds compile_s; groups for grouped cases; error when
a measurement failed ("skipped: ..." when the time budget ran out). Lines that start with '#'
are information; the last one is `# done ...`, with what was skipped.

Usage: python3 gram.py --inputs DIR [--time-budget SECONDS]
(torch and numpy are imported only to run, so --help needs neither.) Exit status: 0, 1 when a
measurement failed or no case was found, 2 without torch.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

FAMILY = "gram"
CASES = ["b4096_k64", "b65536_k16", "net_mixed"]
MEASURE_S = 2.0  # aim of the timed runs of one measurement
MIN_RUNS, MAX_RUNS = 5, 30
MIN_LEFT_S = 3.0  # below this much budget left no measurement starts
COMPILE_LEFT_S = 30.0  # torch.compile starts only with this much budget left


def emit(case, impl, matrices=None, iterations=None, median_us=None, flops=None, error=None, **extra):
    rec = {"family": FAMILY, "op": "dense", "case": case, "dtype": "f32", "precision": "f32",
           "impl": impl, "matrices": matrices, "iterations": iterations,
           "median_us": None if median_us is None else round(median_us, 3)}
    if median_us and median_us > 0:
        rec["matrices_per_s"] = float(f"{matrices / (median_us * 1e-6):.4e}") if matrices else None
        rec["gflops"] = round(flops / (median_us * 1e-6) / 1e9, 2) if flops else None
    rec.update(extra)
    if error is not None:
        rec["error"] = str(error).replace("\n", " ")[:300]
    print("RESULT " + json.dumps(rec), flush=True)


def short_error(exc):
    return f"{type(exc).__name__}: {exc}"


def nominal_flops(shapes, iterations):
    total = 0.0
    for rows, cols in shapes:
        k, l = min(rows, cols), max(rows, cols)
        total += 2.0 * l * k * k + (iterations - 1) * 2.0 * k ** 3
    return total


def gram_bound(w, iterations):
    """The Gram-iteration upper bound of every matrix of w ([..., m, n]), as lip4conv computes it."""
    import torch
    g = w if w.shape[-1] <= w.shape[-2] else w.mT
    rescale = 0.0
    for _ in range(iterations):
        r = torch.linalg.matrix_norm(g, keepdim=True)  # Frobenius
        g = g / r
        rescale = 2 * (rescale + torch.log(r))
        g = g.mT @ g
    bound = torch.linalg.matrix_norm(g) ** (1.0 / 2 ** iterations)
    if torch.is_tensor(rescale):
        bound = bound * torch.exp(rescale[..., 0, 0] / 2 ** iterations)
    return bound


class Case:
    """One dumped case: the matrices on the GPU, grouped by shape, and spherekit's bounds."""

    def __init__(self, torch, np, dirname, name):
        with open(os.path.join(dirname, f"{name}.json"), encoding="utf-8") as f:
            meta = json.load(f)
        self.name = name
        self.shapes = [(int(r), int(c)) for r, c in meta["shapes"]]
        self.iterations = int(meta["iterations"])
        self.n = len(self.shapes)
        self.flops = nominal_flops(self.shapes, self.iterations)
        w = np.fromfile(os.path.join(dirname, f"{name}_w.f32"), dtype="<f4")
        want = sum(r * c for r, c in self.shapes)
        if w.size != want:
            raise ValueError(f"{name}_w.f32 holds {w.size} values, the shapes {want}")
        groups = {}  # (rows, cols) -> matrix indices, in order of first appearance
        offsets = []
        off = 0
        for i, (r, c) in enumerate(self.shapes):
            groups.setdefault((r, c), []).append(i)
            offsets.append(off)
            off += r * c
        dev = torch.device("cuda")
        flat = torch.from_numpy(w.astype(np.float32, copy=False))
        self.groups = []  # (indices, [b, r, c] tensor)
        for (r, c), idx in groups.items():
            if len(groups) == 1:
                batch = flat.view(len(idx), r, c)
            else:
                batch = torch.stack([flat[offsets[i]:offsets[i] + r * c].view(r, c) for i in idx])
            self.groups.append((idx, batch.to(dev).contiguous()))
        # One separate tensor per matrix (a network's layers), for the per-layer loop.
        self.layers = None
        if len(self.groups) > 1:
            self.layers = [None] * self.n
            for idx, batch in self.groups:
                for j, i in enumerate(idx):
                    self.layers[i] = batch[j].clone()
        self.upper = None
        up = os.path.join(dirname, f"{name}_upper.f64")
        if os.path.exists(up):
            u = np.fromfile(up, dtype="<f8")
            if u.size == self.n:
                self.upper = u
            else:
                print(f"# {name}: {name}_upper.f64 holds {u.size} values for {self.n} matrices: "
                      "no comparison with spherekit", flush=True)
        else:
            print(f"# {name}: no {name}_upper.f64: no comparison with spherekit", flush=True)

    @property
    def uniform(self):
        return len(self.groups) == 1


class Runner:
    def __init__(self, args, torch, np):
        self.t0 = time.monotonic()
        self.args = args
        self.torch = torch
        self.np = np
        self.failures = 0
        self.skipped = []

    def left(self):
        return self.args.time_budget - (time.monotonic() - self.t0)

    def bench(self, fn):
        """(median µs per call, runs, the output of a call, seconds of the first call): CUDA events
        around each call."""
        torch = self.torch
        t_first = time.monotonic()
        out = fn()  # warm-up (a torch.compile function compiles here)
        torch.cuda.synchronize()
        t_first = time.monotonic() - t_first
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        out = fn()
        b.record()
        b.synchronize()
        est = max(a.elapsed_time(b) * 1e-3, 1e-6)  # seconds per call
        runs = max(MIN_RUNS, min(MAX_RUNS, int(MEASURE_S / est)))
        room = 0.5 * self.left()
        if runs * est > room:
            runs = max(1, int(room / est))
        times = []
        for _ in range(runs):
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return statistics.median(times) * 1e3, runs, out, t_first

    def gather(self, case, parts, per_layer):
        """One f64 numpy vector in the case's matrix order from per-group (or per-matrix) outputs."""
        np = self.np
        out = np.empty(case.n)
        if per_layer:
            for i, p in enumerate(parts):
                out[i] = float(p)
        else:
            for (idx, _), p in zip(case.groups, parts):
                out[np.asarray(idx)] = p.double().cpu().numpy().reshape(-1)
        return out

    def compare(self, case, impl, got):
        """Extra RESULT keys comparing the torch figures with spherekit's upper bounds."""
        np = self.np
        if case.upper is None:
            return {}
        sk = case.upper
        use = np.isfinite(sk) & (sk > 0)
        bad = int((~np.isfinite(got[use])).sum())
        extra = {"nonfinite": bad} if bad else {}
        ok = use & np.isfinite(got)
        if not ok.any():
            return extra
        if impl == "torch_matrix_norm":
            ok &= got > 0
            excess = (sk[ok] - got[ok]) / got[ok]
            extra["spherekit_rel_excess_min"] = float(f"{excess.min():.3e}")
            extra["spherekit_rel_excess_max"] = float(f"{excess.max():.3e}")
        else:
            extra["max_rel_diff_vs_spherekit"] = float(f"{(np.abs(got[ok] - sk[ok]) / sk[ok]).max():.3e}")
        return extra

    def measure(self, case, impl, make_fn, min_left=MIN_LEFT_S, **extra):
        """Times one implementation on a case and prints its RESULT (an error never escapes)."""
        if self.left() < min_left:
            self.skipped.append(f"{case.name}/{impl}")
            emit(case.name, impl, case.n, case.iterations,
                 error=f"skipped: time budget ({max(0.0, self.left()):.0f} s left, {min_left:.0f} s needed)")
            return
        try:
            fn = make_fn()
            us, runs, out, first_s = self.bench(fn)
            if impl == "torch_gram_bmm_compiled":
                extra["compile_s"] = round(first_s, 1)  # the first call: compilation and one run
            got = self.gather(case, out if isinstance(out, list) else [out], impl.endswith("_per_layer"))
            extra.update(self.compare(case, impl, got))
            emit(case.name, impl, case.n, case.iterations, us, case.flops, runs=runs, **extra)
        except Exception as exc:  # noqa: BLE001 (every failure becomes a RESULT with an error)
            self.failures += 1
            emit(case.name, impl, case.n, case.iterations, error=short_error(exc), **extra)
        finally:
            try:
                self.torch.cuda.synchronize()
                self.torch.cuda.empty_cache()
            except Exception as exc:  # noqa: BLE001 (a sticky CUDA error: the next ones report it)
                print(f"# {case.name}/{impl}: cleanup: {short_error(exc)}", flush=True)

    def eager(self, case):
        torch, t = self.torch, case.iterations
        batches = [b for _, b in case.groups]
        grouped = {} if case.uniform else {"groups": len(case.groups)}

        def norm():
            with torch.no_grad():
                return [torch.linalg.matrix_norm(b, ord=2) for b in batches]

        def bmm():
            with torch.no_grad():
                return [gram_bound(b, t) for b in batches]
        # The Gram iteration first: the targets are against it.
        self.measure(case, "torch_gram_bmm", lambda: bmm, **grouped)
        self.measure(case, "torch_matrix_norm", lambda: norm, **grouped)
        if case.layers is not None:
            layers = case.layers

            def per_layer():
                with torch.no_grad():
                    return [gram_bound(w, t) for w in layers]
            self.measure(case, "torch_gram_bmm_per_layer", lambda: per_layer)

    def compiled(self, case):
        torch, t = self.torch, case.iterations
        batch = case.groups[0][1]

        def make():
            torch._dynamo.reset()
            fn = torch.compile(lambda w: gram_bound(w, t), dynamic=False, fullgraph=True)

            def call():
                with torch.no_grad():
                    return fn(batch)
            return call
        self.measure(case, "torch_gram_bmm_compiled", make, min_left=COMPILE_LEFT_S)

    def run(self, names):
        torch = self.torch
        if not torch.cuda.is_available():
            print("# ERROR: torch sees no CUDA device", flush=True)
            return 1
        torch.set_float32_matmul_precision("highest")
        props = torch.cuda.get_device_properties(0)
        print(f"# torch {torch.__version__}, CUDA {torch.version.cuda}, {props.name}; float32 matmul "
              f"precision {torch.get_float32_matmul_precision()}; budget {self.args.time_budget:.0f} s",
              flush=True)
        cases = []
        for name in names:
            if self.left() < MIN_LEFT_S:
                self.skipped.append(f"{name} (not loaded)")
                continue
            try:
                case = Case(torch, self.np, self.args.inputs, name)
            except Exception as exc:  # noqa: BLE001
                self.failures += 1
                print(f"# {name}: cannot load: {short_error(exc)}", flush=True)
                emit(name, "load", error=short_error(exc))
                continue
            print(f"# {name}: {case.n} matrices in {len(case.groups)} shape group(s), T = {case.iterations}, "
                  f"{case.flops / 1e9:.3f} nominal GFLOP", flush=True)
            cases.append(case)
            self.eager(case)
        # torch.compile last: its compilation is slow and the eager figures matter more.
        for case in cases:
            if case.uniform:
                self.compiled(case)
        skipped = f"; skipped (time budget): {', '.join(self.skipped)}" if self.skipped else "; nothing skipped"
        print(f"# done in {time.monotonic() - self.t0:.1f} s, {len(cases)} case(s), {self.failures} failed "
              f"measurement(s){skipped}", flush=True)
        return 1 if self.failures or not cases else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", required=True, help="the folder benches/gram dumped (SPHEREKIT_BENCH_DUMP)")
    ap.add_argument("--time-budget", type=float, default=120.0,
                    help="seconds; no measurement starts with less than %g s of it left, no "
                         "torch.compile with less than %g s (default 120)" % (MIN_LEFT_S, COMPILE_LEFT_S))
    args = ap.parse_args()
    t0 = time.monotonic()
    if not os.path.isdir(args.inputs):
        print(f"# no inputs folder {args.inputs} (run benches/gram with SPHEREKIT_BENCH_DUMP)", flush=True)
        print("# done: no case", flush=True)
        return 1
    found = sorted(f[:-len(".json")] for f in os.listdir(args.inputs) if f.endswith(".json"))
    names = [c for c in CASES if c in found] + [c for c in found if c not in CASES]
    for c in CASES:
        if c not in found:
            print(f"# no {c}.json in {args.inputs}: case {c} skipped", flush=True)
    if not names:
        print("# done: no case", flush=True)
        return 1
    try:
        import numpy as np
        import torch
    except ImportError as exc:
        print(f"# ERROR: {short_error(exc)} (torch and numpy are needed)", flush=True)
        return 2
    runner = Runner(args, torch, np)
    runner.t0 = t0  # the budget counts the imports
    return runner.run(names)


if __name__ == "__main__":
    sys.exit(main())
