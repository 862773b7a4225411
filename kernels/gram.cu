// Gram iteration on many dense matrices in one launch: per matrix, an upper bound on the
// spectral norm sigma_1 (the Schatten-2^(T+1) norm) and an a-posteriori lower bound, with every
// Gram power kept in shared memory for all T steps (one global read of the matrix, twice: once
// for its largest entry). The math and its error analysis are in src/gram/mod.rs; the f64 CPU
// reference of the same algorithm is src/gram/cpu.rs.
//
// Per matrix W (rows x cols), X = W or W^T so that X is l x k with k = min(rows, cols):
//   A = X / 2^s, 2^s the power of two at or below max|w|    (exact; any finite scale is safe)
//   M_1 = A^T A
//   M_{t+1} = fl(M_t M_t) 2^(-2 e_t), 2^(2 e_t) ~ ||M_t||_F^2  (exact rescaling by powers of two)
// so every M_t is O(1) and M_t = (A^T A)^(2^(t-1)) up to an exact power of two. Every M_t is
// stored exactly symmetric (the upper triangle is computed, the lower mirrored), so
// ||M_t||_2^2 = ||M_t^2||_2, which gives the bound by a backward recursion (finish()).
#include "common.cuh"

namespace sk {
namespace gram {

// ---- storage and arithmetic types --------------------------------------------------------------
template <class T>
__device__ __forceinline__ double widen(T v) {
    return static_cast<double>(Elem<T>::to_f32(v));
}
template <>
__device__ __forceinline__ double widen<double>(double v) {
    return v;
}

// 2^e in the arithmetic type, for |e| within its normal range (callers keep it there).
template <class R>
__device__ __forceinline__ R pow2(int e) {
    return static_cast<R>(ldexp(1.0, e));
}

// ---- teams: one warp (small matrices) or one block (larger ones) ----------------------------
template <int NT>
struct GramTeam {
    static_assert(NT == 32 || NT == static_cast<int>(SK_GRAM_THREADS), "a warp or the block");
    int rank;  // thread index within the team
    int slot;  // team index within the block
    int parity = 0;

    __device__ GramTeam() {
        rank = static_cast<int>(threadIdx.x) % NT;
        slot = static_cast<int>(threadIdx.x) / NT;
    }
    __device__ __forceinline__ void sync() {
        if constexpr (NT == 32) {
            __syncwarp();
        } else {
            __syncthreads();
        }
    }
    // Every thread of the team gets the same result (butterfly, then the warps' partials in
    // order). Block teams must call it uniformly: it contains a barrier.
    template <class Op>
    __device__ double reduce(double v, Op op) {
#pragma unroll
        for (int m = 16; m >= 1; m /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, m));
        if constexpr (NT == 32) {
            return v;
        } else {
            __shared__ double scratch[2][NT / 32];
            double *s = scratch[parity];
            parity ^= 1;
            if (rank % 32 == 0) s[rank / 32] = v;
            __syncthreads();
            double t = s[0];
#pragma unroll 1
            for (int i = 1; i < NT / 32; ++i) t = op(t, s[i]);
            return t;
        }
    }
    __device__ double sum(double v) {
        return reduce(v, [](double a, double b) { return a + b; });
    }
    __device__ double max(double v) {
        return reduce(v, [](double a, double b) { return fmax(a, b); });
    }
};

// ---- upper-triangle tiles ---------------------------------------------------------------------
// The Gram of a k_pad x k_pad symmetric matrix is computed tile by tile: TS x TS tiles (bi, bj),
// bi <= bj, numbered row by row; thread `rank` owns tiles rank, rank + NT, ... (at most MAXT).
template <int TS, int MAXT>
struct Tiles {
    int bi[MAXT], bj[MAXT];
    bool live[MAXT];

