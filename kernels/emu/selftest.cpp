// Standalone self-test of the CPU emulator: small kernels exercising barriers, warp collectives
// (including width < 32 and sub-warp masks), dynamic shared memory, asynchronous copies,
// multi-dimensional launches, atomics and every error path, checked through the C API against
// CPU references.
//
//   I=<cuda>/include
//   g++ -std=c++17 -O2 -Wall -Wextra -Wno-unknown-pragmas -fno-strict-aliasing -I$I -I$I/cccl
//       kernels/emu/selftest.cpp kernels/emu/emu_runtime.cpp -o /tmp/sk_emu_selftest -lpthread
//   /tmp/sk_emu_selftest        # prints "N passed, 0 failed" and exits 0
#include <cfenv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cuda_emu.h"

#if defined(__SANITIZE_ADDRESS__)
#define SELFTEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SELFTEST_SANITIZED 1
#endif
#endif

// Same expansion as SK_KERNEL in kernels/common.cuh under SK_EMULATOR.
#define TEST_KERNEL(name, ParamT, max_threads, ...)                                                \
    extern "C" __global__ void name(const ParamT p) { __VA_ARGS__; }                              \
    static ::sk_emu::Registrar sk_emu_registrar_##name(                                           \
        #name, sizeof(ParamT), (max_threads),                                                     \
        [](const void *raw) { name(*static_cast<const ParamT *>(raw)); });

// ---- harness ----------------------------------------------------------------------------------
static int g_passed = 0, g_failed = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            ++g_passed;                                                                            \
        } else {                                                                                   \
            ++g_failed;                                                                            \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                 \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

struct Result {
    int code;
    std::string msg;
};

template <class P>
static Result launch(const char *name, dim3 grid, dim3 block, const P &p, uint32_t smem = 0,
                     size_t params_size = sizeof(P)) {
    const uint32_t g[3] = {grid.x, grid.y, grid.z};
    const uint32_t b[3] = {block.x, block.y, block.z};
    char err[4096];
    const int code = sk_emu_launch(name, g, b, smem, &p, params_size, err, sizeof(err));
    return Result{code, err};
}

static bool contains(const std::string &s, const char *needle) {
    return s.find(needle) != std::string::npos;
}

__device__ inline unsigned linear_tid() {
    return threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
}

// ---- kernels: block reduction -------------------------------------------------------------------
struct ReduceP {
    const float *in;
    float *out;
};
__device__ void block_reduce_body(const ReduceP &p) {
    __shared__ float s[1024];
    const unsigned t = threadIdx.x;
    s[t] = p.in[blockIdx.x * blockDim.x + t];
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (t < stride) s[t] += s[t + stride];
        __syncthreads();
    }
    if (t == 0) p.out[blockIdx.x] = s[0];
}
TEST_KERNEL(st_block_reduce, ReduceP, 1024, block_reduce_body(p))

static bool run_block_reduce(unsigned blocks, unsigned threads, float seed) {
    std::vector<float> in(blocks * threads), out(blocks, -1.0f);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>((i * 7 + 3) % 101) + seed;
    ReduceP p{in.data(), out.data()};
    const Result r = launch("st_block_reduce", dim3(blocks), dim3(threads), p);
    if (r.code != SK_EMU_OK) {
        printf("  block_reduce launch failed: %s\n", r.msg.c_str());
        return false;
    }
    for (unsigned b = 0; b < blocks; ++b) {
        std::vector<float> s(in.begin() + b * threads, in.begin() + (b + 1) * threads);
        for (unsigned stride = threads / 2; stride > 0; stride /= 2)
            for (unsigned t = 0; t < stride; ++t) s[t] += s[t + stride];
        if (out[b] != s[0]) return false;
    }
    return true;
}

// ---- kernels: full-warp sums ------------------------------------------------------------------
struct WarpSumP {
    const float *in;
    float *xor_out;
    float *down_out;
    double *dxor_out;
    long long *llxor_out;
};
__device__ void warp_sum_body(const WarpSumP &p) {
    const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = p.in[i];
    for (int m = 16; m >= 1; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
    p.xor_out[i] = v;
    float d = p.in[i];
    for (unsigned off = 16; off >= 1; off /= 2) d += __shfl_down_sync(0xffffffffu, d, off);
    p.down_out[i] = d;
    double dv = static_cast<double>(p.in[i]) * 1e-3 + 1e10;
    for (int m = 16; m >= 1; m /= 2) dv += __shfl_xor_sync(0xffffffffu, dv, m);
    p.dxor_out[i] = dv;
    long long lv = (static_cast<long long>(i) << 33) + 5;
    for (int m = 16; m >= 1; m /= 2) lv += __shfl_xor_sync(0xffffffffu, lv, m);
    p.llxor_out[i] = lv;
}
TEST_KERNEL(st_warp_sum, WarpSumP, 1024, warp_sum_body(p))

// ---- kernels: shuffle semantics for every variant and width -----------------------------------
struct ShflP {
    int *out;
    int mode;  // 0 idx, 1 up, 2 down, 3 xor
    int arg;
    int width;
};
__device__ void shfl_modes_body(const ShflP &p) {
    const int lane = static_cast<int>(threadIdx.x);
    const int v = 1000 + lane;
    int r = 0;
    switch (p.mode) {
        case 0: r = __shfl_sync(0xffffffffu, v, p.arg, p.width); break;
        case 1: r = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(p.arg), p.width); break;
        case 2: r = __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(p.arg), p.width); break;
        default: r = __shfl_xor_sync(0xffffffffu, v, p.arg, p.width); break;
    }
    p.out[lane] = r;
}
TEST_KERNEL(st_shfl_modes, ShflP, 32, shfl_modes_body(p))

