// Finite-difference checks of every backward pass, in double precision.
//
// train.c is compiled here with every `float` turned into a `double` (and <tgmath.h>
// makes exp, sqrt, tanh follow), so each layer runs in double. A central difference
// (f(x+h) - f(x-h)) / 2h with h = 1e-5 is then exact to about 1e-10 (truncation
// h^2 f''' ~ 1e-10, rounding 1e-16 / h ~ 1e-11). Every check asks
//     |analytic - numeric| <= 1e-7 + 1e-6 |numeric|
// for every element: a gradient with any wrong element is off by far more.
#define TESTING
#define _POSIX_C_SOURCE 200809L
// the system headers first, with float still float; train.c's own includes are then no-ops
#include <assert.h>
#include <errno.h>
#include <float.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tgmath.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#define float double
// make check N compiles these tests against a student's copy (-DTRAIN_C='"path"')
#ifndef TRAIN_C
#define TRAIN_C "../train.c"
#endif
#include TRAIN_C
#undef float
#include "check.h"

#define FD_H 1e-5
#define FD_ATOL 1e-7
#define FD_RTOL 1e-6

// the loss of a check: the layer's output dotted with fixed random weights R,
// so that dout = R
typedef double (*LossFn)(void *ctx);

static uint64_t test_rng = 42;

static double *randn(size_t n, double scale) {
    double *x = mallocCheck(n * sizeof(double));
    for (size_t i = 0; i < n; i++) { x[i] = scale * random_normal(&test_rng); }
    return x;
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) { s += a[i] * b[i]; }
    return s;
}

// compares analytic[0..n) against central differences of f with respect to x[0..n)
static void fd_check(const char *name, double *x, const double *analytic, size_t n, LossFn f, void *ctx) {
    double worst = 0, worst_tol = 1;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double saved = x[i];
        x[i] = saved + FD_H;
        double up = f(ctx);
        x[i] = saved - FD_H;
        double down = f(ctx);
        x[i] = saved;
        double numeric = (up - down) / (2 * FD_H), err = fabs(analytic[i] - numeric);
        double tol = FD_ATOL + FD_RTOL * fabs(numeric);
        if (err > tol) { bad++; }
        if (err / tol > worst / worst_tol) { worst = err; worst_tol = tol; }
    }
    check(bad == 0, name, "%zu elements, %zu off; worst |diff| %.2e (tolerance there %.2e)", n, bad, worst, worst_tol);
}

// ----------------------------------------------------------------------------
// one context per layer: inputs, parameters, output, R, sizes

typedef struct { double *inp, *w, *b, *out, *R; int B, T, C, OC; } MatmulCtx;
static double matmul_loss(void *p) {
    MatmulCtx *c = p;
    matmul_forward(c->out, c->inp, c->w, c->b, c->B, c->T, c->C, c->OC);
    return dot(c->out, c->R, (size_t)c->B * c->T * c->OC);
}

static void test_matmul(int B, int T, int C, int OC) {
    size_t BT = (size_t)B * T;
    MatmulCtx c = {randn(BT * C, 1), randn((size_t)OC * C, 1), randn(OC, 1), randn(BT * OC, 1), randn(BT * OC, 1), B, T, C, OC};
    double *dinp = callocCheck(BT * C, sizeof(double)), *dw = callocCheck((size_t)OC * C, sizeof(double));
    double *db = callocCheck(OC, sizeof(double));
    matmul_backward(dinp, dw, db, c.R, c.inp, c.w, B, T, C, OC);
    char name[128];
    snprintf(name, sizeof(name), "matmul B=%d T=%d C=%d OC=%d: dinp", B, T, C, OC);
    fd_check(name, c.inp, dinp, BT * C, matmul_loss, &c);
    snprintf(name, sizeof(name), "matmul B=%d T=%d C=%d OC=%d: dweight", B, T, C, OC);
    fd_check(name, c.w, dw, (size_t)OC * C, matmul_loss, &c);
    snprintf(name, sizeof(name), "matmul B=%d T=%d C=%d OC=%d: dbias", B, T, C, OC);
    fd_check(name, c.b, db, OC, matmul_loss, &c);
    free(c.inp); free(c.w); free(c.b); free(c.out); free(c.R); free(dinp); free(dw); free(db);
}

