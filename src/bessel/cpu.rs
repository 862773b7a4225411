//! log I_v(x), log K_v(x), their x-derivatives and the ratio I_{v+1}/I_v in f64 on the CPU.
//!
//! Two regions, split at ρ = √(v² + x²) = [`RHO_DEBYE`]:
//!
//! - ρ ≥ 38: Debye's uniform expansion (DLMF 10.41.3-4) with 13 correction terms, written in
//!   ρ and t = v/ρ so that it holds down to v = 0 (where it becomes Hankel's expansion in 1/x):
//!   log I = vη − ½ log(2πρ) + log(1 + Σ p^k U_k(t²)), log K = −vη + ½ log(π/(2ρ)) +
//!   log(1 + Σ (−p)^k U_k(t²)), p = 1/ρ, vη = ρ − v·asinh(v/x). The truncation error is below
//!   max|U_14|/ρ^14 < 2e-17 for every t. vη vanishes at x = z₀v (z₀ = 0.6627…, where I_v(x) is
//!   near 1 for large v) and its two terms cancel there: within |x/v − z₀| ≤ 0.3 it is summed as
//!   a Taylor series in δ = (x − z₀v)/v, with x − z₀v formed exactly, so vη keeps full relative
//!   precision even at v = 1e7.
//! - ρ < 38 (v, x < 38): I from its power series (all terms positive) with the prefactor
//!   (x/2)^v / Γ(v+1) formed in linear space (pow and a product for 1/Γ, a few ulp) rather than as
//!   a difference of large logs; K by Temme's method (series for x ≤ 1, the trapezoidal rule on
//!   an integral representation for x ≤ 8, Steed's continued fraction otherwise) at the order
//!   μ = v − round(v) and forward recurrence, with rescaling; the ratio I_{v+1}/I_v and 1 − ratio
//!   by backward recurrence of the Gauss continued fraction.
//!
//! The tables (Debye polynomials, the Taylor series of η at z₀, 1/Γ(1+z)) are generated from
//! their definitions by scripts/gen_bessel_consts.py (src/bessel/consts.rs).

use super::consts::{
    DEBYE_OFFSET, DEBYE_RHO_MIN, DEBYE_TERMS, DEBYE_U, ETA_TAYLOR, ETA_Z0, RGAMMA_TAYLOR,
    TRAPEZOID_COSH_M1, TRAPEZOID_EXP, TRAPEZOID_EXP_NEG,
};

/// Below this ρ = √(v² + x²) the power series and Temme's method are used; above it Debye's
/// expansion with at most 13 terms is accurate to better than 2e-17 for every v/x.
pub const RHO_DEBYE: f64 = 38.0;

/// Half-width of the window around x = z₀v where vη is summed as a Taylor series.
const ETA_WINDOW: f64 = 0.3;
/// Temme's series for K below this x, Steed's CF2 above: the series' K_{μ+1} loses digits toward
/// x = 2 (1.2e-14 relative in d/dx log K at μ = −½, x = 1.98; 1.7e-15 with the switch at 1).
const TEMME_X_MAX: f64 = 1.0;

const LN_2PI: f64 = 1.837_877_066_409_345_5;
const LN_PI_OVER_2: f64 = 0.451_582_705_289_454_9;

// ---- small helpers ---------------------------------------------------------------------------

/// Horner evaluation, lowest coefficient first. Plain multiply-add: `mul_add` is a library
/// call without the FMA target feature, and the fused rounding buys nothing here.
fn horner(coeffs: &[f64], x: f64) -> f64 {
    // Even and odd coefficients as two independent chains in x², p = E(x²) + x·O(x²): half the
    // dependent latency of one chain (without FMA each step is a multiply then an add), same
    // rounding behaviour for the decreasing coefficients used here.
    let x2 = x * x;
    let (mut even, mut odd) = (0.0, 0.0);
    for pair in coeffs.chunks(2).rev() {
        even = even * x2 + pair[0];
        if let Some(&c) = pair.get(1) {
            odd = odd * x2 + c;
        }
    }
    even + x * odd
}

/// Horner for p(x) and p′(x) together.
fn horner_d(coeffs: &[f64], x: f64) -> (f64, f64) {
    let (mut p, mut dp) = (0.0, 0.0);
    for &c in coeffs.iter().rev() {
        dp = dp * x + p;
        p = p * x + c;
    }
    (p, dp)
}

/// a·b as an unevaluated sum hi + lo, exactly (Veltkamp splitting: no FMA needed).
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    const SPLIT: f64 = 134_217_729.0; // 2^27 + 1
    let split = |x: f64| {
        let t = SPLIT * x;
        let hi = t - (t - x);
        (hi, x - hi)
    };
    let p = a * b;
    let ((ah, al), (bh, bl)) = (split(a), split(b));
    (p, ((ah * bh - p) + ah * bl + al * bh) + al * bl)
}

/// sin(πx) with the argument reduced exactly (x − 2·round(x/2) is exact), so that large x keep
/// their accuracy.
fn sin_pi(x: f64) -> f64 {
    let r = x - 2.0 * (0.5 * x).round();
    (std::f64::consts::PI * r).sin()
}