    __device__ Tiles(int rank, int nt, int nb) {
        const int total = nb * (nb + 1) / 2;
#pragma unroll
        for (int t = 0; t < MAXT; ++t) {
            int q = rank + t * nt;
            live[t] = q < total;
            int r = 0;
            if (live[t]) {
                while (q >= nb - r) {  // row r holds nb - r tiles
                    q -= nb - r;
                    ++r;
                }
            }
            bi[t] = r;
            bj[t] = r + q;
        }
    }
};

// acc[t] += sum over rows l < rows of x[l][i] x[l][j] for the owned tiles (i, j): the Gram of
// the columns of a rows x k_pad panel with row stride ld.
template <class R, int TS, int MAXT>
__device__ __forceinline__ void gram_accumulate(const R *x, int ld, int rows,
                                                const Tiles<TS, MAXT> &tiles,
                                                R (&acc)[MAXT][TS][TS]) {
#pragma unroll
    for (int t = 0; t < MAXT; ++t) {
        if (!tiles.live[t]) continue;
        const R *ci = x + tiles.bi[t] * TS;
        const R *cj = x + tiles.bj[t] * TS;
#pragma unroll 2
        for (int l = 0; l < rows; ++l) {
            R a[TS], b[TS];
#pragma unroll
            for (int u = 0; u < TS; ++u) {
                a[u] = ci[l * ld + u];
                b[u] = cj[l * ld + u];
            }
#pragma unroll
            for (int u = 0; u < TS; ++u)
#pragma unroll
                for (int v = 0; v < TS; ++v) acc[t][u][v] = fma(a[u], b[v], acc[t][u][v]);
        }
    }
}

// Writes the owned tiles (times `scale`, an exact power of two) into the k_pad x k_pad matrix m
// and mirrors the off-diagonal tiles, so m is exactly symmetric.
template <class R, int TS, int MAXT>
__device__ __forceinline__ void store_tiles(R *m, int ld, const Tiles<TS, MAXT> &tiles,
                                            const R (&acc)[MAXT][TS][TS], R scale) {
#pragma unroll
    for (int t = 0; t < MAXT; ++t) {
        if (!tiles.live[t]) continue;
        const int i0 = tiles.bi[t] * TS, j0 = tiles.bj[t] * TS;
#pragma unroll
        for (int u = 0; u < TS; ++u)
#pragma unroll
            for (int v = 0; v < TS; ++v) {
                const R val = acc[t][u][v] * scale;
                m[(i0 + u) * ld + j0 + v] = val;
                if (i0 != j0) m[(j0 + v) * ld + i0 + u] = val;
            }
    }
}

template <int MAXT, int TS, class R>
__device__ __forceinline__ void zero(R (&acc)[MAXT][TS][TS]) {
#pragma unroll
    for (int t = 0; t < MAXT; ++t)
#pragma unroll
        for (int u = 0; u < TS; ++u)
#pragma unroll
            for (int v = 0; v < TS; ++v) acc[t][u][v] = R(0);
}

// ---- the certified recursion ------------------------------------------------------------------
// Rounding-error analysis in f64 (u = 2^-53), with gamma(n) = n u / (1 - n u) bounding the
// relative error of a sum of n products (Higham, Thm 3.5; also with fma):
//   ||A^T A||_2  <= ||M_1||_2 + gamma(l) ||A||_F^2,
//   ||M_t||_2^2 = ||M_t^2||_2 <= 2^(2 e_t) ||M_{t+1}||_2 + gamma(k) ||M_t||_F^2,
//   ||M_T||_2   <= ||M_T||_F,
// each computed upward: up(x) >= x for any correctly rounded op whose result is x (a relative
// error <= u; up adds 8 u). Underflow adds at most 2^-1074 per product; an absolute 2^-900 in
// every error term covers it for any k, l < 2^40 (every M_t has ||M_t||_2 >= 2^-70 or so).
constexpr double U64 = 0x1p-53;
constexpr double TINY = 0x1p-900;

__device__ __forceinline__ double up(double x) { return x * (1.0 + 0x1p-50); }
__device__ __forceinline__ double gamma_bound(double n) {
    return up(n * U64 / (1.0 - n * U64));
}

// Per-team record of the steps: S_t = computed ||M_t||_F^2 and the rescaling exponents e_t.
struct History {
    double fro2[SK_GRAM_MAX_STEPS];
    int exps[SK_GRAM_MAX_STEPS];
};

struct Stats {
    double fro2;    // sum of squares of M_t (computed)
    double colmax;  // largest column sum of squares of M_t
    int jmax;       // the first column that has it
    double trace;   // t = 1: trace of M_1 = ||A||_F^2
    double diagmax; // t = 1: largest diagonal entry of M_1 = largest column norm^2 of A
};

// Sums of squares per column of the k x k (of k_pad) matrix m, reduced over the team.
template <int NT, class R>
__device__ Stats column_stats(GramTeam<NT> &team, const R *m, int ld, int k) {
    double fro2 = 0.0, colmax = -1.0, trace = 0.0, diagmax = 0.0;
    int jmax = k;
    for (int j = team.rank; j < k; j += NT) {
        double cs = 0.0;
        for (int i = 0; i < k; ++i) {
            const double v = static_cast<double>(m[i * ld + j]);
            cs = fma(v, v, cs);
        }
        fro2 += cs;
        if (cs > colmax) {  // strict: the first of equal columns
            colmax = cs;
            jmax = j;
        }
        const double d = static_cast<double>(m[j * ld + j]);
        trace += d;
        diagmax = fmax(diagmax, d);
    }
    Stats s;
    s.fro2 = team.sum(fro2);
    s.colmax = team.max(colmax);
    s.jmax = static_cast<int>(team.reduce(colmax == s.colmax ? static_cast<double>(jmax) : k,
                                          [](double a, double b) { return fmin(a, b); }));
    s.trace = team.sum(trace);
    s.diagmax = team.max(diagmax);
    return s;
}

// The level-t lower bound on ||M_t||_2 (M_t symmetric, nearly PSD): the larger of the column
// bound ||M e_j|| and the Rayleigh quotient x^T M x / x^T x of x = M e_j, j the largest column.
// With x ~ the top eigenvector the quotient is within (sigma_2/sigma_1)^(2^(t+1)) of the norm,
// where the column bound stops at |u_1|_inf^... of the top singular vector.
template <int NT, class R>
__device__ double level_lower(GramTeam<NT> &team, const R *m, int ld, int k, const Stats &st) {
    const int j = st.jmax;
    double num = 0.0;
    for (int i = team.rank; i < k; i += NT) {
        double y = 0.0;  // (M x)_i
        for (int l = 0; l < k; ++l) {
            y = fma(static_cast<double>(m[i * ld + l]), static_cast<double>(m[l * ld + j]), y);
        }
        num = fma(static_cast<double>(m[i * ld + j]), y, num);
    }
    num = team.sum(num);
    return fmax(sqrt(st.colmax), num / st.colmax);
}

// The bounds from the recorded steps 1..T (T >= 1), for A (before the 2^s prescale).
__device__ void finish(const History &h, int T, double level_low, double trace, int k_pad, int l,
                       bool certified, double &upper, double &lower) {
    // Lower: level_low <= ||M_T||_2, rooted back through the recursion (not certified).
    double lo = level_low;
    for (int t = T - 1; t >= 1; --t) lo = ldexp(sqrt(lo), h.exps[t]);
    lower = sqrt(lo);
    if (!certified) {
        double b = sqrt(h.fro2[T]);
        for (int t = T - 1; t >= 1; --t) b = ldexp(sqrt(b), h.exps[t]);
        upper = sqrt(b);
        return;
    }
    const double gsum = gamma_bound(2.0 * k_pad * k_pad + 8.0);  // sums of squares
    double b = up(sqrt(up(h.fro2[T] * (1.0 + gsum)) + TINY));     // >= ||M_T||_2
    const double gk = gamma_bound(static_cast<double>(k_pad));
    for (int t = T - 1; t >= 1; --t) {
        const double err = up(gk * up(h.fro2[t] * (1.0 + gsum))) + TINY;
        b = up(sqrt(up(ldexp(b, 2 * h.exps[t]) + err)));  // >= ||M_t||_2
    }
    // ||A||_F^2 <= trace / ((1 - gamma(l)) (1 - gamma(k))): the diagonal entries are sums of l
    // squares, the trace a sum of k of them.
    const double fa2 = up(up(trace * (1.0 + 2.0 * gamma_bound(l + 2.0))) *
                          (1.0 + 2.0 * gamma_bound(k_pad + 2.0)));
    upper = up(sqrt(up(b + up(gamma_bound(static_cast<double>(l)) * fa2) + TINY)));
}

// ---- one matrix, one team ---------------------------------------------------------------------
template <class T, class R, int NT, int TS, int MAXT>
__device__ void bound_one(const sk_gram_params &p, uint32_t index, R *buf, int capacity,
                          History &hist) {
    GramTeam<NT> team;
    const sk_gram_matrix mat = p.matrices[index];
    const T *w = static_cast<const T *>(p.w) + mat.offset;
    const int rows = static_cast<int>(mat.rows), cols = static_cast<int>(mat.cols);
    const bool transposed = cols > rows;  // X = W^T: the Gram W W^T is the smaller side
    const int k = transposed ? rows : cols;
    const int l = transposed ? cols : rows;
    const uint32_t steps = p.iterations;
    sk_gram_bound *out = p.out + index;

    auto write = [&](double upper, double lower, uint32_t iters, uint32_t flags) {
        if (team.rank == 0) {
            out->upper = upper;
            out->lower = lower;
            out->iterations = iters;
            out->flags = flags;
        }
    };
    const uint32_t cert_flag = p.certified ? SK_GRAM_CERTIFIED : 0u;
    if (k == 0) {
        write(0.0, 0.0, steps, cert_flag);
        return;
    }

    // Pass 1: the largest |entry|, and whether any is NaN.
    const uint64_t len = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols);
    double amax = 0.0, nan = 0.0;
    for (uint64_t e = team.rank; e < len; e += NT) {
        const double v = fabs(widen<T>(w[e]));
        if (v != v) nan = 1.0;
        amax = fmax(amax, v);
    }
    amax = team.max(amax);
    nan = team.max(nan);
    if (nan != 0.0 || amax > DBL_MAX) {
        const double v = nan != 0.0 ? nan_f64() : inf_f64();
        write(v, v, steps, cert_flag);
        return;
    }
    if (amax == 0.0) {
        write(0.0, 0.0, steps, cert_flag);
        return;
    }
    const int s = ilogb(amax);  // A = X 2^-s has its largest entry in [1, 2)

