/*
train.cu: train.c's GPT, run on an NVIDIA GPU.

This file holds only what runs on the GPU: a kernel for each pass of each layer, the
optimizer's loops, the model's memory and the matrix products. Everything else
(tokenizer, JSONL readers, batches, gpt_forward and gpt_backward, the four stages,
checkpoints, flags, main) is train.c itself, compiled with TRAIN_GPU defined and
linked with this file: in that build the functions train.c marks REPLACED_ON_GPU are
weak symbols, and the linker takes the ones below instead. So the flags, defaults,
seed, log lines and checkpoints are the same in both builds by construction, and a
checkpoint written by one loads in the other.

Build and run (the Makefile does this):
    make run-gpu       the four stages on the GPU, with the same summary table as run-cpu
    make test-gpu      every kernel against its C function, then each stage against train.c
    make test-gpu-emu  the same tests with no GPU: this file built as C++ against
                       test/gpu_emu/, which runs the kernels on the CPU (doc/gpu.md)

Read it beside train.c. Each kernel sits directly above its launcher, and the launcher
has the name and arguments of the C function it replaces; a kernel adds _kernel (and
the pass, where a function has several). The kernels are ports of the C loops: the
outer loops become the thread index, a comment above each kernel says which, and the
inner loops and statements are train.c's, line for line, with its names and its
comments on the passes. Where a function calls matmul, the launcher calls it too: the
same matmul(c, a, b, M, N, K, flags), computed on the device (appendix A).
python3 test/gpu/pairs.py prints each C function beside its kernels, with the share of
its lines that the kernels repeat word for word.

Sections, train.c's (search for the banner titles); those marked * hold GPU code, the
others are train.c's, on the host:
   1. layers: forward and backward of each building block *
   2. losses for the later stages
   3. the model: GPT-2 parameters, activations, forward, backward * (the model's memory)
   4. the optimizer: AdamW, learning-rate schedule, gradient clipping, frozen embedding rows *
   5. sampling: temperature and top-k, generation with a KV cache
   6. the tokenizer: bytes <-> token ids (byte-level BPE)
   7. data: text -> batches of token ids
   8. settings: every flag, and each stage's defaults
   9. stage 1: pretraining
  10. stage 2: supervised fine-tuning
  11. stage 3: reward modeling
  12. stage 4: RLHF with PPO
  13. other commands: answer, score, sample
  14. main
  Appendix A. the matmul engine * (cuBLAS, or the tiled kernel)
  Appendix B. JSON and UTF-8
  Appendix C. files, checkpoints and the tokenizer's file format
  Appendix D. logs, curves and stage records
  Appendix E. bench
  Appendix F. the command line: flags, usage, the settings table
  Appendix G. utilities: checked libc calls, RNG, timer * (checked CUDA calls)
Notation and references: train.c's.

Differences from train.c (each place is marked "differs from train.c:"):
  - memory: the models and the KV cache live in CUDA managed memory, which the CPU
    and the GPU both address, so train.c's host code reads logits, losses and values
    as it always does; pages move between the two on demand.
  - every launcher waits for its kernel (cudaDeviceSynchronize) before returning, so
    the C code after it may read the result. Simple, and it gives up overlap.
  - matmul: cuBLAS by default (TRAIN_GEMM=tiled picks the readable tiled kernel, which
    is always compiled and tested). cuBLAS sums in an order of its own, so products
    agree with train.c's to rounding, not to the bit. The causal flags, promises that
    let train.c's engine skip work, are not used: the whole product is computed.
  - attention: where train.c loops over the heads (each (b,h), or each h with the KV
    cache) and calls matmul for each, one batched matmul does them all, and each pass
    between the products is one launch over all the heads.
  - where train.c's loop over rows is a sum into shared gradients (encoder backward,
    and the dweight, dbias sums of layernorm and matmul backward), a thread takes one
    channel and walks the rows in train.c's order, so each gradient element has one
    writer and no atomicAdd is needed. train.c's strips of 64 channels (COLS, for the
    CPU's cache lines) and blocks of 64 elements (GELU_BLOCK, for its vector exp) are
    1 here: neighbouring threads then read neighbouring floats.
  - exp, log, sqrt: CUDA's single-precision functions, within 2 ulp of libm's.
*/
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <float.h>
// exp, log and sqrt of a float are the float versions, as under train.c's tgmath.h
// differs from train.c: on the device they are CUDA's, within 2 ulp of libm's
#include <math.h>
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

// Appendix G, utilities: checked CUDA and cuBLAS calls (each names the caller's file
// and line, and what to try), and the number of blocks of a launch
static void cuda_check(cudaError_t err, const char *file, int line);
static void cublas_check(cublasStatus_t status, const char *file, int line);
static int blocks_for(size_t n, int threads);
#define cudaCheck(err) cuda_check(err, __FILE__, __LINE__)
#define cublasCheck(status) cublas_check(status, __FILE__, __LINE__)
// Every launcher ends here: a failed launch is reported at once, and the kernel has
// finished when the launcher returns.
// differs from train.c: the C loops are done when they return; a kernel runs on its own
// until waited for.
#define kernelCheck() do { cudaCheck(cudaGetLastError()); cudaCheck(cudaDeviceSynchronize()); } while (0)

// Appendix A, the matmul engine: train.c's matmul(c, a, b, M, N, K, flags), c (M,N) (+)=
// op(a) (M,K) . op(b) (K,N), with train.c's flags, on the device; matmul_batched does
// `batch` such products at once, product n at c + n*stride_c, a + n*stride_a, b + n*stride_b
enum { TRANSPOSE_A = 1, TRANSPOSE_B = 2, ACCUMULATE = 4, CAUSAL_OUT = 8, CAUSAL_A = 16 };
static void matmul(float *c, const float *a, const float *b, int M, int N, int K, int flags);
static void matmul_batched(float *c, const float *a, const float *b, int M, int N, int K, int flags, int batch,
                           size_t stride_c, size_t stride_a, size_t stride_b);

