// Simplex random features: positive random feature maps
//   phi(x)_i = m^-1/2 (exp(s w_i.x - c s^2 |x|^2 - shift) + eps),
// projection and exponential fused in one pass, f32 accumulation whatever the storage type.
//
// Tiling: a block of SK_RF_THREADS threads serves SK_RF_ROWS rows. Warp r owns rows 4r..4r+3
// and lane l the features f0 + l + 32j (j < 4) of each feature tile of SK_RF_FEATURE_TILE, so
// each warp holds whole rows: the row maxima need only warp shuffles, and the exponents a
// thread keeps in shared memory (fused row shift) are read back by the same thread. Inputs
// and W go through shared memory in chunks of SK_RF_DIM_CHUNK columns: X as [row][k] (read
// as a warp-wide broadcast), W as [k][feature] (consecutive lanes, consecutive banks).
#include "common.cuh"

namespace sk {
namespace rf {

constexpr int THREADS = static_cast<int>(SK_RF_THREADS);
constexpr int ROWS = static_cast<int>(SK_RF_ROWS);
constexpr int TILE = static_cast<int>(SK_RF_FEATURE_TILE);
constexpr int CHUNK = static_cast<int>(SK_RF_DIM_CHUNK);
constexpr int ROWS_PER_WARP = ROWS / (THREADS / 32);
constexpr int PER_LANE = TILE / 32;
static_assert(ROWS_PER_WARP * (THREADS / 32) == ROWS, "warps split the rows evenly");
static_assert((TILE * CHUNK) % THREADS == 0 && (ROWS * CHUNK) % THREADS == 0, "whole loads");

struct Stage {
    float w[CHUNK][TILE + 1];  // +1: the loads write 16 columns of one feature per warp
    float x[ROWS][CHUNK + 1];  // +1: the chunk loads' column writes spread over banks
    float norm2[ROWS];         // s^2 |x|^2
};

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float nan_f() { return __int_as_float(0x7fc00000); }

// The largest of a and b, NaN if either is (fmaxf would drop a NaN; a NaN exponent must
// make its row's shift NaN so that the row's features are NaN and nothing else is touched).
__device__ __forceinline__ float max_nan(float a, float b) {
    return (a != a || b != b) ? nan_f() : fmaxf(a, b);
}

// Accumulates s * (W x) for the block's rows and the feature tile at f0: acc[i][j] for row
// 4 warp + i and feature f0 + lane + 32 j. Entries past the matrix edges read as zero.
template <class T>
__device__ __forceinline__ void project_tile(const sk_rf_features_params &p, Stage &st,
                                             uint64_t row0, uint32_t f0,
                                             float (&acc)[ROWS_PER_WARP][PER_LANE]) {
    const T *x = static_cast<const T *>(p.x);
    const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
#pragma unroll
    for (int i = 0; i < ROWS_PER_WARP; ++i)
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) acc[i][j] = 0.0f;
    for (uint32_t k0 = 0; k0 < p.dim; k0 += CHUNK) {
        __syncthreads();  // the previous chunk's reads are done
#pragma unroll
        for (int e = static_cast<int>(threadIdx.x); e < TILE * CHUNK; e += THREADS) {
            const int f = e / CHUNK, k = e % CHUNK;
            const uint32_t gf = f0 + f, gk = k0 + k;
            st.w[k][f] = (gf < p.features && gk < p.dim) ? p.w[static_cast<uint64_t>(gf) * p.dim + gk]
                                                         : 0.0f;
        }
#pragma unroll
        for (int e = static_cast<int>(threadIdx.x); e < ROWS * CHUNK; e += THREADS) {
            const int r = e / CHUNK, k = e % CHUNK;
            const uint64_t gr = row0 + r;
            const uint32_t gk = k0 + k;
            st.x[r][k] = (gr < p.rows && gk < p.dim) ? Elem<T>::to_f32(x[gr * p.x_stride + gk]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < CHUNK; ++k) {
            float xv[ROWS_PER_WARP], wv[PER_LANE];
#pragma unroll
            for (int i = 0; i < ROWS_PER_WARP; ++i) xv[i] = st.x[warp * ROWS_PER_WARP + i][k];
#pragma unroll
            for (int j = 0; j < PER_LANE; ++j) wv[j] = st.w[k][lane + 32 * j];
#pragma unroll
            for (int i = 0; i < ROWS_PER_WARP; ++i)
#pragma unroll
                for (int j = 0; j < PER_LANE; ++j) acc[i][j] = fmaf(xv[i], wv[j], acc[i][j]);
        }
    }
}

template <class O>
__device__ __forceinline__ void store_feature(const sk_rf_features_params &p, uint64_t row, uint32_t f,
                                              float a, float shift) {
    O *out = static_cast<O *>(p.out);
    out[row * p.out_stride + f] = Elem<O>::from_f32(p.feature_scale * (expf(a - shift) + p.eps));
}

// The exponents a = s (W x) - c s^2 |x|^2 of every feature tile, handed to `visit(i, f, a)`
// for row 4 warp + i (only rows and features inside the matrix).
template <class T, class Visit>
__device__ __forceinline__ void for_each_exponent(const sk_rf_features_params &p, Stage &st, uint64_t row0,
                                                  Visit visit) {
    const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
    for (uint32_t f0 = 0; f0 < p.features; f0 += TILE) {
        float acc[ROWS_PER_WARP][PER_LANE];
        project_tile<T>(p, st, row0, f0, acc);
#pragma unroll
        for (int i = 0; i < ROWS_PER_WARP; ++i) {
            const int r = warp * ROWS_PER_WARP + i;
            if (row0 + r >= p.rows) continue;
#pragma unroll
            for (int j = 0; j < PER_LANE; ++j) {
                const uint32_t f = f0 + lane + 32 * j;
                if (f < p.features) visit(i, f, p.input_scale * acc[i][j] - p.norm_coefficient * st.norm2[r]);
            }
        }
    }
}

// T: the storage type of x; O: of the features (T, or f32 for FAVOR+'s workspace).
template <class T, class O>
__device__ void features(const sk_rf_features_params &p) {
    __shared__ Stage st;
    float *exps = reinterpret_cast<float *>(SK_DYNAMIC_SMEM());
    const T *x = static_cast<const T *>(p.x);
    const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
    const uint64_t tiles = (p.rows + ROWS - 1) / ROWS;
    for (uint64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const uint64_t row0 = tile * ROWS;
        // s^2 |x|^2 of the warp's rows, a lane per column.
#pragma unroll 1
        for (int i = 0; i < ROWS_PER_WARP; ++i) {
            const int r = warp * ROWS_PER_WARP + i;
            float ss = 0.0f;
            if (row0 + r < p.rows)
                for (uint32_t k = lane; k < p.dim; k += 32) {
                    const float v = p.input_scale * Elem<T>::to_f32(x[(row0 + r) * p.x_stride + k]);
                    ss = fmaf(v, v, ss);
                }
            ss = butterfly_sum<32>(ss, 0xffffffffu);
            if (lane == 0) st.norm2[r] = ss;
        }
        // Read by every warp in the epilogues; project_tile's first barrier orders the writes.
        if (p.mode == SK_RF_SHIFT_NONE || p.mode == SK_RF_SHIFT_GIVEN) {
            float shift[ROWS_PER_WARP];
#pragma unroll
            for (int i = 0; i < ROWS_PER_WARP; ++i) {
                const uint64_t row = row0 + warp * ROWS_PER_WARP + i;
                shift[i] = (p.mode == SK_RF_SHIFT_GIVEN && row < p.rows) ? p.shift[row] : 0.0f;
                if (p.mode == SK_RF_SHIFT_NONE && lane == 0 && row < p.rows) p.shift[row] = 0.0f;
            }
            for_each_exponent<T>(p, st, row0, [&](int i, uint32_t f, float a) {
                store_feature<O>(p, row0 + warp * ROWS_PER_WARP + i, f, a, shift[i]);
            });
        } else {
            const bool keep = p.mode == SK_RF_SHIFT_ROW && p.fused;
            float mx[ROWS_PER_WARP];
#pragma unroll
            for (int i = 0; i < ROWS_PER_WARP; ++i) mx[i] = neg_inf();
            for_each_exponent<T>(p, st, row0, [&](int i, uint32_t f, float a) {
                mx[i] = max_nan(mx[i], a);
                if (keep) exps[(warp * ROWS_PER_WARP + i) * p.features + f] = a;
            });
#pragma unroll
            for (int i = 0; i < ROWS_PER_WARP; ++i) {
#pragma unroll
                for (int m = 16; m >= 1; m /= 2) mx[i] = max_nan(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], m));
                const uint64_t row = row0 + warp * ROWS_PER_WARP + i;
                if (lane == 0 && row < p.rows) p.shift[row] = mx[i];
            }
            if (p.mode == SK_RF_SHIFT_ROW) {
                if (keep) {
                    // The same thread wrote exactly these entries (f = lane mod 32).
#pragma unroll
                    for (int i = 0; i < ROWS_PER_WARP; ++i) {
                        const uint64_t row = row0 + warp * ROWS_PER_WARP + i;
                        if (row >= p.rows) continue;
                        for (uint32_t f = lane; f < p.features; f += 32)
                            store_feature<O>(p, row, f, exps[(warp * ROWS_PER_WARP + i) * p.features + f], mx[i]);
                    }
                } else {
                    for_each_exponent<T>(p, st, row0, [&](int i, uint32_t f, float a) {
                        store_feature<O>(p, row0 + warp * ROWS_PER_WARP + i, f, a, mx[i]);
                    });
                }
            }
        }
        __syncthreads();  // st.norm2 and st.x are rewritten by the next tile
    }
}

