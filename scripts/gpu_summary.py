#!/usr/bin/env python3
"""Summaries of spherekit's GPU runs and of its kernels' register use.

    gpu_summary.py <logdir>            summary of a scripts/gpu_suite.sh run (prints a short table,
                                       then the log-Bessel, Gram-iteration and simplex random
                                       features sections; writes <logdir>/summary.md)
    gpu_summary.py ptxas <report>      per-kernel registers and spills from build.rs's
                                       ptxas_report.txt; exit status 1 if any kernel spills

Logs read from <logdir> (all optional; whatever is missing is reported as missing):
  suite.log      written by gpu_suite.sh: `commit:`/`built:` lines, the nvidia-smi CSV, and one
                 `STEP <name> rc=<rc> secs=<s>` or `SKIP <name> <why>` line per step
  tests.log      `=== BEGIN test <bin> ===` ... libtest output ... `=== END test <bin> rc=<rc> ...`
  sanitizer.log  the same with `sanitizer <step>` (memcheck, racecheck, initcheck over the
                 hypersphere binary; memcheck-bessel etc. over the bessel one, memcheck-gram and
                 racecheck-gram over the gram one); compute-sanitizer's ERROR/RACECHECK SUMMARY lines
  bench.log, torch.log   `RESULT {json}` lines. Family "hypersphere" (benches/hypersphere,
                 hypersphere.py; keys family, op, dtype, rows, cols, impl, median_us, bytes, gbps,
                 frac_copy, error; optional variant): the main table. bench.log also holds
                 benches/bessel's family "bessel" lines, benches/gram's family "gram" lines and
                 benches/simplex's family "simplex" lines (below).
  torch_bessel.log  bessel.py's family "bessel" lines (SciPy, torch), with `# ...` notes
  torch_gram.log    gram.py's family "gram" lines (PyTorch on benches/gram's matrices), with notes
  torch_simplex.log simplex.py's family "simplex" lines (PyTorch on benches/simplex's shapes), with
                 `# ...` notes (`# simplex.py: ...` ones, e.g. skipped or time budget spent, are shown)

Family "bessel" (the log-Bessel section, after the main table):
  impl spherekit_gpu     op log_i/log_k, dtype f64/f32, mix uniform/debye/broadcast/uniform_sorted,
                         median_us, evals_per_s, frac_memory_bound: per op and dtype, evals/s and %
                         of the memory-bound limit per mix, uniform_sorted / uniform (the cost of
                         divergence), and the uniform mix against the issue's H100 targets (f64 >=
                         1e10, f32 >= 5e10 evals/s), met or MISSED
  impl copy_d2d          op copy, gbps: the copy bandwidth the fractions are relative to
  impl torch_gpu         op i0e/i1e, dtype, evals_per_s: shown beside, per dtype
  impl spherekit_cpu_1thread (ns_per_eval) against scipy_1thread (ns_per_eval,
                         ns_per_eval_successful, failures, n), per op and mix: speedup = SciPy's
                         ns/eval over the inputs where it succeeds / spherekit's (target >= 2x)
  impl spherekit_cpu_<t>threads (evals_per_s): not shown

Family "gram" (the Gram-iteration section, after the log-Bessel one; keys case, precision, impl, matrices,
iterations, median_us, error):
  impl spherekit_gpu     op dense, precision fast/f64/certified, matrices_per_s, gflops (nominal),
                         frac_copy: one row per case (b4096_k64, b65536_k16, net_mixed, d4096,
                         then any other), median us of each precision and the fast one's
                         throughput; op conv (resnet18_conv), layers, blocks, blocks_per_s: the
                         same row with the frequency blocks as the matrices
  impl copy_d2d          op copy, gbps: the copy bandwidth frac_copy is relative to
  impl torch_*           torch_matrix_norm, torch_gram_bmm, torch_gram_bmm_compiled,
                         torch_gram_bmm_per_layer, torch_gemm, torch_conv_gram_per_layer,
                         torch_conv_gram_grouped (gram.py), median_us, max_rel_diff_vs_spherekit:
                         one row per case and impl with the speedup of spherekit fast (torch us /
                         fast us; for torch_gemm the GFLOP/s ratio spherekit fast (nominal, 2 k^3
                         per step) / GEMM (2 k^3), i.e. the per-iteration throughput ratio) and
                         the issue's H100 targets, met or MISSED: b4096_k64 >= 20x
                         torch_matrix_norm and >= 1.5x the faster of torch_gram_bmm and
                         torch_gram_bmm_compiled, b65536_k16 >= 5x the faster of those two,
                         d4096 >= 0.50 of torch_gemm's GFLOP/s, resnet18_conv >= 1.5x
                         torch_conv_gram_per_layer; a target's case and impl get a row (dashes,
                         target "missing") even when their lines are missing
  No section without any gram line and without a step named *-gram (an older bundle).

Family "simplex" (the simplex random features section, last; keys op, dtype, impl, median_us, error,
and per op below):
  impl copy_d2d          op copy, gbps: the copy bandwidth frac_copy is relative to
  impl spherekit         op features (softmax feature map; rows 2^20, dim 64, features 256), dtype
                         bf16/f32, variant none/row/group (the stabilizer), bytes, gbps, frac_copy,
                         tflops: one row per dtype and variant with us, GB/s, % of the copy
                         bandwidth, TFLOP/s of the projection
                         op favor_noncausal/favor_causal (FAVOR+ forward, bf16; heads, len 1024 to
                         65536 with heads x len = 2^20, dim, features, median_us) and, at len 4096,
                         favor_noncausal_fwd_bwd/favor_causal_fwd_bwd (forward + backward) and
                         *_fwd_bwd_saved (the backward reading the saved forward stages; shown
                         beside torch's *_fwd_bwd): one row per op and len
  impl torch_*           (simplex.py) op features, impl torch_eager, bf16, variant none/row: shown
                         beside the same variant with speedup = torch us / spherekit us; op favor_*
                         (and *_fwd_bwd at 4096), impl torch_einsum (non-causal) / torch_cumsum
                         (causal), the linear forms, and torch_sdpa (softmax attention): shown beside
                         with speedups (> 1: spherekit faster), an error (e.g. out of memory; impl
                         "torch" when the whole forward block failed) abbreviated
  Also: the smallest len at which spherekit's forward beats torch_sdpa's, per causality, and the
  issue's H100 targets, met or MISSED: bf16 row feature map >= 2x torch_eager row and >= 0.70 of
  the copy bandwidth, favor_causal at len 16384 >= 3x torch_cumsum; a target's row appears (dashes,
  target "missing") even when its lines are missing. No section without any simplex line and
  without a step named *-simplex (an older bundle).
Missing lines are reported as missing, with the status of the step that should have written them.
"""