/// 1/Γ(a) for a ≥ 1: 1/Γ(1+f) from its Taylor series on [0, 1), divided by (f+1)…(f+n).
fn rgamma(a: f64) -> f64 {
    let n = (a - 1.0).floor();
    let f = a - 1.0 - n;
    // Γ(1 + f + n) / Γ(1 + f) = (f+1)(f+2)…(f+n), as two interleaved products (latency).
    let (mut p0, mut p1) = (1.0, 1.0);
    let mut k = 1.0;
    while k + 1.0 <= n {
        p0 *= f + k;
        p1 *= f + k + 1.0;
        k += 2.0;
    }
    if k <= n {
        p0 *= f + k;
    }
    horner(&RGAMMA_TAYLOR, f) / (p0 * p1)
}

/// vη(v, x) = ρ − v·asinh(v/x), with full relative precision near its zero x = z₀v.
fn v_eta(v: f64, x: f64, rho: f64) -> f64 {
    // x − z₀v to within a rounding of the result: z₀_hi·v is split exactly into hi + lo, and
    // x − hi is exact inside the window (Sterbenz: x/hi ∈ [½, 2]); the trailing parts are far below.
    let (hi, lo) = two_prod(ETA_Z0.0, v);
    let d = ((x - hi) - lo) - ETA_Z0.1 * v;
    if d.abs() <= ETA_WINDOW * v {
        let delta = d / v;
        // η(z₀ + δ) = Σ e_k δ^k (k ≥ 1), so vη = d Σ e_k δ^(k−1).
        d * horner(&ETA_TAYLOR, delta)
    } else if v == 0.0 {
        rho
    } else {
        // asinh(v/x) = log((v + ρ)/x) = log1p((v + v²/(ρ + x))/x): no cancellation, one log.
        rho - v * ((v + v * v / (rho + x)) / x).ln_1p()
    }
}

/// Debye terms needed at ρ: the fewest K ≥ 3 whose truncation error max|U_{K+1}|/ρ^{K+1} is
/// below 2e-17 (generated table); 13 at the region boundary.
fn debye_terms(rho: f64) -> usize {
    DEBYE_RHO_MIN
        .iter()
        .position(|&r| rho >= r)
        .map_or(DEBYE_TERMS, |i| i + 3)
}

/// The Debye correction Σ_{k=1}^{K} (σp)^k U_k(s) (σ = +1 for I, −1 for K), p = 1/ρ,
/// s = (v/ρ)², as a Horner scheme in σp of the U_k (each a Horner scheme in s).
fn debye_sum(p: f64, s: f64, sigma: f64, terms: usize) -> f64 {
    let sp = sigma * p;
    (1..=terms)
        .rev()
        .fold(0.0, |acc, k| (acc + horner(debye_u(k), s)) * sp)
}

/// Σ_k (σp)^k (k U_k + 2 s U_k′): with S the Debye sum, dS/dx = −x p² W.
fn debye_w(p: f64, s: f64, sigma: f64, terms: usize) -> f64 {
    let sp = sigma * p;
    (1..=terms).rev().fold(0.0, |acc, k| {
        let (u, du) = horner_d(debye_u(k), s);
        (acc + k as f64 * u + 2.0 * s * du) * sp
    })
}

fn debye_u(k: usize) -> &'static [f64] {
    &DEBYE_U[DEBYE_OFFSET[k - 1]..DEBYE_OFFSET[k - 1] + k + 1]
}

/// √(v² + x²) for v, x ≥ 0: a square root where the squares cannot overflow or underflow,
/// the library's careful hypot elsewhere.
fn rho_of(v: f64, x: f64) -> f64 {
    let m = v.max(x);
    if m < 1e150 && m > 1e-150 {
        (v * v + x * x).sqrt()
    } else {
        v.hypot(x)
    }
}

fn in_debye_region(rho: f64) -> bool {
    rho >= RHO_DEBYE
}

// ---- the small region: power series, Temme, Gauss continued fraction ---------------------------

/// Σ_{k≥1} (x²/4)^k / (k! (v+1)_k) (the power series of I less its first term 1), all terms
/// positive.
fn i_series_tail(v: f64, x: f64) -> f64 {
    let q = 0.25 * x * x;
    let (mut term, mut tail, mut k) = (1.0, 0.0, 0.0);
    loop {
        k += 1.0;
        term *= q / (k * (k + v));
        tail += term;
        if term <= 1e-17 * (1.0 + tail) {
            return tail;
        }
    }
}

/// log I_v(x) for ρ < RHO_DEBYE, v ≥ 0, x > 0.
/// `order`: (1/Γ(v+1), its log) if the caller has them ([`i_order_factors`]).
fn log_i_small(v: f64, x: f64, order: Option<(f64, f64)>) -> f64 {
    let tail = i_series_tail(v, x);
    if v == 0.0 {
        return tail.ln_1p();
    }
    if x > 2.0 {
        // v log(x/2) > 0 and log Γ(v+1) (up to 103) can cancel to a log I near 0: form the
        // prefactor in linear space (pow and 1/Γ are accurate to a few ulp) instead.
        let rg = order.map_or_else(|| rgamma(v + 1.0), |o| o.0);
        ((0.5 * x).powf(v) * rg * (1.0 + tail)).ln()
    } else {
        // v log(x/2) ≤ 0 and −log Γ(v+1) ≤ 0.13 do not cancel (log Γ < 0 only below 2, where
        // it is above −0.13); log S = log1p(S − 1) ≤ x²/4(v+1).
        let log_rg = order.map_or_else(|| rgamma(v + 1.0).ln(), |o| o.1);
        v * (x.ln() - std::f64::consts::LN_2) + log_rg + tail.ln_1p()
    }
}

