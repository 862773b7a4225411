// Fused hyperspherical normalization (SimbaV2, nGPT): row normalization with explicit eps
// conventions, normalize-lerp-normalize, in-place weight projection; forward and backward.
//
// Organisation (quack-style tiers): a row segment of `len` elements is owned by a team of TPS
// threads chosen by the host from `len`. Register tiers keep the whole segment in registers, so
// every input is read from memory once; the streaming tier (one block of SK_STREAM_THREADS per
// segment) re-reads rows too long for registers. VEC is the number of elements per 16-byte
// access, or 1 for rows whose length or alignment rules out vector access.
//
// Robustness: every row is first computed in f32; when a sum of squares or a dot product leaves
// the range where f32 is exact enough (see sumsq_trusted), the row is recomputed in f64 from the
// same inputs. The decision is uniform across the team, and nothing is stored before it.
#include "common.cuh"

namespace sk {
namespace hs {

// ---- per-row scalar math --------------------------------------------------------------------

template <class A>
__device__ __forceinline__ A fma_acc(A a, A b, A c) {
    return fma(a, b, c);
}

// The clamp test n < eps, written without a square root as ss < eps^2 (n >= 0).
template <class A>
__device__ __forceinline__ bool below_eps(A ss, A eps) {
    return ss < eps * eps;
}

// r in y = x * r for a row with sum of squares ss. NaN propagates: a NaN row never takes the
// clamp branch (NaN < eps^2 is false), so it cannot turn into finite garbage.
template <class A>
__device__ __forceinline__ A inv_norm(uint32_t mode, A eps, A ss) {
    switch (mode) {
        case SK_EPS_CLAMP: return below_eps(ss, eps) ? recip_acc(eps) : rsqrt_acc(ss);
        case SK_EPS_ADD: return recip_acc(sqrt_acc(ss) + eps);
        case SK_EPS_INSIDE: return rsqrt_acc(ss + eps);
        default: return rsqrt_acc(ss);
    }
}

// Backward of yhat = x * r(x): dx = r * (g - c * yhat), with g the gradient at yhat and
// dot = <x, g>. Derivations (n = ||x||, t = <yhat, g> = r * dot):
//   none, inside:  dx = r (g - yhat t)                       -> c = t
//   clamp, n>=eps: same as none; n < eps: r = 1/eps constant -> c = 0
//   add:           dx = r g - yhat t / n = r (g - yhat t (n + eps) / n) -> c = t (1 + eps / n),
//                  and c = 0 at n = 0, where yhat = 0.
// The clamp tie n == eps takes the normalizing branch, as torch's clamp_min backward does.
template <class A>
struct GradCoef {
    A r, c;
};

template <class A>
__device__ __forceinline__ GradCoef<A> grad_coef(uint32_t mode, A eps, A ss, A dot) {
    A r, kappa;
    switch (mode) {
        case SK_EPS_CLAMP:
            if (below_eps(ss, eps)) {
                r = recip_acc(eps);
                kappa = A(0);
            } else {
                r = rsqrt_acc(ss);
                kappa = A(1);
            }
            break;
        case SK_EPS_ADD: {
            const A rn = rsqrt_acc(ss);  // 1/n; inf at n = 0
            r = recip_acc(sqrt_acc(ss) + eps);
            kappa = ss > A(0) ? fma_acc(eps, rn, A(1)) : A(0);
            break;
        }
        case SK_EPS_INSIDE:
            r = rsqrt_acc(ss + eps);
            kappa = A(1);
            break;
        default:
            r = rsqrt_acc(ss);
            kappa = A(1);
            break;
    }
    return {r, kappa * (r * dot)};
}

// The lerp of normalize-lerp-normalize, z = (1 - alpha) a + alpha b with om = 1 - alpha
// carried exactly enough (alpha_parts), the same expression wherever z is recomputed so that
// it gives the same bits. Not a + alpha (b - a): with a = h unnormalized, |h| >> 1 and alpha
// near 1, rounding b - a costs eps |a| where z itself is only about (1 - alpha) |a| + alpha |b|
// (seen: 2.4e-6 of the row norm in f32, for rows of norm 4e3). Here the error is about
// eps ((1 - alpha) |a| + |z|).
template <class A>
__device__ __forceinline__ A lerp_z(A a, A b, A alpha, A om) {
    return fma_acc(alpha, b, om * a);
}

template <class A, int VEC>
__device__ __forceinline__ A sum_lanes(const A (&v)[VEC]) {
    if constexpr (VEC == 1) {
        return v[0];
    } else {
        A half[VEC / 2];
#pragma unroll
        for (int i = 0; i < VEC / 2; ++i) half[i] = v[2 * i] + v[2 * i + 1];
        return sum_lanes<A, VEC / 2>(half);
    }
}

// ---- register tiles -------------------------------------------------------------------------
// Chunk k of lane l covers elements [(k * TPS + l) * VEC, +VEC): consecutive lanes touch
// consecutive 16-byte words, so every access is coalesced. With VEC > 1 the host guarantees
// len % VEC == 0, so a chunk is either wholly inside the segment or wholly outside.

// Chunks per thread of a register tier whose op keeps ELEMS elements per thread. Scalar tiers
// (VEC == 1, one element per chunk) keep a quarter as many: each element is then a separate
// load and a separate register of the f64 retry's unrolled reloads.
template <uint32_t ELEMS, int VEC>
__host__ __device__ constexpr int tile_chunks() {
    return VEC == 1 ? static_cast<int>(ELEMS) / 4 : static_cast<int>(ELEMS) / VEC;
}

template <int TPS, int VEC>
__device__ __forceinline__ uint32_t chunk_col(int k, int lane) {
    return (static_cast<uint32_t>(k) * TPS + static_cast<uint32_t>(lane)) * VEC;
}

// The CH chunks a lane owns of one row segment, kept in storage form (RawChunk) and widened
// to f32 where read; chunks past `len` hold zeros. It is also the finishers' source for the row.
template <class T, int TPS, int VEC, int CH>
struct RawTile {
    RawChunk<T, VEC> c[CH];
    __device__ __forceinline__ void load(const T *base, int lane, uint32_t len) {
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            const uint32_t col = chunk_col<TPS, VEC>(k, lane);
            if (col < len) {
                c[k].load(base + col);
            } else {
                c[k].fill(0.0f);
            }
        }
    }
    __device__ __forceinline__ void fill(float v) {
#pragma unroll
        for (int k = 0; k < CH; ++k) c[k].fill(v);
    }
    __device__ __forceinline__ void operator()(int k, uint32_t, float (&out)[VEC]) const {
        c[k].widen(out);
    }
};

// The segments a worker visits: w, w + W, w + 2W, ... as (row, group) pairs, advanced without
// 64-bit division (which compiles to a subroutine call). The host keeps W and the groups per row
// below 2^31.
struct SegCursor {
    uint64_t row;
    uint32_t j;  // group index within the row
    uint32_t gpr;
    uint32_t row_step, j_step;
    __device__ __forceinline__ SegCursor(uint32_t w, uint32_t workers, uint32_t groups_per_row)
        : row(w / groups_per_row),
          j(w % groups_per_row),
          gpr(groups_per_row),
          row_step(workers / groups_per_row),
          j_step(workers % groups_per_row) {}
    __device__ __forceinline__ void next() {
        row += row_step;
        j += j_step;
        if (j >= gpr) {
            j -= gpr;
            ++row;
        }
    }
    template <class T>
    __device__ __forceinline__ const T *in(const void *base, uint64_t stride, uint32_t group) const {
        return static_cast<const T *>(base) + row * stride + static_cast<uint64_t>(j) * group;
    }
    template <class T>
    __device__ __forceinline__ T *out(void *base, uint64_t stride, uint32_t group) const {
        return static_cast<T *>(base) + row * stride + static_cast<uint64_t>(j) * group;
    }
};

// Whether a register tier of TPS threads per segment loads the next segment's tiles before it
// finishes the current one. For 16-bit storage: there a lane's tiles are half the bytes of f32
// ones, and with one segment in flight per team the memory system idled through every
// reduction (H200, 2026-11-28: 16-bit normalize backward at 40% of copy bandwidth where f32
// reached 97%). The second set of tiles costs about the registers that keeping them in storage
// form (RawTile) saved, except at 512 threads per segment, whose budget of 128 registers it
// would exceed (ptxas spills).
template <class T, int TPS>
struct PrefetchSegments {
    static constexpr bool value = sizeof(T) == 2 && TPS < 512;
};

// Finishes every segment c of a register-tier worker, in order: load(c, tiles) fills the
// tiles, fast(c, tiles) finishes the segment in f32 from them or returns false, and then
// retry(c) finishes it in f64 from memory. With PREFETCH the loads of segment c + 1 are issued
// before segment c is finished. (Loading them again after a retry, so that they would not be live
// during it, was tried: ptxas then used more registers, not fewer.)
template <bool PREFETCH, class Tiles, class Load, class Fast, class Retry>
__device__ __forceinline__ void for_segments(SegCursor c, uint64_t rows, const Load &load,
                                             const Fast &fast, const Retry &retry) {
    if constexpr (PREFETCH) {
        Tiles cur;
        if (c.row < rows) load(c, cur);
#pragma unroll 1
        while (c.row < rows) {
            SegCursor n = c;
            n.next();
            Tiles next;
            if (n.row < rows) load(n, next);
            if (!fast(c, cur)) retry(c);
            cur = next;
            c = n;
        }
    } else {
#pragma unroll 1
        for (; c.row < rows; c.next()) {
            Tiles t;
            load(c, t);
            if (!fast(c, t)) retry(c);
        }
    }
}

// ---- sources and sinks ----------------------------------------------------------------------
// A finisher visits the chunks a lane owns with for_chunks: register tiers pass CH > 0 (exactly
// CH chunks, unrolled, so k is a constant and register arrays stay in registers), the streaming
// tier passes CH = 0 (as many chunks as the segment has). Inputs come from a source: a register
// tile, read from memory once before the finisher, or memory itself, re-read on every pass (the
// streaming tier, and the f64 retry of the register tiers, which thereby keeps no f64 copy of the
// tile alive). Column sums (dscale, dp) go to a sink: registers (register tiers), one f64 per
// worker (streaming lerp with a scalar p), or nowhere (streaming tier: the column passes).

template <int TPS, int VEC, int CH, class F>
__device__ __forceinline__ void for_chunks(int lane, uint32_t len, F &&f) {
    if constexpr (CH > 0) {
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            const uint32_t col = chunk_col<TPS, VEC>(k, lane);
            if (col < len) f(k, col);
        }
    } else {
#pragma unroll 4
        for (uint32_t col = static_cast<uint32_t>(lane) * VEC; col < len; col += TPS * VEC) {
            f(0, col);
        }
    }
}