    // Step 1: M_1 = A^T A, streaming panels of X through the buffer.
    const int k_pad = (k + TS - 1) / TS * TS;
    const int ld = k_pad + TS;  // row stride: keeps rows TS-aligned, shifts banks per row
    const int chunk = capacity / ld;
    const Tiles<TS, MAXT> tiles(team.rank, NT, k_pad / TS);
    R acc[MAXT][TS][TS];
    zero(acc);
    for (int l0 = 0; l0 < l; l0 += chunk) {
        const int n = chunk < l - l0 ? chunk : l - l0;
        team.sync();  // the previous panel has been read
        for (int e = team.rank; e < n * k_pad; e += NT) {
            // Consecutive threads read consecutive entries of W's rows.
            int r, c;
            if (transposed) {
                c = e / n;
                r = e % n;
            } else {
                r = e / k_pad;
                c = e % k_pad;
            }
            R v = R(0);
            if (c < k) {
                const uint64_t at = transposed
                                        ? static_cast<uint64_t>(c) * cols + (l0 + r)
                                        : static_cast<uint64_t>(l0 + r) * cols + c;
                v = static_cast<R>(ldexp(widen<T>(w[at]), -s));
            }
            buf[r * ld + c] = v;
        }
        team.sync();
        gram_accumulate<R, TS, MAXT>(buf, ld, n, tiles, acc);
    }
    team.sync();
    store_tiles<R, TS, MAXT>(buf, ld, tiles, acc, R(1));
    team.sync();
    Stats st = column_stats(team, buf, ld, k);
    const double trace = st.trace;
    if (steps == 0) {  // Frobenius norm; lower: the largest column norm of A
        double upper = sqrt(trace);
        if (p.certified) {
            upper = up(sqrt(up(up(trace * (1.0 + 2.0 * gamma_bound(l + 2.0))) *
                               (1.0 + 2.0 * gamma_bound(k_pad + 2.0)))));
        }
        write(ldexp(upper, s), ldexp(sqrt(st.diagmax), s), 0, cert_flag);
        return;
    }

