/*
train.cu: train.c's GPT, run on an NVIDIA GPU.

This file holds only what runs on the GPU: a kernel for each layer's forward and
backward, the optimizer's loops, and the model's memory. Everything else (tokenizer,
JSONL readers, batches, gpt_forward and gpt_backward, the four stages, checkpoints,
flags, main) is train.c itself, compiled with TRAIN_GPU defined and linked with this
file: in that build the functions train.c marks REPLACED_ON_GPU are weak symbols, and
the linker takes the ones below instead. So the flags, defaults, seed, log lines and
checkpoints are the same in both builds by construction, and a checkpoint written by
one loads in the other.

Build and run (the Makefile does this):
    make run-gpu       the four stages on the GPU, with the same summary table as run-cpu
    make test-gpu      every kernel against its C function, then each stage against train.c
    make test-gpu-emu  the same tests with no GPU: this file built as C++ against
                       test/gpu_emu/, which runs the kernels on the CPU (doc/gpu.md)

Each kernel sits directly above its launcher. The launcher has the name and arguments
of the C function it replaces; the kernel adds _kernel. First kernels are direct
ports: the outer loops of the C function become the thread index and the inner loops
stay as they are, in the same order, so most results match the CPU's to the last bit
or nearly.

Differences from train.c (each place is marked "differs from train.c:"):
  - memory: the models and the KV cache live in CUDA managed memory, which the CPU
    and the GPU both address, so train.c's host code reads logits, losses and values
    as it always does; pages move between the two on demand.
  - every launcher waits for its kernel (cudaDeviceSynchronize) before returning, so
    the C code after it may read the result. Simple, and it gives up overlap.
  - matrix multiplies go through cuBLAS by default (TRAIN_GEMM=tiled picks the
    readable tiled kernel, which is always compiled and tested): sums run in another
    order than train.c's, so results agree to rounding, not to the bit.
  - attention: train.c computes it as matrix products in blocks of rows (through its
    gemm engine); the kernels here are direct ports of its definition as loops, one
    thread per query row, and backward is split into two kernels, one over queries and
    one over keys, so that every gradient element has a single writer (no atomicAdd).
    The sums run in another order, so results agree to rounding.
  - exp, log, sqrt, tanh: CUDA's single-precision functions, within 2 ulp of libm's.
*/
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A launcher carries the name of the train.c function it replaces. The GPU tests link
// both versions into one program, so there (TESTING) the launchers get a suffix:
// matmul_forward_gpu beside train.c's matmul_forward.
#ifdef TESTING
#define GPU(name) name##_gpu
#else
#define GPU(name) name
#endif

// ----------------------------------------------------------------------------
// 1. utilities: checked CUDA calls, managed memory

static void cuda_check(cudaError_t err, const char *file, int line) {
    if (err != cudaSuccess) {
        fprintf(stderr, "error (%s:%d): CUDA: %s. Is a GPU there (nvidia-smi)? Was train.cu built for its "
                        "architecture (make run-gpu GPU_ARCH=...)?\n", file, line, cudaGetErrorString(err));
        exit(EXIT_FAILURE);
    }
}
#define cudaCheck(err) cuda_check(err, __FILE__, __LINE__)

// Every launcher ends here: a failed launch is reported at once, and the kernel has
// finished when the launcher returns.
// differs from train.c: the C loops are done when they return; a kernel runs on its own
// until waited for.
#define kernelCheck() do { cudaCheck(cudaGetLastError()); cudaCheck(cudaDeviceSynchronize()); } while (0)

// blocks of `threads` threads that cover n elements. CUDA refuses a grid of 0 blocks
// ("invalid configuration argument") where train.c's loop over nothing does nothing,
// so the launchers of a size that can be 0 (AdamW on a tensor of the head a model
// does not have, which holds no parameters) return before they launch.
static int blocks_for(size_t n, int threads) { return (int)((n + threads - 1) / threads); }

