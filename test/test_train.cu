// Tests of train.cu: every launcher against the train.c function it replaces, on the
// same random inputs. (Whole stages, GPU build against CPU build, are compared by
// test/compare_gpu.py.) With TESTING, train.cu's launchers are named <name>_gpu, and
// this program is linked with train.c built with TESTING, which gives the C versions
// under their own names. Sections follow train.c's order.
#define TESTING
#include "../train.cu"
#include "check.h"
#include <math.h>
#include <stdint.h>

// train.c's versions (C linkage, from train.c compiled with TESTING)
extern "C" {
void encoder_forward(float *out, const int *inp, const float *wte, const float *wpe, int B, int T, int C);
void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T, int C);
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight, const float *bias,
                       int B, int T, int C);
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int B, int T, int C);
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int B, int T, int C, int OC);
void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int B, int T, int C, int OC);
void matmul_reference(float *c, const float *a, const float *b, int M, int N, int K, int flags);
void attention_forward(float *out, float *heads, float *att, const float *inp, int B, int T, int C, int NH);
void attention_backward(float *dinp, float *dheads, float *datt, const float *dout, const float *heads,
                        const float *att, int B, int T, int C, int NH);
void attention_forward_cached(float *out, float *att, float *k_cache, float *v_cache, const float *qkv, int pos,
                              int maxT, int C, int NH);
void gelu_forward(float *out, const float *inp, size_t N);
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t N);
void residual_forward(float *out, const float *inp1, const float *inp2, size_t N);
void residual_backward(float *dinp1, float *dinp2, const float *dout, size_t N);
void crossentropy_softmax_forward(float *losses, float *probs, const float *logits, const int *targets, int B, int T,
                                  int V);
void crossentropy_softmax_backward(float *dlogits, const float *dlosses, const float *probs, const int *targets, int B,
                                   int T, int V);
double sum_of_squares(const float *x, size_t n);
void scale_floats(float *x, float coef, size_t n);
void adamw_tensor(float *p, float *m, float *v, const float *g, float lr, float beta1, float beta2, float eps,
                  float decay, int t, size_t n);
}

// ----------------------------------------------------------------------------
// helpers: arrays in managed memory (the GPU's input and output, readable here),
// random values, and the comparison

static uint64_t rng_state = 1337;
static float uniform(void) { // xorshift64*, in [-1, 1)
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (float)((rng_state * 0x2545F4914F6CDD1DULL) >> 40) / 8388608.0f - 1.0f;
}

static float *floats(size_t n) { return (float *)model_calloc_gpu(n, sizeof(float)); }
static float *random_floats(size_t n, float scale) {
    float *x = floats(n);
    for (size_t i = 0; i < n; i++) { x[i] = scale * uniform(); }
    return x;
}
// An output that a launcher only writes (never adds into) starts as NaN, so that an
// element the kernel skips cannot pass for a right 0: model_calloc zeroes memory.
static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) { x[i] = NAN; }
}
static float *unwritten(size_t n) {
    float *x = floats(n);
    fill_nan(x, n);
    return x;
}
static float *copy_of(const float *x, size_t n) {
    float *y = floats(n);
    memcpy(y, x, n * sizeof(float));
    return y;
}
static int *random_ints(size_t n, int hi) {
    int *x = (int *)model_calloc_gpu(n, sizeof(int));
    for (size_t i = 0; i < n; i++) { x[i] = (int)((uniform() + 1.0f) * 0.5f * hi) % hi; }
    return x;
}

// Agreement of a GPU result with the CPU's: |gpu - cpu| <= atol + rtol * |cpu| for every
// element (llm.c's dev/cuda rule). A NaN on either side breaks it. The report gives the
// worst element as a multiple of its tolerance, where equal values count 0 even against
// a tolerance of 0 (the exact checks).
struct Agreement {
    size_t outside;      // elements that break the rule
    double worst, diff;  // the worst ratio |gpu - cpu| / tolerance (NaN sticks), and its |gpu - cpu|
};
static Agreement agreement(const float *gpu, const float *cpu, size_t n, float atol, float rtol) {
    Agreement a = {0, 0.0, 0.0};
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)gpu[i] - cpu[i]), tol = atol + rtol * fabs((double)cpu[i]);
        if (!(diff <= tol)) { a.outside++; }
        double ratio = diff == 0.0 ? 0.0 : diff / tol;
        if (!isnan(a.worst) && (isnan(ratio) || ratio > a.worst)) { a.worst = ratio, a.diff = diff; }
    }
    return a;
}
static void compare(const char *name, const float *gpu, const float *cpu, size_t n, float atol, float rtol) {
    Agreement a = agreement(gpu, cpu, n, atol, rtol);
    check(a.outside == 0, name, "max |diff| %.2e over %zu values, %.2f of the tolerance, %zu outside it (atol %.0e, rtol %.0e)",
          a.diff, n, a.worst, a.outside, atol, rtol);
}