/// Below this x, [`k_small`] runs the recurrence on L_n = K_{μ+n}(x)·(x/2)^n: the plain one
/// multiplies by 2(μ+n)/x per step, which would overflow in one step even with rescaling.
const K_SCALED_BELOW: f64 = 1e-20;

/// log K_v(x) and x·K_{v+1}(x)/K_v(x) for ρ < RHO_DEBYE: Temme's method at
/// μ = v − round(v) ∈ [−½, ½], then forward recurrence (stable: K grows with the order).
/// `temme`: the order's factors if the caller has them ([`TemmeOrder::for_order`] of this v).
fn k_small(v: f64, x: f64, temme: Option<&TemmeOrder>) -> (f64, f64) {
    let nl = (v + 0.5).floor();
    let mu = v - nl;
    // (K_μ, (x/2)·K_{μ+1})
    let (k0, l1) = if mu == -0.5 {
        // Half-integer orders (odd vMF dimensions): K_{−½} = K_½ = √(π/2x) e^{−x} exactly.
        let k = (0.5 * std::f64::consts::PI).sqrt() / x.sqrt() * (-x).exp();
        (k, 0.5 * (x * k)) // x·k first: x/2 underflows for the smallest x
    } else if x <= TEMME_X_MAX {
        match temme {
            Some(t) => temme_series(t, x),
            None => temme_series(&TemmeOrder::new(mu), x),
        }
    } else if x <= TRAPEZOID_X_MAX {
        k_trapezoid(mu, x)
    } else {
        steed_cf2(mu, x)
    };
    let mut order = mu;
    if x >= K_SCALED_BELOW {
        // K_{n+1} = (2(μ+n)/x) K_n + K_{n−1}, rescaled when large; the log carries the scale.
        let (mut a, mut b) = (k0, l1 * (2.0 / x));
        let mut scale = 0.0;
        for _ in 0..nl as u32 {
            let next = (order + 1.0) * (2.0 / x) * b + a;
            a = b;
            b = next;
            order += 1.0;
            if b > 1e280 {
                a *= 2f64.powi(-900);
                b *= 2f64.powi(-900);
                scale += 900.0 * std::f64::consts::LN_2;
            }
        }
        (a.ln() + scale, x * (b / a))
    } else {
        // L_{n+1} = (μ+n) L_n + (x/2)² L_{n−1}: factors below 39, so no overflow; then
        // log K_v = log L_nl + nl·log(2/x), two terms of one sign here (x < 1e-20, v ≥ ½).
        let q = 0.25 * x * x;
        let (mut a, mut b) = (k0, l1);
        for _ in 0..nl as u32 {
            let next = (order + 1.0) * b + q * a;
            a = b;
            b = next;
            order += 1.0;
        }
        (
            a.ln() + nl * (std::f64::consts::LN_2 - x.ln()),
            2.0 * (b / a),
        )
    }
}

/// The factors of Temme's series that depend on the order only, at μ ∈ [−½, ½]: computed once
/// per batch when the batch has one order ([`super::evaluate_cpu`]), else once per call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TemmeOrder {
    mu: f64,
    /// πμ / sin(πμ).
    fact: f64,
    /// Γ1 = (1/Γ(1−μ) − 1/Γ(1+μ))/(2μ) and Γ2 = (1/Γ(1−μ) + 1/Γ(1+μ))/2.
    gam1: f64,
    gam2: f64,
    /// 1/Γ(1+μ) and 1/Γ(1−μ).
    gampl: f64,
    gammi: f64,
}

impl TemmeOrder {
    fn new(mu: f64) -> Self {
        let fact = if mu.abs() < 1e-9 {
            1.0
        } else {
            std::f64::consts::PI * mu / sin_pi(mu)
        };
        // 1/Γ(1+μ) and 1/Γ(1−μ) from one series; Γ1 = (1/Γ(1−μ) − 1/Γ(1+μ))/(2μ) and
        // Γ2 = (1/Γ(1−μ) + 1/Γ(1+μ))/2 are its odd and even parts, free of cancellation.
        // Four independent Horner chains in μ⁴ (coefficients k mod 4), for latency.
        let mu2 = mu * mu;
        let mu4 = mu2 * mu2;
        let mut chains = [0.0f64; 4];
        for quad in RGAMMA_TAYLOR.chunks(4).rev() {
            for (chain, &c) in chains.iter_mut().zip(quad) {
                *chain = *chain * mu4 + c;
            }
        }
        let even = chains[0] + mu2 * chains[2];
        let odd = chains[1] + mu2 * chains[3];
        let gam1 = -odd;
        let gam2 = even;
        let gampl = even + mu * odd; // 1/Γ(1+μ)
        let gammi = even - mu * odd; // 1/Γ(1−μ)
        TemmeOrder {
            mu,
            fact,
            gam1,
            gam2,
            gampl,
            gammi,
        }
    }