template <class T, int VEC>
struct MemSource {
    const T *base;
    __device__ __forceinline__ void operator()(int, uint32_t col, float (&out)[VEC]) const {
        load_vec<T, VEC>(base + col, out);
    }
};

// An input of the streaming tier: its first `stage` elements from dynamic shared memory (put
// there by stage_in), the rest re-read from global memory on every pass.
template <class T, int VEC>
struct StagedSource {
    const T *global;
    const T *staged;
    uint32_t stage;
    __device__ __forceinline__ void operator()(int, uint32_t col, float (&out)[VEC]) const {
        if (col < stage) {
            load_vec<T, VEC>(staged + col, out);
        } else {
            load_vec<T, VEC>(global + col, out);
        }
    }
};

// Starts copying the first `stage` elements of a segment into shared memory, each thread the
// chunks it will read back (the chunk-to-thread map of for_chunks with CH = 0); stage_wait
// then waits for the thread's own copies, and no barrier is needed. Vector chunks go by
// asynchronous copies, all of a thread's chunks (of every input) in flight at once: copied
// through registers, four loads at a time, a row of 16384 elements took two to four dependent
// round trips to memory before its first pass could start. Each thread's slots are free when it
// starts the next row's copies: its last reads of them fed values it has already used.
template <class T, int VEC>
__device__ __forceinline__ void stage_in(int lane, uint32_t stage, const T *global, T *staged) {
    if constexpr (VEC == 1) {
#pragma unroll 4
        for (uint32_t col = static_cast<uint32_t>(lane); col < stage; col += SK_STREAM_THREADS)
            staged[col] = global[col];
    } else {
        for (uint32_t col = static_cast<uint32_t>(lane) * VEC; col < stage;
             col += SK_STREAM_THREADS * VEC)
            copy_async16(staged + col, global + col, true);
    }
}

// Waits for the copies of this thread's stage_in and refill_chunk calls.
__device__ __forceinline__ void stage_wait() {
    copy_async_commit();
    copy_async_wait<0>();
}

// Called by a finisher's last pass once a chunk's outputs are stored, so that its staged inputs
// (col) have been read for the last time in this row. The register tiers pass NoRefill.
struct NoRefill {
    __device__ __forceinline__ void operator()(uint32_t) const {}
};

// Input i's staging area in the launch's dynamic shared memory.
template <class T>
__device__ __forceinline__ T *staging_area(int i, uint32_t stage) {
    return reinterpret_cast<T *>(SK_DYNAMIC_SMEM()) + static_cast<size_t>(i) * stage;
}

// The streaming tier's refill of staged input i: once chunk col of the current row has been
// read for the last time, copies the next row's chunk col (segment `next`) into the freed slot,
// so that the next row's loads overlap this row's last pass instead of following it (vector
// chunks asynchronously; scalar ones directly). The callers form `next` where used from the row
// index (holding the next row's pointers through the passes costs registers).
template <class T, int VEC>
__device__ __forceinline__ void refill_chunk(int i, uint32_t stage, uint32_t col, const T *next) {
    if (col >= stage) return;
    if constexpr (VEC == 1) {
        staging_area<T>(i, stage)[col] = next[col];
    } else {
        copy_async16(staging_area<T>(i, stage) + col, next + col, true);
    }
}

// A per-channel scale in memory, or 1 where there is none.
template <class T, int VEC>
struct ScaleSource {
    const T *base;  // may be null
    __device__ __forceinline__ void operator()(int, uint32_t col, float (&out)[VEC]) const {
        if (base != nullptr) {
            load_vec<T, VEC>(base + col, out);
        } else {
#pragma unroll
            for (int e = 0; e < VEC; ++e) out[e] = 1.0f;
        }
    }
};

template <int VEC>
struct RegSink {
    double (*acc)[VEC];
    bool enabled;
    __device__ __forceinline__ void add(int k, uint32_t, int e, double v) const {
        if (enabled) acc[k][e] += v;
    }
};

// No column sums (the streaming normalize backward: its dscale comes from a column pass).
struct NoSink {
    __device__ __forceinline__ void add(int, uint32_t, int, double) const {}
};

// A worker's partial row in the workspace, updated in place by the one thread owning each column
// (`first`: the worker's first row, which overwrites instead of adding). With `vector` false the
// sink sums everything into `scalar` instead (scalar p). Since the column passes took over dscale
// and dp per channel on the streaming tier, only lerp backward with a scalar p gives this sink a
// `part`; a scalar-only sink in its place made ptxas spill lerp_bwd's 16-bit vstream kernels at
// their 128 registers (sm_90), so the row form stays.
struct MemSink {
    double *part;  // may be null: nothing wanted
    bool first;
    bool vector;
    double scalar;
    __device__ __forceinline__ void add(int, uint32_t col, int e, double v) {
        if (part == nullptr) return;
        if (vector) {
            part[col + e] = first ? v : part[col + e] + v;
        } else {
            scalar += v;
        }
    }
};

// ============================================================================================
// normalize, forward: y = s * x * r
// ============================================================================================

