// A/B timing of two builds of train.c inside one process, for a machine too noisy to
// compare separate runs: test/bench/ab.sh builds each train.c as a shared object exposing
// ab_init and ab_step (the ab_model part below, compiled with -DAB_MODEL), and this
// driver alternates their training steps and reports the median of the per-round
// ratios, B's step time over A's. Both see the same moments of the machine. With
// "generate" in place of "step", each round instead generates min(T, 128) tokens with
// the KV cache, as `./train bench` does; with "products", it runs only the products
// of a step's linear layers (ab_products), to time the matmul engine alone.
//   usage: ab_step <rounds> <step|generate|products> <L> <C> <NH> <V> <T> <B> <a.so> <b.so>
#ifdef AB_MODEL
#define TESTING
#include TRAIN_C

static GPT ab_model;
static KVCache ab_kv;
static int ab_B, ab_T, ab_steps;
static int *ab_inputs, *ab_targets;

void ab_init(int L, int C, int NH, int V, int T, int B) {
    GPTConfig cfg = {.max_seq_len = T, .vocab_size = V, .num_layers = L, .num_heads = NH, .channels = C};
    gpt_build(&ab_model, cfg);
    gpt_init(&ab_model, 1337);
    ab_B = B;
    ab_T = T;
    ab_inputs = mallocCheck((size_t)B * T * sizeof(int));
    ab_targets = mallocCheck((size_t)B * T * sizeof(int));
    kvcache_init(&ab_kv, cfg);
    uint64_t rng = 42;
    for (int i = 0; i < B * T; i++) {
        ab_inputs[i] = (int)(random_u64(&rng) % (uint64_t)V);
        ab_targets[i] = (int)(random_u64(&rng) % (uint64_t)V);
    }
}

// one training step, as `./train bench` times it; returns the loss. Spelled out here
// rather than shared with train.c, so that older revisions can be timed too.
float ab_step(void) {
    gpt_zero_grad(&ab_model);
    gpt_forward(&ab_model, ab_inputs, ab_targets, ab_B, ab_T);
    gpt_backward(&ab_model, 1.0f);
    gpt_clip_grad_norm(&ab_model, 1.0f);
    adamw_update(&ab_model, 1e-4f, ADAM_BETA1, ADAM_BETA2, ADAM_EPS, 0.1f, ++ab_steps, 0);
    return ab_model.mean_loss;
}

// min(T, 128) tokens through the KV cache, fed one at a time from position 0; returns
// the first logit of the last one
float ab_generate(void) {
    int G = ab_T < 128 ? ab_T : 128;
    float *logits = NULL;
    for (int pos = 0; pos < G; pos++) { logits = gpt_forward_cached(&ab_model, &ab_kv, ab_inputs[pos], pos); }
    return logits[0];
}
// The products of one step's linear layers alone, as `./train bench` times them
// (bench_linear_layers): for each layer's four linear layers and the LM head, the
// forward product and the backward's dinp, dW and db, one set of operands per shape.
// Returns an element of the last weight gradient. Spelled out here, as ab_step is, so
// that older revisions can be timed too.
float ab_products(void) {
    static float *w, *dw, *bias, *dbias, *inp, *dinp, *out, *dout; // allocated on the first call, kept
    int C = ab_model.config.channels, V = ab_model.config.vocab_size, BT = ab_B * ab_T, wide = V > 4 * C ? V : 4 * C;
    if (!w) {
        w = model_calloc((size_t)C * wide, sizeof(float)); dw = model_calloc((size_t)C * wide, sizeof(float));
        bias = model_calloc(4 * (size_t)C, sizeof(float)); dbias = model_calloc(4 * (size_t)C, sizeof(float));
        inp = model_calloc((size_t)BT * wide, sizeof(float)); dinp = model_calloc((size_t)BT * wide, sizeof(float));
        out = model_calloc((size_t)BT * wide, sizeof(float)); dout = model_calloc((size_t)BT * wide, sizeof(float));
        uint64_t rng = 7;
        for (size_t i = 0; i < (size_t)C * wide; i++) { w[i] = 0.02f * (random_f32(&rng) - 0.5f); }
        for (size_t i = 0; i < (size_t)BT * wide; i++) { inp[i] = random_f32(&rng) - 0.5f; dout[i] = 1e-3f * (random_f32(&rng) - 0.5f); }
    }
    int shapes[5][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}, {C, V}}; // (in, out) channels
    for (int s = 0; s < 5; s++) {
        for (int l = 0; l < (s < 4 ? ab_model.config.num_layers : 1); l++) {
            matmul_forward(out, inp, w, s < 4 ? bias : NULL, 1, BT, shapes[s][0], shapes[s][1]);
            matmul_backward(dinp, dw, s < 4 ? dbias : NULL, dout, inp, w, 1, BT, shapes[s][0], shapes[s][1]);
        }
    }
    return dw[0];
}
#else
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int compare(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof(double), compare);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    if (argc != 11 || (strcmp(argv[2], "step") && strcmp(argv[2], "generate") && strcmp(argv[2], "products"))) {
        fprintf(stderr, "usage: %s <rounds> <step|generate|products> <L> <C> <NH> <V> <T> <B> <a.so> <b.so>\n", argv[0]);
        return 2;
    }
    int rounds = atoi(argv[1]), dims[6], generate = !strcmp(argv[2], "generate"), products = !strcmp(argv[2], "products");
    for (int i = 0; i < 6; i++) { dims[i] = atoi(argv[3 + i]); }
    if (rounds < 1 || rounds > 1000) { fprintf(stderr, "rounds: 1 to 1000\n"); return 2; }
    void (*init[2])(int, int, int, int, int, int);
    float (*step[2])(void);
    for (int v = 0; v < 2; v++) {
        void *lib = dlopen(argv[9 + v], RTLD_NOW | RTLD_LOCAL);
        if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        *(void **)&init[v] = dlsym(lib, "ab_init");
        *(void **)&step[v] = dlsym(lib, generate ? "ab_generate" : products ? "ab_products" : "ab_step");
        if (!init[v] || !step[v]) { fprintf(stderr, "%s: no ab_init or ab_%s\n", argv[9 + v], argv[2]); return 1; }
        init[v](dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]);
        step[v](); // the first step allocates and warms up: not timed
    }
    double *t[2], *ratio = malloc(rounds * sizeof(double));
    float result[2]; // the loss after the last step, or a logit of the last token
    for (int v = 0; v < 2; v++) { t[v] = malloc(rounds * sizeof(double)); }
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            int v = (r + k) % 2; // alternate which goes first
            double t0 = now();
            result[v] = step[v]();
            t[v][r] = now() - t0;
        }
        ratio[r] = t[1][r] / t[0][r];
    }
    for (int v = 0; v < 2; v++) {
        if (generate) {
            printf("%s: median %.1f ms per %d tokens, a logit of the last %.6f\n", v ? "B" : "A", 1e3 * median(t[v], rounds),
                   dims[4] < 128 ? dims[4] : 128, result[v]);
        } else if (products) {
            printf("%s: median %.0f ms for the linear layers' products of a step, an element of dW %.6g\n", v ? "B" : "A",
                   1e3 * median(t[v], rounds), result[v]);
        } else {
            printf("%s: median %.0f ms/step, loss after %d steps %.6f\n", v ? "B" : "A", 1e3 * median(t[v], rounds), rounds + 1,
                   result[v]);
        }
    }
    printf("B / A, the median of %d paired rounds: %.3f\n", rounds, median(ratio, rounds));
    free(ratio);
    free(t[0]);
    free(t[1]);
    return 0;
}
#endif
