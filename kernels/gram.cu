// Gram iteration on many matrices in one launch: per matrix, an upper bound on the spectral
// norm sigma_1 (the Schatten-2^(T+1) norm) and an a-posteriori lower bound, with every Gram
// power kept in shared memory for all T steps. The matrices are dense (real) or the per-frequency
// blocks of a circular convolution (complex, formed on the fly by a direct DFT of the kernel).
// The math is in src/gram/mod.rs; the f64 CPU reference of the same algorithm is
// src/gram/cpu.rs.
//
// Per matrix, X is l x k with k the smaller side (X = W, or W^H when W is wide):
//   A = X / 2^s, 2^s the power of two at or below the largest |entry| (exact; any finite
//       scale is safe; convolutions: of the kernel, the same for all of a layer's frequencies)
//   M_1 = A^H A
//   M_{t+1} = fl(M_t M_t) 2^(-2 e_t), 2^(2 e_t) ~ ||M_t||_F^2  (exact rescaling by powers of two)
// so every M_t is O(1) and M_t = (A^H A)^(2^(t-1)) up to an exact power of two. Every M_t is
// stored exactly Hermitian (the upper triangle is computed, the lower mirrored, the diagonal
// real), so ||M_t||_2^2 = ||M_t^2||_2, which gives the bounds by a backward recursion (finish()).
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

// Rounds once to the storage type.
template <class T>
__device__ __forceinline__ T narrow(double v) {
    return Elem<T>::from_f64(v);
}
template <>
__device__ __forceinline__ double narrow<double>(double v) {
    return v;
}

// 2^e as a double, exactly, for e within double's normal exponents [-1022, 1023], and NaN
// outside them (callers keep e inside; a NaN bound, not a wrong finite one, if one did not).
// x * exp2i(e) is x 2^e correctly rounded, the same as ldexp(x, e), in one multiplication:
// ldexp is about 18 instructions with four multiplications, which the one-tier kernels paid per
// entry in their scaling and per step.
__device__ __forceinline__ double exp2i(int e) {
    SK_EXPECT(e >= -1022 && e <= 1023);
    const double p = __longlong_as_double(static_cast<long long>(e + 1023) << 52);
    return static_cast<unsigned>(e + 1022) <= 2045u ? p : nan_f64();
}

// raw 2^-s in double, correctly rounded, s = ilogb of the largest |entry| of a matrix or kernel
// stored as T: for 16- and 32-bit storage s is within [-149, 127] and 2^-s a normal double;
// f64 storage can have s down to -1074.
template <class T>
__device__ __forceinline__ double scale_down(double raw, int s) {
    if constexpr (sizeof(T) < sizeof(double)) {
        return raw * exp2i(-s);
    } else {
        return ldexp(raw, -s);
    }
}

// 2^e in the arithmetic type, for |e| within its normal range (callers keep it there).
template <class R>
__device__ __forceinline__ R pow2(int e) {
    return static_cast<R>(exp2i(e));
}

template <class R>
struct Cplx {
    R re, im;
};

// The scalar field of the Gram matrices: real (dense matrices) or complex (DFT blocks).
// acc_conj(acc, a, b) adds conj(a) b; dot_gamma(n) bounds the relative error of such a sum of
// n terms (Higham Thm 3.5; complex: both parts are real sums of 2n products, |error| <=
// sqrt(2) gamma(2n) sum |a||b|).
template <class R>
struct RealField {
    using real = R;
    using elem = R;
    static constexpr bool COMPLEX = false;
    __device__ static elem zero() { return R(0); }
    __device__ static elem from(double v) { return static_cast<R>(v); }
    __device__ static void acc_conj(elem &acc, elem a, elem b) { acc = fma(a, b, acc); }
    __device__ static void acc_mul(elem &acc, elem a, elem b) { acc = fma(a, b, acc); }
    __device__ static double abs2(elem a) {
        const double x = static_cast<double>(a);
        return x * x;
    }
    __device__ static elem scale(elem a, R s) { return a * s; }
    __device__ static elem conj(elem a) { return a; }
    __device__ static elem real_part(elem a) { return a; }
    __device__ static double re(elem a) { return static_cast<double>(a); }
    __device__ static double im(elem) { return 0.0; }
};

template <class R>
struct ComplexField {
    using real = R;
    using elem = Cplx<R>;
    static constexpr bool COMPLEX = true;
    __device__ static elem zero() { return {R(0), R(0)}; }
    __device__ static elem from(double v) { return {static_cast<R>(v), R(0)}; }
    __device__ static void acc_conj(elem &acc, elem a, elem b) {
        acc.re = fma(a.re, b.re, fma(a.im, b.im, acc.re));
        acc.im = fma(a.re, b.im, fma(-a.im, b.re, acc.im));
    }
    __device__ static void acc_mul(elem &acc, elem a, elem b) {  // acc += a b
        acc.re = fma(a.re, b.re, fma(-a.im, b.im, acc.re));
        acc.im = fma(a.re, b.im, fma(a.im, b.re, acc.im));
    }
    __device__ static double abs2(elem a) {
        const double x = static_cast<double>(a.re), y = static_cast<double>(a.im);
        return fma(x, x, y * y);
    }
    __device__ static elem scale(elem a, R s) { return {a.re * s, a.im * s}; }
    __device__ static elem conj(elem a) { return {a.re, -a.im}; }
    __device__ static elem real_part(elem a) { return {a.re, R(0)}; }
    __device__ static double re(elem a) { return static_cast<double>(a.re); }
    __device__ static double im(elem a) { return static_cast<double>(a.im); }
};

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
    // N reductions with one op, every thread of the team getting the same results (butterfly,
    // then the warps' partials in order). The N shuffle chains interleave and a block team
    // meets one barrier, so N values cost about the latency of one. Block teams must call it
    // uniformly: it contains a barrier.
    template <int N, class Op>
    __device__ void reduce_all(double (&v)[N], Op op) {
#pragma unroll
        for (int m = 16; m >= 1; m /= 2) {
#pragma unroll
            for (int i = 0; i < N; ++i) v[i] = op(v[i], __shfl_xor_sync(0xffffffffu, v[i], m));
        }
        if constexpr (NT != 32) {
            __shared__ double scratch[2][N][NT / 32];
            double(*s)[NT / 32] = scratch[parity];
            parity ^= 1;
            if (rank % 32 == 0) {
#pragma unroll
                for (int i = 0; i < N; ++i) s[i][rank / 32] = v[i];
            }
            __syncthreads();
#pragma unroll
            for (int i = 0; i < N; ++i) v[i] = s[i][0];
#pragma unroll 1
            for (int w = 1; w < NT / 32; ++w) {
#pragma unroll
                for (int i = 0; i < N; ++i) v[i] = op(v[i], s[i][w]);
            }
        }
    }
    template <class Op>
    __device__ double reduce(double v, Op op) {
        double a[1] = {v};
        reduce_all(a, op);
        return a[0];
    }
    template <class Op>
    __device__ void reduce2(double &a, double &b, Op op) {
        double v[2] = {a, b};
        reduce_all(v, op);
        a = v[0];
        b = v[1];
    }
    __device__ double sum(double v) {
        return reduce(v, [](double a, double b) { return a + b; });
    }
    __device__ double max(double v) {
        return reduce(v, [](double a, double b) { return fmax(a, b); });
    }
    __device__ void sum2(double &a, double &b) {
        reduce2(a, b, [](double x, double y) { return x + y; });
    }
    __device__ void max2(double &a, double &b) {
        reduce2(a, b, [](double x, double y) { return fmax(x, y); });
    }
};

// ---- the matrices: dense storage, or DFT blocks of a convolution kernel ---------------------
// A source says what X is (l x k) and loads its entries scaled by 2^-s. `raw` reads the
// entries the prescale is taken from; `dft_error` bounds ||X_computed - X_exact||_F in scaled
// units (certified mode). DIRECT: the raw entries are X's own (at(row, c)), so a matrix that fits
// in the buffer is read from memory once (see load_whole).
template <class T, class F>
struct DenseSource {
    static constexpr bool DIRECT = true;
    const T *w;
    T *grad;  // d upper / d W at the same offset, or NULL
    int rows, cols;
    bool transposed;  // X = W^T: the Gram W W^T is the smaller side
    int k, l;

    __device__ DenseSource(const sk_gram_params &p, uint32_t index) {
        const sk_gram_matrix m = static_cast<const sk_gram_matrix *>(p.items)[index];
        w = static_cast<const T *>(p.w) + m.offset;
        grad = p.grad ? static_cast<T *>(p.grad) + m.offset : nullptr;
        rows = static_cast<int>(m.rows);
        cols = static_cast<int>(m.cols);
        transposed = cols > rows;
        k = transposed ? rows : cols;
        l = transposed ? cols : rows;
    }
    __device__ uint64_t raw_len() const { return static_cast<uint64_t>(rows) * cols; }
    __device__ double raw(uint64_t e) const { return widen<T>(w[e]); }
    template <int NT>
    __device__ void prepare(GramTeam<NT> &, int) const {}
    // Panel entry (r, c) of rows l0.. (n rows), element e of the panel's n * k_pad entries:
    // consecutive threads read consecutive entries of W's rows.
    __device__ void panel_index(int e, int n, int k_pad, int &r, int &c) const {
        if (transposed) {
            c = e / n;
            r = e % n;
        } else {
            r = e / k_pad;
            c = e % k_pad;
        }
    }
    __device__ uint64_t at(int row, int c) const {
        return transposed ? static_cast<uint64_t>(c) * cols + row
                          : static_cast<uint64_t>(row) * cols + c;
    }
    __device__ double raw_at(int row, int c) const { return widen<T>(w[at(row, c)]); }
    // X 2^-s, rounded once to the arithmetic type (load_whole computes the same from raw_at).
    __device__ static typename F::elem scaled(double raw, int s) {
        return F::from(scale_down<T>(raw, s));
    }
    __device__ typename F::elem load(int row, int c, int s) const {
        return scaled(raw_at(row, c), s);
    }
    // G = d upper / dX at (row, c), times factor: real, so d/dW at W's entry.
    __device__ void store_grad(int row, int c, typename F::elem g, double factor) const {
        grad[at(row, c)] = narrow<T>(F::re(g) * factor);
    }
    __device__ void fill_grad(uint64_t e, double v) const { grad[e] = narrow<T>(v); }
    __device__ double dft_error() const { return 0.0; }
};

// The c_out x c_in block A(u, v)[o][i] = sum_{p,q < taps} K[o,i,p,q] e^{-2 pi i (p u + q v) / n}
// (Sedghi et al.), as X = A (c_in <= c_out) or X = A^H. The twiddles factor: e^{-2 pi i p u/n}
// e^{-2 pi i q v/n}, 2 taps values per block, in shared memory; the phase p u mod n is formed
// exactly in integers before the angle.
template <class T, class F>
struct ConvSource {
    static constexpr bool DIRECT = false;  // X is formed from the kernel taps
    using R = typename F::real;
    const T *w;
    T *grad;  // d upper / d kernel at the same offset, or NULL
    int c_out, c_in, taps, n, u, v;
    bool transposed;  // X = A^H (c_in > c_out)
    int k, l;
    Cplx<R> *twiddles;  // [2 * taps]: e^{-2 pi i p u / n}, then e^{-2 pi i q v / n}