template <class A, int TPS, int VEC, int CH, class T, class XS, class SS, class Refill = NoRefill>
__device__ bool norm_fwd_finish(Team<TPS> &team, const sk_normalize_params &p, const XS &xs,
                                const SS &scale, T *y, const Refill &refill = Refill{}) {
    A acc[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[e] = A(0);
    for_chunks<TPS, VEC, CH>(team.lane, p.group, [&](int k, uint32_t col) {
        float v[VEC];
        xs(k, col, v);
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[e] = fma_acc(A(v[e]), A(v[e]), acc[e]);
    });
    const A ss = team.sum(sum_lanes<A, VEC>(acc));
    if (!sumsq_trusted(ss)) return false;
    const A r = inv_norm<A>(p.eps_mode, A(p.eps), ss);
    for_chunks<TPS, VEC, CH>(team.lane, p.group, [&](int k, uint32_t col) {
        float v[VEC], sv[VEC];
        xs(k, col, v);
        scale(k, col, sv);
        A out[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e) out[e] = A(v[e]) * r * A(sv[e]);
        store_vec<T, VEC, A>(y + col, out);
        refill(col);
    });
    return true;
}

template <class T, int TPS, int VEC>
__device__ void norm_fwd_tile(const sk_normalize_params &p) {
    constexpr int CH = tile_chunks<SK_NORM_FWD_ELEMS, VEC>();
    SK_EXPECT(blockDim.x == Team<TPS>::BLOCK);
    SK_EXPECT(p.group <= static_cast<uint32_t>(CH * TPS * VEC));
    Team<TPS> team;
    const T *scale = static_cast<const T *>(p.scale);
    const auto scale_of = [&](const SegCursor &c) {
        return ScaleSource<T, VEC>{scale ? scale + static_cast<uint64_t>(c.j) * p.group : nullptr};
    };
    using Tile = RawTile<T, TPS, VEC, CH>;
    for_segments<PrefetchSegments<T, TPS>::value, Tile>(
        SegCursor(team.worker(), team.workers(), p.cols / p.group), p.rows,
        [&](const SegCursor &c, Tile &x) {
            x.load(c.in<T>(p.x, p.x_stride, p.group), team.lane, p.group);
        },
        [&](const SegCursor &c, const Tile &x) {
            return norm_fwd_finish<float, TPS, VEC, CH>(team, p, x, scale_of(c),
                                                        c.out<T>(p.out, p.out_stride, p.group));
        },
        [&](const SegCursor &c) {
            const MemSource<T, VEC> x{c.in<T>(p.x, p.x_stride, p.group)};
            norm_fwd_finish<double, TPS, VEC, CH>(team, p, x, scale_of(c),
                                                  c.out<T>(p.out, p.out_stride, p.group));
        });
}

template <class T, int VEC>
__device__ void norm_fwd_stream(const sk_normalize_params &p) {
    constexpr int TPS = SK_STREAM_THREADS;
    SK_EXPECT(blockDim.x == TPS);
    Team<TPS> team;
    const T *scale = static_cast<const T *>(p.scale);
    T *sx = staging_area<T>(0, p.stage);
    SegCursor c(team.worker(), team.workers(), p.cols / p.group);
    if (c.row < p.rows) stage_in<T, VEC>(team.lane, p.stage, c.in<T>(p.x, p.x_stride, p.group), sx);
#pragma unroll 1
    for (; c.row < p.rows; c.next()) {
        const T *xg = c.in<T>(p.x, p.x_stride, p.group);
        stage_wait();
        SegCursor n = c;
        n.next();
        const bool more = n.row < p.rows;
        const auto refill = [&](uint32_t col) {
            if (more) refill_chunk<T, VEC>(0, p.stage, col, n.in<T>(p.x, p.x_stride, p.group));
        };
        const StagedSource<T, VEC> x{xg, sx, p.stage};
        T *y = c.out<T>(p.out, p.out_stride, p.group);
        const ScaleSource<T, VEC> s{scale ? scale + static_cast<uint64_t>(c.j) * p.group : nullptr};
        if (!norm_fwd_finish<float, TPS, VEC, 0>(team, p, x, s, y, refill)) {
            norm_fwd_finish<double, TPS, VEC, 0>(team, p, x, s, y, refill);
        }
    }
}

// ============================================================================================
// normalize, backward: dx = r (g - c yhat), g = s * dy, dscale = sum over rows of dy * yhat
// ============================================================================================
// Workers (teams) of a backward launch are a multiple of the groups per row (the host sizes
// the grid so), so worker w only ever sees group j = w % groups_per_row: its channels and its
// scale values are fixed, and its dscale partial sums can stay in registers until the end.

template <class A, int TPS, int VEC, int CH, class T, class XS, class GS, class SS, class Sink,
          class Refill = NoRefill>
__device__ bool norm_bwd_finish(Team<TPS> &team, const sk_normalize_params &p, const XS &xs,
                                const GS &dys, const SS &scale, T *dx, Sink &sink,
                                double *coef = nullptr, const Refill &refill = Refill{}) {
    Pair<A> acc = {A(0), A(0)};
    for_chunks<TPS, VEC, CH>(team.lane, p.group, [&](int k, uint32_t col) {
        float x[VEC], dy[VEC], sv[VEC];
        xs(k, col, x);
        dys(k, col, dy);
        scale(k, col, sv);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            acc.a = fma_acc(A(x[e]), A(x[e]), acc.a);
            acc.b = fma_acc(A(x[e]), A(dy[e]) * A(sv[e]), acc.b);
        }
    });
    acc = team.sum(acc);
    if (!sumsq_trusted(acc.a) || !dot_trusted(acc.b)) return false;
    const GradCoef<A> cf = grad_coef<A>(p.eps_mode, A(p.eps), acc.a, acc.b);
    for_chunks<TPS, VEC, CH>(team.lane, p.group, [&](int k, uint32_t col) {
        float x[VEC], dy[VEC], sv[VEC];
        xs(k, col, x);
        dys(k, col, dy);
        scale(k, col, sv);
        A out[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const A yhat = A(x[e]) * cf.r;
            out[e] = cf.r * (A(dy[e]) * A(sv[e]) - cf.c * yhat);
            sink.add(k, col, e, static_cast<double>(A(dy[e]) * yhat));
        }
        store_vec<T, VEC, A>(dx + col, out);
        refill(col);
    });
    if (coef != nullptr && team.lane == 0) {
        // For the dscale column pass (norm_ds_columns): what it needs to redo sink.add's term.
        coef[0] = static_cast<double>(cf.r);
        coef[1] = sizeof(A) == 8 ? 1.0 : 0.0;
    }
    return true;
}

template <class T, int TPS, int VEC>
__device__ void norm_bwd_tile(const sk_normalize_params &p) {
    constexpr int CH = tile_chunks<SK_NORM_BWD_ELEMS, VEC>();
    SK_EXPECT(blockDim.x == Team<TPS>::BLOCK);
    SK_EXPECT(p.group <= static_cast<uint32_t>(CH * TPS * VEC));
    Team<TPS> team;
    const uint32_t gpr = p.cols / p.group;
    SK_EXPECT(team.workers() % gpr == 0);
    const uint32_t w = team.worker();
    const uint32_t j = w % gpr;
    const T *scale =
        p.scale ? static_cast<const T *>(p.scale) + static_cast<uint64_t>(j) * p.group : nullptr;

    using Tile = RawTile<T, TPS, VEC, CH>;
    Tile sv;
    if (scale != nullptr) {
        sv.load(scale, team.lane, p.group);
    } else {
        sv.fill(1.0f);
    }
    double ds[CH][VEC];
#pragma unroll
    for (int k = 0; k < CH; ++k)
#pragma unroll
        for (int e = 0; e < VEC; ++e) ds[k][e] = 0.0;
    RegSink<VEC> sink{ds, p.partial != nullptr};

    struct Tiles {
        Tile x, dy;
    };
    for_segments<PrefetchSegments<T, TPS>::value, Tiles>(
        SegCursor(w, team.workers(), gpr), p.rows,
        [&](const SegCursor &c, Tiles &t) {
            t.x.load(c.in<T>(p.x, p.x_stride, p.group), team.lane, p.group);
            t.dy.load(c.in<T>(p.dy, p.dy_stride, p.group), team.lane, p.group);
        },
        [&](const SegCursor &c, const Tiles &t) {
            return norm_bwd_finish<float, TPS, VEC, CH>(
                team, p, t.x, t.dy, sv, c.out<T>(p.out, p.out_stride, p.group), sink);
        },
        [&](const SegCursor &c) {
            const MemSource<T, VEC> x{c.in<T>(p.x, p.x_stride, p.group)};
            const MemSource<T, VEC> dy{c.in<T>(p.dy, p.dy_stride, p.group)};
            norm_bwd_finish<double, TPS, VEC, CH>(team, p, x, dy, ScaleSource<T, VEC>{scale},
                                                  c.out<T>(p.out, p.out_stride, p.group), sink);
        });
    if (p.partial != nullptr) {
        double *part = p.partial + static_cast<uint64_t>(w) * p.group;
        for_chunks<TPS, VEC, CH>(team.lane, p.group, [&](int k, uint32_t col) {
#pragma unroll
            for (int e = 0; e < VEC; ++e) part[col + e] = ds[k][e];
        });
    }
}

template <class T, int VEC>
__device__ void norm_bwd_stream(const sk_normalize_params &p) {
    constexpr int TPS = SK_STREAM_THREADS;
    SK_EXPECT(blockDim.x == TPS);
    Team<TPS> team;
    const uint32_t gpr = p.cols / p.group;
    SK_EXPECT(team.workers() % gpr == 0);
    const uint32_t w = team.worker();
    const uint64_t j = w % gpr;
    const ScaleSource<T, VEC> s{p.scale ? static_cast<const T *>(p.scale) + j * p.group : nullptr};
    // dscale comes from the column pass (norm_ds_columns), which reads each segment's r here.
    NoSink sink;
    T *sx = staging_area<T>(0, p.stage), *sdy = staging_area<T>(1, p.stage);
    SegCursor c(w, team.workers(), gpr);
    if (c.row < p.rows) {
        stage_in<T, VEC>(team.lane, p.stage, c.in<T>(p.x, p.x_stride, p.group), sx);
        stage_in<T, VEC>(team.lane, p.stage, c.in<T>(p.dy, p.dy_stride, p.group), sdy);
    }
#pragma unroll 1
    for (; c.row < p.rows; c.next()) {
        const T *xg = c.in<T>(p.x, p.x_stride, p.group);
        const T *dyg = c.in<T>(p.dy, p.dy_stride, p.group);
        stage_wait();
        SegCursor n = c;
        n.next();
        const bool more = n.row < p.rows;
        const auto refill = [&](uint32_t col) {
            if (!more) return;
            refill_chunk<T, VEC>(0, p.stage, col, n.in<T>(p.x, p.x_stride, p.group));
            refill_chunk<T, VEC>(1, p.stage, col, n.in<T>(p.dy, p.dy_stride, p.group));
        };
        const StagedSource<T, VEC> x{xg, sx, p.stage}, dy{dyg, sdy, p.stage};
        T *dx = c.out<T>(p.out, p.out_stride, p.group);
        double *coef =
            p.row_coef ? p.row_coef + (c.row * gpr + c.j) * SK_NORM_COEFS : nullptr;
        if (!norm_bwd_finish<float, TPS, VEC, 0>(team, p, x, dy, s, dx, sink, coef, refill)) {
            norm_bwd_finish<double, TPS, VEC, 0>(team, p, x, dy, s, dx, sink, coef, refill);
        }
    }
}

// ============================================================================================
// lerp_normalize: a = N(h) or h, b = N(u), alpha = c p or |c p|, z = (1 - alpha) a + alpha b,
// y = N(z). Whole rows (no groups); p is per channel (p_len == cols) or one scalar.
// ============================================================================================

// alpha = c p (or |c p|) of one channel as the kernels carry it: cp, the f32 product c p (its
// sign tells d|cp|/dp), and om = 1 - alpha from the exact product (c p = cp + lo exactly, lo
// by an fma): 1 - alpha multiplies a in z, and where a = h is large and alpha near 1 the
// rounding of cp alone would cost eps |a| (2e-6 of the row norm seen in f32).
struct AlphaParts {
    float cp, om;
};