// Tolerances. Kernels that keep train.c's loops in train.c's order differ from it only
// where a compiler fused a*b+c into one rounding (FMA) on one side and not the other,
// and in expf/logf/sqrtf (within 2 ulp of libm): a few ulp of fp32, so rtol 1e-5. Sums
// over K terms in another order (cuBLAS, the tiled gemm) differ by up to about
// K * 2^-24 * sum |a b|: for K <= 512 and values near 1 that is under 1e-4 of the typical
// magnitude, so atol 1e-4 beside rtol 1e-4.
#define ULPS_ATOL 1e-6f
#define ULPS_RTOL 1e-5f
#define SUMS_ATOL 1e-4f
#define SUMS_RTOL 1e-4f

// The comparison itself: it must pass equal values with no tolerance at all, and fail
// a NaN wherever it sits and a difference of one ulp in an exact check.
static void test_compare(void) {
    float x[4] = {1.0f, -2.5f, 0.0f, 3.0e-20f}, ulp[1] = {nextafterf(1.0f, 2.0f)};
    float nan_first[3] = {NAN, 1.0f, 2.0f}, ones[3] = {1.0f, 1.0f, 2.0f};
    Agreement same = agreement(x, x, 4, 0.0f, 0.0f), one_ulp = agreement(ulp, x, 1, 0.0f, 0.0f);
    Agreement nan = agreement(nan_first, ones, 3, 1e-3f, 1e-3f), cpu_nan = agreement(ones, nan_first, 3, 1e-3f, 1e-3f);
    check(same.outside == 0 && same.worst == 0.0, "compare: equal values pass an exact check (atol = rtol = 0)",
          "%zu outside, worst %.2f", same.outside, same.worst);
    check(one_ulp.outside == 1, "compare: one ulp apart fails an exact check", "%zu outside", one_ulp.outside);
    check(nan.outside == 1 && isnan(nan.worst) && cpu_nan.outside == 1,
          "compare: a NaN fails, on either side, before values that agree", "%zu and %zu outside, worst %.2f",
          nan.outside, cpu_nan.outside, nan.worst);
}

// ----------------------------------------------------------------------------
// 1. layers, and appendix A, the matmul engine