    /// The factors for the order v (of either sign) as [`k_small`] reduces it.
    pub(crate) fn for_order(v: f64) -> Self {
        let v = v.abs();
        Self::new(v - (v + 0.5).floor())
    }
}

/// Temme's series (x ≤ TEMME_X_MAX) for K_μ and (x/2)·K_{μ+1}, |μ| ≤ ½ (Numerical Recipes'
/// bessik), written so that no intermediate overflows down to the smallest subnormal x.
fn temme_series(t: &TemmeOrder, x: f64) -> (f64, f64) {
    let TemmeOrder {
        mu,
        fact,
        gam1,
        gam2,
        gampl,
        gammi,
    } = *t;
    let d = std::f64::consts::LN_2 - x.ln(); // −log(x/2); x/2 underflows for the smallest x
    let e = mu * d;
    let ee = e.exp();
    let cosh_e = 0.5 * (ee + 1.0 / ee);
    // sinh(e)/e: its series below ½ (where (ee − 1/ee)/2e would cancel), the exponentials above.
    let fact2 = if e.abs() < 0.5 {
        let e2 = e * e;
        1.0 + e2 / 6.0
            * (1.0
                + e2 / 20.0
                    * (1.0
                        + e2 / 42.0 * (1.0 + e2 / 72.0 * (1.0 + e2 / 110.0 * (1.0 + e2 / 156.0)))))
    } else {
        0.5 * (ee - 1.0 / ee) / e
    };
    let mut ff = fact * (gam1 * cosh_e + gam2 * fact2 * d);
    let mut sum = ff;
    let mut p = 0.5 * ee / gampl;
    let mut q = 0.5 / (ee * gammi);
    let mut c = 1.0;
    let dd = 0.25 * x * x;
    let mut sum1 = p;
    let mut i = 1.0;
    loop {
        ff = (i * ff + p + q) / (i * i - mu * mu);
        c *= dd / i;
        p /= i - mu;
        q /= i + mu;
        let del = c * ff;
        sum += del;
        sum1 += c * (p - i * ff);
        if del.abs() < sum.abs() * 1e-17 || i > 200.0 {
            break;
        }
        i += 1.0;
    }
    (sum, sum1)
}

/// Between Temme's series and Steed's continued fraction (which needs 32–170 iterations here),
/// K_μ and K_{μ+1} come from the trapezoidal rule, [`k_trapezoid`].
const TRAPEZOID_X_MAX: f64 = 8.0;

/// K_μ(x) and (x/2)·K_{μ+1}(x) for |μ| ≤ ½, TEMME_X_MAX < x ≤ TRAPEZOID_X_MAX, from
/// e^x K_ν(x) = ∫_0^∞ exp(−x (cosh t − 1)) cosh(νt) dt by the trapezoidal rule with step ⅙. The
/// integrand is analytic in a strip around the real axis and decays double-exponentially, so the
/// rule converges geometrically: relative error below 7e-16 for these x and μ (checked against
/// mpmath over a grid up to x = 12, and by the golden tests); 13–27 nodes. Nodes stop where the term drops below e^−40 of
/// the peak; cosh t_k − 1 and e^{±t_k} are tabulated (consts.rs), two exponentials per node.
fn k_trapezoid(mu: f64, x: f64) -> (f64, f64) {
    // t = 0 carries half weight; cosh(0) = 1 for both orders.
    let (mut s0, mut s1) = (0.5, 0.5);
    let grow = mu.abs() + 1.0;
    for (k, &cosh_m1) in TRAPEZOID_COSH_M1.iter().enumerate() {
        let t = f64::from(k as u32 + 1) / 6.0;
        let ex = -x * cosh_m1;
        if ex + grow * t < -40.0 {
            break;
        }
        let a = (ex + mu * t).exp(); // e^{−x(cosh t − 1)} e^{μt}
        let b = (ex - mu * t).exp(); // e^{−x(cosh t − 1)} e^{−μt}
        s0 += 0.5 * (a + b);
        s1 += 0.5 * (a * TRAPEZOID_EXP[k] + b * TRAPEZOID_EXP_NEG[k]);
    }
    let scale = (-x).exp() / 6.0;
    (s0 * scale, 0.5 * x * (s1 * scale))
}

/// Steed's continued fraction CF2 (Temme's method, x > TRAPEZOID_X_MAX) for K_μ and (x/2)·K_{μ+1},
/// |μ| ≤ ½.
fn steed_cf2(mu: f64, x: f64) -> (f64, f64) {
    let mut b = 2.0 * (1.0 + x);
    let mut d = 1.0 / b;
    let mut h = d;
    let mut delh = d;
    let mut q1 = 0.0;
    let mut q2 = 1.0;
    let a1 = 0.25 - mu * mu;
    let mut q = a1;
    let mut c = a1;
    let mut a = -a1;
    let mut s = 1.0 + q * delh;
    let mut i = 2.0;
    loop {
        a -= 2.0 * (i - 1.0);
        c = -a * c / i;
        let qnew = (q1 - b * q2) / a;
        q1 = q2;
        q2 = qnew;
        q += c * qnew;
        b += 2.0;
        d = 1.0 / (b + a * d);
        delh *= b * d - 1.0;
        h += delh;
        let dels = q * delh;
        s += dels;
        if (dels / s).abs() < 1e-17 || i > 500.0 {
            break;
        }
        i += 1.0;
    }
    h *= a1;
    let kmu = (std::f64::consts::PI / (2.0 * x)).sqrt() * (-x).exp() / s;
    (kmu, 0.5 * kmu * (mu + x + 0.5 - h))
}