    __device__ ConvSource(const sk_gram_params &p, uint32_t index, Cplx<R> *tw) {
        const sk_gram_conv_item it = static_cast<const sk_gram_conv_item *>(p.items)[index];
        w = static_cast<const T *>(p.w) + it.offset;
        grad = p.grad ? static_cast<T *>(p.grad) + it.offset : nullptr;
        c_out = static_cast<int>(it.c_out);
        c_in = static_cast<int>(it.c_in);
        taps = static_cast<int>(it.taps);
        n = static_cast<int>(it.n);
        u = static_cast<int>(it.u);
        v = static_cast<int>(it.v);
        transposed = c_in > c_out;
        k = transposed ? c_out : c_in;
        l = transposed ? c_in : c_out;
        twiddles = tw;
    }
    __device__ uint64_t raw_len() const {
        return static_cast<uint64_t>(c_out) * c_in * taps * taps;
    }
    __device__ double raw(uint64_t e) const { return widen<T>(w[e]); }
    template <int NT>
    __device__ void prepare(GramTeam<NT> &team, int) const {
        for (int j = team.rank; j < 2 * taps; j += NT) {
            const int freq = j < taps ? u : v;
            const int phase = ((j % taps) * freq) % n;
            double sn, cs;
            sincospi(-2.0 * phase / n, &sn, &cs);
            twiddles[j] = {static_cast<R>(cs), static_cast<R>(sn)};
        }
        team.sync();
    }
    __device__ void panel_index(int e, int, int k_pad, int &r, int &c) const {
        r = e / k_pad;
        c = e % k_pad;
    }
    // G = d upper / dX at (row, c), times factor, back to the kernel taps: with A[o][i] =
    // sum_{p,q} K[o,i,p,q] w_pq (w_pq = e^{-2 pi i (p u + q v) / n}) and G_A = G (X = A) or
    // conj(G) at (c, row) (X = A^H), d upper / dK[o,i,p,q] = Re(conj(G_A) w_pq). Only the
    // layer's maximizing block writes them, so every tap is written once.
    __device__ void store_grad(int row, int c, typename F::elem g, double factor) const {
        const int o = transposed ? c : row, i = transposed ? row : c;
        const double gre = F::re(g) * factor;
        const double gim = (transposed ? -F::im(g) : F::im(g)) * factor;
        T *out = grad + (static_cast<uint64_t>(o) * c_in + i) * taps * taps;
        for (int p = 0; p < taps; ++p) {
            const double pre = static_cast<double>(twiddles[p].re);
            const double pim = static_cast<double>(twiddles[p].im);
            for (int q = 0; q < taps; ++q) {
                const double qre = static_cast<double>(twiddles[taps + q].re);
                const double qim = static_cast<double>(twiddles[taps + q].im);
                const double wre = pre * qre - pim * qim, wim = pre * qim + pim * qre;
                out[p * taps + q] = narrow<T>(gre * wre + gim * wim);
            }
        }
    }
    __device__ void fill_grad(uint64_t e, double v) const { grad[e] = narrow<T>(v); }
    __device__ typename F::elem load(int row, int c, int s) const {
        const int o = transposed ? c : row, i = transposed ? row : c;
        const T *tap = w + (static_cast<uint64_t>(o) * c_in + i) * taps * taps;
        R re = R(0), im = R(0);
        // The taps are scaled by 2^-s before the DFT, so its sums are O(taps^2) whatever the
        // kernel's scale: in f32 arithmetic, taps below 2^-126 would lose bits to subnormal
        // sums and taps near 2^127 overflow them, and 2^-s itself can be out of f32's range.
        // Exact where the old order (scale after the sums) was: every rounding commutes with a
        // power of two outside the subnormal range.
        for (int p = 0; p < taps; ++p) {
            R qre = R(0), qim = R(0);  // sum_q K[p][q] 2^-s e_q(v)
            for (int q = 0; q < taps; ++q) {
                const R kv = static_cast<R>(scale_down<T>(widen<T>(tap[p * taps + q]), s));
                qre = fma(kv, twiddles[taps + q].re, qre);
                qim = fma(kv, twiddles[taps + q].im, qim);
            }
            const Cplx<R> e = twiddles[p];
            re = fma(qre, e.re, fma(-qim, e.im, re));
            im = fma(qre, e.im, fma(qim, e.re, im));
        }
        typename F::elem x;
        x.re = re;
        x.im = transposed ? -im : im;
        return x;
    }
    // Each entry sums taps^2 terms |K| |twiddle product| with |K / 2^s| < 2: the twiddles carry
    // <= 4 u each (sincospi's 1 ulp, the phase's rounding), their product and the two complex
    // fma sums gamma(2 taps^2 + 4); 16 u + 2 gamma per unit of 2 taps^2, over l k entries.
    __device__ double dft_error() const;
};

// ---- operand runs as wide shared-memory words ---------------------------------------------------
// N consecutive field elements from shared memory into out[0..N) (load_run), or from v[0..N)
// into shared memory (store_run), as 16-byte words, or 8-byte ones where N elements are not a
// whole number of 16 bytes. The front end cannot prove the alignment of a run at a runtime row
// stride, so left to itself it emits element-wide accesses (or, in the large tier, 8-byte loads
// that ptxas happened to merge: sm_90 PTX of 2026-12-07, 8 ld.shared.v2 per 64 FMA); this
// states the width. Callers' layouts align every run (panels and buffers start at 16-byte
// boundaries, row strides and run starts are multiples of the run); the emulator checks it,
// since a misaligned vector access does not fault there as it does on the GPU.
template <int N, class E>
struct RunWord {
    static constexpr int BYTES = N * sizeof(E) % 16 == 0 ? 16 : 8;
    static_assert(N * sizeof(E) % BYTES == 0, "whole 8-byte words");
    using type = typename std::conditional<BYTES == 16, uint4, uint2>::type;
    static constexpr int COUNT = N * static_cast<int>(sizeof(E)) / BYTES;
};

template <int N, class E>
__device__ __forceinline__ void load_run(const E *src, E *out) {
    using W = RunWord<N, E>;
    SK_EXPECT(reinterpret_cast<uintptr_t>(src) % W::BYTES == 0);
#pragma unroll
    for (int w = 0; w < W::COUNT; ++w) {
        const typename W::type word = reinterpret_cast<const typename W::type *>(src)[w];
        memcpy(reinterpret_cast<unsigned char *>(out) + W::BYTES * w, &word, W::BYTES);
    }
}

template <int N, class E>
__device__ __forceinline__ void store_run(E *dst, const E *v) {
    using W = RunWord<N, E>;
    SK_EXPECT(reinterpret_cast<uintptr_t>(dst) % W::BYTES == 0);
#pragma unroll
    for (int w = 0; w < W::COUNT; ++w) {
        typename W::type word;
        memcpy(&word, reinterpret_cast<const unsigned char *>(v) + W::BYTES * w, W::BYTES);
        reinterpret_cast<typename W::type *>(dst)[w] = word;
    }
}

// ---- upper-triangle tiles ---------------------------------------------------------------------
// The Gram of a k_pad x k_pad Hermitian matrix is computed tile by tile: TS x TS tiles (bi, bj),
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

// acc[t] += sum over rows l < rows of conj(x[l][i]) y[l][j] for the owned tiles (i, j): with
// y = x, the Gram of the columns of a rows x k_pad panel with row stride ld; with x = P and
// y = M (both symmetric), the product P M.
template <class F, int TS, int MAXT>
__device__ __forceinline__ void gram_accumulate(const typename F::elem *x,
                                                const typename F::elem *y, int ld, int rows,
                                                const Tiles<TS, MAXT> &tiles,
                                                typename F::elem (&acc)[MAXT][TS][TS]) {
    using E = typename F::elem;
#pragma unroll
    for (int t = 0; t < MAXT; ++t) {
        if (!tiles.live[t]) continue;
        const E *ci = x + tiles.bi[t] * TS;
        const E *cj = y + tiles.bj[t] * TS;
#pragma unroll 2
        for (int l = 0; l < rows; ++l) {
            E a[TS], b[TS];
#pragma unroll
            for (int u = 0; u < TS; ++u) {
                a[u] = ci[l * ld + u];
                b[u] = cj[l * ld + u];
            }
#pragma unroll
            for (int u = 0; u < TS; ++u)
#pragma unroll
                for (int v = 0; v < TS; ++v) F::acc_conj(acc[t][u][v], a[u], b[v]);
        }
    }
}

// Writes the owned tiles (times `scale`, an exact power of two) into the k_pad x k_pad matrix m
// and mirrors them, so m is exactly Hermitian: off-diagonal tiles are mirrored whole; inside a
// diagonal tile the upper part is mirrored and the diagonal made real (the computed (v, u) entry
// need not be the exact conjugate of (u, v), and the diagonal's imaginary part is rounding).
template <class F, int TS, int MAXT>
__device__ __forceinline__ void store_tiles(typename F::elem *m, int ld,
                                            const Tiles<TS, MAXT> &tiles,
                                            const typename F::elem (&acc)[MAXT][TS][TS],
                                            typename F::real scale) {
#pragma unroll
    for (int t = 0; t < MAXT; ++t) {
        if (!tiles.live[t]) continue;
        const int i0 = tiles.bi[t] * TS, j0 = tiles.bj[t] * TS;
        const bool diagonal = i0 == j0;
#pragma unroll
        for (int u = 0; u < TS; ++u)
#pragma unroll
            for (int v = 0; v < TS; ++v) {
                if (diagonal && v < u) continue;
                typename F::elem val = F::scale(acc[t][u][v], scale);
                if (diagonal && u == v) val = F::real_part(val);
                m[(i0 + u) * ld + j0 + v] = val;
                if (!(diagonal && u == v)) m[(j0 + v) * ld + i0 + u] = F::conj(val);
            }
    }
}

// Sum of |entries|^2 of the matrix the owned tiles make once mirrored (off-diagonal tiles count
// twice), before scaling.
template <class F, int TS, int MAXT>
__device__ __forceinline__ double tiles_sumsq(const Tiles<TS, MAXT> &tiles,
                                              const typename F::elem (&acc)[MAXT][TS][TS]) {
    double s = 0.0;
#pragma unroll
    for (int t = 0; t < MAXT; ++t) {
        if (!tiles.live[t]) continue;
        double part = 0.0;
#pragma unroll
        for (int u = 0; u < TS; ++u)
#pragma unroll
            for (int v = 0; v < TS; ++v) part += F::abs2(acc[t][u][v]);
        s += tiles.bi[t] == tiles.bj[t] ? part : 2.0 * part;
    }
    return s;
}

template <class F, int MAXT, int TS>
__device__ __forceinline__ void zero(typename F::elem (&acc)[MAXT][TS][TS]) {
#pragma unroll
    for (int t = 0; t < MAXT; ++t)
#pragma unroll
        for (int u = 0; u < TS; ++u)
#pragma unroll
            for (int v = 0; v < TS; ++v) acc[t][u][v] = F::zero();
}

// ---- the products of a step ------------------------------------------------------------------
// A step's product acc = x^H y over the first `rows` rows of two k_pad-wide panels (step 1:
// X^H X of a panel of X; later steps: M M of the Gram power, which is Hermitian; gradients:
// P M), held by the team in registers, then stored, scaled by an exact power of two, as the
// next Gram power. Two ways to split it over the team:
//
// TriangleProduct: the upper triangle's TS x TS tiles, up to MAXT per thread, mirrored on
// store, the diagonal made real; for any field and for P M (whose computed lower part would not
// be the mirror of its upper one). k is padded to a multiple of TS, rows are TS longer.
template <class F, int TS, int MAXT>
struct TriangleProduct {
    using E = typename F::elem;
    using Owned = Tiles<TS, MAXT>;
    using Acc = E[MAXT][TS][TS];
    static constexpr int PAD = TS;     // k_pad is a multiple of it
    static constexpr int LD_PAD = TS;  // rows k_pad + LD_PAD long: TS-aligned, banks shift per row
    static constexpr bool ANY_OPERANDS = true;
    static constexpr bool ONE_TILE = MAXT == 1;

    __device__ static Owned owned(int rank, int nt, int k_pad) { return Owned(rank, nt, k_pad / TS); }
    __device__ static void zero(Acc &acc) { gram::zero<F>(acc); }
    __device__ static void accumulate(const E *x, const E *y, int ld, int rows, const Owned &o,
                                      Acc &acc) {
        gram_accumulate<F, TS, MAXT>(x, y, ld, rows, o, acc);
    }
    __device__ static void store(E *m, int ld, const Owned &o, const Acc &acc,
                                 typename F::real scale) {
        store_tiles<F, TS, MAXT>(m, ld, o, acc, scale);
    }
    __device__ static double sumsq(const Owned &o, const Acc &acc) { return tiles_sumsq<F>(o, acc); }
};

// FullProduct: every TR x TC tile of the whole real k_pad x k_pad result, at most one per
// thread (the caller's sides keep (k_pad / TR)(k_pad / TC) <= the team). It serves only
// products whose result is symmetric entry for entry, x^H x (step 1, and M M with M symmetric):
// entry (j, i) is then the same chain of fmas as (i, j) with each product's factors swapped, and
// fl(a b + c) = fl(b a + c), so the stored matrix is exactly symmetric, the same bits the
// triangle's mirror gives, with no mirror. For a warp it issues fewer instructions: at k = 16
// the triangle has 36 tiles of 2 x 2 for 32 lanes, so the warp issued two rounds of 2 x 2 tiles
// per step where here it issues one of 2 x 4 (16 rows of 2 loads and 8 FMAs). For a block it
// would issue more: a triangle's idle warps issue nothing (at k = 64, 136 tiles of 4 x 4 keep
// 4.25 of 8 warps busy), so blocks keep the triangle. k is padded to a multiple of TC, rows
// are TC longer (16-byte aligned).
template <class F, int TR, int TC>
struct FullProduct {
    static_assert(!F::COMPLEX, "conj(a) b and conj(b) a are not computed as exact conjugates");
    using E = typename F::elem;
    struct Owned {
        int i0, j0;  // the tile's first row and column
        bool live;
    };
    using Acc = E[TR][TC];
    static constexpr int PAD = TC;
    static constexpr int LD_PAD = TC;
    static constexpr bool ANY_OPERANDS = false;
    static constexpr bool ONE_TILE = true;