// matmul on the device (appendix A of train.cu) against matmul_reference, the loops that
// define it in train.c: every combination of the transposes and ACCUMULATE, at a shape
// that does not fit the 16 x 16 tiles, as a batch of 3 products with gaps between them
// (a stride mistaken for a size would show), on both paths
static void test_matmul(void) {
    int M = 19, N = 37, K = 45, batch = 3;
    size_t stride_c = (size_t)M * N + 5, stride_a = (size_t)M * K + 7, stride_b = (size_t)K * N + 3;
    float *a = random_floats(stride_a * batch, 1.0f), *b = random_floats(stride_b * batch, 1.0f);
    float *c0 = random_floats(stride_c * batch, 1.0f), *c_cpu = floats(stride_c * batch), *c_gpu = floats(stride_c * batch);
    for (int path = 0; path < 2; path++) {
        matmul_tiled = path; // 0: cuBLAS, 1: the tiled kernel
        for (int flags = 0; flags < 8; flags++) { // TRANSPOSE_A, TRANSPOSE_B and ACCUMULATE: bits 0, 1 and 2
            // without ACCUMULATE, c is only written: NaN, also in the gaps, which must stay NaN
            for (size_t i = 0; i < stride_c * batch; i++) { c_cpu[i] = c_gpu[i] = flags & ACCUMULATE ? c0[i] : NAN; }
            for (int n = 0; n < batch; n++) {
                matmul_reference(c_cpu + n * stride_c, a + n * stride_a, b + n * stride_b, M, N, K, flags);
            }
            matmul_batched(c_gpu, a, b, M, N, K, flags, batch, stride_c, stride_a, stride_b);
            Agreement worst = {0, 0.0, 0.0};
            size_t gaps_written = 0;
            for (int n = 0; n < batch; n++) {
                Agreement g = agreement(c_gpu + n * stride_c, c_cpu + n * stride_c, (size_t)M * N, SUMS_ATOL, SUMS_RTOL);
                worst.outside += g.outside;
                if (isnan(g.worst) || g.worst > worst.worst) { worst.worst = g.worst, worst.diff = g.diff; }
                for (size_t i = (size_t)M * N; i < stride_c; i++) {
                    size_t at = n * stride_c + i;
                    gaps_written += flags & ACCUMULATE ? c_gpu[at] != c0[at] : !isnan(c_gpu[at]);
                }
            }
            char name[160];
            snprintf(name, sizeof(name), "matmul (%s)%s%s%s, 3 products of M=%d N=%d K=%d against matmul_reference",
                     path ? "tiled" : "cuBLAS", flags & TRANSPOSE_A ? " TRANSPOSE_A" : "",
                     flags & TRANSPOSE_B ? " TRANSPOSE_B" : "", flags & ACCUMULATE ? " ACCUMULATE" : "", M, N, K);
            // sums over K terms in another order (cuBLAS; the tiled kernel keeps the order)
            check(worst.outside == 0 && gaps_written == 0, name,
                  "max |diff| %.2e, %.2f of the tolerance, %zu outside it, %zu values between the products written",
                  worst.diff, worst.worst, worst.outside, gaps_written);
        }
    }
    float *all[] = {a, b, c0, c_cpu, c_gpu};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) { model_free_gpu(all[i]); }
    matmul_tiled = -1;
}

static void test_linear(void) {
    // shapes not a multiple of the 16 x 16 tiles, and the scalar head's single column
    int shapes[][4] = {{4, 33, 70, 45}, {2, 64, 128, 384}, {1, 1, 128, 1024}, {3, 17, 128, 1}};
    for (int path = 0; path < 2; path++) {
        matmul_tiled = path; // 0: cuBLAS, 1: the tiled kernel
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            int B = shapes[s][0], T = shapes[s][1], C = shapes[s][2], OC = shapes[s][3];
            size_t BT = (size_t)B * T;
            float *inp = random_floats(BT * C, 1.0f), *weight = random_floats((size_t)OC * C, 1.0f);
            float *bias = random_floats(OC, 1.0f), *dout = random_floats(BT * OC, 1.0f);
            float *out_cpu = floats(BT * OC), *out_gpu = unwritten(BT * OC);
            matmul_forward(out_cpu, inp, weight, bias, B, T, C, OC);
            matmul_forward_gpu(out_gpu, inp, weight, bias, B, T, C, OC);
            char name[128];
            snprintf(name, sizeof(name), "matmul_forward (%s), B=%d T=%d C=%d OC=%d", path ? "tiled" : "cuBLAS", B, T, C, OC);
            compare(name, out_gpu, out_cpu, BT * OC, SUMS_ATOL, SUMS_RTOL);
            // backward adds into gradients that already hold something
            float *dinp_cpu = random_floats(BT * C, 1.0f), *dweight_cpu = random_floats((size_t)OC * C, 1.0f);
            float *dbias_cpu = random_floats(OC, 1.0f);
            float *dinp_gpu = copy_of(dinp_cpu, BT * C), *dweight_gpu = copy_of(dweight_cpu, (size_t)OC * C);
            float *dbias_gpu = copy_of(dbias_cpu, OC);
            matmul_backward(dinp_cpu, dweight_cpu, dbias_cpu, dout, inp, weight, B, T, C, OC);
            matmul_backward_gpu(dinp_gpu, dweight_gpu, dbias_gpu, dout, inp, weight, B, T, C, OC);
            snprintf(name, sizeof(name), "matmul_backward (%s) dinp, dweight, dbias, B=%d T=%d C=%d OC=%d",
                     path ? "tiled" : "cuBLAS", B, T, C, OC);
            compare(name, dinp_gpu, dinp_cpu, BT * C, SUMS_ATOL, SUMS_RTOL);
            // dweight sums over BT rows, dbias too: the same bound with K = BT
            compare(name, dweight_gpu, dweight_cpu, (size_t)OC * C, SUMS_ATOL, SUMS_RTOL);
            compare(name, dbias_gpu, dbias_cpu, OC, SUMS_ATOL, SUMS_RTOL);
            float *all[] = {inp, weight, bias, dout, out_cpu, out_gpu, dinp_cpu, dweight_cpu, dbias_cpu, dinp_gpu, dweight_gpu, dbias_gpu};
            for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) { model_free_gpu(all[i]); }
        }
    }
    matmul_tiled = -1;
    matmul_free();
}