typedef struct { double *inp, *w, *b, *out, *mean, *rstd, *R; int B, T, C; } LayernormCtx;
static double layernorm_loss(void *p) {
    LayernormCtx *c = p;
    layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->B, c->T, c->C);
    return dot(c->out, c->R, (size_t)c->B * c->T * c->C);
}

static void test_layernorm(void) {
    int B = 2, T = 3, C = 7;
    size_t N = (size_t)B * T * C;
    LayernormCtx c = {randn(N, 2), randn(C, 1), randn(C, 1), randn(N, 1), randn(B * T, 1), randn(B * T, 1), randn(N, 1), B, T, C};
    layernorm_loss(&c); // mean and rstd for backward
    double *dinp = callocCheck(N, sizeof(double)), *dw = callocCheck(C, sizeof(double)), *db = callocCheck(C, sizeof(double));
    layernorm_backward(dinp, dw, db, c.R, c.inp, c.w, c.mean, c.rstd, B, T, C);
    fd_check("layernorm: dinp", c.inp, dinp, N, layernorm_loss, &c);
    fd_check("layernorm: dweight", c.w, dw, C, layernorm_loss, &c);
    fd_check("layernorm: dbias", c.b, db, C, layernorm_loss, &c);
    free(c.inp); free(c.w); free(c.b); free(c.out); free(c.mean); free(c.rstd); free(c.R); free(dinp); free(dw); free(db);
}

typedef struct { double *inp, *out, *heads, *att, *R; int B, T, C, NH; } AttentionCtx;
static double attention_loss(void *p) {
    AttentionCtx *c = p;
    attention_forward(c->out, c->heads, c->att, c->inp, c->B, c->T, c->C, c->NH);
    return dot(c->out, c->R, (size_t)c->B * c->T * c->C);
}

static void test_attention(void) {
    int B = 2, T = 5, C = 8, NH = 2;
    size_t N = (size_t)B * T * C;
    AttentionCtx c = {randn(3 * N, 1), randn(N, 1), randn(4 * N, 1), randn((size_t)B * NH * T * T, 1), randn(N, 1), B, T, C, NH};
    attention_loss(&c);
    double *dinp = callocCheck(3 * N, sizeof(double)), *datt = callocCheck((size_t)B * NH * T * T, sizeof(double));
    double *dheads = callocCheck(4 * N, sizeof(double));
    attention_backward(dinp, dheads, datt, c.R, c.heads, c.att, B, T, C, NH);
    fd_check("attention: dinp (q, k and v)", c.inp, dinp, 3 * N, attention_loss, &c);
    free(c.inp); free(c.out); free(c.heads); free(c.att); free(c.R); free(dinp); free(datt); free(dheads);
}

typedef struct { double *inp, *out, *R; size_t N; } GeluCtx;
static double gelu_loss(void *p) {
    GeluCtx *c = p;
    gelu_forward(c->out, c->inp, c->N);
    return dot(c->out, c->R, c->N);
}

static void test_gelu(void) {
    size_t N = 40;
    GeluCtx c = {randn(N, 2.5), randn(N, 1), randn(N, 1), N};
    double *dinp = callocCheck(N, sizeof(double));
    gelu_backward(dinp, c.inp, c.R, N);
    fd_check("gelu: dinp", c.inp, dinp, N, gelu_loss, &c);
    free(c.inp); free(c.out); free(c.R); free(dinp);
}

typedef struct { double *a, *b, *out, *R; size_t N; } ResidualCtx;
static double residual_loss(void *p) {
    ResidualCtx *c = p;
    residual_forward(c->out, c->a, c->b, c->N);
    return dot(c->out, c->R, c->N);
}