// ---- the feature map on the tensor cores (16-bit inputs and outputs) ---------------------
// The projection a = s W x runs as m16n8k16 MMAs with f32 accumulation: x is exact in its
// 16-bit type, and W (f32) is split into W_hi + W_lo, both in that type, so the products carry
// W to 2^-16 relative (two MMAs per tile) instead of the 2^-8 of a single bf16 copy. A block of
// SK_RF_TC_THREADS (8 warps) keeps W_hi and W_lo in shared memory for the whole grid-stride
// loop over tiles of SK_RF_TC_ROWS rows, staged as [feature][k] with k padded to 16 and a row
// stride of 4 mod 8 words (conflict-free fragment reads). Warp (wr, wf) owns rows 32 wr ..
// +31 and features 64 wf .. +63 of each pass of 256 features; a row's maximum is the max over
// the 4 warps of its row group, through shared memory. With m <= 256 (one pass) the row shift
// is fused: the exponents stay in the accumulators between the maximum and the stores.
namespace tc {

constexpr int THREADS = static_cast<int>(SK_RF_TC_THREADS);
constexpr int ROWS = static_cast<int>(SK_RF_TC_ROWS);
constexpr int WARPS = THREADS / 32;
constexpr int ROW_GROUPS = ROWS / 32;        // warps along the rows, 32 rows each
constexpr int SLICES = WARPS / ROW_GROUPS;  // warps along the features, 64 features each
constexpr int PASS = SLICES * 64;            // features per pass
static_assert(ROW_GROUPS * SLICES == WARPS && PASS == static_cast<int>(SK_RF_TC_PASS), "warp grid");
constexpr uint32_t PREFETCH_K = 128;                     // largest kp the register prefetch covers
constexpr int PREFETCH = ROWS * (PREFETCH_K / 8) / THREADS;  // 16-byte words per thread

// The shared-memory layout for padded dimension kp (a multiple of 16), mp staged features and
// `parts` 16-bit parts of W (2 for 16-bit features, 3 for f32 features: W to 2^-24 relative).
struct Layout {
    uint32_t stride;  // 16-bit elements per staged row: kp + 8
    uint32_t part;    // 16-bit elements from one part of W to the next (the first at 0)
    uint32_t x;       // offset of the x tile
    uint32_t floats;  // byte offset of the f32 area: norm2[ROWS], part[SLICES][ROWS], run[ROWS]
};

__device__ __forceinline__ Layout layout(uint32_t kp, uint32_t mp, uint32_t parts) {
    Layout l;
    l.stride = kp + 8;
    l.part = mp * l.stride;
    l.x = parts * mp * l.stride;
    l.floats = ((l.x + ROWS * l.stride) * 2 + 15) / 16 * 16;
    return l;
}

// Parts of W for features of type O: W_hi + W_lo (+ W_lo2 for f32 features).
template <class O>
struct Parts {
    static constexpr int value = std::is_same<O, float>::value ? 3 : 2;
};

template <class T>
__device__ __forceinline__ uint16_t bits16(float v) {
    return Elem<T>::bits(Elem<T>::from_f32(v));
}

// One pass of features [f0, f0 + PASS): acc[rt][nt][i] for row 32 wr + 16 rt + g + 8 (i / 2) and
// feature f0 + 64 wf + 8 nt + 2 t + i % 2, accumulated over kp. n-tiles past m are skipped
// (their accumulators stay 0; the epilogues ignore them).
template <class T, int PARTS>
__device__ __forceinline__ void project_pass(const uint16_t *smem, const Layout &l, uint32_t kp, uint32_t m,
                                             uint32_t f0, float (&acc)[2][8][4]) {
    const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
    const int wr = warp / SLICES, wf = warp % SLICES, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int rt = 0; rt < 2; ++rt)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[rt][nt][i] = 0.0f;
    const uint32_t fw = f0 + 64 * wf;
    if (fw >= m) return;
    for (uint32_t k0 = 0; k0 < kp; k0 += 16) {
        uint32_t a[2][4];
#pragma unroll
        for (int rt = 0; rt < 2; ++rt) {
            const uint16_t *xr = smem + l.x + (32 * wr + 16 * rt + g) * l.stride + k0 + 2 * t;
            a[rt][0] = *reinterpret_cast<const uint32_t *>(xr);
            a[rt][1] = *reinterpret_cast<const uint32_t *>(xr + 8 * l.stride);
            a[rt][2] = *reinterpret_cast<const uint32_t *>(xr + 8);
            a[rt][3] = *reinterpret_cast<const uint32_t *>(xr + 8 * l.stride + 8);
        }
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            if (fw + 8 * nt >= m) break;  // warp-uniform
            const uint16_t *wh = smem + (fw + 8 * nt + g) * l.stride + k0 + 2 * t;
            // The smallest part first: its products are added before the large ones.
#pragma unroll
            for (int q = PARTS - 1; q >= 0; --q) {
                const uint16_t *wq = wh + q * l.part;
                const uint32_t b[2] = {*reinterpret_cast<const uint32_t *>(wq),
                                       *reinterpret_cast<const uint32_t *>(wq + 8)};
#pragma unroll
                for (int rt = 0; rt < 2; ++rt) mma_16816<T>(acc[rt][nt], a[rt], b);
            }
        }
    }
}

