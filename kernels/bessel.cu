// Batched log-Bessel and von Mises-Fisher functions: log I_v(x), log K_v(x), d/dx of both, the
// ratio I_{v+1}/I_v and 1 − ratio, and log C_d(κ), A_d(κ), 1 − A_d, A_d′, κ̂(R̄, d).
//
// The algorithm is the one of src/bessel/cpu.rs (whose documentation carries the error
// analysis), evaluated in f64: Debye's uniform expansion for ρ = sqrt(v² + x²) >= 38, with the
// exponent vη summed as a Taylor series near its zero; the power series (I), Temme's method (K)
// and the Gauss continued fraction (ratio) below. Tables come from scripts/gen_bessel_consts.py.
// f32 kernels read and write f32; log I and log K compute mostly in f32 (section "f32 evaluation"),
// the other functions in f64.
#include "common.cuh"
#include "bessel_consts.cuh"

namespace sk {
namespace bessel {

constexpr double RHO_DEBYE = 38.0;
constexpr double ETA_WINDOW = 0.3;
// Temme's series for K below this x, Steed's CF2 above (the series' K_{mu+1} loses digits
// toward x = 2: 1.2e-14 at mu = -1/2, x = 1.98).
constexpr double TEMME_X_MAX = 1.0;
constexpr double LN_2PI = 1.8378770664093454836;
constexpr double LN_PI_OVER_2 = 0.45158270528945486473;
constexpr double LN_2 = 0.69314718055994530942;
constexpr double PI = 3.14159265358979323846;

__device__ __forceinline__ double nan_d() { return __longlong_as_double(0x7ff8000000000000LL); }
__device__ __forceinline__ double inf_d() { return __longlong_as_double(0x7ff0000000000000LL); }

template <int N>
__device__ __forceinline__ double horner(const double *c, double x) {
    double acc = 0.0;
#pragma unroll
    for (int i = N - 1; i >= 0; --i) acc = fma(acc, x, c[i]);
    return acc;
}

// 1/Γ(a) for a >= 1: the Taylor series of 1/Γ(1+f) on [0, 1) over (f+1)…(f+n).
__device__ double rgamma(double a) {
    const double n = floor(a - 1.0);
    const double f = a - 1.0 - n;
    double prod = 1.0;
    for (double k = 1.0; k <= n; k += 1.0) prod *= f + k;
    return horner<SK_RGAMMA_TERMS>(SK_RGAMMA_TAYLOR, f) / prod;
}

__device__ double lgamma_acc(double a) {
    if (a < 39.0) return -log(rgamma(a));
    const double inv = 1.0 / a;
    const double series = horner<SK_STIRLING_TERMS>(SK_LGAMMA_STIRLING, inv * inv) * inv;
    return (a - 0.5) * log(a) - a + 0.5 * LN_2PI + series;
}

// vη = ρ − v asinh(v/x), summed as a Taylor series in δ = x/v − z₀ within |δ| <= 0.3, where
// x − z₀v is formed exactly (one fma with the leading part of z₀).
__device__ double v_eta(double v, double x, double rho) {
    const double d = fma(-SK_ETA_Z0_HI, v, x) - SK_ETA_Z0_LO * v;
    if (fabs(d) <= ETA_WINDOW * v) {
        return d * horner<SK_ETA_TERMS>(SK_ETA_TAYLOR, d / v);
    }
    if (v == 0.0) return rho;
    // asinh(v/x) = log1p((v + v²/(rho + x))/x): no cancellation, one log.
    return rho - v * log1p((v + v * v / (rho + x)) / x);
}

// Debye terms needed at rho (generated table; 13 at the region boundary).
__device__ __forceinline__ int debye_terms(double rho) {
    int k = SK_DEBYE_TERMS;
#pragma unroll
    for (int i = SK_DEBYE_TERMS - 3; i >= 0; --i) {
        if (rho >= SK_DEBYE_RHO_MIN[i]) k = i + 3;
    }
    return k;
}

__device__ __forceinline__ double rho_of(double v, double x) {
    const double m = fmax(v, x);
    return (m < 1e150 && m > 1e-150) ? sqrt(v * v + x * x) : hypot(v, x);
}

// Debye sums with `terms` terms: S = Σ (σp)^k U_k(s) and W = Σ (σp)^k (k U_k + 2 s U_k′)
// (σ = +1 for I, −1 for K); dS/dx = −x p² W.
struct DebyeSums {
    double sum, w;
};

__device__ DebyeSums debye_sums(double p, double s, double sigma, int terms, bool with_w) {
    const double sp = sigma * p;
    double sum = 0.0, w = 0.0;
#pragma unroll
    for (int k = SK_DEBYE_TERMS; k >= 1; --k) {
        if (k > terms) continue;
        const double *c = SK_DEBYE_U + SK_DEBYE_OFFSET[k - 1];
        double u = 0.0, du = 0.0;
#pragma unroll
        for (int j = k; j >= 0; --j) {
            du = du * s + u;
            u = u * s + c[j];
        }
        sum = (sum + u) * sp;
        if (with_w) w = (w + k * u + 2.0 * s * du) * sp;
    }
    return {sum, w};
}

// Σ_{k>=1} (x²/4)^k / (k! (v+1)_k): the power series of I less its first term, all terms positive.
__device__ double i_series_tail(double v, double x) {
    const double q = 0.25 * x * x;
    double term = 1.0, tail = 0.0, k = 0.0;
    for (int it = 0; it < 400; ++it) {
        k += 1.0;
        term *= q / (k * (k + v));
        tail += term;
        if (term <= 1e-17 * (1.0 + tail)) break;
    }
    return tail;
}

__device__ double log_i_small(double v, double x) {
    const double tail = i_series_tail(v, x);
    if (v == 0.0) return log1p(tail);
    // Above x = 2, v log(x/2) and log Γ(v+1) can cancel to a log I near 0: linear prefactor.
    if (x > 2.0) return log(pow(0.5 * x, v) * rgamma(v + 1.0) * (1.0 + tail));
    return v * (log(x) - LN_2) + log(rgamma(v + 1.0)) + log1p(tail);
}

// Temme's series (x <= TEMME_X_MAX) for K_mu and (x/2) K_{mu+1}, |mu| <= 1/2; no intermediate
// overflows down to the smallest subnormal x.
__device__ void temme_series(double mu, double x, double &kmu, double &lmu1) {
    // sinpi: exact argument reduction, and no large-argument path (which would use local memory).
    const double fact = fabs(mu) < 1e-9 ? 1.0 : PI * mu / sinpi(mu);
    const double d = LN_2 - log(x);  // -log(x/2); x/2 underflows for the smallest x
    const double e = mu * d;
    const double ee = exp(e);
    const double cosh_e = 0.5 * (ee + 1.0 / ee);
    double fact2;
    if (fabs(e) < 0.5) {
        const double e2 = e * e;
        fact2 = 1.0 + e2 / 6.0 * (1.0 + e2 / 20.0 * (1.0 + e2 / 42.0 * (1.0 + e2 / 72.0 * (1.0 + e2 / 110.0 * (1.0 + e2 / 156.0)))));
    } else {
        fact2 = 0.5 * (ee - 1.0 / ee) / e;
    }
    double even = 0.0, odd = 0.0;
    for (int k = SK_RGAMMA_TERMS - 1; k >= 0; --k) {
        if (k % 2 == 0) even = even * mu * mu + SK_RGAMMA_TAYLOR[k];
        else odd = odd * mu * mu + SK_RGAMMA_TAYLOR[k];
    }
    const double gam1 = -odd, gam2 = even;
    const double gampl = even + mu * odd, gammi = even - mu * odd;
    double ff = fact * (gam1 * cosh_e + gam2 * fact2 * d);
    double sum = ff;
    double p = 0.5 * ee / gampl;
    double q = 0.5 / (ee * gammi);
    double c = 1.0;
    const double dd = 0.25 * x * x;
    double sum1 = p;
    for (double i = 1.0; i <= 200.0; i += 1.0) {
        ff = (i * ff + p + q) / (i * i - mu * mu);
        c *= dd / i;
        p /= i - mu;
        q /= i + mu;
        const double del = c * ff;
        sum += del;
        sum1 += c * (p - i * ff);
        if (fabs(del) < fabs(sum) * 1e-17) break;
    }
    kmu = sum;
    lmu1 = sum1;
}

// Between Temme's series and Steed's CF2 (32-170 iterations there): the trapezoidal rule.
constexpr double TRAPEZOID_X_MAX = 8.0;

// K_mu(x) and (x/2) K_{mu+1}(x), |mu| <= 1/2, TEMME_X_MAX < x <= TRAPEZOID_X_MAX: the trapezoidal
// rule with step 1/6 on e^x K_nu(x) = int_0^inf exp(-x (cosh t - 1)) cosh(nu t) dt (see
// k_trapezoid in src/bessel/cpu.rs). All lanes walk the same nodes: the tables are read uniformly.
__device__ void k_trapezoid(double mu, double x, double &kmu, double &lmu1) {
    double s0 = 0.5, s1 = 0.5;
    const double grow = fabs(mu) + 1.0;
    for (int k = 0; k < SK_TRAPEZOID_NODES; ++k) {
        const double t = (k + 1) / 6.0;
        const double ex = -x * SK_TRAPEZOID_COSH_M1[k];
        if (ex + grow * t < -40.0) break;
        const double a = exp(ex + mu * t), b = exp(ex - mu * t);
        s0 += 0.5 * (a + b);
        s1 += 0.5 * (a * SK_TRAPEZOID_EXP[k] + b * SK_TRAPEZOID_EXP_NEG[k]);
    }
    const double scale = exp(-x) / 6.0;
    kmu = s0 * scale;
    lmu1 = 0.5 * x * (s1 * scale);
}

// Steed's continued fraction CF2 (x > TRAPEZOID_X_MAX) for K_mu and (x/2) K_{mu+1}, |mu| <= 1/2.
__device__ void steed_cf2(double mu, double x, double &kmu, double &lmu1) {
    double b = 2.0 * (1.0 + x);
    double d = 1.0 / b;
    double h = d, delh = d, q1 = 0.0, q2 = 1.0;
    const double a1 = 0.25 - mu * mu;
    double q = a1, c = a1, a = -a1;
    double s = 1.0 + q * delh;
    for (double i = 2.0; i <= 500.0; i += 1.0) {
        a -= 2.0 * (i - 1.0);
        c = -a * c / i;
        const double qnew = (q1 - b * q2) / a;
        q1 = q2;
        q2 = qnew;
        q += c * qnew;
        b += 2.0;
        d = 1.0 / (b + a * d);
        delh = (b * d - 1.0) * delh;
        h += delh;
        const double dels = q * delh;
        s += dels;
        if (fabs(dels / s) < 1e-17) break;
    }
    h *= a1;
    kmu = sqrt(PI / (2.0 * x)) * exp(-x) / s;
    lmu1 = 0.5 * kmu * (mu + x + 0.5 - h);
}

// Below this x the recurrence runs on L_n = K_{mu+n} (x/2)^n (see k_small in src/bessel/cpu.rs).
constexpr double K_SCALED_BELOW = 1e-20;

// log K_v(x) and x K_{v+1}(x) / K_v(x) for rho < RHO_DEBYE: Temme's method at mu = v − round(v),
// forward recurrence.
__device__ void k_small(double v, double x, double &log_kv, double &x_ratio) {
    const double nl = floor(v + 0.5);
    const double mu = v - nl;
    double k0, l1;
    if (mu == -0.5) {
        // Half-integer orders (odd vMF dimensions): K_{-1/2} = K_{1/2} = sqrt(pi/2x) e^-x exactly.
        k0 = sqrt(0.5 * PI) / sqrt(x) * exp(-x);
        l1 = 0.5 * (x * k0);  // x * k0 first: x/2 underflows for the smallest x
    } else if (x <= TEMME_X_MAX) temme_series(mu, x, k0, l1);
    else if (x <= TRAPEZOID_X_MAX) k_trapezoid(mu, x, k0, l1);
    else steed_cf2(mu, x, k0, l1);
    double order = mu;
    double a = k0;
    if (x >= K_SCALED_BELOW) {
        double b = l1 * (2.0 / x), scale = 0.0;
        for (double i = 0.0; i < nl; i += 1.0) {
            const double next = (order + 1.0) * (2.0 / x) * b + a;
            a = b;
            b = next;
            order += 1.0;
            if (b > 1e280) {
                a *= 0x1p-900;
                b *= 0x1p-900;
                scale += 900.0 * LN_2;
            }
        }
        log_kv = log(a) + scale;
        x_ratio = x * (b / a);
    } else {
        const double q = 0.25 * x * x;
        double b = l1;
        for (double i = 0.0; i < nl; i += 1.0) {
            const double next = (order + 1.0) * b + q * a;
            a = b;
            b = next;
            order += 1.0;
        }
        log_kv = log(a) + nl * (LN_2 - log(x));
        x_ratio = 2.0 * (b / a);
    }
}

// R = I_{v+1}/I_v, 1 − R and dR/dx by the downward recurrence of the Gauss continued fraction
// (each with its own recurrence; see ratio_small in src/bessel/cpu.rs).
__device__ void ratio_small(double v, double x, double &r, double &one_minus, double &dr) {
    // Steps: see ratio_small in src/bessel/cpu.rs (error contraction bound below 1e-18/(1+x)).
    const double half_x = 0.5 * x, target = 1e-18 / (1.0 + x);
    int steps = 0;
    for (double bound = 1.0; bound > target && steps < 400;) {
        ++steps;
        bound *= fmin(half_x / (v + steps), 1.0);
    }
    const double a = v + steps + 1.0;
    const double root = sqrt(a * a + x * x);
    r = x / (a + root);
    double dm = 1.0 - r;
    dr = a / (root * (a + root));
    for (int j = steps - 1; j >= 0; --j) {
        const double m1 = v + j + 1.0;
        const double den = 2.0 * m1 + x * r;
        dm = (2.0 * m1 - x * dm) / den;
        dr = (2.0 * m1 - x * x * dr) / (den * den);
        r = x / den;
    }
    one_minus = dm;
}

__device__ double log_i_nonneg(double v, double x) {
    if (x == 0.0) return v == 0.0 ? 0.0 : -inf_d();
    if (isinf(x)) return inf_d();
    if (isinf(v)) return -inf_d();
    const double rho = rho_of(v, x);
    if (rho >= RHO_DEBYE) {
        const double p = 1.0 / rho, t = v * p;
        const DebyeSums d = debye_sums(p, t * t, 1.0, debye_terms(rho), false);
        return v_eta(v, x, rho) - 0.5 * (LN_2PI + log(rho)) + log1p(d.sum);
    }
    return log_i_small(v, x);
}

__device__ double log_k(double v, double x) {
    if (isnan(v) || isnan(x) || x < 0.0) return nan_d();
    v = fabs(v);
    if (x == 0.0 || isinf(v)) return inf_d();
    if (isinf(x)) return -inf_d();
    const double rho = rho_of(v, x);
    if (rho >= RHO_DEBYE) {
        const double p = 1.0 / rho, t = v * p;
        const DebyeSums d = debye_sums(p, t * t, -1.0, debye_terms(rho), false);
        return -v_eta(v, x, rho) + 0.5 * (LN_PI_OVER_2 - log(rho)) + log1p(d.sum);
    }
    double log_kv, x_ratio;
    k_small(v, x, log_kv, x_ratio);
    return log_kv;
}

// I_{-nu} = I_nu + (2/pi) sin(nu pi) K_nu, in log space; NaN where negative.
__device__ double log_i(double v, double x) {
    if (isnan(v) || isnan(x) || x < 0.0) return nan_d();
    if (v >= 0.0) return log_i_nonneg(v, x);
    const double nu = -v;
    if (nu == floor(nu)) return log_i_nonneg(nu, x);
    if (x == 0.0) return fmod(floor(nu), 2.0) == 0.0 ? inf_d() : nan_d();
    const double c = 2.0 / PI * sinpi(nu);
    const double li = log_i_nonneg(nu, x), lk = log_k(nu, x);
    const double other = log(fabs(c)) + lk;
    if (c > 0.0) {
        const double hi = fmax(li, other), lo = fmin(li, other);
        return hi + log1p(exp(lo - hi));
    }
    const double diff = other - li;
    if (diff < 0.0) return li + log1p(-exp(diff));
    return diff == 0.0 ? -inf_d() : nan_d();
}

__device__ void ratio_pair(double v, double x, double &r, double &one_minus) {
    if (isnan(v) || isnan(x) || x < 0.0 || v < 0.0) {
        r = one_minus = nan_d();
        return;
    }
    if (x == 0.0 || isinf(v)) {
        r = 0.0;
        one_minus = 1.0;
        return;
    }
    if (isinf(x)) {
        r = 1.0;
        one_minus = 0.0;
        return;
    }
    const double rho = rho_of(v, x);
    if (rho < RHO_DEBYE) {
        double dr;
        ratio_small(v, x, r, one_minus, dr);
        return;
    }
    const double p = 1.0 / rho, p2 = p * p;
    // One term more than the function needs: differentiation multiplies term k by about k.
    const DebyeSums d = debye_sums(p, v * p * (v * p), 1.0, min(debye_terms(rho) + 1, SK_DEBYE_TERMS), true);
    const double tail = 0.5 * x * p2 + x * p2 * d.w / (1.0 + d.sum);
    r = x / (rho + v) - tail;
    one_minus = (v + v * v / (rho + x)) / (rho + v) + tail;
}

__device__ double dlog_i(double v, double x) {
    if (x == 0.0 && v == 0.0) return 0.0;
    double r, om;
    ratio_pair(v, x, r, om);
    return v / x + r;
}

__device__ double dlog_k(double v, double x) {
    if (isnan(v) || isnan(x) || x < 0.0) return nan_d();
    v = fabs(v);
    if (x == 0.0) return -inf_d();
    if (isinf(x)) return -1.0;
    const double rho = rho_of(v, x);
    if (rho >= RHO_DEBYE) {
        const double p = 1.0 / rho, p2 = p * p;
        const DebyeSums d = debye_sums(p, v * p * (v * p), -1.0, min(debye_terms(rho) + 1, SK_DEBYE_TERMS), true);
        return -(rho / x) - 0.5 * x * p2 - x * p2 * d.w / (1.0 + d.sum);
    }
    double log_kv, x_ratio;
    k_small(v, x, log_kv, x_ratio);
    return (v - x_ratio) / x;  // finite down to the smallest x, where v/x alone overflows
}

__device__ double vmf_log_normalizer(double dim, double kappa) {
    if (isnan(dim) || isnan(kappa) || dim < 2.0 || kappa < 0.0) return nan_d();
    const double v = 0.5 * dim - 1.0;
    const double log_2pi_part = 0.5 * dim * LN_2PI;
    if (kappa == 0.0) return lgamma_acc(0.5 * dim) - LN_2 - 0.5 * dim * log(PI);
    if (isinf(kappa)) return -inf_d();
    if (rho_of(v, kappa) >= RHO_DEBYE) return v * log(kappa) - log_2pi_part - log_i_nonneg(v, kappa);
    return v * LN_2 - log_2pi_part - log(rgamma(v + 1.0)) - log1p(i_series_tail(v, kappa));
}

// dR/dx of the Debye form R = x/(rho+v) − x p²/2 − x p² W/S.
__device__ double ratio_derivative_debye(double v, double x, double rho) {
    const double p = 1.0 / rho;
    const double p2 = p * p;
    const double s = v * v * p2;
    double sum = 0.0, w = 0.0, g = 0.0, pk = 1.0;
#pragma unroll
    for (int k = 1; k <= SK_DEBYE_TERMS; ++k) {
        pk *= p;
        const double *c = SK_DEBYE_U + SK_DEBYE_OFFSET[k - 1];
        double u = 0.0, du = 0.0, ddu = 0.0;
#pragma unroll
        for (int j = k; j >= 0; --j) {
            ddu = fma(ddu, s, 2.0 * du);
            du = fma(du, s, u);
            u = fma(u, s, c[j]);
        }
        const double wk = k * u + 2.0 * s * du;
        sum += pk * u;
        w += pk * wk;
        g += pk * (k * wk + 2.0 * s * ((k + 2.0) * du + 2.0 * s * ddu));
    }
    const double big_s = 1.0 + sum;
    const double s_prime = -x * p2 * w;
    const double w_prime = -x * p2 * g;
    const double s_second = -p2 * w + 2.0 * x * x * p2 * p2 * w - x * p2 * w_prime;
    const double q = s_prime / big_s;
    return v * p / (rho + v) + 0.5 * (x - v) * (x + v) * p2 * p2 + s_second / big_s - q * q;
}

__device__ double vmf_mean_resultant_derivative(double dim, double kappa) {
    if (isnan(dim) || isnan(kappa) || dim < 2.0 || kappa < 0.0) return nan_d();
    const double v = 0.5 * dim - 1.0;
    if (kappa == 0.0) return 1.0 / dim;
    if (isinf(kappa)) return 0.0;
    const double rho = rho_of(v, kappa);
    if (rho < RHO_DEBYE) {
        double a, om, da;
        ratio_small(v, kappa, a, om, da);
        return da;
    }
    return ratio_derivative_debye(v, kappa, rho);
}

__device__ double vmf_kappa_mle(double rbar, double dim) {
    if (isnan(rbar) || isnan(dim) || rbar < 0.0 || dim < 2.0) return nan_d();
    if (rbar == 0.0) return 0.0;
    const double one_minus_rbar = 1.0 - rbar;
    if (one_minus_rbar <= 0.0) return inf_d();
    const double v = 0.5 * dim - 1.0;
    const double denom = one_minus_rbar * (1.0 + rbar);
    double lo = fmax(rbar * (dim - 2.0) / denom, 0.0);
    double hi = rbar * dim / denom;
    double kappa = rbar * (dim - rbar * rbar) / denom;
    if (!(kappa > lo && kappa < hi)) kappa = 0.5 * (lo + hi);
    for (int it = 0; it < 100; ++it) {
        double a, om;
        ratio_pair(v, kappa, a, om);
        const double f = rbar >= 0.5 ? one_minus_rbar - om : a - rbar;
        if (f == 0.0) return kappa;
        if (f > 0.0) hi = fmin(hi, kappa);
        else lo = fmax(lo, kappa);
        const double deriv = vmf_mean_resultant_derivative(dim, kappa);
        double next = kappa - f / deriv;
        if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
        if (fabs(next - kappa) <= 4.0 * DBL_EPSILON * kappa || hi - lo <= 4.0 * DBL_EPSILON * kappa) {
            return next;
        }
        kappa = next;
    }
    return kappa;
}

template <uint32_t F>
__device__ __forceinline__ double evaluate(double order, double x) {
    if constexpr (F == SK_BESSEL_LOG_I) {
        return log_i(order, x);
    } else if constexpr (F == SK_BESSEL_LOG_K) {
        return log_k(order, x);
    } else if constexpr (F == SK_BESSEL_DLOG_I) {
        return dlog_i(order, x);
    } else if constexpr (F == SK_BESSEL_DLOG_K) {
        return dlog_k(order, x);
    } else if constexpr (F == SK_BESSEL_RATIO_I || F == SK_BESSEL_ONE_MINUS_RATIO_I) {
        double r, om;
        ratio_pair(order, x, r, om);
        return F == SK_BESSEL_RATIO_I ? r : om;
    } else if constexpr (F == SK_BESSEL_VMF_LOG_NORMALIZER) {
        return vmf_log_normalizer(order, x);
    } else if constexpr (F == SK_BESSEL_VMF_MEAN_RESULTANT ||
                         F == SK_BESSEL_VMF_ONE_MINUS_MEAN_RESULTANT) {
        if (!(order >= 2.0)) return nan_d();
        double r, om;
        ratio_pair(0.5 * order - 1.0, x, r, om);
        return F == SK_BESSEL_VMF_MEAN_RESULTANT ? r : om;
    } else if constexpr (F == SK_BESSEL_VMF_MEAN_RESULTANT_DERIVATIVE) {
        return vmf_mean_resultant_derivative(order, x);
    } else {
        static_assert(F == SK_BESSEL_VMF_KAPPA_MLE, "a function code of params.h");
        return vmf_kappa_mle(x, order);
    }
}

// Element-wise, grid-stride: loads of x (and orders) coalesce; per-element branches diverge
// inside a warp on mixed batches, each branch's cost bounded (see the bench's divergence cases).
template <class T, uint32_t F>
__device__ void elementwise(const sk_bessel_params &p) {
    const T *x = static_cast<const T *>(p.x);
    const T *orders = static_cast<const T *>(p.orders);
    T *out = static_cast<T *>(p.out);
    const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
    for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n; i += stride) {
        const double order = orders ? static_cast<double>(orders[i]) : p.order;
        out[i] = static_cast<T>(evaluate<F>(order, static_cast<double>(x[i])));
    }
}

// ---- f32 evaluation of log I and log K ------------------------------------------------------------
// The f32 kernels of log I and log K compute in f32 wherever f32 rounding meets their target,
// |err| / max(1, |exact|) <= 1e-6, with margin, and in f64 elsewhere. The target holds only
// 16 units of f32 rounding (u = 2^-24), so f32 is used where no cancellation amplifies them:
// - Debye's expansion from rho >= 12, with 8 terms (truncation below 1e-8; the f32 tables of
//   kernels/bessel_consts.cuh). Outside the band 0.1 v <= x <= 3 v the terms of
//   log I = vη − ½ log(2πρ) + log1p(S) and log K = −vη + ½ log(π/2ρ) + log1p(S) do not cancel:
//   below the band vη <= −2v (asinh(v/x) >= 3) and ½ log ρ is logarithmic in v; above it
//   vη >= 0.9ρ while ½ log(2πρ) <= 0.2 vη from rho = 12 on. vη = ρ − v asinh(v/x) itself loses
//   at most a factor 2 there ((ρ + v asinh) / |vη| is 2.0 at x = 0.1 v and 1.25 at x = 3 v), so
//   the f32 value is within about 6u of max(1, |log|). Inside the band (which holds the window around z₀
//   where vη's two terms cancel, and the curve log I = 0 at large v, where vη and ½ log ρ are
//   both large) vη and log ρ come from f64: two f64 logs for the few elements there.
// - log K below rho = 12 (v, x < 12): Temme's series for x <= 1/2 (where its leading
//   −γ + log(2/x) cancels by at most 2.4x) and the trapezoidal rule, step 1/4, above (error
//   below e^-27 up to x = 12; all terms positive), then forward recurrence on the dominant
//   solution (at most 12 steps of positive terms), scaled by (x/2)^n for x <= 1/2 so that
//   nothing overflows down to x = 1e-30.
// - log I below rho = 12: the power series, in f32 for x <= 2 (where its terms hardly cancel,
//   see log_i_series32) and in f64 above (where the prefactor (x/2)^v / Γ(v+1) and the series
//   cancel to log I = 0 at moderate v: f32 would cost up to 25u there).
// - Everything outside the box 1e-30 < x < 1e18, 0 <= v < 1e18, v < 1e36 x (where f32
//   intermediates would overflow), negative orders of I, special values, and a broadcast order
//   that f32 does not hold exactly: the f64 functions above.
constexpr float RHO_DEBYE32 = 12.0f;
constexpr float TEMME32_X_MAX = 0.5f;
constexpr float LN_2_F = 0.693147180559945309f;
constexpr float LN_2PI_F = 1.83787706640934548f;
constexpr float LN_PI_OVER_2_F = 0.451582705289454865f;
constexpr float PI_F = 3.14159265358979324f;
constexpr float PI_OVER_2_F = 1.57079632679489662f;

__device__ __forceinline__ bool in_f32_box(float v, float x) {
    return x > 1e-30f && x < 1e18f && v >= 0.0f && v < 1e18f && v < 1e36f * x;
}

// The band 0.1 v <= x <= 3 v of Debye's region where vη and log ρ come from f64 (see above).
__device__ __forceinline__ bool in_f64_band(float v, float x) { return x >= 0.1f * v && x <= 3.0f * v; }

// Debye terms needed at rho >= RHO_DEBYE32 for f32 (8 at the region boundary).
__device__ __forceinline__ int debye32_terms(float rho) {
    int k = SK_DEBYE32_TERMS;
#pragma unroll
    for (int i = SK_DEBYE32_TERMS - 2; i >= 0; --i) {
        if (rho >= SK_DEBYE32_RHO_MIN[i]) k = i + 2;
    }
    return k;
}

// S = Σ_{k<=terms} (σp)^k U_k(s) in f32.
__device__ float debye_sum32(float p, float s, float sigma, int terms) {
    const float sp = sigma * p;
    float sum = 0.0f;
#pragma unroll
    for (int k = SK_DEBYE32_TERMS; k >= 1; --k) {
        if (k > terms) continue;
        const float *c = SK_DEBYE32_U + SK_DEBYE_OFFSET[k - 1];
        float u = 0.0f;
#pragma unroll
        for (int j = k; j >= 0; --j) u = fmaf(u, s, c[j]);
        sum = (sum + u) * sp;
    }
    return sum;
}

// log I (is_i) or log K by Debye's expansion, rho >= RHO_DEBYE32, inside the f32 box.
__device__ float log_debye32(float v, float x, float rho, bool is_i) {
    const float p = 1.0f / rho, t = v * p;
    const float log1p_s = log1pf(debye_sum32(p, t * t, is_i ? 1.0f : -1.0f, debye32_terms(rho)));
    if (in_f64_band(v, x)) {
        const double vd = v, xd = x;
        const double rhod = rho_of(vd, xd);
        const double ve = v_eta(vd, xd, rhod);
        const double r = is_i ? ve - 0.5 * (LN_2PI + log(rhod)) : -ve + 0.5 * (LN_PI_OVER_2 - log(rhod));
        return static_cast<float>(r + static_cast<double>(log1p_s));
    }
    // asinh(v/x): above the band as log1p without cancellation, below it as
    // log((v + rho)/x) = log(v/x) + log(1 + rho/v), v/x < 1e36 in the box.
    const float asinh_q = x > v ? log1pf((v + v * v / (rho + x)) / x) : logf(v / x) + logf(1.0f + rho / v);
    const float v_eta32 = fmaf(-v, asinh_q, rho);
    const float log_rho = logf(rho);
    return is_i ? (v_eta32 - 0.5f * (LN_2PI_F + log_rho)) + log1p_s
                : (0.5f * (LN_PI_OVER_2_F - log_rho) - v_eta32) + log1p_s;
}

// Temme's series in f32 (x <= TEMME32_X_MAX) for K_mu and (x/2) K_{mu+1}, |mu| <= 1/2.
__device__ void temme_series32(float mu, float x, float &kmu, float &lmu1) {
    const float fact = fabsf(mu) < 1e-4f ? 1.0f : PI_F * mu / sinpif(mu);  // 1 + (πμ)²/6 + …
    const float d = LN_2_F - logf(x);
    const float e = mu * d;
    const float ee = expf(e);
    float cosh_e, fact2;  // cosh(e) and sinh(e)/e
    if (fabsf(e) < 1.0f) {
        // Series (truncation below 2e-10): ee − 1/ee would cancel by up to 2x, which with
        // the roundings of ee and 1/ee was the largest f32 error of log K here (4.5e-7 against
        // 3.4e-7 with the series, in a numpy f32 replica over 3000 random (μ, x)).
        // (Constant reciprocals: products, not divisions; their rounding enters terms <= 1/2.)
        const float e2 = e * e;
        cosh_e = 1.0f + e2 * (1.0f / 2.0f) * (1.0f + e2 * (1.0f / 12.0f) * (1.0f + e2 * (1.0f / 30.0f) *
                 (1.0f + e2 * (1.0f / 56.0f) * (1.0f + e2 * (1.0f / 90.0f) * (1.0f + e2 * (1.0f / 132.0f))))));
        fact2 = 1.0f + e2 * (1.0f / 6.0f) * (1.0f + e2 * (1.0f / 20.0f) * (1.0f + e2 * (1.0f / 42.0f) *
                (1.0f + e2 * (1.0f / 72.0f) * (1.0f + e2 * (1.0f / 110.0f) * (1.0f + e2 * (1.0f / 156.0f))))));
    } else {
        cosh_e = 0.5f * (ee + 1.0f / ee);
        fact2 = 0.5f * (ee - 1.0f / ee) / e;
    }
    float even = 0.0f, odd = 0.0f;
#pragma unroll
    for (int k = SK_RGAMMA32_TERMS - 1; k >= 0; --k) {
        if (k % 2 == 0) even = fmaf(even, mu * mu, SK_RGAMMA32_TAYLOR[k]);
        else odd = fmaf(odd, mu * mu, SK_RGAMMA32_TAYLOR[k]);
    }
    const float gam1 = -odd, gam2 = even;
    const float gampl = fmaf(mu, odd, even), gammi = fmaf(-mu, odd, even);  // 1/Γ(1 ± μ)
    float ff = fact * fmaf(gam2 * fact2, d, gam1 * cosh_e);
    float sum = ff;
    float p = 0.5f * ee / gampl;
    float q = 0.5f / (ee * gammi);
    float c = 1.0f;
    const float dd = 0.25f * x * x;
    float sum1 = p;
    // __fdividef (2 ulp, no IEEE division's slow path): every divisor is in [1/2, 1600], and
    // these terms are at most dd = x²/4 <= 1/16 of the sum, so 2 ulp in them cost < 1/8 ulp.
    for (float i = 1.0f; i <= 40.0f; i += 1.0f) {
        ff = __fdividef(fmaf(i, ff, p + q), i * i - mu * mu);
        c *= __fdividef(dd, i);
        p = __fdividef(p, i - mu);
        q = __fdividef(q, i + mu);
        const float del = c * ff;
        sum += del;
        sum1 += c * (p - i * ff);
        if (fabsf(del) < fabsf(sum) * 1e-8f) break;
    }
    kmu = sum;
    lmu1 = sum1;
}

// K_mu(x) and (x/2) K_{mu+1}(x), |mu| <= 1/2, TEMME32_X_MAX < x < RHO_DEBYE32: the trapezoidal
// rule with step 1/4 on e^x K_nu(x) = int_0^inf exp(-x (cosh t - 1)) cosh(nu t) dt; it stops
// once a node's terms are below e^-20 (before t = 5 for x > 1/2).
__device__ void k_trapezoid32(float mu, float x, float &kmu, float &lmu1) {
    float s0 = 0.5f, s1 = 0.5f;
    const float grow = fabsf(mu) + 1.0f;
    for (int k = 0; k < SK_TRAPEZOID32_NODES; ++k) {
        const float t = 0.25f * static_cast<float>(k + 1);
        const float ex = -x * SK_TRAPEZOID32_COSH_M1[k];
        if (fmaf(grow, t, ex) < -20.0f) break;
        const float a = expf(fmaf(mu, t, ex)), b = expf(fmaf(-mu, t, ex));
        s0 += 0.5f * (a + b);
        s1 += 0.5f * fmaf(a, SK_TRAPEZOID32_EXP[k], b * SK_TRAPEZOID32_EXP_NEG[k]);
    }
    const float scale = 0.25f * expf(-x);
    kmu = s0 * scale;
    lmu1 = 0.5f * x * (s1 * scale);
}

// log K_v(x) for rho < RHO_DEBYE32 inside the box: K at mu = v − round(v) (|mu| <= 1/2), then
// forward recurrence to v (at most 12 steps).
__device__ float log_k_small32(float v, float x) {
    const float nl = floorf(v + 0.5f);
    const float mu = v - nl;  // exact: |v − nl| <= 1/2 and v < 12
    float k0, l1;
    if (mu == -0.5f) {
        k0 = sqrtf(PI_OVER_2_F / x) * expf(-x);  // K_{±1/2}, exactly
        l1 = 0.5f * (x * k0);
    } else if (x <= TEMME32_X_MAX) {
        temme_series32(mu, x, k0, l1);
    } else {
        k_trapezoid32(mu, x, k0, l1);
    }
    float order = mu, a = k0;
    if (x <= TEMME32_X_MAX) {
        // L_n = K_{mu+n} (x/2)^n: L_{n+1} = (mu+n) L_n + (x/2)² L_{n-1}, L_0 = k0, L_1 = l1.
        const float q = 0.25f * x * x;
        float b = l1;
        for (float i = 0.0f; i < nl; i += 1.0f) {
            const float next = fmaf(order + 1.0f, b, q * a);
            a = b;
            b = next;
            order += 1.0f;
        }
        return logf(a) + nl * (LN_2_F - logf(x));
    }
    const float two_over_x = 2.0f / x;
    float b = l1 * two_over_x;
    for (float i = 0.0f; i < nl; i += 1.0f) {
        const float next = fmaf((order + 1.0f) * two_over_x, b, a);
        a = b;
        b = next;
        order += 1.0f;
    }
    return logf(a);
}

// 1/Γ(1+v), 0 <= v < 12, in f32: 1/Γ(1+f) (Taylor, |f| <= 1/2) over (1+f)…(n+f), v = n + f.
__device__ float rgamma1p32(float v) {
    const float n = floorf(v + 0.5f);
    const float f = v - n;  // exact
    float poly = 0.0f;
#pragma unroll
    for (int k = SK_RGAMMA32_TERMS - 1; k >= 0; --k) poly = fmaf(poly, f, SK_RGAMMA32_TAYLOR[k]);
    float prod = 1.0f;
    for (float k = 1.0f; k <= n; k += 1.0f) prod *= k + f;
    return poly / prod;
}

// log I_v(x) for x <= 2 (rho < RHO_DEBYE32) in f32: v log(x/2) − log Γ(v+1) + log1p(tail), tail
// the power series less its first term (positive terms, at most 9 of them). The first two terms
// are <= 0 but for −log Γ(v+1) <= 0.13 at v < 1, and log1p(tail) <= 0.82: the sum loses at most
// a factor 2.7 (near v = x = 2), about 6u of max(1, |log I|) in all.
__device__ float log_i_series32(float v, float x) {
    const float q = 0.25f * x * x;
    float term = 1.0f, tail = 0.0f;
    for (float k = 1.0f; k <= 30.0f; k += 1.0f) {
        term *= q / (k * (k + v));
        tail += term;
        if (term <= 1e-8f * (1.0f + tail)) break;
    }
    const float c = log1pf(tail);
    if (v == 0.0f) return c;
    return fmaf(v, logf(0.5f * x), logf(rgamma1p32(v))) + c;
}

// log I_v(x) in the f32 scheme; false (nothing written) where the f64 function must answer.
__device__ bool log_i_f32(float v, float x, float &out) {
    if (!in_f32_box(v, x)) return false;
    const float rho = sqrtf(fmaf(v, v, x * x));
    if (rho >= RHO_DEBYE32) out = log_debye32(v, x, rho, true);
    else if (x <= 2.0f) out = log_i_series32(v, x);
    else out = static_cast<float>(log_i_small(static_cast<double>(v), static_cast<double>(x)));
    return true;
}

// log K_v(x) in the f32 scheme; false (nothing written) where the f64 function must answer.
__device__ bool log_k_f32(float v, float x, float &out) {
    v = fabsf(v);  // K_{-v} = K_v
    if (!in_f32_box(v, x)) return false;
    const float rho = sqrtf(fmaf(v, v, x * x));
    out = rho >= RHO_DEBYE32 ? log_debye32(v, x, rho, false) : log_k_small32(v, x);
    return true;
}

// The region of an f32 log I / log K element for the warp sort (keys as region_key's; 7: the f64
// functions).
template <uint32_t F>
__device__ __forceinline__ int region_key32(float order, float x) {
    if (isnan(order) || isnan(x) || x <= 0.0f || isinf(x) || isinf(order)) return 0;
    const float v = F == SK_BESSEL_LOG_K ? fabsf(order) : order;
    if (!in_f32_box(v, x)) return 7;
    const float rho = sqrtf(fmaf(v, v, x * x));
    if (rho >= RHO_DEBYE32) return in_f64_band(v, x) ? 2 : 1;
    if constexpr (F == SK_BESSEL_LOG_K) {
        if (v - floorf(v + 0.5f) == -0.5f) return 3;
        if (x <= TEMME32_X_MAX) return 4;
        return x <= 3.0f ? 5 : 6;
    } else {
        return x <= 2.0f ? 4 : (x <= 6.0f ? 5 : 6);
    }
}

// Whether the f32 kernel of F takes the scheme above.
template <class T, uint32_t F>
__device__ __forceinline__ constexpr bool f32_scheme() {
    return std::is_same<T, float>::value && (F == SK_BESSEL_LOG_I || F == SK_BESSEL_LOG_K);
}

// ---- region-sorted evaluation (every function but κ̂) ---------------------------------------------
// On a batch mixed over the (v, x) plane nearly every warp holds elements of several regions, and
// a warp runs every branch its lanes take: on an H200, sorting the inputs by region made log I
// and log K 3-3.8x faster. So each warp takes SK_BESSEL_WARP_BATCH consecutive elements, sorts
// their offsets by a small region key (a counting sort by ballots, into shared memory), and
// evaluates them in that order: lane l of round r takes the (32 r + l)-th, so every round but
// those at the boundaries between keys is one region. The values are those of the plain loop
// (the same function of the same element); only the order of evaluation changes.
constexpr uint32_t REGION_KEYS = 8;
constexpr int KEY_BITS = 3;

// Debye's expansion, by the number of terms it sums (long sums at its boundary, few far out).
__device__ __forceinline__ int debye_key(double rho) {
    const int terms = debye_terms(rho);
    return terms <= 6 ? 1 : (terms <= 9 ? 2 : 3);
}

// The branch of the K functions (log K, d/dx log K) at order v >= 0 and x > 0.
__device__ __forceinline__ int k_region_key(double v, double x) {
    const double rho = rho_of(v, x);
    if (rho >= RHO_DEBYE) return debye_key(rho);
    if (v - floor(v + 0.5) == -0.5) return 4;  // half-integer order: closed form
    if (x <= TEMME_X_MAX) return 5;
    return x <= TRAPEZOID_X_MAX ? 6 : 7;
}

// The branch of the I functions (log I, the ratio and d/dx log I; the vMF helpers at v = d/2 - 1)
// at order v >= 0 and x > 0: the power series or continued fraction below Debye's region, whose
// length grows with x.
__device__ __forceinline__ int i_region_key(double v, double x) {
    const double rho = rho_of(v, x);
    if (rho >= RHO_DEBYE) return debye_key(rho);
    return x <= 2.0 ? 4 : (x <= 12.0 ? 5 : 6);
}

// The region of element (order, x) of function F, in [0, REGION_KEYS): elements with one key
// take the same branches with loops of similar length; 0 for the special values, which return
// at once. It orders the evaluation only: a poor key costs time, never a different value.
template <uint32_t F>
__device__ __forceinline__ int region_key(double order, double x) {
    if (isnan(order) || isnan(x) || x <= 0.0 || isinf(x) || isinf(order)) return 0;
    if constexpr (F == SK_BESSEL_LOG_K || F == SK_BESSEL_DLOG_K) {
        return k_region_key(fabs(order), x);
    } else if constexpr (F == SK_BESSEL_LOG_I) {
        if (order < 0.0 && -order != floor(-order)) return 7;  // reflection: log I and log K
        return i_region_key(fabs(order), x);
    } else if constexpr (F == SK_BESSEL_DLOG_I || F == SK_BESSEL_RATIO_I ||
                         F == SK_BESSEL_ONE_MINUS_RATIO_I) {
        return order < 0.0 ? 0 : i_region_key(order, x);
    } else {
        static_assert(F == SK_BESSEL_VMF_LOG_NORMALIZER || F == SK_BESSEL_VMF_MEAN_RESULTANT ||
                          F == SK_BESSEL_VMF_ONE_MINUS_MEAN_RESULTANT ||
                          F == SK_BESSEL_VMF_MEAN_RESULTANT_DERIVATIVE,
                      "a function with a region key");
        return order < 2.0 ? 0 : i_region_key(0.5 * order - 1.0, x);
    }
}

// Whether f32 holds the order exactly (a broadcast order is an f64), and the f32 order.
__device__ __forceinline__ bool order_in_f32(double order, float &order32) {
    order32 = static_cast<float>(order);
    return static_cast<double>(order32) == order;
}

// The key and the value of element (order, x) of the T kernel of F: the f32 scheme where it
// applies (an order f32 holds exactly), else the f64 functions.
template <class T, uint32_t F>
__device__ __forceinline__ int region_key_as(double order, T x) {
    if constexpr (f32_scheme<T, F>()) {
        float order32;
        return order_in_f32(order, order32) ? region_key32<F>(order32, x) : 7;
    } else {
        return region_key<F>(order, static_cast<double>(x));
    }
}

template <class T, uint32_t F>
__device__ __forceinline__ T evaluate_as(double order, T x) {
    if constexpr (f32_scheme<T, F>()) {
        float order32, r;
        if (order_in_f32(order, order32) &&
            (F == SK_BESSEL_LOG_I ? log_i_f32(order32, x, r) : log_k_f32(order32, x, r))) {
            return r;
        }
    }
    return static_cast<T>(evaluate<F>(order, static_cast<double>(x)));
}

template <class T, uint32_t F>
__device__ void elementwise_sorted(const sk_bessel_params &p) {
    constexpr int BATCH = static_cast<int>(SK_BESSEL_WARP_BATCH);
    constexpr int ROUNDS = BATCH / 32;
    constexpr int WARPS = static_cast<int>(SK_BESSEL_THREADS) / 32;
    static_assert(BATCH % 32 == 0 && BATCH <= 65536, "offsets fit in 16 bits");
    static_assert(ROUNDS * KEY_BITS <= 32 && (1u << KEY_BITS) == REGION_KEYS, "keys fit a word");
    SK_EXPECT(blockDim.x == SK_BESSEL_THREADS);
    __shared__ uint16_t sorted[WARPS][BATCH];
    const T *x = static_cast<const T *>(p.x);
    const T *orders = static_cast<const T *>(p.orders);
    T *out = static_cast<T *>(p.out);
    const int lane = static_cast<int>(threadIdx.x) % 32;
    const int warp = static_cast<int>(threadIdx.x) / 32;
    const unsigned below = (1u << lane) - 1u;  // lanes before this one
    uint16_t *mine = sorted[warp];
    const uint64_t warps = static_cast<uint64_t>(gridDim.x) * WARPS;
    auto order_at = [&](uint64_t i) { return orders ? static_cast<double>(orders[i]) : p.order; };
#pragma unroll 1
    for (uint64_t base = (static_cast<uint64_t>(blockIdx.x) * WARPS + warp) * BATCH; base < p.n;
         base += warps * BATCH) {
        // The lane's keys, 3 bits each (one register for the batch).
        uint32_t keys = 0;
#pragma unroll
        for (int r = 0; r < ROUNDS; ++r) {
            const uint64_t i = base + static_cast<uint64_t>(r) * 32 + lane;
            const int key = i < p.n ? region_key_as<T, F>(order_at(i), x[i]) : 0;
            keys |= static_cast<uint32_t>(key) << (KEY_BITS * r);
        }
        // Counting sort: offsets by key, then by position (stable).
        int filled = 0;
#pragma unroll 1
        for (uint32_t k = 0; k < REGION_KEYS; ++k) {
#pragma unroll
            for (int r = 0; r < ROUNDS; ++r) {
                const bool mine_k = ((keys >> (KEY_BITS * r)) & (REGION_KEYS - 1u)) == k;
                const unsigned hit = __ballot_sync(0xffffffffu, mine_k);
                if (mine_k) mine[filled + __popc(hit & below)] = static_cast<uint16_t>(r * 32 + lane);
                filled += __popc(hit);
            }
        }
        __syncwarp();
#pragma unroll 1
        for (int r = 0; r < ROUNDS; ++r) {
            const uint64_t i = base + mine[r * 32 + lane];
            if (i < p.n) out[i] = evaluate_as<T, F>(order_at(i), x[i]);
        }
        __syncwarp();  // every lane has read its offsets before the next batch rewrites them
    }
}

}  // namespace bessel
}  // namespace sk