static void test_residual(void) {
    size_t N = 12;
    ResidualCtx c = {randn(N, 1), randn(N, 1), randn(N, 1), randn(N, 1), N};
    double *da = callocCheck(N, sizeof(double)), *db = callocCheck(N, sizeof(double));
    residual_backward(da, db, c.R, N);
    fd_check("residual: dinp1", c.a, da, N, residual_loss, &c);
    fd_check("residual: dinp2", c.b, db, N, residual_loss, &c);
    free(c.a); free(c.b); free(c.out); free(c.R); free(da); free(db);
}

typedef struct { double *logits, *probs, *losses, *weights; int *targets; int B, T, V; } CrossentropyCtx;
static double crossentropy_loss(void *p) {
    CrossentropyCtx *c = p;
    crossentropy_softmax_forward(c->losses, c->probs, c->logits, c->targets, c->B, c->T, c->V);
    return dot(c->losses, c->weights, (size_t)c->B * c->T);
}

static void test_crossentropy(void) {
    int B = 2, T = 3, V = 11;
    size_t N = (size_t)B * T * V;
    int targets[6] = {3, -1, 10, 0, 7, -1}; // -1: no loss at that position
    CrossentropyCtx c = {randn(N, 2), randn(N, 1), randn(B * T, 1), randn(B * T, 1), targets, B, T, V};
    crossentropy_loss(&c);
    double *dlogits = callocCheck(N, sizeof(double));
    crossentropy_softmax_backward(dlogits, c.weights, c.probs, targets, B, T, V);
    fd_check("softmax + cross-entropy with masked positions: dlogits", c.logits, dlogits, N, crossentropy_loss, &c);
    free(c.logits); free(c.probs); free(c.losses); free(c.weights); free(dlogits);
}

typedef struct { double *wte, *wpe, *out, *R; int *inp; int B, T, C; } EncoderCtx;
static double encoder_loss(void *p) {
    EncoderCtx *c = p;
    encoder_forward(c->out, c->inp, c->wte, c->wpe, c->B, c->T, c->C);
    return dot(c->out, c->R, (size_t)c->B * c->T * c->C);
}

static void test_encoder(void) {
    int B = 2, T = 3, C = 4, V = 5;
    int inp[6] = {1, 4, 1, 0, 1, 3}; // token 1 three times: its gradient sums three rows
    size_t N = (size_t)B * T * C;
    EncoderCtx c = {randn((size_t)V * C, 1), randn((size_t)T * C, 1), randn(N, 1), randn(N, 1), inp, B, T, C};
    double *dwte = callocCheck((size_t)V * C, sizeof(double)), *dwpe = callocCheck((size_t)T * C, sizeof(double));
    encoder_backward(dwte, dwpe, c.R, inp, B, T, C);
    fd_check("encoder: dwte", c.wte, dwte, (size_t)V * C, encoder_loss, &c);
    fd_check("encoder: dwpe", c.wpe, dwpe, (size_t)T * C, encoder_loss, &c);
    free(c.wte); free(c.wpe); free(c.out); free(c.R); free(dwte); free(dwpe);
}

// the whole model: d(mean loss)/d(every parameter), positions without a target included
typedef struct { GPT *model; int *inputs, *targets; int B, T; } ModelCtx;
static double model_loss(void *p) {
    ModelCtx *c = p;
    gpt_forward(c->model, c->inputs, c->targets, c->B, c->T);
    return c->model->mean_loss;
}