/// R = I_{v+1}/I_v, 1 − R and dR/dx for ρ < RHO_DEBYE: the recurrence
/// R_m = x / (2(m+1) + x R_{m+1}) run downward from m = v + N, where Amos' estimate
/// x / (a + √(a² + x²)), a = m + 1, starts it. A relative error of R_{m+1} reaches R_m scaled by
/// R_m R_{m+1}, an absolute error of 1 − R_{m+1} reaches 1 − R_m scaled by R_m, and
/// R_m ≤ x / (2(m+1)); so N is the first count with ∏_{j<N} min(1, x / (2(v+j+1))) below
/// 1e-18 / (1 + x) (the start is off by less than 1, and 1 − R ≥ 1/(2x+1) here): 5 steps at
/// x = 1e-3, 22 at x = 2, ~90 at x = 38.
/// 1 − R and R′ follow their own recurrences, free of the cancellation of 1 − R and of the
/// identity R′ = 1 − R² − (2v+1) R / x:
/// D_m = (2(m+1) − x D_{m+1}) / den and R′_m = (2(m+1) − x² R′_{m+1}) / den², den = 2(m+1) + x R_{m+1}.
fn ratio_small(v: f64, x: f64) -> (f64, f64, f64) {
    let half_x = 0.5 * x;
    let target = 1e-18 / (1.0 + x);
    let (mut steps, mut bound) = (0u32, 1.0f64);
    while bound > target && steps < 400 {
        steps += 1;
        bound *= (half_x / (v + f64::from(steps))).min(1.0);
    }
    let a = v + f64::from(steps) + 1.0;
    let root = (a * a + x * x).sqrt();
    let mut r = x / (a + root);
    let mut dm = 1.0 - r;
    let mut dr = a / (root * (a + root));
    for j in (0..steps).rev() {
        // m = v + j, counted in integers so the last step is exactly m = v.
        let m1 = v + f64::from(j) + 1.0;
        let den = 2.0 * m1 + x * r;
        dm = (2.0 * m1 - x * dm) / den;
        dr = (2.0 * m1 - x * x * dr) / (den * den);
        r = x / den;
    }
    (r, dm, dr)
}

// ---- public scalar functions ------------------------------------------------------------------

/// Which part of the algorithm evaluates log I_v(x) and log K_v(x) at (v, x), v ≥ 0, x > 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    /// ρ < 38: power series (I), Temme's series, trapezoidal rule or Steed's CF2 (K), Gauss
    /// continued fraction (ratio).
    Small,
    /// ρ ≥ 38: Debye's expansion, vη in closed form.
    Debye,
    /// ρ ≥ 38 with |x/v − z₀| ≤ 0.3: Debye's expansion, vη as a Taylor series in x/v − z₀.
    DebyeNearZero,
}

impl Region {
    /// All regions, in a fixed order.
    pub const ALL: [Region; 3] = [Region::Small, Region::Debye, Region::DebyeNearZero];

    /// Short description, for reports.
    pub const fn describe(self) -> &'static str {
        match self {
            Region::Small => "rho < 38 (series; K: Temme, trapezoid, CF2)",
            Region::Debye => "rho >= 38 (Debye)",
            Region::DebyeNearZero => "rho >= 38, x/v near z0 (Debye, Taylor eta)",
        }
    }
}

/// The region of (v, x) (v ≥ 0, x > 0, finite).
pub fn region(v: f64, x: f64) -> Region {
    let v = v.abs();
    if !in_debye_region(rho_of(v, x)) {
        Region::Small
    } else if ((x - ETA_Z0.0 * v).abs() <= ETA_WINDOW * v) && v > 0.0 {
        Region::DebyeNearZero
    } else {
        Region::Debye
    }
}

/// log I_v(x) for v ≥ 0 (negative v by reflection; see [`super`]), x ≥ 0.
pub fn log_i(v: f64, x: f64) -> f64 {
    log_i_with(v, x, None)
}

/// (1/Γ(v+1), log 1/Γ(v+1)) for orders whose small region uses them (0 ≤ v < RHO_DEBYE), for
/// batches with one order; None otherwise.
pub(crate) fn i_order_factors(v: f64) -> Option<(f64, f64)> {
    (0.0..RHO_DEBYE).contains(&v).then(|| {
        let rg = rgamma(v + 1.0);
        (rg, rg.ln())
    })
}