__device__ __forceinline__ AlphaParts alpha_parts(float pv, float c, bool absolute) {
    const float cp = c * pv;
    const float lo = fmaf(c, pv, -cp);
    const bool flip = absolute && cp < 0.0f;
    const float a_hi = flip ? -cp : cp, a_lo = flip ? -lo : lo;
    return {cp, (1.0f - a_hi) - a_lo};
}

// alpha and d alpha / d p from cp: d|cp|/dp = c sign(cp), with sign(0) = 0 (torch's abs
// backward).
__device__ __forceinline__ void alpha_of(float cp, float c, bool absolute, float &alpha,
                                         float &dalpha_dp) {
    if (!absolute) {
        alpha = cp;
        dalpha_dp = c;
        return;
    }
    alpha = fabsf(cp);
    dalpha_dp = cp > 0.0f ? c : (cp < 0.0f ? -c : 0.0f);
}

// alpha, 1 - alpha and d alpha / d p of a chunk's channels: the interface of AlphaMem and
// AlphaTile.
template <int VEC>
struct AlphaChunk {
    float al[VEC], om[VEC], dal[VEC];
};

// alpha from p in memory (per channel, or the scalar broadcast).
template <class T, int VEC>
struct AlphaMem {
    const sk_lerp_params *p;
    __device__ __forceinline__ void parts(uint32_t col, float (&cp)[VEC], float (&om)[VEC]) const {
        const bool absolute = (p->flags & SK_LERP_ABS_ALPHA) != 0;
        float pv[VEC];
        if (p->p_len == 1) {
            const float s = Elem<T>::to_f32(static_cast<const T *>(p->p)[0]);
#pragma unroll
            for (int e = 0; e < VEC; ++e) pv[e] = s;
        } else {
            load_vec<T, VEC>(static_cast<const T *>(p->p) + col, pv);
        }
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const AlphaParts a = alpha_parts(pv[e], p->c, absolute);
            cp[e] = a.cp;
            om[e] = a.om;
        }
    }
    __device__ __forceinline__ void operator()(int, uint32_t col, AlphaChunk<VEC> &a) const {
        const bool absolute = (p->flags & SK_LERP_ABS_ALPHA) != 0;
        float cp[VEC];
        parts(col, cp, a.om);
#pragma unroll
        for (int e = 0; e < VEC; ++e) alpha_of(cp[e], p->c, absolute, a.al[e], a.dal[e]);
    }
};

// alpha of the channels a thread owns, computed once per worker (rows have no groups, so a
// worker's channels never change): cp and 1 - alpha in registers, the rest derived.
template <int VEC>
struct AlphaTile {
    const float (*cp)[VEC];
    const float (*om)[VEC];
    const sk_lerp_params *p;  // c and the flags, read where used (no registers held for them)
    __device__ __forceinline__ void operator()(int k, uint32_t, AlphaChunk<VEC> &a) const {
        const bool absolute = (p->flags & SK_LERP_ABS_ALPHA) != 0;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            alpha_of(cp[k][e], p->c, absolute, a.al[e], a.dal[e]);
            a.om[e] = om[k][e];
        }
    }
};

// The forward's tile: 1 - alpha alone, alpha = 1 - om (within eps/2 of c p, which is all the
// alpha b term needs; d alpha / d p is not needed). Half the registers of AlphaTile.
template <int VEC>
struct AlphaTileFwd {
    const float (*om)[VEC];
    __device__ __forceinline__ void operator()(int k, uint32_t, AlphaChunk<VEC> &a) const {
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            a.om[e] = om[k][e];
            a.al[e] = 1.0f - om[k][e];
            a.dal[e] = 0.0f;
        }
    }
};

template <class T, int TPS, int VEC, int CH>
__device__ __forceinline__ void load_alpha_tile(const sk_lerp_params &p, int lane,
                                                float (&cp)[CH][VEC], float (&om)[CH][VEC]) {
    const AlphaMem<T, VEC> mem{&p};
#pragma unroll
    for (int k = 0; k < CH; ++k) {
        const uint32_t col = chunk_col<TPS, VEC>(k, lane);
        if (col < p.cols) {
            mem.parts(col, cp[k], om[k]);
        } else {
#pragma unroll
            for (int e = 0; e < VEC; ++e) cp[k][e] = om[k][e] = 0.0f;
        }
    }
}

template <int VEC>
__device__ __forceinline__ AlphaTile<VEC> alpha_tile(const sk_lerp_params &p,
                                                     const float (*cp)[VEC],
                                                     const float (*om)[VEC]) {
    return {cp, om, &p};
}

// The first phase of every lerp pass: the norms of h and u (h only counts with renorm_h).
// False when f32 cannot be trusted with them.
template <class A>
struct LerpNorms {
    Pair<A> ss;  // (|h|^2, |u|^2)
    A rh, ru;    // r of N(h) (1 without renorm_h) and of N(u)
};

template <class A, int TPS, int VEC, int CH, class HS, class US>
__device__ __forceinline__ bool lerp_input_norms(Team<TPS> &team, const sk_lerp_params &p,
                                                 const HS &hs, const US &us, LerpNorms<A> &n) {
    const bool renorm = (p.flags & SK_LERP_RENORM_H) != 0;
    Pair<A> ss = {A(0), A(0)};
    for_chunks<TPS, VEC, CH>(team.lane, p.cols, [&](int k, uint32_t col) {
        float h[VEC], u[VEC];
        hs(k, col, h);
        us(k, col, u);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            ss.a = fma_acc(A(h[e]), A(h[e]), ss.a);
            ss.b = fma_acc(A(u[e]), A(u[e]), ss.b);
        }
    });
    ss = team.sum(ss);
    if (!sumsq_trusted(ss.b) || (renorm && !sumsq_trusted(ss.a))) return false;
    n.ss = ss;
    n.rh = renorm ? inv_norm<A>(p.eps_mode, A(p.eps), ss.a) : A(1);
    n.ru = inv_norm<A>(p.eps_mode, A(p.eps), ss.b);
    return true;
}

template <class A, int TPS, int VEC, int CH, class T, class HS, class US, class AS,
          class Refill = NoRefill>
__device__ bool lerp_fwd_finish(Team<TPS> &team, const sk_lerp_params &p, const HS &hs,
                                const US &us, const AS &alphas, T *y,
                                const Refill &refill = Refill{}) {
    const A eps = A(p.eps);
    LerpNorms<A> n;
    if (!lerp_input_norms<A, TPS, VEC, CH>(team, p, hs, us, n)) return false;
    const A rh = n.rh, ru = n.ru;
    A zz = A(0);
    for_chunks<TPS, VEC, CH>(team.lane, p.cols, [&](int k, uint32_t col) {
        float h[VEC], u[VEC];
        AlphaChunk<VEC> al;
        hs(k, col, h);
        us(k, col, u);
        alphas(k, col, al);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const A z = lerp_z(A(h[e]) * rh, A(u[e]) * ru, A(al.al[e]), A(al.om[e]));
            zz = fma_acc(z, z, zz);
        }
    });
    zz = team.sum(zz);
    if (!sumsq_trusted(zz)) return false;
    const A rz = inv_norm<A>(p.eps_mode, eps, zz);
    for_chunks<TPS, VEC, CH>(team.lane, p.cols, [&](int k, uint32_t col) {
        float h[VEC], u[VEC];
        AlphaChunk<VEC> al;
        hs(k, col, h);
        us(k, col, u);
        alphas(k, col, al);
        A out[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e)
            out[e] = lerp_z(A(h[e]) * rh, A(u[e]) * ru, A(al.al[e]), A(al.om[e])) * rz;
        store_vec<T, VEC, A>(y + col, out);
        refill(col);
    });
    return true;
}

template <class T, int TPS, int VEC>
__device__ void lerp_fwd_tile(const sk_lerp_params &p) {
    constexpr int CH = tile_chunks<SK_LERP_FWD_ELEMS, VEC>();
    SK_EXPECT(blockDim.x == Team<TPS>::BLOCK);
    SK_EXPECT(p.cols <= static_cast<uint32_t>(CH * TPS * VEC));
    Team<TPS> team;
    float cp[CH][VEC], om[CH][VEC];
    load_alpha_tile<T, TPS, VEC, CH>(p, team.lane, cp, om);
    using Tile = RawTile<T, TPS, VEC, CH>;
    struct Tiles {
        Tile h, u;
    };
    // Whole rows: one segment per row (groups per row = 1).
    for_segments<PrefetchSegments<T, TPS>::value, Tiles>(
        SegCursor(team.worker(), team.workers(), 1), p.rows,
        [&](const SegCursor &c, Tiles &t) {
            t.h.load(c.in<T>(p.h, p.h_stride, p.cols), team.lane, p.cols);
            t.u.load(c.in<T>(p.u, p.u_stride, p.cols), team.lane, p.cols);
        },
        [&](const SegCursor &c, const Tiles &t) {
            return lerp_fwd_finish<float, TPS, VEC, CH>(team, p, t.h, t.u, AlphaTileFwd<VEC>{om},
                                                        c.out<T>(p.out, p.out_stride, p.cols));
        },
        [&](const SegCursor &c) {
            const MemSource<T, VEC> h{c.in<T>(p.h, p.h_stride, p.cols)};
            const MemSource<T, VEC> u{c.in<T>(p.u, p.u_stride, p.cols)};
            lerp_fwd_finish<double, TPS, VEC, CH>(team, p, h, u, AlphaMem<T, VEC>{&p},
                                                  c.out<T>(p.out, p.out_stride, p.cols));
        });
}