    // Steps 2..T: square in place (all reads before the barrier, all writes after it).
    uint32_t t = 1;
    bool converged = false;
    double low = 0.0;
    const double log_target = p.tolerance > 0.0 ? log1p(p.tolerance) : 0.0;
    for (;;) {
        if (team.rank == 0) hist.fro2[t] = st.fro2;
        if (p.tolerance > 0.0 || t >= steps) low = level_lower(team, buf, ld, k, st);
        // upper/lower at level t is (||M_t||_F / low_t)^(1 / 2^t).
        if (p.tolerance > 0.0 && 0.5 * log(st.fro2) - log(low) <= ldexp(log_target, t)) {
            converged = true;
            break;
        }
        if (t >= steps) break;
        const int e = ilogb(st.fro2) >> 1;  // ||M_t 2^-e||_F^2 in [1, 8)
        if (team.rank == 0) hist.exps[t] = e;
        zero(acc);
        gram_accumulate<R, TS, MAXT>(buf, ld, k_pad, tiles, acc);
        team.sync();
        store_tiles<R, TS, MAXT>(buf, ld, tiles, acc, pow2<R>(-2 * e));
        team.sync();
        st = column_stats(team, buf, ld, k);
        ++t;
    }
    team.sync();  // rank 0 reads the history the others wrote (only rank 0 writes it)
    if (team.rank == 0) {
        double upper, lower;
        finish(hist, static_cast<int>(t), low, trace, k_pad, l, p.certified != 0, upper, lower);
        write(ldexp(upper, s), ldexp(lower, s), t,
              cert_flag | (converged ? SK_GRAM_CONVERGED : 0u));
    }
}