// ----------------------------------------------------------------------------
// 1. layers: forward and backward of each building block

// encoder: token embedding plus position embedding
//   out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
// out (B,T,C), inp (B,T) token ids, wte (V,C), wpe (maxT,C)
// one thread per (b,t) row: the loops over b and t become the thread index; the loop over C stays inside
__global__ void encoder_forward_kernel(float *out, const int *inp, const float *wte, const float *wpe, int T, int C) {
    int b = blockIdx.y, t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) { return; }
    float *out_bt = out + ((size_t)b * T + t) * C;
    const float *wte_ix = wte + (size_t)inp[b * T + t] * C, *wpe_t = wpe + (size_t)t * C;
    for (int i = 0; i < C; i++) { out_bt[i] = wte_ix[i] + wpe_t[i]; }
}

extern "C" void GPU(encoder_forward)(float *out, const int *inp, const float *wte, const float *wpe, int B, int T, int C) {
    encoder_forward_kernel<<<dim3(blocks_for(T, 64), B), 64>>>(out, inp, wte, wpe, T, C);
    kernelCheck();
}

// in the forward pass out = wte[ix] + wpe[t], so both receive dout unchanged.
// one thread per channel i; the loops over b and t stay inside, in train.c's order
// differs from train.c: the inner loop becomes the thread index, not the outer ones. Two
// positions may share a token, so threads over (b,t) would add into one row of dwte at
// once; a thread per channel is its elements' only writer, adding in train.c's order.
__global__ void encoder_backward_kernel(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C) { return; }
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *dout_bt = dout + ((size_t)b * T + t) * C;
            float *dwte_ix = dwte + (size_t)inp[b * T + t] * C, *dwpe_t = dwpe + (size_t)t * C;
            dwte_ix[i] += dout_bt[i];
            dwpe_t[i] += dout_bt[i];
        }
    }
}

extern "C" void GPU(encoder_backward)(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T, int C) {
    encoder_backward_kernel<<<blocks_for(C, 64), 64>>>(dwte, dwpe, dout, inp, B, T, C);
    kernelCheck();
}

// layernorm: normalize each row to zero mean and unit variance, then scale and shift
//   mean = sum(x)/C   var = sum((x-mean)^2)/C   rstd = 1/sqrt(var + 1e-5)
//   out = (x - mean) * rstd * weight + bias
// out, inp (B,T,C); mean, rstd (B,T) saved for backward; weight, bias (C)
// one thread per (b,t) row: the loop over bt becomes the thread index; the loops over C stay inside
__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                         const float *bias, int B, int T, int C) {
    int bt = blockIdx.x * blockDim.x + threadIdx.x;
    if (bt >= B * T) { return; }
    const float *x = inp + (size_t)bt * C;
    float m = 0.0f;
    for (int i = 0; i < C; i++) { m += x[i]; }
    m = m / C;
    float v = 0.0f;
    for (int i = 0; i < C; i++) {
        float xshift = x[i] - m;
        v += xshift * xshift;
    }
    float s = 1.0f / sqrt(v / C + 1e-5f);
    float *out_bt = out + (size_t)bt * C;
    for (int i = 0; i < C; i++) { out_bt[i] = (s * (x[i] - m)) * weight[i] + bias[i]; }
    mean[bt] = m;
    rstd[bt] = s;
}

extern "C" void GPU(layernorm_forward)(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                       const float *bias, int B, int T, int C) {
    layernorm_forward_kernel<<<blocks_for((size_t)B * T, 64), 64>>>(out, mean, rstd, inp, weight, bias, B, T, C);
    kernelCheck();
}