/// [`log_i`] with the order's factors precomputed ([`i_order_factors`] of this v).
pub(crate) fn log_i_with(v: f64, x: f64, order: Option<(f64, f64)>) -> f64 {
    if v.is_nan() || x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if v < 0.0 {
        return log_i_negative_order(v, x);
    }
    if x == 0.0 {
        return if v == 0.0 { 0.0 } else { f64::NEG_INFINITY };
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    if v.is_infinite() {
        return f64::NEG_INFINITY;
    }
    let rho = rho_of(v, x);
    if in_debye_region(rho) {
        let p = 1.0 / rho;
        let t = v * p;
        v_eta(v, x, rho) - 0.5 * (LN_2PI + rho.ln())
            + debye_sum(p, t * t, 1.0, debye_terms(rho)).ln_1p()
    } else {
        log_i_small(v, x, order)
    }
}

/// log K_v(x) for any real v (K_{−v} = K_v), x ≥ 0.
pub fn log_k(v: f64, x: f64) -> f64 {
    log_k_with(v, x, None)
}

/// [`log_k`] with the order's Temme factors precomputed (batches with one order).
pub(crate) fn log_k_with(v: f64, x: f64, temme: Option<&TemmeOrder>) -> f64 {
    if v.is_nan() || x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    let v = v.abs();
    if x == 0.0 || v.is_infinite() {
        return f64::INFINITY;
    }
    if x.is_infinite() {
        return f64::NEG_INFINITY;
    }
    let rho = rho_of(v, x);
    if in_debye_region(rho) {
        let p = 1.0 / rho;
        let t = v * p;
        -v_eta(v, x, rho)
            + 0.5 * (LN_PI_OVER_2 - rho.ln())
            + debye_sum(p, t * t, -1.0, debye_terms(rho)).ln_1p()
    } else {
        k_small(v, x, temme).0
    }
}

/// I_{v+1}(x) / I_v(x) for v ≥ 0, x ≥ 0, computed directly (not from logs).
pub fn ratio_i(v: f64, x: f64) -> f64 {
    ratio_pair(v, x).0
}

/// 1 − I_{v+1}(x) / I_v(x), accurate where it is small (x ≫ v).
pub fn one_minus_ratio_i(v: f64, x: f64) -> f64 {
    ratio_pair(v, x).1
}

/// (R, 1 − R) with R = I_{v+1}/I_v.
pub fn ratio_pair(v: f64, x: f64) -> (f64, f64) {
    if v.is_nan() || x.is_nan() || x < 0.0 || v < 0.0 {
        return (f64::NAN, f64::NAN);
    }
    if x == 0.0 {
        return (0.0, 1.0);
    }
    if x.is_infinite() {
        return (1.0, 0.0);
    }
    if v.is_infinite() {
        return (0.0, 1.0);
    }
    let rho = rho_of(v, x);
    if !in_debye_region(rho) {
        let (r, one_minus, _) = ratio_small(v, x);
        return (r, one_minus);
    }
    let p = 1.0 / rho;
    let s = v * p * (v * p);
    // d/dx log I = ρ/x − x/(2ρ²) + S′/S with S′ = −x p² W; R = that − v/x.
    let p2 = p * p;
    // One term more than the function needs: differentiation multiplies term k by about k.
    let terms = (debye_terms(rho) + 1).min(DEBYE_TERMS);
    let tail =
        0.5 * x * p2 + x * p2 * debye_w(p, s, 1.0, terms) / (1.0 + debye_sum(p, s, 1.0, terms));
    let r = x / (rho + v) - tail;
    // 1 − x/(ρ+v) = (v + v²/(ρ+x)) / (ρ+v), without cancellation.
    let one_minus = (v + v * v / (rho + x)) / (rho + v) + tail;
    (r, one_minus)
}

/// d/dx log I_v(x) = v/x + I_{v+1}/I_v.
pub fn dlog_i(v: f64, x: f64) -> f64 {
    if x == 0.0 && v == 0.0 {
        return 0.0;
    }
    v / x + ratio_i(v, x)
}

/// d/dx log K_v(x) = v/x − K_{v+1}/K_v (< 0).
pub fn dlog_k(v: f64, x: f64) -> f64 {
    dlog_k_with(v, x, None)
}

/// [`dlog_k`] with the order's Temme factors precomputed (batches with one order).
pub(crate) fn dlog_k_with(v: f64, x: f64, temme: Option<&TemmeOrder>) -> f64 {
    if v.is_nan() || x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    let v = v.abs();
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return -1.0;
    }
    let rho = rho_of(v, x);
    if in_debye_region(rho) {
        let p = 1.0 / rho;
        let s = v * p * (v * p);
        let p2 = p * p;
        // d/dx log K = −ρ/x − x/(2ρ²) + S_K′/S_K with S_K′ = −x p² W_K.
        let terms = (debye_terms(rho) + 1).min(DEBYE_TERMS);
        -(rho / x)
            - 0.5 * x * p2
            - x * p2 * debye_w(p, s, -1.0, terms) / (1.0 + debye_sum(p, s, -1.0, terms))
    } else {
        // (v − x K_{v+1}/K_v)/x: finite down to the smallest x, where v/x alone overflows.
        (v - k_small(v, x, temme).1) / x
    }
}

// ---- von Mises-Fisher -------------------------------------------------------------------------

