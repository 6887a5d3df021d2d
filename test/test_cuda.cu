// The rules of CUDA and cuBLAS that train.cu relies on, checked where they run. Built
// by nvcc (make test-gpu), it checks them on a GPU; built against test/gpu_emu (make
// test-gpu-emu, GPU_EMU defined), it checks that the emulator keeps them, so the GPU
// results hold the emulator to the real thing. A last part, under GPU_EMU, checks what
// only the emulator promises: fresh memory full of NaN, launches that wait for a
// synchronizing call, the reversed order, and faults reported as a GPU reports them.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"

#define cudaCheck(err) do { cudaError_t e_ = (err); if (e_ != cudaSuccess) { \
    printf("FAIL %s:%d: CUDA: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(1); } } while (0)

template <typename T> static T *managed(size_t n) {
    T *p = NULL;
    cudaCheck(cudaMallocManaged((void **)&p, n * sizeof(T), cudaMemAttachGlobal));
    return p;
}

// ----------------------------------------------------------------------------
// launches: which configurations the runtime refuses, and that it reports them once

__global__ void fill_kernel(int *out, int value, int n) {
    int i = blockIdx.x * blockDim.x * blockDim.y * blockDim.z + (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    if (i < n) { out[i] = value; }
}

static void test_launch_limits(void) {
    int *out = managed<int>(2048);
    struct { unsigned gx, gy, gz, bx, by, bz; int valid; const char *what; } cases[] = {
        {0, 1, 1, 256, 1, 1, 0, "a grid of 0 blocks"},
        {1, 1, 1, 0, 1, 1, 0, "a block of 0 threads"},
        {1, 1, 1, 1025, 1, 1, 0, "1025 threads a block"},
        {1, 1, 1, 64, 32, 1, 0, "(64, 32, 1): 2048 threads a block"},
        {1, 1, 1, 1, 1, 65, 0, "a block 65 threads deep in z"},
        {1, 65536, 1, 32, 1, 1, 0, "65536 blocks in y"},
        {2, 1, 1, 1024, 1, 1, 1, "1024 threads a block"},
        {2, 1, 1, 32, 32, 1, 1, "(32, 32, 1) threads a block"},
        {2, 1, 1, 16, 4, 16, 1, "(16, 4, 16) threads a block"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        cudaCheck(cudaMemset(out, 0, 2048 * sizeof(int)));
        cudaCheck(cudaDeviceSynchronize());
        dim3 grid(cases[c].gx, cases[c].gy, cases[c].gz), block(cases[c].bx, cases[c].by, cases[c].bz);
        fill_kernel<<<grid, block>>>(out, 7, 2048);
        cudaError_t launch = cudaGetLastError(), after = cudaGetLastError(), sync = cudaDeviceSynchronize();
        int written = 0;
        for (int i = 0; i < 2048; i++) { written += out[i] == 7; }
        char name[128];
        snprintf(name, sizeof(name), "launch with %s: %s", cases[c].what, cases[c].valid ? "runs" : "refused, and nothing runs");
        if (cases[c].valid) {
            check(launch == cudaSuccess && sync == cudaSuccess && written == 2048, name, "%s; %d of 2048 written",
                  cudaGetErrorString(launch), written);
        } else {
            // the error is the launch's (CUDA 12 names it invalid configuration, CUDA 13
            // invalid argument): cudaGetLastError returns it once, and the device goes on
            check((launch == cudaErrorInvalidConfiguration || launch == cudaErrorInvalidValue) && after == cudaSuccess && sync == cudaSuccess && written == 0,
                  name, "%s, then %s; %d written", cudaGetErrorString(launch), cudaGetErrorString(after), written);
        }
    }
    cudaCheck(cudaFree(out));
}

// every thread of a 3-D grid of 3-D blocks sees its own indices, and every thread runs once
__global__ void indices_kernel(unsigned *out) {
    unsigned block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    unsigned thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    unsigned i = block * (blockDim.x * blockDim.y * blockDim.z) + thread;
    out[i] += 1000000u * blockIdx.z + 100000u * blockIdx.y + 10000u * blockIdx.x + 100u * threadIdx.z +
              10u * threadIdx.y + threadIdx.x + 1u;
}

static void test_indices(void) {
    dim3 grid(3, 2, 2), block(4, 3, 2);
    size_t n = 3 * 2 * 2 * 4 * 3 * 2;
    unsigned *out = managed<unsigned>(n);
    cudaCheck(cudaMemset(out, 0, n * sizeof(unsigned)));
    indices_kernel<<<grid, block>>>(out);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaDeviceSynchronize());
    size_t wrong = 0, i = 0;
    for (unsigned bz = 0; bz < 2; bz++) for (unsigned by = 0; by < 2; by++) for (unsigned bx = 0; bx < 3; bx++)
    for (unsigned tz = 0; tz < 2; tz++) for (unsigned ty = 0; ty < 3; ty++) for (unsigned tx = 0; tx < 4; tx++) {
        unsigned want = 1000000u * bz + 100000u * by + 10000u * bx + 100u * tz + 10u * ty + tx + 1u;
        wrong += out[i++] != want;
    }
    check(wrong == 0, "threadIdx, blockIdx, blockDim, gridDim in a (3,2,2) grid of (4,3,2) blocks: each thread once",
          "%zu of %zu wrong", wrong, n);
    cudaCheck(cudaFree(out));
}

// ----------------------------------------------------------------------------
// barriers and shared memory

// each block reverses its slice through shared memory: a thread reads what another
// wrote, which is right only if the barrier holds every thread until all have written
__global__ void reverse_kernel(float *out, const float *in) {
    __shared__ float s[256];
    unsigned n = blockDim.x, t = threadIdx.x;
    s[t] = in[blockIdx.x * n + t];
    __syncthreads();
    out[blockIdx.x * n + t] = s[n - 1 - t];
}

// a tree sum in shared memory: log2(n) rounds, a barrier after each, the same shared
// array reused round after round; a 2-D block, to check the linear thread index
__global__ void block_sum_kernel(float *sums, const float *in) {
    __shared__ float s[512];
    unsigned n = blockDim.x * blockDim.y, t = threadIdx.y * blockDim.x + threadIdx.x;
    s[t] = in[blockIdx.x * n + t];
    __syncthreads();
    for (unsigned half = n / 2; half > 0; half /= 2) {
        if (t < half) { s[t] += s[t + half]; }
        __syncthreads();
    }
    if (t == 0) { sums[blockIdx.x] = s[0]; }
}

static void test_barriers(void) {
    int blocks = 37;
    float *in = managed<float>(blocks * 512), *out = managed<float>(blocks * 512), *sums = managed<float>(blocks);
    for (int i = 0; i < blocks * 512; i++) { in[i] = (float)(i % 1000); } // sums of integers: exact in any order
    reverse_kernel<<<blocks, 256>>>(out, in);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaDeviceSynchronize());
    int wrong = 0;
    for (int b = 0; b < blocks; b++) {
        for (int t = 0; t < 256; t++) { wrong += out[b * 256 + t] != in[b * 256 + 255 - t]; }
    }
    check(wrong == 0, "__syncthreads: each block reverses its slice through shared memory", "%d of %d wrong", wrong,
          blocks * 256);
    block_sum_kernel<<<blocks, dim3(32, 16)>>>(sums, in);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaDeviceSynchronize());
    wrong = 0;
    for (int b = 0; b < blocks; b++) {
        double want = 0.0;
        for (int t = 0; t < 512; t++) { want += in[b * 512 + t]; }
        wrong += sums[b] != (float)want;
    }
    check(wrong == 0, "__syncthreads: a tree sum over a (32,16) block, nine rounds of barriers", "%d of %d sums wrong",
          wrong, blocks);
    cudaCheck(cudaFree(in));
    cudaCheck(cudaFree(out));
    cudaCheck(cudaFree(sums));
}