static void test_layers(void) {
    int B = 3, T = 37, C = 96, NH = 4, V = 300, maxT = 64;
    size_t BT = (size_t)B * T, BTC = BT * C;

    // encoder: a small vocabulary, so tokens repeat and dwte rows take several sums
    int *tokens = random_ints(BT, 20);
    float *wte = random_floats((size_t)V * C, 1.0f), *wpe = random_floats((size_t)maxT * C, 1.0f);
    float *enc_cpu = floats(BTC), *enc_gpu = unwritten(BTC);
    encoder_forward(enc_cpu, tokens, wte, wpe, B, T, C);
    encoder_forward_gpu(enc_gpu, tokens, wte, wpe, B, T, C);
    compare("encoder_forward", enc_gpu, enc_cpu, BTC, 0.0f, 0.0f);
    float *dout = random_floats(BTC, 1.0f);
    float *dwte_cpu = random_floats((size_t)V * C, 1.0f), *dwpe_cpu = random_floats((size_t)maxT * C, 1.0f);
    float *dwte_gpu = copy_of(dwte_cpu, (size_t)V * C), *dwpe_gpu = copy_of(dwpe_cpu, (size_t)maxT * C);
    encoder_backward(dwte_cpu, dwpe_cpu, dout, tokens, B, T, C);
    encoder_backward_gpu(dwte_gpu, dwpe_gpu, dout, tokens, B, T, C);
    // the same additions in the same order: exact
    compare("encoder_backward dwte (repeated tokens)", dwte_gpu, dwte_cpu, (size_t)V * C, 0.0f, 0.0f);
    compare("encoder_backward dwpe", dwpe_gpu, dwpe_cpu, (size_t)maxT * C, 0.0f, 0.0f);

    // layernorm, on rows with an offset (a mean far from 0 tests the two-pass variance)
    float *x = random_floats(BTC, 2.0f);
    for (size_t i = 0; i < BTC; i++) { x[i] += 3.0f; }
    float *w = random_floats(C, 1.0f), *bias = random_floats(C, 1.0f);
    float *ln_cpu = floats(BTC), *ln_gpu = unwritten(BTC), *mean_cpu = floats(BT), *mean_gpu = unwritten(BT);
    float *rstd_cpu = floats(BT), *rstd_gpu = unwritten(BT);
    layernorm_forward(ln_cpu, mean_cpu, rstd_cpu, x, w, bias, B, T, C);
    layernorm_forward_gpu(ln_gpu, mean_gpu, rstd_gpu, x, w, bias, B, T, C);
    compare("layernorm_forward out", ln_gpu, ln_cpu, BTC, ULPS_ATOL, ULPS_RTOL);
    compare("layernorm_forward mean", mean_gpu, mean_cpu, BT, ULPS_ATOL, ULPS_RTOL);
    compare("layernorm_forward rstd", rstd_gpu, rstd_cpu, BT, ULPS_ATOL, ULPS_RTOL);
    float *dx_cpu = random_floats(BTC, 1.0f), *dw_cpu = random_floats(C, 1.0f), *db_cpu = random_floats(C, 1.0f);
    float *dx_gpu = copy_of(dx_cpu, BTC), *dw_gpu = copy_of(dw_cpu, C), *db_gpu = copy_of(db_cpu, C);
    layernorm_backward(dx_cpu, dw_cpu, db_cpu, dout, x, w, mean_cpu, rstd_cpu, B, T, C);
    layernorm_backward_gpu(dx_gpu, dw_gpu, db_gpu, dout, x, w, mean_cpu, rstd_cpu, B, T, C);
    compare("layernorm_backward dinp", dx_gpu, dx_cpu, BTC, ULPS_ATOL, ULPS_RTOL);
    // dweight and dbias sum BT terms in train.c's order; FMA may round differently at each
    compare("layernorm_backward dweight", dw_gpu, dw_cpu, C, SUMS_ATOL, SUMS_RTOL);
    compare("layernorm_backward dbias", db_gpu, db_cpu, C, SUMS_ATOL, SUMS_RTOL);

    // attention. Its scores q k^T and its y = att v are products (cuBLAS, or the tiled
    // kernel): att, y and out get the tolerance of sums in another order, and so does
    // everything downstream of them in the backward pass
    size_t att_n = (size_t)B * NH * T * T;
    int HS = C / NH;
    float *qkv = random_floats(BT * 3 * C, 1.0f);
    float *atty_cpu = floats(BTC), *atty_gpu = unwritten(BTC), *att_cpu = floats(att_n), *att_gpu = unwritten(att_n);
    float *heads_cpu = floats(4 * BTC), *heads_gpu = unwritten(4 * BTC);
    attention_forward(atty_cpu, heads_cpu, att_cpu, qkv, B, T, C, NH);
    attention_forward_gpu(atty_gpu, heads_gpu, att_gpu, qkv, B, T, C, NH);
    compare("attention_forward q, k, v split into heads (copies: exact)", heads_gpu, heads_cpu, 3 * BTC, 0.0f, 0.0f);
    compare("attention_forward att (zero above the diagonal)", att_gpu, att_cpu, att_n, SUMS_ATOL, SUMS_RTOL);
    compare("attention_forward y, split into heads", heads_gpu + 3 * BTC, heads_cpu + 3 * BTC, BTC, SUMS_ATOL, SUMS_RTOL);
    compare("attention_forward out", atty_gpu, atty_cpu, BTC, SUMS_ATOL, SUMS_RTOL);
    // backward adds into dinp and dheads: both start with values (a kernel that wrote
    // instead of adding would fail); datt is scratch that it only writes
    float *dqkv_cpu = random_floats(BT * 3 * C, 1.0f), *dqkv_gpu = copy_of(dqkv_cpu, BT * 3 * C);
    float *dheads_cpu = random_floats(4 * BTC, 1.0f), *dheads_gpu = copy_of(dheads_cpu, 4 * BTC);
    float *datt_cpu = floats(att_n), *datt_gpu = unwritten(att_n);
    attention_backward(dqkv_cpu, dheads_cpu, datt_cpu, dout, heads_cpu, att_cpu, B, T, C, NH);
    attention_backward_gpu(dqkv_gpu, dheads_gpu, datt_gpu, dout, heads_cpu, att_cpu, B, T, C, NH);
    compare("attention_backward dy (dout split into heads, added: exact)", dheads_gpu + 3 * BTC, dheads_cpu + 3 * BTC, BTC,
            0.0f, 0.0f);
    compare("attention_backward datt: the scores' gradient, zero above the diagonal", datt_gpu, datt_cpu, att_n, SUMS_ATOL,
            SUMS_RTOL);
    compare("attention_backward dq, dk, dv in heads", dheads_gpu, dheads_cpu, 3 * BTC, SUMS_ATOL, SUMS_RTOL);
    compare("attention_backward dinp (dq, dk, dv merged)", dqkv_gpu, dqkv_cpu, BT * 3 * C, SUMS_ATOL, SUMS_RTOL);

    // the cached step, at every position of one sequence, against the same C function;
    // the caches are (NH, maxT, HS), and positions T..maxT-1 of each head stay unwritten
    size_t cache_n = (size_t)NH * maxT * HS;
    float *kc_cpu = floats(cache_n), *vc_cpu = floats(cache_n), *kc_gpu = unwritten(cache_n), *vc_gpu = unwritten(cache_n);
    float *out_cpu = floats(C), *out_gpu = unwritten(C), *sc_cpu = floats((size_t)NH * maxT), *sc_gpu = unwritten((size_t)NH * maxT);
    size_t outside = 0;
    double worst = 0.0;
    for (int pos = 0; pos < T; pos++) {
        const float *qkv_t = qkv + (size_t)pos * 3 * C;
        attention_forward_cached(out_cpu, sc_cpu, kc_cpu, vc_cpu, qkv_t, pos, maxT, C, NH);
        attention_forward_cached_gpu(out_gpu, sc_gpu, kc_gpu, vc_gpu, qkv_t, pos, maxT, C, NH);
        // q k^T and att v are products here too
        Agreement a = agreement(out_gpu, out_cpu, C, SUMS_ATOL, SUMS_RTOL);
        outside += a.outside;
        if (isnan(a.worst) || a.worst > worst) { worst = a.worst; }
    }
    check(outside == 0, "attention_forward_cached, positions 0..T-1 of one sequence", "%.2f of the tolerance, %zu outside it",
          worst, outside);
    size_t cache_outside = 0;
    for (int h = 0; h < NH; h++) {
        size_t head = (size_t)h * maxT * HS, n = (size_t)T * HS; // rows 0..T-1 of head h
        cache_outside += agreement(kc_gpu + head, kc_cpu + head, n, 0.0f, 0.0f).outside;
        cache_outside += agreement(vc_gpu + head, vc_cpu + head, n, 0.0f, 0.0f).outside;
    }
    check(cache_outside == 0, "attention_forward_cached fills the key and value caches, head by head (exact)",
          "%zu values outside", cache_outside);

    // gelu and residual, elementwise
    float *g_cpu = floats(BTC), *g_gpu = unwritten(BTC);
    float *xg = random_floats(BTC, 4.0f);
    gelu_forward(g_cpu, xg, BTC);
    gelu_forward_gpu(g_gpu, xg, BTC);
    compare("gelu_forward", g_gpu, g_cpu, BTC, ULPS_ATOL, ULPS_RTOL);
    float *dg_cpu = random_floats(BTC, 1.0f), *dg_gpu = copy_of(dg_cpu, BTC);
    gelu_backward(dg_cpu, xg, dout, BTC);
    gelu_backward_gpu(dg_gpu, xg, dout, BTC);
    compare("gelu_backward", dg_gpu, dg_cpu, BTC, ULPS_ATOL, ULPS_RTOL);
    residual_forward(g_cpu, x, xg, BTC);
    fill_nan(g_gpu, BTC); // gelu_forward_gpu wrote it
    residual_forward_gpu(g_gpu, x, xg, BTC);
    compare("residual_forward", g_gpu, g_cpu, BTC, 0.0f, 0.0f);
    float *d1_gpu = copy_of(dg_cpu, BTC), *d2_cpu = random_floats(BTC, 1.0f), *d2_gpu = copy_of(d2_cpu, BTC);
    residual_backward(dg_cpu, d2_cpu, dout, BTC);
    residual_backward_gpu(d1_gpu, d2_gpu, dout, BTC);
    compare("residual_backward", d1_gpu, dg_cpu, BTC, 0.0f, 0.0f);
    compare("residual_backward, second input", d2_gpu, d2_cpu, BTC, 0.0f, 0.0f);

    // cross-entropy, with a third of the positions masked (target -1)
    int *targets = random_ints(BT, V);
    for (size_t i = 0; i < BT; i += 3) { targets[i] = -1; }
    float *logits = random_floats(BT * V, 5.0f);
    float *losses_cpu = floats(BT), *losses_gpu = unwritten(BT), *probs_cpu = floats(BT * V), *probs_gpu = unwritten(BT * V);
    crossentropy_softmax_forward(losses_cpu, probs_cpu, logits, targets, B, T, V);
    crossentropy_softmax_forward_gpu(losses_gpu, probs_gpu, logits, targets, B, T, V);
    compare("crossentropy_softmax_forward probs", probs_gpu, probs_cpu, BT * V, ULPS_ATOL, ULPS_RTOL);
    compare("crossentropy_softmax_forward losses (0 where masked)", losses_gpu, losses_cpu, BT, ULPS_ATOL, ULPS_RTOL);
    float *dlosses = random_floats(BT, 1.0f);
    float *dlogits_cpu = random_floats(BT * V, 1.0f), *dlogits_gpu = copy_of(dlogits_cpu, BT * V);
    crossentropy_softmax_backward(dlogits_cpu, dlosses, probs_cpu, targets, B, T, V);
    crossentropy_softmax_backward_gpu(dlogits_gpu, dlosses, probs_cpu, targets, B, T, V);
    compare("crossentropy_softmax_backward (masked rows untouched)", dlogits_gpu, dlogits_cpu, BT * V, ULPS_ATOL, ULPS_RTOL);

    float *all[] = {wte, wpe, enc_cpu, enc_gpu, dout, dwte_cpu, dwpe_cpu, dwte_gpu, dwpe_gpu, x, w, bias, ln_cpu, ln_gpu,
                    mean_cpu, mean_gpu, rstd_cpu, rstd_gpu, dx_cpu, dw_cpu, db_cpu, dx_gpu, dw_gpu, db_gpu, qkv, atty_cpu,
                    atty_gpu, att_cpu, att_gpu, heads_cpu, heads_gpu, dqkv_cpu, dqkv_gpu, dheads_cpu, dheads_gpu,
                    datt_cpu, datt_gpu, kc_cpu, vc_cpu, kc_gpu, vc_gpu,
                    out_cpu, out_gpu, sc_cpu, sc_gpu, g_cpu, g_gpu, xg, dg_cpu, dg_gpu, d1_gpu, d2_cpu, d2_gpu, logits,
                    losses_cpu, losses_gpu, probs_cpu, probs_gpu, dlosses, dlogits_cpu, dlogits_gpu};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) { model_free_gpu(all[i]); }
    model_free_gpu(tokens);
    model_free_gpu(targets);
}