// differs from train.c: managed memory, which the host code of train.c reads and
// writes as plain memory, and kernels use directly
extern "C" void *GPU(model_calloc)(size_t n, size_t size) {
    void *p = NULL;
    if (n * size == 0) { return NULL; }
    cudaError_t err = cudaMallocManaged(&p, n * size, cudaMemAttachGlobal);
    if (err != cudaSuccess) {
        fprintf(stderr, "error (%s:%d): out of GPU memory allocating %.1f MB (%s): try a smaller batch (-b), "
                        "context (-t) or model\n", __FILE__, __LINE__, n * size / 1e6, cudaGetErrorString(err));
        exit(EXIT_FAILURE);
    }
    cudaCheck(cudaMemset(p, 0, n * size));
    cudaCheck(cudaDeviceSynchronize());
    return p;
}

extern "C" void GPU(model_free)(void *p) {
    if (p) { cudaCheck(cudaFree(p)); }
}

extern "C" void GPU(zero_floats)(float *x, size_t n) {
    cudaCheck(cudaMemset(x, 0, n * sizeof(float)));
    cudaCheck(cudaDeviceSynchronize());
}

// ----------------------------------------------------------------------------
// 2. the tokenizer: train.c's, on the host
// 3. data: train.c's, on the host

// ----------------------------------------------------------------------------
// 4. layers: forward and backward of each building block

// The matrix multiply engine, as in train.c:
//     c (M,N) = c * accumulate + a (M,K) . b (K,N)
// element (i,k) of a is a[i*a_rs + k*a_cs], element (k,j) of b is b[k*b_rs + j*b_cs],
// c is row-major with rows ldc apart.

// The readable path: c is cut into TILE x TILE tiles, one thread block per tile and
// one thread per element of c. The k loop of the plain math (c[i][j] += a[i][k] b[k][j])
// runs in steps of TILE: each step, the block copies a TILE x TILE piece of a and of b
// into shared memory (each thread one element of each), and every thread then reads
// TILE values of a's row and b's column from there instead of from global memory.
#define TILE 16
__global__ void gemm_tiled_kernel(float *c, size_t ldc, const float *a, size_t a_rs, size_t a_cs, const float *b,
                                  size_t b_rs, size_t b_cs, int M, int N, int K, int accumulate) {
    __shared__ float a_tile[TILE][TILE], b_tile[TILE][TILE];
    int i = blockIdx.y * TILE + threadIdx.y, j = blockIdx.x * TILE + threadIdx.x;
    float sum = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        int ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
        a_tile[threadIdx.y][threadIdx.x] = (i < M && ka < K) ? a[(size_t)i * a_rs + (size_t)ka * a_cs] : 0.0f;
        b_tile[threadIdx.y][threadIdx.x] = (kb < K && j < N) ? b[(size_t)kb * b_rs + (size_t)j * b_cs] : 0.0f;
        __syncthreads();
        for (int k = 0; k < TILE; k++) { sum += a_tile[threadIdx.y][k] * b_tile[k][threadIdx.x]; }
        __syncthreads(); // the tiles are overwritten next step
    }
    if (i < M && j < N) {
        float *cij = c + (size_t)i * ldc + j;
        *cij = accumulate ? *cij + sum : sum;
    }
}

static cublasHandle_t cublas_handle = NULL;
static int gemm_tiled = -1; // 1: the tiled kernel; 0: cuBLAS; -1: not decided yet (TRAIN_GEMM)

static void cublas_check(cublasStatus_t status, const char *file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "error (%s:%d): cuBLAS status %d\n", file, line, (int)status);
        exit(EXIT_FAILURE);
    }
}
#define cublasCheck(status) cublas_check(status, __FILE__, __LINE__)

static void gpu_free(void) {
    if (cublas_handle) { cublasCheck(cublasDestroy(cublas_handle)); cublas_handle = NULL; }
}

// picks the path on first use (TRAIN_GEMM=tiled for the tiled kernel) and sets up cuBLAS
static void gemm_init(void) {
    if (gemm_tiled < 0) {
        const char *choice = getenv("TRAIN_GEMM");
        gemm_tiled = choice != NULL && !strcmp(choice, "tiled");
    }
    if (!gemm_tiled && cublas_handle == NULL) {
        cublasCheck(cublasCreate(&cublas_handle));
        // plain fp32 (no TF32 tensor cores), as train.c computes
        cublasCheck(cublasSetMathMode(cublas_handle, CUBLAS_DEFAULT_MATH));
        atexit(gpu_free);
    }
}

