// CPU emulation of the CUDA device environment, for compiling the crate's .cu kernel sources with
// a host C++ compiler (g++ -std=c++17) and running them on the CPU with CUDA's thread, block and
// warp semantics. See README.md in this directory for the execution model and its limits.
//
// The header has three jobs:
//   1. pull in the host halves of the CUDA headers (half/bfloat16 types, vector types);
//   2. make device-only syntax compile on the host (qualifiers, built-in variables, intrinsics);
//   3. route every synchronization point (__syncthreads, warp collectives, __nanosleep, __trap)
//      into the runtime (emu_runtime.cpp), which runs each CUDA thread as a fiber and switches
//      fibers only at those points.
//
// It is included by kernels/common.cuh when SK_EMULATOR is defined, by emu_runtime.cpp, and by
// the self-test. Everything it needs from the C/C++ standard library is included *before* the
// CUDA qualifier macros and the clock() macro are defined, because those macros would break
// standard headers parsed after them.
#pragma once

#ifndef SK_EMULATOR
#define SK_EMULATOR 1
#endif

// ---- error codes returned by sk_emu_launch (mirrored by the Rust FFI side) ---------------------
#define SK_EMU_OK 0
#define SK_EMU_ERR_UNKNOWN_KERNEL 1   // no kernel registered under that name
#define SK_EMU_ERR_PARAMS_SIZE 2      // params_size differs from sizeof(ParamT), or params is NULL
#define SK_EMU_ERR_BLOCK_DIM 3        // zero/oversized block dimension, > 1024 threads, > launch bounds
#define SK_EMU_ERR_GRID_DIM 4         // zero grid dimension, x > 2^31-1, y or z > 65535
#define SK_EMU_ERR_SHARED_MEM 5       // dynamic shared memory above the 227 KiB hardware maximum
#define SK_EMU_ERR_BARRIER 6          // __syncthreads with exited threads, or mixed barrier kinds
#define SK_EMU_ERR_DEADLOCK 7         // no thread can run but some have not finished
#define SK_EMU_ERR_WARP_NOT_IN_MASK 8 // a lane called a warp collective with its own bit clear
#define SK_EMU_ERR_WARP_LANE_EXITED 9 // a lane named in a collective's mask exited (or never existed)
#define SK_EMU_ERR_WARP_MISMATCH 10   // lanes of one collective disagree on mask / operation / width
#define SK_EMU_ERR_TRAP 11            // __trap() was called
#define SK_EMU_ERR_ASSERT 12          // a device-side assert() failed
#define SK_EMU_ERR_INVALID_ARG 13     // bad shuffle width, launch from inside a kernel, NULL name...
#define SK_EMU_ERR_RESOURCE 14        // stack or buffer allocation failed

#ifdef __cplusplus

// ---- standard headers (all of them, before any macro below) -------------------------------------
#include <assert.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmath>
#include <limits>
#include <type_traits>

// ---- CUDA headers: their host-side halves ------------------------------------------------------
// Without __CUDACC__ these give host implementations of the half/bfloat16 conversions and the
// vector types with their make_* helpers; all device intrinsics are supplied below.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>

// ---- qualifiers ---------------------------------------------------------------------------------
// The CUDA headers have defined these as attributes that g++ ignores; redefine them for the
// emulator's memory model.
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#undef __managed__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#undef __grid_constant__
#undef __align__
#define __global__
#define __device__
#define __host__
// Blocks run one after another on one OS thread and fibers never preempt each other, so a single
// static instance per declaration is exactly "one copy per block". It is NOT re-initialized
// between blocks (real shared memory starts undefined; here it holds the previous block's data).
#define __shared__ static
#define __constant__ static
#define __managed__
// inline, not always_inline: inlining is a performance hint the emulator does not need, and
// always_inline makes g++ fail hard on functions it cannot inline.
#define __forceinline__ inline
// Empty rather than __attribute__((noinline)): libstdc++ spells `__attribute__((__noinline__))`,
// which a function-like expansion here would turn into a syntax error.
#define __noinline__
#define __launch_bounds__(...)
#define __grid_constant__
#define __align__(n) __attribute__((aligned(n)))
#ifndef __maxnreg__
#define __maxnreg__(n)
#endif
#ifndef __cluster_dims__
#define __cluster_dims__(...)
#endif
#if !defined(__clang__) && !defined(__builtin_assume)
#define __builtin_assume(x) ((void)0)
#endif

// A compiler barrier around every runtime call that may switch fibers: function-local statics
// (__shared__) whose address never escapes could otherwise be cached in registers across the
// call, since the optimizer may prove an opaque call cannot touch them.
#define SK_EMU_FENCE() __asm__ __volatile__("" ::: "memory")