import json
import os
import re
import sys
from collections import OrderedDict, defaultdict

OP_ORDER = ["normalize_fwd", "normalize_bwd", "lerp_fwd", "lerp_bwd"]
DTYPE_ORDER = ["bf16", "f16", "f32"]
TORCH_IMPLS = ("torch_eager", "torch_compile")
LATENCY_BYTES = 8 << 20  # below this much traffic a row is a latency measurement


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


# ---- suite.log ----------------------------------------------------------------------------------

def parse_suite(text):
    info = {"commit": "?", "built": "?", "run": "?", "gpu": None, "steps": OrderedDict()}
    if text is None:
        return info
    lines = text.splitlines()
    for i, line in enumerate(lines):
        for key in ("commit", "built", "run"):
            if line.startswith(key + ":"):
                info[key] = line.split(":", 1)[1].strip()
        if line.startswith("name, driver_version") and i + 1 < len(lines) and info["gpu"] is None:
            info["gpu"] = [c.strip() for c in lines[i + 1].split(",")]
        m = re.match(r"STEP (\S+) rc=(-?\d+) secs=(\d+)", line)
        if m:
            info["steps"][m.group(1)] = (int(m.group(2)), int(m.group(3)))
        m = re.match(r"SKIP (\S+) (.*)", line)
        if m:
            info["steps"][m.group(1)] = ("skip", m.group(2).strip())
    return info


# ---- sections of tests.log / sanitizer.log --------------------------------------------------------

def sections(text, kind):
    """{name: (body, rc or None)} for `=== BEGIN <kind> <name> ===` ... `=== END <kind> <name> rc=N`."""
    out = OrderedDict()
    if text is None:
        return out
    cur, body = None, []
    for line in text.splitlines():
        m = re.match(rf"=== BEGIN {kind} (\S+) ===", line)
        if m:
            cur, body = m.group(1), []
            continue
        m = re.match(rf"=== END {kind} (\S+) rc=(-?\d+)", line)
        if m and cur is not None:
            out[cur] = ("\n".join(body), int(m.group(2)))
            cur = None
            continue
        m = re.match(rf"=== SKIP {kind} (\S+)", line)
        if m:
            out[m.group(1)] = ("", None)
            continue
        if cur is not None:
            body.append(line)
    if cur is not None:  # cut off (the suite was killed)
        out[cur] = ("\n".join(body), -1)
    return out