// T: the storage type of x; O: of the features (T, or f32 for FAVOR+'s workspace).
template <class T, class O>
__device__ void features(const sk_rf_features_params &p) {
    constexpr int PARTS = Parts<O>::value;
    unsigned char *base = SK_DYNAMIC_SMEM();
    uint16_t *smem = reinterpret_cast<uint16_t *>(base);
    const uint32_t kp = (p.dim + 15) / 16 * 16;
    const uint32_t passes = (p.features + PASS - 1) / PASS;
    // Staged features: the whole passes W spans, so pass offsets stay inside the staging.
    const uint32_t mp = passes == 1 ? (p.features + 7) / 8 * 8 : passes * PASS;
    const Layout l = layout(kp, mp, PARTS);
    float *norm2 = reinterpret_cast<float *>(base + l.floats);
    float *part = norm2 + ROWS;   // [SLICES][ROWS] per-warp row maxima
    float *run = part + SLICES * ROWS;  // running row maxima over passes
    const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
    const int wr = warp / SLICES, wf = warp % SLICES, g = lane / 4, t = lane % 4;
    const uint16_t *x = static_cast<const uint16_t *>(p.x);
    O *out = static_cast<O *>(p.out);
    // The parts of W (each the rounding of what the previous ones leave), zero past (m, d):
    // once per block.
    for (uint32_t e = threadIdx.x; e < mp * kp; e += THREADS) {
        const uint32_t f = e / kp, k = e % kp;
        float rest = (f < p.features && k < p.dim) ? p.w[static_cast<uint64_t>(f) * p.dim + k] : 0.0f;
#pragma unroll
        for (int q = 0; q < PARTS; ++q) {
            const uint16_t part = bits16<T>(rest);
            smem[q * l.part + f * l.stride + k] = part;
            rest -= Elem<T>::from_bits(part);
        }
    }
    const bool fused = p.mode == SK_RF_SHIFT_ROW && passes == 1;
    const bool pairs = (reinterpret_cast<uintptr_t>(p.out) % (2 * sizeof(O)) == 0) && (p.out_stride % 2 == 0);
    const uint64_t tiles = (p.rows + ROWS - 1) / ROWS;
    // 16-byte rows of x (aligned, d a multiple of 8, kp <= 128): the next tile is loaded into
    // registers while this one computes, so its latency is hidden behind the MMAs and stores.
    const bool vec = reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && p.x_stride % 8 == 0 && p.dim % 8 == 0 &&
                     kp <= PREFETCH_K;
    const uint32_t vecs = kp / 8;  // 16-byte words per staged row
    uint4 pre[PREFETCH];
    auto fetch = [&](uint64_t tile) {
#pragma unroll
        for (int i = 0; i < PREFETCH; ++i) {
            const uint32_t e = threadIdx.x + i * THREADS, r = e / vecs, v = e % vecs;
            const uint64_t row = tile * ROWS + r;
            pre[i] = (e < ROWS * vecs && row < p.rows && 8 * v < p.dim)
                         ? *reinterpret_cast<const uint4 *>(x + row * p.x_stride + 8 * v)
                         : make_uint4(0, 0, 0, 0);
        }
    };
    if (vec && blockIdx.x < tiles) fetch(blockIdx.x);
    for (uint64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const uint64_t row0 = tile * ROWS;
        __syncthreads();  // W is staged; the previous tile's reads of x, norm2, run are done
        if (vec) {
#pragma unroll
            for (int i = 0; i < PREFETCH; ++i) {
                const uint32_t e = threadIdx.x + i * THREADS, r = e / vecs, v = e % vecs;
                if (e < ROWS * vecs) *reinterpret_cast<uint4 *>(smem + l.x + r * l.stride + 8 * v) = pre[i];
            }
            if (tile + gridDim.x < tiles) fetch(tile + gridDim.x);
        } else {
            for (uint32_t e = threadIdx.x; e < ROWS * kp; e += THREADS) {
                const uint32_t r = e / kp, k = e % kp;
                smem[l.x + r * l.stride + k] =
                    (row0 + r < p.rows && k < p.dim) ? x[(row0 + r) * p.x_stride + k] : uint16_t{0};
            }
        }
        __syncthreads();
        // s^2 |x|^2: four lanes per row.
        {
            const int r = static_cast<int>(threadIdx.x) / 4, part_k = static_cast<int>(threadIdx.x) % 4;
            float ss = 0.0f;
            if (r < ROWS)
                for (uint32_t k = part_k; k < p.dim; k += 4) {
                    const float v = p.input_scale * Elem<T>::from_bits(smem[l.x + r * l.stride + k]);
                    ss = fmaf(v, v, ss);
                }
            ss = butterfly_sum<4>(ss, 0xffffffffu);
            if (r < ROWS && part_k == 0) {
                norm2[r] = ss;
                run[r] = neg_inf();
            }
        }
        __syncthreads();
        float acc[2][8][4];
        // The exponent of acc[rt][nt][i] (row rr = 32 wr + 16 rt + g + 8 (i / 2)).
        auto exponent = [&](int rt, int i, float v) {
            return p.input_scale * v - p.norm_coefficient * norm2[32 * wr + 16 * rt + g + 8 * (i / 2)];
        };
        if (p.mode == SK_RF_SHIFT_ROW || p.mode == SK_RF_SHIFT_MAX_ONLY) {
            for (uint32_t pass = 0; pass < passes; ++pass) {
                const uint32_t f0 = pass * PASS;
                project_pass<T, PARTS>(smem, l, kp, p.features, f0, acc);
                float mx[2][2];
#pragma unroll
                for (int rt = 0; rt < 2; ++rt)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        mx[rt][h] = neg_inf();
#pragma unroll
                        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                            for (int j = 0; j < 2; ++j) {
                                const uint32_t f = f0 + 64 * wf + 8 * nt + 2 * t + j;
                                if (f < p.features) mx[rt][h] = max_nan(mx[rt][h], exponent(rt, 2 * h + j, acc[rt][nt][2 * h + j]));
                            }
                        mx[rt][h] = max_nan(mx[rt][h], __shfl_xor_sync(0xffffffffu, mx[rt][h], 1));
                        mx[rt][h] = max_nan(mx[rt][h], __shfl_xor_sync(0xffffffffu, mx[rt][h], 2));
                        if (t == 0) part[wf * ROWS + 32 * wr + 16 * rt + g + 8 * h] = mx[rt][h];
                    }
                __syncthreads();
                if (threadIdx.x < ROWS) {
                    float m = run[threadIdx.x];
                    for (int w = 0; w < SLICES; ++w) m = max_nan(m, part[w * ROWS + threadIdx.x]);
                    run[threadIdx.x] = m;
                }
                __syncthreads();
            }
            if (threadIdx.x < ROWS && row0 + threadIdx.x < p.rows) p.shift[row0 + threadIdx.x] = run[threadIdx.x];
            if (p.mode == SK_RF_SHIFT_MAX_ONLY) continue;
        }
        for (uint32_t pass = 0; pass < passes; ++pass) {
            const uint32_t f0 = pass * PASS;
            if (!fused) project_pass<T, PARTS>(smem, l, kp, p.features, f0, acc);
#pragma unroll
            for (int rt = 0; rt < 2; ++rt)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const uint32_t r = 32 * wr + 16 * rt + g + 8 * h;
                    const uint64_t row = row0 + r;
                    if (row >= p.rows) continue;
                    const float shift = p.mode == SK_RF_SHIFT_ROW ? run[r]
                                        : p.mode == SK_RF_SHIFT_GIVEN ? p.shift[row] : 0.0f;
                    if (p.mode == SK_RF_SHIFT_NONE && pass == 0 && wf == 0 && t == 0) p.shift[row] = 0.0f;
                    O *o = out + row * p.out_stride;
#pragma unroll
                    for (int nt = 0; nt < 8; ++nt) {
                        const uint32_t f = f0 + 64 * wf + 8 * nt + 2 * t;
                        if (f >= p.features) continue;
                        const O v0 = Elem<O>::from_f32(p.feature_scale * (expf(exponent(rt, 2 * h, acc[rt][nt][2 * h]) - shift) + p.eps));
                        const O v1 = Elem<O>::from_f32(p.feature_scale * (expf(exponent(rt, 2 * h + 1, acc[rt][nt][2 * h + 1]) - shift) + p.eps));
                        if (f + 1 < p.features && pairs) {
                            if constexpr (std::is_same<O, float>::value) {
                                *reinterpret_cast<float2 *>(o + f) = make_float2(v0, v1);
                            } else {
                                *reinterpret_cast<uint32_t *>(o + f) =
                                    static_cast<uint32_t>(Elem<O>::bits(v0)) | (static_cast<uint32_t>(Elem<O>::bits(v1)) << 16);
                            }
                        } else {
                            o[f] = v0;
                            if (f + 1 < p.features) o[f + 1] = v1;
                        }
                    }
                }
        }
    }
}

}  // namespace tc

