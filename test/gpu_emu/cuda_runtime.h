/*
test/gpu_emu/cuda_runtime.h: the part of CUDA that train.cu uses, run on the CPU.

With this folder first on the include path, g++ compiles train.cu and its tests as
C++, unchanged but for one mechanical rewrite that the Makefile does with sed: the
launch kernel<<<grid, block>>>(args) becomes emu_launch(kernel, grid, block)(args),
and a #line directive keeps train.cu's own file name and line numbers. Then the
kernels run here, so their indexing, bounds, launch sizes, barriers and the cuBLAS
mapping are checked on every commit, where no GPU is lent (doc/gpu.md says what this
can and cannot show).

What it does, in the order of this file:
  - the language: __global__ and __device__ mark plain functions; __shared__ is a
    static thread_local variable, shared by the threads of a block because a block
    runs on one OS thread; threadIdx, blockIdx, blockDim and gridDim are thread_local
    variables of CUDA's types (unsigned int fields).
  - errors, as the runtime reports them: a call returns its error and records it for
    cudaGetLastError; a fault inside a kernel is sticky, as on a GPU: every later call
    returns it.
  - managed memory: allocations are recorded, so cudaMemset, cudaFree, cuBLAS and
    each kernel's pointer arguments can be checked against them; fresh memory is
    filled with 0xFF bytes (NaN as a float, -1 as an int), since fresh GPU memory is
    not zero.
  - asynchrony: a launch (or cudaMemset, or cublasSgemm) is validated at once and
    queued; the queue runs at the next synchronizing call (cudaDeviceSynchronize,
    cudaFree). Host code that reads a result before waiting for it reads old data,
    as it may on a GPU.
  - a kernel: the blocks of the grid are spread over OpenMP threads. In a block, the
    first thread runs on a fiber (its own small stack, switched to and from by hand).
    If it returns without reaching __syncthreads, the other threads run as plain
    calls, one after another. If it stops at a barrier, every thread of the block
    gets a fiber, and they run in turns: each until its next barrier, and when all
    wait, all go on. A barrier that some threads of a block reach and others do not
    is reported as a fault (on a GPU it is undefined).
  - GPU_EMU_REVERSE=1 runs the blocks and the threads of each block in reverse order,
    so a result that depends on the order of the threads shows up in exact checks.

Not modelled: __CUDA_ARCH__ is not defined, so code under it is not what runs here;
two different __syncthreads calls (in the two arms of an if) count as one barrier;
the last error is one for the process, where CUDA keeps one per host thread, and the
queue assumes one host thread launches, as train.c's host code does.

Everything is in this header (and cublas_v2.h), as inline functions and variables, so
any file of a program may include it.
*/
#ifndef GPU_EMU_CUDA_RUNTIME_H
#define GPU_EMU_CUDA_RUNTIME_H
#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <math.h> // as with nvcc, the math functions come with the runtime
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>
#include <sys/mman.h>
#if defined(__SANITIZE_ADDRESS__)
#define GPU_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GPU_EMU_ASAN 1
#endif
#endif
#ifdef GPU_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if !defined(__x86_64__) || defined(GPU_EMU_UCONTEXT)
#define GPU_EMU_UCONTEXT 1
#include <ucontext.h>
#endif

// ----------------------------------------------------------------------------
// the language

#define __global__
#define __device__
#define __host__
// one variable per OS thread; the threads of a block share it (a block runs on one OS
// thread), and blocks on other OS threads have their own. It starts at 0 and then holds
// what the previous block on that OS thread left, where a GPU's holds garbage.
#define __shared__ static thread_local

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};
inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

// ----------------------------------------------------------------------------
// errors: the codes and messages of CUDA's driver_types.h

enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchFailure = 719,
};
typedef enum cudaError cudaError_t;

inline const char *cudaGetErrorString(cudaError_t err) {
    switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    }
    return "unrecognized error code";
}

#define cudaMemAttachGlobal 0x01
#define cudaMemAttachHost 0x02