// ----------------------------------------------------------------------------
// 4. the optimizer

static void test_optimizer(void) {
    size_t n = 300000; // more than four chunks of the sum of squares, the last one partial
    float *g = random_floats(n, 1.0f);
    double s_cpu = sum_of_squares(g, n), s_gpu = sum_of_squares_gpu(g, n);
    // squares of floats are exact in double, and every partial sum is added in the same order
    check(s_cpu == s_gpu, "sum_of_squares: the same bits as train.c", "%.17g vs %.17g", s_gpu, s_cpu);
    float *g2 = copy_of(g, n);
    scale_floats(g, 0.37f, n);
    scale_floats_gpu(g2, 0.37f, n);
    compare("scale_floats", g2, g, n, 0.0f, 0.0f);
    float *p_cpu = random_floats(n, 1.0f), *m_cpu = random_floats(n, 0.1f), *v_cpu = floats(n);
    for (size_t i = 0; i < n; i++) { v_cpu[i] = 0.01f * (uniform() + 1.0f); }
    float *p_gpu = copy_of(p_cpu, n), *m_gpu = copy_of(m_cpu, n), *v_gpu = copy_of(v_cpu, n);
    for (int t = 1; t <= 3; t++) {
        adamw_tensor(p_cpu, m_cpu, v_cpu, g, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t, n);
        adamw_tensor_gpu(p_gpu, m_gpu, v_gpu, g, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t, n);
    }
    compare("adamw_tensor, 3 steps: parameters", p_gpu, p_cpu, n, ULPS_ATOL, ULPS_RTOL);
    compare("adamw_tensor, 3 steps: second moments", v_gpu, v_cpu, n, ULPS_ATOL, ULPS_RTOL);
    float *all[] = {g, g2, p_cpu, m_cpu, v_cpu, p_gpu, m_gpu, v_gpu};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) { model_free_gpu(all[i]); }
}