#define SK_BESSEL_KERNEL_WITH(name, code, loop, blocks)                                        \
    SK_KERNEL(sk_bessel_##name##_f64, sk_bessel_params, SK_BESSEL_THREADS, blocks,           \
              (sk::bessel::loop<double, code>(p)))                                             \
    SK_KERNEL(sk_bessel_##name##_f32, sk_bessel_params, SK_BESSEL_THREADS, blocks,           \
              (sk::bessel::loop<float, code>(p)))
#define SK_BESSEL_KERNEL(name, code) SK_BESSEL_KERNEL_WITH(name, code, elementwise, 1)

// Blocks per SM: the sorted loop's state (batch base, offsets) costs 6-10 registers; these budgets
// keep the plain loop's occupancy where ptxas fits them without spilling (log K: 4 blocks, not
// 3 at 66 registers) and lose one block elsewhere (ratio: 5, was 6; d/dx log K: 3, was 4, as it
// spills at 64). κ̂ (a bracketed Newton iteration, similar work everywhere) is not sorted.
SK_BESSEL_KERNEL_WITH(log_i, SK_BESSEL_LOG_I, elementwise_sorted, 3)
SK_BESSEL_KERNEL_WITH(log_k, SK_BESSEL_LOG_K, elementwise_sorted, 4)
SK_BESSEL_KERNEL_WITH(dlog_i, SK_BESSEL_DLOG_I, elementwise_sorted, 5)
SK_BESSEL_KERNEL_WITH(dlog_k, SK_BESSEL_DLOG_K, elementwise_sorted, 3)
SK_BESSEL_KERNEL_WITH(ratio_i, SK_BESSEL_RATIO_I, elementwise_sorted, 5)
SK_BESSEL_KERNEL_WITH(one_minus_ratio_i, SK_BESSEL_ONE_MINUS_RATIO_I, elementwise_sorted, 5)
SK_BESSEL_KERNEL_WITH(vmf_log_normalizer, SK_BESSEL_VMF_LOG_NORMALIZER, elementwise_sorted, 5)
SK_BESSEL_KERNEL_WITH(vmf_mean_resultant, SK_BESSEL_VMF_MEAN_RESULTANT, elementwise_sorted, 5)
SK_BESSEL_KERNEL_WITH(vmf_one_minus_mean_resultant, SK_BESSEL_VMF_ONE_MINUS_MEAN_RESULTANT,
                      elementwise_sorted, 5)
SK_BESSEL_KERNEL_WITH(vmf_mean_resultant_derivative, SK_BESSEL_VMF_MEAN_RESULTANT_DERIVATIVE,
                      elementwise_sorted, 2)
SK_BESSEL_KERNEL(vmf_kappa_mle, SK_BESSEL_VMF_KAPPA_MLE)
