// Device helpers shared by every kernel family: storage-type traits (f32, f16, bf16 stored,
// f32/f64 arithmetic), 16-byte vector loads and stores, team reductions, and the entry-point
// macro. Written once; the family files (hypersphere.cu, ...) hold only their math.
//
// The same sources compile two ways: with nvcc for the GPU, and with a host C++ compiler under
// SK_EMULATOR, where kernels/emu/cuda_emu.h supplies threads, barriers and shuffles so that the
// test suite can run every kernel on the CPU.
#pragma once

#ifdef SK_EMULATOR
#include "emu/cuda_emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#include <float.h>
#include <stdint.h>
#include <type_traits>

#include "params.h"

// An extern "C" entry point. `body` is the statement that runs; it sees the parameters as `p`.
// `min_blocks` is the blocks per SM that ptxas must fit, which sets its register budget to
// 65536 / (max_threads * min_blocks): see SK_MIN_BLOCKS. Under the emulator the entry point is
// also registered by name so that the host can launch it.
#ifdef SK_EMULATOR
#define SK_KERNEL(name, ParamT, max_threads, min_blocks, ...)                             \
    extern "C" __global__ void name(const ParamT p) { __VA_ARGS__; }                      \
    static ::sk_emu::Registrar sk_emu_registrar_##name(                                   \
        #name, sizeof(ParamT), (max_threads),                                             \
        [](const void *raw) { name(*static_cast<const ParamT *>(raw)); });
#else
#define SK_KERNEL(name, ParamT, max_threads, min_blocks, ...)                             \
    extern "C" __global__ void __launch_bounds__(max_threads, min_blocks)                 \
        name(const ParamT p) {                                                            \
        __VA_ARGS__;                                                                      \
    }
#endif

// The launch's dynamic shared memory, 16-byte aligned.
#ifdef SK_EMULATOR
#define SK_DYNAMIC_SMEM() (static_cast<unsigned char *>(SK_EMU_DYNAMIC_SHARED()))
#else
#define SK_DYNAMIC_SMEM() (sk::dynamic_smem_base())
namespace sk {
__device__ __forceinline__ unsigned char *dynamic_smem_base() {
    extern __shared__ __align__(16) unsigned char sk_dynamic_smem[];
    return sk_dynamic_smem;
}
}  // namespace sk
#endif

// Blocks per SM that give ptxas a budget of about `regs` registers per thread (at least 1).
// Without an explicit minimum, ptxas picks its own budget and sometimes spills loop-invariant
// values to stay under 64 registers; an explicit budget per op makes the trade-off ours.
#define SK_MIN_BLOCKS(threads, regs) \
    ((65536u / ((threads) * (regs))) > 0u ? (65536u / ((threads) * (regs))) : 1u)