namespace sk_emu {

// Registers a kernel entry point under its name (see SK_KERNEL in common.cuh). Construct only
// during static initialization; the registry is a function-local static, so order across
// translation units does not matter.
struct Registrar {
    Registrar(const char *name, size_t params_size, unsigned max_threads,
              void (*entry)(const void *));
};

namespace detail {

// The built-in variables of the running fiber; the scheduler rewrites them on every switch.
extern uint3 thread_idx;
extern uint3 block_idx;
extern dim3 block_dim;
extern dim3 grid_dim;
extern void *dynamic_smem;

enum WarpOp : int {
    OP_SHFL_IDX = 0,
    OP_SHFL_UP,
    OP_SHFL_DOWN,
    OP_SHFL_XOR,
    OP_BALLOT,
    OP_ANY,
    OP_ALL,
    OP_SYNCWARP,
    OP_MATCH_ANY,
    OP_MATCH_ALL,
    OP_REDUCE_ADD,
    OP_REDUCE_MIN_U,
    OP_REDUCE_MIN_S,
    OP_REDUCE_MAX_U,
    OP_REDUCE_MAX_S,
    OP_REDUCE_AND,
    OP_REDUCE_OR,
    OP_REDUCE_XOR,
    OP_COUNT_
};
enum BarrierOp : int { BAR_SYNC = 0, BAR_COUNT, BAR_AND, BAR_OR };

// Rendezvous of the lanes in `mask` of the calling warp. `bits` holds the caller's value (size
// bytes, zero-extended); `arg` is the shuffle's source lane / delta / lane mask. Returns the
// caller's result bits. For OP_MATCH_ALL bit 32 of the result is the predicate.
unsigned long long warp_op(unsigned mask, int op, unsigned long long bits, unsigned size, int arg,
                           int width, const char *file, int line);
// Block-wide barrier; returns the count / and / or of `pred` for the counting variants.
int barrier(int op, int pred, const char *file, int line);
unsigned activemask();
void yield(const char *file, int line);
[[noreturn]] void trap(const char *file, int line);
[[noreturn]] void assert_fail(const char *expr, const char *file, int line, const char *func);
long long clock_tick();
// cp.async: a copy of `bytes` (at most 16; both addresses multiples of it) of which the first
// `src_bytes` come from src and the rest are zeros. Each thread's copies land in its shared
// memory when it waits for their group, not before, so a read that a GPU could see racing the
// copy reads stale data here.
void async_copy(void *dst, const void *src, unsigned bytes, unsigned src_bytes, const char *file,
                int line);
void async_commit();
// Waits until at most `newest_pending` committed groups of the calling thread are in flight.
void async_wait(unsigned newest_pending);

template <class T>
struct identity {
    using type = T;
};
template <class T>
using identity_t = typename identity<T>::type;

template <class T>
inline unsigned long long to_bits(const T &v) {
    static_assert(sizeof(T) <= 8, "warp collectives move at most 8 bytes");
    unsigned long long b = 0;
    memcpy(&b, static_cast<const void *>(&v), sizeof(T));
    return b;
}
template <class T>
inline T from_bits(unsigned long long b) {
    T v;
    memcpy(static_cast<void *>(&v), &b, sizeof(T));
    return v;
}

template <class T>
inline T shfl(unsigned mask, T var, int op, int arg, int width, const char *file, int line) {
    SK_EMU_FENCE();
    const unsigned long long r = warp_op(mask, op, to_bits(var), sizeof(T), arg, width, file, line);
    SK_EMU_FENCE();
    return from_bits<T>(r);
}
inline unsigned long long collective(unsigned mask, int op, unsigned long long bits, unsigned size,
                                     const char *file, int line) {
    SK_EMU_FENCE();
    const unsigned long long r = warp_op(mask, op, bits, size, 0, 32, file, line);
    SK_EMU_FENCE();
    return r;
}
inline int block_barrier(int op, int pred, const char *file, int line) {
    SK_EMU_FENCE();
    const int r = barrier(op, pred, file, line);
    SK_EMU_FENCE();
    return r;
}

// Float-to-integer conversion with PTX cvt semantics: NaN gives 0, out-of-range saturates.
// `r` is already rounded to an integral value.
template <class I>
inline I cvt_sat(double r) {
    if (r != r) return 0;
    if (r >= static_cast<double>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
    if (r <= static_cast<double>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
    return static_cast<I>(r);
}

}  // namespace detail
}  // namespace sk_emu

// ---- link anchor --------------------------------------------------------------------------------
// Kernels register themselves from static constructors, and a linker drops an archive member that
// nothing references, constructors and all: with the kernel unit and the runtime in one static
// library (as the crate's build script makes it), every kernel would silently be missing. So each
// translation unit including this header defines this weak symbol and the runtime references it,
// which pulls the (one) kernel unit in. A program that links the runtime must therefore contain
// at least one translation unit that includes this header.
#ifndef SK_EMU_RUNTIME
extern "C" {
__attribute__((weak, used)) char sk_emu_kernel_unit_anchor = 0;
}
#endif

// ---- built-in variables -----------------------------------------------------------------------
// Read-only views of the scheduler's per-fiber state; `threadIdx.x` etc. read like in CUDA.
inline const uint3 &threadIdx = ::sk_emu::detail::thread_idx;
inline const uint3 &blockIdx = ::sk_emu::detail::block_idx;
inline const dim3 &blockDim = ::sk_emu::detail::block_dim;
inline const dim3 &gridDim = ::sk_emu::detail::grid_dim;
constexpr int warpSize = 32;

// Dynamic shared memory of the launch (dynamic_smem_bytes, 16-byte aligned, filled with 0xff at
// the start of every block so that reads of unwritten data show up as NaN / -1). Replaces
// `extern __shared__ T buf[];`, which does not compile under the emulator.
#define SK_EMU_DYNAMIC_SHARED() (static_cast<void *>(::sk_emu::detail::dynamic_smem))

// ---- barriers and warp collectives ----------------------------------------------------------
// Every synchronizing intrinsic takes two hidden trailing arguments defaulted to the caller's
// file and line (GCC's __builtin_FILE/__builtin_LINE evaluate at the call site), so that error
// messages can say where each thread waits.
#define SK_EMU_SITE const char *sk_file_ = __builtin_FILE(), int sk_line_ = __builtin_LINE()

inline void __syncthreads(SK_EMU_SITE) {
    ::sk_emu::detail::block_barrier(::sk_emu::detail::BAR_SYNC, 1, sk_file_, sk_line_);
}
inline int __syncthreads_count(int pred, SK_EMU_SITE) {
    return ::sk_emu::detail::block_barrier(::sk_emu::detail::BAR_COUNT, pred != 0, sk_file_,
                                           sk_line_);
}
inline int __syncthreads_and(int pred, SK_EMU_SITE) {
    return ::sk_emu::detail::block_barrier(::sk_emu::detail::BAR_AND, pred != 0, sk_file_,
                                           sk_line_);
}
inline int __syncthreads_or(int pred, SK_EMU_SITE) {
    return ::sk_emu::detail::block_barrier(::sk_emu::detail::BAR_OR, pred != 0, sk_file_,
                                           sk_line_);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, SK_EMU_SITE) {
    ::sk_emu::detail::collective(mask, ::sk_emu::detail::OP_SYNCWARP, 0, 0, sk_file_, sk_line_);
}
inline unsigned __ballot_sync(unsigned mask, int pred, SK_EMU_SITE) {
    return static_cast<unsigned>(::sk_emu::detail::collective(
        mask, ::sk_emu::detail::OP_BALLOT, pred != 0, 4, sk_file_, sk_line_));
}
inline int __any_sync(unsigned mask, int pred, SK_EMU_SITE) {
    return static_cast<int>(::sk_emu::detail::collective(mask, ::sk_emu::detail::OP_ANY, pred != 0,
                                                         4, sk_file_, sk_line_));
}
inline int __all_sync(unsigned mask, int pred, SK_EMU_SITE) {
    return static_cast<int>(::sk_emu::detail::collective(mask, ::sk_emu::detail::OP_ALL, pred != 0,
                                                         4, sk_file_, sk_line_));
}
// Not a synchronization point: the lanes of the calling warp that have not exited (on a GPU it is
// the lanes currently converged with the caller, which can be fewer).
inline unsigned __activemask() { return ::sk_emu::detail::activemask(); }

// Shuffles for exactly the types CUDA overloads them for, so that code compiling here compiles
// under nvcc/NVRTC as well.
#define SK_EMU_SHFL_OVERLOADS(T)                                                                   \
    inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, SK_EMU_SITE) {   \
        return ::sk_emu::detail::shfl<T>(mask, var, ::sk_emu::detail::OP_SHFL_IDX, srcLane, width, \
                                         sk_file_, sk_line_);                                      \
    }                                                                                              \
    inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,            \
                            SK_EMU_SITE) {                                                         \
        return ::sk_emu::detail::shfl<T>(mask, var, ::sk_emu::detail::OP_SHFL_UP,                 \
                                         static_cast<int>(delta), width, sk_file_, sk_line_);      \
    }                                                                                              \
    inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,          \
                              SK_EMU_SITE) {                                                       \
        return ::sk_emu::detail::shfl<T>(mask, var, ::sk_emu::detail::OP_SHFL_DOWN,               \
                                         static_cast<int>(delta), width, sk_file_, sk_line_);      \
    }                                                                                              \
    inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize,             \
                             SK_EMU_SITE) {                                                        \
        return ::sk_emu::detail::shfl<T>(mask, var, ::sk_emu::detail::OP_SHFL_XOR, laneMask,      \
                                         width, sk_file_, sk_line_);                               \
    }
