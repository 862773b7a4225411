// Runtime of the CPU emulator: kernel registry, fiber scheduler, barrier and warp-collective
// rendezvous, and the C API called from Rust. See README.md for the execution model.
//
// Model in one paragraph: a launch runs its blocks one after another on the calling OS thread.
// Each CUDA thread of a block is a fiber with its own stack. A fiber runs until it reaches a
// synchronization point (__syncthreads, a *_sync warp collective, __nanosleep) or returns; then
// the next fiber of a FIFO ready queue runs. The last participant to arrive at a rendezvous
// computes everybody's result, requeues the others and carries on without switching. Nothing is
// random, so the same launch always interleaves the same way.

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define SK_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SK_EMU_ASAN 1
#endif
#endif
#ifdef SK_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// The hand-written switch is x86-64 System V only; elsewhere (or with -DSK_EMU_FORCE_UCONTEXT,
// to test that path) fall back to ucontext, which is correct but makes a syscall per switch.
#if defined(__x86_64__) && !defined(SK_EMU_FORCE_UCONTEXT)
#define SK_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

#define SK_EMU_RUNTIME 1
#include "cuda_emu.h"

// Defined (weak) by every unit that includes cuda_emu.h; see "link anchor" there.
extern "C" char sk_emu_kernel_unit_anchor;

namespace sk_emu {
namespace detail {
uint3 thread_idx = {0, 0, 0};
uint3 block_idx = {0, 0, 0};
dim3 block_dim(0, 0, 0);
dim3 grid_dim(0, 0, 0);
void *dynamic_smem = nullptr;
}  // namespace detail
}  // namespace sk_emu

namespace {

using namespace sk_emu::detail;

constexpr uint32_t kMaxThreads = 1024;
constexpr uint32_t kMaxDynamicSmem = 227u * 1024u;  // sm_90 opt-in maximum per block
constexpr unsigned long long kYieldLimit = 1ull << 24;  // consecutive __nanosleep yields = livelock

// ---- contexts ------------------------------------------------------------------------------------
#ifdef SK_EMU_ASM_SWITCH
struct Context {
    void *sp;
};
extern "C" void sk_emu_ctx_switch(void **save_sp, void *new_sp);
extern "C" void sk_emu_ctx_entry();

// sk_emu_ctx_switch(save_sp, new_sp): push the callee-saved registers (rbp, rbx, r12-r15) and the
// callee-saved floating-point control state (MXCSR control bits, x87 control word) on the current
// stack, store rsp in *save_sp, load new_sp and pop the same frame from there. A fresh context's
// frame (see ctx_make) "returns" into sk_emu_ctx_entry, which calls r13(r12).
asm(R"(
    .text
    .p2align 4
    .globl sk_emu_ctx_switch
    .hidden sk_emu_ctx_switch
    .type sk_emu_ctx_switch, @function
sk_emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size sk_emu_ctx_switch, .-sk_emu_ctx_switch

    .p2align 4
    .globl sk_emu_ctx_entry
    .hidden sk_emu_ctx_entry
    .type sk_emu_ctx_entry, @function
sk_emu_ctx_entry:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size sk_emu_ctx_entry, .-sk_emu_ctx_entry
)");

inline void ctx_switch(Context *from, Context *to) { sk_emu_ctx_switch(&from->sp, to->sp); }

// Lays out the frame sk_emu_ctx_switch pops: [fp control][r15][r14][r13=fn][r12=arg][rbx][rbp=0]
// [ret=sk_emu_ctx_entry], placed so that rsp is 16-byte aligned after the `ret`, as the `call` in
// sk_emu_ctx_entry requires. rbp = 0 terminates frame-pointer unwinding (ASan, gdb) at the fiber.
void ctx_make(Context *c, char *lo, size_t size, void (*fn)(void *), void *arg, uint32_t mxcsr,
              uint16_t fcw) {
    const uintptr_t top = (reinterpret_cast<uintptr_t>(lo) + size) & ~static_cast<uintptr_t>(15);
    uint64_t *s = reinterpret_cast<uint64_t *>(top - 80);
    s[0] = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fcw) << 32);
    s[1] = 0;                                   // r15
    s[2] = 0;                                   // r14
    s[3] = reinterpret_cast<uint64_t>(fn);      // r13
    s[4] = reinterpret_cast<uint64_t>(arg);     // r12
    s[5] = 0;                                   // rbx
    s[6] = 0;                                   // rbp
    s[7] = reinterpret_cast<uint64_t>(&sk_emu_ctx_entry);
    s[8] = 0;
    s[9] = 0;
    c->sp = s;
}
#else
struct Context {
    ucontext_t uc;
};
inline void ctx_switch(Context *from, Context *to) { swapcontext(&from->uc, &to->uc); }
void (*g_uc_fn)(void *) = nullptr;
void uc_trampoline(unsigned lo, unsigned hi) {
    g_uc_fn(reinterpret_cast<void *>((static_cast<uintptr_t>(hi) << 32) | lo));
}
void ctx_make(Context *c, char *lo, size_t size, void (*fn)(void *), void *arg, uint32_t,
              uint16_t) {
    g_uc_fn = fn;
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = lo;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    const uintptr_t a = reinterpret_cast<uintptr_t>(arg);
    // void (*)(void) is the one function type g++ lets any function pointer be cast to silently.
    makecontext(&c->uc, reinterpret_cast<void (*)(void)>(reinterpret_cast<void (*)()>(&uc_trampoline)),
                2, static_cast<unsigned>(a), static_cast<unsigned>(static_cast<uint64_t>(a) >> 32));
}
#endif