// Tiles per thread: the upper triangle of (k_max / TS)^2 tiles over NT threads.
__host__ __device__ constexpr int max_tiles(int k_max, int ts, int nt) {
    return ((k_max / ts) * (k_max / ts + 1) / 2 + nt - 1) / nt;
}

template <class T, class R>
__device__ void dense(const sk_gram_params &p) {
    constexpr int WARPS = static_cast<int>(SK_GRAM_THREADS) / 32;
    constexpr int WTS = static_cast<int>(SK_GRAM_WARP_TILE);
    constexpr int BTS = static_cast<int>(SK_GRAM_BLOCK_TILE);
    constexpr int WARP_K = static_cast<int>(SK_GRAM_WARP_K);
    constexpr int WARP_BUF = WARP_K * (WARP_K + WTS);  // elements per warp
    __shared__ History history[WARPS];
    R *smem = reinterpret_cast<R *>(SK_DYNAMIC_SMEM());
    const uint32_t block = blockIdx.x;
    if (block < p.warp_blocks) {
        const int warp = static_cast<int>(threadIdx.x) / 32;
        const uint32_t slot = block * WARPS + warp;
        if (slot >= p.warp_matrices) return;  // whole warps leave; no block barrier follows
        bound_one<T, R, 32, WTS, max_tiles(WARP_K, WTS, 32)>(
            p, p.order[slot], smem + warp * WARP_BUF, WARP_BUF, history[warp]);
    } else {
        const uint32_t slot = p.warp_matrices + (block - p.warp_blocks);
        SK_EXPECT(slot < p.count);
        constexpr int NT = static_cast<int>(SK_GRAM_THREADS);
        bound_one<T, R, NT, BTS, max_tiles(static_cast<int>(SK_GRAM_MAX_K), BTS, NT)>(
            p, p.order[slot], smem, static_cast<int>(p.block_capacity), history[0]);
    }
}

}  // namespace gram
}  // namespace sk

#define SK_GRAM_DENSE(ST, T, RT, R)                                                        \
    SK_KERNEL(sk_gram_dense_##ST##_##RT, sk_gram_params, SK_GRAM_THREADS, 1,                \
              sk::gram::dense<T, R>(p))

SK_GRAM_DENSE(f32, float, f32, float)
SK_GRAM_DENSE(f32, float, f64, double)
SK_GRAM_DENSE(f16, __half, f32, float)
SK_GRAM_DENSE(f16, __half, f64, double)
SK_GRAM_DENSE(bf16, __nv_bfloat16, f32, float)
SK_GRAM_DENSE(bf16, __nv_bfloat16, f64, double)
SK_GRAM_DENSE(f64, double, f64, double)