// One of the two strides of an operand is 1 in every call the model makes, and that
// says whether cuBLAS reads it as stored ('N') or transposed ('T'), with the other
// stride as its leading dimension, which cuBLAS wants at least as large as the rows
// it stores (rows_n or rows_t). Returns 0 when neither reading works.
static int cublas_layout(size_t unit_for_n, size_t other, int rows_n, int rows_t, cublasOperation_t *op, size_t *ld) {
    if (unit_for_n == 1 && other >= (size_t)rows_n) { *op = CUBLAS_OP_N; *ld = other; return 1; }
    if (other == 1 && unit_for_n >= (size_t)rows_t) { *op = CUBLAS_OP_T; *ld = unit_for_n; return 1; }
    return 0;
}

// cuBLAS is column-major. A row-major c (M,N) is, read column-major, c^T (N,M), and
//   c^T = b^T (N,K) . a^T (K,M)
// so cuBLAS gets m = N, n = M, k = K, its first operand is b and its second is a.
// Read column-major, b^T's element (j,k) = b[j*b_cs + k*b_rs]: with b_cs = 1 that is b
// as stored with leading dimension b_rs ('N'); with b_rs = 1 it is the transpose of a
// (K,N) column-major matrix with leading dimension b_cs ('T'). The same for a^T.
static void gemm(float *c, size_t ldc, const float *a, size_t a_rs, size_t a_cs, const float *b, size_t b_rs,
                 size_t b_cs, int M, int N, int K, int accumulate) {
    if (M <= 0 || N <= 0) { return; }
    gemm_init();
    cublasOperation_t op_b, op_a;
    size_t ld_b, ld_a;
    // b^T is stored N x K ('N') or K x N ('T'); a^T is stored K x M ('N') or M x K ('T')
    int fits = cublas_layout(b_cs, b_rs, N, K, &op_b, &ld_b) && cublas_layout(a_cs, a_rs, K, M, &op_a, &ld_a);
    if (!gemm_tiled && fits && K > 0) {
        float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
        cublasCheck(cublasSgemm(cublas_handle, op_b, op_a, N, M, K, &alpha, b, (int)ld_b, a, (int)ld_a, &beta, c, (int)ldc));
        kernelCheck();
        return;
    }
    dim3 grid(blocks_for(N, TILE), blocks_for(M, TILE)), block(TILE, TILE);
    gemm_tiled_kernel<<<grid, block>>>(c, ldc, a, a_rs, a_cs, b, b_rs, b_cs, M, N, K, accumulate);
    kernelCheck();
}

// encoder: out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
// one thread per element (bt, i): train.c's three loops become the thread index
__global__ void encoder_forward_kernel(float *out, const int *inp, const float *wte, const float *wpe, int B, int T, int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * T * C) { return; }
    size_t bt = idx / C;
    int i = (int)(idx % C), t = (int)(bt % T);
    out[idx] = wte[(size_t)inp[bt] * C + i] + wpe[(size_t)t * C + i];
}

extern "C" void GPU(encoder_forward)(float *out, const int *inp, const float *wte, const float *wpe, int B, int T, int C) {
    size_t n = (size_t)B * T * C;
    encoder_forward_kernel<<<blocks_for(n, 256), 256>>>(out, inp, wte, wpe, B, T, C);
    kernelCheck();
}

// dwte[inp[b,t]] += dout[b,t] and dwpe[t] += dout[b,t]. Two positions may share a
// token, so one thread per channel i walks all positions in train.c's order: each
// element has one writer and the same sum order as the C loop.
__global__ void encoder_backward_kernel(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C) { return; }
    for (size_t bt = 0; bt < (size_t)B * T; bt++) {
        float d = dout[bt * C + i];
        dwte[(size_t)inp[bt] * C + i] += d;
        dwpe[(bt % T) * C + i] += d;
    }
}

extern "C" void GPU(encoder_backward)(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T, int C) {
    encoder_backward_kernel<<<blocks_for(C, 128), 128>>>(dwte, dwpe, dout, inp, B, T, C);
    kernelCheck();
}