// Each row's shift becomes the largest shift of its group (fmaxf: NaN rows are ignored, so a
// non-finite input spoils only its own row). One block per group, grid-stride.
__device__ void group_shift(const sk_rf_features_params &p) {
    __shared__ float part[THREADS / 32];
    const uint64_t groups = p.rows / p.group_rows;
    const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
    for (uint64_t g = blockIdx.x; g < groups; g += gridDim.x) {
        float* s = p.shift + g * p.group_rows;
        float mx = neg_inf();
        for (uint32_t r = threadIdx.x; r < p.group_rows; r += THREADS) mx = fmaxf(mx, s[r]);
#pragma unroll
        for (int m = 16; m >= 1; m /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, m));
        if (lane == 0) part[warp] = mx;
        __syncthreads();
        mx = part[0];
#pragma unroll
        for (int w = 1; w < THREADS / 32; ++w) mx = fmaxf(mx, part[w]);
        __syncthreads();  // every thread has read part before it is rewritten
        for (uint32_t r = threadIdx.x; r < p.group_rows; r += THREADS) s[r] = mx;
    }
}


// ---- FAVOR+ from the features ----------------------------------------------------------------
namespace favor {

constexpr int THREADS = static_cast<int>(SK_FAVOR_THREADS);
constexpr uint32_t SEGMENT = SK_FAVOR_SEGMENT;

constexpr uint32_t COLS = SK_FAVOR_TASK_COLUMNS;  // 72: value_dim 64 and the ones column in one task
constexpr int COL_TILES = static_cast<int>(COLS) / 8;  // n-tiles of 8 columns
constexpr uint32_t TILE_ROWS = SK_FAVOR_TILE_ROWS;
static_assert(COLS % 8 == 0 && SK_FAVOR_TASK_FEATURES == 32 && TILE_ROWS == 16 && SEGMENT % 16 == 0,
              "the tensor-core tasks: two m-tiles of features, n-tiles of columns, one m-tile of rows, "
              "whole k-steps of keys per segment");

// A B fragment in split form (bf[j][h]: part j, k half h): the pair at k = k0 + 2q + 8h and
// k + 1 of the lane's column, value(k) where `in` and k < kmax, zero elsewhere.
// Index: uint32_t for features and columns, uint64_t for positions.
template <int P, class Index, class Value>
__device__ __forceinline__ void b_fragment(Index k0, Index kmax, bool in, Value value, uint32_t (&bf)[P][2]) {
    const Index q = threadIdx.x % 4;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const Index k = k0 + 2 * q + 8 * h;
        split_into(in && k < kmax ? value(k) : 0.0f, in && k + 1 < kmax ? value(k + 1) : 0.0f, bf, h);
    }
}

// The state tiles on the tensor cores: S[t][c] = sum over the rows of one segment of
// a[row][t] b(row, c), for every (head, segment): the forward states S = sum_j phik_j [v_j, 1]^T
// and the gradient states sum_i phiq_i G_i^T. As one MMA product per task: M = the features t,
// N = the columns c, K = the segment's rows, a and b split into bf16 parts (a: 3, b: PB) so the
// products carry f32 accuracy (mma_split). A warp per task (head, segment, 32 features, COLS
// columns), grid-stride; rows past the segment and entries past the matrix read as zero.
// Fragment a[r8 + 2h] holds features f0 + 16 mt + g + 8 r8 at rows 2q + 8h (+1).
template <int PB, class RightFactor>
__device__ void segment_sums(const sk_favor_params &p, const float *a, float *states, RightFactor b) {
    const uint32_t width = p.value_dim + 1;
    const uint64_t entries = static_cast<uint64_t>(p.features) * width;
    const uint32_t ftasks = (p.features + 31) / 32, ctasks = (width + COLS - 1) / COLS;
    const uint64_t tasks = p.heads * p.segments * ftasks * ctasks;
    const int lane = static_cast<int>(threadIdx.x) % 32, g = lane / 4, q = lane % 4;
    const uint64_t warps = static_cast<uint64_t>(gridDim.x) * (THREADS / 32);
    for (uint64_t task = static_cast<uint64_t>(blockIdx.x) * (THREADS / 32) + threadIdx.x / 32; task < tasks;
         task += warps) {
        const uint64_t blk = task / (ftasks * ctasks);  // head * segments + segment
        const uint32_t sub = static_cast<uint32_t>(task % (ftasks * ctasks));
        const uint32_t f0 = 32 * (sub / ctasks), c0 = COLS * (sub % ctasks);
        const uint64_t head = blk / p.segments, seg = blk % p.segments;
        const uint64_t first = head * p.len + seg * SEGMENT;
        const uint32_t count = static_cast<uint32_t>(min(static_cast<uint64_t>(SEGMENT), p.len - seg * SEGMENT));
        float acc[2][COL_TILES][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int nt = 0; nt < COL_TILES; ++nt)
#pragma unroll
                for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.0f;
        for (uint32_t k0 = 0; k0 < count; k0 += 16) {
            uint32_t af[2][3][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int f = 0; f < 4; ++f) {
                    const int r8 = f % 2, h = f / 2;
                    const uint32_t t = f0 + 16 * mt + g + 8 * r8, r = k0 + 2 * q + 8 * h;
                    const bool in = t < p.features;
                    const float x0 = in && r < count ? a[(first + r) * p.features + t] : 0.0f;
                    const float x1 = in && r + 1 < count ? a[(first + r + 1) * p.features + t] : 0.0f;
                    split_into(x0, x1, af[mt], f);
                }
#pragma unroll
            for (int nt = 0; nt < COL_TILES; ++nt) {
                if (c0 + 8 * nt >= width) continue;  // warp-uniform
                const uint32_t c = c0 + 8 * nt + g;
                uint32_t bf[PB][2];
                b_fragment(k0, count, c < width, [&](uint32_t r) { return b(first + r, c); }, bf);
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) mma_split(acc[mt][nt], af[mt], bf);
            }
        }
        // acc[mt][nt][i]: feature f0 + 16 mt + g + 8 (i / 2), column c0 + 8 nt + 2q + i % 2.
        float *state = states + blk * entries;
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int nt = 0; nt < COL_TILES; ++nt)
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const uint32_t t = f0 + 16 * mt + g + 8 * (i / 2), c = c0 + 8 * nt + 2 * q + i % 2;
                    if (t < p.features && c < width) state[static_cast<uint64_t>(t) * width + c] = acc[mt][nt][i];
                }
    }
}

// Column c of [v_row, 1].
template <class T>
__device__ __forceinline__ float value_or_one(const sk_favor_params &p, uint64_t row, uint32_t c) {
    return c < p.value_dim ? Elem<T>::to_f32(static_cast<const T *>(p.v)[row * p.v_stride + c]) : 1.0f;
}

template <class T>
__device__ void segment_state(const sk_favor_params &p) {
    segment_sums<SplitParts<T>::value>(p, p.phik, p.states,
                                       [&](uint64_t row, uint32_t c) { return value_or_one<T>(p, row, c); });
}

// Causal: exclusive prefix sums over the segments of each head, in place (exclusive suffix sums
// with `reverse`). Non-causal: the total, written to segment 0. A thread per (head, entry),
// segments in order: deterministic.
__device__ void prefix(const sk_favor_params &p) {
    const uint64_t entries = static_cast<uint64_t>(p.features) * (p.value_dim + 1);
    const uint64_t n = p.heads * entries;
    for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
        const uint64_t head = i / entries, e = i % entries;
        float *s = p.states + head * p.segments * entries + e;
        float run = 0.0f;
        for (uint32_t step = 0; step < p.segments; ++step) {
            const uint32_t seg = p.reverse ? p.segments - 1 - step : step;
            const float here = s[seg * entries];
            if (p.causal) s[seg * entries] = run;
            run += here;
        }
        if (!p.causal) s[0] = run;
    }
}