SK_EMU_SHFL_OVERLOADS(int)
SK_EMU_SHFL_OVERLOADS(unsigned int)
SK_EMU_SHFL_OVERLOADS(long)
SK_EMU_SHFL_OVERLOADS(unsigned long)
SK_EMU_SHFL_OVERLOADS(long long)
SK_EMU_SHFL_OVERLOADS(unsigned long long)
SK_EMU_SHFL_OVERLOADS(float)
SK_EMU_SHFL_OVERLOADS(double)
SK_EMU_SHFL_OVERLOADS(__half)
SK_EMU_SHFL_OVERLOADS(__half2)
SK_EMU_SHFL_OVERLOADS(__nv_bfloat16)
SK_EMU_SHFL_OVERLOADS(__nv_bfloat162)
#undef SK_EMU_SHFL_OVERLOADS

#define SK_EMU_MATCH_OVERLOADS(T)                                                                  \
    inline unsigned __match_any_sync(unsigned mask, T value, SK_EMU_SITE) {                        \
        return static_cast<unsigned>(::sk_emu::detail::collective(                                 \
            mask, ::sk_emu::detail::OP_MATCH_ANY, ::sk_emu::detail::to_bits(value), sizeof(T),     \
            sk_file_, sk_line_));                                                                  \
    }                                                                                              \
    inline unsigned __match_all_sync(unsigned mask, T value, int *pred, SK_EMU_SITE) {             \
        const unsigned long long r = ::sk_emu::detail::collective(                                 \
            mask, ::sk_emu::detail::OP_MATCH_ALL, ::sk_emu::detail::to_bits(value), sizeof(T),     \
            sk_file_, sk_line_);                                                                   \
        *pred = static_cast<int>((r >> 32) & 1u);                                                  \
        return static_cast<unsigned>(r);                                                           \
    }