// layernorm: out = (x - mean) * rstd * weight + bias, per row of C
// one thread per row (b,t); the loops over C stay inside, as in train.c
__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                         const float *bias, int N, int C) {
    int bt = blockIdx.x * blockDim.x + threadIdx.x;
    if (bt >= N) { return; }
    const float *x = inp + (size_t)bt * C;
    float *out_bt = out + (size_t)bt * C;
    float m = 0.0f;
    for (int i = 0; i < C; i++) { m += x[i]; }
    m /= C;
    float v = 0.0f;
    for (int i = 0; i < C; i++) { float xshift = x[i] - m; v += xshift * xshift; }
    v /= C;
    float s = 1.0f / sqrtf(v + 1e-5f);
    for (int i = 0; i < C; i++) { out_bt[i] = (s * (x[i] - m)) * weight[i] + bias[i]; }
    mean[bt] = m;
    rstd[bt] = s;
}

extern "C" void GPU(layernorm_forward)(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                       const float *bias, int B, int T, int C) {
    layernorm_forward_kernel<<<blocks_for((size_t)B * T, 128), 128>>>(out, mean, rstd, inp, weight, bias, B * T, C);
    kernelCheck();
}

// pass 1 of train.c's layernorm_backward: dinp, one thread per row
//   dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)),  dnorm = dout * weight
__global__ void layernorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *weight,
                                               const float *mean, const float *rstd, int N, int C) {
    int bt = blockIdx.x * blockDim.x + threadIdx.x;
    if (bt >= N) { return; }
    const float *dout_bt = dout + (size_t)bt * C, *x = inp + (size_t)bt * C;
    float *dinp_bt = dinp + (size_t)bt * C;
    float m = mean[bt], s = rstd[bt];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int i = 0; i < C; i++) {
        float norm = (x[i] - m) * s, dnorm = weight[i] * dout_bt[i];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
    for (int i = 0; i < C; i++) {
        float norm = (x[i] - m) * s, dnorm = weight[i] * dout_bt[i];
        dinp_bt[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
    }
}

// pass 2: dweight += sum over rows of dout * norm, dbias += sum of dout; one thread per
// channel, the sum over rows in train.c's order
__global__ void layernorm_backward_dweight_kernel(float *dweight, float *dbias, const float *dout, const float *inp,
                                                  const float *mean, const float *rstd, int N, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C) { return; }
    float dw = 0.0f, db = 0.0f;
    for (int bt = 0; bt < N; bt++) {
        float d = dout[(size_t)bt * C + i];
        db += d;
        dw += d * (inp[(size_t)bt * C + i] - mean[bt]) * rstd[bt];
    }
    dweight[i] += dw;
    dbias[i] += db;
}

extern "C" void GPU(layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                        const float *weight, const float *mean, const float *rstd, int B, int T, int C) {
    int N = B * T;
    layernorm_backward_dinp_kernel<<<blocks_for(N, 128), 128>>>(dinp, dout, inp, weight, mean, rstd, N, C);
    kernelCheck();
    layernorm_backward_dweight_kernel<<<blocks_for(C, 128), 128>>>(dweight, dbias, dout, inp, mean, rstd, N, C);
    kernelCheck();
}

// out[bt,o] += bias[o], one thread per element
__global__ void add_bias_kernel(float *out, const float *bias, int BT, int OC) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < (size_t)BT * OC) { out[idx] += bias[idx % OC]; }
}

// matmul: out (BT,OC) = inp (BT,C) . weight^T + bias, weight (OC,C)
// (train.c's path for a few rows is not needed here: the GPU gemm takes any shape)
extern "C" void GPU(matmul_forward)(float *out, const float *inp, const float *weight, const float *bias, int B, int T,
                                    int C, int OC) {
    int BT = B * T;
    // b[k][j] = weight[j*C + k]: the transpose is in the strides
    gemm(out, (size_t)OC, inp, (size_t)C, 1, weight, 1, (size_t)C, BT, OC, C, 0);
    if (bias) {
        add_bias_kernel<<<blocks_for((size_t)BT * OC, 256), 256>>>(out, bias, BT, OC);
        kernelCheck();
    }
}

// dbias[o] += sum over rows of dout[bt,o]: one thread per output channel, rows in order
__global__ void matmul_backward_bias_kernel(float *dbias, const float *dout, int BT, int OC) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) { return; }
    float sum = 0.0f;
    for (int bt = 0; bt < BT; bt++) { sum += dout[(size_t)bt * OC + o]; }
    dbias[o] += sum;
}