namespace sk {

// ---- storage types ------------------------------------------------------------------------
// Every kernel computes in f32 (or f64 on the rare wide path) whatever the storage type.
// VEC is the number of elements in one 16-byte access.
template <class T>
struct Elem;

template <>
struct Elem<float> {
    static constexpr int VEC = 4;
    __device__ __forceinline__ static float to_f32(float v) { return v; }
    __device__ __forceinline__ static float from_f32(float v) { return v; }
    __device__ __forceinline__ static float from_f64(double v) { return static_cast<float>(v); }
    __device__ __forceinline__ static float from_word(uint32_t w, int) { return __uint_as_float(w); }
};

template <>
struct Elem<__half> {
    static constexpr int VEC = 8;
    __device__ __forceinline__ static float to_f32(__half v) { return __half2float(v); }
    __device__ __forceinline__ static __half from_f32(float v) { return __float2half_rn(v); }
    __device__ __forceinline__ static __half from_f64(double v) { return __double2half(v); }
    __device__ __forceinline__ static uint16_t bits(__half v) { return __half_as_ushort(v); }
    __device__ __forceinline__ static float from_bits(uint16_t b) {
        return __half2float(__ushort_as_half(b));
    }
};

template <>
struct Elem<__nv_bfloat16> {
    static constexpr int VEC = 8;
    __device__ __forceinline__ static float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
    __device__ __forceinline__ static __nv_bfloat16 from_f32(float v) {
        return __float2bfloat16_rn(v);
    }
    __device__ __forceinline__ static __nv_bfloat16 from_f64(double v) {
        return __double2bfloat16(v);
    }
    __device__ __forceinline__ static uint16_t bits(__nv_bfloat16 v) {
        return __bfloat16_as_ushort(v);
    }
    // bf16 is the top half of an f32: widening is a shift, exact.
    __device__ __forceinline__ static float from_bits(uint16_t b) {
        return __uint_as_float(static_cast<uint32_t>(b) << 16);
    }
};

// Conversion of an accumulator value (float or double) to storage, rounding once.
template <class T>
__device__ __forceinline__ T to_storage(float v) {
    return Elem<T>::from_f32(v);
}
template <class T>
__device__ __forceinline__ T to_storage(double v) {
    return Elem<T>::from_f64(v);
}

// ---- vector access ------------------------------------------------------------------------
// VEC consecutive elements in storage form: one 16-byte word when VEC == Elem<T>::VEC (the
// address must then be 16-byte aligned; the host checks before choosing a vector kernel), one
// element when VEC == 1. Register tiles keep inputs this way, so a 16-bit tile takes half the
// registers of its f32 values, and widen a chunk to f32 where it is read. All-zero bits are 0.0
// in every storage type: fill(0) pads a tile's chunks past the end of a row.
template <class T, int VEC>
struct RawChunk {
    static_assert(VEC * sizeof(T) == 16, "vector access is 16 bytes");
    uint4 w;
    __device__ __forceinline__ void load(const T *src) { w = *reinterpret_cast<const uint4 *>(src); }
    // Every element set to v rounded to T.
    __device__ __forceinline__ void fill(float v) {
        uint32_t word;
        if constexpr (sizeof(T) == 4) {
            word = __float_as_uint(v);
        } else {
            const uint32_t b = Elem<T>::bits(Elem<T>::from_f32(v));
            word = b | (b << 16);
        }
        w = make_uint4(word, word, word, word);
    }
    __device__ __forceinline__ void widen(float (&out)[VEC]) const {
        const uint32_t words[4] = {w.x, w.y, w.z, w.w};
        if constexpr (sizeof(T) == 4) {
#pragma unroll
            for (int i = 0; i < 4; ++i) out[i] = __uint_as_float(words[i]);
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                out[2 * i] = Elem<T>::from_bits(static_cast<uint16_t>(words[i] & 0xffffu));
                out[2 * i + 1] = Elem<T>::from_bits(static_cast<uint16_t>(words[i] >> 16));
            }
        }
    }
};

template <class T>
struct RawChunk<T, 1> {
    T w;
    __device__ __forceinline__ void load(const T *src) { w = src[0]; }
    __device__ __forceinline__ void fill(float v) { w = Elem<T>::from_f32(v); }
    __device__ __forceinline__ void widen(float (&out)[1]) const { out[0] = Elem<T>::to_f32(w); }
};

// Loads VEC consecutive elements as f32 (see RawChunk for the alignment rule).
template <class T, int VEC>
__device__ __forceinline__ void load_vec(const T *src, float (&out)[VEC]) {
    RawChunk<T, VEC> c;
    c.load(src);
    c.widen(out);
}