static void test_model(void) {
    GPTConfig cfg = {.max_seq_len = 6, .vocab_size = FIRST_MERGE + 8, .num_layers = 2, .num_heads = 2, .channels = 8};
    GPT model;
    gpt_build(&model, cfg);
    gpt_init(&model, 7);
    // random layernorm parameters and biases too, so no term hides behind a 0 or a 1
    for (size_t i = 0; i < model.num_parameters; i++) { model.params_memory[i] += 0.1 * random_normal(&test_rng); }
    int B = 2, T = 5, inputs[10], targets[10];
    for (int i = 0; i < B * T; i++) {
        inputs[i] = (int)(random_u64(&test_rng) % (uint64_t)cfg.vocab_size);
        targets[i] = (int)(random_u64(&test_rng) % (uint64_t)cfg.vocab_size);
    }
    targets[2] = -1;
    ModelCtx c = {&model, inputs, targets, B, T};
    model_loss(&c);
    gpt_zero_grad(&model);
    gpt_backward(&model, 1.0);
    double *analytic = mallocCheck(model.num_parameters * sizeof(double));
    memcpy(analytic, model.grads_memory, model.num_parameters * sizeof(double));
    fd_check("whole model: d(loss)/d(every parameter), V=268 L=2 C=8 NH=2 B=2 T=5", model.params_memory, analytic,
             model.num_parameters, model_loss, &c);
    free(analytic);
    gpt_free(&model);
}

// the pairwise reward loss: d(loss)/d(chosen) and d(loss)/d(rejected)
typedef struct { double *chosen, *rejected; int P; } RewardLossCtx;
static double reward_loss_fn(void *p) {
    RewardLossCtx *c = p;
    return reward_loss_forward(c->chosen, c->rejected, c->P);
}

static void test_reward_loss(void) {
    int P = 6;
    RewardLossCtx c = {randn(P, 3), randn(P, 3), P}; // margins from about -10 to 10: both branches of softplus
    double *dc = callocCheck(P, sizeof(double)), *dr = callocCheck(P, sizeof(double));
    reward_loss_backward(dc, dr, c.chosen, c.rejected, P);
    fd_check("reward loss -log sigmoid(r_chosen - r_rejected): d/dchosen", c.chosen, dc, P, reward_loss_fn, &c);
    fd_check("reward loss -log sigmoid(r_chosen - r_rejected): d/drejected", c.rejected, dr, P, reward_loss_fn, &c);
    free(c.chosen); free(c.rejected); free(dc); free(dr);
}

// a whole reward model: rewards read at each row's end, padded rows, the pairwise loss
typedef struct { GPT *model; int *inputs, *ends; double *rewards; int B, T; } RewardModelCtx;
static double reward_model_loss(void *p) {
    RewardModelCtx *c = p;
    gpt_forward(c->model, c->inputs, NULL, c->B, c->T);
    reward_gather(c->rewards, c->model->acts.values, c->ends, c->B, c->T);
    return reward_loss_forward(c->rewards, c->rewards + c->B / 2, c->B / 2);
}

static void test_reward_model(void) {
    GPTConfig cfg = {.max_seq_len = 7, .vocab_size = FIRST_MERGE + 8, .num_layers = 2, .num_heads = 2, .channels = 8, .scalar_head = 1};
    GPT model;
    gpt_build(&model, cfg);
    gpt_init(&model, 8);
    for (size_t i = 0; i < model.num_parameters; i++) { model.params_memory[i] += 0.1 * random_normal(&test_rng); } // the head too
    int B = 4, T = 7, inputs[28], ends[4] = {6, 3, 4, 5}; // rows 0, 1 chosen; 2, 3 rejected; padding after each end
    for (int i = 0; i < B * T; i++) { inputs[i] = (int)(random_u64(&test_rng) % (uint64_t)cfg.vocab_size); }
    double rewards[4], drewards[4] = {0}, dvalues[28];
    RewardModelCtx c = {&model, inputs, ends, rewards, B, T};
    reward_model_loss(&c);
    reward_loss_backward(drewards, drewards + 2, rewards, rewards + 2, 2);
    reward_scatter(dvalues, drewards, ends, B, T);
    gpt_zero_grad(&model);
    gpt_backward_values(&model, dvalues);
    double *analytic = mallocCheck(model.num_parameters * sizeof(double));
    memcpy(analytic, model.grads_memory, model.num_parameters * sizeof(double));
    fd_check("whole reward model: pairwise loss at <|end|> positions, padded rows, scalar head included", model.params_memory,
             analytic, model.num_parameters, reward_model_loss, &c);
    free(analytic);
    gpt_free(&model);
}