/// log Γ(a) for a > 0: from 1/Γ below 39 (a few ulp), Stirling's series above, and
/// log Γ(a) = log Γ(a+1) − log a below 1. NaN for a ≤ 0 or NaN; +∞ for a = +∞.
pub fn lgamma(a: f64) -> f64 {
    if a.is_nan() || a <= 0.0 {
        return f64::NAN;
    }
    if a == f64::INFINITY {
        return a;
    }
    if a < 1.0 {
        return lgamma(a + 1.0) - a.ln();
    }
    if a < 39.0 {
        return -rgamma(a).ln();
    }
    let inv = 1.0 / a;
    let inv2 = inv * inv;
    let series = horner(&super::consts::LGAMMA_STIRLING, inv2) * inv;
    (a - 0.5) * a.ln() - a + 0.5 * LN_2PI + series
}

/// log C_d(κ) = (d/2 − 1) log κ − (d/2) log(2π) − log I_{d/2−1}(κ), the log normalizer of the
/// von Mises-Fisher density C_d(κ) e^{κ μᵀx} on the unit sphere in R^d (d ≥ 2, κ ≥ 0).
pub fn log_vmf_normalizer(d: f64, kappa: f64) -> f64 {
    if d.is_nan() || kappa.is_nan() || d < 2.0 || kappa < 0.0 {
        return f64::NAN;
    }
    let v = 0.5 * d - 1.0;
    let log_2pi_part = 0.5 * d * LN_2PI;
    if kappa == 0.0 {
        // The uniform density: 1 / area of the sphere = Γ(d/2) / (2 π^{d/2}).
        return lgamma(0.5 * d) - std::f64::consts::LN_2 - 0.5 * d * std::f64::consts::PI.ln();
    }
    if kappa.is_infinite() {
        return f64::NEG_INFINITY;
    }
    let rho = rho_of(v, kappa);
    if in_debye_region(rho) {
        v * kappa.ln() - log_2pi_part - log_i(v, kappa)
    } else {
        // log I_v(κ) = v log(κ/2) − log Γ(v+1) + log S: the v log κ terms cancel exactly.
        v * std::f64::consts::LN_2
            - log_2pi_part
            - rgamma(v + 1.0).ln()
            - i_series_tail(v, kappa).ln_1p()
    }
}

/// A_d(κ) = I_{d/2}(κ) / I_{d/2−1}(κ), the mean resultant length of a vMF in dimension d.
pub fn vmf_mean_resultant(d: f64, kappa: f64) -> f64 {
    if d < 2.0 {
        return f64::NAN;
    }
    ratio_i(0.5 * d - 1.0, kappa)
}

/// 1 − A_d(κ), accurate where A_d is near 1 (large κ).
pub fn vmf_one_minus_mean_resultant(d: f64, kappa: f64) -> f64 {
    if d < 2.0 {
        return f64::NAN;
    }
    one_minus_ratio_i(0.5 * d - 1.0, kappa)
}

/// A_d′(κ) = dA_d/dκ = 1 − A² − (d − 1) A / κ (> 0). In the Debye region it is the analytic
/// derivative of the expansion, which does not cancel at large κ as the identity does.
pub fn vmf_mean_resultant_derivative(d: f64, kappa: f64) -> f64 {
    if d.is_nan() || kappa.is_nan() || d < 2.0 || kappa < 0.0 {
        return f64::NAN;
    }
    let v = 0.5 * d - 1.0;
    if kappa == 0.0 {
        return 1.0 / d; // A_d(κ) = κ/d + O(κ³)
    }
    if kappa.is_infinite() {
        return 0.0;
    }
    let rho = rho_of(v, kappa);
    if !in_debye_region(rho) {
        return ratio_small(v, kappa).2;
    }
    ratio_derivative_debye(v, kappa, rho)
}

/// dR/dx for R = I_{v+1}/I_v from the Debye form R = x/(ρ+v) − x p²/2 − x p² W/S.
fn ratio_derivative_debye(v: f64, x: f64, rho: f64) -> f64 {
    let p = 1.0 / rho;
    let p2 = p * p;
    let s = v * v * p2;
    // S = 1 + Σ p^k U_k, W = Σ p^k (k U_k + 2 s U_k′), and
    // W′ = dW/dx = −x p² Σ p^k [k (k U_k + 2 s U_k′) + 2 s ((k + 2) U_k′ + 2 s U_k″)].
    let (mut sum, mut w, mut g) = (0.0, 0.0, 0.0);
    let mut pk = 1.0;
    for k in 1..=DEBYE_TERMS {
        pk *= p;
        let c = debye_u(k);
        let (u, du) = horner_d(c, s);
        let ddu = c
            .iter()
            .enumerate()
            .skip(2)
            .rev()
            .fold(0.0f64, |acc, (j, &cj)| acc * s + (j * (j - 1)) as f64 * cj);
        let kf = k as f64;
        sum += pk * u;
        let wk = kf * u + 2.0 * s * du;
        w += pk * wk;
        g += pk * (kf * wk + 2.0 * s * ((kf + 2.0) * du + 2.0 * s * ddu));
    }
    let big_s = 1.0 + sum;
    let s_prime = -x * p2 * w; // S′
    let w_prime = -x * p2 * g;
    // S″ = d/dx (−x p² W) = −p² W + 2 x² p⁴ W − x p² W′.
    let s_second = -p2 * w + 2.0 * x * x * p2 * p2 * w - x * p2 * w_prime;
    // d/dx [x/(ρ+v)] = v / (ρ (ρ+v)); d/dx [−x p²/2] = (x² − v²) p⁴ / 2;
    // d/dx [S′/S] = S″/S − (S′/S)².
    let q = s_prime / big_s;
    v * p / (rho + v) + 0.5 * (x - v) * (x + v) * p2 * p2 + s_second / big_s - q * q
}