// in the forward pass out = norm * weight + bias, with norm = (x - mean) * rstd, so
//   dbias += dout, dweight += dout * norm, and with dnorm = dout * weight:
//   dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
// pass 1: dinp, one row (b,t) at a time
// one thread per (b,t) row: the loop over bt becomes the thread index; the loops over C stay inside
__global__ void layernorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *weight,
                                               const float *mean, const float *rstd, int B, int T, int C) {
    int bt = blockIdx.x * blockDim.x + threadIdx.x;
    if (bt >= B * T) { return; }
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

// differs from train.c: strips of COLS = 1 channel (train.c's are 64, so that a CPU
// thread reads whole cache lines of each row); here neighbouring threads read
// neighbouring channels, and a warp reads 32 of a row at once
enum { COLS = 1 };

// pass 2: dweight and dbias, sums over the rows (b,t) in order
// one thread per strip of COLS channels: the loop over i0 becomes the thread index; the
// loops over the rows and the strip stay inside
__global__ void layernorm_backward_dweight_kernel(float *dweight, float *dbias, const float *dout, const float *inp,
                                                  const float *mean, const float *rstd, int B, int T, int C) {
    int i0 = (blockIdx.x * blockDim.x + threadIdx.x) * COLS;
    if (i0 >= C) { return; }
    int n = C - i0 < COLS ? C - i0 : COLS;
    float dw[COLS] = {0}, db[COLS] = {0};
    for (int bt = 0; bt < B * T; bt++) {
        const float *d = dout + (size_t)bt * C + i0, *x = inp + (size_t)bt * C + i0;
        for (int i = 0; i < n; i++) {
            db[i] += d[i];
            dw[i] += d[i] * (x[i] - mean[bt]) * rstd[bt];
        }
    }
    for (int i = 0; i < n; i++) {
        dweight[i0 + i] += dw[i];
        dbias[i0 + i] += db[i];
    }
}

extern "C" void GPU(layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                        const float *weight, const float *mean, const float *rstd, int B, int T, int C) {
    // pass 1: dinp, one row (b,t) at a time
    layernorm_backward_dinp_kernel<<<blocks_for((size_t)B * T, 64), 64>>>(dinp, dout, inp, weight, mean, rstd, B, T, C);
    kernelCheck();
    // pass 2: dweight and dbias, sums over the rows (b,t) in order
    layernorm_backward_dweight_kernel<<<blocks_for((C + COLS - 1) / COLS, 64), 64>>>(dweight, dbias, dout, inp, mean,
                                                                                     rstd, B, T, C);
    kernelCheck();
}

// matmul_reference, the loops that define matmul: train.c's, on the host (the tests hold
// this file's matmul, appendix A, to it)

// matmul_forward: a linear layer
//   out[b,t,o] = bias[o] + sum_i inp[b,t,i] * weight[o,i]
// out (B,T,OC), inp (B,T,C), weight (OC,C), bias (OC) or NULL
// the bias: one thread per row bt: the loop over bt becomes the thread index; the loop over OC stays inside
__global__ void matmul_forward_bias_kernel(float *out, const float *bias, int BT, int OC) {
    int bt = blockIdx.x * blockDim.x + threadIdx.x;
    if (bt >= BT) { return; }
    for (int o = 0; o < OC; o++) { out[(size_t)bt * OC + o] += bias[o]; }
}

extern "C" void GPU(matmul_forward)(float *out, const float *inp, const float *weight, const float *bias, int B, int T,
                                    int C, int OC) {
    int BT = B * T;
    // out (BT,OC) = inp (BT,C) . weight^T (C,OC)
    matmul(out, inp, weight, BT, OC, C, TRANSPOSE_B);
    if (bias) {
        matmul_forward_bias_kernel<<<blocks_for(BT, 64), 64>>>(out, bias, BT, OC);
        kernelCheck();
    }
}

// in the forward pass out = inp . weight^T + bias, so
//   dinp += dout . weight        (BT,OC) . (OC,C)
//   dweight += dout^T . inp      (OC,BT) . (BT,C)
//   dbias += sum over (b,t) of dout
// dbias: one thread per strip of COLS channels (1 here, see COLS above): the loop over o0
// becomes the thread index; the loops over the rows and the strip stay inside
__global__ void matmul_backward_bias_kernel(float *dbias, const float *dout, int BT, int OC) {
    int o0 = (blockIdx.x * blockDim.x + threadIdx.x) * COLS;
    if (o0 >= OC) { return; }
    int n = OC - o0 < COLS ? OC - o0 : COLS;
    float sum[COLS] = {0};
    for (int bt = 0; bt < BT; bt++) {
        for (int o = 0; o < n; o++) { sum[o] += dout[(size_t)bt * OC + o0 + o]; }
    }
    for (int o = 0; o < n; o++) { dbias[o0 + o] += sum[o]; }
}

extern "C" void GPU(matmul_backward)(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                     const float *weight, int B, int T, int C, int OC) {
    int BT = B * T;
    matmul(dinp, dout, weight, BT, C, OC, ACCUMULATE);
    matmul(dweight, dout, inp, OC, C, BT, TRANSPOSE_A | ACCUMULATE);
    if (dbias) {
        matmul_backward_bias_kernel<<<blocks_for((OC + COLS - 1) / COLS, 64), 64>>>(dbias, dout, BT, OC);
        kernelCheck();
    }
}

// attention: causal multi-head self-attention. With q, k, v the (T,HS) rows of head h
// in sequence b,
//   att = softmax(q k^T / sqrt(HS)), each row t over t2 <= t only (0 where t2 > t)
//   y = att v
// and out[b,t] holds the y of every head side by side.
// inp (B,T,3C): q, k, v side by side, head h at channels h*HS .. h*HS+HS-1 of each;
// out (B,T,C); heads (4,B,NH,T,HS): q, k, v and y split into heads, each (b,h) a
// contiguous (T,HS) block (saved for backward); att (B,NH,T,T) the probabilities
// (saved for backward). Ref: Vaswani et al. 2017, arXiv:1706.03762
// Five passes, as in train.c: three kernels and two calls of matmul_batched.

// pass 1: split into heads, q[b,h,t,i] = inp[b,t,h*HS+i] (k and v: C and 2C further on)
// one thread per (b,t): the loops over b and t become the thread index; the loops over h and i stay inside
__global__ void attention_forward_split_kernel(float *q, float *k, float *v, const float *inp, int T, int C, int NH) {
    int b = blockIdx.y, t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) { return; }
    int HS = C / NH;
    const float *inp_bt = inp + ((size_t)b * T + t) * 3 * C;
    for (int h = 0; h < NH; h++) {
        size_t row = (((size_t)b * NH + h) * T + t) * HS;
        for (int i = 0; i < HS; i++) {
            q[row + i] = inp_bt[h * HS + i];
            k[row + i] = inp_bt[C + h * HS + i];
            v[row + i] = inp_bt[2 * C + h * HS + i];
        }
    }
}

// x (n,) <- softmax(scale * x), in place: train.c's, run by the calling thread
__device__ void scaled_softmax(float *x, int n, float scale) {
    float maxval = -FLT_MAX, sum = 0.0f;
    for (int i = 0; i < n; i++) { x[i] *= scale; }
    for (int i = 0; i < n; i++) { maxval = x[i] > maxval ? x[i] : maxval; }
    for (int i = 0; i < n; i++) { x[i] = exp(x[i] - maxval); }
    for (int i = 0; i < n; i++) { sum += x[i]; }
    for (int i = 0; i < n; i++) { x[i] /= sum; }
}

// pass 3: each row t, scaled by 1/sqrt(HS), through a softmax over t2 <= t
// one thread per row (b,h,t): the loops over b, h and t become the thread index; the loops over t2 stay inside
__global__ void attention_forward_softmax_kernel(float *att, int T, int C, int NH) {
    int b = blockIdx.z, h = blockIdx.y, t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) { return; }
    int HS = C / NH;
    float scale = 1.0f / sqrt((float)HS);
    size_t bh = (size_t)b * NH + h;
    float *att_bh = att + bh * T * T;
    float *row = att_bh + (size_t)t * T;
    scaled_softmax(row, t + 1, scale);
    for (int t2 = t + 1; t2 < T; t2++) { row[t2] = 0.0f; } // the future
}