// The state row `row` reads: its segment's prefix (causal) or the total (segment 0).
__device__ __forceinline__ const float *row_state(const sk_favor_params &p, const float *states, uint64_t row) {
    const uint64_t head = row / p.len, seg = (row % p.len) / SEGMENT;
    const uint64_t entries = static_cast<uint64_t>(p.features) * (p.value_dim + 1);
    return states + (head * p.segments + (p.causal ? seg : 0)) * entries;
}

// ---- FAVOR+ row products on the tensor cores ------------------------------------------------
// Every row-side product of FAVOR+ and of its gradient has one form. For a tile of 16 rows i of
// one head (tiles never straddle a segment: 16 divides SEGMENT),
//   acc_i = A_i B + sum over the keys j of i's segment that i sees of (A_i . C_j) D_j,
// with B the tile's state (K x N), A and C rows of K entries and D rows of N entries; i sees
// j <= i (causal forward and query gradient), j >= i (key and value gradients: LATER), or
// nothing (non-causal: B holds every key):
//   output  A = phiq    B = S              C = phik    D = [v, 1]     K = m      N = dv + 1
//   dphiq   A = G       B = S^T            C = [v, 1]  D = phik       K = dv + 1 N = m
//   dphik   A = [v, 1]  B = D^T            C = G       D = phiq       K = dv + 1 N = m
//   dv      A = phik    B = D[:, :dv]      C = phiq    D = G[:, :dv]  K = m      N = dv
// (S the forward states, D the gradient states). On the tensor cores, per chunk of 8 NT
// output columns: acc = A B (M = rows, N = columns, K), P = A C^T (N = the keys of the
// segment in reach), then acc += P D with P's accumulators reused as A fragments (its
// n-tiles 2kk and 2kk + 1 are the two k halves of key step kk) for the key steps the whole
// tile sees, and as f32 FMAs over each row's own keys for the diagonal step (diagonal_step:
// a masked zero times a non-finite D would be NaN in an MMA). Every operand is split
// into bf16 parts (3 for f32, SplitParts for the storage type) and mma_split keeps the
// products down to 2^-24: f32 accuracy. Fragment a[r8 + 2h] holds rows g + 8 r8 at k 2q + 8h
// (+1); acc[nt][i] is row g + 8 (i / 2), column c0 + 8 nt + 2q + i % 2. Operand accessors are
// called only inside the matrices (rows < len, k < K, columns < N).
// P's 8-key n-tiles hold the diagonal keys i0 .. i0 + 15 first (n-tiles 0 and 1), then the
// others in reach: s0 .. i0 - 1 (causal) or i0 + 16 .. the segment's end (LATER).
struct Tile {
    uint64_t base;      // the head's first row
    uint64_t i0;        // the tile's first position
    uint64_t s0;        // its segment's first position
    int key_tiles;      // 8-key n-tiles of P in reach (even; 0 when not causal)
    const float *state;
};

// The first key of P's n-tile n.
template <bool LATER>
__device__ __forceinline__ uint64_t tile_key(const Tile &tl, int n) {
    return LATER || n < 2 ? tl.i0 + 8 * n : tl.s0 + 8 * (n - 2);
}

template <bool LATER>
__device__ __forceinline__ Tile tile_at(const sk_favor_params &p, const float *states, uint64_t tile) {
    const uint64_t per_head = (p.len + TILE_ROWS - 1) / TILE_ROWS;
    Tile tl;
    tl.base = (tile / per_head) * p.len;
    tl.i0 = (tile % per_head) * TILE_ROWS;
    tl.s0 = tl.i0 - tl.i0 % SEGMENT;
    tl.state = row_state(p, states, tl.base + tl.i0);
    // keys s0 .. i0 + 15 (the diagonal tile included), or i0 .. the segment's end
    tl.key_tiles = !p.causal ? 0 : LATER ? static_cast<int>((tl.s0 + SEGMENT - tl.i0) / 8)
                                         : static_cast<int>((tl.i0 - tl.s0) / 8) + 2;
    return tl;
}

// Calls f(tile) for each of the warp's tiles (a warp per tile, grid-stride).
template <class F>
__device__ __forceinline__ void for_each_tile(const sk_favor_params &p, F f) {
    const uint64_t tiles = p.heads * ((p.len + TILE_ROWS - 1) / TILE_ROWS);
    const uint64_t warps = static_cast<uint64_t>(gridDim.x) * (THREADS / 32);
    for (uint64_t tile = static_cast<uint64_t>(blockIdx.x) * (THREADS / 32) + threadIdx.x / 32; tile < tiles;
         tile += warps)
        f(tile);
}

// The diagonal key step of a causal tile product: keys i0 .. i0 + 15, each seen by only some of
// the tile's rows. An MMA would multiply P's masked zeros by D, and 0 x inf or 0 x NaN is NaN: a
// non-finite value would reach rows that do not see its key. So this step runs as f32 FMAs over
// the keys each row sees. p0 and p1 are P's n-tiles for keys i0 .. +7 and i0 + 8 .. +15 (C
// fragments: row g + 8 (i / 2), key 2q + i % 2); the quad holding a key's pair shares it by shuffles.
template <class Ops>
__device__ __forceinline__ void diagonal_step(const Ops &o, const Tile &tl, uint32_t c0, const float (&p0)[4],
                                              const float (&p1)[4], float (&acc)[Ops::NT][4]) {
    const int lane = static_cast<int>(threadIdx.x) % 32, g = lane / 4, q = lane % 4;
    const uint64_t r0 = tl.i0 + g, r1 = r0 + 8;  // the lane's rows
    // A rolled loop over the keys: unrolled, ptxas would keep every key's loads in flight and
    // spill. The pair is picked by selects, so p0 and p1 stay in registers.
#pragma unroll 1
    for (int jj = 0; jj < 16; ++jj) {
        const bool second = jj >= 8, odd = jj % 2;
        const float mine0 = second ? (odd ? p1[1] : p1[0]) : (odd ? p0[1] : p0[0]);
        const float mine1 = second ? (odd ? p1[3] : p1[2]) : (odd ? p0[3] : p0[2]);
        const int src = 4 * g + (jj % 8) / 2;
        const float pr0 = __shfl_sync(0xffffffffu, mine0, src);
        const float pr1 = __shfl_sync(0xffffffffu, mine1, src);
        const uint64_t j = tl.i0 + jj;
        if (j >= o.p.len) continue;  // warp-uniform
        const bool see0 = Ops::LATER ? j >= r0 : j <= r0, see1 = Ops::LATER ? j >= r1 : j <= r1;
#pragma unroll
        for (int nt = 0; nt < Ops::NT; ++nt) {
            if (c0 + 8 * nt >= o.n) continue;  // warp-uniform
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const uint32_t l = c0 + 8 * nt + 2 * q + e;
                if (l >= o.n) continue;
                const float d = o.d(tl.base + j, l);
                if (see0) acc[nt][e] = fmaf(pr0, d, acc[nt][e]);
                if (see1) acc[nt][2 + e] = fmaf(pr1, d, acc[nt][2 + e]);
            }
        }
    }
}

template <class Ops>
__device__ __forceinline__ void tile_product(const Ops &o, const Tile &tl, uint32_t c0, float (&acc)[Ops::NT][4]) {
    constexpr int KEY_TILES = static_cast<int>(SEGMENT) / 8;
    const int lane = static_cast<int>(threadIdx.x) % 32, g = lane / 4, q = lane % 4;
    const uint64_t len = o.p.len;
    float pk[KEY_TILES][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int nt = 0; nt < Ops::NT; ++nt) acc[nt][i] = 0.0f;
#pragma unroll
        for (int n = 0; n < KEY_TILES; ++n) pk[n][i] = 0.0f;
    }
    for (uint32_t k0 = 0; k0 < o.k; k0 += 16) {
        uint32_t af[Ops::PA][4];
#pragma unroll
        for (int f = 0; f < 4; ++f) {
            const uint64_t i = tl.i0 + g + 8 * (f % 2);
            const uint32_t k = k0 + 2 * q + 8 * (f / 2);
            const float x0 = i < len && k < o.k ? o.a(tl.base + i, k) : 0.0f;
            const float x1 = i < len && k + 1 < o.k ? o.a(tl.base + i, k + 1) : 0.0f;
            split_into(x0, x1, af, f);
        }
#pragma unroll
        for (int nt = 0; nt < Ops::NT; ++nt) {
            if (c0 + 8 * nt >= o.n) continue;  // warp-uniform
            const uint32_t l = c0 + 8 * nt + g;
            uint32_t bf[Ops::PB][2];
            b_fragment(k0, o.k, l < o.n, [&](uint32_t k) { return o.b(tl.state, k, l); }, bf);
            mma_split(acc[nt], af, bf);
        }
#pragma unroll
        for (int n = 0; n < KEY_TILES; ++n) {
            if (n >= tl.key_tiles) continue;  // warp-uniform
            const uint64_t j = tile_key<Ops::LATER>(tl, n) + g;
            uint32_t bf[Ops::PC][2];
            b_fragment(k0, o.k, j < len, [&](uint32_t k) { return o.c(tl.base + j, k); }, bf);
            mma_split(pk[n], af, bf);
        }
    }