SK_EMU_MATCH_OVERLOADS(int)
SK_EMU_MATCH_OVERLOADS(unsigned int)
SK_EMU_MATCH_OVERLOADS(long)
SK_EMU_MATCH_OVERLOADS(unsigned long)
SK_EMU_MATCH_OVERLOADS(long long)
SK_EMU_MATCH_OVERLOADS(unsigned long long)
SK_EMU_MATCH_OVERLOADS(float)
SK_EMU_MATCH_OVERLOADS(double)
#undef SK_EMU_MATCH_OVERLOADS

#define SK_EMU_REDUCE(name, T, op)                                                                 \
    inline T name(unsigned mask, T value, SK_EMU_SITE) {                                           \
        return static_cast<T>(::sk_emu::detail::collective(                                        \
            mask, ::sk_emu::detail::op, static_cast<unsigned>(value), 4, sk_file_, sk_line_));     \
    }
SK_EMU_REDUCE(__reduce_add_sync, unsigned, OP_REDUCE_ADD)
SK_EMU_REDUCE(__reduce_add_sync, int, OP_REDUCE_ADD)
SK_EMU_REDUCE(__reduce_min_sync, unsigned, OP_REDUCE_MIN_U)
SK_EMU_REDUCE(__reduce_min_sync, int, OP_REDUCE_MIN_S)
SK_EMU_REDUCE(__reduce_max_sync, unsigned, OP_REDUCE_MAX_U)
SK_EMU_REDUCE(__reduce_max_sync, int, OP_REDUCE_MAX_S)
SK_EMU_REDUCE(__reduce_and_sync, unsigned, OP_REDUCE_AND)
SK_EMU_REDUCE(__reduce_or_sync, unsigned, OP_REDUCE_OR)
SK_EMU_REDUCE(__reduce_xor_sync, unsigned, OP_REDUCE_XOR)
#undef SK_EMU_REDUCE

// ---- other thread control -----------------------------------------------------------------------
// A yield: lets the other threads of the block run, so that spin-waits on shared memory that
// back off with __nanosleep make progress (without it a spinning fiber would never give up the CPU).
inline void __nanosleep(unsigned ns, SK_EMU_SITE) {
    (void)ns;
    SK_EMU_FENCE();
    ::sk_emu::detail::yield(sk_file_, sk_line_);
    SK_EMU_FENCE();
}
[[noreturn]] inline void __trap(SK_EMU_SITE) { ::sk_emu::detail::trap(sk_file_, sk_line_); }
[[noreturn]] inline void __brkpt(SK_EMU_SITE) { ::sk_emu::detail::trap(sk_file_, sk_line_); }
// Fibers share one OS thread, so every access is already ordered; only keep the compiler honest.
inline void __threadfence() { SK_EMU_FENCE(); }
inline void __threadfence_block() { SK_EMU_FENCE(); }
inline void __threadfence_system() { SK_EMU_FENCE(); }
inline long long clock64() { return ::sk_emu::detail::clock_tick(); }
// CUDA's clock() is a cycle counter; replace libc's process-time clock() (time.h, included above,
// is the only header that declares it) with the same deterministic counter.
#ifndef SK_EMU_NO_CLOCK_MACRO
#define clock() (static_cast<clock_t>(::sk_emu::detail::clock_tick()))
#endif