/// The maximum-likelihood concentration κ̂ of a vMF in dimension d from the mean resultant
/// length R̄ of a sample: the root of A_d(κ) = R̄. Banerjee et al.'s estimate starts Newton's
/// method (Sra 2012), kept inside the bracket R̄(d−2)/(1−R̄²) ≤ κ̂ ≤ R̄d/(1−R̄²), bisecting when a
/// step leaves it. For R̄ ≥ ½ the residual is formed as (1 − R̄) − (1 − A_d(κ)) (1 − R̄ is exact
/// there), so κ̂ is accurate to the conditioning of the problem: a relative error ε in R̄ (in
/// 1 − R̄ near 1, where R̄ itself cannot carry it) moves κ̂ by |R̄ / (κ A_d′(κ))| ε relative
/// (≈ 1 for κ ≪ d, ≈ (1 − R̄)/R̄ · 2 … for κ ≫ d).
///
/// R̄ = 0 gives 0, R̄ ≥ 1 gives +inf, R̄ < 0, d < 2 or NaN give NaN.
pub fn vmf_kappa_mle(rbar: f64, d: f64) -> f64 {
    kappa_mle(rbar, 1.0 - rbar, d)
}

/// [`vmf_kappa_mle`] from 1 − R̄, for samples concentrated enough that R̄ rounds near 1 (κ̂ then
/// depends on 1 − R̄ alone, which this form does not round away).
pub fn vmf_kappa_mle_from_one_minus(one_minus_rbar: f64, d: f64) -> f64 {
    kappa_mle(1.0 - one_minus_rbar, one_minus_rbar, d)
}

fn kappa_mle(rbar: f64, one_minus_rbar: f64, d: f64) -> f64 {
    if rbar.is_nan() || one_minus_rbar.is_nan() || d.is_nan() || rbar < 0.0 || d < 2.0 {
        return f64::NAN;
    }
    if rbar == 0.0 {
        return 0.0;
    }
    if one_minus_rbar <= 0.0 {
        return f64::INFINITY;
    }
    let denom = one_minus_rbar * (1.0 + rbar); // 1 − R̄², without cancellation
    let mut lo = (rbar * (d - 2.0) / denom).max(0.0);
    let mut hi = rbar * d / denom;
    let mut kappa = rbar * (d - rbar * rbar) / denom;
    if !(kappa > lo && kappa < hi) {
        kappa = 0.5 * (lo + hi);
    }
    for _ in 0..100 {
        // f(κ) = A(κ) − R̄, increasing in κ; near 1 as (1 − R̄) − (1 − A(κ)), whose parts are
        // accurate there (and 1 − R̄ exact), below ½ directly.
        let f = if rbar >= 0.5 {
            one_minus_rbar - vmf_one_minus_mean_resultant(d, kappa)
        } else {
            vmf_mean_resultant(d, kappa) - rbar
        };
        if f == 0.0 {
            return kappa;
        }
        if f > 0.0 {
            hi = hi.min(kappa);
        } else {
            lo = lo.max(kappa);
        }
        let deriv = vmf_mean_resultant_derivative(d, kappa);
        let mut next = kappa - f / deriv;
        if !(next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        if (next - kappa).abs() <= 4.0 * f64::EPSILON * kappa
            || hi - lo <= 4.0 * f64::EPSILON * kappa
        {
            return next;
        }
        kappa = next;
    }
    kappa
}

/// log I_v for v < 0 by reflection: I_{−ν} = I_ν + (2/π) sin(νπ) K_ν (ν = −v). NaN where the
/// right side is negative (log undefined), −inf where it is zero.
fn log_i_negative_order(v: f64, x: f64) -> f64 {
    let nu = -v;
    if nu.fract() == 0.0 {
        return log_i(nu, x); // I_{−n} = I_n
    }
    if x == 0.0 {
        // I_{−ν}(x) ~ (x/2)^{−ν} / Γ(1−ν) diverges with the sign of Γ(1−ν): positive when
        // ⌊ν⌋ is even.
        return if nu.floor() % 2.0 == 0.0 {
            f64::INFINITY
        } else {
            f64::NAN
        };
    }
    let c = 2.0 / std::f64::consts::PI * sin_pi(nu);
    let (li, lk) = (log_i(nu, x), log_k(nu, x));
    let other = c.abs().ln() + lk;
    if c > 0.0 {
        let (hi, lo) = if li > other { (li, other) } else { (other, li) };
        hi + (lo - hi).exp().ln_1p()
    } else {
        let diff = other - li;
        if diff < 0.0 {
            li + (-diff.exp()).ln_1p()
        } else if diff == 0.0 {
            f64::NEG_INFINITY
        } else {
            f64::NAN
        }
    }
}