// CUDA Programming Guide wording, implemented independently of the runtime's PTX formula.
static int shfl_model(int mode, int lane, int arg, int width) {
    const int seg = lane / width * width;
    int src = lane;
    switch (mode) {
        case 0: src = seg + (((arg % width) + width) % width); break;
        case 1: src = lane - arg >= seg ? lane - arg : lane; break;
        case 2: src = lane + arg < seg + width ? lane + arg : lane; break;
        default: src = (lane ^ arg) < seg + width ? (lane ^ arg) : lane; break;  // earlier groups ok
    }
    return 1000 + src;
}

// ---- kernels: sub-warp teams with different trip counts ----------------------------------------
struct TeamP {
    const float *in;
    float *xor_out;   // [threads * 4]
    float *down_out;  // [threads * 4]
    int tps;
};
template <int TPS>
__device__ void team_body(const TeamP &p) {
    const unsigned t = threadIdx.x;
    const unsigned wl = t % 32;
    const unsigned mask = ((1u << TPS) - 1u) << (wl & ~(TPS - 1u));
    const unsigned team = t / TPS;
    const int trips = 1 + static_cast<int>(team % 3);
    for (int it = 0; it < trips; ++it) {
        float v = p.in[t] + static_cast<float>(it);
        for (int m = TPS / 2; m >= 1; m /= 2) v += __shfl_xor_sync(mask, v, m);  // width 32
        p.xor_out[t * 4 + it] = v;
        float d = p.in[t] * 2.0f + static_cast<float>(it);
        for (unsigned off = TPS / 2; off >= 1; off /= 2) d += __shfl_down_sync(mask, d, off, TPS);
        p.down_out[t * 4 + it] = d;
    }
}
__device__ void team_dispatch(const TeamP &p) {
    switch (p.tps) {
        case 4: team_body<4>(p); break;
        case 8: team_body<8>(p); break;
        default: team_body<16>(p); break;
    }
}
TEST_KERNEL(st_teams, TeamP, 1024, team_dispatch(p))

// ---- kernels: ballot / any / all / match / reduce / barrier predicates --------------------------
struct VoteP {
    unsigned *out;  // [threads * 12]
};
__device__ void vote_body(const VoteP &p) {
    const unsigned t = threadIdx.x;
    const unsigned lane = t % 32;
    unsigned *o = p.out + t * 12;
    const int pred = (t % 3) == 0;
    o[0] = __ballot_sync(0xffffffffu, pred);
    o[1] = static_cast<unsigned>(__any_sync(0xffffffffu, t == 40));
    o[2] = static_cast<unsigned>(__all_sync(0xffffffffu, t < 1000));
    if (lane < 16) {
        o[3] = __ballot_sync(0x0000ffffu, lane & 1);
        o[4] = static_cast<unsigned>(__all_sync(0x0000ffffu, lane < 16));
    }
    o[5] = __match_any_sync(0xffffffffu, lane / 8);
    int all_pred = -1;
    o[6] = __match_all_sync(0xffffffffu, 7u, &all_pred);
    o[7] = static_cast<unsigned>(all_pred);
    o[8] = __reduce_add_sync(0xffffffffu, lane);
    o[9] = static_cast<unsigned>(__reduce_min_sync(0xffffffffu, static_cast<int>(lane) - 5));
    o[10] = static_cast<unsigned>(__syncthreads_count(pred));
    o[11] = static_cast<unsigned>(__syncthreads_and(t < 1000)) * 2u +
            static_cast<unsigned>(__syncthreads_or(t == 63));
}
TEST_KERNEL(st_vote, VoteP, 1024, vote_body(p))

// ---- kernels: dynamic shared memory -------------------------------------------------------------
struct DynP {
    const int *in;
    int *out;
    unsigned *misaligned;
};
__device__ void dyn_body(const DynP &p) {
    int *s = static_cast<int *>(SK_EMU_DYNAMIC_SHARED());
    const unsigned t = threadIdx.x, n = blockDim.x, b = blockIdx.x;
    if (reinterpret_cast<uintptr_t>(s) % 16 != 0) atomicAdd(p.misaligned, 1u);
    s[t] = p.in[b * n + t];
    __syncthreads();
    p.out[b * n + t] = s[n - 1 - t];
}
TEST_KERNEL(st_dyn, DynP, 1024, dyn_body(p))

// ---- kernels: asynchronous copies (cp.async) ------------------------------------------------------
// Thread t copies in[t] (16 bytes) into shared memory in one group and zeros into a second slot
// in a second group, recording what it reads before any wait, after waiting for all but the
// newest group, and after waiting for all: the copies land exactly at the waits. Thread 0 then
// waits for a copy issued by the last thread, which only lands when that thread exits, after the
// barrier (it must not have landed at the barrier). `misalign` offsets the shared address by 4.
struct AsyncP {
    const uint32_t *in;  // 4 words per thread
    uint32_t *out;       // 5 words per thread
    int misalign;
};
__device__ void async_body(const AsyncP &p) {
    uint32_t *s = static_cast<uint32_t *>(SK_EMU_DYNAMIC_SHARED());
    const unsigned t = threadIdx.x, n = blockDim.x;
    uint32_t *mine = s + 4 * t, *zeros = s + 4 * (n + t), *late = s + 8 * n;
    for (int i = 0; i < 4; ++i) mine[i] = zeros[i] = 0xdeadbeefu;
    if (t == 0) late[0] = 0xdeadbeefu;
    __syncthreads();
    ::sk_emu::detail::async_copy(mine + p.misalign, p.in + 4 * t, 16, 16, __FILE__, __LINE__);
    ::sk_emu::detail::async_commit();
    ::sk_emu::detail::async_copy(zeros, p.in + 4 * t, 16, 0, __FILE__, __LINE__);
    ::sk_emu::detail::async_commit();
    p.out[5 * t + 0] = mine[3];  // before any wait: not landed
    ::sk_emu::detail::async_wait(1);
    p.out[5 * t + 1] = mine[3];  // the older group landed
    p.out[5 * t + 2] = zeros[0];  // the newest not yet
    ::sk_emu::detail::async_wait(0);
    p.out[5 * t + 3] = zeros[0] | zeros[3];  // zero-filled
    if (t == n - 1) {
        ::sk_emu::detail::async_copy(late, p.in, 16, 16, __FILE__, __LINE__);
        ::sk_emu::detail::async_commit();
    }
    __syncthreads();
    p.out[5 * t + 4] = late[0];  // thread n - 1 has not waited: still the old value
}
TEST_KERNEL(st_async, AsyncP, 1024, async_body(p))