// ----------------------------------------------------------------------------
// memory calls

static void test_memory_calls(void) {
    void *p = NULL;
    cudaError_t zero = cudaMallocManaged(&p, 0, cudaMemAttachGlobal);
    cudaGetLastError();
    // train.cu never asks for 0 bytes (model_calloc returns NULL first); what CUDA does
    // with it, measured on an H200 with CUDA 13: no error, and the result can be freed
    cudaError_t freed = zero == cudaSuccess ? cudaFree(p) : cudaSuccess;
    cudaGetLastError();
    check(zero == cudaSuccess && freed == cudaSuccess, "cudaMallocManaged of 0 bytes: no error, and freeing it is fine",
          "%s, then %s (pointer %p)", cudaGetErrorString(zero), cudaGetErrorString(freed), p);
    check(cudaFree(NULL) == cudaSuccess, "cudaFree(NULL) does nothing", "");
    float *x = managed<float>(16);
    cudaError_t first = cudaFree(x), second = cudaFree(x);
    cudaGetLastError();
    check(first == cudaSuccess && second != cudaSuccess, "cudaFree twice: the second is an error", "%s, then %s",
          cudaGetErrorString(first), cudaGetErrorString(second));
}

// ----------------------------------------------------------------------------
// cuBLAS: the column-major contract, C = alpha op(A) op(B) + beta C