// Input i of lerp row `row` (the streaming tier's staged inputs): h, u, then dy.
template <class T>
__device__ __forceinline__ const T *lerp_row(const sk_lerp_params &p, int i, uint64_t row) {
    const void *base = i == 0 ? p.h : (i == 1 ? p.u : p.dy);
    const uint64_t stride = i == 0 ? p.h_stride : (i == 1 ? p.u_stride : p.dy_stride);
    return static_cast<const T *>(base) + row * stride;
}

// The streaming lerp kernels' staging of their N inputs: the whole of a worker's first row
// before its loop (lerp_stage_first), then each next row chunk by chunk during the current
// row's last pass (lerp_refill, through refill_chunk).
template <class T, int VEC, int N>
__device__ __forceinline__ void lerp_stage_first(int lane, const sk_lerp_params &p,
                                                 uint64_t row) {
    if (row >= p.rows) return;
#pragma unroll
    for (int i = 0; i < N; ++i)
        stage_in<T, VEC>(lane, p.stage, lerp_row<T>(p, i, row), staging_area<T>(i, p.stage));
}

template <class T, int VEC, int N>
__device__ __forceinline__ void lerp_refill(const sk_lerp_params &p, uint64_t next,
                                            uint32_t col) {
    if (next >= p.rows) return;
#pragma unroll
    for (int i = 0; i < N; ++i) refill_chunk<T, VEC>(i, p.stage, col, lerp_row<T>(p, i, next));
}

template <class T, int VEC>
__device__ void lerp_fwd_stream(const sk_lerp_params &p) {
    constexpr int TPS = SK_STREAM_THREADS;
    SK_EXPECT(blockDim.x == TPS);
    Team<TPS> team;
    const AlphaMem<T, VEC> alphas{&p};
    T *sh = staging_area<T>(0, p.stage), *su = staging_area<T>(1, p.stage);
    const uint64_t step = team.workers();
    lerp_stage_first<T, VEC, 2>(team.lane, p, team.worker());
#pragma unroll 1
    for (uint64_t row = team.worker(); row < p.rows; row += step) {
        const T *hg = lerp_row<T>(p, 0, row), *ug = lerp_row<T>(p, 1, row);
        stage_wait();
        const auto refill = [&](uint32_t col) { lerp_refill<T, VEC, 2>(p, row + step, col); };
        const StagedSource<T, VEC> h{hg, sh, p.stage}, u{ug, su, p.stage};
        T *y = static_cast<T *>(p.out) + row * p.out_stride;
        if (!lerp_fwd_finish<float, TPS, VEC, 0>(team, p, h, u, alphas, y, refill)) {
            lerp_fwd_finish<double, TPS, VEC, 0>(team, p, h, u, alphas, y, refill);
        }
    }
}

// Backward, with a = N(h) (renorm) or h, b = N(u), z = (1 - alpha) a + alpha b, y = N(z):
//   gz = r_z (dy - c_z yhat_z)                (normalize backward at z, g = dy)
//   d alpha = gz (b - a)  -> dp += d alpha * d alpha / d p
//   gb = alpha gz,  du = r_u (gb - c_u b)     (normalize backward at u, g = gb)
//   ga = (1 - alpha) gz,  dh = renorm ? r_h (ga - c_h a) : ga
// Three dependent team reductions: (|h|^2, |u|^2), (|z|^2, <z, dy>), (<u, gb>, <h, ga>).
template <class A>
struct LerpGrad {
    A a, b, alpha, om, gz;
};

// A channel's term of dp: d alpha (b - a) gz, d alpha = d alpha / d p (the fused backward and
// the dp column pass both add this, so their terms are the same).
template <class A>
__device__ __forceinline__ double lerp_dp_of(const LerpGrad<A> &q, A dalpha_dp) {
    return static_cast<double>(q.gz * (q.b - q.a) * dalpha_dp);
}

template <class A>
__device__ __forceinline__ LerpGrad<A> lerp_grad(A h, A u, A dy, A alpha, A om, A rh, A ru,
                                                 GradCoef<A> cz) {
    const A a = h * rh, b = u * ru;
    const A z = lerp_z(a, b, alpha, om);
    return {a, b, alpha, om, cz.r * (dy - cz.c * (z * cz.r))};
}

template <class A, int TPS, int VEC, int CH, class T, class HS, class US, class GS, class AS,
          class Sink, class Refill = NoRefill>
__device__ bool lerp_bwd_finish(Team<TPS> &team, const sk_lerp_params &p, const HS &hs,
                                const US &us, const GS &dys, const AS &alphas, T *dh, T *du,
                                Sink &sink, double *coef = nullptr,
                                const Refill &refill = Refill{}) {
    const bool renorm = (p.flags & SK_LERP_RENORM_H) != 0;
    const A eps = A(p.eps);
    LerpNorms<A> n;
    if (!lerp_input_norms<A, TPS, VEC, CH>(team, p, hs, us, n)) return false;
    const A rh = n.rh, ru = n.ru;
    const Pair<A> ss = n.ss;

    Pair<A> zr = {A(0), A(0)};  // (|z|^2, <z, dy>)
    for_chunks<TPS, VEC, CH>(team.lane, p.cols, [&](int k, uint32_t col) {
        float h[VEC], u[VEC], dy[VEC];
        AlphaChunk<VEC> al;
        hs(k, col, h);
        us(k, col, u);
        dys(k, col, dy);
        alphas(k, col, al);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const A z = lerp_z(A(h[e]) * rh, A(u[e]) * ru, A(al.al[e]), A(al.om[e]));
            zr.a = fma_acc(z, z, zr.a);
            zr.b = fma_acc(z, A(dy[e]), zr.b);
        }
    });
    zr = team.sum(zr);
    if (!sumsq_trusted(zr.a) || !dot_trusted(zr.b)) return false;
    const GradCoef<A> cz = grad_coef<A>(p.eps_mode, eps, zr.a, zr.b);

    Pair<A> dots = {A(0), A(0)};  // (<u, gb>, <h, ga>)
    for_chunks<TPS, VEC, CH>(team.lane, p.cols, [&](int k, uint32_t col) {
        float h[VEC], u[VEC], dy[VEC];
        AlphaChunk<VEC> al;
        hs(k, col, h);
        us(k, col, u);
        dys(k, col, dy);
        alphas(k, col, al);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const LerpGrad<A> q =
                lerp_grad(A(h[e]), A(u[e]), A(dy[e]), A(al.al[e]), A(al.om[e]), rh, ru, cz);
            dots.a = fma_acc(A(u[e]), q.alpha * q.gz, dots.a);
            dots.b = fma_acc(A(h[e]), q.om * q.gz, dots.b);
        }
    });
    dots = team.sum(dots);
    if (!dot_trusted(dots.a) || !dot_trusted(dots.b)) return false;
    const GradCoef<A> cu = grad_coef<A>(p.eps_mode, eps, ss.b, dots.a);
    const GradCoef<A> ch =
        renorm ? grad_coef<A>(p.eps_mode, eps, ss.a, dots.b) : GradCoef<A>{A(1), A(0)};

    for_chunks<TPS, VEC, CH>(team.lane, p.cols, [&](int k, uint32_t col) {
        float h[VEC], u[VEC], dy[VEC];
        AlphaChunk<VEC> al;
        hs(k, col, h);
        us(k, col, u);
        dys(k, col, dy);
        alphas(k, col, al);
        A oh[VEC], ou[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const LerpGrad<A> q =
                lerp_grad(A(h[e]), A(u[e]), A(dy[e]), A(al.al[e]), A(al.om[e]), rh, ru, cz);
            const A gb = q.alpha * q.gz, ga = q.om * q.gz;
            ou[e] = cu.r * (gb - cu.c * (A(u[e]) * cu.r));
            oh[e] = renorm ? ch.r * (ga - ch.c * (A(h[e]) * ch.r)) : ga;
            sink.add(k, col, e, lerp_dp_of(q, A(al.dal[e])));
        }
        store_vec<T, VEC, A>(du + col, ou);
        store_vec<T, VEC, A>(dh + col, oh);
        refill(col);
    });
    if (coef != nullptr && team.lane == 0) {
        // For the dp column pass (lerp_dp_columns): everything it needs to redo sink.add's term.
        coef[0] = static_cast<double>(rh);
        coef[1] = static_cast<double>(ru);
        coef[2] = static_cast<double>(cz.r);
        coef[3] = static_cast<double>(cz.c);
        coef[4] = sizeof(A) == 8 ? 1.0 : 0.0;
    }
    return true;
}