// ---- kernels: multi-dimensional grids and blocks ------------------------------------------------
struct DimP {
    unsigned *out;  // 4 words per thread
};
__device__ void dims_body(const DimP &p) {
    const unsigned tpb = blockDim.x * blockDim.y * blockDim.z;
    const unsigned blin = blockIdx.x + blockIdx.y * gridDim.x + blockIdx.z * gridDim.x * gridDim.y;
    const unsigned g = blin * tpb + linear_tid();
    p.out[g * 4 + 0] = threadIdx.x | threadIdx.y << 8 | threadIdx.z << 16;
    p.out[g * 4 + 1] = blockIdx.x | blockIdx.y << 8 | blockIdx.z << 16;
    p.out[g * 4 + 2] = blockDim.x | blockDim.y << 8 | blockDim.z << 16 | gridDim.x << 24;
    // Lane numbering is linear in (x, y, z): in a 4x4x2 block lane ^ 4 is the y-neighbour.
    p.out[g * 4 + 3] = static_cast<unsigned>(__shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.y), 4));
}
TEST_KERNEL(st_dims, DimP, 1024, dims_body(p))

// ---- kernels: atomics ---------------------------------------------------------------------------
struct AtomP {
    int *i;
    float *f;
    double *d;
    unsigned long long *u;
    int *mx;
    unsigned *inc;
    int *cas;
};
__device__ void atomics_body(const AtomP &p) {
    atomicAdd(p.i, 1);
    atomicAdd(p.f, 0.5f);
    atomicAdd(p.d, 0.25);
    atomicAdd(p.u, 3ull);
    atomicMax(p.mx, static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x));
    atomicInc(p.inc, 9u);
    int old = *p.cas, assumed;
    do {
        assumed = old;
        old = atomicCAS(p.cas, assumed, assumed + 2);
    } while (old != assumed);
    __syncthreads();  // interleave with the scheduler so that the RMWs are not all in one run
    atomicSub_block(p.i, 1);
}
TEST_KERNEL(st_atomics, AtomP, 1024, atomics_body(p))

// ---- kernels: scheduling order, spin-wait with __nanosleep, stack, fp environment ----------------
struct OrderP {
    int *order;  // [threads]
    int *counter;
};
__device__ void order_body(const OrderP &p) {
    const unsigned t = threadIdx.x;
    float v = static_cast<float>(t);
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    if ((t / 32) % 2 == 0) __syncwarp();
    __syncthreads();
    p.order[t] = atomicAdd(p.counter, 1) + static_cast<int>(v) * 0;
}
TEST_KERNEL(st_order, OrderP, 1024, order_body(p))

struct SpinP {
    int *seen;  // [2]: the flag value thread 0 saw, and how often it slept
};
__device__ void spin_body(const SpinP &p) {
    __shared__ volatile int flag;
    if (threadIdx.x == 0) flag = 0;
    __syncthreads();
    if (threadIdx.x == 0) {
        int naps = 0;
        while (flag == 0) {
            __nanosleep(100);
            ++naps;
        }
        p.seen[0] = flag;
        p.seen[1] = naps;
    } else {
        // The last thread sets the flag only after its warp has met, so thread 0 must yield.
        if (threadIdx.x >= 32) __syncwarp();
        if (threadIdx.x == blockDim.x - 1) flag = 42;
    }
}
TEST_KERNEL(st_spin, SpinP, 1024, spin_body(p))

struct StackP {
    unsigned *out;
};
__device__ void stack_body(const StackP &p) {
    volatile unsigned big[4096];  // 16 KiB of locals per thread
    for (unsigned i = 0; i < 4096; ++i) big[i] = i * threadIdx.x;
    __syncthreads();
    unsigned s = 0;
    for (unsigned i = 0; i < 4096; ++i) s += big[i];
    p.out[threadIdx.x] = s;
}
TEST_KERNEL(st_stack, StackP, 1024, stack_body(p))

struct FpP {
    float *out;
};
__device__ void fpenv_body(const FpP &p) {
    // Thread 0 switches to round-down and keeps it across a barrier; the others must still round
    // to nearest, because every fiber owns its MXCSR.
    if (threadIdx.x == 0) fesetround(FE_DOWNWARD);
    __syncthreads();
    volatile float one = 1.0f, three = 3.0f;
    p.out[threadIdx.x] = one / three;
    __syncthreads();
    if (threadIdx.x == 0) fesetround(FE_TONEAREST);
}
TEST_KERNEL(st_fpenv, FpP, 1024, fpenv_body(p))

// ---- kernels: half / bfloat16 shuffles, poison from lanes outside the mask -----------------------
struct HalfP {
    float *out;  // [32 * 2]
    int *poison; // [32]
};
__device__ void half_body(const HalfP &p) {
    const unsigned lane = threadIdx.x;
    __half h = __float2half_rn(static_cast<float>(lane));
    __nv_bfloat16 b = __float2bfloat16_rn(static_cast<float>(lane) * 2.0f);
    h = __shfl_xor_sync(0xffffffffu, h, 3);
    b = __shfl_down_sync(0xffffffffu, b, 1);
    p.out[lane * 2] = __half2float(h);
    p.out[lane * 2 + 1] = __bfloat162float(b);
    // Team of 4 lanes shuffling down by 2 without a width: lanes 2 and 3 of each team read a
    // lane of the next team, which is outside the mask (undefined on a GPU, poison here).
    const unsigned mask = 0xfu << (lane & ~3u);
    p.poison[lane] = __shfl_down_sync(mask, static_cast<int>(lane), 2);
}
TEST_KERNEL(st_half, HalfP, 32, half_body(p))