// Stores VEC accumulator values (float or double), each rounded once to T.
template <class T, int VEC, class A>
__device__ __forceinline__ void store_vec(T *dst, const A (&in)[VEC]) {
    if constexpr (VEC == 1) {
        dst[0] = to_storage<T>(in[0]);
    } else {
        static_assert(VEC * sizeof(T) == 16, "vector access is 16 bytes");
        uint32_t w[4];
        if constexpr (sizeof(T) == 4) {
#pragma unroll
            for (int i = 0; i < 4; ++i) w[i] = __float_as_uint(static_cast<float>(in[i]));
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const uint32_t lo = Elem<T>::bits(to_storage<T>(in[2 * i]));
                const uint32_t hi = Elem<T>::bits(to_storage<T>(in[2 * i + 1]));
                w[i] = lo | (hi << 16);
            }
        }
        *reinterpret_cast<uint4 *>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

// ---- reductions ---------------------------------------------------------------------------
template <class A>
struct Pair {
    A a, b;
};
template <class A>
__device__ __forceinline__ Pair<A> operator+(Pair<A> x, Pair<A> y) {
    return {x.a + y.a, x.b + y.b};
}

__device__ __forceinline__ float shfl_xor(float v, int m, unsigned mask) {
    return __shfl_xor_sync(mask, v, m);
}
__device__ __forceinline__ double shfl_xor(double v, int m, unsigned mask) {
    return __shfl_xor_sync(mask, v, m);
}
template <class A>
__device__ __forceinline__ Pair<A> shfl_xor(Pair<A> v, int m, unsigned mask) {
    return {shfl_xor(v.a, m, mask), shfl_xor(v.b, m, mask)};
}

// Butterfly sum over `width` lanes (a power of two <= 32) that share `mask`. Every lane ends
// with the same bits: at each step lanes i and i^m add the same two values, and IEEE addition
// is commutative, so results are uniform and branches on them stay uniform.
template <int WIDTH, class V>
__device__ __forceinline__ V butterfly_sum(V v, unsigned mask) {
#pragma unroll
    for (int m = WIDTH / 2; m >= 1; m /= 2) v = v + shfl_xor(v, m, mask);
    return v;
}

// Two alternating scratch buffers for cross-warp sums: the reads of one reduction finish before
// the barrier of the next, so reduction n+2 may overwrite what reduction n wrote without another
// barrier. 32 warps x 16 bytes (a Pair<double>) each.
__device__ __forceinline__ double *team_scratch(int parity) {
    __shared__ double scratch[2][2 * 32];
    return scratch[parity];
}

// The TPS threads that own one row segment. Teams of up to a warp are packed
// SK_SUBWARP_BLOCK_THREADS / TPS to a block; wider teams are one block each.
template <int TPS>
struct Team {
    static_assert(TPS >= 1 && TPS <= 1024 && (TPS & (TPS - 1)) == 0, "TPS is a power of two");
    static constexpr int SPB = TPS <= 32 ? static_cast<int>(SK_SUBWARP_BLOCK_THREADS) / TPS : 1;
    static constexpr int BLOCK = TPS * SPB;
    static constexpr int WARPS = TPS > 32 ? TPS / 32 : 1;

    int lane;  // index within the team
    int slot;  // team index within the block
    unsigned mask;
    int parity = 0;

    __device__ Team() {
        lane = static_cast<int>(threadIdx.x) % TPS;
        slot = static_cast<int>(threadIdx.x) / TPS;
        if constexpr (TPS >= 32) {
            mask = 0xffffffffu;
        } else {
            const int warp_lane = static_cast<int>(threadIdx.x) % 32;
            mask = ((1u << TPS) - 1u) << (warp_lane & ~(TPS - 1));
        }
    }
    // Workers are the teams of the whole grid; worker w handles segments w, w + workers, ...
    // The host keeps gridDim.x * SPB below 2^31.
    __device__ uint32_t worker() const { return blockIdx.x * SPB + slot; }
    __device__ uint32_t workers() const { return gridDim.x * SPB; }

    // Sum over the team; every thread of the team receives the same bits. Teams wider than a
    // warp must call this block-uniformly (it contains a barrier).
    template <class V>
    __device__ __forceinline__ V sum(V v) {
        if constexpr (TPS <= 32) {
            return butterfly_sum<TPS>(v, mask);
        } else {
            static_assert(sizeof(V) <= 16, "scratch holds 16 bytes per warp");
            v = butterfly_sum<32>(v, 0xffffffffu);
            V *s = reinterpret_cast<V *>(team_scratch(parity));
            parity ^= 1;
            if (lane % 32 == 0) s[lane / 32] = v;
            __syncthreads();
            V t = s[0];
#pragma unroll 1
            for (int i = 1; i < WARPS; ++i) t = t + s[i];
            return t;
        }
    }
};

// ---- robust sums of squares ---------------------------------------------------------------
// The f32 pass is trusted only when the sum of squares lies in [2^-96, FLT_MAX]: above, it has
// overflowed; below, squares of small entries may have lost bits to subnormals (up to cols *
// 2^-149 absolute, < 2^-35 relative at 2^-96 for any cols < 2^18). Everything else (zero rows,
// tiny or huge entries, NaN) is redone in f64, where squares of any finite f32 are exact normal
// numbers. The check is uniform across the team, so the fallback costs ordinary rows nothing
// but one compare.
__device__ __forceinline__ bool sumsq_trusted(float ss) { return ss >= 0x1p-96f && ss <= FLT_MAX; }
__device__ __forceinline__ bool sumsq_trusted(double) { return true; }
__device__ __forceinline__ bool dot_trusted(float d) { return d >= -FLT_MAX && d <= FLT_MAX; }
__device__ __forceinline__ bool dot_trusted(double) { return true; }

// ---- call-free reciprocal, square root and reciprocal square root --------------------------
// IEEE division and square root compile to a call of a slow-path subroutine, and ptxas reports
// the register saves around such a call as spills in every kernel that contains one. These
// helpers use the hardware approximations (rsqrt.approx, div.approx) refined by Newton steps.
//
// f32 versions: for normal positive arguments well inside f32's range (the f32 path sees sums of
// squares in [2^-96, FLT_MAX] and eps <= 1e30). One Newton step from the ~2-ulp approximation
// leaves about one ulp.
__device__ __forceinline__ float rsqrt_acc(float ss) {
    const float r = rsqrtf(ss);
    return fmaf(0.5f * r, fmaf(-ss * r, r, 1.0f), r);
}
__device__ __forceinline__ float recip_acc(float d) {
    const float r = __fdividef(1.0f, d);
    return fmaf(r, fmaf(-d, r, 1.0f), r);
}
__device__ __forceinline__ float sqrt_acc(float v) { return v * rsqrt_acc(v); }

// f64 versions: any argument, with IEEE special cases (1/0 = inf, 1/inf = 0, NaN stays NaN,
// rsqrt of a negative number is NaN). The argument is scaled by an exact power of two into
// [1, 4) (rsqrt) or [1, 2) (reciprocal), the f32 approximation (2^-22) is refined by two Newton
// steps (2^-44, then the f64 rounding floor), and the result is scaled back exactly.
__device__ __forceinline__ double pow2_f64(int e) {
    // 2^e for e in [-1022, 1023], built from its bits.
    return __longlong_as_double(static_cast<long long>(1023 + e) << 52);
}
__device__ __forceinline__ int exponent_f64(double v) {
    // Unbiased exponent of a normal |v|.
    return static_cast<int>((__double_as_longlong(v) >> 52) & 0x7ff) - 1023;
}
__device__ __forceinline__ double inf_f64() { return __longlong_as_double(0x7ff0000000000000LL); }
__device__ __forceinline__ double nan_f64() { return __longlong_as_double(0x7ff8000000000000LL); }
__device__ __forceinline__ double rsqrt_acc(double ss) {
    if (!(ss > 0.0 && ss <= DBL_MAX)) {
        if (ss == 0.0) return inf_f64();
        if (ss > DBL_MAX) return 0.0;  // rsqrt(inf)
        return nan_f64();              // negative or NaN
    }
    double post = 1.0;
    if (ss < 0x1p-1000) {  // subnormal or nearly: scale up first (exactly)
        ss *= 0x1p200;
        post = 0x1p100;
    }
    const int k = exponent_f64(ss) >> 1;  // floor(e / 2)
    const double m = ss * pow2_f64(-2 * k);  // m in [1, 4)
    double r = static_cast<double>(rsqrtf(static_cast<float>(m)));
#pragma unroll
    for (int i = 0; i < 2; ++i) r = fma(0.5 * r, fma(-m * r, r, 1.0), r);
    return r * pow2_f64(-k) * post;
}
__device__ __forceinline__ double recip_acc(double d) {
    const double a = fabs(d);
    if (!(a > 0.0 && a <= DBL_MAX)) {
        if (a == 0.0) return copysign(inf_f64(), d);  // 1/±0 = ±inf
        if (a > DBL_MAX) return copysign(0.0, d);      // 1/±inf = ±0
        return d;                                      // NaN
    }
    double pre = 1.0;
    if (a < 0x1p-1000) pre = 0x1p200;  // 1/a would overflow the scaling below
    const int e = exponent_f64(a * pre);
    const double m = a * pre * pow2_f64(-e);  // m in [1, 2)
    double r = static_cast<double>(__fdividef(1.0f, static_cast<float>(m)));
#pragma unroll
    for (int i = 0; i < 2; ++i) r = fma(r, fma(-m, r, 1.0), r);
    // 1/a = r 2^-e pre, applied in two halves so that 2^-e never leaves the normal range.
    const int h = e / 2;
    return copysign(r * pow2_f64(-h) * pow2_f64(h - e) * pre, d);
}
__device__ __forceinline__ double sqrt_acc(double v) {
    if (!(v > 0.0 && v <= DBL_MAX)) return v < 0.0 ? rsqrt_acc(v) : v;  // 0, inf, NaN; <0 -> NaN
    return v * rsqrt_acc(v);
}

// ---- warp matrix multiply-accumulate (tensor cores) ----------------------------------------
// d += a b for one m16n8k16 tile, 16-bit operands T (__half or __nv_bfloat16), f32 accumulation.
// Fragments (PTX ISA, mma.m16n8k16, lane = 4 g + t): a[r] packs two consecutive k of A (16 x 16,
// row-major): a[0] row g, k 2t..2t+1; a[1] row g+8, same k; a[2] row g, k 2t+8..2t+9; a[3] row
// g+8, k 2t+8..2t+9. b[r] packs two consecutive k of column n = g of B (16 x 8): b[0] k 2t..2t+1,
// b[1] k 2t+8..2t+9. d[i]: row g + 8 (i / 2), column 2t + i % 2. The lower k sits in the low half.
// The emulator gathers the same fragments by shuffles and sums the exact products in f32.
template <class T>
struct MmaOperand;
template <>
struct MmaOperand<__half> {
    __device__ __forceinline__ static float lo(uint32_t w) {
        return __half2float(__ushort_as_half(static_cast<unsigned short>(w & 0xffffu)));
    }
    __device__ __forceinline__ static float hi(uint32_t w) {
        return __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
    }
};
template <>
struct MmaOperand<__nv_bfloat16> {
    __device__ __forceinline__ static float lo(uint32_t w) { return __uint_as_float(w << 16); }
    __device__ __forceinline__ static float hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
};

template <class T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__)
    if constexpr (std::is_same<T, __half>::value) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