// ---- state -------------------------------------------------------------------------------------
struct Kernel {
    const char *name;
    size_t params_size;
    unsigned max_threads;
    void (*entry)(const void *);
};

std::vector<Kernel> &registry() {
    static std::vector<Kernel> r;  // function-local: safe whatever the static-init order
    return r;
}

enum State : uint8_t { READY, RUNNING, WAIT_BAR, WAIT_WARP, DONE };

// An asynchronous copy (cp.async) in flight: its bytes, read at issue, land at dst when the
// issuing thread waits for its group (see async_wait).
struct AsyncCopy {
    void *dst;
    unsigned bytes;
    uint32_t group;
    unsigned char data[16];
};

struct Fiber {
    Context ctx;
    char *stack_lo = nullptr;
    size_t stack_size = 0;
    void *asan_fake = nullptr;
    uint3 tid = {0, 0, 0};
    uint32_t linear = 0, warp = 0, lane = 0;
    State state = DONE;
    // What the fiber waits at (valid in WAIT_BAR / WAIT_WARP, and for the last arriver).
    int op = 0;
    uint32_t mask = 0;
    int arg = 0;
    int width = 32;
    unsigned size = 0;
    unsigned long long value = 0, result = 0;
    const char *file = "";
    int line = 0;
    // cp.async: copies not yet landed, in issue order, and the number of the open group.
    std::vector<AsyncCopy> async;
    uint32_t async_open = 0;
};

struct Warp {
    uint32_t exists;   // lanes that are threads of the block
    uint32_t done;     // lanes that have returned
    uint32_t waiting;  // lanes blocked in a warp collective
};

struct Stack {
    char *map;
    size_t map_size;
    char *lo;
    size_t size;
};

struct Emu {
    std::mutex mutex;
    // launch
    const Kernel *kernel = nullptr;
    const void *params = nullptr;
    uint32_t nthreads = 0;
    Fiber fibers[kMaxThreads];
    std::vector<Stack> stacks;
    size_t stack_size = 0;
    uint32_t mxcsr = 0;
    uint16_t fcw = 0;
    // block
    uint16_t queue[kMaxThreads];  // FIFO ring of runnable fibers; each is in it at most once
    uint32_t qhead = 0, qcount = 0;
    Warp warps[kMaxThreads / 32];
    uint32_t bar_waiting = 0;
    int bar_op = 0;
    int bar_acc = 0;
    uint32_t done_count = 0;
    uint32_t first_done = 0;
    unsigned long long yield_streak = 0;
    Fiber *cur = nullptr;
    Context main_ctx;
    const void *main_bottom = nullptr;
    size_t main_size = 0;
    void *main_fake = nullptr;
    bool entering_from_main = false;
    // outcome
    int err_code = SK_EMU_OK;
    char err_msg[4096];
    unsigned long long switches = 0;
};

Emu *G = nullptr;  // set at the first launch; cur != nullptr only while a block runs
std::atomic<unsigned long long> g_total_switches{0};
std::atomic<long long> g_clock{0};

Emu &emu() {
    static Emu e;
    return e;
}

const char *op_name(int op) {
    static const char *const names[] = {
        "__shfl_sync",       "__shfl_up_sync",    "__shfl_down_sync",  "__shfl_xor_sync",
        "__ballot_sync",     "__any_sync",        "__all_sync",        "__syncwarp",
        "__match_any_sync",  "__match_all_sync",  "__reduce_add_sync", "__reduce_min_sync",
        "__reduce_min_sync", "__reduce_max_sync", "__reduce_max_sync", "__reduce_and_sync",
        "__reduce_or_sync",  "__reduce_xor_sync"};
    static_assert(sizeof(names) / sizeof(names[0]) == OP_COUNT_, "one name per op");
    return op >= 0 && op < OP_COUNT_ ? names[op] : "?";
}
const char *bar_name(int op) {
    switch (op) {
        case BAR_COUNT: return "__syncthreads_count";
        case BAR_AND: return "__syncthreads_and";
        case BAR_OR: return "__syncthreads_or";
        default: return "__syncthreads";
    }
}
bool is_shfl(int op) { return op <= OP_SHFL_XOR; }

// ---- fiber switching -------------------------------------------------------------------------
void push(Emu &e, Fiber *f) {
    e.queue[(e.qhead + e.qcount) & (kMaxThreads - 1)] = static_cast<uint16_t>(f->linear);
    ++e.qcount;
}
Fiber *pop(Emu &e) {
    if (e.qcount == 0) return nullptr;
    Fiber *f = &e.fibers[e.queue[e.qhead]];
    e.qhead = (e.qhead + 1) & (kMaxThreads - 1);
    --e.qcount;
    return f;
}

// Switches from one fiber straight to another (no detour through the scheduler: one switch per
// blocking point). A dying fiber tells ASan to drop its fake stack.
void transfer(Emu &e, Fiber *from, Fiber *to, bool dying) {
    to->state = RUNNING;
    e.cur = to;
    thread_idx = to->tid;
    ++e.switches;
#ifdef SK_EMU_ASAN
    __sanitizer_start_switch_fiber(dying ? nullptr : &from->asan_fake, to->stack_lo,
                                   to->stack_size);
#else
    (void)dying;
#endif
    ctx_switch(&from->ctx, &to->ctx);
#ifdef SK_EMU_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake, nullptr, nullptr);
#endif
}