// pass 5: merge the heads, out[b,t,h*HS+i] = y[b,h,t,i]
// one thread per (b,t): the loops over b and t become the thread index; the loops over h and i stay inside
__global__ void attention_forward_merge_kernel(float *out, const float *y, int T, int C, int NH) {
    int b = blockIdx.y, t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) { return; }
    int HS = C / NH;
    float *out_bt = out + ((size_t)b * T + t) * C;
    for (int h = 0; h < NH; h++) {
        const float *y_bht = y + (((size_t)b * NH + h) * T + t) * HS;
        for (int i = 0; i < HS; i++) { out_bt[h * HS + i] = y_bht[i]; }
    }
}

extern "C" void GPU(attention_forward)(float *out, float *heads, float *att, const float *inp, int B, int T, int C,
                                       int NH) {
    int HS = C / NH;
    size_t BTC = (size_t)B * T * C;
    float *q = heads, *k = heads + BTC, *v = heads + 2 * BTC, *y = heads + 3 * BTC;
    dim3 threads_bt(blocks_for(T, 64), B), threads_bht(blocks_for(T, 64), NH, B);
    // from one (b,h) to the next: a (T,T) block of att, a (T,HS) block of q, k, v and y
    size_t TT = (size_t)T * T, THS = (size_t)T * HS;
    // pass 1: split into heads, q[b,h,t,i] = inp[b,t,h*HS+i] (k and v: C and 2C further on)
    attention_forward_split_kernel<<<threads_bt, 64>>>(q, k, v, inp, T, C, NH);
    kernelCheck();
    // differs from train.c: there a loop over (b,h) calls matmul for each pass 2 and 4 and
    // runs pass 3 between them; here each pass is one launch over all (b,h)
    // pass 2: the scores q k^T (T,T), wanted only where t2 <= t
    matmul_batched(att, q, k, T, T, HS, TRANSPOSE_B | CAUSAL_OUT, B * NH, TT, THS, THS);
    // pass 3: each row t, scaled by 1/sqrt(HS), through a softmax over t2 <= t
    attention_forward_softmax_kernel<<<threads_bht, 64>>>(att, T, C, NH);
    kernelCheck();
    // pass 4: y (T,HS) = att v, where att is zero above the diagonal
    matmul_batched(y, att, v, T, HS, T, CAUSAL_A, B * NH, THS, TT, THS);
    // pass 5: merge the heads, out[b,t,h*HS+i] = y[b,h,t,i]
    attention_forward_merge_kernel<<<threads_bt, 64>>>(out, y, T, C, NH);
    kernelCheck();
}

// Backward through the five passes above, in reverse. dheads (4,B,NH,T,HS) receives
// dq, dk, dv and dy (zeroed by the caller, as every gradient); datt (B,NH,T,T) is
// scratch that ends up holding the gradient of the scores.

// pass 5 merged the heads, so dy[b,h,t,i] += dout[b,t,h*HS+i]
// one thread per (b,t): the loops over b and t become the thread index; the loops over h and i stay inside
__global__ void attention_backward_split_kernel(float *dy, const float *dout, int T, int C, int NH) {
    int b = blockIdx.y, t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) { return; }
    int HS = C / NH;
    const float *dout_bt = dout + ((size_t)b * T + t) * C;
    for (int h = 0; h < NH; h++) {
        float *dy_bht = dy + (((size_t)b * NH + h) * T + t) * HS;
        for (int i = 0; i < HS; i++) { dy_bht[i] += dout_bt[h * HS + i]; }
    }
}

// pass 3 was att = softmax(scale * scores) along each row, so with the scale folded in
//   dscores[t2] = scale * att[t2] * (datt[t2] - sum_t3 att[t3] * datt[t3]),  0 above the diagonal
// one thread per row (b,h,t): the loops over b, h and t become the thread index; the loops over t2 stay inside
__global__ void attention_backward_softmax_kernel(float *datt, const float *att, int T, int C, int NH) {
    int b = blockIdx.z, h = blockIdx.y, t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) { return; }
    int HS = C / NH;
    float scale = 1.0f / sqrt((float)HS);
    size_t bh = (size_t)b * NH + h;
    const float *att_bh = att + bh * T * T;
    float *datt_bh = datt + bh * T * T;
    const float *att_row = att_bh + (size_t)t * T;
    float *row = datt_bh + (size_t)t * T, weighted = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) { weighted += att_row[t2] * row[t2]; }
    for (int t2 = 0; t2 <= t; t2++) { row[t2] = scale * att_row[t2] * (row[t2] - weighted); }
    for (int t2 = t + 1; t2 < T; t2++) { row[t2] = 0.0f; }
}

// pass 1 split inp into heads, so dinp[b,t,h*HS+i] += dq[b,h,t,i] (dk and dv: C and 2C further on)
// one thread per (b,t): the loops over b and t become the thread index; the loops over h and i stay inside
__global__ void attention_backward_merge_kernel(float *dinp, const float *dq, const float *dk, const float *dv, int T,
                                                int C, int NH) {
    int b = blockIdx.y, t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) { return; }
    int HS = C / NH;
    float *dinp_bt = dinp + ((size_t)b * T + t) * 3 * C;
    for (int h = 0; h < NH; h++) {
        size_t row = (((size_t)b * NH + h) * T + t) * HS;
        for (int i = 0; i < HS; i++) {
            dinp_bt[h * HS + i] += dq[row + i];
            dinp_bt[C + h * HS + i] += dk[row + i];
            dinp_bt[2 * C + h * HS + i] += dv[row + i];
        }
    }
}