static void test_sgemm(void) {
    cublasHandle_t handle;
    check(cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS, "cublasCreate", "");
    cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH);
    int m = 13, n = 7, k = 29;
    // leading dimensions larger than the rows they hold, so that a mix-up shows
    int lda = 40, ldb = 35, ldc = 17;
    float *A = managed<float>(40 * 40), *B = managed<float>(35 * 35), *C = managed<float>(17 * 7), *C0 = managed<float>(17 * 7);
    for (int i = 0; i < 40 * 40; i++) { A[i] = (float)((i * 37) % 11) - 5.0f; }
    for (int i = 0; i < 35 * 35; i++) { B[i] = (float)((i * 23) % 7) - 3.0f; }
    for (int i = 0; i < 17 * 7; i++) { C0[i] = (float)(i % 5); }
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            for (int accumulate = 0; accumulate < 2; accumulate++) {
                // with beta = 0, C is not read: NaN there must not come through
                for (int i = 0; i < 17 * 7; i++) { C[i] = accumulate ? C0[i] : NAN; }
                float alpha = 0.5f, beta = accumulate ? 2.0f : 0.0f;
                cublasStatus_t st = cublasSgemm(handle, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m,
                                                n, k, &alpha, A, lda, B, ldb, &beta, C, ldc);
                cudaCheck(cudaDeviceSynchronize());
                // small integers: every sum is exact, so any order gives the same bits
                int wrong = 0;
                for (int j = 0; j < n; j++) {
                    for (int i = 0; i < m; i++) {
                        double sum = 0.0;
                        for (int l = 0; l < k; l++) {
                            double a = ta ? A[l + i * lda] : A[i + l * lda], b = tb ? B[j + l * ldb] : B[l + j * ldb];
                            sum += a * b;
                        }
                        double want = alpha * sum + (accumulate ? beta * C0[i + j * ldc] : 0.0);
                        wrong += C[i + j * ldc] != (float)want;
                    }
                }
                char name[96];
                snprintf(name, sizeof(name), "cublasSgemm op(A)=%c op(B)=%c, beta=%g: column-major, lda > m", ta ? 'T' : 'N',
                         tb ? 'T' : 'N', beta);
                check(st == CUBLAS_STATUS_SUCCESS && wrong == 0, name, "status %d, %d of %d wrong", (int)st, wrong, m * n);
            }
        }
    }
    // refused: leading dimensions smaller than the rows they hold
    float one = 1.0f, zero = 0.0f;
    cublasStatus_t small_lda = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, A, m - 1, B, ldb, &zero, C, ldc);
    cublasStatus_t small_lda_t = cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, A, k - 1, B, ldb, &zero, C, ldc);
    cublasStatus_t small_ldb = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &one, A, lda, B, n - 1, &zero, C, ldc);
    cublasStatus_t small_ldc = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, A, lda, B, ldb, &zero, C, m - 1);
    cublasStatus_t negative = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, -1, n, k, &one, A, lda, B, ldb, &zero, C, ldc);
    check(small_lda == CUBLAS_STATUS_INVALID_VALUE && small_lda_t == CUBLAS_STATUS_INVALID_VALUE &&
              small_ldb == CUBLAS_STATUS_INVALID_VALUE && small_ldc == CUBLAS_STATUS_INVALID_VALUE &&
              negative == CUBLAS_STATUS_INVALID_VALUE,
          "cublasSgemm refuses lda < m ('N'), lda < k ('T'), ldb < n ('T'), ldc < m, and m < 0", "statuses %d %d %d %d %d",
          (int)small_lda, (int)small_lda_t, (int)small_ldb, (int)small_ldc, (int)negative);
    // k = 0: C = beta C, nothing read from A or B
    for (int i = 0; i < 17 * 7; i++) { C[i] = 3.0f; }
    cublasStatus_t k0 = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, 0, &one, A, lda, B, ldb, &zero, C, ldc);
    cudaCheck(cudaDeviceSynchronize());
    int nonzero = 0;
    for (int j = 0; j < n; j++) for (int i = 0; i < m; i++) { nonzero += C[i + j * ldc] != 0.0f; }
    check(k0 == CUBLAS_STATUS_SUCCESS && nonzero == 0, "cublasSgemm with k = 0 and beta = 0 sets C to 0", "%d nonzero",
          nonzero);
    cudaCheck(cudaFree(A));
    cudaCheck(cudaFree(B));
    cudaCheck(cudaFree(C));
    cudaCheck(cudaFree(C0));
    check(cublasDestroy(handle) == CUBLAS_STATUS_SUCCESS, "cublasDestroy", "");
}