// Back to the scheduler, for good: it only ever resumes fresh fibers, so a fiber that gets here
// (finished, failed, or blocked with nobody left to run) is never continued.
[[noreturn]] void to_main(Emu &e, Fiber *from) {
    e.cur = nullptr;
    ++e.switches;
#ifdef SK_EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, e.main_bottom, e.main_size);
#endif
    ctx_switch(&from->ctx, &e.main_ctx);
    __builtin_unreachable();
}

void suspend(Emu &e, Fiber *f) {
    Fiber *next = pop(e);
    if (next)
        transfer(e, f, next, false);
    else
        to_main(e, f);
}

// ---- errors --------------------------------------------------------------------------------------
// Messages are formatted into a fixed buffer: the failing fiber's stack is abandoned, so nothing
// on it may own heap memory.
[[noreturn]] __attribute__((format(printf, 3, 4))) void fail(Emu &e, int code, const char *fmt,
                                                              ...) {
    Fiber *f = e.cur;
    int n = snprintf(e.err_msg, sizeof(e.err_msg),
                     "kernel '%s', block (%u,%u,%u), thread (%u,%u,%u) [warp %u lane %u]: ",
                     e.kernel->name, block_idx.x, block_idx.y, block_idx.z, f->tid.x, f->tid.y,
                     f->tid.z, f->warp, f->lane);
    if (n < 0) n = 0;
    if (static_cast<size_t>(n) < sizeof(e.err_msg)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e.err_msg + n, sizeof(e.err_msg) - n, fmt, ap);
        va_end(ap);
    }
    e.err_code = code;
    to_main(e, f);
}

[[noreturn]] void outside_launch(const char *what) {
    fprintf(stderr, "sk_emu: %s called outside a kernel launch (or from another OS thread)\n", what);
    abort();
}

inline Emu &running(const char *what) {
    Emu *e = G;
    if (__builtin_expect(e == nullptr || e->cur == nullptr, 0)) outside_launch(what);
    return *e;
}

// ---- asynchronous copies ---------------------------------------------------------------------------
// Lands (in issue order) the copies of groups older than `before`, and forgets them.
void land_async(Fiber *f, uint32_t before) {
    size_t kept = 0;
    for (size_t i = 0; i < f->async.size(); ++i) {
        AsyncCopy &c = f->async[i];
        if (c.group < before) {
            memcpy(c.dst, c.data, c.bytes);
        } else {
            f->async[kept++] = c;
        }
    }
    f->async.resize(kept);
}

// ---- thread lifecycle ----------------------------------------------------------------------------
[[noreturn]] void thread_exit(Emu &e, Fiber *f) {
    // Copies still in flight land, as they would on a GPU (the kernel should have waited).
    land_async(f, UINT32_MAX);
    const uint32_t bit = 1u << f->lane;
    Warp &w = e.warps[f->warp];
    f->state = DONE;
    w.done |= bit;
    if (e.done_count++ == 0) e.first_done = f->linear;
    e.yield_streak = 0;
    if (e.bar_waiting) {
        // Name one waiter for the message.
        const Fiber *waiter = nullptr;
        for (uint32_t i = 0; i < e.nthreads && !waiter; ++i)
            if (e.fibers[i].state == WAIT_BAR) waiter = &e.fibers[i];
        fail(e, SK_EMU_ERR_BARRIER,
             "returned while %u thread(s) wait at %s (e.g. thread (%u,%u,%u) at %s:%d); every "
             "thread of a block must reach each barrier",
             e.bar_waiting, bar_name(e.bar_op), waiter->tid.x, waiter->tid.y, waiter->tid.z,
             waiter->file, waiter->line);
    }
    for (uint32_t ws = w.waiting; ws; ws &= ws - 1) {
        const Fiber &o = e.fibers[f->warp * 32 + __builtin_ctz(ws)];
        if (o.mask & bit)
            fail(e, SK_EMU_ERR_WARP_LANE_EXITED,
                 "returned while lane %u waits for it in %s(mask=0x%08x) at %s:%d", o.lane,
                 op_name(o.op), o.mask, o.file, o.line);
    }
    Fiber *next = pop(e);
    if (next) {
        transfer(e, f, next, true);
        __builtin_unreachable();
    }
    to_main(e, f);
}

void fiber_main(void *arg) noexcept {
#ifdef SK_EMU_ASAN
    const void *bottom = nullptr;
    size_t size = 0;
    __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
    if (G->entering_from_main) {
        G->main_bottom = bottom;
        G->main_size = size;
    }
#endif
    Emu &e = *G;
    e.entering_from_main = false;
    e.kernel->entry(e.params);
    thread_exit(e, static_cast<Fiber *>(arg));
}

// ---- warp collectives ----------------------------------------------------------------------------
unsigned long long poison(unsigned size) {
    return size >= 8 ? ~0ull : ((1ull << (8 * size)) - 1);
}