template <class T, int TPS, int VEC>
__device__ void lerp_bwd_tile(const sk_lerp_params &p) {
    constexpr int CH = tile_chunks<SK_LERP_BWD_ELEMS, VEC>();
    SK_EXPECT(blockDim.x == Team<TPS>::BLOCK);
    SK_EXPECT(p.cols <= static_cast<uint32_t>(CH * TPS * VEC));
    Team<TPS> team;
    float cp[CH][VEC], om[CH][VEC];
    load_alpha_tile<T, TPS, VEC, CH>(p, team.lane, cp, om);
    double dp[CH][VEC];
#pragma unroll
    for (int k = 0; k < CH; ++k)
#pragma unroll
        for (int e = 0; e < VEC; ++e) dp[k][e] = 0.0;
    RegSink<VEC> sink{dp, p.partial != nullptr};

    const uint32_t w = team.worker();
    using Tile = RawTile<T, TPS, VEC, CH>;
    struct Tiles {
        Tile h, u, dy;
    };
    // f16 is left out: its widening (a conversion, where bf16's is a shift) takes registers
    // that this op's budget does not have once the next tiles are live (ptxas spills).
    constexpr bool PREFETCH =
        PrefetchSegments<T, TPS>::value && !std::is_same<T, __half>::value;
    // Whole rows: one segment per row (groups per row = 1).
    for_segments<PREFETCH, Tiles>(
        SegCursor(w, team.workers(), 1), p.rows,
        [&](const SegCursor &c, Tiles &t) {
            t.h.load(c.in<T>(p.h, p.h_stride, p.cols), team.lane, p.cols);
            t.u.load(c.in<T>(p.u, p.u_stride, p.cols), team.lane, p.cols);
            t.dy.load(c.in<T>(p.dy, p.dy_stride, p.cols), team.lane, p.cols);
        },
        [&](const SegCursor &c, const Tiles &t) {
            return lerp_bwd_finish<float, TPS, VEC, CH>(
                team, p, t.h, t.u, t.dy, alpha_tile<VEC>(p, cp, om),
                c.out<T>(p.out, p.out_stride, p.cols), c.out<T>(p.out_u, p.out_u_stride, p.cols),
                sink);
        },
        [&](const SegCursor &c) {
            const MemSource<T, VEC> h{c.in<T>(p.h, p.h_stride, p.cols)};
            const MemSource<T, VEC> u{c.in<T>(p.u, p.u_stride, p.cols)};
            const MemSource<T, VEC> dy{c.in<T>(p.dy, p.dy_stride, p.cols)};
            lerp_bwd_finish<double, TPS, VEC, CH>(
                team, p, h, u, dy, AlphaMem<T, VEC>{&p}, c.out<T>(p.out, p.out_stride, p.cols),
                c.out<T>(p.out_u, p.out_u_stride, p.cols), sink);
        });
    if (p.partial == nullptr) return;
    if (p.p_len == 1) {
        // Scalar p: the worker's partial is the sum over all its channels.
        double t = 0.0;
#pragma unroll
        for (int k = 0; k < CH; ++k)
#pragma unroll
            for (int e = 0; e < VEC; ++e) t += dp[k][e];
        t = team.sum(t);
        if (team.lane == 0) p.partial[w] = t;
    } else {
        double *part = p.partial + static_cast<uint64_t>(w) * p.cols;
        for_chunks<TPS, VEC, CH>(team.lane, p.cols, [&](int k, uint32_t col) {
#pragma unroll
            for (int e = 0; e < VEC; ++e) part[col + e] = dp[k][e];
        });
    }
}

template <class T, int VEC>
__device__ void lerp_bwd_stream(const sk_lerp_params &p) {
    constexpr int TPS = SK_STREAM_THREADS;
    SK_EXPECT(blockDim.x == TPS);
    Team<TPS> team;
    const uint32_t w = team.worker();
    const AlphaMem<T, VEC> alphas{&p};
    MemSink sink{p.partial ? p.partial + static_cast<uint64_t>(w) * p.p_len : nullptr, true,
                 p.p_len != 1, 0.0};
    T *sh = staging_area<T>(0, p.stage), *su = staging_area<T>(1, p.stage);
    T *sdy = staging_area<T>(2, p.stage);
    const uint64_t step = team.workers();
    lerp_stage_first<T, VEC, 3>(team.lane, p, w);
#pragma unroll 1
    for (uint64_t row = w; row < p.rows; row += step) {
        const T *hg = lerp_row<T>(p, 0, row), *ug = lerp_row<T>(p, 1, row);
        const T *dyg = lerp_row<T>(p, 2, row);
        stage_wait();
        const auto refill = [&](uint32_t col) { lerp_refill<T, VEC, 3>(p, row + step, col); };
        const StagedSource<T, VEC> h{hg, sh, p.stage}, u{ug, su, p.stage}, dy{dyg, sdy, p.stage};
        T *dh = static_cast<T *>(p.out) + row * p.out_stride;
        T *du = static_cast<T *>(p.out_u) + row * p.out_u_stride;
        // The sink changes only in the last phase, after every check, so a failed f32 attempt
        // leaves nothing behind for the f64 one.
        double *coef = p.row_coef ? p.row_coef + row * SK_LERP_COEFS : nullptr;
        if (!lerp_bwd_finish<float, TPS, VEC, 0>(team, p, h, u, dy, alphas, dh, du, sink, coef,
                                                 refill)) {
            lerp_bwd_finish<double, TPS, VEC, 0>(team, p, h, u, dy, alphas, dh, du, sink, coef,
                                                 refill);
        }
        sink.first = false;
    }
    if (sink.part == nullptr) return;
    if (!sink.vector) {
        const double t = team.sum(sink.scalar);
        if (team.lane == 0) sink.part[0] = t;
    } else if (sink.first) {
        for (uint32_t col = static_cast<uint32_t>(team.lane); col < p.cols; col += TPS)
            sink.part[col] = 0.0;
    }
}

// ============================================================================================
// Column passes of the streaming tier (dp of lerp, dscale of normalize): the shared layout
// ============================================================================================
// A column-pass thread's share: blocks are chunk-major (the slabs of a chunk adjacent), a slab
// SK_COLUMN_PASS_THREADS * VEC columns; the thread's first column `col` (none when col >= cols)
// and its chunk's rows [first, end).
template <int VEC>
struct ColumnShare {
    uint32_t chunk, col;
    uint64_t first, end;
    __device__ __forceinline__ ColumnShare(uint32_t cols, uint64_t rows, uint32_t chunk_rows) {
        SK_EXPECT(blockDim.x == SK_COLUMN_PASS_THREADS);
        constexpr uint32_t SLAB = SK_COLUMN_PASS_THREADS * VEC;
        const uint32_t slabs = (cols + SLAB - 1) / SLAB;
        chunk = blockIdx.x / slabs;
        col = (blockIdx.x % slabs) * SLAB + threadIdx.x * VEC;
        first = static_cast<uint64_t>(chunk) * chunk_rows;
        end = first + chunk_rows < rows ? first + chunk_rows : rows;
    }
};

// ============================================================================================
// lerp backward, dp column pass (streaming tier, p per channel)
// ============================================================================================
// dp_j = sum over rows of gz_j (b_j - a_j) dalpha_j/dp_j. The row pass (lerp_bwd_stream with
// row_coef) writes dh, du and each row's r_h, r_u, r_z, c_z; this pass re-reads h, u, dy by
// columns and forms the same terms, in the precision the row used, with the same operations
// as sink.add in lerp_bwd_finish. Block chunk * slabs + slab owns SK_COLUMN_PASS_THREADS * VEC
// columns and chunk_rows rows: each thread sums its columns over the chunk's rows in order, in f64, and
// writes partial[chunk][col] once; sk_colsum then adds the chunks in a fixed order.
// Why: per-worker partial rows, read and written for every row (16 bytes per element, more
// than the op's own traffic), confined long rows to as many workers as 32 MiB of partials
// hold (32 at D = 131072). This pass costs one more read of the three inputs, with every SM.

// One channel's term of a row, in A (alpha as AlphaMem forms it, from p: fewer registers than
// keeping alpha).
template <class A>
__device__ __forceinline__ double lerp_dp_term(const sk_lerp_params &p, const double *cf,
                                               float pv, float h, float u, float dy) {
    const bool absolute = (p.flags & SK_LERP_ABS_ALPHA) != 0;
    GradCoef<A> cz;
    cz.r = static_cast<A>(cf[2]);
    cz.c = static_cast<A>(cf[3]);
    const AlphaParts ap = alpha_parts(pv, p.c, absolute);
    float al, dal;
    alpha_of(ap.cp, p.c, absolute, al, dal);
    const LerpGrad<A> q = lerp_grad(A(h), A(u), A(dy), A(al), A(ap.om), static_cast<A>(cf[0]),
                                    static_cast<A>(cf[1]), cz);
    return lerp_dp_of(q, A(dal));
}