// cublasSgemmStridedBatched: batch products, the p-th at A + p*strideA, B + p*strideB and
// C + p*strideC. Strides with gaps between the products (so a stride mistaken for a size
// shows), B shared by all (stride 0), every pair of transposes, beta 0 over NaN and beta 1.
static void test_sgemm_strided_batched(void) {
    cublasHandle_t handle;
    cublasCreate(&handle);
    int m = 5, n = 6, k = 7, batch = 3, lda = 9, ldb = 8, ldc = 6;
    long long strideA = 9 * 9 + 4, strideC = 6 * 6 + 3; // each product's part, and a gap
    float *A = managed<float>(strideA * batch), *B = managed<float>(8 * 8), *C = managed<float>(strideC * batch);
    float *C0 = managed<float>(strideC * batch);
    for (long long i = 0; i < strideA * batch; i++) { A[i] = (float)((i * 29) % 9) - 4.0f; }
    for (int i = 0; i < 8 * 8; i++) { B[i] = (float)((i * 17) % 5) - 2.0f; }
    for (long long i = 0; i < strideC * batch; i++) { C0[i] = (float)(i % 7); }
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            for (int accumulate = 0; accumulate < 2; accumulate++) {
                for (long long i = 0; i < strideC * batch; i++) { C[i] = accumulate ? C0[i] : NAN; }
                float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
                cublasStatus_t st = cublasSgemmStridedBatched(handle, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                                              tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, A, lda,
                                                              strideA, B, ldb, 0, &beta, C, ldc, strideC, batch);
                cudaCheck(cudaDeviceSynchronize());
                int wrong = 0, gap_touched = 0; // small integers again: exact in any order
                for (int p = 0; p < batch; p++) {
                    const float *Ap = A + p * strideA;
                    for (int j = 0; j < n; j++) {
                        for (int i = 0; i < m; i++) {
                            double sum = 0.0;
                            for (int l = 0; l < k; l++) {
                                double a = ta ? Ap[l + i * lda] : Ap[i + l * lda], b = tb ? B[j + l * ldb] : B[l + j * ldb];
                                sum += a * b;
                            }
                            long long at = p * strideC + i + (long long)j * ldc;
                            wrong += C[at] != (float)(sum + (accumulate ? C0[at] : 0.0));
                        }
                    }
                    // rows m..ldc-1 of each column, and the gap after the product, are not C's
                    for (long long i = p * strideC; i < (p + 1) * strideC; i++) {
                        long long r = i - p * strideC;
                        if (r % ldc >= m || r >= (long long)n * ldc) { gap_touched += accumulate ? C[i] != C0[i] : !isnan(C[i]); }
                    }
                }
                char name[128];
                snprintf(name, sizeof(name), "cublasSgemmStridedBatched op(A)=%c op(B)=%c, beta=%g: 3 products, B shared",
                         ta ? 'T' : 'N', tb ? 'T' : 'N', beta);
                check(st == CUBLAS_STATUS_SUCCESS && wrong == 0 && gap_touched == 0, name,
                      "status %d, %d of %d wrong, %d outside the products touched", (int)st, wrong, batch * m * n,
                      gap_touched);
            }
        }
    }
    float one = 1.0f, zero = 0.0f;
    cublasStatus_t negative = cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, A, lda, strideA,
                                                        B, ldb, 0, &zero, C, ldc, strideC, -1);
    check(negative == CUBLAS_STATUS_INVALID_VALUE, "cublasSgemmStridedBatched refuses batchCount < 0", "status %d",
          (int)negative);
    cudaCheck(cudaFree(A));
    cudaCheck(cudaFree(B));
    cudaCheck(cudaFree(C));
    cudaCheck(cudaFree(C0));
    cublasDestroy(handle);
}