// PPO's two losses against their inputs: ratios from about 0.4 to 2.5 and advantages
// of both signs, so every branch of each max and clip is taken; a masked position
typedef struct { double *a, *b, *c; int *targets; int N, value; } PPOCtx;
static double ppo_loss_fn(void *p) {
    PPOCtx *c = p;
    return c->value ? ppo_value_loss_forward(c->a, c->b, c->c, c->targets, c->N, 0.2)
                    : ppo_policy_loss_forward(c->a, c->b, c->c, c->targets, c->N, 0.2);
}

static void test_ppo_losses(void) {
    int N = 40, targets[40];
    for (int i = 0; i < N; i++) { targets[i] = i % 7 == 3 ? -1 : 1; }
    double *logp = randn(N, 1.0), *logp_old = mallocCheck(N * sizeof(double)), *adv = randn(N, 1.0);
    for (int i = 0; i < N; i++) { logp_old[i] = logp[i] + 0.4 * random_normal(&test_rng); }
    double *grad = mallocCheck(N * sizeof(double));
    PPOCtx c = {logp, logp_old, adv, targets, N, 0};
    ppo_policy_loss_backward(grad, logp, logp_old, adv, targets, N, 0.2);
    fd_check("ppo policy loss (clipped surrogate): d/dlogp, both clip sides, masked positions", logp, grad, N, ppo_loss_fn, &c);
    double *v = randn(N, 1.0), *v_old = mallocCheck(N * sizeof(double)), *returns = randn(N, 1.0);
    for (int i = 0; i < N; i++) { v_old[i] = v[i] + 0.3 * random_normal(&test_rng); }
    PPOCtx cv = {v, v_old, returns, targets, N, 1};
    ppo_value_loss_backward(grad, v, v_old, returns, targets, N, 0.2);
    fd_check("ppo value loss (clipped): d/dv, inside and outside the clip range, masked positions", v, grad, N, ppo_loss_fn, &cv);
    free(logp); free(logp_old); free(adv); free(v); free(v_old); free(returns); free(grad);
}

// the whole policy: PPO's loss on the per-token log-probabilities of a forward pass,
// through gpt_backward_weighted; and the whole value model with the clipped value loss
typedef struct { GPT *model; int *inputs, *targets; double *old, *adv, *logp; int B, T; } PPOModelCtx;
static double ppo_model_loss(void *p) {
    PPOModelCtx *c = p;
    int N = c->B * c->T;
    if (c->model->config.scalar_head) {
        gpt_forward(c->model, c->inputs, NULL, c->B, c->T);
        return ppo_value_loss_forward(c->model->acts.values, c->old, c->adv, c->targets, N, 0.2);
    }
    gpt_forward(c->model, c->inputs, c->targets, c->B, c->T);
    for (int i = 0; i < N; i++) { c->logp[i] = -c->model->losses[i]; }
    return ppo_policy_loss_forward(c->logp, c->old, c->adv, c->targets, N, 0.2);
}