    __device__ static Owned owned(int rank, int, int k_pad) {
        const int across = k_pad / TC;  // tiles per row of tiles
        const int i0 = rank / across * TR;
        return {i0, rank % across * TC, i0 < k_pad};
    }
    __device__ static void zero(Acc &acc) {
#pragma unroll
        for (int u = 0; u < TR; ++u)
#pragma unroll
            for (int v = 0; v < TC; ++v) acc[u][v] = F::zero();
    }
    __device__ static void accumulate(const E *x, const E *y, int ld, int rows, const Owned &o,
                                      Acc &acc) {
        if (!o.live) return;
        const E *xr = x + o.i0, *yr = y + o.j0;
#pragma unroll 2
        for (int l = 0; l < rows; ++l, xr += ld, yr += ld) {
            E a[TR], b[TC];
            load_run<TR>(xr, a);
            load_run<TC>(yr, b);
#pragma unroll
            for (int u = 0; u < TR; ++u)
#pragma unroll
                for (int v = 0; v < TC; ++v) F::acc_conj(acc[u][v], a[u], b[v]);
        }
    }
    __device__ static void store(E *m, int ld, const Owned &o, const Acc &acc,
                                 typename F::real scale) {
        if (!o.live) return;
#pragma unroll
        for (int u = 0; u < TR; ++u) {
            E row[TC];
#pragma unroll
            for (int v = 0; v < TC; ++v) row[v] = F::scale(acc[u][v], scale);
            store_run<TC>(m + (o.i0 + u) * ld + o.j0, row);
        }
    }
    __device__ static double sumsq(const Owned &o, const Acc &acc) {
        double s = 0.0;
#pragma unroll
        for (int u = 0; u < TR; ++u)
#pragma unroll
            for (int v = 0; v < TC; ++v) s += F::abs2(acc[u][v]);
        return o.live ? s : 0.0;
    }
};

// ---- the certified recursion ------------------------------------------------------------------
// Rounding-error analysis in f64 (u = 2^-53), with g(n) = dot_gamma(n) bounding the relative
// error of a sum of n products (see the fields):
//   ||A^H A||_2  <= ||M_1||_2 + g(l) ||A||_F^2,
//   ||M_t||_2^2 = ||M_t^2||_2 <= 2^(2 e_t) ||M_{t+1}||_2 + g(k) ||M_t||_F^2,
//   ||M_T||_2   <= ||M_T||_F,
//   sigma_1(X_exact / 2^s) <= sigma_1(A) + dft_error (convolutions),
// each computed upward: up(x) >= x for any correctly rounded op whose result is x (a relative
// error <= u; up adds 8 u). Underflow adds at most 2^-1074 per product; an absolute 2^-900 in
// every error term covers it for any k, l < 2^40 (every M_t has ||M_t||_2 >= 2^-70 or so).
constexpr double U64 = 0x1p-53;
constexpr double TINY = 0x1p-900;

__device__ __forceinline__ double up(double x) { return x * (1.0 + 0x1p-50); }
__device__ __forceinline__ double gamma_bound(double n) {
    return up(n * U64 / (1.0 - n * U64));
}
template <class F>
__device__ __forceinline__ double dot_gamma(double n) {
    return F::COMPLEX ? up(1.5 * gamma_bound(2.0 * n)) : gamma_bound(n);
}

template <class T, class F>
__device__ double ConvSource<T, F>::dft_error() const {
    const double t2 = static_cast<double>(taps) * taps;
    const double per_entry = up(2.0 * t2 * up(16.0 * U64 + 2.0 * gamma_bound(2.0 * t2 + 4.0)));
    return up(per_entry * sqrt(up(static_cast<double>(l) * k)));
}

// Per-team record of the steps: S_t = computed ||M_t||_F^2 and the rescaling exponents e_t.
// Every e_t is small, so bound_one's exp2i(-4 e_t) is exact: S_1 is within [1, 16 l^2 k^2)
// (M_1 has a diagonal entry >= 1, and entries below 4 l), and with 2^(2 e_t) <= S_t <
// 2^(2 e_t + 2) and S_t^2 / k^2 <= ||M_t^2||_F^2 <= S_t^2, every later S_t is within
// [1 / k^2, 16).
struct History {
    double fro2[SK_GRAM_MAX_STEPS];
    int exps[SK_GRAM_MAX_STEPS];
};

struct Stats {
    double fro2;    // sum of |entries|^2 of M_t (computed)
    double colmax;  // largest column sum of |entries|^2 of M_t
    int jmax;       // the first column that has it
    double trace;   // t = 1: trace of M_1 = ||A||_F^2
    double diagmax; // t = 1: largest diagonal entry of M_1 = largest column norm^2 of A
};

// Threads per column of a k x k matrix for a team of NT threads: the largest power of two P
// <= 32 with P * k <= NT (at least 1). Consecutive ranks j * P + q (q < P) share column j, in
// one warp, each summing the rows i = q mod P, so a column's serial chain is k / P long.
template <int NT>
__device__ __forceinline__ int threads_per_column(int k) {
    int parts = 1;
    while (parts < 32 && 2 * parts * k <= NT) parts *= 2;
    return parts;
}