// All lanes of `mask` have arrived and agree; compute each one's result (PTX semantics) and
// requeue every participant but the caller.
void complete(Emu &e, Fiber *self, uint32_t mask) {
    Fiber *base = &e.fibers[self->warp * 32];
    const int op = self->op;
    const unsigned size = self->size;
    if (is_shfl(op)) {
        // shfl.sync with CUDA's c operand: segmask = 32 - width, clamp 0 (up) or 31 (others).
        const int segmask = (32 - self->width) & 31;
        const int cval = op == OP_SHFL_UP ? 0 : 31;
        for (uint32_t m = mask; m; m &= m - 1) {
            const int lane = __builtin_ctz(m);
            Fiber &t = base[lane];
            const int bval = t.arg & 31;
            const int max_lane = (lane & segmask) | (cval & ~segmask);
            const int min_lane = lane & segmask;
            int j = lane;
            bool ok = false;
            switch (op) {
                case OP_SHFL_UP: j = lane - bval; ok = j >= max_lane; break;
                case OP_SHFL_DOWN: j = lane + bval; ok = j <= max_lane; break;
                case OP_SHFL_XOR: j = lane ^ bval; ok = j <= max_lane; break;
                default: j = min_lane | (bval & ~segmask); ok = j <= max_lane; break;
            }
            if (!ok) j = lane;
            // A source lane outside the mask holds an undefined value on the GPU; hand out an
            // all-ones pattern (NaN for floats) so that a result that matters shows up.
            t.result = (mask >> j) & 1u ? base[j].value : poison(size);
        }
    } else {
        unsigned long long r = 0;
        switch (op) {
            case OP_BALLOT:
            case OP_ANY:
            case OP_ALL: {
                uint32_t ballot = 0;
                for (uint32_t m = mask; m; m &= m - 1)
                    if (base[__builtin_ctz(m)].value) ballot |= m & (~m + 1);
                r = op == OP_BALLOT ? ballot : op == OP_ANY ? ballot != 0 : ballot == mask;
                break;
            }
            case OP_SYNCWARP: break;
            case OP_MATCH_ANY:
                for (uint32_t m = mask; m; m &= m - 1) {
                    Fiber &t = base[__builtin_ctz(m)];
                    uint32_t same = 0;
                    for (uint32_t k = mask; k; k &= k - 1)
                        if (base[__builtin_ctz(k)].value == t.value) same |= k & (~k + 1);
                    t.result = same;
                }
                break;
            case OP_MATCH_ALL: {
                bool all = true;
                for (uint32_t m = mask; m; m &= m - 1) all = all && base[__builtin_ctz(m)].value == self->value;
                r = all ? (mask | (1ull << 32)) : 0;
                break;
            }
            default: {
                uint32_t acc = static_cast<uint32_t>(base[__builtin_ctz(mask)].value);
                for (uint32_t m = mask & (mask - 1); m; m &= m - 1) {
                    const uint32_t v = static_cast<uint32_t>(base[__builtin_ctz(m)].value);
                    switch (op) {
                        case OP_REDUCE_ADD: acc += v; break;
                        case OP_REDUCE_MIN_U: acc = v < acc ? v : acc; break;
                        case OP_REDUCE_MAX_U: acc = v > acc ? v : acc; break;
                        case OP_REDUCE_MIN_S:
                            acc = static_cast<int32_t>(v) < static_cast<int32_t>(acc) ? v : acc;
                            break;
                        case OP_REDUCE_MAX_S:
                            acc = static_cast<int32_t>(v) > static_cast<int32_t>(acc) ? v : acc;
                            break;
                        case OP_REDUCE_AND: acc &= v; break;
                        case OP_REDUCE_OR: acc |= v; break;
                        default: acc ^= v; break;
                    }
                }
                r = acc;
                break;
            }
        }
        if (op != OP_MATCH_ANY)
            for (uint32_t m = mask; m; m &= m - 1) base[__builtin_ctz(m)].result = r;
    }
    e.warps[self->warp].waiting &= ~mask;
    for (uint32_t m = mask & ~(1u << self->lane); m; m &= m - 1) {
        Fiber *t = &base[__builtin_ctz(m)];
        t->state = READY;
        push(e, t);
    }
}

}  // namespace