static void test_ppo_model(int scalar_head) {
    GPTConfig cfg = {.max_seq_len = 6, .vocab_size = FIRST_MERGE + 8, .num_layers = 2, .num_heads = 2, .channels = 8,
                     .scalar_head = scalar_head};
    GPT model;
    gpt_build(&model, cfg);
    gpt_init(&model, 9);
    for (size_t i = 0; i < model.num_parameters; i++) { model.params_memory[i] += 0.1 * random_normal(&test_rng); }
    int B = 2, T = 6, N = 12, inputs[12], targets[12];
    for (int i = 0; i < N; i++) {
        inputs[i] = (int)(random_u64(&test_rng) % (uint64_t)cfg.vocab_size);
        targets[i] = (int)(random_u64(&test_rng) % (uint64_t)cfg.vocab_size);
    }
    targets[0] = targets[1] = targets[7] = targets[11] = -1; // prompt and padding positions
    double logp[12], d[12], *adv = randn(N, 1.0), *old = mallocCheck(N * sizeof(double));
    PPOModelCtx c = {&model, inputs, targets, old, adv, logp, B, T};
    for (int i = 0; i < N; i++) { old[i] = 0.0; }
    ppo_model_loss(&c); // the old log-probabilities (or values): the current ones, moved a little
    const double *now = scalar_head ? model.acts.values : logp;
    for (int i = 0; i < N; i++) { old[i] = now[i] + 0.3 * random_normal(&test_rng); }
    ppo_model_loss(&c);
    gpt_zero_grad(&model);
    if (scalar_head) {
        ppo_value_loss_backward(d, model.acts.values, old, adv, targets, N, 0.2);
        gpt_backward_values(&model, d);
    } else {
        ppo_policy_loss_backward(d, logp, old, adv, targets, N, 0.2);
        for (int i = 0; i < N; i++) { d[i] = -d[i]; } // the model's losses are -logp
        gpt_backward_weighted(&model, d);
    }
    double *analytic = mallocCheck(model.num_parameters * sizeof(double));
    memcpy(analytic, model.grads_memory, model.num_parameters * sizeof(double));
    fd_check(scalar_head ? "whole value model: clipped value loss at response positions, every parameter"
                         : "whole policy: PPO clipped loss on per-token log-probs, every parameter",
             model.params_memory, analytic, model.num_parameters, ppo_model_loss, &c);
    free(analytic); free(adv); free(old);
    gpt_free(&model);
}

// DPO's loss against the four summed log-probabilities: implicit-reward margins h from
// about -6 to 6 (both branches of softplus), plain (eps 0) and with label smoothing
typedef struct { double *lc, *lr, *rc, *rr; int P; double beta, eps; } DPOLossCtx;
static double dpo_loss_fn(void *p) {
    DPOLossCtx *c = p;
    return dpo_loss_forward(c->lc, c->lr, c->rc, c->rr, c->P, c->beta, c->eps);
}

static void test_dpo_loss(void) {
    int P = 6;
    for (int k = 0; k < 2; k++) {
        DPOLossCtx c = {randn(P, 4), randn(P, 4), randn(P, 4), randn(P, 4), P, 0.7, k ? 0.1 : 0.0};
        double *dc = callocCheck(P, sizeof(double)), *dr = callocCheck(P, sizeof(double));
        dpo_loss_backward(dc, dr, c.lc, c.lr, c.rc, c.rr, P, c.beta, c.eps);
        fd_check(k ? "dpo loss with label smoothing 0.1: d/dlogp_chosen" : "dpo loss -log sigmoid(beta h): d/dlogp_chosen", c.lc,
                 dc, P, dpo_loss_fn, &c);
        fd_check(k ? "dpo loss with label smoothing 0.1: d/dlogp_rejected" : "dpo loss -log sigmoid(beta h): d/dlogp_rejected",
                 c.lr, dr, P, dpo_loss_fn, &c);
        free(c.lc); free(c.lr); free(c.rc); free(c.rr); free(dc); free(dr);
    }
}

// the whole policy under DPO: per-token log-probabilities of chosen and rejected rows,
// summed over each response (prompt and padding masked), the DPO loss against fixed
// reference sums
typedef struct { GPT *model; int *inputs, *targets; double *logp, *seq, *ref_seq; int P, T; } DPOModelCtx;
static double dpo_model_loss(void *p) {
    DPOModelCtx *c = p;
    gpt_forward(c->model, c->inputs, c->targets, 2 * c->P, c->T);
    gpt_logprobs(c->model, c->logp);
    sequence_logprobs(c->seq, c->logp, c->targets, 2 * c->P, c->T);
    return dpo_loss_forward(c->seq, c->seq + c->P, c->ref_seq, c->ref_seq + c->P, c->P, 0.5, 0.1);
}