extern "C" void GPU(attention_backward)(float *dinp, float *dheads, float *datt, const float *dout, const float *heads,
                                        const float *att, int B, int T, int C, int NH) {
    int HS = C / NH;
    size_t BTC = (size_t)B * T * C;
    const float *q = heads, *k = heads + BTC, *v = heads + 2 * BTC;
    float *dq = dheads, *dk = dheads + BTC, *dv = dheads + 2 * BTC, *dy = dheads + 3 * BTC;
    dim3 threads_bt(blocks_for(T, 64), B), threads_bht(blocks_for(T, 64), NH, B);
    // from one (b,h) to the next: a (T,T) block of att and datt, a (T,HS) block of the heads
    size_t TT = (size_t)T * T, THS = (size_t)T * HS;
    // pass 5 merged the heads, so dy[b,h,t,i] += dout[b,t,h*HS+i]
    attention_backward_split_kernel<<<threads_bt, 64>>>(dy, dout, T, C, NH);
    kernelCheck();
    // differs from train.c: there a loop over (b,h) runs the three passes below for each;
    // here each product and the softmax are one launch over all (b,h)
    // pass 4 was y = att v, so
    //   datt = dy v^T    (T,HS) . (HS,T), wanted only where t2 <= t
    //   dv += att^T dy   (T,T) . (T,HS)
    matmul_batched(datt, dy, v, T, T, HS, TRANSPOSE_B | CAUSAL_OUT, B * NH, TT, THS, THS);
    matmul_batched(dv, att, dy, T, HS, T, TRANSPOSE_A | CAUSAL_A | ACCUMULATE, B * NH, THS, TT, THS);
    // pass 3 was att = softmax(scale * scores) along each row, so with the scale folded in
    //   dscores[t2] = scale * att[t2] * (datt[t2] - sum_t3 att[t3] * datt[t3]),  0 above the diagonal
    attention_backward_softmax_kernel<<<threads_bht, 64>>>(datt, att, T, C, NH);
    kernelCheck();
    // pass 2 was scores = q k^T, so
    //   dq += dscores k     (T,T) . (T,HS)
    //   dk += dscores^T q   (T,T) . (T,HS)
    matmul_batched(dq, datt, k, T, HS, T, CAUSAL_A | ACCUMULATE, B * NH, THS, TT, THS);
    matmul_batched(dk, datt, q, T, HS, T, TRANSPOSE_A | CAUSAL_A | ACCUMULATE, B * NH, THS, TT, THS);
    // pass 1 split inp into heads, so dinp[b,t,h*HS+i] += dq[b,h,t,i] (dk and dv: C and 2C further on)
    attention_backward_merge_kernel<<<threads_bt, 64>>>(dinp, dq, dk, dv, T, C, NH);
    kernelCheck();
}

// attention of one new token at position pos against the KV cache (generation): the
// five passes of attention_forward for the last query row only, with the keys and
// values of positions 0..pos-1 kept in the cache from earlier tokens. For each head h,
//   att = softmax(q k^T / sqrt(HS)) over t2 <= pos,   out[h*HS ..] = att v
// out (C); att (NH, pos+1) scratch; k_cache, v_cache (NH, maxT, HS) this layer's keys
// and values, head by head; qkv (3C) of this token

// pass 1: this token's key and value join the cache, at row pos of head h
// one thread per head h: the loop over h becomes the thread index; the loop over i stays inside
__global__ void attention_forward_cached_store_kernel(float *k_cache, float *v_cache, const float *qkv, int pos,
                                                      int maxT, int C, int NH) {
    int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= NH) { return; }
    int HS = C / NH;
    float *k = k_cache + (size_t)h * maxT * HS, *v = v_cache + (size_t)h * maxT * HS;
    for (int i = 0; i < HS; i++) {
        k[(size_t)pos * HS + i] = qkv[C + h * HS + i];
        v[(size_t)pos * HS + i] = qkv[2 * C + h * HS + i];
    }
}

// pass 3: scaled by 1/sqrt(HS), through a softmax
// one thread per head h: the loop over h becomes the thread index; the loops over t2 stay inside
__global__ void attention_forward_cached_softmax_kernel(float *att, int pos, int C, int NH) {
    int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= NH) { return; }
    int HS = C / NH;
    float scale = 1.0f / sqrt((float)HS);
    float *att_h = att + (size_t)h * (pos + 1);
    scaled_softmax(att_h, pos + 1, scale);
}

extern "C" void GPU(attention_forward_cached)(float *out, float *att, float *k_cache, float *v_cache, const float *qkv,
                                              int pos, int maxT, int C, int NH) {
    int HS = C / NH;
    // differs from train.c: there a loop over h runs the four passes for each head; here
    // each pass is one launch over all heads. From one head to the next: q moves HS
    // floats, k and v a (maxT,HS) block, att_h pos+1 scores, and out HS floats.
    // pass 1: this token's key and value join the cache, at row pos of head h
    attention_forward_cached_store_kernel<<<blocks_for(NH, 32), 32>>>(k_cache, v_cache, qkv, pos, maxT, C, NH);
    kernelCheck();
    // pass 2: the scores q k^T (1, pos+1)
    matmul_batched(att, qkv, k_cache, 1, pos + 1, HS, TRANSPOSE_B, NH, (size_t)pos + 1, HS, (size_t)maxT * HS);
    // pass 3: scaled by 1/sqrt(HS), through a softmax
    attention_forward_cached_softmax_kernel<<<blocks_for(NH, 32), 32>>>(att, pos, C, NH);
    kernelCheck();
    // pass 4: out for head h (1, HS) = att v
    matmul_batched(out, att, v_cache, 1, HS, pos + 1, 0, NH, HS, (size_t)pos + 1, (size_t)maxT * HS);
}

// gelu, the tanh approximation used by GPT-2 (Ref: GELU)
//   out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// out, inp (N,)
#define GELU_SCALE 0.7978845608028654f // sqrt(2/pi)

// tanh u = 1 - 2 / (e^(2u) + 1), as in train.c
__device__ float fast_tanh(float u) { return 1.0f - 2.0f / (exp(2.0f * u) + 1.0f); }

// differs from train.c: blocks of GELU_BLOCK = 1 element (train.c's are 64, so that which
// elements get the vector exp does not depend on the thread count; here every exp is the
// same function)
#define GELU_BLOCK 1