// Device-side assert: a failed assertion ends the launch with SK_EMU_ERR_ASSERT instead of
// aborting the process. (Including <assert.h> again after this header restores glibc's version.)
#undef assert
#ifdef NDEBUG
#define assert(e) ((void)0)
#else
#define assert(e)                                                                                  \
    (static_cast<bool>(e) ? (void)0 : ::sk_emu::detail::assert_fail(#e, __FILE__, __LINE__, __func__))
#endif

// ---- loads and stores with cache hints (the hints mean nothing here) ----------------------------
template <class T> inline T __ldg(const T *p) { return *p; }
template <class T> inline T __ldcg(const T *p) { return *p; }
template <class T> inline T __ldca(const T *p) { return *p; }
template <class T> inline T __ldcs(const T *p) { return *p; }
template <class T> inline T __ldlu(const T *p) { return *p; }
template <class T> inline T __ldcv(const T *p) { return *p; }
template <class T> inline void __stcg(T *p, ::sk_emu::detail::identity_t<T> v) { *p = v; }
template <class T> inline void __stcs(T *p, ::sk_emu::detail::identity_t<T> v) { *p = v; }
template <class T> inline void __stwb(T *p, ::sk_emu::detail::identity_t<T> v) { *p = v; }
template <class T> inline void __stwt(T *p, ::sk_emu::detail::identity_t<T> v) { *p = v; }

// ---- atomics ------------------------------------------------------------------------------------
// Plain read-modify-write: fibers switch only at synchronization points and launches are
// serialized, so nothing can interleave. Overloads follow CUDA's set (device_atomic_functions.h,
// sm_20/32/60 atomics, fp16/bf16 headers).
#define SK_EMU_ATOMIC2(name, T, expr)                                                              \
    inline T name(T *address, T val) {                                                             \
        const T old = *address;                                                                    \
        *address = (expr);                                                                         \
        return old;                                                                                \
    }
SK_EMU_ATOMIC2(atomicAdd, int, old + val)
SK_EMU_ATOMIC2(atomicAdd, unsigned int, old + val)
SK_EMU_ATOMIC2(atomicAdd, unsigned long long int, old + val)
SK_EMU_ATOMIC2(atomicAdd, float, old + val)
SK_EMU_ATOMIC2(atomicAdd, double, old + val)
// Half-precision sums are formed in double (exact for any two halves, and exact-or-harmless for
// bfloat16) and rounded once, like the hardware's correctly rounded add.
SK_EMU_ATOMIC2(atomicAdd, __half, __double2half(static_cast<double>(__half2float(old)) + __half2float(val)))
SK_EMU_ATOMIC2(atomicAdd, __nv_bfloat16,
               __double2bfloat16(static_cast<double>(__bfloat162float(old)) + __bfloat162float(val)))
inline __half2 atomicAdd(__half2 *address, __half2 val) {
    const __half2 old = *address;
    __half2 r = old;
    r.x = __double2half(static_cast<double>(__half2float(old.x)) + __half2float(val.x));
    r.y = __double2half(static_cast<double>(__half2float(old.y)) + __half2float(val.y));
    *address = r;
    return old;
}
inline __nv_bfloat162 atomicAdd(__nv_bfloat162 *address, __nv_bfloat162 val) {
    const __nv_bfloat162 old = *address;
    __nv_bfloat162 r = old;
    r.x = __double2bfloat16(static_cast<double>(__bfloat162float(old.x)) + __bfloat162float(val.x));
    r.y = __double2bfloat16(static_cast<double>(__bfloat162float(old.y)) + __bfloat162float(val.y));
    *address = r;
    return old;
}
SK_EMU_ATOMIC2(atomicSub, int, old - val)
SK_EMU_ATOMIC2(atomicSub, unsigned int, old - val)
SK_EMU_ATOMIC2(atomicExch, int, val)
SK_EMU_ATOMIC2(atomicExch, unsigned int, val)
SK_EMU_ATOMIC2(atomicExch, unsigned long long int, val)
SK_EMU_ATOMIC2(atomicExch, float, val)
SK_EMU_ATOMIC2(atomicMin, int, val < old ? val : old)
SK_EMU_ATOMIC2(atomicMin, unsigned int, val < old ? val : old)
SK_EMU_ATOMIC2(atomicMin, long long int, val < old ? val : old)
SK_EMU_ATOMIC2(atomicMin, unsigned long long int, val < old ? val : old)
SK_EMU_ATOMIC2(atomicMax, int, val > old ? val : old)
SK_EMU_ATOMIC2(atomicMax, unsigned int, val > old ? val : old)
SK_EMU_ATOMIC2(atomicMax, long long int, val > old ? val : old)
SK_EMU_ATOMIC2(atomicMax, unsigned long long int, val > old ? val : old)
SK_EMU_ATOMIC2(atomicAnd, int, old & val)
SK_EMU_ATOMIC2(atomicAnd, unsigned int, old & val)
SK_EMU_ATOMIC2(atomicAnd, long long int, old & val)
SK_EMU_ATOMIC2(atomicAnd, unsigned long long int, old & val)
SK_EMU_ATOMIC2(atomicOr, int, old | val)
SK_EMU_ATOMIC2(atomicOr, unsigned int, old | val)
SK_EMU_ATOMIC2(atomicOr, long long int, old | val)
SK_EMU_ATOMIC2(atomicOr, unsigned long long int, old | val)
SK_EMU_ATOMIC2(atomicXor, int, old ^ val)
SK_EMU_ATOMIC2(atomicXor, unsigned int, old ^ val)
SK_EMU_ATOMIC2(atomicXor, long long int, old ^ val)
SK_EMU_ATOMIC2(atomicXor, unsigned long long int, old ^ val)
SK_EMU_ATOMIC2(atomicInc, unsigned int, old >= val ? 0u : old + 1u)
SK_EMU_ATOMIC2(atomicDec, unsigned int, (old == 0u || old > val) ? val : old - 1u)
#undef SK_EMU_ATOMIC2
#define SK_EMU_ATOMIC_CAS(T)                                                                       \
    inline T atomicCAS(T *address, T compare, T val) {                                             \
        const T old = *address;                                                                    \
        if (old == compare) *address = val;                                                        \
        return old;                                                                                \
    }
SK_EMU_ATOMIC_CAS(int)
SK_EMU_ATOMIC_CAS(unsigned int)
SK_EMU_ATOMIC_CAS(unsigned long long int)
SK_EMU_ATOMIC_CAS(unsigned short int)
#undef SK_EMU_ATOMIC_CAS
// Scoped variants (_block, _system) behave the same on one CPU thread.
#define SK_EMU_ATOMIC_SCOPES(name)                                                                 \
    template <class... A>                                                                          \
    inline auto name##_block(A... a)->decltype(name(a...)) {                                       \
        return name(a...);                                                                         \
    }                                                                                              \
    template <class... A>                                                                          \
    inline auto name##_system(A... a)->decltype(name(a...)) {                                      \
        return name(a...);                                                                         \
    }