namespace gpu_emu {

struct Runtime {
    std::mutex lock;
    cudaError_t last = cudaSuccess;             // what cudaGetLastError returns, and resets
    std::atomic<int> sticky{cudaSuccess};       // a fault in a kernel: every later call returns it
    std::map<uintptr_t, size_t> allocations;    // managed memory: first byte -> size in bytes
    std::vector<std::function<void()>> queue;   // launched work, not run yet
    bool reverse = flag("GPU_EMU_REVERSE");
    bool quiet = flag("GPU_EMU_QUIET"); // no message for a refused call (its error is returned)
    static bool flag(const char *name) { return getenv(name) != nullptr && strcmp(getenv(name), "0") != 0; }
};
inline Runtime &runtime() {
    static Runtime r;
    return r;
}

inline cudaError_t sticky() { return (cudaError_t)runtime().sticky.load(); }

// a call's error: returned, and kept for cudaGetLastError
inline cudaError_t fail(cudaError_t err) {
    std::lock_guard<std::mutex> guard(runtime().lock);
    runtime().last = err;
    return err;
}

// Prints what went wrong, as compute-sanitizer would (a GPU says only the error's name):
// a fault always, a refused call unless GPU_EMU_QUIET is set (test/test_cuda.cu makes
// such calls on purpose).
inline void vreport(const char *fmt, va_list ap) {
    fprintf(stderr, "gpu_emu: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
}
inline void report(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
}
inline void report_refused(const char *fmt, ...) {
    if (runtime().quiet) { return; }
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
}

// a fault in queued work: the first one is printed and kept, and the queue stops
inline void fault(cudaError_t err, const char *what) {
    int expected = cudaSuccess;
    if (runtime().sticky.compare_exchange_strong(expected, err)) { report("%s (%s)", what, cudaGetErrorString(err)); }
}

// ----------------------------------------------------------------------------
// managed memory

// whether [p, p + bytes) lies inside one allocation (a pointer one past the end, with
// bytes = 0, counts as inside)
inline bool is_managed(const void *p, size_t bytes) {
    Runtime &r = runtime();
    std::lock_guard<std::mutex> guard(r.lock);
    auto next = r.allocations.upper_bound((uintptr_t)p);
    if (next == r.allocations.begin()) { return false; }
    auto it = std::prev(next);
    return (uintptr_t)p - it->first <= it->second && bytes <= it->second - ((uintptr_t)p - it->first);
}

// ----------------------------------------------------------------------------
// the queue: launched work runs at the next synchronizing call

inline void enqueue(std::function<void()> work) {
    std::lock_guard<std::mutex> guard(runtime().lock);
    runtime().queue.push_back(std::move(work));
}

inline void run_queue() {
    std::vector<std::function<void()>> work;
    {
        std::lock_guard<std::mutex> guard(runtime().lock);
        work.swap(runtime().queue);
    }
    for (auto &w : work) {
        if (sticky() != cudaSuccess) { break; } // after a fault the device runs nothing more
        w();
    }
}

// ----------------------------------------------------------------------------
// fibers: a GPU thread that can stop at a barrier and go on later

enum { FIBER_RUNNING, FIBER_AT_BARRIER, FIBER_FINISHED };
constexpr size_t STACK_BYTES = 256 * 1024; // address space only: a kernel touches a page or two
constexpr size_t GUARD_BYTES = 4096;       // no access: an overflow faults instead of corrupting

struct Fiber {
    char *stack = nullptr;
    uint3 idx{0, 0, 0};   // the thread it runs (threadIdx)
    int state = FIBER_FINISHED;
    unsigned barriers = 0; // barriers it has reached
    void *fake_stack = nullptr; // ASan's, while it is switched out
#ifdef GPU_EMU_UCONTEXT
    ucontext_t context;
#else
    void *sp = nullptr; // its stack pointer, while it is switched out
#endif
};

struct Kernel {
    const char *name;
    dim3 grid, block;
    std::function<void()> thread; // runs the kernel's body once, for threadIdx and blockIdx
};

// What an OS thread needs to run blocks: its fibers (and their stacks, kept from block to
// block), the fiber it runs now (none while threads run as plain calls), and the kernel.
// Allocated once per OS thread and never freed: thread_local objects are destroyed before
// atexit handlers run, and one of those (train.cu's gpu_free, through cublasDestroy)
// may still wait for queued work.
struct Worker {
    std::vector<Fiber> fibers;
    Fiber *current = nullptr;
    const Kernel *kernel = nullptr;
    const void *stack_bottom = nullptr; // this OS thread's own stack, for ASan
    size_t stack_size = 0;
#ifdef GPU_EMU_UCONTEXT
    ucontext_t context;
#else
    void *sp = nullptr;
#endif
};
inline Worker &this_worker() {
    thread_local Worker *w = new Worker;
    return *w;
}

// ASan follows a switch of stacks when told of it before (start) and after (finish)
inline void asan_start(void **fake_stack, const void *bottom, size_t size) {
#ifdef GPU_EMU_ASAN
    __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#else
    (void)fake_stack, (void)bottom, (void)size;
#endif
}
inline void asan_finish(void *fake_stack, const void **bottom_old, size_t *size_old) {
#ifdef GPU_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, bottom_old, size_old);
#else
    (void)fake_stack, (void)bottom_old, (void)size_old;
#endif
}

#ifndef GPU_EMU_UCONTEXT
extern "C" void gpu_emu_switch(void **save_sp, void *load_sp);
extern "C" void gpu_emu_start(void);
#endif

// the first code a fiber runs: the kernel for its thread, then back for good
inline void fiber_main() {
    Worker &w = this_worker();
    asan_finish(nullptr, &w.stack_bottom, &w.stack_size);
    w.kernel->thread();
    Fiber &f = *w.current;
    f.state = FIBER_FINISHED;
    asan_start(nullptr, w.stack_bottom, w.stack_size); // nullptr: this fiber's frames are gone
#ifdef GPU_EMU_UCONTEXT
    setcontext(&w.context);
#else
    void *unused;
    gpu_emu_switch(&unused, w.sp);
#endif
    abort(); // not reached
}

#ifndef GPU_EMU_UCONTEXT
// The switch on x86-64 (System V): push the registers a callee must preserve, store
// the stack pointer, load the other fiber's, pop its registers and return into it.
// A new fiber's stack holds such a frame, made by fiber_prepare, whose return address
// is gpu_emu_start: it calls the function in r12 (fiber_main), which never returns.
// The symbols are weak, so that two files of one program may include this header.
asm(R"(
    .pushsection .text
    .weak gpu_emu_switch
    .type gpu_emu_switch, @function
gpu_emu_switch:
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
    .size gpu_emu_switch, .-gpu_emu_switch

    .weak gpu_emu_start
    .type gpu_emu_start, @function
gpu_emu_start:
    call *%r12
    ud2
    .size gpu_emu_start, .-gpu_emu_start
    .popsection
)");

// the frame gpu_emu_switch pops, from its stack pointer up
struct InitialFrame {
    uint32_t mxcsr;  // SSE control and status
    uint16_t fpucw;  // x87 control word
    uint16_t unused;
    void *r15, *r14, *r13, *r12, *rbx, *rbp;
    void *return_address;
};
static_assert(sizeof(InitialFrame) == 64, "gpu_emu_switch pops 8 bytes, 6 registers and a return address");
#endif

// makes f start at fiber_main as thread idx
inline void fiber_prepare(Fiber &f, uint3 idx) {
    if (f.stack == nullptr) {
        void *mem = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED) {
            report("out of memory for the stacks of a block's threads");
            abort();
        }
        mprotect(mem, GUARD_BYTES, PROT_NONE);
        f.stack = (char *)mem;
    }
#ifdef GPU_EMU_ASAN
    // a fiber left at a barrier (after a fault) left its frames' poison behind
    __asan_unpoison_memory_region(f.stack + GUARD_BYTES, STACK_BYTES - GUARD_BYTES);
#endif
    f.idx = idx;
    f.state = FIBER_RUNNING;
    f.barriers = 0;
    f.fake_stack = nullptr;
#ifdef GPU_EMU_UCONTEXT
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack + GUARD_BYTES;
    f.context.uc_stack.ss_size = STACK_BYTES - GUARD_BYTES;
    f.context.uc_link = nullptr;
    makecontext(&f.context, fiber_main, 0);
#else
    // At the top of the stack (16-byte aligned), so that after gpu_emu_start's return
    // the stack pointer is 16-byte aligned, as a call needs. rbp = 0 ends backtraces.
    uintptr_t top = ((uintptr_t)f.stack + STACK_BYTES) & ~(uintptr_t)15;
    InitialFrame *frame = (InitialFrame *)(top - sizeof(InitialFrame));
    memset(frame, 0, sizeof(*frame));
    asm volatile("stmxcsr %0" : "=m"(frame->mxcsr));
    asm volatile("fnstcw %0" : "=m"(frame->fpucw));
    frame->r12 = (void *)&fiber_main;
    frame->return_address = (void *)&gpu_emu_start;
    f.sp = frame;
#endif
}

// runs f until it reaches a barrier or returns
inline void fiber_resume(Worker &w, Fiber &f) {
    w.current = &f;
    threadIdx = f.idx;
    void *fake_stack = nullptr;
    asan_start(&fake_stack, f.stack + GUARD_BYTES, STACK_BYTES - GUARD_BYTES);
#ifdef GPU_EMU_UCONTEXT
    swapcontext(&w.context, &f.context);
#else
    gpu_emu_switch(&w.sp, f.sp);
#endif
    asan_finish(fake_stack, nullptr, nullptr);
    w.current = nullptr;
}

// from inside f: back to the OS thread's own stack, until resumed
inline void fiber_yield(Worker &w, Fiber &f) {
    asan_start(&f.fake_stack, w.stack_bottom, w.stack_size);
#ifdef GPU_EMU_UCONTEXT
    swapcontext(&f.context, &w.context);
#else
    gpu_emu_switch(&f.sp, w.sp);
#endif
    asan_finish(f.fake_stack, &w.stack_bottom, &w.stack_size);
}

// ----------------------------------------------------------------------------
// running a kernel

inline uint3 unflatten(size_t i, dim3 d) {
    return uint3{(unsigned)(i % d.x), (unsigned)(i / d.x % d.y), (unsigned)(i / d.x / d.y)};
}

inline void run_block(Worker &w, const Kernel &k, size_t block, bool reverse) {
    blockIdx = unflatten(block, k.grid);
    unsigned n = k.block.x * k.block.y * k.block.z;
    auto thread = [&](unsigned i) { return unflatten(reverse ? n - 1 - i : i, k.block); };
    if (w.fibers.size() < n) { w.fibers.resize(n); }
    // the first thread, on a fiber: does it stop at a barrier?
    fiber_prepare(w.fibers[0], thread(0));
    fiber_resume(w, w.fibers[0]);
    if (w.fibers[0].state == FIBER_FINISHED) {
        for (unsigned i = 1; i < n; i++) {
            threadIdx = thread(i);
            k.thread();
        }
        return;
    }
    // it did: every thread on a fiber, each run in turn up to its next barrier
    for (unsigned i = 1; i < n; i++) {
        fiber_prepare(w.fibers[i], thread(i));
        fiber_resume(w, w.fibers[i]);
    }
    for (;;) {
        unsigned finished = 0, a_finished = 0, a_waiting = 0; // a count, and an index of each kind
        for (unsigned i = 0; i < n; i++) {
            if (w.fibers[i].state == FIBER_FINISHED) { finished++, a_finished = i; } else { a_waiting = i; }
        }
        if (finished == n) { return; }
        if (finished > 0) {
            const Fiber &done = w.fibers[a_finished], &wait = w.fibers[a_waiting];
            char what[320];
            snprintf(what, sizeof(what),
                     "kernel %s, block (%u,%u,%u): thread (%u,%u,%u) returned after %u barriers while thread "
                     "(%u,%u,%u) waits at __syncthreads number %u (a barrier under a condition that differs "
                     "between the threads of a block)",
                     k.name, blockIdx.x, blockIdx.y, blockIdx.z, done.idx.x, done.idx.y, done.idx.z, done.barriers,
                     wait.idx.x, wait.idx.y, wait.idx.z, wait.barriers);
            fault(cudaErrorLaunchFailure, what);
            return;
        }
        for (unsigned i = 0; i < n; i++) {
            w.fibers[i].state = FIBER_RUNNING;
            fiber_resume(w, w.fibers[i]);
        }
    }
}

inline void run_kernel(const Kernel &k) {
    long long blocks = (long long)k.grid.x * k.grid.y * k.grid.z;
    bool reverse = runtime().reverse;
#ifdef _OPENMP
    #pragma omp parallel for schedule(dynamic, 8)
#endif
    for (long long i = 0; i < blocks; i++) {
        if (sticky() != cudaSuccess) { continue; }
        Worker &w = this_worker();
        w.kernel = &k;
        gridDim = k.grid;
        blockDim = k.block;
        run_block(w, k, (size_t)(reverse ? blocks - 1 - i : i), reverse);
    }
}

// The launch: the configuration is checked at once, as the runtime checks it; the
// arguments are copied, and the kernel queued. Limits of every GPU since compute
// capability 3.0: at most 1024 threads a block, (1024, 1024, 64) in each dimension,
// and a grid of at most (2^31 - 1, 65535, 65535) blocks; none of them 0.
inline bool valid_launch(dim3 grid, dim3 block) {
    return grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 2147483647u && grid.y <= 65535 && grid.z <= 65535 &&
           block.x >= 1 && block.y >= 1 && block.z >= 1 && block.x <= 1024 && block.y <= 1024 && block.z <= 64 &&
           (unsigned long long)block.x * block.y * block.z <= 1024;
}

// train.cu keeps everything a kernel touches in managed memory, so a pointer argument
// outside it (a host array, a pointer into the stack) is a bug; on a GPU without
// access to host memory (HMM or ATS) it is an illegal address.
template <typename T> inline void check_argument(const char *kernel, int index, const T &arg, std::string &bad) {
    if constexpr (std::is_pointer<T>::value) {
        if (arg != nullptr && !is_managed((const void *)arg, 0) && bad.empty()) {
            char what[256];
            snprintf(what, sizeof(what), "kernel %s: argument %d (%p) does not point into managed memory", kernel, index,
                     (const void *)arg);
            bad = what;
        }
    }
}

// emu_launch(k, grid, block)(a, b) makes a Launcher for k and calls it with (a, b): the
// arguments are converted to k's parameter types and kept in a tuple, and the queued
// work runs k(a, b) once for every thread of every block.
template <typename... P> struct Launcher {
    void (*kernel)(P...);
    const char *name;
    dim3 grid, block;

    template <typename... A> void operator()(A &&...args) const {
        static_assert(sizeof...(A) == sizeof...(P), "a kernel launched with the wrong number of arguments");
        if (sticky() != cudaSuccess) { return; }
        if (!valid_launch(grid, block)) {
            report_refused("kernel %s launched with grid (%u,%u,%u) and block (%u,%u,%u): %s", name, grid.x, grid.y, grid.z,
                   block.x, block.y, block.z, cudaGetErrorString(cudaErrorInvalidValue));
            fail(cudaErrorInvalidValue); // CUDA 13 on an H200 says so; CUDA 12 said invalid configuration
            return;
        }
        std::tuple<typename std::decay<P>::type...> params(std::forward<A>(args)...);
        std::string bad;
        std::apply([&](const auto &...p) {
            int index = 0;
            (check_argument(name, index++, p, bad), ...);
        }, params);
        auto k = std::make_shared<Kernel>(Kernel{name, grid, block, [f = kernel, params] { std::apply(f, params); }});
        enqueue([k, bad] {
            if (!bad.empty()) { fault(cudaErrorIllegalAddress, bad.c_str()); return; }
            run_kernel(*k);
        });
    }
};

template <typename... P> Launcher<P...> launcher(void (*kernel)(P...), const char *name, dim3 grid, dim3 block) {
    return Launcher<P...>{kernel, name, grid, block};
}
// kernel<<<grid, block, shared_bytes, stream>>>: not emulated, and said so
template <typename K, typename... More> void launcher(K, const char *, dim3, dim3, More...) {
    static_assert(sizeof...(More) == 0, "test/gpu_emu: dynamic shared memory and streams are not emulated");
}

} // namespace gpu_emu