// one thread per block of GELU_BLOCK elements: the loop over i0 becomes the thread index; the loop over i stays inside
__global__ void gelu_forward_kernel(float *out, const float *inp, size_t N) {
    size_t i0 = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * GELU_BLOCK;
    if (i0 >= N) { return; }
    size_t i1 = i0 + GELU_BLOCK < N ? i0 + GELU_BLOCK : N;
    for (size_t i = i0; i < i1; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + fast_tanh(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

extern "C" void GPU(gelu_forward)(float *out, const float *inp, size_t N) {
    if (N == 0) { return; }
    gelu_forward_kernel<<<blocks_for((N + GELU_BLOCK - 1) / GELU_BLOCK, 256), 256>>>(out, inp, N);
    kernelCheck();
}

// with u = sqrt(2/pi) (x + 0.044715 x^3), out = 0.5 x (1 + tanh u), so
//   dout/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
// one thread per block of GELU_BLOCK elements: the loop over i0 becomes the thread index; the loop over i stays inside
__global__ void gelu_backward_kernel(float *dinp, const float *inp, const float *dout, size_t N) {
    size_t i0 = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * GELU_BLOCK;
    if (i0 >= N) { return; }
    size_t i1 = i0 + GELU_BLOCK < N ? i0 + GELU_BLOCK : N;
    for (size_t i = i0; i < i1; i++) {
        float x = inp[i];
        float th = fast_tanh(GELU_SCALE * (x + 0.044715f * x * x * x));
        float sech2 = 1.0f - th * th;
        float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += grad * dout[i];
    }
}

extern "C" void GPU(gelu_backward)(float *dinp, const float *inp, const float *dout, size_t N) {
    if (N == 0) { return; }
    gelu_backward_kernel<<<blocks_for((N + GELU_BLOCK - 1) / GELU_BLOCK, 256), 256>>>(dinp, inp, dout, N);
    kernelCheck();
}

// residual: out = inp1 + inp2, all (N,); backward passes dout to both
// one thread per element: the loop over i becomes the thread index
__global__ void residual_forward_kernel(float *out, const float *inp1, const float *inp2, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    out[i] = inp1[i] + inp2[i];
}

extern "C" void GPU(residual_forward)(float *out, const float *inp1, const float *inp2, size_t N) {
    if (N == 0) { return; }
    residual_forward_kernel<<<blocks_for(N, 256), 256>>>(out, inp1, inp2, N);
    kernelCheck();
}

// one thread per element: the loop over i becomes the thread index
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

// softmax and cross-entropy, fused
//   probs = softmax(logits)   losses[b,t] = -log probs[b,t,targets[b,t]]
// A target < 0 marks a position that takes no loss (its loss is 0): SFT uses this
// to leave prompt and padding tokens out. probs, logits (B,T,V); losses, targets (B,T)
// one thread per (b,t) row: the loop over bt becomes the thread index; the loops over V stay inside
__global__ void crossentropy_softmax_forward_kernel(float *losses, float *probs, const float *logits, const int *targets,
                                                    int B, int T, int V) {
    int bt = blockIdx.x * blockDim.x + threadIdx.x;
    if (bt >= B * T) { return; }
    const float *logits_bt = logits + (size_t)bt * V;
    float *probs_bt = probs + (size_t)bt * V;
    float maxval = -FLT_MAX, sum = 0.0f;
    for (int i = 0; i < V; i++) { maxval = logits_bt[i] > maxval ? logits_bt[i] : maxval; }
    for (int i = 0; i < V; i++) { probs_bt[i] = exp(logits_bt[i] - maxval); }
    for (int i = 0; i < V; i++) { sum += probs_bt[i]; }
    for (int i = 0; i < V; i++) { probs_bt[i] /= sum; }
    losses[bt] = targets[bt] >= 0 ? -log(probs_bt[targets[bt]]) : 0.0f;
}

extern "C" void GPU(crossentropy_softmax_forward)(float *losses, float *probs, const float *logits, const int *targets,
                                                  int B, int T, int V) {
    crossentropy_softmax_forward_kernel<<<blocks_for((size_t)B * T, 64), 64>>>(losses, probs, logits, targets, B, T, V);
    kernelCheck();
}

// with loss = -log softmax(logits)[target], dloss/dlogits[i] = probs[i] - (i == target)
// dlosses (B,T): the weight of each position's loss in the total (0 where target < 0)
// one thread per (b,t) row: the loop over bt becomes the thread index; the loop over V stays inside
__global__ void crossentropy_softmax_backward_kernel(float *dlogits, const float *dlosses, const float *probs,
                                                     const int *targets, int B, int T, int V) {
    int bt = blockIdx.x * blockDim.x + threadIdx.x;
    if (bt >= B * T) { return; }
    if (targets[bt] < 0) { return; }
    float *dlogits_bt = dlogits + (size_t)bt * V;
    const float *probs_bt = probs + (size_t)bt * V;
    float d = dlosses[bt];
    for (int i = 0; i < V; i++) { dlogits_bt[i] += (probs_bt[i] - (i == targets[bt] ? 1.0f : 0.0f)) * d; }
}

extern "C" void GPU(crossentropy_softmax_backward)(float *dlogits, const float *dlosses, const float *probs,
                                                   const int *targets, int B, int T, int V) {
    crossentropy_softmax_backward_kernel<<<blocks_for((size_t)B * T, 64), 64>>>(dlogits, dlosses, probs, targets, B, T,
                                                                                 V);
    kernelCheck();
}

// ----------------------------------------------------------------------------
// 2. losses for the later stages: train.c's, on the host (they touch a few numbers per
//    sequence; the model's big tensors stay with the layers above)

// ----------------------------------------------------------------------------
// 3. the model: GPT-2 parameters, activations, forward, backward
// train.c's gpt_forward and gpt_backward call the launchers above; here, only the
// memory their tensors live in.

// Memory of the models and the KV cache, zeroed: all that the layers read and write.
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

// x = 0, x (n,)
extern "C" void GPU(zero_floats)(float *x, size_t n) {
    cudaCheck(cudaMemset(x, 0, n * sizeof(float)));
    cudaCheck(cudaDeviceSynchronize());
}

// ----------------------------------------------------------------------------
// 4. the optimizer: AdamW, learning-rate schedule, gradient clipping, frozen embedding rows
// lr_schedule, gpt_clip_grad_norm and the frozen rows are train.c's, on the host; the
// loops over all parameters are here.

// sum of x[i]^2 over x (n,), in double. It runs over fixed chunks, added in order:
// the same bits for any number of threads. Within a chunk, LANES interleaved partial sums.
// (train.c's enum, shared here by the kernel and its launcher)
enum { CHUNK = 1 << 16, LANES = 16 };

// one thread per chunk: the loop over c becomes the thread index; the loops within a chunk
// stay inside. Every addition is train.c's, in train.c's order, so the result has its bits.
__global__ void sum_of_squares_kernel(double *partial, const float *x, size_t n, size_t chunks) {
    size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= chunks) { return; }
    double lane[LANES] = {0}, sum = 0.0;
    size_t i = c * CHUNK, end = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
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
    sum_of_squares_kernel<<<blocks_for(chunks, 32), 32>>>(partial, x, n, chunks);
    kernelCheck();
    double total = 0.0;
    for (size_t c = 0; c < chunks; c++) { total += partial[c]; }
    GPU(model_free)(partial);
    return total;
}

// x = x * coef, x (n,)
// one thread per element: the loop over i becomes the thread index
__global__ void scale_floats_kernel(float *x, float coef, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) { return; }
    x[i] *= coef;
}

extern "C" void GPU(scale_floats)(float *x, float coef, size_t n) {
    if (n == 0) { return; }
    scale_floats_kernel<<<blocks_for(n, 256), 256>>>(x, coef, n);
    kernelCheck();
}

// AdamW on one tensor, step t (1-based), in the order torch.optim.AdamW computes it:
//   p = p * (1 - lr * decay)                      decoupled weight decay
//   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// p, m, v, g (n,): parameters, the two moments, gradients
// one thread per parameter: the loop over i becomes the thread index
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
// 5. sampling: temperature and top-k, generation with a KV cache: train.c's, on the host
//    (the KV cache is model memory, section 3; its attention is attention_forward_cached)
// 6. the tokenizer: bytes <-> token ids (byte-level BPE): train.c's, on the host
// 7. data: text -> batches of token ids: train.c's, on the host
// 8. settings: every flag, and each stage's defaults: train.c's, on the host
// 9. stage 1: pretraining: train.c's, on the host
// 10. stage 2: supervised fine-tuning: train.c's, on the host
// 11. stage 3: reward modeling: train.c's, on the host
// 12. stage 4: RLHF with PPO: train.c's, on the host
// 13. other commands: answer, score, sample: train.c's, on the host
// 14. main: train.c's, on the host

// ----------------------------------------------------------------------------
// Appendix A. the matmul engine

// matmul(c, a, b, M, N, K, flags), as train.c defines it (matmul_reference):
//   c (M,N) = op(a) (M,K) . op(b) (K,N),   c[i][j] = sum_k op(a)[i][k] op(b)[k][j]
// op(a) is a (M,K), or with TRANSPOSE_A the transpose of a stored (K,M); op(b) is b
// (K,N), or with TRANSPOSE_B the transpose of b stored (N,K); with ACCUMULATE the
// product is added to c. All row-major. matmul_batched computes `batch` of them at
// once, product n at c + n*stride_c from a + n*stride_a and b + n*stride_b.
// differs from train.c: two paths compute it, cuBLAS (the default) and a tiled kernel
// (TRAIN_GEMM=tiled). cuBLAS sums in an order of its own, and neither follows train.c's
// engine everywhere, so results agree with train.c's to rounding. CAUSAL_OUT and CAUSAL_A, promises that let train.c's engine skip
// work, are not used: the whole product is computed (where c is not wanted, the caller
// overwrites it; where a is zero, its products add zeros).

// The readable path (TRAIN_GEMM=tiled): matmul_reference's loops over i and j become the
// thread index, one thread per element of c and one block of TILE x TILE threads per
// tile of c (and blockIdx.z the product of a batch). Its loop over k runs in steps of
// TILE: each step, the block copies a TILE x TILE piece of op(a) and of op(b) into shared
// memory (each thread one element of each, read as matmul_reference reads it), and every
// thread then reads TILE values of a's row and b's column from there instead of from
// global memory. The sum runs over k in order, as in matmul_reference.
#define TILE 16
__global__ void matmul_tiled_kernel(float *c, const float *a, const float *b, int M, int N, int K, int flags,
                                    size_t stride_c, size_t stride_a, size_t stride_b) {
    __shared__ float a_tile[TILE][TILE], b_tile[TILE][TILE];
    int i = blockIdx.y * TILE + threadIdx.y, j = blockIdx.x * TILE + threadIdx.x;
    c += blockIdx.z * stride_c, a += blockIdx.z * stride_a, b += blockIdx.z * stride_b;
    float sum = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        // this thread's element of each tile, op(a)[i][k] and op(b)[k][j] read as
        // matmul_reference reads them (0 past the edges, where it adds nothing)
        int k = k0 + threadIdx.x;
        a_tile[threadIdx.y][threadIdx.x] =
            i >= M || k >= K ? 0.0f : flags & TRANSPOSE_A ? a[(size_t)k * M + i] : a[(size_t)i * K + k];
        k = k0 + threadIdx.y;
        b_tile[threadIdx.y][threadIdx.x] =
            k >= K || j >= N ? 0.0f : flags & TRANSPOSE_B ? b[(size_t)j * K + k] : b[(size_t)k * N + j];
        __syncthreads();
        for (int kk = 0; kk < TILE; kk++) { sum += a_tile[threadIdx.y][kk] * b_tile[kk][threadIdx.x]; }
        __syncthreads(); // the tiles are overwritten next step
    }
    if (i < M && j < N) {
        float *c_ij = c + (size_t)i * N + j;
        *c_ij = flags & ACCUMULATE ? *c_ij + sum : sum;
    }
}