static void test_dpo_model(void) {
    GPTConfig cfg = {.max_seq_len = 6, .vocab_size = FIRST_MERGE + 8, .num_layers = 2, .num_heads = 2, .channels = 8};
    GPT model;
    gpt_build(&model, cfg);
    gpt_init(&model, 10);
    for (size_t i = 0; i < model.num_parameters; i++) { model.params_memory[i] += 0.1 * random_normal(&test_rng); }
    enum { P = 2, T = 6, N = 2 * P * T };
    int inputs[N], targets[N];
    for (int i = 0; i < N; i++) {
        inputs[i] = (int)(random_u64(&test_rng) % (uint64_t)cfg.vocab_size);
        int t = i % T, row = i / T;
        targets[i] = t >= 1 + row % 2 && t < T - row % 3 ? (int)(random_u64(&test_rng) % (uint64_t)cfg.vocab_size) : -1;
    }
    double logp[N], dlogp[N], seq[2 * P], dseq[2 * P] = {0}, *ref_seq = randn(2 * P, 2.0);
    DPOModelCtx c = {&model, inputs, targets, logp, seq, ref_seq, P, T};
    dpo_model_loss(&c);
    dpo_loss_backward(dseq, dseq + P, seq, seq + P, ref_seq, ref_seq + P, P, 0.5, 0.1);
    sequence_logprobs_backward(dlogp, dseq, targets, 2 * P, T);
    gpt_zero_grad(&model);
    gpt_backward_logprobs(&model, dlogp);
    double *analytic = mallocCheck(model.num_parameters * sizeof(double));
    memcpy(analytic, model.grads_memory, model.num_parameters * sizeof(double));
    fd_check("whole policy: DPO loss on summed response log-probs (label smoothing 0.1), every parameter",
             model.params_memory, analytic, model.num_parameters, dpo_model_loss, &c);
    free(analytic); free(ref_seq);
    gpt_free(&model);
}

// GRPO's loss against logp: ratios on both sides of the clip range, advantages of
// both signs, log-ratios to the reference from about -1 to 1 (k3), responses of
// different lengths and masked positions
typedef struct { double *logp, *old, *ref, *adv; int *targets; int B, T; } GRPOCtx;
static double grpo_loss_fn(void *p) {
    GRPOCtx *c = p;
    return grpo_loss_forward(c->logp, c->old, c->ref, c->adv, c->targets, c->B, c->T, 0.2, 0.3);
}

static void test_grpo_loss(void) {
    enum { B = 4, T = 10, N = B * T };
    int targets[N];
    for (int i = 0; i < N; i++) { targets[i] = i % T >= 2 + i / T && i % T < T - (i / T) % 2 ? 1 : -1; }
    double *logp = randn(N, 1.0), *old = mallocCheck(N * sizeof(double)), *ref = mallocCheck(N * sizeof(double));
    double *adv = mallocCheck(N * sizeof(double)), grad[N];
    for (int i = 0; i < N; i++) {
        old[i] = logp[i] + 0.4 * random_normal(&test_rng);
        ref[i] = logp[i] + 0.5 * random_normal(&test_rng);
        adv[i] = i / T % 2 ? 1.3 : -0.8; // one advantage per response
    }
    GRPOCtx c = {logp, old, ref, adv, targets, B, T};
    grpo_loss_backward(grad, logp, old, ref, adv, targets, B, T, 0.2, 0.3);
    fd_check("grpo loss (clipped surrogate + beta k3, per-response means): d/dlogp", logp, grad, N, grpo_loss_fn, &c);
    free(logp); free(old); free(ref); free(adv);
}