// what the Makefile's sed writes for kernel<<<grid, block>>>
#define emu_launch(kernel, ...) gpu_emu::launcher(kernel, #kernel, __VA_ARGS__)

// ----------------------------------------------------------------------------
// the barrier

inline void __syncthreads() {
    gpu_emu::Worker &w = gpu_emu::this_worker();
    if (w.current == nullptr) {
        // threads after the first run as plain calls only when the first returned
        // without a barrier; this one did not
        char what[320];
        snprintf(what, sizeof(what),
                 "kernel %s, block (%u,%u,%u): thread (%u,%u,%u) reached __syncthreads, but the block's first thread "
                 "returned without reaching one (a barrier under a condition that differs between the threads of a block)",
                 w.kernel ? w.kernel->name : "?", blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y,
                 threadIdx.z);
        gpu_emu::fault(cudaErrorLaunchFailure, what);
        return;
    }
    gpu_emu::Fiber &f = *w.current;
    f.state = gpu_emu::FIBER_AT_BARRIER;
    f.barriers++;
    gpu_emu::fiber_yield(w, f);
}

// ----------------------------------------------------------------------------
// the runtime calls train.cu makes

inline cudaError_t cudaGetLastError(void) {
    gpu_emu::Runtime &r = gpu_emu::runtime();
    if (gpu_emu::sticky() != cudaSuccess) { return gpu_emu::sticky(); }
    std::lock_guard<std::mutex> guard(r.lock);
    cudaError_t err = r.last;
    r.last = cudaSuccess;
    return err;
}

