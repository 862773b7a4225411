#!/usr/bin/env python3
"""Golden values for log I_v(x), log K_v(x) and the quantities derived from them (spherekit).

Writes tests/data/log_bessel/{grid,half_integer,random,extra,vmf}.tsv; see
scripts/golden/README.md. Usage:

    python3 scripts/golden/log_bessel.py                # every set (about 20 minutes on 2 cores)
    python3 scripts/golden/log_bessel.py --only extra   # only extra.tsv from extra_points.txt
    python3 scripts/golden/log_bessel.py --check        # re-verify a random subset of each file

Needs mpmath (gmpy2 makes it ~2x faster); numpy for the random set; python-flint, when
installed, adds an independent cross-check against Arb's rigorous Bessel functions.

Method (more in README.md). Both functions are computed from integral representations with positive integrands, in log
space around the integrand's peak, with mpmath.quad (tanh-sinh) on a handful of pieces:

  K_v(x) = 1/2 int_R exp(-x cosh t + v t) dt.
      With sinh t* = v/x, X = x cosh t* = sqrt(v^2 + x^2) and t = t* + u the exponent is
      f(t*) + phi(u), f(t*) = -X + v t*, phi(u) = -X (cosh u - 1) - v (sinh u - u) <= 0,
      concave with its maximum 0 at u = 0.

  I_v(x) = (x/2)^v / (sqrt(pi) Gamma(v + 1/2)) int_{-1}^{1} (1 - s^2)^(v - 1/2) exp(x s) ds
      (Poisson, v > -1/2). Each half is mapped by s = +-(1 - w^2), w in [0, 1], which removes the
      endpoint singularities at s = +-1 for v < 1/2 (w^(2v) is bounded):
        int_{-1}^{1} = 2 e^x J_R + 2 e^{-x} J_L,
        J_R = int_0^1 w^(2v) (2 - w^2)^(v - 1/2) exp(-x w^2) dw,
        J_L = int_0^1 w^(2v) (2 - w^2)^(v - 1/2) exp(+x w^2) dw.

Every integrand is written as exp(g(w) - M) with M its maximum on the interval, so nothing
overflows and the quadrature sees an O(1) function; pieces are split at the maximum, at the
points where g = M - c for a few levels c, and the interval is truncated where g < M - Lcut,
Lcut = (dps + 15) ln 10. The neglected tails are below 10^-(dps+10) relative: for K, phi is
concave, so the tail beyond the cut is <= e^{-Lcut} |u_cut| / Lcut; for I, the integrand is
monotone beyond the cut on an interval of length <= 1, so the tail is <= e^{M - Lcut}, against
an integral of at least e^{M} times the peak width (>= 1e-5 here).

Each point is computed at two working precisions (60 and 80 digits: different tanh-sinh levels
and truncation points) and kept only if they agree, the Wronskian x (I_v K_{v+1} + I_{v+1} K_v)
= 1 holds, and mpmath.besseli/besselk (where they answer quickly) and Arb agree.
"""

import argparse
import math
import multiprocessing
import os
import random
import signal
import sys
import time

import mpmath
from mpmath import mp

try:  # optional: Arb's rigorous ball arithmetic, for an independent cross-check
    import flint
except ImportError:  # pragma: no cover
    flint = None

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT_DIR = os.path.join(REPO, "tests", "data", "log_bessel")
EXTRA_POINTS = os.path.join(HERE, "extra_points.txt")
LN10 = math.log(10.0)