#else
    using O = MmaOperand<T>;
    const int lane = static_cast<int>(threadIdx.x) % 32, g = lane / 4, t = lane % 4;
    for (int q = 0; q < 4; ++q) {  // k = 2q, 2q+1 and 2q+8, 2q+9
        uint32_t ar[4], br[2][2];
        for (int r = 0; r < 4; ++r) ar[r] = __shfl_sync(0xffffffffu, a[r], 4 * g + q);
        for (int j = 0; j < 2; ++j)
            for (int r = 0; r < 2; ++r) br[j][r] = __shfl_sync(0xffffffffu, b[r], 4 * (2 * t + j) + q);
        for (int i = 0; i < 4; ++i) {
            const int h = i / 2, j = i % 2;  // row g + 8 h, column 2t + j
            float acc = d[i];
            acc = fmaf(O::lo(ar[h]), O::lo(br[j][0]), acc);
            acc = fmaf(O::hi(ar[h]), O::hi(br[j][0]), acc);
            acc = fmaf(O::lo(ar[2 + h]), O::lo(br[j][1]), acc);
            acc = fmaf(O::hi(ar[2 + h]), O::hi(br[j][1]), acc);
            d[i] = acc;
        }
    }
#endif
}

// f32 operands on the bf16 tensor cores. split_bf16x2 writes (x0, x1) (x0 the lower k, in the
// low half) as P bf16x2 words whose sum is the pair: word j holds the roundings of what words
// 0..j-1 leave. Each remainder of a round-to-nearest split is exact in f32, and each word holds
// 8 significant bits, so three words carry any f32 exactly (outside the subnormal range), two an
// f16, one a bf16. A remainder that is not finite (x infinite, or |x| above bf16's largest
// value, which rounds to infinity) is dropped, so an infinite x stays infinite instead of
// becoming inf - inf = NaN; a NaN stays NaN through the first word.
// (Only the first remainder needs the check: the later ones are remainders of finite values.)
template <int P>
__device__ __forceinline__ void split_bf16x2(float x0, float x1, uint32_t (&w)[P]) {
#pragma unroll
    for (int j = 0; j < P; ++j) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);  // one packed conversion
        w[j] = static_cast<uint32_t>(__bfloat16_as_ushort(h.x)) |
               (static_cast<uint32_t>(__bfloat16_as_ushort(h.y)) << 16);
        if (j + 1 < P) {
            x0 -= Elem<__nv_bfloat16>::from_bits(static_cast<uint16_t>(w[j] & 0xffffu));
            x1 -= Elem<__nv_bfloat16>::from_bits(static_cast<uint16_t>(w[j] >> 16));
            if (j == 0) {
                x0 = fabsf(x0) <= FLT_MAX ? x0 : 0.0f;
                x1 = fabsf(x1) <= FLT_MAX ? x1 : 0.0f;
            }
        }
    }
}