#pragma unroll
    for (int kk = 0; kk < KEY_TILES / 2; ++kk) {
        if (2 * kk >= tl.key_tiles) continue;  // warp-uniform
        // Step 0, the keys i0 .. i0 + 15, is seen by some rows only; every other step's keys
        // are seen by the whole tile.
        if (kk == 0) {
            diagonal_step(o, tl, c0, pk[0], pk[1], acc);
            continue;
        }
        uint32_t af[3][4];
#pragma unroll
        for (int f = 0; f < 4; ++f) split_into(pk[2 * kk + f / 2][2 * (f % 2)], pk[2 * kk + f / 2][2 * (f % 2) + 1], af, f);
#pragma unroll
        for (int nt = 0; nt < Ops::NT; ++nt) {
            if (c0 + 8 * nt >= o.n) continue;  // warp-uniform
            const uint32_t l = c0 + 8 * nt + g;
            uint32_t bf[Ops::PD][2];
            b_fragment(tile_key<Ops::LATER>(tl, 2 * kk), len, l < o.n,
                       [&](uint64_t j) { return o.d(tl.base + j, l); }, bf);
            mma_split(acc[nt], af, bf);
        }
    }
}

// The forward rows (and the gradient's G): output columns in the order value_dim, 0, 1, ..
// (position l holds column l - 1), so the denominator lands in the first chunk's first tile,
// where each row's quad reads it by a shuffle (a column picked by a runtime index would put acc
// in local memory).
template <class T>
struct ForwardOps {
    static constexpr int NT = COL_TILES;  // dv + 1 = 65 in one chunk
    static constexpr int PA = 3, PB = 3, PC = 3, PD = SplitParts<T>::value;
    static constexpr bool LATER = false;
    const sk_favor_params &p;
    uint32_t k, n;
    __device__ ForwardOps(const sk_favor_params &p_) : p(p_), k(p_.features), n(p_.value_dim + 1) {}
    __device__ uint32_t column(uint32_t l) const { return l == 0 ? p.value_dim : l - 1; }
    __device__ float a(uint64_t row, uint32_t t) const { return p.phiq[row * p.features + t]; }
    __device__ float b(const float *st, uint32_t t, uint32_t l) const {
        return st[static_cast<uint64_t>(t) * n + column(l)];
    }
    __device__ float c(uint64_t row, uint32_t t) const { return p.phik[row * p.features + t]; }
    __device__ float d(uint64_t row, uint32_t l) const { return value_or_one<T>(p, row, column(l)); }
};

// The denominators den + guard of rows g and g + 8 from the first chunk's acc (position 0,
// lane 4g, elements 0 and 2).
__device__ __forceinline__ void denominators(const float (&acc)[COL_TILES][4], float guard, float (&den)[2]) {
    const int lane = static_cast<int>(threadIdx.x) % 32;
    den[0] = __shfl_sync(0xffffffffu, acc[0][0], lane & ~3) + guard;
    den[1] = __shfl_sync(0xffffffffu, acc[0][2], lane & ~3) + guard;
}

// The forward rows over every tile: entry(row, column, numerator, den + guard, h) for each
// output entry (column < value_dim; h: the lane's row g or g + 8), then done(tile, den).
template <class T, class Entry, class Done>
__device__ __forceinline__ void forward_rows(const sk_favor_params &p, Entry entry, Done done) {
    const ForwardOps<T> o(p);
    const int lane = static_cast<int>(threadIdx.x) % 32, g = lane / 4, q = lane % 4;
    for_each_tile(p, [&](uint64_t tile) {
        const Tile tl = tile_at<false>(p, p.states, tile);
        float den[2], acc[COL_TILES][4];
        for (uint32_t c0 = 0; c0 < o.n; c0 += COLS) {
            tile_product(o, tl, c0, acc);
            if (c0 == 0) denominators(acc, p.guard, den);
#pragma unroll
            for (int nt = 0; nt < COL_TILES; ++nt)
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const uint64_t row = tl.i0 + g + 8 * (i / 2);
                    const uint32_t l = c0 + 8 * nt + 2 * q + i % 2;
                    if (row < p.len && l >= 1 && l < o.n) entry(tl.base + row, l - 1, acc[nt][i], den[i / 2], i / 2);
                }
        }
        done(tl, den);
    });
}

template <class T>
__device__ void output(const sk_favor_params &p) {
    T *out = static_cast<T *>(p.out);
    forward_rows<T>(
        p,
        [&](uint64_t row, uint32_t c, float num, float den, int) {
            out[row * p.out_stride + c] = Elem<T>::from_f32(num / den);
        },
        [](const Tile &, const float (&)[2]) {});
}

// ---- FAVOR+ gradients ---------------------------------------------------------------------
// With N_i = phiq_i S_i[:, :dv], den_i = phiq_i S_i[:, dv] + guard and out_i = N_i / den_i, the
// gradient of sum dout . out with respect to [N_i, den_i] is G_i = [dout_i, -dout_i . out_i] /
// den_i; then dphiq_i = S_i G_i, and every key j receives, from each query i that sees it,
// phiq_i G_i^T: dphik_j = D_j [v_j, 1] and dv_j = D_j[:, :dv]^T phik_j with
// D_j = sum_{i sees j} phiq_i G_i^T (a suffix sum over positions when causal).

// G from the forward rows, a warp per tile, in one pass over the column chunks: the columns
// dout_i / den_i as soon as den_i is known (the first chunk), and column value_dim,
// -(dout_i . out_i) / den_i, after the last (the quad's lanes hold a row's columns).
template <class T>
__device__ void grad_g(const sk_favor_backward_params &b) {
    const sk_favor_params &p = b.f;
    const uint32_t width = p.value_dim + 1;
    const T *dout = static_cast<const T *>(b.dout);
    const int lane = static_cast<int>(threadIdx.x) % 32, g = lane / 4, q = lane % 4;
    float dot[2] = {0.0f, 0.0f};  // the lane's share of dout_i . out_i, rows g and g + 8
    forward_rows<T>(
        p,
        [&](uint64_t row, uint32_t c, float num, float den, int h) {
            const float d = Elem<T>::to_f32(dout[row * b.dout_stride + c]);
            dot[h] = fmaf(d, num / den, dot[h]);
            b.g[row * width + c] = d / den;
        },
        [&](const Tile &tl, const float (&den)[2]) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                dot[h] += __shfl_xor_sync(0xffffffffu, dot[h], 1);
                dot[h] += __shfl_xor_sync(0xffffffffu, dot[h], 2);
                const uint64_t row = tl.i0 + g + 8 * h;
                if (q == 0 && row < p.len) b.g[(tl.base + row) * width + p.value_dim] = -dot[h] / den[h];
                dot[h] = 0.0f;
            }
        });
}