// the whole policy under GRPO's loss
typedef struct { GPT *model; int *inputs, *targets; double *logp, *old, *ref, *adv; int B, T; } GRPOModelCtx;
static double grpo_model_loss(void *p) {
    GRPOModelCtx *c = p;
    gpt_forward(c->model, c->inputs, c->targets, c->B, c->T);
    gpt_logprobs(c->model, c->logp);
    return grpo_loss_forward(c->logp, c->old, c->ref, c->adv, c->targets, c->B, c->T, 0.2, 0.3);
}

static void test_grpo_model(void) {
    GPTConfig cfg = {.max_seq_len = 6, .vocab_size = FIRST_MERGE + 8, .num_layers = 2, .num_heads = 2, .channels = 8};
    GPT model;
    gpt_build(&model, cfg);
    gpt_init(&model, 11);
    for (size_t i = 0; i < model.num_parameters; i++) { model.params_memory[i] += 0.1 * random_normal(&test_rng); }
    enum { B = 2, T = 6, N = B * T };
    int inputs[N], targets[N];
    for (int i = 0; i < N; i++) {
        inputs[i] = (int)(random_u64(&test_rng) % (uint64_t)cfg.vocab_size);
        targets[i] = (int)(random_u64(&test_rng) % (uint64_t)cfg.vocab_size);
    }
    targets[0] = targets[1] = targets[6] = targets[11] = -1; // prompt and padding positions
    double logp[N], d[N], old[N], ref[N], adv[N];
    GRPOModelCtx c = {&model, inputs, targets, logp, old, ref, adv, B, T};
    for (int i = 0; i < N; i++) { old[i] = ref[i] = 0.0; adv[i] = i < T ? 0.9 : -1.1; }
    grpo_model_loss(&c);
    for (int i = 0; i < N; i++) {
        old[i] = logp[i] + 0.3 * random_normal(&test_rng);
        ref[i] = logp[i] + 0.3 * random_normal(&test_rng);
    }
    grpo_model_loss(&c);
    grpo_loss_backward(d, logp, old, ref, adv, targets, B, T, 0.2, 0.3);
    gpt_zero_grad(&model);
    gpt_backward_logprobs(&model, d);
    double *analytic = mallocCheck(model.num_parameters * sizeof(double));
    memcpy(analytic, model.grads_memory, model.num_parameters * sizeof(double));
    fd_check("whole policy: GRPO loss (surrogate + k3 KL) on per-token log-probs, every parameter", model.params_memory,
             analytic, model.num_parameters, grpo_model_loss, &c);
    free(analytic);
    gpt_free(&model);
}

int main(int argc, char **argv) {
    test_argc = argc;
    test_argv = argv;
    if (wanted("encoder")) { test_encoder(); }
    if (wanted("layernorm")) { test_layernorm(); }
    if (wanted("matmul")) { test_matmul(1, 3, 5, 4); } // fewer rows than MR: the dot-product path forward
    if (wanted("matmul")) { test_matmul(2, 7, 37, 40); } // the blocked path, with partial MR and NR panels
    if (wanted("matmul")) { test_matmul(1, 300, 4, 3); } // more rows than KC: dweight sums over two k-blocks
    if (wanted("attention")) { test_attention(); }
    if (wanted("gelu")) { test_gelu(); }
    if (wanted("residual")) { test_residual(); }
    if (wanted("crossentropy")) { test_crossentropy(); }
    if (wanted("model")) { test_model(); }
    if (wanted("reward_loss")) { test_reward_loss(); }
    if (wanted("reward_model")) { test_reward_model(); }
    if (wanted("ppo_losses")) { test_ppo_losses(); }
    if (wanted("ppo_model")) { test_ppo_model(0); }
    if (wanted("ppo_model")) { test_ppo_model(1); }
    if (wanted("dpo_loss")) { test_dpo_loss(); }
    if (wanted("dpo_model")) { test_dpo_model(); }
    if (wanted("grpo_loss")) { test_grpo_loss(); }
    if (wanted("grpo_model")) { test_grpo_model(); }
    check_unmatched_names();
    gemm_free();
    return checks_failed > 0;
}