// Sizes of 0: train.c's loops do nothing, and so must the launchers (CUDA refuses a grid
// of 0 blocks). A language model's scalar head holds 0 parameters, and AdamW visits it.
// The real check is that the program gets past the calls: a launcher that launches
// anyway ends it with CUDA's error and its train.cu line (test/run.sh counts that as a
// failure). The comparison after them checks that nothing was touched.
static void test_empty(void) {
    float *x = random_floats(4, 1.0f), *y = copy_of(x, 4);
    gelu_forward_gpu(y, x, 0);
    gelu_backward_gpu(y, x, x, 0);
    residual_forward_gpu(y, x, x, 0);
    residual_backward_gpu(y, y, x, 0);
    scale_floats_gpu(y, 2.0f, 0);
    adamw_tensor_gpu(y, y, y, x, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 0);
    double s = sum_of_squares_gpu(x, 0);
    compare("launchers with a size of 0 launch nothing and touch nothing", y, x, 4, 0.0f, 0.0f);
    check(s == 0.0, "sum_of_squares of 0 values", "%g", s);
    model_free_gpu(x);
    model_free_gpu(y);
}

int main(void) {
    printf("device: %s\n", device_name_gpu());
    test_compare();
    test_matmul();
    test_linear();
    test_layers();
    test_optimizer();
    test_empty();
    printf("%d passed, %d failed\n", checks_passed, checks_failed);
    return checks_failed > 0;
}