// dphiq_i = S_i G_i + sum_{j <= i} (G_i . [v_j, 1]) phik_j.
template <class T>
struct QueryOps {
    static constexpr int NT = 8;  // m = 256 in four chunks, dv = 64 in one
    static constexpr int PA = 3, PB = 3, PC = SplitParts<T>::value, PD = 3;
    static constexpr bool LATER = false;
    const sk_favor_params &p;
    const float *g;
    uint32_t k, n;
    __device__ QueryOps(const sk_favor_backward_params &b)
        : p(b.f), g(b.g), k(b.f.value_dim + 1), n(b.f.features) {}
    __device__ float a(uint64_t row, uint32_t c) const { return g[row * k + c]; }
    __device__ float b(const float *st, uint32_t c, uint32_t t) const { return st[static_cast<uint64_t>(t) * k + c]; }
    __device__ float c(uint64_t row, uint32_t col) const { return value_or_one<T>(p, row, col); }
    __device__ float d(uint64_t row, uint32_t t) const { return p.phik[row * p.features + t]; }
};

// dphik_j = D_j [v_j, 1] + sum_{i >= j} ([v_j, 1] . G_i) phiq_i.
template <class T>
struct KeyOps {
    static constexpr int NT = 8;  // m = 256 in four chunks, dv = 64 in one
    static constexpr int PA = SplitParts<T>::value, PB = 3, PC = 3, PD = 3;
    static constexpr bool LATER = true;
    const sk_favor_params &p;
    const float *g;
    uint32_t k, n;
    __device__ KeyOps(const sk_favor_backward_params &b)
        : p(b.f), g(b.g), k(b.f.value_dim + 1), n(b.f.features) {}
    __device__ float a(uint64_t row, uint32_t col) const { return value_or_one<T>(p, row, col); }
    __device__ float b(const float *st, uint32_t c, uint32_t t) const { return st[static_cast<uint64_t>(t) * k + c]; }
    __device__ float c(uint64_t row, uint32_t col) const { return g[row * k + col]; }
    __device__ float d(uint64_t row, uint32_t t) const { return p.phiq[row * p.features + t]; }
};

// dv_j = D_j[:, :dv]^T phik_j + sum_{i >= j} (phik_j . phiq_i) G_i[:dv].
struct ValueOps {
    static constexpr int NT = 8;  // m = 256 in four chunks, dv = 64 in one
    static constexpr int PA = 3, PB = 3, PC = 3, PD = 3;
    static constexpr bool LATER = true;
    const sk_favor_params &p;
    const float *g;
    uint32_t k, n, width;
    __device__ ValueOps(const sk_favor_backward_params &b)
        : p(b.f), g(b.g), k(b.f.features), n(b.f.value_dim), width(b.f.value_dim + 1) {}
    __device__ float a(uint64_t row, uint32_t t) const { return p.phik[row * p.features + t]; }
    __device__ float b(const float *st, uint32_t t, uint32_t c) const {
        return st[static_cast<uint64_t>(t) * width + c];
    }
    __device__ float c(uint64_t row, uint32_t t) const { return p.phiq[row * p.features + t]; }
    __device__ float d(uint64_t row, uint32_t col) const { return g[row * width + col]; }
};

// Runs Ops over every tile and stores acc through store(row, column, value).
template <class Ops, class Store>
__device__ __forceinline__ void row_products(const Ops &o, const float *states, Store store) {
    const sk_favor_params &p = o.p;
    const int lane = static_cast<int>(threadIdx.x) % 32, g = lane / 4, q = lane % 4;
    for_each_tile(p, [&](uint64_t tile) {
        const Tile tl = tile_at<Ops::LATER>(p, states, tile);
        float acc[Ops::NT][4];
        for (uint32_t c0 = 0; c0 < o.n; c0 += 8 * Ops::NT) {
            tile_product(o, tl, c0, acc);
#pragma unroll
            for (int nt = 0; nt < Ops::NT; ++nt)
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const uint64_t row = tl.i0 + g + 8 * (i / 2);
                    const uint32_t l = c0 + 8 * nt + 2 * q + i % 2;
                    if (row < p.len && l < o.n) store(tl.base + row, l, acc[nt][i]);
                }
        }
    });
}

template <class T>
__device__ void grad_query(const sk_favor_backward_params &b) {
    row_products(QueryOps<T>(b), b.f.states,
                 [&](uint64_t row, uint32_t t, float v) { b.dphiq[row * b.f.features + t] = v; });
}

template <class T>
__device__ void grad_key(const sk_favor_backward_params &b) {
    row_products(KeyOps<T>(b), b.dstates,
                 [&](uint64_t row, uint32_t t, float v) { b.dphik[row * b.f.features + t] = v; });
}

template <class T>
__device__ void grad_value(const sk_favor_backward_params &b) {
    T *dv = static_cast<T *>(b.dv);
    row_products(ValueOps(b), b.dstates,
                 [&](uint64_t row, uint32_t c, float v) { dv[row * b.dv_stride + c] = Elem<T>::from_f32(v); });
}

// The gradient states: sum_i phiq_i G_i^T per segment.
__device__ void grad_state(const sk_favor_backward_params &b) {
    const sk_favor_params &p = b.f;
    const uint32_t width = p.value_dim + 1;
    segment_sums<3>(p, p.phiq, b.dstates, [&](uint64_t row, uint32_t c) { return b.g[row * width + c]; });
}

}  // namespace favor

// dx of the feature map, a warp per row: lanes own features i = lane + 32 t for g_i (staged in
// the warp's shared slice), then columns k = lane + 32 t for the sums over i of g_i w_ik
// (coalesced reads of W's rows, broadcast reads of g).
// T: the storage type of x and dx; G: of dphi (T, or f32 from FAVOR+'s workspace).
template <class T, class G>
__device__ void features_backward(const sk_rf_backward_params &b) {
    const sk_rf_features_params &p = b.f;
    const T *x = static_cast<const T *>(p.x);
    const G *dphi = static_cast<const G *>(b.dphi);
    T *dx = static_cast<T *>(b.dx);
    const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
    float *g = reinterpret_cast<float *>(SK_DYNAMIC_SMEM()) + static_cast<size_t>(warp) * p.features;
    const uint64_t warps = static_cast<uint64_t>(gridDim.x) * (THREADS / 32);
    for (uint64_t row = static_cast<uint64_t>(blockIdx.x) * (THREADS / 32) + warp; row < p.rows; row += warps) {
        const T *xr = x + row * p.x_stride;
        float ss = 0.0f;
        for (uint32_t k = lane; k < p.dim; k += 32) {
            const float v = p.input_scale * Elem<T>::to_f32(xr[k]);
            ss = fmaf(v, v, ss);
        }
        ss = butterfly_sum<32>(ss, 0xffffffffu);
        const float shift = p.shift[row];
        float gsum = 0.0f;
        for (uint32_t i = lane; i < p.features; i += 32) {
            const float *wi = p.w + static_cast<uint64_t>(i) * p.dim;
            float dot = 0.0f;
            for (uint32_t k = 0; k < p.dim; ++k) dot = fmaf(Elem<T>::to_f32(xr[k]), wi[k], dot);
            const float a = p.input_scale * dot - p.norm_coefficient * ss;
            const float gi = Elem<G>::to_f32(dphi[row * b.dphi_stride + i]) * p.feature_scale * expf(a - shift);
            g[i] = gi;
            gsum += gi;
        }
        gsum = butterfly_sum<32>(gsum, 0xffffffffu);
        __syncwarp();  // g is complete before any lane reads it
        const float xcoef = 2.0f * p.norm_coefficient * p.input_scale * p.input_scale * gsum;
        for (uint32_t k = lane; k < p.dim; k += 32) {
            float acc = 0.0f;
            for (uint32_t i = 0; i < p.features; ++i) acc = fmaf(g[i], p.w[static_cast<uint64_t>(i) * p.dim + k], acc);
            dx[row * b.dx_stride + k] = Elem<T>::from_f32(p.input_scale * acc - xcoef * Elem<T>::to_f32(xr[k]));
        }
        __syncwarp();  // every lane has read g before the next row overwrites it
    }
}