SK_EMU_ATOMIC_SCOPES(atomicAdd)
SK_EMU_ATOMIC_SCOPES(atomicSub)
SK_EMU_ATOMIC_SCOPES(atomicExch)
SK_EMU_ATOMIC_SCOPES(atomicMin)
SK_EMU_ATOMIC_SCOPES(atomicMax)
SK_EMU_ATOMIC_SCOPES(atomicAnd)
SK_EMU_ATOMIC_SCOPES(atomicOr)
SK_EMU_ATOMIC_SCOPES(atomicXor)
SK_EMU_ATOMIC_SCOPES(atomicInc)
SK_EMU_ATOMIC_SCOPES(atomicDec)
SK_EMU_ATOMIC_SCOPES(atomicCAS)
#undef SK_EMU_ATOMIC_SCOPES

// ---- min / max ----------------------------------------------------------------------------------
// The unqualified overload set of CUDA's math_functions.hpp, including its mixed-sign rules
// (a signed and an unsigned operand compare as unsigned).
#define SK_EMU_MINMAX(R, A, B)                                                                     \
    inline R min(A a, B b) {                                                                       \
        return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b);      \
    }                                                                                              \
    inline R max(A a, B b) {                                                                       \
        return static_cast<R>(a) > static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b);      \
    }