// dinp += dout . weight, dweight += dout^T . inp, dbias += column sums of dout
extern "C" void GPU(matmul_backward)(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                     const float *weight, int B, int T, int C, int OC) {
    int BT = B * T;
    gemm(dinp, (size_t)C, dout, (size_t)OC, 1, weight, (size_t)C, 1, BT, C, OC, 1);
    gemm(dweight, (size_t)C, dout, 1, (size_t)OC, inp, (size_t)C, 1, OC, C, BT, 1);
    if (dbias) {
        matmul_backward_bias_kernel<<<blocks_for(OC, 128), 128>>>(dbias, dout, BT, OC);
        kernelCheck();
    }
}

// attention: for each head, att[t,t2] = softmax over t2 <= t of q[t].k[t2] / sqrt(HS),
// out[t] = sum_t2 att[t,t2] v[t2]. One thread per (b, h, t), running the three passes
// of train.c's attention for one query row as loops.
// differs from train.c: there the passes are matrix products over blocks of rows.
__global__ void attention_forward_kernel(float *out, float *att, const float *inp, int B, int T, int C, int NH) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T) { return; }
    int t = (int)(idx % T), h = (int)(idx / T % NH), b = (int)(idx / T / NH);
    int HS = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
    const float *q = inp + ((size_t)b * T + t) * C3 + h * HS;
    float *att_bth = att + (((size_t)b * NH + h) * T + t) * T;
    // pass 1: scores and their maximum
    float maxval = -FLT_MAX;
    for (int t2 = 0; t2 <= t; t2++) {
        const float *k = inp + ((size_t)b * T + t2) * C3 + C + h * HS;
        float dot = 0.0f;
        for (int i = 0; i < HS; i++) { dot += q[i] * k[i]; }
        dot *= scale;
        att_bth[t2] = dot;
        if (dot > maxval) { maxval = dot; }
    }
    // pass 2: exponentiate and normalize; future positions get 0
    float sum = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) { att_bth[t2] = expf(att_bth[t2] - maxval); sum += att_bth[t2]; }
    for (int t2 = 0; t2 <= t; t2++) { att_bth[t2] /= sum; }
    for (int t2 = t + 1; t2 < T; t2++) { att_bth[t2] = 0.0f; }
    // pass 3: the weighted sum of the values
    float *out_bth = out + ((size_t)b * T + t) * C + h * HS;
    for (int i = 0; i < HS; i++) { out_bth[i] = 0.0f; }
    for (int t2 = 0; t2 <= t; t2++) {
        const float *v = inp + ((size_t)b * T + t2) * C3 + 2 * C + h * HS;
        for (int i = 0; i < HS; i++) { out_bth[i] += att_bth[t2] * v[i]; }
    }
}

extern "C" void GPU(attention_forward)(float *out, float *att, const float *inp, int B, int T, int C, int NH) {
    size_t n = (size_t)B * NH * T;
    attention_forward_kernel<<<blocks_for(n, 64), 64>>>(out, att, inp, B, T, C, NH);
    kernelCheck();
}

// Attention backward, part 1: one thread per query row (b, h, t).
//   datt[t,t2] = dout[t] . v[t2], then through the softmax:
//   dscores[t2] = att[t2] * (datt[t2] - sum_t3 att[t3] datt[t3])   (left in datt)
//   dq[t] += scale * sum_t2 dscores[t2] k[t2]
// differs from train.c: there one thread owns a whole (b,h) and does the passes as
// matrix products; here the sums into dk and dv, which rows share, wait for part 2.
__global__ void attention_backward_query_kernel(float *dinp, float *datt, const float *dout, const float *inp,
                                                const float *att, int B, int T, int C, int NH) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T) { return; }
    int t = (int)(idx % T), h = (int)(idx / T % NH), b = (int)(idx / T / NH);
    int HS = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
    const float *att_bth = att + (((size_t)b * NH + h) * T + t) * T;
    float *datt_bth = datt + (((size_t)b * NH + h) * T + t) * T;
    const float *dout_bth = dout + ((size_t)b * T + t) * C + h * HS;
    for (int t2 = 0; t2 <= t; t2++) {
        const float *v = inp + ((size_t)b * T + t2) * C3 + 2 * C + h * HS;
        float dot = 0.0f;
        for (int i = 0; i < HS; i++) { dot += dout_bth[i] * v[i]; }
        datt_bth[t2] = dot;
    }
    float weighted = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) { weighted += att_bth[t2] * datt_bth[t2]; }
    for (int t2 = 0; t2 <= t; t2++) { datt_bth[t2] = att_bth[t2] * (datt_bth[t2] - weighted); }
    float *dq = dinp + ((size_t)b * T + t) * C3 + h * HS;
    for (int t2 = 0; t2 <= t; t2++) {
        const float *k = inp + ((size_t)b * T + t2) * C3 + C + h * HS;
        float ds = datt_bth[t2] * scale;
        for (int i = 0; i < HS; i++) { dq[i] += ds * k[i]; }
    }
}