static cublasHandle_t cublas_handle = NULL;
static int matmul_tiled = -1; // 1: the tiled kernel; 0: cuBLAS; -1: not decided yet (TRAIN_GEMM)

static void matmul_free(void) {
    if (cublas_handle) { cublasCheck(cublasDestroy(cublas_handle)); cublas_handle = NULL; }
}

// picks the path on first use (TRAIN_GEMM=tiled for the tiled kernel) and sets up cuBLAS
static void matmul_init(void) {
    if (matmul_tiled < 0) {
        const char *choice = getenv("TRAIN_GEMM");
        matmul_tiled = choice != NULL && !strcmp(choice, "tiled");
    }
    if (!matmul_tiled && cublas_handle == NULL) {
        cublasCheck(cublasCreate(&cublas_handle));
        // plain fp32 (no TF32 tensor cores), as train.c computes
        cublasCheck(cublasSetMathMode(cublas_handle, CUBLAS_DEFAULT_MATH));
        atexit(matmul_free);
    }
}

// The cuBLAS path. cuBLAS is column-major: a row-major array (R,S) is, read column-major,
// its transpose (S,R), with leading dimension S. So row-major c (M,N) is column-major
// c^T (N,M), ldc = N, and since c = op(a) op(b),
//   c^T (N,M) = op(b)^T (N,K) . op(a)^T (K,M)
// cuBLAS computes C (m,n) = opA(A) (m,k) . opB(B) (k,n) with m = N, n = M, k = K, A = b, B = a:
//   b, plain: stored row-major (K,N) = column-major (N,K), ld N: that is op(b)^T as it
//      stands, opA = 'N', lda = N
//   b, TRANSPOSE_B: stored row-major (N,K) = column-major (K,N), ld K: that is op(b),
//      whose transpose is wanted, opA = 'T', lda = K
//   a, plain: stored row-major (M,K) = column-major (K,M), ld K: op(a)^T, opB = 'N', ldb = K
//   a, TRANSPOSE_A: stored row-major (K,M) = column-major (M,K), ld M: op(a), opB = 'T', ldb = M
// ACCUMULATE is beta = 1 (c += ...), else beta = 0 (c is not read). The batch strides
// pass through unchanged: they count floats, whatever the layout.
static void matmul_batched(float *c, const float *a, const float *b, int M, int N, int K, int flags, int batch,
                           size_t stride_c, size_t stride_a, size_t stride_b) {
    if (M <= 0 || N <= 0 || batch <= 0) { return; }
    matmul_init();
    int ta = (flags & TRANSPOSE_A) != 0, tb = (flags & TRANSPOSE_B) != 0;
    if (!matmul_tiled && K > 0) { // (K = 0, an empty sum, goes to the tiled kernel, which writes c = 0)
        float alpha = 1.0f, beta = flags & ACCUMULATE ? 1.0f : 0.0f;
        cublasCheck(cublasSgemmStridedBatched(cublas_handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                              N, M, K, &alpha, b, tb ? K : N, (long long)stride_b, a, ta ? M : K,
                                              (long long)stride_a, &beta, c, N, (long long)stride_c, batch));
        kernelCheck();
        return;
    }
    dim3 grid(blocks_for(N, TILE), blocks_for(M, TILE), batch), block(TILE, TILE);
    matmul_tiled_kernel<<<grid, block>>>(c, a, b, M, N, K, flags, stride_c, stride_a, stride_b);
    kernelCheck();
}