#ifdef GPU_EMU
// ----------------------------------------------------------------------------
// what only the emulator promises

// the order in which the threads of one block ran: each takes the next slot of a
// counter (a race on a GPU; here they run in turn)
__global__ void order_kernel(unsigned *order, unsigned *next) {
    order[(*next)++] = threadIdx.x;
}

static void test_emulator(void) {
    float *x = managed<float>(1000);
    int fresh_nan = 0;
    for (int i = 0; i < 1000; i++) { fresh_nan += isnan(x[i]); }
    check(fresh_nan == 1000, "emulator: fresh managed memory reads as NaN", "%d of 1000", fresh_nan);
    cudaCheck(cudaMemset(x, 0, 1000 * sizeof(float)));
    float before = x[0];
    cudaCheck(cudaDeviceSynchronize());
    float after = x[0];
    check(isnan(before) && after == 0.0f, "emulator: cudaMemset is done when waited for, not before", "%g, then %g", before,
          after);
    int *y = managed<int>(4);
    fill_kernel<<<1, 4>>>(y, 5, 4);
    int y_before = y[0];
    cudaCheck(cudaDeviceSynchronize());
    check(y_before == -1 && y[0] == 5, "emulator: a kernel's result is there once waited for, not before",
          "%d, then %d", y_before, y[0]);
    cudaError_t past_end = cudaMemset(x, 0, 1001 * sizeof(float));
    cudaGetLastError();
    check(past_end == cudaErrorInvalidValue, "emulator: cudaMemset past the end of an allocation is refused", "%s",
          cudaGetErrorString(past_end));

    unsigned *order = managed<unsigned>(65);
    memset(order, 0, 65 * sizeof(unsigned));
    order_kernel<<<1, 64>>>(order, order + 64);
    cudaCheck(cudaDeviceSynchronize());
    const char *rev = getenv("GPU_EMU_REVERSE");
    int reverse = rev != NULL && strcmp(rev, "0") != 0, in_order = 0;
    for (unsigned i = 0; i < 64; i++) { in_order += order[i] == (reverse ? 63 - i : i); }
    check(in_order == 64, reverse ? "emulator: GPU_EMU_REVERSE=1 runs a block's threads last to first"
                                  : "emulator: a block's threads run first to last",
          "%d of 64 in that order", in_order);
    cudaCheck(cudaFree(x));
    cudaCheck(cudaFree(y));
    cudaCheck(cudaFree(order));
}