// Attention backward, part 2: one thread per key row (b, h, t2), summing over the
// queries t >= t2 that saw it, in increasing t:
//   dv[t2] += sum_t att[t,t2] dout[t]      dk[t2] += scale * sum_t dscores[t,t2] q[t]
__global__ void attention_backward_key_kernel(float *dinp, const float *datt, const float *dout, const float *inp,
                                              const float *att, int B, int T, int C, int NH) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T) { return; }
    int t2 = (int)(idx % T), h = (int)(idx / T % NH), b = (int)(idx / T / NH);
    int HS = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
    float *dk = dinp + ((size_t)b * T + t2) * C3 + C + h * HS;
    float *dv = dinp + ((size_t)b * T + t2) * C3 + 2 * C + h * HS;
    for (int t = t2; t < T; t++) {
        size_t row = ((size_t)b * NH + h) * T + t;
        float a = att[row * T + t2], ds = datt[row * T + t2] * scale;
        const float *dout_bth = dout + ((size_t)b * T + t) * C + h * HS;
        const float *q = inp + ((size_t)b * T + t) * C3 + h * HS;
        for (int i = 0; i < HS; i++) {
            dv[i] += a * dout_bth[i];
            dk[i] += ds * q[i];
        }
    }
}

extern "C" void GPU(attention_backward)(float *dinp, float *datt, const float *dout, const float *inp, const float *att,
                                        int B, int T, int C, int NH) {
    size_t n = (size_t)B * NH * T;
    attention_backward_query_kernel<<<blocks_for(n, 64), 64>>>(dinp, datt, dout, inp, att, B, T, C, NH);
    kernelCheck();
    attention_backward_key_kernel<<<blocks_for(n, 64), 64>>>(dinp, datt, dout, inp, att, B, T, C, NH);
    kernelCheck();
}

// attention of one new token against the KV cache: one thread per head h, running
// train.c's loop body for that head (the token's key and value are stored first, each
// thread its own head's slice, and each thread reads only its own head's slice)
__global__ void attention_forward_cached_kernel(float *out, float *att, float *k_cache, float *v_cache,
                                                const float *qkv, int pos, int C, int NH) {
    int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= NH) { return; }
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    for (int i = 0; i < HS; i++) {
        k_cache[(size_t)pos * C + h * HS + i] = qkv[C + h * HS + i];
        v_cache[(size_t)pos * C + h * HS + i] = qkv[2 * C + h * HS + i];
    }
    const float *q = qkv + h * HS;
    float *att_h = att + (size_t)h * (pos + 1);
    float maxval = -FLT_MAX, sum = 0.0f;
    for (int t2 = 0; t2 <= pos; t2++) {
        const float *k = k_cache + (size_t)t2 * C + h * HS;
        float dot = 0.0f;
        for (int i = 0; i < HS; i++) { dot += q[i] * k[i]; }
        att_h[t2] = dot * scale;
        if (att_h[t2] > maxval) { maxval = att_h[t2]; }
    }
    for (int t2 = 0; t2 <= pos; t2++) { att_h[t2] = expf(att_h[t2] - maxval); sum += att_h[t2]; }
    float *out_h = out + h * HS;
    for (int i = 0; i < HS; i++) { out_h[i] = 0.0f; }
    for (int t2 = 0; t2 <= pos; t2++) {
        const float *v = v_cache + (size_t)t2 * C + h * HS;
        float w = att_h[t2] / sum;
        for (int i = 0; i < HS; i++) { out_h[i] += w * v[i]; }
    }
}

extern "C" void GPU(attention_forward_cached)(float *out, float *att, float *k_cache, float *v_cache, const float *qkv,
                                              int pos, int C, int NH) {
    attention_forward_cached_kernel<<<1, NH>>>(out, att, k_cache, v_cache, qkv, pos, C, NH);
    kernelCheck();
}