// split_bf16x2 into word f of each part's fragment: frag[j][f] = word j.
template <int P, int N>
__device__ __forceinline__ void split_into(float x0, float x1, uint32_t (&frag)[P][N], int f) {
    uint32_t w[P];
    split_bf16x2(x0, x1, w);
#pragma unroll
    for (int j = 0; j < P; ++j) frag[j][f] = w[j];
}

// d += A B for A = sum_i a[i] and B = sum_j b[j] in split form (split_bf16x2), keeping the
// products a[i] b[j] with i + j <= 2, smallest first: each dropped one is below about 2^-24
// |A||B|, an f32 rounding, so the tile is an f32-accurate product (3 MMAs for a bf16 B, 5 for
// an f16 B, 6 for an f32 B).
template <int PA, int PB>
__device__ __forceinline__ void mma_split(float (&d)[4], const uint32_t (&a)[PA][4], const uint32_t (&b)[PB][2]) {
#pragma unroll
    for (int s = 2; s >= 0; --s)
#pragma unroll
        for (int i = 0; i < PA; ++i)
            if (s - i >= 0 && s - i < PB) mma_16816<__nv_bfloat16>(d, a[i], b[s - i]);
}

// Parts that carry a storage type exactly as bf16 words.
template <class T>
struct SplitParts {
    static constexpr int value = std::is_same<T, float>::value ? 3 : std::is_same<T, __half>::value ? 2 : 1;
};