// ---- kernels: independent thread scheduling -------------------------------------------------------
struct ItsP {
    int *out;  // [32]
};
// Lane 0 waits for lane 1 (mask 0x3) while lane 1 first meets lane 2 (mask 0x6) and only then
// lane 0: legal with independent thread scheduling, every named lane eventually arrives.
__device__ void its_body(const ItsP &p) {
    const unsigned lane = threadIdx.x;
    int v = static_cast<int>(lane);
    if (lane == 0) {
        v = __shfl_xor_sync(0x3u, v, 1);
    } else if (lane == 1) {
        v = __shfl_xor_sync(0x6u, v, 3);
        v = __shfl_xor_sync(0x3u, v, 1);
    } else if (lane == 2) {
        v = __shfl_xor_sync(0x6u, v, 3);
    }
    p.out[lane] = v;
}
TEST_KERNEL(st_its, ItsP, 32, its_body(p))

// ---- kernels: the performance target -------------------------------------------------------------
struct PerfP {
    float *out;
    int rounds;
};
__device__ void perf_body(const PerfP &p) {
    __shared__ float s[1024];
    const unsigned t = threadIdx.x;
    float v = static_cast<float>(t);
    for (int r = 0; r < p.rounds; ++r) {
        for (int b = 0; b < 3; ++b) {  // 6 barriers
            s[t] = v;
            __syncthreads();
            v = s[(t + 1) % blockDim.x] * 0.5f;
            __syncthreads();
        }
        for (int m = 16; m >= 1; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
    }
    p.out[t] = v;
}
TEST_KERNEL(st_perf, PerfP, 1024, perf_body(p))

struct BarP {
    int iters;
};
__device__ void bar_body(const BarP &p) {
    for (int i = 0; i < p.iters; ++i) __syncthreads();
}
TEST_KERNEL(st_barriers, BarP, 1024, bar_body(p))

// ---- kernels: error paths ----------------------------------------------------------------------
struct ErrP {
    int which;
    int *out;
};
__device__ void err_body(const ErrP &p) {
    const unsigned t = threadIdx.x;
    const unsigned lane = t % 32;
    switch (p.which) {
        case 0:  // early exit of low threads, then barrier
            if (t < 16) return;
            __syncthreads();
            break;
        case 1:  // barrier reached by low threads only
            if (t >= 16) return;
            __syncthreads();
            break;
        case 2:  // caller not in mask
            if (lane == 0) p.out[0] = __shfl_sync(0x2u, 5, 1);
            break;
        case 3: {  // lane 3 returns while lanes 0..2 shuffle with mask 0xf
            if (lane == 3) return;
            if (lane < 3) p.out[lane] = __shfl_xor_sync(0xfu, static_cast<int>(lane), 1);
            break;
        }
        case 4: {  // lane 0 returns before lanes 1..3 shuffle with mask 0xf
            if (lane == 0) return;
            if (lane < 4) p.out[lane] = __shfl_xor_sync(0xfu, static_cast<int>(lane), 1);
            break;
        }
        case 5:  // lanes disagree on the mask: 0 uses 0x3, 1 and 2 use 0x7; nobody can leave
            if (lane < 3) p.out[lane] = __shfl_xor_sync(lane == 0 ? 0x3u : 0x7u, 1, 1);
            break;
        case 6:  // lanes disagree on the operation
            if (lane == 0) __syncwarp(0x3u);
            if (lane == 1) p.out[1] = __shfl_xor_sync(0x3u, 1, 1);
            break;
        case 7:  // lane 0 waits for lane 1 in a shuffle, lane 1 waits at the block barrier
            if (lane == 0 && t < 32) p.out[0] = __shfl_sync(0x3u, 1, 1);
            else __syncthreads();
            break;
        case 8: __trap();
        case 9: assert(t < 7 && "only threads below 7");
            break;
        case 10:  // width that is not a power of two
            p.out[lane] = __shfl_sync(0xffffffffu, 1, 0, 3);
            break;
        case 11:  // full mask in a partial warp (block of 48 threads)
            p.out[t] = __shfl_xor_sync(0xffffffffu, 1, 1);
            break;
        case 12:  // mixed barrier kinds
            if (t % 2) __syncthreads();
            else p.out[0] = __syncthreads_count(1);
            break;
        case 13:  // spin forever on a flag nobody sets
        {
            __shared__ volatile int never;
            never = 0;
            while (never == 0) __nanosleep(10);
            break;
        }
        default: break;
    }
}
TEST_KERNEL(st_err, ErrP, 1024, err_body(p))
TEST_KERNEL(st_bounded, ErrP, 256, (void)p)

// ---- tests ---------------------------------------------------------------------------------------
static void test_registry() {
    const size_t n = sk_emu_kernel_count();
    CHECK(n >= 15, "only %zu kernels registered", n);
    bool found = false;
    for (size_t i = 0; i < n; ++i) found = found || strcmp(sk_emu_kernel_name(i), "st_warp_sum") == 0;
    CHECK(found, "st_warp_sum not listed");
    CHECK(sk_emu_kernel_name(n) == nullptr, "name past the end is not NULL");
}

static void test_block_reduce() {
    CHECK(run_block_reduce(5, 256, 0.0f), "256-thread blocks");
    CHECK(run_block_reduce(3, 1024, 0.5f), "1024-thread blocks");
    CHECK(run_block_reduce(7, 32, 0.25f), "32-thread blocks");
}

static void test_warp_sums() {
    const unsigned blocks = 2, threads = 96;
    const unsigned n = blocks * threads;
    std::vector<float> in(n), xo(n), dn(n);
    std::vector<double> dx(n);
    std::vector<long long> lx(n);
    for (unsigned i = 0; i < n; ++i) in[i] = static_cast<float>((i * 13) % 29);
    WarpSumP p{in.data(), xo.data(), dn.data(), dx.data(), lx.data()};
    const Result r = launch("st_warp_sum", dim3(blocks), dim3(threads), p);
    CHECK(r.code == SK_EMU_OK, "%s", r.msg.c_str());
    bool ok_x = true, ok_d = true, ok_dd = true, ok_ll = true;
    for (unsigned w = 0; w < n / 32; ++w) {
        float sum = 0;
        long long lsum = 0;
        for (unsigned l = 0; l < 32; ++l) {
            sum += in[w * 32 + l];
            lsum += (static_cast<long long>(w * 32 + l) << 33) + 5;
        }
        // Tree down-sum, per lane, by the documented rule (source beyond lane 31 -> own value).
        std::vector<float> d(in.begin() + w * 32, in.begin() + w * 32 + 32);
        for (unsigned off = 16; off >= 1; off /= 2) {
            std::vector<float> nd(32);
            for (unsigned l = 0; l < 32; ++l) nd[l] = d[l] + (l + off < 32 ? d[l + off] : d[l]);
            d = nd;
        }
        // Double butterfly: every lane adds the same values in the same pattern.
        std::vector<double> dv(32);
        for (unsigned l = 0; l < 32; ++l) dv[l] = static_cast<double>(in[w * 32 + l]) * 1e-3 + 1e10;
        for (int m = 16; m >= 1; m /= 2) {
            std::vector<double> nd(32);
            for (unsigned l = 0; l < 32; ++l) nd[l] = dv[l] + dv[l ^ static_cast<unsigned>(m)];
            dv = nd;
        }
        for (unsigned l = 0; l < 32; ++l) {
            ok_x = ok_x && xo[w * 32 + l] == sum;
            ok_d = ok_d && dn[w * 32 + l] == d[l];
            ok_dd = ok_dd && dx[w * 32 + l] == dv[l];
            ok_ll = ok_ll && lx[w * 32 + l] == lsum;
        }
    }
    CHECK(ok_x, "float butterfly sums");
    CHECK(ok_d, "float shfl_down tree sums");
    CHECK(ok_dd, "double butterfly sums");
    CHECK(ok_ll, "long long butterfly sums");
}

static void test_shfl_modes() {
    int bad = 0, cases = 0;
    const int widths[] = {1, 2, 4, 8, 16, 32};
    const int args[] = {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31};
    for (int mode = 0; mode < 4; ++mode)
        for (int w : widths)
            for (int a : args) {
                if (mode == 3 && a >= 32) continue;
                int out[32];
                ShflP p{out, mode, a, w};
                const Result r = launch("st_shfl_modes", dim3(1), dim3(32), p);
                ++cases;
                if (r.code != SK_EMU_OK) {
                    ++bad;
                    printf("  shfl mode %d width %d arg %d: %s\n", mode, w, a, r.msg.c_str());
                    continue;
                }
                for (int l = 0; l < 32; ++l)
                    if (out[l] != shfl_model(mode, l, a, w)) {
                        if (bad < 5)
                            printf("  shfl mode %d width %d arg %d lane %d: got %d want %d\n", mode,
                                   w, a, l, out[l], shfl_model(mode, l, a, w));
                        ++bad;
                        break;
                    }
            }
    // Negative and out-of-range source lanes for __shfl_sync wrap modulo width.
    for (int a : {-1, -5, 33, 40, 100}) {
        int out[32];
        ShflP p{out, 0, a, 8};
        launch("st_shfl_modes", dim3(1), dim3(32), p);
        ++cases;
        for (int l = 0; l < 32; ++l)
            if (out[l] != shfl_model(0, l, a, 8)) {
                ++bad;
                break;
            }
    }
    CHECK(bad == 0, "%d of %d shuffle cases differ from the CUDA rules", bad, cases);
}

static void test_teams() {
    for (int tps : {4, 8, 16}) {
        const unsigned threads = 128;
        std::vector<float> in(threads), xo(threads * 4, -1.0f), dn(threads * 4, -1.0f);
        for (unsigned i = 0; i < threads; ++i) in[i] = static_cast<float>((i * 5) % 17);
        TeamP p{in.data(), xo.data(), dn.data(), tps};
        const Result r = launch("st_teams", dim3(1), dim3(threads), p);
        CHECK(r.code == SK_EMU_OK, "tps %d: %s", tps, r.msg.c_str());
        bool ok = true;
        for (unsigned t = 0; t < threads; ++t) {
            const unsigned team = t / tps, first = team * tps, tl = t % tps;
            const int trips = 1 + static_cast<int>(team % 3);
            for (int it = 0; it < 4; ++it) {
                if (it >= trips) {
                    ok = ok && xo[t * 4 + it] == -1.0f && dn[t * 4 + it] == -1.0f;
                    continue;
                }
                float s = 0;
                for (unsigned k = 0; k < static_cast<unsigned>(tps); ++k) s += in[first + k] + it;
                std::vector<float> d(tps);
                for (int k = 0; k < tps; ++k) d[k] = in[first + k] * 2.0f + it;
                for (int off = tps / 2; off >= 1; off /= 2) {
                    std::vector<float> nd(tps);
                    for (int k = 0; k < tps; ++k) nd[k] = d[k] + (k + off < tps ? d[k + off] : d[k]);
                    d = nd;
                }
                ok = ok && xo[t * 4 + it] == s && dn[t * 4 + it] == d[tl];
            }
        }
        CHECK(ok, "teams of %d lanes with 1-3 iterations", tps);
    }
}

static void test_votes() {
    const unsigned threads = 64;
    std::vector<unsigned> out(threads * 12, 0xdeadbeefu);
    VoteP p{out.data()};
    const Result r = launch("st_vote", dim3(1), dim3(threads), p);
    CHECK(r.code == SK_EMU_OK, "%s", r.msg.c_str());
    bool ok = true;
    for (unsigned t = 0; t < threads; ++t) {
        const unsigned *o = &out[t * 12];
        const unsigned w = t / 32, lane = t % 32;
        unsigned ballot = 0;
        for (unsigned l = 0; l < 32; ++l) ballot |= ((w * 32 + l) % 3 == 0) << l;
        ok = ok && o[0] == ballot;
        ok = ok && o[1] == (w == 1 ? 1u : 0u);
        ok = ok && o[2] == 1u;
        if (lane < 16) ok = ok && o[3] == 0x0000aaaau && o[4] == 1u;
        else ok = ok && o[3] == 0xdeadbeefu;
        ok = ok && o[5] == (0xffu << (lane / 8 * 8));
        ok = ok && o[6] == 0xffffffffu && o[7] == 1u;
        ok = ok && o[8] == 496u;
        ok = ok && static_cast<int>(o[9]) == -5;
        ok = ok && o[10] == 22u;          // t % 3 == 0 for t in [0, 64)
        ok = ok && o[11] == 2u * 1u + 1u;
    }
    CHECK(ok, "ballot/any/all/match/reduce/syncthreads_count/and/or");
}

static void test_independent_scheduling() {
    int out[32];
    ItsP p{out};
    const Result r = launch("st_its", dim3(1), dim3(32), p);
    CHECK(r.code == SK_EMU_OK, "%s", r.msg.c_str());
    bool ok = out[0] == 2 && out[1] == 0 && out[2] == 1;
    for (int l = 3; l < 32; ++l) ok = ok && out[l] == l;
    CHECK(ok, "overlapping sub-warp masks resolved in turn: %d %d %d", out[0], out[1], out[2]);
}

static void test_dynamic_smem() {
    const unsigned blocks = 3, threads = 200;
    std::vector<int> in(blocks * threads), out(blocks * threads, -7);
    for (unsigned i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i * 3 + 1);
    unsigned misaligned = 0;
    DynP p{in.data(), out.data(), &misaligned};
    const Result r = launch("st_dyn", dim3(blocks), dim3(threads), p, threads * sizeof(int));
    CHECK(r.code == SK_EMU_OK, "%s", r.msg.c_str());
    bool ok = true;
    for (unsigned b = 0; b < blocks; ++b)
        for (unsigned t = 0; t < threads; ++t) ok = ok && out[b * threads + t] == in[b * threads + threads - 1 - t];
    CHECK(ok, "reversal through dynamic shared memory");
    CHECK(misaligned == 0, "dynamic shared memory not 16-byte aligned");
}

static void test_async_copies() {
    const unsigned threads = 64;
    std::vector<uint32_t> in(4 * threads), out(5 * threads, 0);
    for (unsigned i = 0; i < in.size(); ++i) in[i] = 1000 + i;
    AsyncP p{in.data(), out.data(), 0};
    const uint32_t smem = (8 * threads + 4) * sizeof(uint32_t);
    Result r = launch("st_async", dim3(2), dim3(threads), p, smem);
    CHECK(r.code == SK_EMU_OK, "%s", r.msg.c_str());
    bool ok = true;
    for (unsigned t = 0; t < threads; ++t) {
        const uint32_t *o = &out[5 * t];
        ok = ok && o[0] == 0xdeadbeefu && o[1] == in[4 * t + 3] && o[2] == 0xdeadbeefu &&
             o[3] == 0 && o[4] == 0xdeadbeefu;
    }
    CHECK(ok, "copies land at the waits that cover their groups, zero-filled when empty");
    p.misalign = 1;
    r = launch("st_async", dim3(1), dim3(threads), p, smem);
    CHECK(r.code == SK_EMU_ERR_INVALID_ARG && r.msg.find("misaligned cp.async") != std::string::npos,
          "a misaligned copy is refused: %d %s", r.code, r.msg.c_str());
}

static void test_dims() {
    const dim3 grid(3, 2, 2), block(4, 4, 2);
    const unsigned tpb = 32, nb = 12;
    std::vector<unsigned> out(nb * tpb * 4, 0xffffffffu);
    DimP p{out.data()};
    const Result r = launch("st_dims", grid, block, p);
    CHECK(r.code == SK_EMU_OK, "%s", r.msg.c_str());
    bool ok = true;
    for (unsigned bz = 0; bz < 2; ++bz)
        for (unsigned by = 0; by < 2; ++by)
            for (unsigned bx = 0; bx < 3; ++bx)
                for (unsigned tz = 0; tz < 2; ++tz)
                    for (unsigned ty = 0; ty < 4; ++ty)
                        for (unsigned tx = 0; tx < 4; ++tx) {
                            const unsigned blin = bx + by * 3 + bz * 6;
                            const unsigned g = blin * tpb + tx + ty * 4 + tz * 16;
                            ok = ok && out[g * 4] == (tx | ty << 8 | tz << 16);
                            ok = ok && out[g * 4 + 1] == (bx | by << 8 | bz << 16);
                            ok = ok && out[g * 4 + 2] == (4u | 4u << 8 | 2u << 16 | 3u << 24);
                            ok = ok && out[g * 4 + 3] == (ty ^ 1u);
                        }
    CHECK(ok, "threadIdx/blockIdx/blockDim/gridDim and linear lane numbering");
}

static void test_atomics() {
    int i = 0, mx = -1, cas = 0;
    float f = 0;
    double d = 0;
    unsigned long long u = 0;
    unsigned inc = 0;
    AtomP p{&i, &f, &d, &u, &mx, &inc, &cas};
    const Result r = launch("st_atomics", dim3(8), dim3(256), p);
    CHECK(r.code == SK_EMU_OK, "%s", r.msg.c_str());
    CHECK(i == 0 && f == 1024.0f && d == 512.0 && u == 6144ull && mx == 2047 && cas == 4096,
          "i=%d f=%g d=%g u=%llu mx=%d cas=%d", i, f, d, u, mx, cas);
    CHECK(inc == 2048 % 10, "atomicInc wraps: %u", inc);
}

static void test_order_and_determinism() {
    const unsigned threads = 256;
    std::vector<int> a(threads), b(threads);
    int c = 0;
    OrderP p{a.data(), &c};
    CHECK(launch("st_order", dim3(1), dim3(threads), p).code == SK_EMU_OK, "order run 1");
    c = 0;
    p.order = b.data();
    CHECK(launch("st_order", dim3(1), dim3(threads), p).code == SK_EMU_OK, "order run 2");
    CHECK(a == b, "two identical launches interleave differently");
    std::vector<bool> seen(threads, false);
    bool perm = true;
    for (int v : a) {
        perm = perm && v >= 0 && v < static_cast<int>(threads) && !seen[v];
        if (perm) seen[v] = true;
    }
    CHECK(perm, "order is not a permutation");
}

static void test_spin_stack_fpenv() {
    int seen[2] = {0, 0};
    SpinP sp{seen};
    const Result r = launch("st_spin", dim3(2), dim3(64), sp);
    CHECK(r.code == SK_EMU_OK && seen[0] == 42 && seen[1] > 0,
          "spin-wait with __nanosleep: %s (seen %d after %d naps)", r.msg.c_str(), seen[0], seen[1]);

    std::vector<unsigned> out(64);
    StackP stp{out.data()};
    const Result rs = launch("st_stack", dim3(2), dim3(64), stp);
    bool ok = rs.code == SK_EMU_OK;
    for (unsigned t = 0; t < 64 && ok; ++t) ok = out[t] == t * (4095u * 4096u / 2u);
    CHECK(ok, "16 KiB of locals per thread: %s", rs.msg.c_str());

    std::vector<float> fo(64);
    FpP fp{fo.data()};
    const Result rf = launch("st_fpenv", dim3(1), dim3(64), fp);
    volatile float one = 1.0f, three = 3.0f;
    const float nearest = one / three;
    CHECK(rf.code == SK_EMU_OK, "%s", rf.msg.c_str());
    CHECK(fo[0] < nearest, "thread 0 lost its own rounding mode (%a vs %a)", fo[0], nearest);
    bool rest = true;
    for (unsigned t = 1; t < 64; ++t) rest = rest && fo[t] == nearest;
    CHECK(rest, "other threads inherited thread 0's rounding mode");
    CHECK(fegetround() == FE_TONEAREST, "host rounding mode changed by the launch");
}

static void test_half_and_poison() {
    float out[64];
    int poison[32];
    HalfP p{out, poison};
    const Result r = launch("st_half", dim3(1), dim3(32), p);
    CHECK(r.code == SK_EMU_OK, "%s", r.msg.c_str());
    bool ok = true;
    for (unsigned l = 0; l < 32; ++l) {
        ok = ok && out[l * 2] == static_cast<float>(l ^ 3u);
        ok = ok && out[l * 2 + 1] == static_cast<float>(l < 31 ? (l + 1) * 2 : l * 2);
    }
    CHECK(ok, "__half / __nv_bfloat16 shuffles");
    bool pz = true;
    for (unsigned l = 0; l < 32; ++l)
        pz = pz && poison[l] == ((l % 4) < 2 ? static_cast<int>(l + 2)
                                 : l + 2 > 31 ? static_cast<int>(l)  // past lane 31: own value
                                              : -1);
    CHECK(pz, "source lanes outside the mask read as all-ones");
}

static void test_threads() {
    // Launches from several OS threads are serialized by the runtime.
    std::vector<std::thread> pool;
    std::vector<int> ok(4, 0);
    for (int k = 0; k < 4; ++k)
        pool.emplace_back([k, &ok] {
            int good = 1;
            for (int rep = 0; rep < 10; ++rep) good &= run_block_reduce(4, 128, static_cast<float>(k));
            ok[k] = good;
        });
    for (auto &t : pool) t.join();
    CHECK(ok[0] && ok[1] && ok[2] && ok[3], "concurrent launches from 4 OS threads");
}

static void expect_error(const char *what, const Result &r, int code, const char *needle) {
    CHECK(r.code == code, "%s: got code %d (want %d): %s", what, r.code, code, r.msg.c_str());
    CHECK(needle == nullptr || contains(r.msg, needle), "%s: message lacks '%s': %s", what,
          needle, r.msg.c_str());
    // The runtime must be usable again right away.
    CHECK(run_block_reduce(2, 64, 1.0f), "good launch after '%s' failed", what);
}

static void test_errors() {
    int out[64] = {0};
    auto err = [&](int which, unsigned threads) {
        ErrP p{which, out};
        return launch("st_err", dim3(2), dim3(threads), p);
    };
    expect_error("exit before barrier", err(0, 64), SK_EMU_ERR_BARRIER, "returned");
    expect_error("barrier after others exit", err(1, 64), SK_EMU_ERR_BARRIER, "__syncthreads");
    expect_error("caller not in mask", err(2, 64), SK_EMU_ERR_WARP_NOT_IN_MASK, "not in the mask");
    expect_error("lane exits while named", err(3, 64), SK_EMU_ERR_WARP_LANE_EXITED, "returned");
    expect_error("lane exited before", err(4, 64), SK_EMU_ERR_WARP_LANE_EXITED,
                 "has already returned");
    expect_error("mask disagreement", err(5, 64), SK_EMU_ERR_WARP_MISMATCH,
                 "lane 1 in __shfl_xor_sync(mask=0x00000007)");
    expect_error("operation disagreement", err(6, 64), SK_EMU_ERR_WARP_MISMATCH, "__syncwarp");
    const Result dl = err(7, 64);
    expect_error("deadlock", dl, SK_EMU_ERR_DEADLOCK, "lane 1 waits at __syncthreads");
    CHECK(contains(dl.msg, "63 thread(s) wait at __syncthreads"), "deadlock listing: %s",
          dl.msg.c_str());
    expect_error("__trap", err(8, 64), SK_EMU_ERR_TRAP, "__trap()");
    expect_error("assert", err(9, 64), SK_EMU_ERR_ASSERT, "only threads below 7");
    expect_error("bad width", err(10, 64), SK_EMU_ERR_INVALID_ARG, "width 3");
    expect_error("partial warp full mask", err(11, 48), SK_EMU_ERR_WARP_LANE_EXITED,
                 "does not exist");
    expect_error("mixed barrier kinds", err(12, 64), SK_EMU_ERR_BARRIER, "__syncthreads_count");
    expect_error("livelock", err(13, 32), SK_EMU_ERR_DEADLOCK, "livelock");
    // Every fiber-side message names kernel, block and thread.
    const Result t = err(8, 64);
    CHECK(contains(t.msg, "kernel 'st_err', block (0,0,0), thread (0,0,0)"), "prefix: %s",
          t.msg.c_str());

    ErrP p{0, out};
    expect_error("unknown kernel", launch("no_such_kernel", dim3(1), dim3(32), p),
                 SK_EMU_ERR_UNKNOWN_KERNEL, "no_such_kernel");
    expect_error("params size", launch("st_err", dim3(1), dim3(32), p, 0, sizeof(p) + 4),
                 SK_EMU_ERR_PARAMS_SIZE, "parameter struct");
    expect_error("block 1025", launch("st_err", dim3(1), dim3(1025), p), SK_EMU_ERR_BLOCK_DIM,
                 "invalid block");
    expect_error("block 32x32x2", launch("st_err", dim3(1), dim3(32, 32, 2), p),
                 SK_EMU_ERR_BLOCK_DIM, "invalid block");
    expect_error("block 0", launch("st_err", dim3(1), dim3(0, 1, 1), p), SK_EMU_ERR_BLOCK_DIM,
                 "invalid block");
    expect_error("launch bounds", launch("st_bounded", dim3(1), dim3(512), p),
                 SK_EMU_ERR_BLOCK_DIM, "launch bound of 256");
    expect_error("grid y", launch("st_err", dim3(1, 65536, 1), dim3(32), p), SK_EMU_ERR_GRID_DIM,
                 "invalid grid");
    expect_error("grid 0", launch("st_err", dim3(0, 1, 1), dim3(32), p), SK_EMU_ERR_GRID_DIM,
                 "invalid grid");
    expect_error("shared memory", launch("st_err", dim3(1), dim3(32), p, 300000),
                 SK_EMU_ERR_SHARED_MEM, "dynamic shared memory");
    CHECK(launch("st_bounded", dim3(1), dim3(256), p).code == SK_EMU_OK, "launch at the bound");

    char small[8];
    const uint32_t g[3] = {1, 1, 1}, b[3] = {1, 1, 1};
    const int code = sk_emu_launch("nope", g, b, 0, &p, sizeof(p), small, sizeof(small));
    CHECK(code == SK_EMU_ERR_UNKNOWN_KERNEL && strlen(small) == 7, "truncation to err_len");
}

static void test_performance() {
    const unsigned threads = 1024;
    std::vector<float> out(threads);
    PerfP p{out.data(), 1};
    launch("st_perf", dim3(1), dim3(threads), p);  // warm-up: maps and touches the stacks
    const int reps = 20;
    const unsigned long long s0 = sk_emu_switch_count();
    const auto t0 = std::chrono::steady_clock::now();
    bool ok = true;
    for (int i = 0; i < reps; ++i) ok = ok && launch("st_perf", dim3(1), dim3(threads), p).code == SK_EMU_OK;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
    const double sw = static_cast<double>(sk_emu_switch_count() - s0) / reps;
    CHECK(ok, "perf kernel failed");

    BarP bp{200};
    const unsigned long long s1 = sk_emu_switch_count();
    const auto t1 = std::chrono::steady_clock::now();
    launch("st_barriers", dim3(1), dim3(threads), bp);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    const double rate = static_cast<double>(sk_emu_switch_count() - s1) / sec;
    printf("timing: 1024 threads x (6 barriers + 5 shuffle rounds): %.3f ms per launch "
           "(%.0f switches); barrier loop: %.1f M switches/s\n",
           ms, sw, rate / 1e6);
#if !defined(SELFTEST_SANITIZED) && defined(__x86_64__) && !defined(SK_EMU_FORCE_UCONTEXT)
    CHECK(ms < 10.0, "performance target missed: %.3f ms", ms);
    CHECK(rate > 5e6, "switch rate below 5 M/s: %.0f", rate);
#endif
}

int main() {
    test_registry();
    test_block_reduce();
    test_warp_sums();
    test_shfl_modes();
    test_teams();
    test_votes();
    test_independent_scheduling();
    test_dynamic_smem();
    test_async_copies();
    test_dims();
    test_atomics();
    test_order_and_determinism();
    test_spin_stack_fpenv();
    test_half_and_poison();
    test_errors();
    test_threads();
    test_performance();
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