// Sum over the P lanes that share a column (lane bits below P). Every lane of the warp calls it.
__device__ __forceinline__ double sum_parts(double v, int parts) {
    for (int o = 1; o < parts; o *= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Column sums of |entries|^2 of the k x k (of k_pad) matrix m, reduced over the team.
template <class F, int NT>
__device__ Stats column_stats(GramTeam<NT> &team, const typename F::elem *m, int ld, int k) {
    const int parts = threads_per_column<NT>(k);
    const int q = team.rank % parts;
    double fro2 = 0.0, colmax = -1.0, trace = 0.0, diagmax = 0.0;
    int jmax = k;
    // The loop bound is the same for every thread (sum_parts shuffles the whole warp).
    for (int j0 = 0; j0 < k; j0 += NT / parts) {
        const int j = j0 + team.rank / parts;
        double cs = 0.0;
        if (j < k) {
            for (int i = q; i < k; i += parts) cs += F::abs2(m[i * ld + j]);
        }
        cs = sum_parts(cs, parts);
        if (j < k && q == 0) {
            fro2 += cs;
            if (cs > colmax) {  // strict: the first of equal columns
                colmax = cs;
                jmax = j;
            }
            const double d = F::re(m[j * ld + j]);
            trace += d;
            diagmax = fmax(diagmax, d);
        }
    }
    Stats s{fro2, colmax, jmax, trace, diagmax};
    team.sum2(s.fro2, s.trace);
    team.max2(s.colmax, s.diagmax);
    s.jmax = static_cast<int>(team.reduce(colmax == s.colmax ? static_cast<double>(jmax) : k,
                                          [](double a, double b) { return fmin(a, b); }));
    return s;
}

// The level-t lower bound on ||M_t||_2 (M_t Hermitian, nearly PSD): the larger of the column
// bound ||M e_j|| and the Rayleigh quotient Re(x^H M x) / x^H x of x = M e_j, j the largest
// column. With x close to the top eigenvector the quotient is within (sigma_2 / sigma_1)^(2^t)
// of the norm; the column bound stops at the largest entry of the top singular vector.
template <class F, int NT>
__device__ double level_lower(GramTeam<NT> &team, const typename F::elem *m, int ld, int k,
                              const Stats &st) {
    const int j = st.jmax;
    const int parts = threads_per_column<NT>(k);
    const int q = team.rank % parts;
    double num = 0.0;
    for (int i0 = 0; i0 < k; i0 += NT / parts) {
        const int i = i0 + team.rank / parts;
        double yre = 0.0, yim = 0.0;  // (M x)_i, the terms c = q mod parts
        if (i < k) {
            for (int c = q; c < k; c += parts) {
                const auto a = m[i * ld + c], b = m[c * ld + j];
                yre += F::re(a) * F::re(b) - F::im(a) * F::im(b);
                yim += F::re(a) * F::im(b) + F::im(a) * F::re(b);
            }
        }
        yre = sum_parts(yre, parts);
        yim = sum_parts(yim, parts);
        if (i < k && q == 0) {
            const auto x = m[i * ld + j];
            num += F::re(x) * yre + F::im(x) * yim;  // Re(conj(x_i) y_i)
        }
    }
    num = team.sum(num);
    return fmax(sqrt(st.colmax), num / st.colmax);
}

// The bounds from the recorded steps 1..T (T >= 1), for A (before the 2^s prescale). k is the
// true side: the padding rows and columns are exact zeros at every step (products and sums of
// zeros are exact), so each dot product has at most k rounded terms and each sum of squares
// at most k^2 nonzero ones.
template <class F>
__device__ void finish(const History &h, int T, double level_low, double trace, int k, int l,
                       bool certified, double dft_err, double &upper, double &lower) {
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
    const double gsum = gamma_bound(2.0 * k * k + 8.0);       // sums of |entries|^2
    double b = up(sqrt(up(h.fro2[T] * (1.0 + gsum)) + TINY));  // >= ||M_T||_2
    const double gk = dot_gamma<F>(static_cast<double>(k));
    for (int t = T - 1; t >= 1; --t) {
        const double err = up(gk * up(h.fro2[t] * (1.0 + gsum))) + TINY;
        b = up(sqrt(up(ldexp(b, 2 * h.exps[t]) + err)));  // >= ||M_t||_2
    }
    // ||A||_F^2 <= trace / ((1 - g(l)) (1 - g(k))): the diagonal entries are sums of l
    // products, the trace a sum of k of them.
    const double fa2 = up(up(trace * (1.0 + 2.0 * dot_gamma<F>(l + 2.0))) *
                          (1.0 + 2.0 * gamma_bound(k + 2.0)));
    upper = up(sqrt(up(b + up(dot_gamma<F>(static_cast<double>(l)) * fa2) + TINY)));
    if (dft_err > 0.0) upper = up(upper + dft_err);
}

// The plain Schatten-2^(T+1) estimate of ||A|| from the recorded steps (T >= 1).
__device__ double schatten(const History &h, int T) {
    double b = sqrt(h.fro2[T]);
    for (int t = T - 1; t >= 1; --t) b = ldexp(sqrt(b), h.exps[t]);
    return sqrt(b);
}

// Certified Frobenius norm (T = 0): ||A||_F <= sqrt of the trace inflated as in finish().
template <class F>
__device__ double certified_frobenius(double trace, int k, int l) {
    return up(sqrt(up(up(trace * (1.0 + 2.0 * dot_gamma<F>(l + 2.0))) *
                      (1.0 + 2.0 * gamma_bound(k + 2.0)))));
}

// ---- one matrix, one team ---------------------------------------------------------------------
// Step 1's input in one pass over memory, for a DIRECT source whose X (l x k_pad) fits in the
// buffer. The on-chip tiers are latency-bound, and reading W once for the prescale and again for
// the panel made two dependent chains of global loads per matrix; here each thread issues
// LOAD_BATCH loads before it uses any, keeps the entries unscaled in the buffer (exact: the
// arithmetic type holds every storage value) and returns the largest |entry| of its own and
// whether any is NaN. rescale_whole then scales the same entries, each by the thread that
// stored it, so no barrier comes between the two.
constexpr int LOAD_BATCH = 8;

template <class F, int NT, class Src>
__device__ void load_whole(const GramTeam<NT> &team, const Src &src, typename F::elem *buf,
                           int ld, int k_pad, double &amax, double &nan) {
    const int total = src.l * k_pad;
    constexpr int B = LOAD_BATCH;
    for (int e0 = team.rank; e0 < total; e0 += B * NT) {
        typename F::real v[B];  // exact: the arithmetic type holds every storage value
        int slot[B];
#pragma unroll
        for (int b = 0; b < B; ++b) {
            const int e = e0 + b * NT;
            int r = 0, c = k_pad;
            if (e < total) src.panel_index(e, src.l, k_pad, r, c);
            slot[b] = e < total ? r * ld + c : -1;
            v[b] = static_cast<typename F::real>(e < total && c < src.k ? src.raw_at(r, c) : 0.0);
        }
#pragma unroll
        for (int b = 0; b < B; ++b) {
            if (slot[b] < 0) continue;
            const double a = fabs(static_cast<double>(v[b]));
            if (a != a) nan = 1.0;
            amax = fmax(amax, a);
            buf[slot[b]] = v[b];
        }
    }
}

template <class F, int NT, class Src>
__device__ void rescale_whole(const GramTeam<NT> &team, const Src &src, typename F::elem *buf,
                              int ld, int k_pad, int s) {
    const int total = src.l * k_pad;
    for (int e = team.rank; e < total; e += NT) {
        int r, c;
        src.panel_index(e, src.l, k_pad, r, c);
        typename F::elem &x = buf[r * ld + c];
        x = Src::scaled(F::re(x), s);
    }
}

// The gradient pass: G = factor * A P (P = the identity when pbuf is NULL), streaming panels of
// A through `buf` again and writing G in W's layout through the source.
template <class F, int NT, class Src>
__device__ void write_gradient(GramTeam<NT> &team, const Src &src, typename F::elem *buf, int ld,
                               int capacity, const typename F::elem *pbuf, int s, double factor) {
    const int k = src.k, l = src.l;
    const int chunk = capacity / ld;
    for (int l0 = 0; l0 < l; l0 += chunk) {
        const int n = chunk < l - l0 ? chunk : l - l0;
        team.sync();  // the buffer (the last Gram power, or the previous panel) has been read
        for (int e = team.rank; e < n * k; e += NT) {
            int r, c;
            src.panel_index(e, n, k, r, c);
            buf[r * ld + c] = src.load(l0 + r, c, s);
        }
        team.sync();
        for (int e = team.rank; e < n * k; e += NT) {
            int r, j;
            src.panel_index(e, n, k, r, j);
            typename F::elem g;
            if (pbuf == nullptr) {
                g = buf[r * ld + j];
            } else {  // (X P)[r][j]
                g = F::zero();
                for (int c = 0; c < k; ++c) F::acc_mul(g, buf[r * ld + c], pbuf[c * ld + j]);
            }
            src.store_grad(l0 + r, j, g, factor);
        }
    }
}

// With GRAD, `pbuf` (a second Gram-sized buffer) accumulates P = M_1 M_2 ... M_t, rescaled by
// powers of two, and the gradient of the Schatten norm,
//   d ||A||_p / dA = A (A^H A)^(p/2 - 1) / ||A||_p^(p-1) = A P ||A||_p / tr(M_1 P)   (p = 2^(T+1)),
// is written through the source (the degree-0 homogeneity makes it the gradient for W too).
// tr(M_1 P) = 2^(2 (e_1 + ... + e_{T-1})) ||M_T||_F^2 in exact arithmetic (M_t^2 = 2^(2 e_t)
// M_{t+1}, telescoped), so no third buffer is needed.
template <class F, int NT, class Product, bool GRAD, class Src>
__device__ void bound_one(const sk_gram_params &p, Src &src, sk_gram_bound *out,
                          typename F::elem *buf, int capacity, History &hist,
                          typename F::elem *pbuf) {
    using R = typename F::real;
    using E = typename F::elem;
    GramTeam<NT> team;
    const int k = src.k, l = src.l;
    const uint32_t steps = p.iterations;

    auto write = [&](double upper, double lower, uint32_t iters, uint32_t flags) {
        if (team.rank == 0) {
            out->upper = upper;
            out->lower = lower;
            out->iterations = iters;
            out->flags = flags;
        }
    };
    const uint32_t cert_flag = p.certified ? SK_GRAM_CERTIFIED : 0u;
    // Degenerate matrices: every gradient entry gets one value (NaN, or the zero subgradient).
    auto fill = [&](double g) {
        if constexpr (GRAD) {
            for (uint64_t e = team.rank; e < src.raw_len(); e += NT) src.fill_grad(e, g);
        }
    };
    if (k == 0) {
        write(0.0, 0.0, steps, cert_flag);
        return;
    }

    static_assert(!GRAD || Product::ANY_OPERANDS, "P M needs the triangle's mirror");
    const int k_pad = (k + Product::PAD - 1) / Product::PAD * Product::PAD;
    const int ld = k_pad + Product::LD_PAD;
    const int chunk = capacity / ld;
    // (Not for the combined kernel's block tier, several tiles a thread: its registers would
    // spill.)
    bool whole = false;
    if constexpr (Src::DIRECT && (NT == 32 || Product::ONE_TILE)) whole = l <= chunk;

    // Pass 1: the largest |entry|, and whether any is NaN (with `whole`, also step 1's panel).
    double amax = 0.0, nan = 0.0;
    if constexpr (Src::DIRECT) {
        if (whole) load_whole<F>(team, src, buf, ld, k_pad, amax, nan);
    }
    if (!whole) {
        for (uint64_t e = team.rank; e < src.raw_len(); e += NT) {
            const double v = fabs(src.raw(e));
            if (v != v) nan = 1.0;
            amax = fmax(amax, v);
        }
    }
    team.max2(amax, nan);
    if (nan != 0.0 || amax > DBL_MAX) {
        const double v = nan != 0.0 ? nan_f64() : inf_f64();
        write(v, v, steps, cert_flag);
        fill(nan_f64());
        return;
    }
    if (amax == 0.0) {
        write(0.0, 0.0, steps, cert_flag);
        fill(0.0);
        return;
    }
    const int s = ilogb(amax);  // the entries of X 2^-s are below 2 in magnitude
    src.prepare(team, s);

    // Step 1: M_1 = A^H A, streaming panels of X through the buffer (or the one in it).
    using P = Product;
    const typename P::Owned tiles = P::owned(team.rank, NT, k_pad);
    typename P::Acc acc;
    P::zero(acc);
    for (int l0 = 0; l0 < l; l0 += chunk) {  // (one panel when `whole`: l <= chunk)
        const int n = chunk < l - l0 ? chunk : l - l0;
        if (whole) {
            if constexpr (Src::DIRECT) rescale_whole<F>(team, src, buf, ld, k_pad, s);
        } else {
            team.sync();  // the previous panel has been read
            for (int e = team.rank; e < n * k_pad; e += NT) {
                int r, c;
                src.panel_index(e, n, k_pad, r, c);
                buf[r * ld + c] = c < k ? src.load(l0 + r, c, s) : F::zero();
            }
        }
        team.sync();
        P::accumulate(buf, buf, ld, n, tiles, acc);
    }
    team.sync();
    P::store(buf, ld, tiles, acc, R(1));
    team.sync();
    Stats st = column_stats<F>(team, buf, ld, k);
    const double trace = st.trace;
    const double dft_err = p.certified ? src.dft_error() : 0.0;
    if (steps == 0) {  // Frobenius norm; lower: the largest column norm of A
        double upper = sqrt(trace);
        if (p.certified) upper = up(certified_frobenius<F>(trace, k, l) + dft_err);
        write(ldexp(upper, s), ldexp(sqrt(st.diagmax), s), 0, cert_flag);
        if constexpr (GRAD) write_gradient<F, NT>(team, src, buf, ld, capacity, nullptr, s,
                                                  1.0 / sqrt(trace));
        return;
    }
    // P_1 = M_1; P_stored 2^pexp = P.
    int pexp = 0;
    double pfro2 = st.fro2;
    if constexpr (GRAD) {
        for (int e = team.rank; e < k_pad * ld; e += NT) pbuf[e] = buf[e];
    }

    // Steps 2..T: square in place (all reads before the barrier, all writes after it).
    uint32_t t = 1;
    bool converged = false;
    double low = 0.0;
    const double log_target = p.tolerance > 0.0 ? log1p(p.tolerance) : 0.0;
    for (;;) {
        if (team.rank == 0) hist.fro2[t] = st.fro2;
        if (p.tolerance > 0.0 || t >= steps) low = level_lower<F>(team, buf, ld, k, st);
        // upper/lower at level t is (||M_t||_F / low_t)^(1 / 2^t).
        if (p.tolerance > 0.0 && 0.5 * log(st.fro2) - log(low) <= ldexp(log_target, t)) {
            converged = true;
            break;
        }
        if (t >= steps) break;
        const int e = ilogb(st.fro2) >> 1;  // ||M_t 2^-e||_F^2 in [1, 8)
        if (team.rank == 0) hist.exps[t] = e;
        P::zero(acc);
        P::accumulate(buf, buf, ld, k_pad, tiles, acc);
        team.sync();
        P::store(buf, ld, tiles, acc, pow2<R>(-2 * e));
        team.sync();
        if (p.tolerance > 0.0 || t + 1 >= steps) {
            // level_lower comes next: it needs the largest column.
            st = column_stats<F>(team, buf, ld, k);
        } else {
            // Only ||M_{t+1}||_F^2 is needed: summed from the tiles in registers, one team
            // reduction instead of column_stats' pass over the matrix and five reductions,
            // whose latency dominated a step of the warp tier. The stored entries are acc 2^-2e
            // (exact but for underflow, within the analysis' absolute TINY), off-diagonal tiles
            // count twice, and a complex diagonal's imaginary rounding is counted although not
            // stored: fro2 below level T only enters the error terms and the choice of e, and
            // the error terms stay valid for any value at least the stored sum (up to TINY).
            st.fro2 = team.sum(P::sumsq(tiles, acc)) * exp2i(-4 * e);
        }
        if constexpr (GRAD) {
            // P <- P M_{t+1} 2^-g, g from ||P||_F (P stays O(1) whatever T).
            const int g = ilogb(pfro2) >> 1;
            P::zero(acc);
            P::accumulate(pbuf, buf, ld, k_pad, tiles, acc);
            pfro2 = ldexp(team.sum(P::sumsq(tiles, acc)), -2 * g);  // (a barrier)
            P::store(pbuf, ld, tiles, acc, pow2<R>(-g));
            pexp += g;
            team.sync();
        }
        ++t;
    }
    if (team.rank == 0) {
        double upper, lower;
        finish<F>(hist, static_cast<int>(t), low, trace, k, l, p.certified != 0, dft_err,
                  upper, lower);
        write(ldexp(upper, s), ldexp(lower, s), t,
              cert_flag | (converged ? SK_GRAM_CONVERGED : 0u));
    }
    if constexpr (GRAD) {
        team.sync();  // rank 0 wrote the history
        int esum = 0;
        for (uint32_t j = 1; j < t; ++j) esum += hist.exps[j];  // (written by rank 0, synced)
        const double factor =
            ldexp(schatten(hist, static_cast<int>(t)) / hist.fro2[t], pexp - 2 * esum);
        write_gradient<F, NT>(team, src, buf, ld, capacity, pbuf, s, factor);
    }
}

// Tiles per thread: the upper triangle of (k_max / TS)^2 tiles over NT threads.
__host__ __device__ constexpr int max_tiles(int k_max, int ts, int nt) {
    return ((k_max / ts) * (k_max / ts + 1) / 2 + nt - 1) / nt;
}

// The teams a kernel has: warps for sides <= WARP_K and then blocks for sides <= BLOCK_K, or
// one of the two. The one-tier kernels exist for the dense sides that dominate batches of
// small matrices (sk_gram_dense_small_*, warps for sides <= SK_GRAM_SMALL_K; sk_gram_dense_mid_*,
// blocks for sides <= SK_GRAM_MID_K): without the other tier's registers, and with the tiles
// per thread and buffers of their sides only, more of their blocks fit on an SM, which is what
// these latency-bound kernels need (each step's barriers and reductions stall a team).
enum class Tiers { BOTH, WARPS_ONLY, BLOCKS_ONLY };

// Serves the launch's items: warps of the first warp_blocks blocks take one small item each,
// every later block one large item (after the block_first an earlier launch served). With GRAD
// each team has a second buffer (see params.h).
template <class F, int WARP_K, int BLOCK_K, bool GRAD, Tiers TIERS, class MakeSource>
__device__ void serve(const sk_gram_params &p, MakeSource make) {
    using E = typename F::elem;
    constexpr int WARPS = static_cast<int>(SK_GRAM_THREADS) / 32;
    constexpr int WTS = static_cast<int>(SK_GRAM_WARP_TILE);
    constexpr int BTS = static_cast<int>(SK_GRAM_BLOCK_TILE);
    constexpr int NT = static_cast<int>(SK_GRAM_THREADS);
    // The small kernel (dense bounds, no gradients) gives each lane a whole 2 x 4 tile; every
    // other team splits the upper triangle (see FullProduct for why the two differ).
    constexpr bool FULL = TIERS == Tiers::WARPS_ONLY;
    constexpr int SMALL_PAD = static_cast<int>(SK_GRAM_SMALL_PAD);
    using WarpProduct =
        typename std::conditional<FULL, FullProduct<F, 2, SMALL_PAD>,
                                  TriangleProduct<F, WTS, max_tiles(WARP_K, WTS, 32)>>::type;
    using BlockProduct = TriangleProduct<F, BTS, max_tiles(BLOCK_K, BTS, NT)>;
    static_assert(!FULL || (WARP_K % SMALL_PAD == 0 && WARP_K / 2 * (WARP_K / SMALL_PAD) <= 32),
                  "a lane's whole tile: at most one per lane");
    constexpr int WARP_BUF = WARP_K * (WARP_K + WarpProduct::LD_PAD);  // elements per warp
    __shared__ History history[WARPS];
    __shared__ Cplx<typename F::real> twiddles[WARPS][2 * SK_GRAM_MAX_TAPS];
    E *smem = reinterpret_cast<E *>(SK_DYNAMIC_SMEM());
    const uint32_t block = blockIdx.x;
    if constexpr (TIERS != Tiers::BLOCKS_ONLY) {
        if (TIERS == Tiers::WARPS_ONLY || block < p.warp_blocks) {
            const int warp = static_cast<int>(threadIdx.x) / 32;
            const uint32_t slot = block * WARPS + warp;
            if (slot >= p.warp_matrices) return;  // whole warps leave; no block barrier follows
            const uint32_t index = p.order[slot];
            auto src = make(index, twiddles[warp]);
            SK_EXPECT(src.k <= WARP_K);
            E *buf = smem + (GRAD ? 2 : 1) * warp * WARP_BUF;
            bound_one<F, 32, WarpProduct, GRAD>(p, src, p.out + index, buf, WARP_BUF,
                                                 history[warp], buf + WARP_BUF);
            return;
        }
    }
    if constexpr (TIERS != Tiers::WARPS_ONLY) {
        const uint32_t slot = p.warp_matrices + p.block_first + (block - p.warp_blocks);
        SK_EXPECT(slot < p.count);
        const uint32_t index = p.order[slot];
        auto src = make(index, twiddles[0]);
        SK_EXPECT(src.k <= BLOCK_K);
        bound_one<F, NT, BlockProduct, GRAD>(p, src, p.out + index, smem,
                                             static_cast<int>(p.block_capacity), history[0],
                                             smem + p.block_capacity);
    }
}

constexpr int WARP_K = static_cast<int>(SK_GRAM_WARP_K);

template <class T, class R, Tiers TIERS, int WARP_SIDE, int BLOCK_SIDE>
__device__ void dense(const sk_gram_params &p) {
    using F = RealField<R>;
    serve<F, WARP_SIDE, BLOCK_SIDE, false, TIERS>(p, [&](uint32_t index, Cplx<R> *) {
        return DenseSource<T, F>(p, index);
    });
}

template <class T, class R>
__device__ void dense_grad(const sk_gram_params &p) {
    using F = RealField<R>;
    constexpr int BLOCK_K =
        sizeof(R) == 8 ? static_cast<int>(SK_GRAM_MAX_K_GRAD64) : static_cast<int>(SK_GRAM_MAX_K);
    serve<F, WARP_K, BLOCK_K, true, Tiers::BOTH>(p, [&](uint32_t index, Cplx<R> *) {
        return DenseSource<T, F>(p, index);
    });
}

// NaN-propagating max (fmax drops NaN; a NaN block makes the layer's bound NaN).
__device__ __forceinline__ double max_nan(double a, double b) {
    return (a != a || b != b) ? nan_f64() : fmax(a, b);
}

template <class T, class R>
__device__ void conv(const sk_gram_params &p) {
    using F = ComplexField<R>;
    constexpr int BLOCK_K =
        sizeof(R) == 8 ? static_cast<int>(SK_GRAM_MAX_K_COMPLEX64) : static_cast<int>(SK_GRAM_MAX_K);
    if (p.step == SK_GRAM_CONV_ITEMS) {
        serve<F, WARP_K, BLOCK_K, false, Tiers::BOTH>(p, [&](uint32_t index, Cplx<R> *tw) {
            return ConvSource<T, F>(p, index, tw);
        });
        return;
    }
    // SK_GRAM_CONV_REDUCE: warp w of the grid reduces layer w's frequency blocks.
    const uint32_t layer = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = static_cast<int>(threadIdx.x) % 32;
    if (layer >= p.layers) return;  // whole warps
    double upper = 0.0, lower = 0.0, iters = 0.0, converged = 1.0, certified = 1.0;
    for (uint32_t i = p.layer_start[layer] + lane; i < p.layer_start[layer + 1]; i += 32) {
        const sk_gram_bound b = p.out[i];
        upper = max_nan(upper, b.upper);
        lower = max_nan(lower, b.lower);
        iters = fmax(iters, static_cast<double>(b.iterations));
        converged = fmin(converged, (b.flags & SK_GRAM_CONVERGED) ? 1.0 : 0.0);
        certified = fmin(certified, (b.flags & SK_GRAM_CERTIFIED) ? 1.0 : 0.0);
    }
#pragma unroll
    for (int m = 16; m >= 1; m /= 2) {
        upper = max_nan(upper, __shfl_xor_sync(0xffffffffu, upper, m));
        lower = max_nan(lower, __shfl_xor_sync(0xffffffffu, lower, m));
        iters = fmax(iters, __shfl_xor_sync(0xffffffffu, iters, m));
        converged = fmin(converged, __shfl_xor_sync(0xffffffffu, converged, m));
        certified = fmin(certified, __shfl_xor_sync(0xffffffffu, certified, m));
    }
    if (p.layer_argmax != nullptr) {
        // The first block with the layer's upper bound (any block when it is NaN: then every
        // block of the layer is NaN), for the gradient launch.
        uint32_t first = UINT32_MAX;
        for (uint32_t i = p.layer_start[layer] + lane; i < p.layer_start[layer + 1]; i += 32) {
            const double b = p.out[i].upper;
            if (b == upper || (b != b && upper != upper)) {
                first = i;
                break;
            }
        }
#pragma unroll
        for (int m = 16; m >= 1; m /= 2) first = min(first, __shfl_xor_sync(0xffffffffu, first, m));
        if (lane == 0) p.layer_argmax[layer] = first;
    }
    if (lane == 0) {
        const bool empty = p.layer_start[layer] == p.layer_start[layer + 1];
        sk_gram_bound *o = p.layer_out + layer;
        o->upper = upper;
        o->lower = lower;
        o->iterations = empty ? p.iterations : static_cast<uint32_t>(iters);
        o->flags = (certified > 0.0 && p.certified ? SK_GRAM_CERTIFIED : 0u) |
                   (converged > 0.0 && p.tolerance > 0.0 && !empty ? SK_GRAM_CONVERGED : 0u);
    }
}


// ---- the large tier: Gram powers in global memory (params.h describes the launches) ---------
// For sides above what one block's shared memory holds. Each GRAM launch squares every large
// item's M_t tile by tile: a 256-thread block computes one TB x TB upper tile (16 x 16 threads,
// MT x MT entries each, in two halves so each thread's runs are contiguous), streaming
// LARGE_DEPTH-row panels of the tile's two column blocks through shared memory; it writes the
// tile and its mirror (so M_{t+1} is exactly Hermitian, as on chip) and its sums of
// |entries|^2. Everything the bounds use is what the on-chip path computes, so finish() and
// its rounding analysis are shared; only summation orders differ (the gamma bounds hold for
// any order).
constexpr int LARGE_NT = static_cast<int>(SK_GRAM_THREADS);
constexpr int LARGE_DEPTH = static_cast<int>(SK_GRAM_LARGE_DEPTH);
constexpr int LARGE_CHUNKS = static_cast<int>(SK_GRAM_LARGE_CHUNKS);

template <class F>
struct LargeShape {
    // Real f32: 8 x 8 per thread (128-wide tiles); f64 and complex: 4 x 4 (64-wide), so the
    // accumulators stay in registers.
    static constexpr bool WIDE = !F::COMPLEX && sizeof(typename F::real) == 4;
    static constexpr int MT = WIDE ? 8 : 4;
    static constexpr int TB = 16 * MT;
    static constexpr int H = MT / 2;
    static_assert(TB == static_cast<int>(WIDE ? SK_GRAM_LARGE_TILE_WIDE : SK_GRAM_LARGE_TILE),
                  "params.h tiles");
    // Row (or column) of the tile that entry u of thread coordinate c owns.
    __device__ static int at(int c, int u) { return u < H ? c * H + u : TB / 2 + c * H + (u - H); }
};

struct LargeState {
    History hist;
    double low;      // the level lower bound at the last STATS that needed one
    double trace;    // of M_1
    double diagmax;  // of M_1
    int done_at;     // adaptive: the step at which upper / lower <= 1 + tol held, else 0
    int pexps[SK_GRAM_MAX_STEPS];  // gradients: P_{t+1} = P_t M_{t+1} 2^-pexps[t]
};
static_assert(sizeof(LargeState) <= 8 * SK_GRAM_LARGE_STATE_DOUBLES, "params.h state size");

enum class ScanStatus { Ok, Empty, Zero, Nan, Inf };

// One large item's view of the workspace. Offsets count from the served suffix's first entry.
template <class F>
struct LargeItem {
    using E = typename F::elem;
    using S = LargeShape<F>;
    uint32_t index;
    int k, l, nb, k_pad, tiles;
    LargeState *state;
    double *scan;     // [2][LARGE_CHUNKS]: largest |entry|, NaN flag
    double *fpart;    // [2][tiles]: M_t's per-tile sums of |entries|^2, by the parity of t
    double *colpart;  // [nb][k_pad]: per row-tile sums of |entries|^2 of each column
    double *pfpart;   // [tiles]: gradients: P_t's per-tile sums of |entries|^2
    E *m0, *m1;       // M_t: m0 for even t, m1 for odd
    E *x;             // convolutions: X 2^-s, l x k_pad
    E *p0, *p1;       // gradients: P_t (t >= 2) by parity, or NULL

    __device__ LargeItem(const sk_gram_params &p, const sk_gram_large_item &it, int k_, int l_,
                         bool conv) {
        const sk_gram_large_item &base = p.large[0];
        index = it.index;
        k = k_;
        l = l_;
        nb = (k + S::TB - 1) / S::TB;
        k_pad = nb * S::TB;
        tiles = nb * (nb + 1) / 2;
        double *d = p.work + (it.doubles - base.doubles);
        state = reinterpret_cast<LargeState *>(d);
        scan = d + SK_GRAM_LARGE_STATE_DOUBLES;
        fpart = scan + 2 * LARGE_CHUNKS;
        colpart = fpart + 2 * tiles;
        pfpart = colpart + static_cast<uint64_t>(nb) * k_pad;
        E *e = static_cast<E *>(p.work_elems) + (it.elems - base.elems);
        const uint64_t kk = static_cast<uint64_t>(k_pad) * k_pad;
        m0 = e;
        m1 = e + kk;
        x = conv ? e + 2 * kk : nullptr;
        E *g = p.work_grad ? static_cast<E *>(p.work_grad) + (it.grad_elems - base.grad_elems)
                           : nullptr;
        p0 = g;
        p1 = g ? g + kk : nullptr;
    }
    // P_t (t >= 2; P_1 = M_1).
    __device__ E *product(uint32_t t) const { return t == 1 ? m1 : (t & 1) ? p1 : p0; }
    // X[r][c] 2^-s: the stored block (convolutions) or through the source (dense).
    template <class Src>
    __device__ E load_x(const Src &src, int r, int c, int s) const {
        return x != nullptr ? x[static_cast<uint64_t>(r) * k_pad + c] : src.load(r, c, s);
    }
    // Whether X is read across W's rows (dense X = W^T).
    template <class Src>
    __device__ bool x_transposed(const Src &src) const {
        return x == nullptr && src.transposed;
    }

    // The SCAN partials combined (max and OR: order-independent), and s = ilogb(max |entry|).
    __device__ ScanStatus status(int &s) const {
        double amax = 0.0, nan = 0.0;
        for (int c = 0; c < LARGE_CHUNKS; ++c) {
            amax = fmax(amax, scan[c]);
            nan = fmax(nan, scan[LARGE_CHUNKS + c]);
        }
        s = 0;
        if (k == 0) return ScanStatus::Empty;
        if (nan != 0.0) return ScanStatus::Nan;
        if (amax > DBL_MAX) return ScanStatus::Inf;
        if (amax == 0.0) return ScanStatus::Zero;
        s = ilogb(amax);
        return ScanStatus::Ok;
    }
    // (A select, not an indexed array: that would put the whole view in local memory.)
    __device__ E *gram(uint32_t t) const { return (t & 1) ? m1 : m0; }
};

// The served entry of `large` for a block of a launch with per-item block counts given by
// `first` (a prefix over the suffix, offset by its first entry): binary search.
__device__ __forceinline__ uint32_t large_entry(const sk_gram_params &p, uint32_t block,
                                                uint32_t sk_gram_large_item::*first_of) {
    auto first = [&](uint32_t i) { return p.large[i].*first_of - p.large[0].*first_of; };
    uint32_t lo = 0, hi = p.large_count;  // the last i with first(i) <= block
    while (hi - lo > 1) {
        const uint32_t mid = (lo + hi) / 2;
        if (first(mid) <= block) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// The layer of convolution item `index` (binary search of layer_start).
__device__ __forceinline__ uint32_t layer_of(const sk_gram_params &p, uint32_t index) {
    uint32_t lo = 0, hi = p.layers;  // the last layer whose first item is <= index
    while (hi - lo > 1) {
        const uint32_t mid = (lo + hi) / 2;
        if (p.layer_start[mid] <= index) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// Tile q of the upper triangle of nb x nb tiles, numbered row by row.
__device__ __forceinline__ void upper_tile(int q, int nb, int &bi, int &bj) {
    int r = 0;
    while (q >= nb - r) {
        q -= nb - r;
        ++r;
    }
    bi = r;
    bj = r + q;
}

// One row of the panels into thread (tx, ty)'s tile: acc[u][v] += conj(a[S::at(ty, u)])
// b[S::at(tx, v)], a and b the row of A's and of B's panel (TB entries each).
template <class F>
__device__ __forceinline__ void multiply_row(const typename F::elem *a, const typename F::elem *b,
                                             int tx, int ty,
                                             typename F::elem (&acc)[LargeShape<F>::MT]
                                                                    [LargeShape<F>::MT]) {
    using S = LargeShape<F>;
    constexpr int MT = S::MT;
    typename F::elem x[MT], y[MT];
    load_run<S::H>(a + S::at(ty, 0), x);
    load_run<S::H>(a + S::at(ty, S::H), x + S::H);
    load_run<S::H>(b + S::at(tx, 0), y);
    load_run<S::H>(b + S::at(tx, S::H), y + S::H);
#pragma unroll
    for (int u = 0; u < MT; ++u)
#pragma unroll
        for (int v = 0; v < MT; ++v) F::acc_conj(acc[u][v], x[u], y[v]);
}

// acc = sum over rows p < rows of conj(A[p][i0 + row]) B[p][j0 + col], with load_a(p, c) and
// load_b(p, c) giving A[p][c] and B[p][c] (zero outside the matrices); `same`: A = B (a
// diagonal tile then loads one panel). Panels go through registers (the next one is fetched
// while the current one is multiplied) into shared memory. *_fastest: consecutive threads take
// consecutive p (a transposed source), otherwise consecutive columns.
template <class F, class LoadA, class LoadB>
__device__ void large_tile_product(const LoadA &load_a, const LoadB &load_b, bool same, int rows,
                                   bool a_fastest, bool b_fastest, int i0, int j0,
                                   typename F::elem *sa, typename F::elem *sb,
                                   typename F::elem (&acc)[LargeShape<F>::MT][LargeShape<F>::MT]) {
    using E = typename F::elem;
    using S = LargeShape<F>;
    constexpr int TB = S::TB, MT = S::MT, PER = LARGE_DEPTH * TB / LARGE_NT;
    const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
    const bool one_panel = same && i0 == j0;
    E ra[PER], rb[PER];
    auto slot = [&](int q, bool fastest, int &pp, int &c) {
        const int e = tid + q * LARGE_NT;
        if (fastest) {
            pp = e % LARGE_DEPTH;
            c = e / LARGE_DEPTH;
        } else {
            pp = e / TB;
            c = e % TB;
        }
    };
    auto fetch = [&](int p0) {
#pragma unroll
        for (int q = 0; q < PER; ++q) {
            int pp, c;
            slot(q, a_fastest, pp, c);
            ra[q] = p0 + pp < rows ? load_a(p0 + pp, i0 + c) : F::zero();
            if (!one_panel) {
                slot(q, b_fastest, pp, c);
                rb[q] = p0 + pp < rows ? load_b(p0 + pp, j0 + c) : F::zero();
            }
        }
    };
#pragma unroll
    for (int u = 0; u < MT; ++u)
#pragma unroll
        for (int v = 0; v < MT; ++v) acc[u][v] = F::zero();
    const E *pb = one_panel ? sa : sb;
    fetch(0);
    for (int p0 = 0; p0 < rows; p0 += LARGE_DEPTH) {
        __syncthreads();  // the previous panel has been multiplied
#pragma unroll
        for (int q = 0; q < PER; ++q) {
            int pp, c;
            slot(q, a_fastest, pp, c);
            sa[pp * TB + c] = ra[q];
            if (!one_panel) {
                slot(q, b_fastest, pp, c);
                sb[pp * TB + c] = rb[q];
            }
        }
        __syncthreads();
        if (p0 + LARGE_DEPTH < rows) fetch(p0 + LARGE_DEPTH);
#pragma unroll 4
        for (int pp = 0; pp < LARGE_DEPTH; ++pp) {
            multiply_row<F>(sa + pp * TB, pb + pp * TB, tx, ty, acc);
        }
    }
}

// large_tile_product for operands stored row-major in the workspace (Gram powers, the products
// P, convolution blocks X): A and B with row stride ld, columns i0.. and j0.. inside the
// matrices, rows p >= rows read as zeros. The panels go from global to shared memory by
// asynchronous copies, double-buffered: panel i + 1 is in flight while panel i is multiplied,
// with one barrier per panel. Without the register staging of large_tile_product (and its
// per-entry loads, bounds tests and stores) the products fit the 128 registers of two blocks per
// SM. Panels are DEPTH rows deep (half LARGE_DEPTH for 16-byte complex f64 entries), so the two
// stages take 4 DEPTH TB entries: 32 KiB in every field.
template <class F>
struct DirectPanels {
    using E = typename F::elem;
    static constexpr int TB = LargeShape<F>::TB;
    static constexpr int DEPTH = sizeof(E) > 8 ? LARGE_DEPTH / 2 : LARGE_DEPTH;
    static constexpr int PER_ROW = TB * static_cast<int>(sizeof(E)) / 16;  // 16-byte chunks
    static constexpr int CHUNKS = DEPTH * PER_ROW / LARGE_NT;              // per thread, operand
    static_assert(DEPTH * PER_ROW % LARGE_NT == 0, "whole chunks per thread");
    static constexpr int BYTES = 4 * DEPTH * TB * static_cast<int>(sizeof(E));
};

template <class F>
__device__ void large_tile_product_direct(const typename F::elem *a, const typename F::elem *b,
                                          int ld, int rows, bool same, int i0, int j0,
                                          typename F::elem *smem,
                                          typename F::elem (&acc)[LargeShape<F>::MT][LargeShape<F>::MT]) {
    using E = typename F::elem;
    using S = LargeShape<F>;
    using D = DirectPanels<F>;
    constexpr int TB = S::TB, MT = S::MT, DEPTH = D::DEPTH, EPC = 16 / static_cast<int>(sizeof(E));
    const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
    const bool one_panel = same && i0 == j0;
    const int panels = (rows + DEPTH - 1) / DEPTH;
    // Stage g holds panel i (g = i & 1): A's rows at smem + 2 g DEPTH TB, B's after them.
    auto issue = [&](int i) {
        E *sa = smem + (i & 1) * 2 * DEPTH * TB;
#pragma unroll
        for (int r = 0; r < D::CHUNKS; ++r) {
            const int chunk = tid + r * LARGE_NT;
            const int pp = chunk / D::PER_ROW, c = chunk % D::PER_ROW * EPC;
            const int row = i * DEPTH + pp;
            const bool in = row < rows;
            const uint64_t at = static_cast<uint64_t>(in ? row : 0) * ld;
            copy_async16(sa + pp * TB + c, a + at + i0 + c, in);
            if (!one_panel) copy_async16(sa + DEPTH * TB + pp * TB + c, b + at + j0 + c, in);
        }
        copy_async_commit();
    };
#pragma unroll
    for (int u = 0; u < MT; ++u)
#pragma unroll
        for (int v = 0; v < MT; ++v) acc[u][v] = F::zero();
    issue(0);
    for (int i = 0; i < panels; ++i) {
        copy_async_wait<0>();
        // Every thread's copies of panel i have landed, and every thread is done with panel
        // i - 1, whose stage panel i + 1 takes.
        __syncthreads();
        if (i + 1 < panels) issue(i + 1);
        const E *sa = smem + (i & 1) * 2 * DEPTH * TB;
        const E *pb = one_panel ? sa : sa + DEPTH * TB;
        // Not unrolled: an unrolled loop loads the next rows' operands early, and with those
        // registers the 8 x 8 tiles spill at 128; the latency is hidden by the other block.
#pragma unroll 1
        for (int pp = 0; pp < DEPTH; ++pp) {
            multiply_row<F>(sa + pp * TB, pb + pp * TB, tx, ty, acc);
        }
    }
}

// Shared memory of a large-tier block: the panels (two, or DirectPanels' two stages), later
// reused for the column sums.
template <class F>
__host__ __device__ constexpr int large_smem_bytes() {
    constexpr int TB = LargeShape<F>::TB;
    constexpr int panels = 2 * LARGE_DEPTH * TB * static_cast<int>(sizeof(typename F::elem));
    constexpr int stages = DirectPanels<F>::BYTES;
    constexpr int sums = 2 * 16 * TB * static_cast<int>(sizeof(double));
    return panels > stages ? (panels > sums ? panels : sums) : (stages > sums ? stages : sums);
}

// The origin (i0, j0) of upper tile q of an item's k_pad x k_pad matrix.
template <class F, class Item>
__device__ __forceinline__ void large_tile_origin(const Item &it, int q, int &i0, int &j0) {
    int bi, bj;
    upper_tile(q, it.nb, bi, bj);
    i0 = bi * LargeShape<F>::TB;
    j0 = bj * LargeShape<F>::TB;
}

// Stores upper tile q of a Hermitian product, acc = A^H B, times `scale` (a power of two): GRAM
// step t's M_t = (M_{t-1} 2^-e)^2 (t >= 2) or X^H X (t = 1), or PGRAM's P_t = P_{t-1} M_t 2^-g
// (P and M commute). The tile and its mirror go to dst, the tile's sum of |entries|^2
// (off-diagonal entries twice) to *fpart and, when colpart is set, its column sums to colpart.
// The panels in smem must be free (the caller's product is done with them; the first barrier
// here orders the reuse).
template <class F, class Item>
__device__ void large_hermitian_store(const Item &it, int q,
                                      const typename F::elem (&acc)[LargeShape<F>::MT][LargeShape<F>::MT],
                                      double scale, typename F::elem *dst, double *fpart,
                                      double *colpart, unsigned char *smem) {
    using E = typename F::elem;
    using R = typename F::real;
    using S = LargeShape<F>;
    constexpr int TB = S::TB, MT = S::MT;
    int bi, bj;
    upper_tile(q, it.nb, bi, bj);
    const int i0 = bi * TB, j0 = bj * TB;
    const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
    const int ld = it.k_pad;
    // Per thread, the sums over its rows of each of its columns (entries on or above the
    // diagonal) and over its columns of each of its rows (entries strictly above: their
    // mirrors' columns) go straight to shared memory, each slot owned by one thread: kept in
    // registers beside the tile, those 2 MT doubles made the products kernel spill at 128.
    double *col_red = reinterpret_cast<double *>(smem);  // [16 ty][TB]
    double *row_red = col_red + 16 * TB;                 // [16 tx][TB]
    if (colpart != nullptr) {
        __syncthreads();  // the panels are free
#pragma unroll
        for (int u = 0; u < MT; ++u) {
            col_red[ty * TB + S::at(tx, u)] = 0.0;
            row_red[tx * TB + S::at(ty, u)] = 0.0;
        }
    }
    double fro = 0.0;
#pragma unroll
    for (int u = 0; u < MT; ++u)
#pragma unroll
        for (int v = 0; v < MT; ++v) {
            const int i = i0 + S::at(ty, u), j = j0 + S::at(tx, v);
            if (i > j) continue;  // diagonal tiles: the mirror of an entry above
            E val = F::scale(acc[u][v], static_cast<R>(scale));
            if (i == j) val = F::real_part(val);
            dst[static_cast<uint64_t>(i) * ld + j] = val;
            const double a2 = F::abs2(val);
            if (colpart != nullptr) col_red[ty * TB + S::at(tx, v)] += a2;
            if (i != j) {
                dst[static_cast<uint64_t>(j) * ld + i] = F::conj(val);
                if (colpart != nullptr) row_red[tx * TB + S::at(ty, u)] += a2;
                fro += 2.0 * a2;
            } else {
                fro += a2;
            }
        }
    GramTeam<LARGE_NT> team;
    fro = team.sum(fro);  // (a barrier: without colpart, the panels are then free)
    if (tid == 0) *fpart = fro;
    if (colpart == nullptr) return;
    __syncthreads();
    for (int c = tid; c < TB; c += LARGE_NT) {
        double sc = 0.0, sr = 0.0;
        for (int y = 0; y < 16; ++y) {
            sc += col_red[y * TB + c];
            sr += row_red[y * TB + c];
        }
        if (bi == bj) {
            colpart[static_cast<uint64_t>(bi) * ld + j0 + c] = sc + sr;
        } else {
            colpart[static_cast<uint64_t>(bi) * ld + j0 + c] = sc;
            colpart[static_cast<uint64_t>(bj) * ld + i0 + c] = sr;
        }
    }
}

// GRADX, one tile of G = X P (l x k; P = the identity when pm is NULL), times factor, written
// through the source (W's layout, or the convolution taps). As a product of the tile form:
// G[r][j] = sum_c conj(A[c][r]) B[c][j] with A = X^H, B = P.
template <class F, class Item, class Src>
__device__ void large_gradient_tile(const Item &it, const Src &src, int q, int s,
                                    const typename F::elem *pm, double factor,
                                    unsigned char *smem) {
    using E = typename F::elem;
    using S = LargeShape<F>;
    constexpr int TB = S::TB, MT = S::MT;
    E *sa = reinterpret_cast<E *>(smem);
    E *sb = sa + LARGE_DEPTH * TB;
    const int bi = q / it.nb, bj = q % it.nb;  // row tile of X, column tile
    const int r0 = bi * TB, j0 = bj * TB, k = it.k, l = it.l, ld = it.k_pad;
    const auto load_x = [&](int c, int r) {  // conj(X[r][c]) = A[c][r]
        return r < l && c < k ? F::conj(it.load_x(src, r, c, s)) : F::zero();
    };
    const auto load_p = [&](int c, int j) {
        if (pm == nullptr) return c == j ? F::from(1.0) : F::zero();
        return pm[static_cast<uint64_t>(c) * ld + j];
    };
    E acc[MT][MT];
    // X is read along c (its rows) unless it is W^T in W's layout.
    large_tile_product<F>(load_x, load_p, false, it.k_pad, !it.x_transposed(src), false, r0, j0,
                          sa, sb, acc);
    const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
#pragma unroll
    for (int u = 0; u < MT; ++u)
#pragma unroll
        for (int v = 0; v < MT; ++v) {
            const int r = r0 + S::at(ty, u), j = j0 + S::at(tx, v);
            if (r < l && j < k) src.store_grad(r, j, acc[u][v], factor);
        }
}

// The sum of n doubles in a fixed order (so every block that forms it gets the same value).
__device__ double ordered_sum(GramTeam<LARGE_NT> &team, const double *v, int n) {
    double s = 0.0;
    for (int i = team.rank; i < n; i += LARGE_NT) s += v[i];
    return team.sum(s);
}

// STATS step t (one block per item): see params.h.
template <class F, class Item>
__device__ void large_stats(const sk_gram_params &p, const Item &it) {
    GramTeam<LARGE_NT> team;
    LargeState *st = it.state;
    const int t = static_cast<int>(p.t);
    const typename F::elem *m = it.gram(p.t);
    const int ld = it.k_pad, k = it.k;
    const double fro2 = ordered_sum(team, it.fpart + (t & 1) * it.tiles, it.tiles);
    if (team.rank == 0) {
        st->hist.fro2[t] = fro2;
        st->hist.exps[t] = ilogb(fro2) >> 1;
        if (t == 1) st->done_at = 0;
    }
    if (p.grad != nullptr) {
        // The exponent PGRAM(t) applies: from ||P_{t-1}||_F^2 (P_1 = M_1), as on chip.
        if (t == 1 && team.rank == 0) st->pexps[1] = ilogb(fro2) >> 1;
        if (t >= 3) {
            const double pfro2 = ordered_sum(team, it.pfpart, it.tiles);
            if (team.rank == 0) st->pexps[t - 1] = ilogb(pfro2) >> 1;
        }
    }
    if (t == 1) {
        double trace = 0.0, diagmax = 0.0;
        for (int j = team.rank; j < k; j += LARGE_NT) {
            const double d = F::re(m[static_cast<uint64_t>(j) * ld + j]);
            trace += d;
            diagmax = fmax(diagmax, d);
        }
        trace = team.sum(trace);
        diagmax = team.max(diagmax);
        if (team.rank == 0) {
            st->trace = trace;
            st->diagmax = diagmax;
        }
    }
    const bool need_low = p.tolerance > 0.0 || p.t == p.iterations;
    if (!need_low || p.iterations == 0) return;
    // The largest column (the first of equal ones) from the per-row-tile column sums.
    double colmax = -1.0;
    int jmax = k;
    for (int j = team.rank; j < k; j += LARGE_NT) {
        double cs = 0.0;
        for (int r = 0; r < it.nb; ++r) cs += it.colpart[static_cast<uint64_t>(r) * ld + j];
        if (cs > colmax) {
            colmax = cs;
            jmax = j;
        }
    }
    const double cmax = team.max(colmax);
    const int j = static_cast<int>(team.reduce(colmax == cmax ? static_cast<double>(jmax) : k,
                                               [](double a, double b) { return fmin(a, b); }));
    // Rayleigh quotient of x = M e_j: x_c = M[c][j] = conj(M[j][c]) (stored exactly so), so
    // (M x)_i = sum_c M[i][c] conj(M[j][c]) reads rows; one warp per row.
    const int warp = team.rank / 32, lane = team.rank % 32;
    const typename F::elem *mj = m + static_cast<uint64_t>(j) * ld;
    double num = 0.0;
    for (int i = warp; i < k; i += LARGE_NT / 32) {
        const typename F::elem *mi = m + static_cast<uint64_t>(i) * ld;
        double yre = 0.0, yim = 0.0;
        for (int c = lane; c < k; c += 32) {
            const auto a = mi[c], b = mj[c];  // a conj(b)
            yre += F::re(a) * F::re(b) + F::im(a) * F::im(b);
            yim += F::im(a) * F::re(b) - F::re(a) * F::im(b);
        }
#pragma unroll
        for (int o = 16; o >= 1; o /= 2) {
            yre += __shfl_xor_sync(0xffffffffu, yre, o);
            yim += __shfl_xor_sync(0xffffffffu, yim, o);
        }
        const auto xi = mj[i];  // conj(x_i) = M[j][i]
        if (lane == 0) num += F::re(xi) * yre - F::im(xi) * yim;  // Re(conj(x_i) y_i)
    }
    num = team.sum(num);
    const double low = fmax(sqrt(cmax), num / cmax);
    if (team.rank == 0) {
        st->low = low;
        const double log_target = p.tolerance > 0.0 ? log1p(p.tolerance) : 0.0;
        if (p.tolerance > 0.0 && 0.5 * log(fro2) - log(low) <= ldexp(log_target, t))
            st->done_at = t;
    }
}

// FINISH (rank 0 of one block per item): the bounds from the state, as bound_one does.
template <class F, class Item, class Src>
__device__ void large_finish(const sk_gram_params &p, const Item &it, const Src &src) {
    if (threadIdx.x != 0) return;
    sk_gram_bound *out = p.out + it.index;
    const uint32_t cert_flag = p.certified ? SK_GRAM_CERTIFIED : 0u;
    auto write = [&](double upper, double lower, uint32_t iters, uint32_t flags) {
        out->upper = upper;
        out->lower = lower;
        out->iterations = iters;
        out->flags = flags;
    };
    int s;
    switch (it.status(s)) {
        case ScanStatus::Empty:
        case ScanStatus::Zero:
            write(0.0, 0.0, p.iterations, cert_flag);
            return;
        case ScanStatus::Nan:
            write(nan_f64(), nan_f64(), p.iterations, cert_flag);
            return;
        case ScanStatus::Inf:
            write(inf_f64(), inf_f64(), p.iterations, cert_flag);
            return;
        case ScanStatus::Ok:
            break;
    }
    const LargeState *st = it.state;
    const double dft_err = p.certified ? src.dft_error() : 0.0;
    if (p.iterations == 0) {
        double upper = sqrt(st->trace);
        if (p.certified) upper = up(certified_frobenius<F>(st->trace, it.k, it.l) + dft_err);
        write(ldexp(upper, s), ldexp(sqrt(st->diagmax), s), 0, cert_flag);
        return;
    }
    const int T = st->done_at > 0 ? st->done_at : static_cast<int>(p.iterations);
    double upper, lower;
    finish<F>(st->hist, T, st->low, st->trace, it.k, it.l, p.certified != 0, dft_err, upper,
              lower);
    write(ldexp(upper, s), ldexp(lower, s), static_cast<uint32_t>(T),
          cert_flag | (st->done_at > 0 ? SK_GRAM_CONVERGED : 0u));
}

// GRADX (after FINISH): the gradient of the upper bound, as bound_one forms it on chip:
// G = X P ||A||_p / tr(M_1 P) with P = M_1 ... M_T (T = 0: X / ||X||_F), tile `part` of the
// l x k result; degenerate items get NaN or zero gradients (split over their tiles).
template <class F, class Item, class Src>
__device__ void large_gradient(const sk_gram_params &p, const Item &it, const Src &src,
                               uint32_t part, unsigned char *smem) {
    int s;
    const ScanStatus status = it.status(s);
    if (status != ScanStatus::Ok) {
        if (status == ScanStatus::Empty) return;
        const double v = status == ScanStatus::Zero ? 0.0 : nan_f64();
        const uint64_t n = src.raw_len();
        const uint64_t tiles = static_cast<uint64_t>((it.l + LargeShape<F>::TB - 1) /
                                                     LargeShape<F>::TB) * it.nb;
        const uint64_t per = (n + tiles - 1) / tiles;
        const uint64_t lo = per * part, hi = lo + per < n ? lo + per : n;
        for (uint64_t e = lo + threadIdx.x; e < hi; e += LARGE_NT) src.fill_grad(e, v);
        return;
    }
    GramTeam<LARGE_NT> team;
    src.prepare(team, s);  // convolutions: the twiddles store_grad maps back through
    const LargeState *st = it.state;
    const int T = st->done_at > 0 ? st->done_at : static_cast<int>(p.iterations);
    if (T == 0) {
        large_gradient_tile<F>(it, src, static_cast<int>(part), s, nullptr, 1.0 / sqrt(st->trace),
                               smem);
        return;
    }
    int esum = 0, pexp = 0;
    for (int j = 1; j < T; ++j) {
        esum += st->hist.exps[j];
        pexp += st->pexps[j];
    }
    const double factor = ldexp(schatten(st->hist, T) / st->hist.fro2[T], pexp - 2 * esum);
    large_gradient_tile<F>(it, src, static_cast<int>(part), s, it.product(T), factor, smem);
}

// Whether a large-tier launch reads both operands of its products from the workspace (the
// Gram powers, P, a convolution's X): those run in the products kernel. Dense step 1 reads W
// through its source (prescaled, maybe transposed, converted from storage): the phase kernel.
// src/gram/gpu.rs makes the same choice of kernel.
__device__ __forceinline__ bool large_direct(uint32_t step, uint32_t t, bool conv) {
    return step == SK_GRAM_LARGE_PGRAM || (step == SK_GRAM_LARGE_GRAM && (t >= 2 || conv));
}

// One phase of the large tier for every served item. `make(index, twiddles)` builds the
// item's source (dense or convolution). The products that read the workspace (large_direct:
// nearly all of the tier's arithmetic) have kernels of their own (PRODUCTS): without the other
// phases' f64 code and the register-staged loads, ptxas keeps them within the 128 registers of
// two blocks per SM (the combined kernel needed up to 203: one block), so one block's barriers
// overlap the other's FMAs.
template <class F, bool CONV, bool PRODUCTS, class MakeSource>
__device__ void large(const sk_gram_params &p, MakeSource make) {
    using E = typename F::elem;
    using S = LargeShape<F>;
    __shared__ Cplx<typename F::real> twiddles[2 * SK_GRAM_MAX_TAPS];
    // The panels, then sums; 16-byte aligned for load_run and the asynchronous copies.
    __shared__ __align__(16) double smem_words[large_smem_bytes<F>() / 8];
    unsigned char *smem = reinterpret_cast<unsigned char *>(smem_words);
    GramTeam<LARGE_NT> team;
    const uint32_t block = blockIdx.x;
    SK_EXPECT(large_direct(p.step, p.t, CONV) == PRODUCTS);
    uint32_t entry, part = 0;
    switch (p.step) {
        case SK_GRAM_LARGE_SCAN:
        case SK_GRAM_LARGE_FORM:
            entry = block / LARGE_CHUNKS;
            part = block % LARGE_CHUNKS;
            break;
        case SK_GRAM_LARGE_GRAM:
        case SK_GRAM_LARGE_PGRAM:
            entry = large_entry(p, block, S::WIDE ? &sk_gram_large_item::first_wide
                                                  : &sk_gram_large_item::first_tile);
            part = block - ((S::WIDE ? p.large[entry].first_wide : p.large[entry].first_tile) -
                            (S::WIDE ? p.large[0].first_wide : p.large[0].first_tile));
            break;
        case SK_GRAM_LARGE_GRADX:
            entry = large_entry(p, block, S::WIDE ? &sk_gram_large_item::first_grad_wide
                                                  : &sk_gram_large_item::first_grad);
            part = block - ((S::WIDE ? p.large[entry].first_grad_wide : p.large[entry].first_grad) -
                            (S::WIDE ? p.large[0].first_grad_wide : p.large[0].first_grad));
            break;
        default:
            entry = block;
    }
    SK_EXPECT(entry < p.large_count);
    const sk_gram_large_item rec = p.large[entry];
    auto src = make(rec.index, twiddles);
    const LargeItem<F> it(p, rec, src.k, src.l, CONV);

    if constexpr (!PRODUCTS) {
        if (p.step == SK_GRAM_LARGE_SCAN) {
            const uint64_t n = src.raw_len();
            const uint64_t per = (n + LARGE_CHUNKS - 1) / LARGE_CHUNKS;
            const uint64_t lo = per * part, hi = lo + per < n ? lo + per : n;
            double amax = 0.0, nan = 0.0;
            for (uint64_t e = lo + team.rank; e < hi; e += LARGE_NT) {
                const double v = fabs(src.raw(e));
                if (v != v) nan = 1.0;
                amax = fmax(amax, v);
            }
            amax = team.max(amax);
            nan = team.max(nan);
            if (team.rank == 0) {
                it.scan[part] = amax;
                it.scan[LARGE_CHUNKS + part] = nan;
            }
            return;
        }
        if (p.step == SK_GRAM_LARGE_FINISH) {
            large_finish<F>(p, it, src);
            return;
        }
    }
    // Convolution gradients rerun only each layer's maximizing block.
    if (p.layer_argmax != nullptr && p.layer_argmax[layer_of(p, rec.index)] != rec.index) return;
    if constexpr (!PRODUCTS) {
        if (p.step == SK_GRAM_LARGE_GRADX) {
            large_gradient<F>(p, it, src, part, smem);
            return;
        }
    }
    int s;
    if (it.status(s) != ScanStatus::Ok) return;  // FINISH writes the degenerate results
    // Adaptive: converged earlier (PGRAM still forms P at the step that converged).
    const int done = it.state->done_at;
    if (p.t >= 2 && done > 0 && (p.step != SK_GRAM_LARGE_PGRAM || static_cast<int>(p.t) > done))
        return;
    // Products: upper tile q = part of the item's matrix, at (i0, j0). (Only there: for the
    // other phases `part` is no tile number.)
    const int q = static_cast<int>(part);
    E acc[S::MT][S::MT];
    int i0, j0;
    if constexpr (PRODUCTS) {
        large_tile_origin<F>(it, q, i0, j0);
        E *stages = reinterpret_cast<E *>(smem);
        const int ld = it.k_pad;
        if (p.step == SK_GRAM_LARGE_GRAM) {
            // M_1 = X^H X from the formed block (convolutions), else (M_{t-1} 2^-e)^2.
            const E *m = p.t == 1 ? it.x : it.gram(p.t - 1);
            const double scale = p.t == 1 ? 1.0 : ldexp(1.0, -2 * it.state->hist.exps[p.t - 1]);
            large_tile_product_direct<F>(m, m, ld, p.t == 1 ? it.l : it.k_pad, true, i0, j0,
                                         stages, acc);
            large_hermitian_store<F>(it, q, acc, scale, it.gram(p.t),
                                     it.fpart + (p.t & 1) * it.tiles + q, it.colpart, smem);
        } else {  // PGRAM: P_t = P_{t-1} M_t 2^-g (t >= 2)
            // conj(P[r][c]) = P[c][r]: the tile form's A^H B is P M.
            large_tile_product_direct<F>(it.product(p.t - 1), it.gram(p.t), ld, it.k_pad, false,
                                         i0, j0, stages, acc);
            large_hermitian_store<F>(it, q, acc, ldexp(1.0, -it.state->pexps[p.t - 1]),
                                     it.product(p.t), it.pfpart + part, nullptr, smem);
        }
    } else {
        switch (p.step) {
            case SK_GRAM_LARGE_FORM: {
                if constexpr (CONV) {
                    src.prepare(team, s);
                    const uint64_t n = static_cast<uint64_t>(it.l) * it.k_pad;
                    const uint64_t per = (n + LARGE_CHUNKS - 1) / LARGE_CHUNKS;
                    const uint64_t lo = per * part, hi = lo + per < n ? lo + per : n;
                    for (uint64_t e = lo + team.rank; e < hi; e += LARGE_NT) {
                        const int r = static_cast<int>(e / it.k_pad);
                        const int c = static_cast<int>(e % it.k_pad);
                        it.x[e] = c < it.k ? src.load(r, c, s) : F::zero();
                    }
                }
                return;
            }
            case SK_GRAM_LARGE_GRAM: {  // dense step 1: M_1 = X^H X, X read through the source
                large_tile_origin<F>(it, q, i0, j0);
                const int k = it.k;
                const auto load = [&](int r, int c) { return c < k ? src.load(r, c, s) : F::zero(); };
                E *sa = reinterpret_cast<E *>(smem);
                large_tile_product<F>(load, load, true, it.l, it.x_transposed(src),
                                      it.x_transposed(src), i0, j0, sa, sa + LARGE_DEPTH * S::TB,
                                      acc);
                large_hermitian_store<F>(it, q, acc, 1.0, it.gram(1), it.fpart + it.tiles + q,
                                         it.colpart, smem);
                return;
            }
            case SK_GRAM_LARGE_STATS:
                large_stats<F>(p, it);
                return;
            default:
                SK_EXPECT(false);
        }
    }
}

template <class T, class R, bool PRODUCTS>
__device__ void large_dense(const sk_gram_params &p) {
    using F = RealField<R>;
    large<F, false, PRODUCTS>(p, [&](uint32_t index, Cplx<R> *) { return DenseSource<T, F>(p, index); });
}

template <class T, class R, bool PRODUCTS>
__device__ void large_conv(const sk_gram_params &p) {
    using F = ComplexField<R>;
    large<F, true, PRODUCTS>(p, [&](uint32_t index, Cplx<R> *tw) { return ConvSource<T, F>(p, index, tw); });
}

// Gradients: team `index` serves layer `index` by rerunning its maximizing block with P kept.
template <class T, class R>
__device__ void conv_grad(const sk_gram_params &p) {
    using F = ComplexField<R>;
    serve<F, WARP_K, static_cast<int>(SK_GRAM_MAX_K_CONV_GRAD), true, Tiers::BOTH>(
        p, [&](uint32_t layer, Cplx<R> *tw) {
            return ConvSource<T, F>(p, p.layer_argmax[layer], tw);
        });
}

}  // namespace gram
}  // namespace sk

// BLOCKS: blocks per SM the on-chip dense kernel is compiled for. In f32 arithmetic on sm_90 2
// (at most 128 registers, no spills per ptxas): at 226 registers one 256-thread block filled an
// SM, and the on-chip tiers are latency-bound (barriers every step, k = 64 leaves idle threads).
// Older targets spill at 128, so they keep 1.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define SK_GRAM_F32_BLOCKS 1
#define SK_GRAM_MID_F32_BLOCKS 3
#else
#define SK_GRAM_F32_BLOCKS 2
#define SK_GRAM_MID_F32_BLOCKS 4
#endif
// The one-tier dense kernels (see Tiers), blocks per SM (ptxas, sm_80..sm_90, no spills):
// small-side in f32 arithmetic 4 (at most 64 registers since its products are whole tiles), in
// f64 3 (about 80; at 64 it spills); mid-side in f32 arithmetic 4 on sm_90 (64 registers; older
// targets spill there and keep 3), in f64 2 (about 105; at 80 it spills).
#define SK_GRAM_SMALL_F32_BLOCKS 4
#define SK_GRAM_SMALL_F64_BLOCKS 3
// The large tier's products (GRAM, PGRAM): 2 blocks per SM, every storage and arithmetic type
// (at most 128 registers; ptxas, sm_80..sm_90, no spills).
#define SK_GRAM_PRODUCT_BLOCKS 2
#define SK_GRAM_KERNELS(ST, T, RT, R, BLOCKS, SMALL_BLOCKS, MID_BLOCKS)                         \
    SK_KERNEL(sk_gram_dense_##ST##_##RT, sk_gram_params, SK_GRAM_THREADS, BLOCKS,               \
              (sk::gram::dense<T, R, sk::gram::Tiers::BOTH, SK_GRAM_WARP_K, SK_GRAM_MAX_K>(p))) \
    SK_KERNEL(sk_gram_dense_small_##ST##_##RT, sk_gram_params, SK_GRAM_THREADS,                 \
              SMALL_BLOCKS,                                                                     \
              (sk::gram::dense<T, R, sk::gram::Tiers::WARPS_ONLY, SK_GRAM_SMALL_K, 0>(p)))      \
    SK_KERNEL(sk_gram_dense_mid_##ST##_##RT, sk_gram_params, SK_GRAM_THREADS, MID_BLOCKS,       \
              (sk::gram::dense<T, R, sk::gram::Tiers::BLOCKS_ONLY, 0, SK_GRAM_MID_K>(p)))       \
    SK_KERNEL(sk_gram_conv_##ST##_##RT, sk_gram_params, SK_GRAM_THREADS, 1,                     \
              sk::gram::conv<T, R>(p))                                                          \
    SK_KERNEL(sk_gram_dense_grad_##ST##_##RT, sk_gram_params, SK_GRAM_THREADS, 1,               \
              sk::gram::dense_grad<T, R>(p))                                                    \
    SK_KERNEL(sk_gram_conv_grad_##ST##_##RT, sk_gram_params, SK_GRAM_THREADS, 1,                \
              sk::gram::conv_grad<T, R>(p))                                                     \
    SK_KERNEL(sk_gram_large_dense_##ST##_##RT, sk_gram_params, SK_GRAM_THREADS, 1,              \
              (sk::gram::large_dense<T, R, false>(p)))                                          \
    SK_KERNEL(sk_gram_large_conv_##ST##_##RT, sk_gram_params, SK_GRAM_THREADS, 1,               \
              (sk::gram::large_conv<T, R, false>(p)))                                           \
    SK_KERNEL(sk_gram_large_dense_product_##ST##_##RT, sk_gram_params, SK_GRAM_THREADS,         \
              SK_GRAM_PRODUCT_BLOCKS, (sk::gram::large_dense<T, R, true>(p)))                   \
    SK_KERNEL(sk_gram_large_conv_product_##ST##_##RT, sk_gram_params, SK_GRAM_THREADS,          \
              SK_GRAM_PRODUCT_BLOCKS, (sk::gram::large_conv<T, R, true>(p)))

SK_GRAM_KERNELS(f32, float, f32, float, SK_GRAM_F32_BLOCKS, SK_GRAM_SMALL_F32_BLOCKS,
                SK_GRAM_MID_F32_BLOCKS)
SK_GRAM_KERNELS(f32, float, f64, double, 1, SK_GRAM_SMALL_F64_BLOCKS, 2)
SK_GRAM_KERNELS(f16, __half, f32, float, SK_GRAM_F32_BLOCKS, SK_GRAM_SMALL_F32_BLOCKS,
                SK_GRAM_MID_F32_BLOCKS)
SK_GRAM_KERNELS(f16, __half, f64, double, 1, SK_GRAM_SMALL_F64_BLOCKS, 2)
SK_GRAM_KERNELS(bf16, __nv_bfloat16, f32, float, SK_GRAM_F32_BLOCKS, SK_GRAM_SMALL_F32_BLOCKS,
                SK_GRAM_MID_F32_BLOCKS)
SK_GRAM_KERNELS(bf16, __nv_bfloat16, f64, double, 1, SK_GRAM_SMALL_F64_BLOCKS, 2)
SK_GRAM_KERNELS(f64, double, f64, double, 1, SK_GRAM_SMALL_F64_BLOCKS, 2)