inline cudaError_t cudaDeviceSynchronize(void) {
    gpu_emu::run_queue();
    return gpu_emu::sticky() != cudaSuccess ? gpu_emu::fail(gpu_emu::sticky()) : cudaSuccess;
}

inline cudaError_t cudaMallocManaged(void **ptr, size_t size, unsigned int flags = cudaMemAttachGlobal) {
    if (gpu_emu::sticky() != cudaSuccess) { return gpu_emu::fail(gpu_emu::sticky()); }
    if (ptr == nullptr || (flags != cudaMemAttachGlobal && flags != cudaMemAttachHost)) {
        return gpu_emu::fail(cudaErrorInvalidValue);
    }
    if (size == 0) { *ptr = nullptr; return cudaSuccess; } // allowed: CUDA 13 on an H200 says no error
    void *mem = nullptr;
    if (posix_memalign(&mem, 256, size) != 0) { return gpu_emu::fail(cudaErrorMemoryAllocation); } // cudaMalloc's alignment
    memset(mem, 0xFF, size); // fresh GPU memory is not zero
    {
        std::lock_guard<std::mutex> guard(gpu_emu::runtime().lock);
        gpu_emu::runtime().allocations[(uintptr_t)mem] = size;
    }
    *ptr = mem;
    return cudaSuccess;
}