def test_counts(body):
    total = {"passed": 0, "failed": 0, "ignored": 0}
    seen = False
    for m in re.finditer(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", body):
        seen = True
        total["passed"] += int(m.group(1))
        total["failed"] += int(m.group(2))
        total["ignored"] += int(m.group(3))
    failed = re.findall(r"^test (\S+) \.\.\. FAILED", body, re.M)
    return total if seen else None, failed


def rc_text(rc):
    if rc is None:
        return "skipped"
    if rc == 0:
        return "ok"
    if rc in (124, 137):
        return f"TIMEOUT(rc {rc})"
    if rc == -1:
        return "CUT OFF"
    return f"rc {rc}"


def summarize_tests(text):
    secs = sections(text, "test")
    if not secs:
        return ["tests: no test log"], []
    parts, failed_names = [], []
    tot = {"passed": 0, "failed": 0, "ignored": 0}
    bad = 0
    for name, (body, rc) in secs.items():
        counts, failed = test_counts(body)
        failed_names += [f"{name}::{t}" for t in failed]
        if counts is None:
            parts.append(f"{name} {rc_text(rc)} (no result line)")
            bad += 1
            continue
        for k in tot:
            tot[k] += counts[k]
        status = "" if rc == 0 else f" [{rc_text(rc)}]"
        if rc != 0:
            bad += 1
        parts.append(f"{name} {counts['passed']}/{counts['failed']}/{counts['ignored']}{status}")
    verdict = "OK" if bad == 0 and tot["failed"] == 0 else "FAIL"
    head = (f"tests {verdict}: {tot['passed']} passed, {tot['failed']} failed, {tot['ignored']} ignored "
            f"(passed/failed/ignored: {'; '.join(parts)})")
    return [head], failed_names


def summarize_sanitizer(text):
    secs = sections(text, "sanitizer")
    if not secs:
        return "sanitizer: no sanitizer log"
    parts = []
    for tool, (body, rc) in secs.items():
        if rc is None:
            parts.append(f"{tool} skipped")
            continue
        errs = re.findall(r"ERROR SUMMARY: (\d+) errors?", body)
        races = re.findall(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)", body)
        bits = []
        if errs:
            bits.append(f"{errs[-1]} errors")
        if races:
            h, e, w = races[-1]
            bits.append(f"{h} hazards ({e} errors, {w} warnings)")
        if not bits:
            bits.append("no summary line")
        counts = re.search(r"test result: \w+\. (\d+) passed; (\d+) failed", body)
        if counts:
            bits.append(f"tests {counts.group(1)} passed/{counts.group(2)} failed")
        parts.append(f"{tool} {', '.join(bits)} [{rc_text(rc)}]")
    return "sanitizer: " + "; ".join(parts)


# ---- RESULT lines ---------------------------------------------------------------------------------

def results(*texts):
    out = []
    for text in texts:
        if text is None:
            continue
        for line in text.splitlines():
            i = line.find("RESULT ")
            if i < 0:
                continue
            try:
                rec = json.loads(line[i + len("RESULT "):])
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def fnum(x, fmt):
    return "-" if x is None else format(x, fmt)


def cell_us(rec):
    if rec is None:
        return "-"
    if rec.get("error"):
        return "skip" if str(rec["error"]).startswith("skipped") else "ERR"
    return fnum(num(rec.get("median_us")), ".1f")


def ok(rec):
    return rec is not None and not rec.get("error") and rec.get("median_us")


def build_table(recs):
    copies = [r for r in recs if r.get("impl") == "copy_d2d" and ok(r) and r.get("gbps")]
    copy_gbps = max((r["gbps"] for r in copies), default=None)
    rows = OrderedDict()
    torch = {}
    for r in recs:
        impl = r.get("impl")
        if impl == "copy_d2d" or "op" not in r:
            continue
        key = (r.get("op"), r.get("dtype"), r.get("rows"), r.get("cols"))
        if impl in TORCH_IMPLS:
            torch[key + (impl,)] = r
            rows.setdefault(key + ("",), None)
        else:
            label = r.get("variant") or ""
            if impl != "spherekit":
                label = f"{label}{'/' if label else ''}{impl}"
            k = key + (label,)
            prev = rows.get(k)
            if prev is None or (ok(r) and (not ok(prev) or r["median_us"] < prev["median_us"])):
                rows[k] = r
    # Drop the placeholder row of a shape that has labelled spherekit rows only.
    labelled = {k[:4] for k, v in rows.items() if k[4] and v is not None}
    for k in [k for k, v in rows.items() if not k[4] and v is None and k[:4] in labelled]:
        del rows[k]

    def order(k):
        op, dtype, r, c, label = k
        return (OP_ORDER.index(op) if op in OP_ORDER else len(OP_ORDER), str(op),
                DTYPE_ORDER.index(dtype) if dtype in DTYPE_ORDER else 9, str(dtype),
                (r or 0) * (c or 0) < (1 << 22), c or 0, r or 0, label)

    table = []
    for k in sorted(rows, key=order):
        op, dtype, r, c, label = k
        sk = rows[k]
        eager = torch.get((op, dtype, r, c, "torch_eager"))
        comp = torch.get((op, dtype, r, c, "torch_compile"))
        gbps = sk.get("gbps") if ok(sk) else None
        if gbps is None and ok(sk) and sk.get("bytes"):
            gbps = sk["bytes"] / (sk["median_us"] * 1e-6) / 1e9
        frac = sk.get("frac_copy") if ok(sk) else None
        if frac is None and gbps and copy_gbps:
            frac = gbps / copy_gbps
        best = min([t["median_us"] for t in (eager, comp) if ok(t)], default=None)
        speed = best / sk["median_us"] if best and ok(sk) else None
        nbytes = (sk or eager or comp or {}).get("bytes") or 0
        shape = f"{r}x{c}" + (" lat" if nbytes and nbytes < LATENCY_BYTES else "")
        table.append([op + (f" {label}" if label else ""), dtype, shape, cell_us(sk), fnum(gbps, ".0f"),
                      fnum(None if frac is None else 100 * frac, ".0f"), cell_us(eager), cell_us(comp),
                      fnum(speed, ".2f")])
    return table, copy_gbps


HEADERS = ["op", "dtype", "rows x cols", "sk us", "sk GB/s", "%copy", "eager us", "compile us", "speedup"]


def text_table(table, headers=HEADERS, left=3):
    """Columns before `left` are left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    fmt = lambda row: "  ".join(v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))  # noqa: E731
    return [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(row) for row in table]


def md_table(table, headers=HEADERS, left=3):
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i < left else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return lines


# ---- log-Bessel ----------------------------------------------------------------------------------

BESSEL_OPS = ["log_i", "log_k"]
BESSEL_DTYPES = ["f64", "f32"]
BESSEL_MIXES = ["uniform", "debye", "broadcast", "uniform_sorted"]
BESSEL_CPU_MIXES = ["uniform", "debye", "broadcast"]
BESSEL_TARGETS = {"f64": 1e10, "f32": 5e10}  # evals/s, H100, uniform mix (the issue)
BESSEL_CPU_SPEEDUP = 2.0  # SciPy ns/eval (successful inputs) / spherekit ns/eval, one thread


def num(x):
    """x as a finite float, or None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if x == x and abs(x) != float("inf") else None


def sci(x):
    """1.23e10 (or '-')."""
    if x is None:
        return "-"
    m, e = f"{x:.2e}".split("e")
    return f"{m}e{int(e)}"


def ordered(keys, order):
    return [k for k in order if k in keys] + sorted((k for k in keys if k not in order), key=str)


def step_text(steps, name):
    st = steps.get(name)
    if st is None:
        return f"{name} not run"
    if st[0] == "skip":
        return f"{name} skipped: {st[1]}"
    return f"{name} {rc_text(st[0])} {st[1]}s"


def bessel_section(recs, gpu_name, steps):
    """[("note", text) or ("table", headers, rows)] for the log-Bessel section; [] without any
    bessel RESULT line and without a bessel step (an older bundle)."""
    if not recs and not any(n.endswith("bessel") for n in steps):
        return []
    gpu, torch, cpu1, scipy = {}, {}, {}, {}
    copy_gbps = None
    errors = []
    for r in recs:
        impl, op = r.get("impl"), r.get("op")
        if r.get("error"):
            errors.append(r)
        elif impl == "spherekit_gpu":
            gpu[(op, r.get("dtype"), r.get("mix"))] = r
        elif impl == "copy_d2d":
            copy_gbps = num(r.get("gbps")) or copy_gbps
        elif impl == "torch_gpu":
            torch[(op, r.get("dtype"))] = num(r.get("evals_per_s"))
        elif impl == "spherekit_cpu_1thread":
            cpu1[(op, r.get("mix"))] = num(r.get("ns_per_eval"))
        elif impl == "scipy_1thread":
            scipy[(op, r.get("mix"))] = r
    out = []
    note = lambda text: out.append(("note", text))  # noqa: E731
    where = "" if gpu_name and "H100" in gpu_name else \
        f"; this GPU: {gpu_name or 'unknown'}, so met/MISSED is indicative only"
    note(f"log-Bessel GPU: evals/s (% of the memory-bound limit: bytes read + written over the d2d copy, "
         f"{fnum(copy_gbps, '.0f')} GB/s); sorted/unif = uniform_sorted / uniform (the cost of divergence); "
         f"target: uniform mix on an H100, f64 >= {sci(BESSEL_TARGETS['f64'])}, f32 >= "
         f"{sci(BESSEL_TARGETS['f32'])} evals/s{where}; torch = torch.special i0e / i1e evals/s")
    if errors:
        e = errors[0]
        note(f"log-Bessel RESULT errors: {len(errors)}; first: {e.get('op')} {e.get('dtype')} {e.get('mix')} "
             f"{e.get('impl')}: {str(e['error'])[:160]}")
    if gpu:
        mixes = ordered({k[2] for k in gpu}, BESSEL_MIXES)
        rows = []
        for op in ordered({k[0] for k in gpu}, BESSEL_OPS):
            for dtype in ordered({k[1] for k in gpu if k[0] == op}, BESSEL_DTYPES):
                row = [str(op), str(dtype)]
                for mix in mixes:
                    g = gpu.get((op, dtype, mix))
                    e = num(g.get("evals_per_s")) if g else None
                    f = num(g.get("frac_memory_bound")) if g else None
                    row.append(sci(e) + ("" if f is None else f" ({100 * f:.0f}%)"))
                e_u = num((gpu.get((op, dtype, "uniform")) or {}).get("evals_per_s"))
                e_s = num((gpu.get((op, dtype, "uniform_sorted")) or {}).get("evals_per_s"))
                row.append(f"{e_s / e_u:.2f}x" if e_u and e_s else "-")
                goal = BESSEL_TARGETS.get(dtype)
                if goal is None:
                    row.append("-")
                elif e_u is None:
                    row.append("missing")
                else:
                    row.append(f"{'met' if e_u >= goal else 'MISSED'} ({e_u / goal:.2f}x)")
                row.append(f"{sci(torch.get(('i0e', dtype)))} / {sci(torch.get(('i1e', dtype)))}")
                rows.append(row)
        out.append(("table", ["op", "dtype"] + mixes + ["sorted/unif", "target", "torch i0e / i1e"], rows))
    else:
        note(f"log-Bessel GPU: no spherekit_gpu RESULT lines in bench.log ({step_text(steps, 'bench-bessel')})")
    if not torch:
        note(f"torch i0e/i1e: no torch_gpu RESULT lines in torch_bessel.log ({step_text(steps, 'torch-bessel')})")
    note(f"log-Bessel CPU, f64, one thread, ns per evaluation: scipy ok = SciPy over the inputs where it "
         f"succeeds; speedup = scipy ok / spherekit (target >= {BESSEL_CPU_SPEEDUP:g}x); failures = SciPy's "
         f"non-finite results")
    if cpu1 or scipy:
        keys = set(cpu1) | set(scipy)
        rows = []
        for op in ordered({k[0] for k in keys}, BESSEL_OPS):
            for mix in ordered({k[1] for k in keys if k[0] == op}, BESSEL_CPU_MIXES):
                sk = cpu1.get((op, mix))
                sp = scipy.get((op, mix)) or {}
                ok_ns = num(sp.get("ns_per_eval_successful"))
                speed = ok_ns / sk if ok_ns and sk else None
                fails, n = sp.get("failures"), sp.get("n")
                rows.append([str(op), str(mix), fnum(sk, ".1f"), fnum(num(sp.get("ns_per_eval")), ".1f"),
                             fnum(ok_ns, ".1f"), "-" if speed is None else f"{speed:.2f}x",
                             "-" if speed is None else ("met" if speed >= BESSEL_CPU_SPEEDUP else "MISSED"),
                             "-" if fails is None else f"{fails}" + ("" if n is None else f"/{n}")])
        out.append(("table", ["op", "mix", "spherekit", "scipy", "scipy ok", "speedup", "target",
                              "scipy failures"], rows))
    if not cpu1:
        note(f"log-Bessel CPU: no spherekit_cpu_1thread RESULT lines in bench.log "
             f"({step_text(steps, 'bench-bessel')})")
    if not scipy:
        note(f"SciPy: no scipy_1thread RESULT lines in torch_bessel.log ({step_text(steps, 'torch-bessel')})")
    return out


# ---- Gram iteration --------------------------------------------------------------------------------

GRAM_CASES = ["b4096_k64", "b65536_k16", "net_mixed", "d4096", "resnet18_conv"]
GRAM_PRECISIONS = ["fast", "f64", "certified"]
GRAM_TORCH = ["torch_matrix_norm", "torch_gram_bmm", "torch_gram_bmm_compiled", "torch_gram_bmm_per_layer",
              "torch_gemm", "torch_conv_gram_per_layer", "torch_conv_gram_grouped"]
GRAM_BMM = ("torch_gram_bmm", "torch_gram_bmm_compiled")  # a target counts the faster of the two
# case -> [(torch impl or GRAM_BMM, spherekit fast speedup at least)]: the H100 targets
GRAM_TARGETS = {"b4096_k64": [("torch_matrix_norm", 20.0), (GRAM_BMM, 1.5)], "b65536_k16": [(GRAM_BMM, 5.0)],
                "d4096": [("torch_gemm", 0.5)], "resnet18_conv": [("torch_conv_gram_per_layer", 1.5)]}
# Impls whose "speedup" is spherekit fast GFLOP/s over theirs (a single GEMM, not the same work).
GRAM_BY_GFLOPS = ("torch_gemm",)


def times(x):
    """1.52x, 20.8x, 138x (or '-')."""
    if x is None:
        return "-"
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def gram_speed(impl, t, fast):
    """spherekit fast against one torch record: torch us / fast us, or for GRAM_BY_GFLOPS the
    GFLOP/s ratio fast / torch; None when either side is missing."""
    if not ok(t) or not ok(fast):
        return None
    if impl in GRAM_BY_GFLOPS:
        sk_g, t_g = num(fast.get("gflops")), num(t.get("gflops"))
        return sk_g / t_g if sk_g and t_g else None
    t_us, f_us = num(t.get("median_us")), num(fast.get("median_us"))
    return t_us / f_us if t_us and f_us else None


def gram_section(recs, gpu_name, steps):
    """[("note", text) or ("table", headers, rows)] for the Gram-iteration section; [] without any
    gram RESULT line and without a gram step (an older bundle)."""
    if not recs and not any(n.endswith("-gram") for n in steps):
        return []
    sk, torch = {}, {}
    copy_gbps = None
    errors, skipped = [], 0
    for r in recs:
        impl, case = r.get("impl"), r.get("case")
        if str(r.get("error") or "").startswith("skipped"):
            skipped += 1
        elif r.get("error"):
            errors.append(r)
        if impl == "copy_d2d":
            copy_gbps = num(r.get("gbps")) or copy_gbps
        elif impl == "spherekit_gpu":
            sk[(case, r.get("precision"))] = r
        elif str(impl).startswith("torch_"):
            torch[(case, impl)] = r
    out = []
    note = lambda text: out.append(("note", text))  # noqa: E731
    where = "" if gpu_name and "H100" in gpu_name else \
        f"; this GPU: {gpu_name or 'unknown'}, so met/MISSED is indicative only"
    note(f"Gram iteration (f32 matrices, T steps, one call per batch): us = median per call; GFLOP/s nominal; "
         f"%copy = the matrices read once over the d2d copy ({fnum(copy_gbps, '.0f')} GB/s); speedup = torch us "
         f"/ spherekit fast us, except torch_gemm: fast GFLOP/s / GEMM GFLOP/s (per-iteration throughput); "
         f"resnet18_conv: 20 conv layers in one call, matrices = frequency blocks; targets (H100): b4096_k64 "
         f">= 20x torch_matrix_norm and >= 1.5x the faster torch_gram_bmm (eager or compiled), b65536_k16 >= 5x "
         f"that, d4096 >= 0.50x torch_gemm, resnet18_conv >= 1.5x torch_conv_gram_per_layer{where}; rel diff = "
         f"max over the matrices (layers) of |torch - fast| / fast")
    if errors or skipped:
        line = f"Gram RESULT errors: {len(errors)}, skipped: {skipped}"
        if errors:
            e = errors[0]
            line += f"; first: {e.get('case')} {e.get('precision')} {e.get('impl')}: {str(e['error'])[:160]}"
        note(line)
    # Every case with a line, and the targets' cases even without one (their rows show dashes).
    cases = ordered({k[0] for k in sk} | {k[0] for k in torch} | set(GRAM_TARGETS), GRAM_CASES)
    if sk:
        rows = []
        for case in cases:
            fast = sk.get((case, "fast"))
            any_rec = fast or next((v for k, v in sk.items() if k[0] == case), None) or {}
            good = fast if ok(fast) else {}
            frac = num(good.get("frac_copy"))
            count = any_rec.get("matrices", "-")
            rate = num(good.get("matrices_per_s"))
            if any_rec.get("op") == "conv":  # the frequency blocks are the matrices
                count = f"{any_rec.get('blocks', '-')} ({any_rec.get('layers', '-')} layers)"
                rate = num(good.get("blocks_per_s"))
            rows.append([str(case), str(any_rec.get("iterations", "-")), str(count)]
                        + [cell_us(sk.get((case, p))) for p in GRAM_PRECISIONS]
                        + [sci(rate), fnum(num(good.get("gflops")), ".0f"),
                           fnum(None if frac is None else 100 * frac, ".1f")])
        out.append(("table", ["case", "T", "matrices", "fast us", "f64 us", "certified us", "fast matrices/s",
                              "fast GFLOP/s", "%copy"], rows))
    else:
        note(f"Gram iteration GPU: no spherekit_gpu RESULT lines in bench.log ({step_text(steps, 'bench-gram')})")
    if torch:
        rows = []
        for case in cases:
            fast = sk.get((case, "fast"))
            impls = ordered({k[1] for k in torch if k[0] == case}, GRAM_TORCH)
            goals = {}  # impl -> target cell
            for impl, goal in GRAM_TARGETS.get(case, []):
                cands = [i for i in (impl if isinstance(impl, tuple) else (impl,)) if ok(torch.get((case, i)))]
                best = min(cands, key=lambda i: torch[(case, i)]["median_us"], default=None)
                speed = None if best is None else gram_speed(best, torch[(case, best)], fast)
                if speed is None:
                    best = best or (impl[0] if isinstance(impl, tuple) else impl)
                    goals[best] = f"missing (>= {goal:g}x)"
                else:
                    goals[best] = f"{'met' if speed >= goal else 'MISSED'} (>= {goal:g}x)"
                if best not in impls:
                    impls.append(best)
            for impl in impls:
                t = torch.get((case, impl))
                speed = gram_speed(impl, t, fast)
                diff = num((t or {}).get("max_rel_diff_vs_spherekit")) if ok(t) else None
                rows.append([str(case), str(impl), cell_us(t), times(speed),
                             goals.get(impl, "-"), sci(diff)])
        out.append(("table", ["case", "torch impl", "us", "speedup", "target", "rel diff"], rows))
    else:
        note(f"Gram torch: no torch RESULT lines in torch_gram.log ({step_text(steps, 'torch-gram')})")
    return out


# ---- simplex random features ------------------------------------------------------------------------

SIMPLEX_DTYPES = ["bf16", "f32"]
SIMPLEX_VARIANTS = ["none", "row", "group"]
SIMPLEX_FAVOR_OPS = ["favor_noncausal", "favor_causal", "favor_noncausal_fwd_bwd", "favor_causal_fwd_bwd",
                     "favor_noncausal_fwd_bwd_saved", "favor_causal_fwd_bwd_saved"]
# op -> the torch linear-attention form of the same computation (simplex.py)
SIMPLEX_LINEAR = {"favor_noncausal": "torch_einsum", "favor_causal": "torch_cumsum",
                  "favor_noncausal_fwd_bwd": "torch_einsum", "favor_causal_fwd_bwd": "torch_cumsum"}
# The H100 targets: the bf16 row-stabilized feature map >= 2x torch_eager (row) and >= 0.70
# of the copy bandwidth; causal FAVOR+ forward at len 16384 >= 3x torch_cumsum.
SIMPLEX_FEATURE_SPEEDUP = 2.0
SIMPLEX_FEATURE_FRAC = 0.70
SIMPLEX_CAUSAL_TARGET = ("favor_causal", 16384, 3.0)


def short_error(text, n=40):
    """The first line of an error message, whitespace collapsed, cut to n characters."""
    s = " ".join(str(text).split("\n", 1)[0].split())
    return s if len(s) <= n else s[:n - 3] + "..."


def goal_cell(value, goal, label):
    """'met (>= 2x)', 'MISSED (>= 2x)' or 'missing (>= 2x)'."""
    if value is None:
        return f"missing ({label})"
    return f"{'met' if value >= goal else 'MISSED'} ({label})"


def simplex_section(recs, gpu_name, steps, torch_notes=()):
    """[("note", text) or ("table", headers, rows)] for the simplex random features section; [] without
    any simplex RESULT line and without a simplex step (an older bundle). torch_notes: simplex.py's
    `# simplex.py: ...` lines (skipped, time budget spent), shown when present."""
    if not recs and not any(n.endswith("-simplex") for n in steps):
        return []
    feat_sk, feat_torch, fav_sk, fav_torch = {}, {}, {}, {}
    copy_gbps = None
    errors, skipped = [], 0
    for r in recs:
        impl, op = r.get("impl"), r.get("op")
        if str(r.get("error") or "").startswith("skipped"):
            skipped += 1
        elif r.get("error"):
            errors.append(r)
        if impl == "copy_d2d":
            copy_gbps = num(r.get("gbps")) or copy_gbps
        elif op == "features":
            key = (r.get("dtype"), r.get("variant") or "none")
            if impl == "spherekit":
                feat_sk[key] = r
            elif impl == "torch_eager":
                feat_torch[key] = r
        elif str(op).startswith("favor_"):
            key = (op, num(r.get("len")))
            if impl == "spherekit":
                fav_sk[key] = r
            elif str(impl).startswith("torch"):  # impl "torch": the whole forward block failed
                fav_torch[key + (impl,)] = r
    out = []
    note = lambda text: out.append(("note", text))  # noqa: E731
    where = "" if gpu_name and "H100" in gpu_name else \
        f"; this GPU: {gpu_name or 'unknown'}, so met/MISSED is indicative only"
    shape = next((r for r in fav_sk.values()), None) or {}
    note(f"Simplex random features (softmax kernel; d2d copy {fnum(copy_gbps, '.0f')} GB/s): feature map "
         f"2^20 rows, dim 64, m 256, us = median per call, %copy = (x read + features written) over the copy; "
         f"FAVOR+ bf16, heads x len = 2^20 rows, dim {shape.get('dim', 64)}, m {shape.get('features', 256)}, "
         f"fwd_bwd = forward + backward; linear = torch_einsum (non-causal) / torch_cumsum (causal); "
         f"x = torch us / spherekit us (> 1: spherekit faster); targets (H100): bf16 row >= "
         f"{SIMPLEX_FEATURE_SPEEDUP:g}x torch_eager row and >= {100 * SIMPLEX_FEATURE_FRAC:.0f}% of copy, "
         f"favor_causal len {SIMPLEX_CAUSAL_TARGET[1]} >= {SIMPLEX_CAUSAL_TARGET[2]:g}x torch_cumsum{where}")
    if errors or skipped:
        line = f"Simplex RESULT errors: {len(errors)}, skipped: {skipped}"
        if errors:
            e = errors[0]
            at = f"len {e.get('len')}" if e.get("len") is not None else f"{e.get('dtype')} {e.get('variant')}"
            line += f"; first: {e.get('op')} {at} {e.get('impl')}: {str(e['error'])[:160]}"
        note(line)
    # The feature map: every (dtype, variant) with a line, and the target's row even without one.
    keys = set(feat_sk) | set(feat_torch) | {("bf16", "row")}
    if feat_sk or feat_torch:
        rows = []
        for dtype in ordered({k[0] for k in keys}, SIMPLEX_DTYPES):
            for variant in ordered({k[1] for k in keys if k[0] == dtype}, SIMPLEX_VARIANTS):
                sk = feat_sk.get((dtype, variant))
                good = sk if ok(sk) else {}
                us = num(good.get("median_us"))
                gbps = num(good.get("gbps"))
                if gbps is None and us and num(good.get("bytes")):
                    gbps = good["bytes"] / us / 1e3
                frac = num(good.get("frac_copy"))
                if frac is None and gbps and copy_gbps:
                    frac = gbps / copy_gbps
                tflops = num(good.get("tflops"))
                t = feat_torch.get((dtype, variant))
                t_us = num(t.get("median_us")) if ok(t) else None
                speed = t_us / us if t_us and us else None
                goals = ["-", "-"]
                if (dtype, variant) == ("bf16", "row"):
                    goals = [goal_cell(speed, SIMPLEX_FEATURE_SPEEDUP, f">= {SIMPLEX_FEATURE_SPEEDUP:g}x"),
                             goal_cell(frac, SIMPLEX_FEATURE_FRAC, f">= {100 * SIMPLEX_FEATURE_FRAC:.0f}%")]
                rows.append([str(dtype), str(variant), cell_us(sk), fnum(gbps, ".0f"),
                             fnum(None if frac is None else 100 * frac, ".0f"), fnum(tflops, ".1f"),
                             cell_us(t) if dtype == "bf16" or t else "-", times(speed)] + goals)
        out.append(("table", ["features", "variant", "us", "GB/s", "%copy", "TFLOP/s", "eager us", "x eager",
                              "target x", "target %copy"], rows))
    if not feat_sk:
        note(f"Simplex feature map: no spherekit RESULT lines in bench.log ({step_text(steps, 'bench-simplex')})")
    # FAVOR+: one row per (op, len), and the target's row even without a line.
    fav_keys = set(fav_sk) | {k[:2] for k in fav_torch} | {SIMPLEX_CAUSAL_TARGET[:2]}
    if fav_sk or fav_torch:
        rows = []
        for op in ordered({k[0] for k in fav_keys}, SIMPLEX_FAVOR_OPS):
            for length in sorted({k[1] for k in fav_keys if k[0] == op}, key=lambda n: (n is None, n or 0)):
                sk = fav_sk.get((op, length))
                us = num(sk.get("median_us")) if ok(sk) else None
                # *_saved (the backward reads the forward's stages) is beside torch's same step.
                top = op[:-len("_saved")] if op.endswith("_saved") else op
                fallback = fav_torch.get((top, length, "torch"))
                lin = fav_torch.get((top, length, SIMPLEX_LINEAR.get(top))) or fallback
                sdpa = fav_torch.get((top, length, "torch_sdpa")) or fallback
                speeds = []
                for t in (lin, sdpa):
                    t_us = num(t.get("median_us")) if ok(t) else None
                    speeds.append(t_us / us if t_us and us else None)
                goal = "-"
                if (op, length) == SIMPLEX_CAUSAL_TARGET[:2]:
                    goal = goal_cell(speeds[0], SIMPLEX_CAUSAL_TARGET[2], f">= {SIMPLEX_CAUSAL_TARGET[2]:g}x")
                err = next((t["error"] for t in (lin, sdpa) if t and t.get("error")), None)
                any_rec = sk or lin or sdpa or {}
                rows.append([str(op), fnum(length, "5.0f"), str(any_rec.get("heads", "-")), cell_us(sk),
                             cell_us(lin), times(speeds[0]), cell_us(sdpa), times(speeds[1]), goal,
                             "" if err is None else short_error(err)])
        headers = ["favor", "len", "heads", "sk us", "linear us", "x linear", "sdpa us", "x sdpa", "target",
                   "torch error"]
        width = max(len(row[-1]) for row in rows)
        if not width:  # no error: no error column
            headers, rows = headers[:-1], [row[:-1] for row in rows]
        else:  # left-aligned (text_table right-aligns it)
            rows = [row[:-1] + [row[-1].ljust(width)] for row in rows]
            headers = headers[:-1] + [headers[-1].ljust(width)]
        out.append(("table", headers, rows))
        # Where linear attention starts to win: the smallest len at which the forward beats SDPA.
        bits = []
        for op, label in (("favor_noncausal", "non-causal"), ("favor_causal", "causal")):
            pairs = []
            for (o, length), sk in fav_sk.items():
                sdpa = fav_torch.get((o, length, "torch_sdpa"))
                sk_us = num(sk.get("median_us")) if ok(sk) else None
                t_us = num(sdpa.get("median_us")) if ok(sdpa) else None
                if o == op and length is not None and sk_us and t_us:
                    pairs.append((length, sk_us < t_us))
            wins = [n for n, win in sorted(pairs) if win]
            if not pairs:
                bits.append(f"{label}: no measured pair")
            elif wins:
                bits.append(f"{label}: from len {wins[0]:.0f}")
            else:
                bits.append(f"{label}: not within the measured lengths "
                            f"({min(p[0] for p in pairs):.0f}-{max(p[0] for p in pairs):.0f})")
        note("FAVOR+ forward faster than torch_sdpa (smallest len): " + "; ".join(bits))
    if not fav_sk:
        note(f"FAVOR+: no spherekit RESULT lines in bench.log ({step_text(steps, 'bench-simplex')})")
    if not feat_torch and not fav_torch:
        why = "; ".join(short_error(n.lstrip("# "), 120) for n in torch_notes)
        note(f"Simplex torch: no torch RESULT lines in torch_simplex.log ({step_text(steps, 'torch-simplex')})"
             + (f"; {why}" if why else ""))
    elif torch_notes:
        note("torch_simplex.log: " + "; ".join(short_error(n.lstrip("# "), 120) for n in torch_notes))
    return out


def render(blocks, markdown):
    lines = []
    for i, block in enumerate(blocks):
        if not markdown and i and blocks[i - 1][0] == "table":
            lines.append("")
        if block[0] == "note":
            lines.append(f"- {block[1]}" if markdown else block[1])
        else:
            _, headers, rows = block
            if markdown:
                lines += [""] + md_table(rows, headers, 2) + [""]
            else:
                lines += [line.rstrip() for line in text_table(rows, headers, 2)]
    return lines


def summary(logdir):
    suite = parse_suite(read(os.path.join(logdir, "suite.log")))
    torch_simplex = read(os.path.join(logdir, "torch_simplex.log"))
    all_recs = results(read(os.path.join(logdir, "bench.log")), read(os.path.join(logdir, "torch.log")),
                       read(os.path.join(logdir, "torch_bessel.log")), read(os.path.join(logdir, "torch_gram.log")),
                       torch_simplex)
    recs = [r for r in all_recs if r.get("family") not in ("bessel", "gram", "simplex")]
    bessel_recs = [r for r in all_recs if r.get("family") == "bessel"]
    gram_recs = [r for r in all_recs if r.get("family") == "gram"]
    simplex_recs = [r for r in all_recs if r.get("family") == "simplex"]
    simplex_notes = [line.strip() for line in (torch_simplex or "").splitlines()
                     if line.startswith("# simplex.py:")]
    head = []
    gpu = suite["gpu"]
    if gpu and len(gpu) >= 5:
        head.append(f"GPU: {gpu[0]} (driver {gpu[1]}, {gpu[2]}, SM clock {gpu[3]} of max {gpu[4]})")
    elif gpu:
        head.append("GPU: " + ", ".join(gpu))
    else:
        head.append("GPU: unknown (no nvidia-smi output in suite.log)")
    head.append(f"commit: {suite['commit']}  built: {suite['built']}  run: {suite['run']}")
    if suite["steps"]:
        bits = []
        for name, st in suite["steps"].items():
            if st[0] == "skip":
                bits.append(f"{name} skipped")
            else:
                bits.append(f"{name} {rc_text(st[0])} {st[1]}s")
        head.append("steps: " + ", ".join(bits))
    tests_lines, failed = summarize_tests(read(os.path.join(logdir, "tests.log")))
    head += tests_lines
    if failed:
        more = f" (+{len(failed) - 12} more)" if len(failed) > 12 else ""
        head.append("failed tests: " + ", ".join(failed[:12]) + more)
    head.append(summarize_sanitizer(read(os.path.join(logdir, "sanitizer.log"))))
    table, copy_gbps = build_table(recs)
    head.append(f"d2d copy: {fnum(copy_gbps, '.0f')} GB/s (read + write); us = median microseconds per "
                "call; speedup = faster torch / spherekit; 'lat' = latency-sized")
    errors = [r for r in recs if r.get("error") and not str(r["error"]).startswith(("skipped", "dry-run"))]
    skipped = [r for r in recs if str(r.get("error") or "").startswith("skipped")]
    if errors or skipped:
        line = f"RESULT errors: {len(errors)}, skipped: {len(skipped)}"
        if errors:
            e = errors[0]
            line += (f"; first: {e.get('op')} {e.get('dtype')} {e.get('rows')}x{e.get('cols')} "
                     f"{e.get('impl')}: {str(e['error'])[:160]}")
        head.append(line)
    if not table:
        body = ["(no hypersphere RESULT lines in bench.log / torch.log)"]
        md_body = body
    else:
        body = text_table(table)
        md_body = md_table(table)
    bessel = bessel_section(bessel_recs, gpu[0] if gpu else None, suite["steps"])
    bessel_text = [""] + render(bessel, False) if bessel else []
    gram = gram_section(gram_recs, gpu[0] if gpu else None, suite["steps"])
    gram_text = [""] + render(gram, False) if gram else []
    simplex = simplex_section(simplex_recs, gpu[0] if gpu else None, suite["steps"], simplex_notes)
    simplex_text = [""] + render(simplex, False) if simplex else []
    # The GPU machine returns only the last ~12000 characters of output: keep the table short (the
    # log-Bessel, Gram-iteration and simplex sections, a dozen or two lines each, are kept whole).
    limit = int(os.environ.get("SK_SUMMARY_MAX_CHARS", "9000"))
    budget = (limit - sum(len(h) + 1 for h in head) - sum(len(b) + 1 for b in bessel_text)
              - sum(len(g) + 1 for g in gram_text) - sum(len(x) + 1 for x in simplex_text) - 1)
    if sum(len(b) + 1 for b in body) > budget and len(body) > 2:
        keep, used = [], 200  # room for the note
        for line in body:
            if used + len(line) + 1 > budget:
                break
            keep.append(line)
            used += len(line) + 1
        dropped = len(body) - len(keep)
        body = keep + [f"... {dropped} more row(s) in {os.path.join(logdir, 'summary.md')}"]
    print("\n".join(head + [""] + body + bessel_text + gram_text + simplex_text))
    md = ["# spherekit GPU run", ""] + [f"- {h}" for h in head] + [""] + md_body + [""]
    if bessel:
        md += ["## log-Bessel", ""] + render(bessel, True) + [""]
    if gram:
        md += ["## Gram iteration", ""] + render(gram, True) + [""]
    if simplex:
        md += ["## Simplex random features", ""] + render(simplex, True) + [""]
    try:
        with open(os.path.join(logdir, "summary.md"), "w", encoding="utf-8") as f:
            f.write("\n".join(md))
    except OSError as exc:
        print(f"(could not write summary.md: {exc})")
    return 0


# ---- ptxas report ---------------------------------------------------------------------------------

def parse_ptxas(text):
    """[{name, target, regs, stack, spill_st, spill_ld, smem, barriers, entry}] in report order."""
    recs = []
    cur = None  # the entry being compiled
    props = None  # the record the next "bytes stack frame" line belongs to
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '([^']+)' for '([^']+)'", line)
        if m:
            cur = {"name": m.group(1), "target": m.group(2), "regs": None, "stack": 0, "spill_st": 0,
                   "spill_ld": 0, "smem": 0, "barriers": 0, "entry": True}
            recs.append(cur)
            props = cur
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            if cur is not None and m.group(1) == cur["name"]:
                props = cur
            else:  # a non-inlined device function
                props = {"name": m.group(1), "target": cur["target"] if cur else "?", "regs": None,
                         "stack": 0, "spill_st": 0, "spill_ld": 0, "smem": 0, "barriers": 0, "entry": False}
                recs.append(props)
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and props is not None:
            props["stack"], props["spill_st"], props["spill_ld"] = (int(g) for g in m.groups())
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and cur is not None:
            cur["regs"] = int(m.group(1))
            b = re.search(r"used (\d+) barriers", line)
            s = re.search(r"(\d+) bytes smem", line)
            cur["barriers"] = int(b.group(1)) if b else 0
            cur["smem"] = int(s.group(1)) if s else 0
    return recs


def ptxas(path):
    text = read(path)
    if text is None:
        print(f"ptxas: cannot read {path}")
        return 2
    recs = parse_ptxas(text)
    entries = [r for r in recs if r["entry"]]
    if not entries:
        print(f"ptxas: no kernels in {path} (were the kernels built? SPHEREKIT_REQUIRE_KERNELS=1)")
        return 1
    targets = sorted({r["target"] for r in entries}, key=lambda t: (len(t), t))
    by_name = OrderedDict()
    for r in recs:
        by_name.setdefault((r["name"], r["entry"]), {})[r["target"]] = r
    rows = []
    for (name, entry), per in by_name.items():
        regs = "/".join(str(per[t]["regs"]) if t in per and per[t]["regs"] is not None else "-"
                        for t in targets)
        vals = per.values()
        rows.append([name if entry else name + " (device fn)", regs,
                     str(max(v["stack"] for v in vals)), str(max(v["spill_st"] for v in vals)),
                     str(max(v["spill_ld"] for v in vals)), str(max(v["smem"] for v in vals)),
                     str(max(v["barriers"] for v in vals))])
    headers = ["kernel", "regs " + "/".join(targets), "stack", "spill st", "spill ld", "smem", "bar"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = lambda row: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))  # noqa: E731
    print(fmt(headers))
    print(fmt(["-" * w for w in widths]))
    for r in rows:
        print(fmt(r))
    top = max((r for r in entries if r["regs"] is not None), key=lambda r: r["regs"], default=None)
    spills = [r for r in recs if r["spill_st"] or r["spill_ld"]]
    stacks = [r for r in recs if r["stack"] and not (r["spill_st"] or r["spill_ld"])]
    print(f"ptxas: {len({r['name'] for r in entries})} kernels x {len(targets)} targets ({', '.join(targets)}); "
          + (f"max {top['regs']} registers ({top['name']}, {top['target']})" if top else "no register counts"))
    for r in stacks:
        print(f"ptxas: stack frame without spills: {r['name']} ({r['target']}): {r['stack']} bytes")
    for r in spills:
        print(f"ptxas: SPILL: {r['name']} ({r['target']}): {r['spill_st']} bytes stores, "
              f"{r['spill_ld']} bytes loads, {r['stack']} bytes stack frame")
    if spills:
        print(f"ptxas: FAIL: {len(spills)} kernel/target pair(s) spill registers")
        return 1
    print("ptxas: no register spills")
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "ptxas":
        return ptxas(argv[2])
    if len(argv) == 2 and argv[1] not in ("-h", "--help"):
        return summary(argv[1])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