template <class T, int VEC>
__device__ void lerp_dp_columns(const sk_lerp_params &p) {
    const ColumnShare<VEC> share(p.cols, p.rows, p.chunk_rows);
    const uint32_t chunk = share.chunk, col = share.col;
    const uint64_t first = share.first, end = share.end;
    if (col >= p.cols) return;  // the host makes VEC divide cols
    float pv[VEC];
    load_vec<T, VEC>(static_cast<const T *>(p.p) + col, pv);  // p per channel (p_len = cols)
    double acc[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[e] = 0.0;
    const T *h = static_cast<const T *>(p.h) + col;
    const T *u = static_cast<const T *>(p.u) + col;
    const T *dy = static_cast<const T *>(p.dy) + col;
    // Whether a row was computed in f64, one row ahead (the branch waits for it).
    double wide_next = first < end ? p.row_coef[first * SK_LERP_COEFS + 4] : 0.0;
#pragma unroll 1
    for (uint64_t row = first; row < end; ++row) {
        const double *cf = p.row_coef + row * SK_LERP_COEFS;  // the same for the whole block
        const double wide = wide_next;
        if (row + 1 < end) wide_next = cf[SK_LERP_COEFS + 4];
        const T *hr = h + row * p.h_stride, *ur = u + row * p.u_stride;
        const T *dyr = dy + row * p.dy_stride;
        if (wide == 0.0) {
            float hv[VEC], uv[VEC], dyv[VEC];
            load_vec<T, VEC>(hr, hv);
            load_vec<T, VEC>(ur, uv);
            load_vec<T, VEC>(dyr, dyv);
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[e] += lerp_dp_term<float>(p, cf, pv[e], hv[e], uv[e], dyv[e]);
        } else {
            // Rows beyond f32's range (rare): one channel at a time, so that the f64 terms
            // need no more registers than the f32 ones.
#pragma unroll 1
            for (int e = 0; e < VEC; ++e) {
                float pe = 0.0f;
#pragma unroll
                for (int k = 0; k < VEC; ++k) pe = k == e ? pv[k] : pe;
                const double t = lerp_dp_term<double>(p, cf, pe, Elem<T>::to_f32(hr[e]),
                                                      Elem<T>::to_f32(ur[e]), Elem<T>::to_f32(dyr[e]));
#pragma unroll
                for (int k = 0; k < VEC; ++k) acc[k] += k == e ? t : 0.0;
            }
        }
    }
    double *out = p.partial + static_cast<uint64_t>(chunk) * p.cols + col;
#pragma unroll
    for (int e = 0; e < VEC; ++e) out[e] = acc[e];
}

// ============================================================================================
// normalize backward, dscale column pass (streaming tier)
// ============================================================================================
// dscale_j = sum over rows of dy_j yhat_j, yhat_j = x_j r with r the inverse norm of x_j's
// segment. The row pass (norm_bwd_stream with row_coef) writes dx and each segment's r and
// precision; this pass re-reads x and dy by columns and forms the same terms with the same
// operations as sink.add in norm_bwd_finish, sums them over its chunk's rows in order in f64,
// and writes partial[chunk][col] once; sk_colsum then adds the chunks in a fixed order. The
// layout and the reasons are lerp_dp_columns': a per-worker partial row read and written for
// every row costs 16 bytes per element, more than the op's own 6 (16-bit) or 12 (f32).
template <class T, int VEC>
__device__ void norm_ds_columns(const sk_normalize_params &p) {
    const ColumnShare<VEC> share(p.cols, p.rows, p.chunk_rows);
    const uint32_t chunk = share.chunk, col = share.col;
    const uint64_t first = share.first, end = share.end;
    if (col >= p.cols) return;  // the host makes VEC divide the group, so also cols
    const uint32_t gpr = p.cols / p.group;
    double acc[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[e] = 0.0;
    const T *x = static_cast<const T *>(p.x) + col;
    const T *dy = static_cast<const T *>(p.dy) + col;
    // This thread's columns lie in one segment of every row (VEC divides the group).
    const double *cf = p.row_coef + (first * gpr + col / p.group) * SK_NORM_COEFS;
#pragma unroll 1
    for (uint64_t row = first; row < end; ++row, cf += static_cast<uint64_t>(gpr) * SK_NORM_COEFS) {
        float xv[VEC], dyv[VEC];
        load_vec<T, VEC>(x + row * p.x_stride, xv);
        load_vec<T, VEC>(dy + row * p.dy_stride, dyv);
        const double r = cf[0];
        if (cf[1] == 0.0) {
            const float rf = static_cast<float>(r);  // exact: the row pass's f32 r
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[e] += static_cast<double>(dyv[e] * (xv[e] * rf));
        } else {
#pragma unroll
            for (int e = 0; e < VEC; ++e)
                acc[e] += static_cast<double>(dyv[e]) * (static_cast<double>(xv[e]) * r);
        }
    }
    double *out = p.partial + static_cast<uint64_t>(chunk) * p.cols + col;
#pragma unroll
    for (int e = 0; e < VEC; ++e) out[e] = acc[e];
}

// ============================================================================================
// Deterministic column sums of the backward partials (dscale, dp).
// ============================================================================================

template <class T>
__device__ void colsum(const sk_colsum_params &p) {
    SK_EXPECT(blockDim.x == 1024);
    // Channels are < 2^31 (the host checks), so 32-bit division suffices.
    const uint32_t total = p.group * p.groups_per_row;
    if (p.step == SK_COLSUM_TOTAL) {
        const uint32_t ch = blockIdx.x * 1024 + threadIdx.x;
        if (ch >= total) return;
        double t = 0.0;
        for (uint32_t s = 0; s < p.slices; ++s) t += p.sums[static_cast<uint64_t>(s) * total + ch];
        static_cast<T *>(p.out)[ch] = to_storage<T>(t);
        return;
    }
    // 32 channels x 32 lanes; lane ty sums m = lo + ty, lo + ty + 32, ... of the block's slice
    // [lo, hi) in increasing order, then lane 0 adds the 32 lane sums in increasing order.
    __shared__ double lanes[32][33];
    const uint32_t tx = threadIdx.x % 32, ty = threadIdx.x / 32;
    const uint32_t tile = blockIdx.x % p.col_tiles, slice = blockIdx.x / p.col_tiles;
    const uint64_t per_group = p.workers / p.groups_per_row;
    const uint64_t lo = per_group * slice / p.slices, hi = per_group * (slice + 1) / p.slices;
    const uint32_t ch = tile * 32 + tx;
    double acc = 0.0;
    if (ch < total) {
        const uint32_t j = ch / p.group;
        const uint32_t c = ch % p.group;
        for (uint64_t m = lo + ty; m < hi; m += 32) {
            acc += p.partial[(j + m * p.groups_per_row) * p.group + c];
        }
    }
    lanes[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && ch < total) {
        double t = 0.0;
        for (int i = 0; i < 32; ++i) t += lanes[i][tx];
        if (p.slices == 1) {
            static_cast<T *>(p.out)[ch] = to_storage<T>(t);
        } else {
            p.sums[static_cast<uint64_t>(slice) * total + ch] = t;
        }
    }
}

// ============================================================================================
// In-place projection of weight matrices (batched, mixed shapes and axes).
// ============================================================================================

// Row axis: one warp per row, two passes over the row (the second usually hits L1/L2).
template <class A, class T, int VEC>
__device__ bool project_row_pass(Team<32> &warp, T *w, uint32_t cols, uint32_t mode, float eps) {
    A acc[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[e] = A(0);
#pragma unroll 4
    for (uint32_t col = static_cast<uint32_t>(warp.lane) * VEC; col < cols; col += 32 * VEC) {
        float v[VEC];
        load_vec<T, VEC>(w + col, v);
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[e] = fma_acc(A(v[e]), A(v[e]), acc[e]);
    }
    const A ss = warp.sum(sum_lanes<A, VEC>(acc));
    if (!sumsq_trusted(ss)) return false;
    const A r = inv_norm<A>(mode, A(eps), ss);
#pragma unroll 4
    for (uint32_t col = static_cast<uint32_t>(warp.lane) * VEC; col < cols; col += 32 * VEC) {
        float v[VEC];
        load_vec<T, VEC>(w + col, v);
        A out[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e) out[e] = A(v[e]) * r;
        store_vec<T, VEC, A>(w + col, out);
    }
    return true;
}

template <class T, int VEC>
__device__ void project_rows(const sk_project_matrix &m, uint32_t local_block, uint32_t mode,
                             float eps) {
    Team<32> warp;
    const uint64_t row = static_cast<uint64_t>(local_block) * SK_PROJECT_ROWS_PER_BLOCK +
                         threadIdx.x / 32;
    if (row >= m.rows) return;  // no block barrier in the row path: idle warps may leave
    T *w = static_cast<T *>(m.w) + row * m.stride;
    if (!project_row_pass<float, T, VEC>(warp, w, m.cols, mode, eps)) {
        project_row_pass<double, T, VEC>(warp, w, m.cols, mode, eps);
    }
}

// One shared buffer for every instantiation of the column pass (a __shared__ array inside the
// template would be allocated once per instantiation): 8 row lanes x 256 f64.
__device__ __forceinline__ double *project_scratch() {
    __shared__ double scratch[(SK_PROJECT_THREADS / SK_PROJECT_COL_LANES) * SK_PROJECT_COL_LANES * 8];
    return scratch;
}

// Column axis: a block owns 32 * VEC consecutive columns; thread (tx, ty) reads VEC columns of
// rows ty, ty + 8, ... (coalesced along rows), the 8 partial sums meet in shared memory.
template <class A, class T, int VEC>
__device__ bool project_col_pass(const sk_project_matrix &m, uint32_t c0, uint32_t mode,
                                 float eps) {
    constexpr uint32_t YS = SK_PROJECT_THREADS / SK_PROJECT_COL_LANES;
    A(*red)[SK_PROJECT_COL_LANES * 8] =
        reinterpret_cast<A(*)[SK_PROJECT_COL_LANES * 8]>(project_scratch());
    const uint32_t tx = threadIdx.x % SK_PROJECT_COL_LANES, ty = threadIdx.x / SK_PROJECT_COL_LANES;
    const bool active = c0 < m.cols;
    T *w = static_cast<T *>(m.w);
    A acc[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[e] = A(0);
    if (active) {
        for (uint64_t row = ty; row < m.rows; row += YS) {
            float v[VEC];
            load_vec<T, VEC>(w + row * m.stride + c0, v);
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[e] = fma_acc(A(v[e]), A(v[e]), acc[e]);
        }
    }
#pragma unroll
    for (int e = 0; e < VEC; ++e) red[ty][tx * VEC + e] = acc[e];
    __syncthreads();
    A r[VEC];
    bool trusted = true;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
        A ss = A(0);
        for (uint32_t i = 0; i < YS; ++i) ss += red[i][tx * VEC + e];
        trusted = trusted && (!active || sumsq_trusted(ss));
        r[e] = inv_norm<A>(mode, A(eps), ss);
    }
    // Every thread must be past its reads of `red` before a possible f64 retry rewrites it.
    if (__syncthreads_or(trusted ? 0 : 1)) return false;
    if (!active) return true;
    for (uint64_t row = ty; row < m.rows; row += YS) {
        float v[VEC];
        T *dst = w + row * m.stride + c0;
        load_vec<T, VEC>(dst, v);
        A out[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e) out[e] = A(v[e]) * r[e];
        store_vec<T, VEC, A>(dst, out);
    }
    return true;
}

template <class T, int VEC>
__device__ void project_cols(const sk_project_matrix &m, uint32_t local_block, uint32_t mode,
                             float eps) {
    const uint32_t c0 = (local_block * SK_PROJECT_COL_LANES + threadIdx.x % SK_PROJECT_COL_LANES) * VEC;
    if (!project_col_pass<float, T, VEC>(m, c0, mode, eps)) {
        project_col_pass<double, T, VEC>(m, c0, mode, eps);
    }
}

template <class T>
__device__ void project(const sk_project_params &p) {
    SK_EXPECT(blockDim.x == SK_PROJECT_THREADS);
    SK_EXPECT(gridDim.x == p.total_blocks);
    // The matrix of this block: the last one whose first block is <= blockIdx.x.
    uint32_t lo = 0, hi = p.count - 1;
    while (lo < hi) {
        const uint32_t mid = (lo + hi + 1) / 2;
        if (p.m[mid].block_start <= blockIdx.x) lo = mid; else hi = mid - 1;
    }
    const sk_project_matrix m = p.m[lo];
    const uint32_t local = blockIdx.x - m.block_start;
    constexpr int V = Elem<T>::VEC;
    if (m.axis == SK_AXIS_ROWS) {
        if (m.vectorized) project_rows<T, V>(m, local, p.eps_mode, p.eps);
        else project_rows<T, 1>(m, local, p.eps_mode, p.eps);
    } else {
        if (m.vectorized) project_cols<T, V>(m, local, p.eps_mode, p.eps);
        else project_cols<T, 1>(m, local, p.eps_mode, p.eps);
    }
}

}  // namespace hs
}  // namespace sk

// ============================================================================================
// Entry points. Names: sk_<op>_<dtype>_<v|s><tier>, v = 16-byte vector access, s = scalar,
// tier = threads per segment or "stream". src/hypersphere/gpu.rs holds the same tier lists.
// ============================================================================================

// Register budget per op (see SK_MIN_BLOCKS), from the ptxas report: the smallest budget at
// which the tiers of the op do not spill.
#define SK_REGS_norm_fwd 96u
#define SK_REGS_norm_bwd 168u
#define SK_REGS_lerp_fwd 128u
#define SK_REGS_lerp_bwd 168u
#define SK_STREAM_BLOCKS_norm_fwd SK_STREAM_BLOCKS_NORM_FWD
#define SK_STREAM_BLOCKS_norm_bwd SK_STREAM_BLOCKS_NORM_BWD
#define SK_STREAM_BLOCKS_lerp_fwd SK_STREAM_BLOCKS_LERP_FWD
#define SK_STREAM_BLOCKS_lerp_bwd SK_STREAM_BLOCKS_LERP_BWD

// The dp column pass: blocks per SM at which ptxas fits each storage type without spilling
// (f16's widening takes the registers of a fourth and a third block).
#define SK_LERP_DP_BLOCKS_f32 4
#define SK_LERP_DP_BLOCKS_bf16 3
#define SK_LERP_DP_BLOCKS_f16 2
// The dscale column pass: two inputs and one product per element; as above (f32: 40 registers,
// so 6 blocks, 1536 threads with their loads in flight).
#define SK_NORM_DS_BLOCKS_f32 6
#define SK_NORM_DS_BLOCKS_bf16 4
#define SK_NORM_DS_BLOCKS_f16 4

#define SK_HS_TILE(op, Params, DT, T, V, VECN, TPS)                                       \
    SK_KERNEL(sk_##op##_##DT##_##V##TPS, Params, sk::Team<TPS>::BLOCK,                    \
              SK_MIN_BLOCKS(sk::Team<TPS>::BLOCK, SK_REGS_##op),                          \
              sk::hs::op##_tile<T, TPS, VECN>(p))
#define SK_HS_STREAM(op, Params, DT, T, V, VECN)                                          \
    SK_KERNEL(sk_##op##_##DT##_##V##stream, Params, SK_STREAM_THREADS,                    \
              SK_STREAM_BLOCKS_##op, sk::hs::op##_stream<T, VECN>(p))

// Vector tiers 2 .. 256 threads per segment (every op); 512 for every op but lerp backward,
// whose three inputs and alpha need more than the 128 registers a 512-thread block may have (its
// longer rows go to the streaming tier, staged in shared memory); scalar tiers 8, 32, 128, 512.
#define SK_HS_TIERS_TO_256(op, Params, DT, T)                                  \
    SK_HS_TILE(op, Params, DT, T, v, sk::Elem<T>::VEC, 2)                     \
    SK_HS_TILE(op, Params, DT, T, v, sk::Elem<T>::VEC, 4)                     \
    SK_HS_TILE(op, Params, DT, T, v, sk::Elem<T>::VEC, 8)                     \
    SK_HS_TILE(op, Params, DT, T, v, sk::Elem<T>::VEC, 16)                    \
    SK_HS_TILE(op, Params, DT, T, v, sk::Elem<T>::VEC, 32)                    \
    SK_HS_TILE(op, Params, DT, T, v, sk::Elem<T>::VEC, 64)                    \
    SK_HS_TILE(op, Params, DT, T, v, sk::Elem<T>::VEC, 128)                   \
    SK_HS_TILE(op, Params, DT, T, v, sk::Elem<T>::VEC, 256)                   \
    SK_HS_TILE(op, Params, DT, T, s, 1, 8)                                    \
    SK_HS_TILE(op, Params, DT, T, s, 1, 32)                                   \
    SK_HS_TILE(op, Params, DT, T, s, 1, 128)                                  \
    SK_HS_TILE(op, Params, DT, T, s, 1, 512)                                  \
    SK_HS_STREAM(op, Params, DT, T, v, sk::Elem<T>::VEC)                      \
    SK_HS_STREAM(op, Params, DT, T, s, 1)
#define SK_HS_TIERS(op, Params, DT, T)                                        \
    SK_HS_TIERS_TO_256(op, Params, DT, T)                                     \
    SK_HS_TILE(op, Params, DT, T, v, sk::Elem<T>::VEC, 512)

#define SK_HS_DTYPE(DT, T)                                                    \
    SK_HS_TIERS(norm_fwd, sk_normalize_params, DT, T)                         \
    SK_HS_TIERS(norm_bwd, sk_normalize_params, DT, T)                         \
    SK_HS_TIERS(lerp_fwd, sk_lerp_params, DT, T)                              \
    SK_HS_TIERS_TO_256(lerp_bwd, sk_lerp_params, DT, T)                       \
    SK_KERNEL(sk_lerp_dp_##DT##_v, sk_lerp_params, SK_COLUMN_PASS_THREADS, SK_LERP_DP_BLOCKS_##DT,   \
              (sk::hs::lerp_dp_columns<T, sk::Elem<T>::VEC>(p)))                                 \
    SK_KERNEL(sk_lerp_dp_##DT##_s, sk_lerp_params, SK_COLUMN_PASS_THREADS, SK_LERP_DP_BLOCKS_##DT,   \
              (sk::hs::lerp_dp_columns<T, 1>(p)))                                                \
    SK_KERNEL(sk_norm_ds_##DT##_v, sk_normalize_params, SK_COLUMN_PASS_THREADS,                  \
              SK_NORM_DS_BLOCKS_##DT, (sk::hs::norm_ds_columns<T, sk::Elem<T>::VEC>(p)))              \
    SK_KERNEL(sk_norm_ds_##DT##_s, sk_normalize_params, SK_COLUMN_PASS_THREADS,                  \
              SK_NORM_DS_BLOCKS_##DT, (sk::hs::norm_ds_columns<T, 1>(p)))                             \
    SK_KERNEL(sk_colsum_##DT, sk_colsum_params, 1024, 1, sk::hs::colsum<T>(p))                   \
    SK_KERNEL(sk_project_##DT, sk_project_params, SK_PROJECT_THREADS, 1, sk::hs::project<T>(p))

SK_HS_DTYPE(f32, float)
SK_HS_DTYPE(f16, __half)
SK_HS_DTYPE(bf16, __nv_bfloat16)