// gelu (tanh approximation), tanh u written 1 - 2 / (e^(2u) + 1) as in train.c
#define GELU_SCALE 0.7978845608028654f // sqrt(2/pi)
__device__ float fast_tanh(float u) { return 1.0f - 2.0f / (expf(2.0f * u) + 1.0f); }

// one thread per element, for the four elementwise layers below
__global__ void gelu_forward_kernel(float *out, const float *inp, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    float x = inp[i];
    out[i] = 0.5f * x * (1.0f + fast_tanh(GELU_SCALE * (x + 0.044715f * x * x * x)));
}

extern "C" void GPU(gelu_forward)(float *out, const float *inp, size_t N) {
    if (N == 0) { return; }
    gelu_forward_kernel<<<blocks_for(N, 256), 256>>>(out, inp, N);
    kernelCheck();
}

// dout/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
__global__ void gelu_backward_kernel(float *dinp, const float *inp, const float *dout, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    float x = inp[i];
    float th = fast_tanh(GELU_SCALE * (x + 0.044715f * x * x * x));
    float sech2 = 1.0f - th * th;
    float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] += grad * dout[i];
}

extern "C" void GPU(gelu_backward)(float *dinp, const float *inp, const float *dout, size_t N) {
    if (N == 0) { return; }
    gelu_backward_kernel<<<blocks_for(N, 256), 256>>>(dinp, inp, dout, N);
    kernelCheck();
}

__global__ void residual_forward_kernel(float *out, const float *inp1, const float *inp2, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) { out[i] = inp1[i] + inp2[i]; }
}

extern "C" void GPU(residual_forward)(float *out, const float *inp1, const float *inp2, size_t N) {
    if (N == 0) { return; }
    residual_forward_kernel<<<blocks_for(N, 256), 256>>>(out, inp1, inp2, N);
    kernelCheck();
}

__global__ void residual_backward_kernel(float *dinp1, float *dinp2, const float *dout, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    dinp1[i] += dout[i];
    dinp2[i] += dout[i];
}

extern "C" void GPU(residual_backward)(float *dinp1, float *dinp2, const float *dout, size_t N) {
    if (N == 0) { return; }
    residual_backward_kernel<<<blocks_for(N, 256), 256>>>(dinp1, dinp2, dout, N);
    kernelCheck();
}

// softmax and cross-entropy: probs = softmax(logits), losses = -log probs[target]
// (0 where target < 0); one thread per row (b,t), train.c's loops over V inside
__global__ void crossentropy_softmax_forward_kernel(float *losses, float *probs, const float *logits, const int *targets,
                                                    int N, int V) {
    int bt = blockIdx.x * blockDim.x + threadIdx.x;
    if (bt >= N) { return; }
    const float *logits_bt = logits + (size_t)bt * V;
    float *probs_bt = probs + (size_t)bt * V;
    float maxval = -FLT_MAX;
    for (int i = 0; i < V; i++) { if (logits_bt[i] > maxval) { maxval = logits_bt[i]; } }
    float sum = 0.0f;
    for (int i = 0; i < V; i++) { probs_bt[i] = expf(logits_bt[i] - maxval); sum += probs_bt[i]; }
    for (int i = 0; i < V; i++) { probs_bt[i] /= sum; }
    losses[bt] = targets[bt] >= 0 ? -logf(probs_bt[targets[bt]]) : 0.0f;
}

extern "C" void GPU(crossentropy_softmax_forward)(float *losses, float *probs, const float *logits, const int *targets,
                                                  int B, int T, int V) {
    crossentropy_softmax_forward_kernel<<<blocks_for((size_t)B * T, 64), 64>>>(losses, probs, logits, targets, B * T, V);
    kernelCheck();
}

// dlogits[bt,i] += (probs[bt,i] - (i == target)) * dlosses[bt], rows with a target only;
// one thread per element
__global__ void crossentropy_softmax_backward_kernel(float *dlogits, const float *dlosses, const float *probs,
                                                     const int *targets, int N, int V) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)N * V) { return; }
    size_t bt = idx / V;
    int i = (int)(idx % V);
    if (targets[bt] < 0) { return; }
    dlogits[idx] += (probs[idx] - (i == targets[bt] ? 1.0f : 0.0f)) * dlosses[bt];
}