static void matmul(float *c, const float *a, const float *b, int M, int N, int K, int flags) {
    matmul_batched(c, a, b, M, N, K, flags, 1, 0, 0, 0);
}

// what runs the layers, for the config table
extern "C" const char *GPU(device_name)(void) {
    static char name[320];
    int device;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDevice(&device));
    cudaCheck(cudaGetDeviceProperties(&prop, device));
    matmul_init();
    snprintf(name, sizeof(name), "%s (sm_%d%d), %s", prop.name, prop.major, prop.minor,
             matmul_tiled ? "tiled matmul" : "cuBLAS matmul");
    return name;
}

// ----------------------------------------------------------------------------
// Appendix B. JSON and UTF-8: train.c's, on the host
// Appendix C. files, checkpoints and the tokenizer's file format: train.c's, on the host
//    (checkpoints read and write the models' managed memory)
// Appendix D. logs, curves and stage records: train.c's, on the host
// Appendix E. bench: train.c's, on the host (it times the launchers above)
// Appendix F. the command line: flags, usage, the settings table: train.c's, on the host

// ----------------------------------------------------------------------------
// Appendix G. utilities: checked libc calls, RNG, timer
// train.c's checked libc calls, RNG, timer and threads run on the host; here, the checked
// CUDA and cuBLAS calls and the size of a launch.

static void cuda_check(cudaError_t err, const char *file, int line) {
    if (err != cudaSuccess) {
        fprintf(stderr, "error (%s:%d): CUDA: %s. Is a GPU there (nvidia-smi)? Was train.cu built for its "
                        "architecture (make run-gpu GPU_ARCH=...)?\n", file, line, cudaGetErrorString(err));
        exit(EXIT_FAILURE);
    }
}

static void cublas_check(cublasStatus_t status, const char *file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "error (%s:%d): cuBLAS status %d\n", file, line, (int)status);
        exit(EXIT_FAILURE);
    }
}

// blocks of `threads` threads that cover n elements. CUDA refuses a grid of 0 blocks
// ("invalid configuration argument") where train.c's loop over nothing does nothing,
// so the launchers of a size that can be 0 (AdamW on a tensor of the head a model
// does not have, which holds no parameters) return before they launch.
static int blocks_for(size_t n, int threads) { return (int)((n + threads - 1) / threads); }