// ---- entry points used by cuda_emu.h ----------------------------------------------------------
namespace sk_emu {

Registrar::Registrar(const char *name, size_t params_size, unsigned max_threads,
                     void (*entry)(const void *)) {
    registry().push_back(Kernel{name, params_size, max_threads, entry});
}

namespace detail {

unsigned long long warp_op(unsigned mask, int op, unsigned long long bits, unsigned size, int arg,
                           int width, const char *file, int line) {
    Emu &e = running(op_name(op));
    Fiber *f = e.cur;
    const uint32_t bit = 1u << f->lane;
    Warp &w = e.warps[f->warp];
    e.yield_streak = 0;
    if (is_shfl(op) && (width < 1 || width > 32 || (width & (width - 1)) != 0))
        fail(e, SK_EMU_ERR_INVALID_ARG, "%s at %s:%d: width %d is not a power of two in [1, 32]",
             op_name(op), file, line, width);
    if (!(mask & bit))
        fail(e, SK_EMU_ERR_WARP_NOT_IN_MASK,
             "%s(mask=0x%08x) at %s:%d: the calling lane %u is not in the mask", op_name(op), mask,
             file, line, f->lane);
    if (const uint32_t missing = mask & ~w.exists)
        fail(e, SK_EMU_ERR_WARP_LANE_EXITED,
             "%s(mask=0x%08x) at %s:%d: lane %d named in the mask does not exist (warp %u has "
             "only lanes 0x%08x)",
             op_name(op), mask, file, line, __builtin_ctz(missing), f->warp, w.exists);
    if (const uint32_t gone = mask & w.done)
        fail(e, SK_EMU_ERR_WARP_LANE_EXITED,
             "%s(mask=0x%08x) at %s:%d: lane %d named in the mask has already returned",
             op_name(op), mask, file, line, __builtin_ctz(gone));
    f->op = op;
    f->mask = mask;
    f->arg = arg;
    f->width = width;
    f->size = size;
    f->value = bits;
    f->file = file;
    f->line = line;
    w.waiting |= bit;
    if ((w.waiting & mask) == mask) {
        // Everybody named in the mask waits somewhere. A lane waiting with a different mask may
        // still leave (its own group can complete) and come here later, as independent thread
        // scheduling allows; that case is judged only if the block stalls. Lanes that wait with
        // this very mask but in another operation can never agree: fail now.
        const Fiber *base = &e.fibers[f->warp * 32];
        bool same_mask = true;
        for (uint32_t m = mask & ~bit; m; m &= m - 1) {
            const Fiber &o = base[__builtin_ctz(m)];
            if (o.mask != mask) {
                same_mask = false;
                continue;
            }
            if (o.op != op || o.size != size || o.width != width)
                fail(e, SK_EMU_ERR_WARP_MISMATCH,
                     "%s(mask=0x%08x, %u-byte value, width %d) at %s:%d does not match lane %u, "
                     "which waits in %s(mask=0x%08x, %u-byte value, width %d) at %s:%d",
                     op_name(op), mask, size, width, file, line, o.lane, op_name(o.op), o.mask,
                     o.size, o.width, o.file, o.line);
        }
        if (same_mask) {
            complete(e, f, mask);  // the last arriver carries on without a switch
            return f->result;
        }
    }
    f->state = WAIT_WARP;
    suspend(e, f);
    return f->result;
}

int barrier(int op, int pred, const char *file, int line) {
    Emu &e = running(bar_name(op));
    Fiber *f = e.cur;
    e.yield_streak = 0;
    if (e.done_count) {
        const uint3 t = e.fibers[e.first_done].tid;
        fail(e, SK_EMU_ERR_BARRIER,
             "reached %s at %s:%d after thread (%u,%u,%u) returned; every thread of a block must "
             "reach each barrier",
             bar_name(op), file, line, t.x, t.y, t.z);
    }
    if (e.bar_waiting && op != e.bar_op)
        fail(e, SK_EMU_ERR_BARRIER, "reached %s at %s:%d while other threads wait at %s",
             bar_name(op), file, line, bar_name(e.bar_op));
    if (e.bar_waiting == 0) {
        e.bar_op = op;
        e.bar_acc = op == BAR_AND ? 1 : 0;
    }
    switch (op) {
        case BAR_COUNT: e.bar_acc += pred; break;
        case BAR_AND: e.bar_acc &= pred; break;
        case BAR_OR: e.bar_acc |= pred; break;
        default: break;
    }
    f->op = op;
    f->file = file;
    f->line = line;
    if (++e.bar_waiting == e.nthreads) {
        const int r = e.bar_acc;
        e.bar_waiting = 0;
        for (uint32_t i = 0; i < e.nthreads; ++i) {
            Fiber *t = &e.fibers[i];
            if (t == f) continue;
            t->result = static_cast<unsigned long long>(r);
            t->state = READY;
            push(e, t);
        }
        return r;
    }
    f->state = WAIT_BAR;
    suspend(e, f);
    return static_cast<int>(f->result);
}

unsigned activemask() {
    Emu &e = running("__activemask");
    const Warp &w = e.warps[e.cur->warp];
    return w.exists & ~w.done;
}

void yield(const char *file, int line) {
    Emu &e = running("__nanosleep");
    Fiber *f = e.cur;
    if (++e.yield_streak > kYieldLimit)
        fail(e, SK_EMU_ERR_DEADLOCK,
             "livelock: %llu consecutive __nanosleep yields (last at %s:%d) without any thread "
             "reaching a barrier, a warp collective or its end",
             e.yield_streak, file, line);
    if (e.qcount == 0) return;  // nobody else can run
    f->state = READY;
    push(e, f);
    transfer(e, f, pop(e), false);
}

void trap(const char *file, int line) {
    Emu &e = running("__trap");
    fail(e, SK_EMU_ERR_TRAP, "__trap() at %s:%d", file, line);
}

void assert_fail(const char *expr, const char *file, int line, const char *func) {
    Emu *e = G;
    if (e == nullptr || e->cur == nullptr) {
        fprintf(stderr, "%s:%d: %s: assertion `%s' failed\n", file, line, func, expr);
        abort();
    }
    fail(*e, SK_EMU_ERR_ASSERT, "assertion `%s' failed at %s:%d in %s", expr, file, line, func);
}

long long clock_tick() { return g_clock.fetch_add(1, std::memory_order_relaxed) + 1; }

void async_copy(void *dst, const void *src, unsigned bytes, unsigned src_bytes, const char *file,
                int line) {
    Emu &e = running("cp.async");
    Fiber *f = e.cur;
    if (bytes > sizeof(AsyncCopy::data) || src_bytes > bytes)
        fail(e, SK_EMU_ERR_INVALID_ARG, "cp.async of %u bytes (%u from the source) at %s:%d",
             bytes, src_bytes, file, line);
    if (reinterpret_cast<uintptr_t>(dst) % bytes != 0 ||
        (src_bytes > 0 && reinterpret_cast<uintptr_t>(src) % bytes != 0))
        fail(e, SK_EMU_ERR_INVALID_ARG,
             "misaligned cp.async of %u bytes at %s:%d (shared %p, global %p): both addresses "
             "must be multiples of the size",
             bytes, file, line, dst, src);
    AsyncCopy c;
    c.dst = dst;
    c.bytes = bytes;
    c.group = f->async_open;
    memset(c.data, 0, sizeof(c.data));
    if (src_bytes > 0) memcpy(c.data, src, src_bytes);
    f->async.push_back(c);
}

void async_commit() {
    Emu &e = running("cp.async.commit_group");
    ++e.cur->async_open;
}

void async_wait(unsigned newest_pending) {
    Emu &e = running("cp.async.wait_group");
    Fiber *f = e.cur;
    // Committed groups are 0 .. async_open - 1; all but the newest `newest_pending` land.
    const uint32_t before = f->async_open > newest_pending ? f->async_open - newest_pending : 0;
    land_async(f, before);
}

}  // namespace detail
}  // namespace sk_emu