// Faults: each runs in a process of its own (they are sticky: the device is done for),
// which prints the error that cudaDeviceSynchronize and then a later call returned.
__global__ void divergent_barrier_kernel(float *x) {
    if (threadIdx.x == 5) { return; }
    x[threadIdx.x] = 1.0f;
    __syncthreads();
}
__global__ void late_barrier_kernel(float *x) {
    x[threadIdx.x] = 1.0f;
    if (threadIdx.x == 5) { __syncthreads(); }
}

static void run_fault(const char *name) {
    float *x = managed<float>(64), host[64];
    cublasHandle_t handle;
    float one = 1.0f, zero = 0.0f;
    if (!strcmp(name, "divergent")) {
        divergent_barrier_kernel<<<2, 64>>>(x);
    } else if (!strcmp(name, "late")) {
        late_barrier_kernel<<<2, 64>>>(x);
    } else if (!strcmp(name, "host")) {
        fill_kernel<<<1, 64>>>((int *)host, 1, 64);
    } else if (!strcmp(name, "sgemm_host")) {
        cublasCreate(&handle);
        cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, host, 8, x, 8, &zero, x, 8);
    } else if (!strcmp(name, "sgemm_past_end")) {
        cublasCreate(&handle);
        cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, x, 9, x, 8, &zero, x, 8); // reads 9*7+8 = 71 > 64
    } else if (!strcmp(name, "batched_past_end")) {
        cublasCreate(&handle);
        // two 4 x 4 products of C, 50 floats apart: the second covers x[50..65], past x's 64
        cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, x, 4, 0, x, 4, 0, &zero, x, 4, 50, 2);
    }
    cudaError_t sync = cudaDeviceSynchronize();
    void *p;
    cudaError_t later = cudaMallocManaged(&p, 16, cudaMemAttachGlobal);
    printf("%d %d\n", (int)sync, (int)later);
    exit(0);
}

static void test_faults(const char *self) {
    struct { const char *name; int error; const char *what; } cases[] = {
        {"divergent", cudaErrorLaunchFailure, "a barrier that one thread of a block skips by returning"},
        {"late", cudaErrorLaunchFailure, "a barrier that one thread reaches after the first returned without it"},
        {"host", cudaErrorIllegalAddress, "a kernel given a host array"},
        {"sgemm_host", cudaErrorIllegalAddress, "cublasSgemm given a host array"},
        {"sgemm_past_end", cudaErrorIllegalAddress, "cublasSgemm reading past the end of an allocation"},
        {"batched_past_end", cudaErrorIllegalAddress, "cublasSgemmStridedBatched writing its second product past the end"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        char cmd[512], line[64] = "";
        snprintf(cmd, sizeof(cmd), "'%s' fault %s 2>/dev/null", self, cases[c].name);
        FILE *f = popen(cmd, "r");
        int sync = -1, later = -1;
        if (f) {
            if (fgets(line, sizeof(line), f)) { sscanf(line, "%d %d", &sync, &later); }
            pclose(f);
        }
        char name[160];
        snprintf(name, sizeof(name), "emulator: %s faults, and the fault is sticky", cases[c].what);
        check(sync == cases[c].error && later == cases[c].error, name, "synchronize: %d, a later call: %d (want %d)", sync,
              later, cases[c].error);
    }
}
#endif

int main(int argc, char **argv) {
#ifdef GPU_EMU
    setenv("GPU_EMU_QUIET", "1", 1); // the refusals below are on purpose
    if (argc == 3 && !strcmp(argv[1], "fault")) { run_fault(argv[2]); }
#endif
    test_launch_limits();
    test_indices();
    test_barriers();
    test_memory_calls();
    test_sgemm();
    test_sgemm_strided_batched();
#ifdef GPU_EMU
    test_emulator();
    test_faults(argv[0]);
#endif
    (void)argc, (void)argv;
    printf("%d passed, %d failed\n", checks_passed, checks_failed);
    return checks_failed > 0;
}