extern "C" void GPU(crossentropy_softmax_backward)(float *dlogits, const float *dlosses, const float *probs,
                                                   const int *targets, int B, int T, int V) {
    size_t n = (size_t)B * T * V;
    crossentropy_softmax_backward_kernel<<<blocks_for(n, 256), 256>>>(dlogits, dlosses, probs, targets, B * T, V);
    kernelCheck();
}

// ----------------------------------------------------------------------------
// 5. losses for the later stages: train.c's, on the host (they touch a few numbers
//    per sequence; the model's big tensors stay with the layers above)
// 6. the model: train.c's gpt_forward and gpt_backward call the launchers above

// what runs the layers, for the config table
extern "C" const char *GPU(device_name)(void) {
    static char name[320];
    int device;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDevice(&device));
    cudaCheck(cudaGetDeviceProperties(&prop, device));
    gemm_init();
    snprintf(name, sizeof(name), "%s (sm_%d%d), %s", prop.name, prop.major, prop.minor,
             gemm_tiled ? "tiled matmul" : "cuBLAS matmul");
    return name;
}

// ----------------------------------------------------------------------------
// 7. the optimizer: AdamW, learning-rate schedule, gradient clipping

// sum of x[i]^2 in double over fixed chunks of CHUNK elements, one thread per chunk,
// each with LANES interleaved partial sums; the host adds the chunks in order. Every
// addition is train.c's, in train.c's order, so the result has train.c's bits
#define CHUNK (1 << 16)
#define LANES 16
__global__ void sum_of_squares_kernel(double *partial, const float *x, size_t n) {
    size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c * CHUNK >= n) { return; }
    size_t i = c * CHUNK, end = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
    double lane[LANES] = {0}, sum = 0.0;
    for (; i + LANES <= end; i += LANES) {
        for (int j = 0; j < LANES; j++) { lane[j] += (double)x[i + j] * x[i + j]; }
    }
    for (int j = 0; j < LANES; j++) { sum += lane[j]; }
    for (; i < end; i++) { sum += (double)x[i] * x[i]; }
    partial[c] = sum;
}

extern "C" double GPU(sum_of_squares)(const float *x, size_t n) {
    if (n == 0) { return 0.0; }
    size_t chunks = (n + CHUNK - 1) / CHUNK;
    double *partial = (double *)GPU(model_calloc)(chunks, sizeof(double));
    sum_of_squares_kernel<<<blocks_for(chunks, 32), 32>>>(partial, x, n);
    kernelCheck();
    double total = 0.0;
    for (size_t c = 0; c < chunks; c++) { total += partial[c]; }
    GPU(model_free)(partial);
    return total;
}

__global__ void scale_floats_kernel(float *x, float coef, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { x[i] *= coef; }
}

extern "C" void GPU(scale_floats)(float *x, float coef, size_t n) {
    if (n == 0) { return; }
    scale_floats_kernel<<<blocks_for(n, 256), 256>>>(x, coef, n);
    kernelCheck();
}

// AdamW on one tensor, one thread per parameter; the bias corrections come from the
// host, computed as train.c computes them
__global__ void adamw_kernel(float *p, float *m, float *v, const float *g, float lr, float beta1, float beta2, float eps,
                             float decay, float bias_correction1, float bias_correction2_sqrt, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) { return; }
    p[i] *= 1.0f - lr * decay;
    m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
    v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
    p[i] -= (lr / bias_correction1) * m[i] / (sqrtf(v[i]) / bias_correction2_sqrt + eps);
}

extern "C" void GPU(adamw_tensor)(float *p, float *m, float *v, const float *g, float lr, float beta1, float beta2,
                                  float eps, float decay, int t, size_t n) {
    if (n == 0) { return; }
    float bias_correction1 = 1.0f - powf(beta1, (float)t);
    float bias_correction2_sqrt = sqrtf(1.0f - powf(beta2, (float)t));
    adamw_kernel<<<blocks_for(n, 256), 256>>>(p, m, v, g, lr, beta1, beta2, eps, decay, bias_correction1,
                                              bias_correction2_sqrt, n);
    kernelCheck();
}

// ----------------------------------------------------------------------------
// 8. sampling, 9. checkpoints, 10-13. the four stages, 14. sample and bench,
// 15. command line and main: train.c's, on the host, reading and writing the models'
// managed memory