SK_EMU_MINMAX(int, int, int)
SK_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
SK_EMU_MINMAX(unsigned int, int, unsigned int)
SK_EMU_MINMAX(unsigned int, unsigned int, int)
SK_EMU_MINMAX(long, long, long)
SK_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
SK_EMU_MINMAX(unsigned long, long, unsigned long)
SK_EMU_MINMAX(unsigned long, unsigned long, long)
SK_EMU_MINMAX(long long, long long, long long)
SK_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
SK_EMU_MINMAX(unsigned long long, long long, unsigned long long)
SK_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef SK_EMU_MINMAX
// Floating min/max follow fminf/fmaxf (a NaN operand yields the other operand), as on the GPU.
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(static_cast<double>(a), b); }
inline double max(float a, double b) { return fmax(static_cast<double>(a), b); }
inline double min(double a, float b) { return fmin(a, static_cast<double>(b)); }
inline double max(double a, float b) { return fmax(a, static_cast<double>(b)); }
inline unsigned int umin(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int umax(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long ullmin(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long ullmax(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

// ---- bit reinterpretation -----------------------------------------------------------------------
inline int __float_as_int(float x) { return ::sk_emu::detail::from_bits<int>(::sk_emu::detail::to_bits(x)); }
inline unsigned int __float_as_uint(float x) {
    return ::sk_emu::detail::from_bits<unsigned int>(::sk_emu::detail::to_bits(x));
}
inline float __int_as_float(int x) {
    return ::sk_emu::detail::from_bits<float>(::sk_emu::detail::to_bits(x));
}
inline float __uint_as_float(unsigned int x) {
    return ::sk_emu::detail::from_bits<float>(::sk_emu::detail::to_bits(x));
}
inline long long __double_as_longlong(double x) {
    return ::sk_emu::detail::from_bits<long long>(::sk_emu::detail::to_bits(x));
}
inline double __longlong_as_double(long long x) {
    return ::sk_emu::detail::from_bits<double>(::sk_emu::detail::to_bits(x));
}
inline int __double2hiint(double x) { return static_cast<int>(__double_as_longlong(x) >> 32); }
inline int __double2loint(double x) {
    return static_cast<int>(static_cast<unsigned int>(__double_as_longlong(x)));
}
inline double __hiloint2double(int hi, int lo) {
    return __longlong_as_double(static_cast<long long>(
        (static_cast<unsigned long long>(static_cast<unsigned int>(hi)) << 32) |
        static_cast<unsigned int>(lo)));
}

// ---- integer intrinsics ---------------------------------------------------------------------------
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned int>(x)); }
inline int __clzll(long long x) {
    return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
inline unsigned long long __brevll(unsigned long long x) {
    return (static_cast<unsigned long long>(__brev(static_cast<unsigned int>(x))) << 32) |
           __brev(static_cast<unsigned int>(x >> 32));
}
// Byte n of the result is byte (s >> 4n) & 7 of the 8-byte value y:x (x supplies bytes 0-3).
inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
    const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
    unsigned int r = 0;
    for (int n = 0; n < 4; ++n) {
        const unsigned sel = (s >> (4 * n)) & 7u;
        r |= static_cast<unsigned int>((v >> (8 * sel)) & 0xffu) << (8 * n);
    }
    return r;
}
inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int shift) {
    const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
    return static_cast<unsigned int>((v << (shift & 31u)) >> 32);
}
inline unsigned int __funnelshift_lc(unsigned int lo, unsigned int hi, unsigned int shift) {
    const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
    return static_cast<unsigned int>((v << (shift < 32u ? shift : 32u)) >> 32);
}
inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int shift) {
    const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
    return static_cast<unsigned int>(v >> (shift & 31u));
}
inline unsigned int __funnelshift_rc(unsigned int lo, unsigned int hi, unsigned int shift) {
    const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
    return static_cast<unsigned int>(v >> (shift < 32u ? shift : 32u));
}
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return static_cast<unsigned int>((static_cast<unsigned long long>(a) * b) >> 32);
}
inline int __mulhi(int a, int b) {
    return static_cast<int>((static_cast<long long>(a) * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline long long __mul64hi(long long a, long long b) {
    return static_cast<long long>((static_cast<__int128>(a) * b) >> 64);
}
inline int __mul24(int a, int b) {
    const long long x = static_cast<int>(static_cast<unsigned int>(a) << 8) >> 8;
    const long long y = static_cast<int>(static_cast<unsigned int>(b) << 8) >> 8;
    return static_cast<int>(static_cast<unsigned int>(static_cast<unsigned long long>(x * y)));
}
inline unsigned int __umul24(unsigned int a, unsigned int b) {
    return (a & 0xffffffu) * (b & 0xffffffu);
}
inline unsigned int __sad(int x, int y, unsigned int z) {
    return (x > y ? static_cast<unsigned int>(x) - static_cast<unsigned int>(y)
                  : static_cast<unsigned int>(y) - static_cast<unsigned int>(x)) + z;
}
inline unsigned int __usad(unsigned int x, unsigned int y, unsigned int z) {
    return (x > y ? x - y : y - x) + z;
}

// ---- floating-point intrinsics ------------------------------------------------------------------
// IEEE-exact intrinsics (_rn arithmetic, sqrt, reciprocal, fma) give the GPU's bits. The fast
// approximations (__expf, __sinf, __fdividef, rsqrtf, ...) are computed accurately here, so a
// test comparing emulator output against a tolerance-free reference can pass here and fail on a
// GPU; compare with a tolerance whenever a kernel uses them.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
// Correctly rounded except in astronomically rare double-rounding cases.
inline float __frsqrt_rn(float a) { return static_cast<float>(1.0 / sqrt(static_cast<double>(a))); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline double __drcp_rn(double a) { return 1.0 / a; }
inline double __dsqrt_rn(double a) { return sqrt(a); }
inline float __fdividef(float a, float b) { return a / b; }
inline float fdividef(float a, float b) { return a / b; }
inline double fdivide(double a, double b) { return a / b; }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float *s, float *c) {
    *s = sinf(x);
    *c = cosf(x);
}
inline float __powf(float x, float y) { return powf(x, y); }
inline float rsqrtf(float x) { return static_cast<float>(1.0 / sqrt(static_cast<double>(x))); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return static_cast<float>(1.0 / cbrt(static_cast<double>(x))); }
inline double rcbrt(double x) { return 1.0 / cbrt(x); }
inline float rhypotf(float x, float y) {
    return static_cast<float>(1.0 / hypot(static_cast<double>(x), static_cast<double>(y)));
}
inline double rhypot(double x, double y) { return 1.0 / hypot(x, y); }
inline float norm3df(float a, float b, float c) {
    const double x = a, y = b, z = c;
    return static_cast<float>(sqrt(x * x + y * y + z * z));
}
inline float rnorm3df(float a, float b, float c) {
    const double x = a, y = b, z = c;
    return static_cast<float>(1.0 / sqrt(x * x + y * y + z * z));
}
inline float norm4df(float a, float b, float c, float d) {
    const double x = a, y = b, z = c, w = d;
    return static_cast<float>(sqrt(x * x + y * y + z * z + w * w));
}
inline float rnorm4df(float a, float b, float c, float d) {
    const double x = a, y = b, z = c, w = d;
    return static_cast<float>(1.0 / sqrt(x * x + y * y + z * z + w * w));
}
inline double norm3d(double a, double b, double c) { return hypot(hypot(a, b), c); }
inline double rnorm3d(double a, double b, double c) { return 1.0 / norm3d(a, b, c); }
inline double norm4d(double a, double b, double c, double d) { return hypot(hypot(a, b), hypot(c, d)); }
inline double rnorm4d(double a, double b, double c, double d) { return 1.0 / norm4d(a, b, c, d); }
// sin(pi x) / cos(pi x) with exact argument reduction (fmod by 2 is exact).
inline double sinpi(double x) {
    if (!std::isfinite(x)) return x - x;
    const double r = fmod(x, 2.0);
    if (r == 0.0 || r == 1.0 || r == -1.0) return copysign(0.0, x);
    return sin(M_PI * r);
}
inline double cospi(double x) {
    if (!std::isfinite(x)) return x - x;
    const double r = fabs(fmod(x, 2.0));
    if (r == 0.5 || r == 1.5) return 0.0;
    return cos(M_PI * r);
}
inline float sinpif(float x) { return static_cast<float>(sinpi(x)); }
inline float cospif(float x) { return static_cast<float>(cospi(x)); }
inline void sincospi(double x, double *s, double *c) {
    *s = sinpi(x);
    *c = cospi(x);
}
inline void sincospif(float x, float *s, float *c) {
    *s = sinpif(x);
    *c = cospif(x);
}
// Inverse error function: Giles' single-precision approximation refined by Newton steps on erf.
inline double erfinv(double y) {
    if (!(y > -1.0 && y < 1.0)) {
        if (y == 1.0) return HUGE_VAL;
        if (y == -1.0) return -HUGE_VAL;
        return NAN;
    }
    double w = -log((1.0 - y) * (1.0 + y)), x;
    if (w < 5.0) {
        w -= 2.5;
        double p = 2.81022636e-08;
        p = 3.43273939e-07 + p * w;
        p = -3.5233877e-06 + p * w;
        p = -4.39150654e-06 + p * w;
        p = 0.00021858087 + p * w;
        p = -0.00125372503 + p * w;
        p = -0.00417768164 + p * w;
        p = 0.246640727 + p * w;
        p = 1.50140941 + p * w;
        x = p * y;
    } else {
        w = sqrt(w) - 3.0;
        double p = -0.000200214257;
        p = 0.000100950558 + p * w;
        p = 0.00134934322 + p * w;
        p = -0.00367342844 + p * w;
        p = 0.00573950773 + p * w;
        p = -0.0076224613 + p * w;
        p = 0.00943887047 + p * w;
        p = 1.00167406 + p * w;
        p = 2.83297682 + p * w;
        x = p * y;
    }
    for (int i = 0; i < 3; ++i) {
        const double e = erf(x) - y;
        x -= e / (1.1283791670955126 * exp(-x * x));
    }
    return x;
}
inline float erfinvf(float y) { return static_cast<float>(erfinv(y)); }
inline double erfcinv(double y) { return erfinv(1.0 - y); }
inline float erfcinvf(float y) { return static_cast<float>(erfcinv(y)); }
inline double normcdf(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }
inline float normcdff(float x) { return static_cast<float>(normcdf(x)); }
inline double normcdfinv(double p) { return -M_SQRT2 * erfcinv(2.0 * p); }
inline float normcdfinvf(float p) { return static_cast<float>(normcdfinv(p)); }

// ---- conversions ----------------------------------------------------------------------------------
#define SK_EMU_CVT(name, From, To, round)                                                          \
    inline To name(From x) { return ::sk_emu::detail::cvt_sat<To>(round(static_cast<double>(x))); }
SK_EMU_CVT(__float2int_rn, float, int, nearbyint)
SK_EMU_CVT(__float2int_rz, float, int, trunc)
SK_EMU_CVT(__float2int_rd, float, int, floor)
SK_EMU_CVT(__float2int_ru, float, int, ceil)
SK_EMU_CVT(__float2uint_rn, float, unsigned int, nearbyint)
SK_EMU_CVT(__float2uint_rz, float, unsigned int, trunc)
SK_EMU_CVT(__float2uint_rd, float, unsigned int, floor)
SK_EMU_CVT(__float2uint_ru, float, unsigned int, ceil)
SK_EMU_CVT(__float2ll_rn, float, long long, nearbyint)
SK_EMU_CVT(__float2ll_rz, float, long long, trunc)
SK_EMU_CVT(__float2ull_rn, float, unsigned long long, nearbyint)
SK_EMU_CVT(__float2ull_rz, float, unsigned long long, trunc)
SK_EMU_CVT(__double2int_rn, double, int, nearbyint)
SK_EMU_CVT(__double2int_rz, double, int, trunc)
SK_EMU_CVT(__double2int_rd, double, int, floor)
SK_EMU_CVT(__double2int_ru, double, int, ceil)
SK_EMU_CVT(__double2uint_rn, double, unsigned int, nearbyint)
SK_EMU_CVT(__double2uint_rz, double, unsigned int, trunc)
SK_EMU_CVT(__double2ll_rn, double, long long, nearbyint)
SK_EMU_CVT(__double2ll_rz, double, long long, trunc)
SK_EMU_CVT(__double2ull_rn, double, unsigned long long, nearbyint)
SK_EMU_CVT(__double2ull_rz, double, unsigned long long, trunc)
#undef SK_EMU_CVT
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned int x) { return static_cast<float>(x); }
inline float __ll2float_rn(long long x) { return static_cast<float>(x); }
inline float __ull2float_rn(unsigned long long x) { return static_cast<float>(x); }
inline double __int2double_rn(int x) { return static_cast<double>(x); }
inline double __uint2double_rn(unsigned int x) { return static_cast<double>(x); }
inline double __ll2double_rn(long long x) { return static_cast<double>(x); }
inline double __ull2double_rn(unsigned long long x) { return static_cast<double>(x); }
inline float __double2float_rn(double x) { return static_cast<float>(x); }
// Directed roundings: round to nearest, then step one ulp if that went the wrong way.
inline float __double2float_rz(double x) {
    const float f = static_cast<float>(x);
    return fabs(static_cast<double>(f)) > fabs(x) ? nextafterf(f, 0.0f) : f;
}
inline float __double2float_ru(double x) {
    const float f = static_cast<float>(x);
    return static_cast<double>(f) < x ? nextafterf(f, INFINITY) : f;
}
inline float __double2float_rd(double x) {
    const float f = static_cast<float>(x);
    return static_cast<double>(f) > x ? nextafterf(f, -INFINITY) : f;
}

#undef SK_EMU_SITE

#endif  // __cplusplus

// ---- C API of the runtime (emu_runtime.cpp) ----------------------------------------------------
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
// Runs a registered kernel to completion. Returns SK_EMU_OK, or an SK_EMU_ERR_* code with a
// NUL-terminated message in err (truncated to err_len bytes; err may be NULL).
int sk_emu_launch(const char *name, const uint32_t grid[3], const uint32_t block[3],
                  uint32_t dynamic_smem_bytes, const void *params, size_t params_size, char *err,
                  size_t err_len);
size_t sk_emu_kernel_count(void);
const char *sk_emu_kernel_name(size_t i);  // NULL when out of range
// Fiber switches performed since the process started (diagnostics and benchmarks).
unsigned long long sk_emu_switch_count(void);
#ifdef __cplusplus
}
#endif