// ---- kernel estimates for pairs (see sk_rf_estimate_params) --------------------------------
// A warp per pair, a lane per feature; x and y are read by every lane at the same address
// (broadcasts from L1). For statistical validation (MSE over many draws of W), not tuned.
template <class T>
__device__ void estimate_pairs(const sk_rf_estimate_params &p) {
    const T *x = static_cast<const T *>(p.x);
    const T *y = static_cast<const T *>(p.y);
    const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
    const uint64_t warps = static_cast<uint64_t>(gridDim.x) * (SK_RF_THREADS / 32);
    for (uint64_t pair = static_cast<uint64_t>(blockIdx.x) * (SK_RF_THREADS / 32) + warp; pair < p.pairs;
         pair += warps) {
        const T *xr = x + pair * p.x_stride;
        const T *yr = y + pair * p.y_stride;
        // |x|^2 + |y|^2 in f64: squares of any finite input are exact there, and a non-finite
        // entry shows as a non-finite sum.
        double ss = 0.0;
        for (uint32_t k = lane; k < p.dim; k += 32) {
            const double a = Elem<T>::to_f32(xr[k]), b = Elem<T>::to_f32(yr[k]);
            ss = fma(a, a, fma(b, b, ss));
        }
        ss = butterfly_sum<32>(ss, 0xffffffffu);
        const double base = -static_cast<double>(p.norm_coefficient) * ss;
        // This lane's features: the largest exponent and the sum of exp(a - top).
        float top = -INFINITY, sum = 0.0f;
        for (uint32_t i = lane; i < p.features; i += 32) {
            const float *wi = p.w + static_cast<uint64_t>(i) * p.dim;
            float dot = 0.0f;
            for (uint32_t k = 0; k < p.dim; ++k) {
                dot = fmaf(wi[k], Elem<T>::to_f32(xr[k]) + Elem<T>::to_f32(yr[k]), dot);
            }
            const float a = static_cast<float>(static_cast<double>(dot) + base);
            if (a > top) {
                sum = sum * expf(top - a) + 1.0f;
                top = a;
            } else if (!(a == -INFINITY)) {  // a term below f32's range adds 0; NaN poisons
                sum += expf(a - top);
            }
        }
        // Merge the lanes' (top, sum); lanes without features hold (-inf, 0).
#pragma unroll
        for (int o = 16; o >= 1; o /= 2) {
            const float ot = __shfl_xor_sync(0xffffffffu, top, o);
            const float os = __shfl_xor_sync(0xffffffffu, sum, o);
            const float t = fmaxf(top, ot);
            if (t != -INFINITY) sum = sum * expf(top - t) + os * expf(ot - t);
            top = t;
        }
        if (lane == 0) {
            const bool finite = ss <= DBL_MAX;  // false for inf and NaN
            p.out[pair] = finite ? top + logf(sum / static_cast<float>(p.features)) : __int_as_float(0x7fc00000);
        }
    }
}
}  // namespace rf
}  // namespace sk

SK_KERNEL(sk_rf_features_f32, sk_rf_features_params, SK_RF_THREADS, 1, (sk::rf::features<float, float>(p)))
SK_KERNEL(sk_rf_features_f16, sk_rf_features_params, SK_RF_THREADS, 1, (sk::rf::features<__half, __half>(p)))
SK_KERNEL(sk_rf_features_bf16, sk_rf_features_params, SK_RF_THREADS, 1,
          (sk::rf::features<__nv_bfloat16, __nv_bfloat16>(p)))
SK_KERNEL(sk_rf_features_f16_to_f32, sk_rf_features_params, SK_RF_THREADS, 1,
          (sk::rf::features<__half, float>(p)))
SK_KERNEL(sk_rf_features_bf16_to_f32, sk_rf_features_params, SK_RF_THREADS, 1,
          (sk::rf::features<__nv_bfloat16, float>(p)))
SK_KERNEL(sk_rf_features_tc_f16, sk_rf_features_params, SK_RF_TC_THREADS, 1,
          (sk::rf::tc::features<__half, __half>(p)))
SK_KERNEL(sk_rf_features_tc_bf16, sk_rf_features_params, SK_RF_TC_THREADS, 1,
          (sk::rf::tc::features<__nv_bfloat16, __nv_bfloat16>(p)))
SK_KERNEL(sk_rf_features_tc_f16_to_f32, sk_rf_features_params, SK_RF_TC_THREADS, 1,
          (sk::rf::tc::features<__half, float>(p)))
SK_KERNEL(sk_rf_features_tc_bf16_to_f32, sk_rf_features_params, SK_RF_TC_THREADS, 1,
          (sk::rf::tc::features<__nv_bfloat16, float>(p)))
SK_KERNEL(sk_rf_group_shift, sk_rf_features_params, SK_RF_THREADS, 1, (sk::rf::group_shift(p)))
SK_KERNEL(sk_rf_estimate_f32, sk_rf_estimate_params, SK_RF_THREADS, 1, (sk::rf::estimate_pairs<float>(p)))
SK_KERNEL(sk_rf_estimate_f16, sk_rf_estimate_params, SK_RF_THREADS, 1, (sk::rf::estimate_pairs<__half>(p)))
SK_KERNEL(sk_rf_estimate_bf16, sk_rf_estimate_params, SK_RF_THREADS, 1,
          (sk::rf::estimate_pairs<__nv_bfloat16>(p)))

#define SK_FAVOR_KERNELS(suffix, T)                                                                  \
    SK_KERNEL(sk_favor_state_##suffix, sk_favor_params, SK_FAVOR_THREADS, 1,                       \
              (sk::rf::favor::segment_state<T>(p)))                                                \
    SK_KERNEL(sk_favor_output_##suffix, sk_favor_params, SK_FAVOR_THREADS, 1, (sk::rf::favor::output<T>(p))) \
    SK_KERNEL(sk_favor_grad_query_##suffix, sk_favor_backward_params, SK_FAVOR_THREADS, 1,         \
              (sk::rf::favor::grad_query<T>(p)))                                                   \
    SK_KERNEL(sk_favor_grad_key_##suffix, sk_favor_backward_params, SK_FAVOR_THREADS, 1,           \
              (sk::rf::favor::grad_key<T>(p)))                                                     \
    SK_KERNEL(sk_favor_grad_g_##suffix, sk_favor_backward_params, SK_FAVOR_THREADS, 1,             \
              (sk::rf::favor::grad_g<T>(p)))                                                       \
    SK_KERNEL(sk_favor_grad_value_##suffix, sk_favor_backward_params, SK_FAVOR_THREADS, 1,         \
              (sk::rf::favor::grad_value<T>(p)))
SK_FAVOR_KERNELS(f32, float)
SK_FAVOR_KERNELS(f16, __half)
SK_FAVOR_KERNELS(bf16, __nv_bfloat16)
SK_KERNEL(sk_favor_prefix, sk_favor_params, SK_FAVOR_THREADS, 1, (sk::rf::favor::prefix(p)))
SK_KERNEL(sk_favor_grad_state, sk_favor_backward_params, SK_FAVOR_THREADS, 1, (sk::rf::favor::grad_state(p)))
SK_KERNEL(sk_rf_features_backward_f32, sk_rf_backward_params, SK_RF_THREADS, 1,
          (sk::rf::features_backward<float, float>(p)))
SK_KERNEL(sk_rf_features_backward_f16, sk_rf_backward_params, SK_RF_THREADS, 1,
          (sk::rf::features_backward<__half, __half>(p)))
SK_KERNEL(sk_rf_features_backward_bf16, sk_rf_backward_params, SK_RF_THREADS, 1,
          (sk::rf::features_backward<__nv_bfloat16, __nv_bfloat16>(p)))
SK_KERNEL(sk_rf_features_backward_f16_from_f32, sk_rf_backward_params, SK_RF_THREADS, 1,
          (sk::rf::features_backward<__half, float>(p)))
SK_KERNEL(sk_rf_features_backward_bf16_from_f32, sk_rf_backward_params, SK_RF_THREADS, 1,
          (sk::rf::features_backward<__nv_bfloat16, float>(p)))