class QuadFailure(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------------
# float64 helpers to place breakpoints (only the quadrature's efficiency depends on them)


def _bisect_level(fun, lo, hi, target, iters=2200):
    """fun monotone on [lo, hi], fun(lo) >= target > fun(hi) or the reverse; returns the
    crossing point (float)."""
    flo = fun(lo)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if mid == lo or mid == hi:
            break
        fm = fun(mid)
        if (fm >= target) == (flo >= target):
            lo, flo = mid, fm
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _phi_k_f64(u, v, x, X, Xmv):
    """phi(u) for K in float64, cancellation-free: both terms are <= 0."""
    if u >= 0:
        return -X * (math.cosh(u) - 1.0) - v * (math.sinh(u) - u)
    w = -u
    # -X (cosh w - 1) + v (sinh w - w) = -(X - v)(cosh w - 1) - v (e^{-w} - 1 + w)
    return -Xmv * (math.cosh(w) - 1.0) - v * (math.expm1(-w) + w)


def _levels(lcut, fine):
    if fine:
        base = [0.25, 1.0, 3.0, 8.0, 20.0, 45.0, 90.0, 150.0, 220.0]
    else:
        base = [1.0, 8.0, 40.0]
    return [c for c in base if c < lcut]


def k_breakpoints(v, x, dps, fine=False):
    """Breakpoints u_0 < ... < u_n (floats) for the K integrand phi(u); the outer ones are the
    truncation points where phi = -Lcut."""
    lcut = (dps + 15) * LN10
    X = math.hypot(v, x)
    Xmv = x * x / (X + v) if v > 0 else x
    levels = _levels(lcut, fine) + [lcut]
    pts = [0.0]
    for side in (1.0, -1.0):
        fun = lambda w: _phi_k_f64(side * w, v, x, X, Xmv)
        hi = 1.0
        while fun(hi) > -lcut:
            hi *= 2.0
            if hi > 1e4:
                raise QuadFailure("K window not found")
        lo = 0.0
        for c in levels:
            p = _bisect_level(fun, lo, hi, -c)
            pts.append(side * p)
            lo = p
    pts = sorted(set(pts))
    return pts, lcut


def _g_half_f64(w, v, x, sign):
    """log integrand of J_R (sign=-1) or J_L (sign=+1) in float64."""
    if w <= 0.0:
        if v == 0.0:
            return -0.5 * math.log(2.0)
        return -math.inf
    r = (v - 0.5) * math.log(2.0 - w * w) + sign * x * w * w
    if v != 0.0:
        r += 2.0 * v * math.log(w)
    return r


def _critical_points_right(v, x):
    """Zeros in (0, 1) of d/dw of the J_R exponent: with q = w^2 they solve
    2x q^2 + (1 - 4v - 4x) q + 4v = 0."""
    A = mpmath.mpf(2) * x
    B = 1 - 4 * mpmath.mpf(v) - 4 * mpmath.mpf(x)
    C = 4 * mpmath.mpf(v)
    D = B * B - 4 * A * C
    out = []
    if D < 0:
        return out
    sD = mpmath.sqrt(D)
    roots = []
    if B <= 0:
        qb = (-B + sD) / (2 * A)
        roots = [qb, C / (A * qb) if qb != 0 else mpmath.mpf(0)]
    else:
        qb = (-B - sD) / (2 * A)
        roots = [qb, C / (A * qb) if qb != 0 else mpmath.mpf(0)]
    for q in roots:
        if 0 < q < 1:
            out.append(float(mpmath.sqrt(q)))
    return sorted(out)


def half_breakpoints(v, x, dps, sign, fine=False):
    """Breakpoints in [0, 1] for J_R (sign=-1) or J_L (sign=+1) and the float max M.
    The exponent is monotone between consecutive critical points; J_L's is increasing."""
    lcut = (dps + 15) * LN10
    g = lambda w: _g_half_f64(w, v, x, sign)
    crit = _critical_points_right(v, x) if sign < 0 else []
    if v == 0.0 and sign < 0:
        crit = [c for c in crit if c > 0.0]
    knots = [0.0] + [c for c in crit if 0.0 < c < 1.0] + [1.0]
    vals = [g(k) for k in knots]
    M = max(vals)
    levels = _levels(lcut, fine) + [lcut]
    pts = set(knots)
    lo_cut, hi_cut = 0.0, 1.0
    last = len(knots) - 2
    for i in range(len(knots) - 1):
        a, b = knots[i], knots[i + 1]
        ga, gb = vals[i], vals[i + 1]
        dec = ga >= gb
        top, bot = (ga, gb) if dec else (gb, ga)
        lo, hi = (a, b) if dec else (b, a)  # walk from the high end towards the low end
        for c in levels:
            target = M - c
            if target >= top or target <= bot:
                continue
            # tiny v > 0: g(w) ~ 2v log w reaches the level only below w = 1e-300: no cut
            if not dec and a == 0.0 and g(1e-300) >= target:
                continue
            p = _bisect_level(g, lo, hi, target)
            pts.add(p)
            lo = p
            if c == lcut:
                # beyond p the integrand is below e^{M - Lcut}; truncate (at the ends only)
                if i == 0 and not dec:
                    lo_cut = max(lo_cut, p)
                if i == last and dec:
                    hi_cut = min(hi_cut, p)
    pts = sorted(p for p in pts if lo_cut <= p <= hi_cut)
    # w^(2v) has a branch point at w = 0. A piece [a, b] with 0 < a << b - a sees it as a
    # near-singularity just outside its end, which slows tanh-sinh down badly while its error
    # estimate stays optimistic (seen: 1e-37 relative errors at 60 digits). So every piece must
    # start at 0 or at a >= b/2: breakpoints (the truncation point included) are dropped from
    # the bottom up until that holds; the piece from 0 then carries the singularity at its end,
    # which tanh-sinh handles.
    out = [pts[0]]
    for p in pts[1:]:
        while out and 0.0 < out[-1] < 0.5 * p:
            out.pop()
        if not out:
            out = [0.0]
        out.append(p)
    return out, M, lcut


# ----------------------------------------------------------------------------------------------
# mpmath quadratures


def _quad_pieces(f, pts, maxdegree):
    """Sum of tanh-sinh integrals over consecutive pieces; returns (value, error estimate)."""
    total = mpmath.mpf(0)
    err = mpmath.mpf(0)
    for a, b in zip(pts[:-1], pts[1:]):
        if a == b:
            continue
        val, e = mpmath.quad(f, [a, b], error=True, maxdegree=maxdegree)
        total += val
        err += e
    return total, err


def log_k(v, x, dps, fine=False, maxdegree=None):
    """log K_v(x) at working precision dps (mpf), plus the relative quadrature error estimate."""
    with mp.workdps(dps):
        fpts, lcut = k_breakpoints(float(v), float(x), dps, fine)
        v_ = mpmath.mpf(v)
        x_ = mpmath.mpf(x)
        X = mpmath.sqrt(v_ * v_ + x_ * x_)
        tstar = mpmath.asinh(v_ / x_)

        Xmv = x_ * x_ / (X + v_)  # X - v without cancellation

        def f(u):
            # phi(u) as a sum of non-positive terms (no cancellation for large |u|):
            #   u >= 0: -X (cosh u - 1) - v (sinh u - u)
            #   u < 0, w = -u: -(X - v)(cosh w - 1) - v (e^{-w} - 1 + w)
            if u >= 0:
                e = mpmath.exp(u)
                ei = 1 / e
                return mpmath.exp(-X * ((e + ei) / 2 - 1) - v_ * ((e - ei) / 2 - u))
            w = -u
            e = mpmath.exp(w)
            ei = 1 / e
            return mpmath.exp(-Xmv * ((e + ei) / 2 - 1) - v_ * (ei - 1 + w))

        pts = [mpmath.mpf(p) for p in fpts]
        md = maxdegree or 8
        val, err = _quad_pieces(f, pts, md)
        res = -X + v_ * tstar + mpmath.log(val) - mpmath.log(2)
        return +res, err / val


def log_i(v, x, dps, fine=False, maxdegree=None):
    """log I_v(x) (v >= 0) at working precision dps (mpf), plus the relative quadrature error."""
    with mp.workdps(dps):
        vf, xf = float(v), float(x)
        v_ = mpmath.mpf(v)
        x_ = mpmath.mpf(x)
        vmh = v_ - mpmath.mpf(0.5)
        two = mpmath.mpf(2)
        md = maxdegree or 8

        def make(sign, M):
            sx = sign * x_
            Mm = mpmath.mpf(M)
            if vf == 0.0:
                def f(w):
                    w2 = w * w
                    return mpmath.exp(vmh * mpmath.log(two - w2) + sx * w2 - Mm)
            else:
                tv = 2 * v_

                def f(w):
                    if w <= 0:
                        return mpmath.mpf(0)
                    w2 = w * w
                    return mpmath.exp(tv * mpmath.log(w) + vmh * mpmath.log(two - w2) + sx * w2 - Mm)
            return f

        ptsR, MR, lcut = half_breakpoints(vf, xf, dps, -1, fine)
        valR, errR = _quad_pieces(make(-1, MR), [mpmath.mpf(p) for p in ptsR], md)
        logR = x_ + MR + mpmath.log(valR)
        relerr = errR / valR
        # J_L: its exponent -x + L(w) is <= 0 on [0, 1] (L increases to L(1) = x), so
        # e^{-x} J_L <= 1; skip it when that bound is below e^{-Lcut - 5} relative to e^{x} J_R.
        logtot = logR
        if logR < lcut + 5.0:
            ptsL, ML, _ = half_breakpoints(vf, xf, dps, +1, fine)
            valL, errL = _quad_pieces(make(+1, ML), [mpmath.mpf(p) for p in ptsL], md)
            logL = -x_ + ML + mpmath.log(valL)
            big = max(logR, logL)
            logtot = big + mpmath.log(mpmath.exp(logR - big) + mpmath.exp(logL - big))
            relerr = max(relerr, errL / valL)
        res = (v_ * mpmath.log(x_ / 2) - mpmath.log(mpmath.pi) / 2 - mpmath.loggamma(v_ + mpmath.mpf(0.5))
               + mpmath.log(2) + logtot)
        return +res, relerr


# ----------------------------------------------------------------------------------------------
# one point: both precisions, retries, identities, cross-checks

DPS_LO, DPS_HI = 60, 80          # the two working precisions (decimal digits)
TOL_PREC = 1e-35                 # two-precision agreement of each log (mixed metric)
TOL_DERIVED = 1e-30              # two-precision agreement of derived quantities (relative)
TOL_WRONSKIAN = 1e-35            # |log(x (I_v K_{v+1} + I_{v+1} K_v))|
TOL_XCHECK = 1e-30               # against mpmath.besseli/besselk and Arb (mixed metric)
XCHECK_DPS = 40                  # precision of the mpmath.besseli/besselk cross-check
XCHECK_TIMEOUT = 3.0             # seconds per mpmath.besseli/besselk call
STRICT_MPMATH = False            # --strict-mpmath: also drop points where mpmath alone is off
# (dps_lo, dps_hi, fine breakpoints, maxdegree): the first attempt that passes is kept
ATTEMPTS = [(DPS_LO, DPS_HI, False, 8), (DPS_LO, DPS_HI, True, 10), (90, 120, True, 11)]

LOG_NAMES = ("log_iv", "log_iv1", "log_kv", "log_kv1")


def mixed(a, b):
    return abs(a - b) / max(1, abs(b))


def orders(v, fi, fk):
    """(name, function, order) for the four logs; the order v + 1 is exact (an mpf: v + 1 in
    f64 would round for most v)."""
    with mp.workprec(200):  # exact: v has 53 significant bits and 1e-3 <= v <= 1e7
        v1 = mpmath.mpf(v) + 1
    return (("log_iv", fi, v), ("log_iv1", fi, v1), ("log_kv", fk, v), ("log_kv1", fk, v1))


def eval_logs(v, x, dps, fine, maxdegree):
    """The four logs at one working precision, with the largest relative quadrature error
    estimate; a piece whose estimate is not small enough is redone with finer breakpoints."""
    out = {}
    qerr = 0.0
    for name, fn, order in orders(v, log_i, log_k):
        val, err = fn(order, x, dps, fine, maxdegree)
        if err > mpmath.mpf(10) ** (15 - dps) and not fine:
            val, err = fn(order, x, dps, True, maxdegree + 2)
        out[name] = val
        qerr = max(qerr, float(err))
    return out, qerr


def derived(v, x, L, dps):
    """Ratios and derivatives from the four logs, at precision dps."""
    with mp.workdps(dps):
        v_, x_ = mpmath.mpf(v), mpmath.mpf(x)
        di = L["log_iv1"] - L["log_iv"]
        dk = L["log_kv1"] - L["log_kv"]
        ratio_i = mpmath.exp(di)
        ratio_k = mpmath.exp(dk)
        d = {
            "ratio_i": ratio_i,
            "one_minus_ratio_i": -mpmath.expm1(di),
            "dlogi": v_ / x_ + ratio_i,
            "ratio_k": ratio_k,
            "dlogk": v_ / x_ - ratio_k,
        }
        # Wronskian x (I_v K_{v+1} + I_{v+1} K_v) = 1, in log space
        a = L["log_iv"] + L["log_kv1"]
        b = L["log_iv1"] + L["log_kv"]
        big = max(a, b)
        wr = mpmath.log(x_) + big + mpmath.log(mpmath.exp(a - big) + mpmath.exp(b - big))
        return d, abs(wr)


def vmf_derived(dim, kappa, L, dps):
    """von Mises-Fisher quantities in dimension dim at concentration kappa, v = dim/2 - 1."""
    with mp.workdps(dps):
        d_ = mpmath.mpf(dim)
        k_ = mpmath.mpf(kappa)
        di = L["log_iv1"] - L["log_iv"]
        A = mpmath.exp(di)
        return {
            "log_c": (d_ / 2 - 1) * mpmath.log(k_) - d_ / 2 * mpmath.log(2 * mpmath.pi) - L["log_iv"],
            "a": A,
            "one_minus_a": -mpmath.expm1(di),
            "a_prime": 1 - A * A - (d_ - 1) / k_ * A,
        }


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _timed(fn, timeout):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return fn()
    except _Timeout:
        return "timeout"
    except Exception as e:  # NoConvergence, ValueError, ...
        return type(e).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def mpmath_xcheck(v, x, L):
    """log of mpmath.besseli / besselk at XCHECK_DPS digits where they are expected to return
    quickly (min(v, x) < 1e3 or max(v, x) < 1e4; each call has a timeout). Returns
    ({name: (mixed difference, mpmath's value as a string)}, [names that did not return])."""
    if not (min(v, x) < 1e3 or max(v, x) < 1e4):
        return {}, []
    diffs, notes = {}, []
    with mp.workdps(XCHECK_DPS):
        for name, fn, order in orders(v, mpmath.besseli, mpmath.besselk):
            r = _timed(lambda: mpmath.log(fn(order, mpmath.mpf(x))), XCHECK_TIMEOUT)
            if isinstance(r, str):
                notes.append("%s:%s" % (name, r))
                continue
            diffs[name] = (float(mixed(r, L[name])), mpmath.nstr(r, 20))
    return diffs, notes


def arb_xcheck(v, x, L):
    """Arb (python-flint) rigorous balls for the four logs, where Arb gives a finite ball of
    (mixed) radius below 1e-60 at 384, 768 or 1536 bits. Returns {name: mixed difference}."""
    if flint is None:
        return {}
    diffs = {}
    for name, one in (("log_iv", 0), ("log_iv1", 1), ("log_kv", 0), ("log_kv1", 1)):
        for prec in (384, 768, 1536):
            flint.ctx.prec = prec
            xa, va = flint.arb(x), flint.arb(v) + one  # exact at this precision
            try:
                y = (xa.bessel_i(va) if name.startswith("log_i") else xa.bessel_k(va)).log()
            except Exception:
                continue
            if not y.is_finite():
                continue
            with mp.workdps(110):
                mid = mpmath.mpf(y.mid().str(100, radius=False))
                rad = mpmath.mpf(y.rad().str(5, radius=False))
                if rad / max(1, abs(mid)) < 1e-60:
                    diffs[name] = float(mixed(mid, L[name]))
                    break
    return diffs


def solve_point(task):
    """task = (set, index, v, x, extra) -> result dict (strings for the file, stats)."""
    kind, idx, v, x, extra = task
    t0 = time.time()
    res = {"kind": kind, "idx": idx, "v": v, "x": x, "extra": extra, "retries": 0}
    accepted = False
    for attempt, (dlo, dhi, fine, md) in enumerate(ATTEMPTS):
        Llo, qlo = eval_logs(v, x, dlo, fine, md)
        Lhi, qhi = eval_logs(v, x, dhi, fine, md)
        with mp.workdps(dhi):
            prec_diff = max(float(mixed(Llo[n], Lhi[n])) for n in LOG_NAMES)
        dlo_, wr_lo = derived(v, x, Llo, dlo)
        dhi_, wr_hi = derived(v, x, Lhi, dhi)
        with mp.workdps(dhi):
            der_diff = max(float(abs(dlo_[n] - dhi_[n]) / abs(dhi_[n])) for n in dhi_)
            if kind == "vmf":
                vlo = vmf_derived(extra, x, Llo, dlo)
                vhi = vmf_derived(extra, x, Lhi, dhi)
                der_diff = max(der_diff, float(mixed(vlo["log_c"], vhi["log_c"])),
                               *(float(abs(vlo[n] - vhi[n]) / abs(vhi[n]))
                                 for n in ("a", "one_minus_a", "a_prime")))
        wr = max(float(wr_lo), float(wr_hi))
        ok = (prec_diff <= TOL_PREC and der_diff <= TOL_DERIVED and wr <= TOL_WRONSKIAN)
        if ok:
            accepted = True
            break
        res["retries"] = attempt + 1
    res.update(prec_diff=prec_diff, der_diff=der_diff, wronskian=wr, qerr=max(qlo, qhi),
               dps=(dlo, dhi))
    reasons = []
    if not accepted:
        reasons.append("precision %.1e derived %.1e wronskian %.1e" % (prec_diff, der_diff, wr))
    mpd, notes = mpmath_xcheck(v, x, Lhi)
    arbd = arb_xcheck(v, x, Lhi)
    res.update(mp_n=len(mpd), mp_notes=notes, arb_n=len(arbd),
               arb_worst=max(arbd.values(), default=0.0), mp_worst=0.0, mp_wrong=[])
    for name, (d, val) in mpd.items():
        if d <= TOL_XCHECK:
            res["mp_worst"] = max(res["mp_worst"], d)
        elif arbd.get(name, 1.0) <= TOL_PREC and not STRICT_MPMATH:
            # mpmath's own function is wrong here: Arb's rigorous ball and the Wronskian both
            # confirm the quadrature. Keep the point and list it (mpmath_disagreements.tsv).
            res["mp_wrong"].append((name, val, d))
        else:
            reasons.append("mpmath %s differs by %.1e (Arb: %s)"
                           % (name, d, "%.1e" % arbd[name] if name in arbd else "none"))
    if res["arb_worst"] > TOL_XCHECK:
        reasons.append("Arb differs by %.1e" % res["arb_worst"])
    res["reject"] = "; ".join(reasons)
    with mp.workdps(dhi):
        cols = [repr(float(v)), repr(float(x))] if kind != "vmf" else [repr(float(extra)), repr(float(x))]
        if kind == "vmf":
            vv = vmf_derived(extra, x, Lhi, dhi)
            cols += [mpmath.nstr(vv[n], 25) for n in VMF_COLS[2:]]
        else:
            cols += [mpmath.nstr(Lhi[n], 25) for n in LOG_NAMES]
            cols += [mpmath.nstr(dhi_[n], 25) for n in DERIVED_NAMES]
    res["line"] = "\t".join(cols)
    res["seconds"] = time.time() - t0
    # keep mpmath's per-interval node caches from growing without bound
    mp._tanh_sinh.transformed_cache.clear()
    mp._tanh_sinh.interval_count.clear()
    return res


DERIVED_NAMES = ("ratio_i", "one_minus_ratio_i", "dlogi", "ratio_k", "dlogk")
MAIN_COLS = ("v", "x") + LOG_NAMES + DERIVED_NAMES
VMF_COLS = ("d", "kappa", "log_c", "a", "one_minus_a", "a_prime")


# ----------------------------------------------------------------------------------------------
# point sets

HALF_DIMS = [3, 4, 5, 6, 8, 10, 16, 32, 64, 128, 256, 512, 1000, 1024, 2048, 4096, 8192, 16384,
             32768, 65536, 100000, 1000000]
VMF_DIMS = [2] + HALF_DIMS
RANDOM_SEED = 20240913
RANDOM_COUNT = 3000
GRID_V = 48  # log-spaced orders besides v = 0
GRID_X = 64
SETS = ("grid", "half_integer", "random", "extra", "vmf")


def logspace(lo_exp, hi_exp, n):
    """n log-spaced f64 values from 10^lo_exp to 10^hi_exp, ends exact (as parsed decimals)."""
    out = [float(10.0 ** (lo_exp + (hi_exp - lo_exp) * i / (n - 1))) for i in range(n)]
    out[0] = float("1e%d" % lo_exp)
    out[-1] = float("1e%d" % hi_exp)
    return out


def read_extra(path):
    pts = []
    with open(path) as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            a, b = line.split()[:2]
            pts.append((float(a), float(b)))
    return pts


def point_set(name):
    """List of (v, x, extra) for a set; extra is the dimension d for vmf."""
    if name == "grid":
        vs = [0.0] + logspace(-3, 7, GRID_V)
        xs = logspace(-10, 8, GRID_X)
        return [(v, x, None) for v in vs for x in xs]
    if name == "half_integer":
        xs = logspace(-6, 7, 40)
        return [(d / 2.0 - 1.0, x, None) for d in HALF_DIMS for x in xs]
    if name == "random":
        import numpy as np
        rng = np.random.default_rng(RANDOM_SEED)
        lv = rng.uniform(-3.0, 7.0, RANDOM_COUNT)
        lx = rng.uniform(-10.0, 8.0, RANDOM_COUNT)
        return [(float(10.0 ** a), float(10.0 ** b), None) for a, b in zip(lv, lx)]
    if name == "extra":
        return [(v, x, None) for v, x in read_extra(EXTRA_POINTS)]
    if name == "vmf":
        ks = logspace(-4, 7, 30)
        return [(d / 2.0 - 1.0, k, d) for d in VMF_DIMS for k in ks]
    raise ValueError(name)


SET_DOC = {
    "grid": "v in {0} and %d log-spaced values in [1e-3, 1e7]; x in %d log-spaced values in "
            "[1e-10, 1e8]; full product" % (GRID_V, GRID_X),
    "half_integer": "v = d/2 - 1 (von Mises-Fisher orders) for d in %s; x in 40 log-spaced values "
                    "in [1e-6, 1e7]" % HALF_DIMS,
    "random": "%d points, log10 v ~ U[-3, 7], log10 x ~ U[-10, 8] (numpy default_rng(seed=%d): "
              "first %d draws for log10 v, next %d for log10 x)"
              % (RANDOM_COUNT, RANDOM_SEED, RANDOM_COUNT, RANDOM_COUNT),
    "extra": "points listed in scripts/golden/extra_points.txt",
    "vmf": "von Mises-Fisher in dimension d for d in %s and kappa in 30 log-spaced values in "
           "[1e-4, 1e7]; v = d/2 - 1" % VMF_DIMS,
}

COLUMN_DOC = {
    "main": [
        "v, x: inputs (Python repr of the f64 value, exact)",
        "log_iv, log_iv1 = log I_v(x), log I_{v+1}(x); log_kv, log_kv1 = log K_v(x), log K_{v+1}(x)",
        "ratio_i = I_{v+1}/I_v; one_minus_ratio_i = 1 - I_{v+1}/I_v (accurate when tiny)",
        "dlogi = d/dx log I_v = v/x + I_{v+1}/I_v; ratio_k = K_{v+1}/K_v; "
        "dlogk = d/dx log K_v = v/x - K_{v+1}/K_v",
    ],
    "vmf": [
        "d, kappa: inputs (Python repr of the f64 value, exact); v = d/2 - 1",
        "log_c = log C_d(kappa) = (d/2 - 1) log kappa - (d/2) log(2 pi) - log I_{d/2-1}(kappa)",
        "a = A_d(kappa) = I_{d/2}/I_{d/2-1}; one_minus_a = 1 - A_d (accurate when tiny)",
        "a_prime = dA_d/dkappa = 1 - A^2 - (d-1)/kappa A",
    ],
}


# ----------------------------------------------------------------------------------------------
# driver


def run_set(name, jobs, out_dir, limit=None):
    pts = point_set(name)
    if limit:
        pts = pts[:limit]
    tasks = [(name, i, v, x, e) for i, (v, x, e) in enumerate(pts)]
    results = [None] * len(tasks)
    t0 = time.time()
    print("[%s] %d points, %d jobs" % (name, len(tasks), jobs), flush=True)
    step = max(1, len(tasks) // 40)
    if jobs > 1:
        pool = multiprocessing.Pool(jobs)
        it = pool.imap_unordered(solve_point, tasks, chunksize=1)
    else:
        pool = None
        it = map(solve_point, tasks)
    done = 0
    for r in it:
        results[r["idx"]] = r
        done += 1
        if r["reject"]:
            print("  REJECT %s v=%r x=%r: %s" % (name, r["v"], r["x"], r["reject"]), flush=True)
        elif r["retries"]:
            print("  retried %d time(s): v=%r x=%r" % (r["retries"], r["v"], r["x"]), flush=True)
        if done % step == 0 or done == len(tasks):
            el = time.time() - t0
            print("  [%s] %d/%d  %.0fs elapsed, ETA %.0fs" % (name, done, len(tasks), el,
                  el / done * (len(tasks) - done)), flush=True)
    if pool is not None:
        pool.close()
        pool.join()
    elapsed = time.time() - t0
    write_set(name, results, out_dir)
    return results, elapsed


def stats(results):
    good = [r for r in results if not r["reject"]]
    mx = lambda key: max([r[key] for r in good] or [0.0])
    return {
        "n": len(good),
        "rejected": len(results) - len(good),
        "retried": sum(1 for r in results if r["retries"]),
        "prec_diff": mx("prec_diff"),
        "der_diff": mx("der_diff"),
        "wronskian": mx("wronskian"),
        "qerr": mx("qerr"),
        "mp_points": sum(1 for r in good if r["mp_n"]),
        "mp_values": sum(r["mp_n"] for r in good),
        "mp_worst": mx("mp_worst"),
        "mp_wrong": sum(len(r["mp_wrong"]) for r in good),
        "mp_failed": sum(len(r["mp_notes"]) for r in good),
        "arb_values": sum(r["arb_n"] for r in good),
        "arb_points": sum(1 for r in good if r["arb_n"] == 4),
        "arb_worst": mx("arb_worst"),
        "seconds": sum(r["seconds"] for r in results),
    }


def _update_side_file(path, title, cols, name, rows):
    """Rows of several sets share one file; replace this set's rows (first column = set)."""
    old = []
    if os.path.exists(path):
        with open(path) as fh:
            old = [l for l in fh if l.strip() and not l.startswith("#")
                   and not l.startswith("set\t") and not l.startswith(name + "\t")]
    if old or rows:
        with open(path, "w") as fh:
            fh.write("# " + title + "\n")
            fh.write("\t".join(cols) + "\n")
            fh.writelines(sorted(old + rows, key=lambda l: (SETS.index(l.split("\t")[0]),)))
    elif os.path.exists(path):
        os.remove(path)


def write_set(name, results, out_dir):
    s = stats(results)
    path = os.path.join(out_dir, name + ".tsv")
    cols = VMF_COLS if name == "vmf" else MAIN_COLS
    hdr = [
        "spherekit golden values (%s.tsv), generated by scripts/golden/log_bessel.py; "
        "see scripts/golden/README.md" % name,
        "points: " + SET_DOC[name],
    ]
    hdr += COLUMN_DOC["vmf" if name == "vmf" else "main"]
    hdr += [
        "outputs: 25 significant digits; lines starting with '#' are comments, the first other "
        "line names the tab-separated columns",
        "rows: %d (rejected: %d, listed in rejected.tsv)" % (s["n"], s["rejected"]),
        "validation: working precisions %d and %d digits; largest two-precision difference of a "
        "log (|a-b|/max(1,|b|)) %.1e, of a derived value (relative) %.1e; largest Wronskian "
        "residual |log(x (I_v K_{v+1} + I_{v+1} K_v))| %.1e"
        % (DPS_LO, DPS_HI, s["prec_diff"], s["der_diff"], s["wronskian"]),
        "cross-check: mpmath %s besseli/besselk at %d digits agree on %d values (%d points), "
        "largest difference %.1e; wrong on %d values (mpmath_disagreements.tsv), no answer on %d"
        % (mpmath.__version__, XCHECK_DPS, s["mp_values"] - s["mp_wrong"], s["mp_points"],
           s["mp_worst"], s["mp_wrong"], s["mp_failed"]),
        "cross-check: Arb (python-flint %s) rigorous balls on %d values (all four at %d points), "
        "largest difference %.1e"
        % (getattr(flint, "__version__", "absent"), s["arb_values"], s["arb_points"],
           s["arb_worst"]),
    ]
    with open(path, "w") as fh:
        for h in hdr:
            fh.write("# " + h + "\n")
        fh.write("\t".join(cols) + "\n")
        for r in results:
            if not r["reject"]:
                fh.write(r["line"] + "\n")
    _update_side_file(
        os.path.join(out_dir, "rejected.tsv"),
        "points not written to the golden files, with the reason",
        ("set", "v", "x", "reason"), name,
        ["%s\t%r\t%r\t%s\n" % (name, r["v"], r["x"], r["reject"])
         for r in results if r["reject"]])
    _update_side_file(
        os.path.join(out_dir, "mpmath_disagreements.tsv"),
        "points kept although mpmath %s besseli/besselk (%d digits) disagree: Arb's rigorous ball "
        "and the Wronskian confirm the golden value" % (mpmath.__version__, XCHECK_DPS),
        ("set", "v", "x", "value", "mpmath_log", "mixed_difference"), name,
        ["%s\t%r\t%r\t%s\t%s\t%.2e\n" % (name, r["v"], r["x"], n, val, d)
         for r in results if not r["reject"] for (n, val, d) in r["mp_wrong"]])
    print("[%s] wrote %s: %d rows, %d rejected, %d retried; max two-precision %.1e, derived %.1e, "
          "Wronskian %.1e, quad err %.1e; mpmath %d values (max %.1e, %d wrong, %d no answer); "
          "Arb %d values (max %.1e); %.0f CPU-s"
          % (name, path, s["n"], s["rejected"], s["retried"], s["prec_diff"], s["der_diff"],
             s["wronskian"], s["qerr"], s["mp_values"], s["mp_worst"], s["mp_wrong"],
             s["mp_failed"], s["arb_values"], s["arb_worst"], s["seconds"]), flush=True)
    return s


# ----------------------------------------------------------------------------------------------
# --check: recompute a random subset of a written file at one (different) precision


def _check_row(task):
    kind, cols, row, dps = task
    vals = dict(zip(cols, row))
    if kind == "vmf":
        d = float(vals["d"])
        v, x = d / 2.0 - 1.0, float(vals["kappa"])
    else:
        v, x = float(vals["v"]), float(vals["x"])
    L = {}
    for name, fn, order in orders(v, log_i, log_k):
        L[name] = fn(order, x, dps, True, 10)[0]
    with mp.workdps(dps):
        if kind == "vmf":
            ref = vmf_derived(d, x, L, dps)
        else:
            ref, _ = derived(v, x, L, dps)
            ref.update(L)
        worst = 0.0
        for name, r in ref.items():
            stored = mpmath.mpf(vals[name])
            # 25 stored digits: relative rounding <= 5e-25; logs near 0 are compared absolutely
            scale = max(1, abs(r)) if name.startswith("log") else abs(r)
            worst = max(worst, float(abs(stored - r) / scale))
    mp._tanh_sinh.transformed_cache.clear()
    mp._tanh_sinh.interval_count.clear()
    return (v, x, worst)


def check_file(path, count, dps, jobs, seed):
    with open(path) as fh:
        lines = [l.rstrip("\n") for l in fh if not l.startswith("#")]
    cols = lines[0].split("\t")
    rows = [l.split("\t") for l in lines[1:] if l]
    kind = "vmf" if cols[0] == "d" else "main"
    rng = random.Random(seed)
    pick = rows if count >= len(rows) else rng.sample(rows, count)
    tasks = [(kind, cols, r, dps) for r in pick]
    t0 = time.time()
    if jobs > 1:
        with multiprocessing.Pool(jobs) as pool:
            out = pool.map(_check_row, tasks, chunksize=1)
    else:
        out = list(map(_check_row, tasks))
    worst = max(o[2] for o in out)
    bad = [o for o in out if o[2] > 1e-23]
    print("check %s: %d of %d rows recomputed at %d digits in %.0fs, largest difference %.1e%s"
          % (path, len(out), len(rows), dps, time.time() - t0, worst,
             "" if not bad else "; MISMATCH at " + ", ".join("(%r, %r)" % b[:2] for b in bad)),
          flush=True)
    return not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SETS),
                    help="comma-separated sets to (re)generate: %s" % ",".join(SETS))
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--out", default=OUT_DIR, help="output folder (default tests/data/log_bessel)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N points of each set "
                    "(smoke test; use with --out elsewhere)")
    ap.add_argument("--check", nargs="*", metavar="FILE",
                    help="re-verify written files (default: every set's file in --out)")
    ap.add_argument("--check-count", type=int, default=40, help="rows per file for --check")
    ap.add_argument("--check-dps", type=int, default=70, help="working precision for --check")
    ap.add_argument("--seed", type=int, default=1, help="row sampling seed for --check")
    ap.add_argument("--strict-mpmath", action="store_true",
                    help="also drop points where only mpmath.besseli/besselk disagree (by default "
                    "they are kept when Arb confirms the value, and listed)")
    a = ap.parse_args()
    global STRICT_MPMATH
    STRICT_MPMATH = a.strict_mpmath
    if a.check is not None:
        files = a.check or [os.path.join(a.out, s + ".tsv") for s in SETS
                            if os.path.exists(os.path.join(a.out, s + ".tsv"))]
        ok = all([check_file(f, a.check_count, a.check_dps, a.jobs, a.seed) for f in files])
        sys.exit(0 if ok else 1)
    os.makedirs(a.out, exist_ok=True)
    total = time.time()
    for name in a.only.split(","):
        name = name.strip()
        if name not in SETS:
            ap.error("unknown set %r" % name)
        _, el = run_set(name, a.jobs, a.out, a.limit)
        print("[%s] %.0f s wall" % (name, el), flush=True)
    print("all done in %.0f s wall" % (time.time() - total), flush=True)


if __name__ == "__main__":
    main()