// ---- scheduler (runs on the launching OS thread's own stack) ---------------------------------------
namespace {

size_t configured_stack_size() {
#ifdef SK_EMU_ASAN
    size_t kb = 256;  // ASan redzones make frames several times larger
#else
    size_t kb = 64;
#endif
    if (const char *s = getenv("SK_EMU_STACK_KB")) {
        const long v = strtol(s, nullptr, 10);
        if (v >= 16 && v <= 65536) kb = static_cast<size_t>(v);
    }
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return (kb * 1024 + page - 1) / page * page;
}

// One mapping per fiber: a PROT_NONE guard region below the stack turns an overflow into SIGSEGV
// instead of silent corruption of the neighbouring fiber. The guard is 64 KiB rather than one
// page so that a large frame (a big local array) cannot step over it; it costs address space
// only. Stacks persist across launches.
bool ensure_stacks(Emu &e, uint32_t n) {
    if (e.stack_size == 0) e.stack_size = configured_stack_size();
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t guard = (65536 + page - 1) / page * page;
    while (e.stacks.size() < n) {
        const size_t total = e.stack_size + guard;
        void *m = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (m == MAP_FAILED) return false;
        if (mprotect(m, guard, PROT_NONE) != 0) {
            munmap(m, total);
            return false;
        }
        char *base = static_cast<char *>(m);
        e.stacks.push_back(Stack{base, total, base + guard, e.stack_size});
    }
    return true;
}

std::string tid_str(const uint3 &t) {
    char b[48];
    snprintf(b, sizeof(b), "(%u,%u,%u)", t.x, t.y, t.z);
    return b;
}

// No fiber is runnable but some have not finished. If some collective has all of its lanes
// waiting but they disagree on the mask, that is the bug (SK_EMU_ERR_WARP_MISMATCH); otherwise it
// is a deadlock, e.g. a lane waiting at __syncthreads while its warp waits for it in a shuffle.
// Either way, describe who waits where.
void report_stall(Emu &e) {
    std::string msg;
    char b[512];
    for (uint32_t i = 0; i < e.nthreads; ++i) {
        const Fiber &f = e.fibers[i];
        if (f.state != WAIT_WARP || (e.warps[f.warp].waiting & f.mask) != f.mask) continue;
        snprintf(b, sizeof(b),
                 "kernel '%s', block (%u,%u,%u), thread %s [warp %u lane %u]: the lanes of "
                 "mask 0x%08x all wait in warp collectives but disagree on the mask:",
                 e.kernel->name, block_idx.x, block_idx.y, block_idx.z, tid_str(f.tid).c_str(),
                 f.warp, f.lane, f.mask);
        msg += b;
        for (uint32_t m = f.mask; m; m &= m - 1) {
            const Fiber &o = e.fibers[f.warp * 32 + __builtin_ctz(m)];
            snprintf(b, sizeof(b), "%s lane %u in %s(mask=0x%08x) at %s:%d",
                     m == f.mask ? "" : ";", o.lane, op_name(o.op), o.mask, o.file, o.line);
            msg += b;
        }
        msg += ".";
        e.err_code = SK_EMU_ERR_WARP_MISMATCH;
        snprintf(e.err_msg, sizeof(e.err_msg), "%s", msg.c_str());
        return;
    }
    snprintf(b, sizeof(b),
             "kernel '%s', block (%u,%u,%u): deadlock: no thread can proceed, %u of %u threads "
             "have not finished.",
             e.kernel->name, block_idx.x, block_idx.y, block_idx.z, e.nthreads - e.done_count,
             e.nthreads);
    msg += b;
    struct Site {
        const char *file;
        int line;
        int op;
        uint32_t count;
        uint32_t first;
    };
    std::vector<Site> sites;
    uint32_t warp_waiters = 0;
    for (uint32_t i = 0; i < e.nthreads; ++i) {
        const Fiber &f = e.fibers[i];
        if (f.state == WAIT_BAR) {
            bool found = false;
            for (Site &s : sites)
                if (s.file == f.file && s.line == f.line && s.op == f.op) {
                    ++s.count;
                    found = true;
                }
            if (!found) sites.push_back(Site{f.file, f.line, f.op, 1, i});
        }
    }
    for (const Site &s : sites) {
        snprintf(b, sizeof(b), " %u thread(s) wait at %s (%s:%d), first thread %s.", s.count,
                 bar_name(s.op), s.file, s.line, tid_str(e.fibers[s.first].tid).c_str());
        msg += b;
    }
    for (uint32_t i = 0; i < e.nthreads; ++i) {
        const Fiber &f = e.fibers[i];
        if (f.state != WAIT_WARP) continue;
        if (++warp_waiters > 8) continue;
        snprintf(b, sizeof(b), " Thread %s [warp %u lane %u] waits in %s(mask=0x%08x) at %s:%d",
                 tid_str(f.tid).c_str(), f.warp, f.lane, op_name(f.op), f.mask, f.file, f.line);
        msg += b;
        for (uint32_t m = f.mask; m; m &= m - 1) {
            const Fiber &o = e.fibers[f.warp * 32 + __builtin_ctz(m)];
            if (o.state == WAIT_WARP && o.mask == f.mask) continue;  // arrived here
            if (o.state == WAIT_BAR)
                snprintf(b, sizeof(b), "; lane %u waits at %s (%s:%d) instead", o.lane,
                         bar_name(o.op), o.file, o.line);
            else
                snprintf(b, sizeof(b), "; lane %u waits in %s(mask=0x%08x) at %s:%d", o.lane,
                         op_name(o.op), o.mask, o.file, o.line);
            msg += b;
        }
        msg += ".";
    }
    if (warp_waiters > 8) {
        snprintf(b, sizeof(b), " ... and %u more threads in warp collectives.", warp_waiters - 8);
        msg += b;
    }
    e.err_code = SK_EMU_ERR_DEADLOCK;
    snprintf(e.err_msg, sizeof(e.err_msg), "%s", msg.c_str());
}

void run_block(Emu &e) {
    const uint32_t n = e.nthreads;
    for (uint32_t w = 0; w < (n + 31) / 32; ++w) {
        const uint32_t lanes = n - w * 32 >= 32 ? 32 : n - w * 32;
        e.warps[w] = Warp{lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u, 0, 0};
    }
    for (uint32_t i = 0; i < n; ++i) {
        Fiber &f = e.fibers[i];
        f.state = READY;
        f.mask = 0;
        f.async.clear();  // an earlier block's, abandoned by an error
        f.async_open = 0;
#ifdef SK_EMU_ASAN
        // Frames abandoned by an earlier error (or by fiber_main, which never returns) leave
        // poisoned redzones behind in the shadow memory.
        __asan_unpoison_memory_region(f.stack_lo, f.stack_size);
#endif
        ctx_make(&f.ctx, f.stack_lo, f.stack_size, fiber_main, &f, e.mxcsr, e.fcw);
        e.queue[i] = static_cast<uint16_t>(i);
    }
    e.qhead = 0;
    e.qcount = n;
    e.bar_waiting = 0;
    e.done_count = 0;
    e.yield_streak = 0;
    Fiber *first = pop(e);
    first->state = RUNNING;
    e.cur = first;
    thread_idx = first->tid;
    e.entering_from_main = true;
    ++e.switches;
#ifdef SK_EMU_ASAN
    __sanitizer_start_switch_fiber(&e.main_fake, first->stack_lo, first->stack_size);
#endif
    ctx_switch(&e.main_ctx, &first->ctx);
#ifdef SK_EMU_ASAN
    __sanitizer_finish_switch_fiber(e.main_fake, nullptr, nullptr);
#endif
    e.cur = nullptr;
    if (e.err_code == SK_EMU_OK && e.done_count != n) report_stall(e);
}

int set_error(char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int set_error(char *err, size_t err_len, int code, const char *fmt, ...) {
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

thread_local bool t_in_launch = false;

}  // namespace

// ---- C API ---------------------------------------------------------------------------------------
extern "C" int sk_emu_launch(const char *name, const uint32_t grid[3], const uint32_t block[3],
                             uint32_t dynamic_smem_bytes, const void *params, size_t params_size,
                             char *err, size_t err_len) {
    if (err && err_len) err[0] = '\0';
    if (t_in_launch)
        return set_error(err, err_len, SK_EMU_ERR_INVALID_ARG,
                         "sk_emu_launch called from inside a running kernel");
    if (name == nullptr)
        return set_error(err, err_len, SK_EMU_ERR_UNKNOWN_KERNEL, "kernel name is NULL");
    if (grid == nullptr || block == nullptr)
        return set_error(err, err_len, SK_EMU_ERR_INVALID_ARG,
                         "kernel '%s': grid or block pointer is NULL", name);
    const Kernel *k = nullptr;
    int matches = 0;
    for (const Kernel &c : registry())
        if (strcmp(c.name, name) == 0) {
            if (!k) k = &c;
            ++matches;
        }
    if (!k)
        return set_error(err, err_len, SK_EMU_ERR_UNKNOWN_KERNEL,
                         "unknown kernel '%s' (%zu kernels registered)", name, registry().size());
    if (matches > 1)
        return set_error(err, err_len, SK_EMU_ERR_INVALID_ARG,
                         "kernel '%s' is registered %d times (a .cu file included twice?)", name,
                         matches);
    if (params_size != k->params_size)
        return set_error(err, err_len, SK_EMU_ERR_PARAMS_SIZE,
                         "kernel '%s' takes a %zu-byte parameter struct, the launch passed %zu "
                         "bytes",
                         name, k->params_size, params_size);
    if (params == nullptr && params_size != 0)
        return set_error(err, err_len, SK_EMU_ERR_PARAMS_SIZE, "kernel '%s': params is NULL",
                         name);
    const uint64_t nthreads = static_cast<uint64_t>(block[0]) * block[1] * block[2];
    const unsigned bound = k->max_threads ? k->max_threads : kMaxThreads;
    if (block[0] == 0 || block[1] == 0 || block[2] == 0 || block[0] > 1024 || block[1] > 1024 ||
        block[2] > 64 || nthreads > kMaxThreads)
        return set_error(err, err_len, SK_EMU_ERR_BLOCK_DIM,
                         "kernel '%s': invalid block (%u,%u,%u): each dimension must be >= 1, x "
                         "and y <= 1024, z <= 64, and at most 1024 threads in all",
                         name, block[0], block[1], block[2]);
    if (nthreads > bound)
        return set_error(err, err_len, SK_EMU_ERR_BLOCK_DIM,
                         "kernel '%s': block (%u,%u,%u) has %llu threads, above its launch bound "
                         "of %u",
                         name, block[0], block[1], block[2],
                         static_cast<unsigned long long>(nthreads), bound);
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[0] > 0x7fffffffu ||
        grid[1] > 65535u || grid[2] > 65535u)
        return set_error(err, err_len, SK_EMU_ERR_GRID_DIM,
                         "kernel '%s': invalid grid (%u,%u,%u): each dimension must be >= 1, x <= "
                         "2^31-1, y and z <= 65535",
                         name, grid[0], grid[1], grid[2]);
    if (dynamic_smem_bytes > kMaxDynamicSmem)
        return set_error(err, err_len, SK_EMU_ERR_SHARED_MEM,
                         "kernel '%s': %u bytes of dynamic shared memory requested, the maximum "
                         "is %u",
                         name, dynamic_smem_bytes, kMaxDynamicSmem);

    std::lock_guard<std::mutex> lock(emu().mutex);
    Emu &e = emu();
    G = &e;
    const uint32_t n = static_cast<uint32_t>(nthreads);
    if (!ensure_stacks(e, n))
        return set_error(err, err_len, SK_EMU_ERR_RESOURCE,
                         "kernel '%s': cannot map %u fiber stacks of %zu bytes", name, n,
                         e.stack_size);
    // Private, exactly sized copies: the kernel sees aligned parameters, and under ASan any
    // overrun of the parameter block or of dynamic shared memory is reported.
    void *pbuf = nullptr;
    void *smem = nullptr;
    if (posix_memalign(&pbuf, 64, params_size ? params_size : 1) != 0 ||
        posix_memalign(&smem, 16, dynamic_smem_bytes ? dynamic_smem_bytes : 1) != 0) {
        free(pbuf);
        return set_error(err, err_len, SK_EMU_ERR_RESOURCE, "kernel '%s': out of memory", name);
    }
    if (params_size) memcpy(pbuf, params, params_size);

    e.kernel = k;
    e.params = pbuf;
    e.nthreads = n;
    e.err_code = SK_EMU_OK;
    e.err_msg[0] = '\0';
    e.switches = 0;
    for (uint32_t i = 0; i < n; ++i) {
        Fiber &f = e.fibers[i];
        f.tid = uint3{i % block[0], (i / block[0]) % block[1], i / (block[0] * block[1])};
        f.linear = i;
        f.warp = i / 32;
        f.lane = i % 32;
        f.stack_lo = e.stacks[i].lo;
        f.stack_size = e.stacks[i].size;
        f.asan_fake = nullptr;
    }
#ifdef SK_EMU_ASM_SWITCH
    // Fibers start with the launching thread's floating-point environment.
    __asm__ __volatile__("stmxcsr %0" : "=m"(e.mxcsr));
    __asm__ __volatile__("fnstcw %0" : "=m"(e.fcw));
#endif
    block_dim = dim3(block[0], block[1], block[2]);
    grid_dim = dim3(grid[0], grid[1], grid[2]);
    dynamic_smem = smem;

    t_in_launch = true;
    for (uint32_t z = 0; z < grid[2] && e.err_code == SK_EMU_OK; ++z)
        for (uint32_t y = 0; y < grid[1] && e.err_code == SK_EMU_OK; ++y)
            for (uint32_t x = 0; x < grid[0] && e.err_code == SK_EMU_OK; ++x) {
                block_idx = uint3{x, y, z};
                // Shared memory starts undefined on a GPU; all-ones bytes (NaN, -1) make reads
                // of data this block never wrote stand out.
                if (dynamic_smem_bytes) memset(smem, 0xff, dynamic_smem_bytes);
                run_block(e);
            }
    t_in_launch = false;

    thread_idx = uint3{0, 0, 0};
    block_idx = uint3{0, 0, 0};
    block_dim = dim3(0, 0, 0);
    grid_dim = dim3(0, 0, 0);
    dynamic_smem = nullptr;
    e.kernel = nullptr;
    e.params = nullptr;
    free(pbuf);
    free(smem);
    g_total_switches.fetch_add(e.switches, std::memory_order_relaxed);
    if (e.err_code != SK_EMU_OK) return set_error(err, err_len, e.err_code, "%s", e.err_msg);
    return SK_EMU_OK;
}

extern "C" size_t sk_emu_kernel_count(void) {
    // The read only exists to give this object a reference to the anchor (see cuda_emu.h).
    (void)*static_cast<volatile char *>(&sk_emu_kernel_unit_anchor);
    return registry().size();
}

extern "C" const char *sk_emu_kernel_name(size_t i) {
    return i < registry().size() ? registry()[i].name : nullptr;
}

extern "C" unsigned long long sk_emu_switch_count(void) {
    return g_total_switches.load(std::memory_order_relaxed);
}