inline cudaError_t cudaFree(void *ptr) {
    gpu_emu::run_queue(); // freeing waits for the work that may use the memory
    if (gpu_emu::sticky() != cudaSuccess) { return gpu_emu::fail(gpu_emu::sticky()); }
    if (ptr == nullptr) { return cudaSuccess; }
    {
        std::lock_guard<std::mutex> guard(gpu_emu::runtime().lock);
        auto it = gpu_emu::runtime().allocations.find((uintptr_t)ptr);
        if (it == gpu_emu::runtime().allocations.end()) {
            gpu_emu::runtime().last = cudaErrorInvalidValue;
            gpu_emu::report_refused("cudaFree(%p): not the start of a live allocation", ptr);
            return cudaErrorInvalidValue;
        }
        gpu_emu::runtime().allocations.erase(it);
    }
    free(ptr);
    return cudaSuccess;
}

inline cudaError_t cudaMemset(void *ptr, int value, size_t count) {
    if (gpu_emu::sticky() != cudaSuccess) { return gpu_emu::fail(gpu_emu::sticky()); }
    if (count == 0) { return cudaSuccess; }
    if (!gpu_emu::is_managed(ptr, count)) {
        gpu_emu::report_refused("cudaMemset(%p, %d, %zu): not inside one allocation", ptr, value, count);
        return gpu_emu::fail(cudaErrorInvalidValue);
    }
    gpu_emu::enqueue([=] { memset(ptr, value, count); });
    return cudaSuccess;
}

// the fields train.cu reads
struct cudaDeviceProp {
    char name[256];
    int major, minor;
};

inline cudaError_t cudaGetDevice(int *device) {
    *device = 0;
    return cudaSuccess;
}

// one device, which answers as compute capability 9.0 (valid_launch holds its limits)
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
    if (device != 0) { return gpu_emu::fail(cudaErrorInvalidDevice); }
    memset(prop, 0, sizeof(*prop));
    snprintf(prop->name, sizeof(prop->name), "gpu_emu%s", gpu_emu::runtime().reverse ? " reversed" : "");
    prop->major = 9;
    prop->minor = 0;
    return cudaSuccess;
}
#endif