// ---- asynchronous copies, global to shared (cp.async, sm_80 and later) --------------------------
// copy_async16 starts a copy of 16 bytes (both addresses 16-byte aligned) into shared memory that
// bypasses the registers; with `valid` false it writes 16 zero bytes and reads nothing (src must
// still be a valid address). copy_async_commit closes the group of the copies issued since the
// last commit; copy_async_wait<N>() returns once at most the N newest groups are in flight. A
// thread waits for its own copies only: a barrier must follow before other threads read them.
// The emulator lands each thread's copies exactly at its wait, so a read that would race the copy
// on a GPU sees stale data in the tests.
__device__ __forceinline__ void copy_async16(void *dst, const void *src, bool valid) {
#if defined(__CUDA_ARCH__)
    const uint32_t shared = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
#elif defined(SK_EMULATOR)
    ::sk_emu::detail::async_copy(dst, src, 16, valid ? 16 : 0, __FILE__, __LINE__);
#else
    (void)dst, (void)src, (void)valid;
#endif
}

__device__ __forceinline__ void copy_async_commit() {
#if defined(__CUDA_ARCH__)
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#elif defined(SK_EMULATOR)
    ::sk_emu::detail::async_commit();
#endif
}

template <int N>
__device__ __forceinline__ void copy_async_wait() {
#if defined(__CUDA_ARCH__)
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#elif defined(SK_EMULATOR)
    ::sk_emu::detail::async_wait(N);
#endif
}

}  // namespace sk

// A contract between the host launch code and a kernel (grid shape, divisibility). Checked
// under the emulator, where a violation fails the launch with an error; compiled out on the GPU,
// where the host code that establishes it is the same code the emulator tests exercise.
#ifdef SK_EMULATOR
#define SK_EXPECT(cond)                                                           \
    do {                                                                          \
        if (!(cond)) {                                                            \
            printf("contract failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            __trap();                                                             \
        }                                                                         \
    } while (0)
#else
#define SK_EXPECT(cond) \
    do {                \
    } while (0)
#endif
