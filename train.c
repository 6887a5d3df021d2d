/*
train.c: a GPT trained in four stages, in one file of C.

From bytes to a chat model: a byte-level BPE tokenizer, GPT-2 with every forward and
backward pass written by hand, AdamW, and the four stages of training a chat model:
pretraining by next-token prediction, supervised fine-tuning (SFT) on prompt/response
pairs, a reward model trained on human-style preferences, and RLHF with PPO against
that reward model; and stage 4's two newer alternatives from the same SFT model, DPO
(from the preference pairs directly) and GRPO (PPO with a group baseline, no critic).

Left out on purpose:
  - no dependencies beyond libc and (optionally) OpenMP: every matrix multiply is ours,
    so a reader can see the whole computation;
  - fp32 only: no mixed precision, no fused-kernel libraries, nothing hidden;
  - no dropout: at these sizes and step counts it only slows learning;
  - one machine, one process: no distributed training.

Run it:
    make run-cpu     builds, generates data/world, runs the four stages (the fourth three ways), prints a table
    make test        every check, against finite differences and PyTorch
    make run-gpu     the same on an NVIDIA GPU: train.cu replaces the functions marked
                     REPLACED_ON_GPU with kernels, and the rest of this file runs as is

Sections (search for the banner titles). The algorithm comes first, in the order a
reader needs it; a reader who stops at main has read all of it:
   1. layers: forward and backward of each building block
   2. losses for the later stages
   3. the model: GPT-2 parameters, activations, forward, backward
   4. the optimizer: AdamW, learning-rate schedule, gradient clipping, frozen embedding rows
   5. sampling: temperature and top-k, generation with a KV cache
   6. the tokenizer: bytes <-> token ids (byte-level BPE)
   7. data: text -> batches of token ids
   8. settings: every flag, and each stage's defaults
   9. stage 1: pretraining
  10. stage 2: supervised fine-tuning
  11. stage 3: reward modeling
  12. stage 4: RLHF with PPO
  13. stage 4 without a reward model: DPO
  14. stage 4 without a critic: GRPO
  15. other commands: answer, score, sample
  16. main
Then the machinery, which the sections call by name (declared just below):
  Appendix A. the matmul engine
  Appendix B. JSON and UTF-8
  Appendix C. files, checkpoints and the tokenizer's file format
  Appendix D. logs, curves and stage records
  Appendix E. bench
  Appendix F. the command line: flags, usage, the settings table
  Appendix G. utilities: checked libc calls, RNG, timer
  Appendix H. other programs' formats: Hugging Face transformers and llm.c

Notation, once for the whole file: B batch size, T time (sequence length), C channels,
V vocabulary size, L layers, NH heads, HS head size (C / NH), OC output channels.
Shapes are written (B,T,C) for row-major arrays. A leading `d` means "gradient of
the loss with respect to" (dinp, dweight). Weights are stored (out, in), the layout
of torch.nn.Linear. Every backward function ADDS (+=) into its gradient buffers,
so callers zero them first.

References, by short name:
  GPT-2     Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"
  AdamW     Loshchilov & Hutter 2017, arXiv:1711.05101
  BPE       Sennrich et al. 2015, arXiv:1508.07909
  GELU      Hendrycks & Gimpel 2016, arXiv:1606.08415
  InstructGPT  Ouyang et al. 2022, arXiv:2203.02155 (SFT, reward model, RLHF)
  PPO       Schulman et al. 2017, arXiv:1707.06347
  GAE       Schulman et al. 2016, arXiv:1506.02438
  Ziegler   Ziegler et al. 2019, arXiv:1909.08593 (per-token KL penalty, adaptive KL)
  DPO       Rafailov et al. 2023, arXiv:2305.18290
  GRPO      Shao et al. 2024, DeepSeekMath, arXiv:2402.03300
*/
#define _POSIX_C_SOURCE 200809L // fsync, clock_gettime
#include <assert.h>
#include <errno.h>
#include <float.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tgmath.h> // exp, sqrt, tanh... follow the type of their argument (see test/test_train.c)
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

// glibc's libmvec has vector versions of expf (16 at a time with AVX-512, 8 with
// AVX2). Declaring that here lets gcc vectorize the loops that call exp on floats
// (GELU above all), which it otherwise runs one call at a time. They are accurate to
// about 2e-7 (libm's scalar expf: 6e-8). __typeof__ keeps the declaration float even
// where test/test_grad.c turns every float into a double, and exp of a double stays
// scalar. Vectorizing a call needs -fno-math-errno (the Makefile).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
__attribute__((simd("notinbranch"))) __typeof__(expf) expf;
#endif

// ----------------------------------------------------------------------------
// Declarations: what the sections below use before the part of the file that defines
// it. The machinery lives in the appendices after main; these lines say where.

// train.cu runs this same program on a GPU. It supplies its own versions of the
// functions marked REPLACED_ON_GPU: the layers and the optimizer's loops, which become
// kernels, and the allocation of model memory, which becomes memory that both the CPU
// and the GPU can address (CUDA managed memory). Every other line of this file runs
// unchanged in both builds. In the GPU build (TRAIN_GPU) the mark makes these C
// versions weak symbols, which the linker drops in favour of train.cu's; noinline
// keeps the compiler from copying them into their callers first.
#ifdef TRAIN_GPU
#define REPLACED_ON_GPU __attribute__((weak, noinline))
#else
#define REPLACED_ON_GPU
#endif

// matmul(c, a, b, M, N, K, flags): c (M,N) (+)= op(a) (M,K) . op(b) (K,N), defined by
// matmul_reference's loops (section 1) and computed by the engine (appendix A)
enum { TRANSPOSE_A = 1, TRANSPOSE_B = 2, ACCUMULATE = 4, CAUSAL_OUT = 8, CAUSAL_A = 16 };
static void matmul(float *c, const float *a, const float *b, int M, int N, int K, int flags);

// the streams of the RNG (appendix G), one per purpose, all derived from the seed (-s)
enum { RNG_INIT = 1, RNG_DATA = 2, RNG_SAMPLE = 3, RNG_KL = 4 };

// the special tokens of the chat template (section 6): after the 256 bytes, before the merges
enum { TOKEN_EOT = 256, TOKEN_USER, TOKEN_ASSISTANT, TOKEN_END, NUM_SPECIAL = 4, FIRST_MERGE = 256 + NUM_SPECIAL };
static const char *SPECIAL_TOKENS[NUM_SPECIAL] = {"<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"};
// a set of special tokens at which generation stops (section 5)
#define STOP_AT(token) (1u << ((token) - TOKEN_EOT))
static int is_stop(int token, unsigned stops) { return token >= TOKEN_EOT && token < FIRST_MERGE && (stops & STOP_AT(token)); }
// where generated tokens go as they are drawn: put(ctx, token)
typedef struct {
    void (*put)(void *ctx, int token);
    void *ctx;
} TokenSink;

// the structs that the prototypes below name, each defined in its section
typedef struct GPT GPT;                 // 3. the model
typedef struct TrainState TrainState;   // 3. the model
typedef struct Tokenizer Tokenizer;     // 6. the tokenizer
typedef struct ChatData ChatData;       // 7. data
typedef struct DataLoader DataLoader;   // 7. data
typedef struct Config Config;           // 8. settings
typedef struct StageResult StageResult; // 8. settings
typedef struct RewardStats RewardStats; // 11. stage 3: reward modeling
typedef struct Rollouts Rollouts;       // 12. stage 4: RLHF with PPO
typedef struct PPOStats PPOStats;       // 12. stage 4: RLHF with PPO
typedef struct DPOStats DPOStats;       // 13. stage 4 without a reward model: DPO
typedef struct Progress Progress;       // Appendix D

// Appendix B's two types, which the data and the stages hold: a growable, always
// NUL-terminated byte string, which JSON lines are read into and written from, and the
// records of a JSONL file
typedef struct {
    char *s;
    size_t len, cap;
} Str;

typedef struct {
    int count, nkeys;
    char **values; // (count, nkeys) malloc'd strings
} JsonlRecords;

// bytes on their way out as UTF-8: a character's first bytes wait here for the rest
typedef struct {
    unsigned char pending[4];
    int n;
} Utf8Stream;

// the non-blank lines of a JSONL file, split in place in one buffer
typedef struct {
    char *text;
    char **lines;
    int *numbers; // each line's number in the file, from 1
    int count;
} JsonlLines;

// A conversation, as the chat template (section 7) lays it out: turns of a role, in
// order. train marks the assistant turns that SFT computes its loss on.
enum { ROLE_USER, ROLE_ASSISTANT, ROLE_SYSTEM, NUM_ROLES };
typedef struct {
    int role, train;
    char *content;
} Turn;
typedef struct {
    Turn *turns;
    int n;
    int listed; // read from a list of messages (else from a string: one turn)
} Chat;

// Appendix G, utilities: checked libc calls (each wrapper has the signature of the call it
// wraps, and on failure names the caller's file and line, what went wrong and what to try),
// the RNG, the clock
static void fail(const char *file, int line, const char *fmt, ...);
static FILE *fopen_check(const char *path, const char *mode, const char *file, int line);
static void fread_check(void *ptr, size_t size, size_t nmemb, FILE *f, const char *file, int line);
static void fwrite_check(const void *ptr, size_t size, size_t nmemb, FILE *f, const char *file, int line);
static void fclose_check(FILE *f, const char *file, int line);
static void *malloc_check(size_t size, const char *file, int line);
static void *calloc_check(size_t n, size_t size, const char *file, int line);
static void *calloc_aligned_check(size_t n, size_t size, const char *file, int line);
static uint64_t random_u64(uint64_t *state);
static uint64_t rng_stream(uint64_t seed, uint64_t purpose);
static float random_f32(uint64_t *state);
static double random_normal(uint64_t *state);
static double now_seconds(void);
static void shuffle(int *x, int n, uint64_t *rng);
static double median(double *x, int n);
#define FAIL(...) fail(__FILE__, __LINE__, __VA_ARGS__)
#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)
#define freadCheck(ptr, size, nmemb, f) fread_check(ptr, size, nmemb, f, __FILE__, __LINE__)
#define fwriteCheck(ptr, size, nmemb, f) fwrite_check(ptr, size, nmemb, f, __FILE__, __LINE__)
#define fcloseCheck(f) fclose_check(f, __FILE__, __LINE__)
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)
#define callocCheck(n, size) calloc_check(n, size, __FILE__, __LINE__)
#define callocAlignedCheck(n, size) calloc_aligned_check(n, size, __FILE__, __LINE__)

// Appendix A, the matmul engine
void gemm_free(void);

// Appendix B, JSON lines and a growable string
static void str_add(Str *b, const char *s, size_t n);
static void str_clear(Str *b);
static void str_free(Str *b);
static const char *str_cstr(const Str *b);
static void json_write_string(Str *out, const char *s);
static void utf8_stream_put(Utf8Stream *u, const char *bytes, size_t n, Str *out);
static void utf8_stream_end(Utf8Stream *u, Str *out);
static void json_write_object(Str *out, const char **keys, const char **values, int n);
void jsonl_free(JsonlRecords *records);
void jsonl_lines_free(JsonlLines *l);
const char *jsonl_lines(const char *path, JsonlLines *out, char *err, size_t err_size);
static const char *json_find(const char *line, const char *key, const char **value);
static const char *json_get_chat(const char *line, const char *key, int role, Chat *out);
static void chat_add(Chat *c, int role, const char *content, size_t len);
static void json_write_chat(Str *out, const Chat *c);
void chat_free(Chat *c);
const char *jsonl_read(const char *path, const char **keys, int nkeys, JsonlRecords *records, char *err,
                       size_t err_size);

// Appendix C, files: checkpoints, the tokenizer's file, the output directory
void checkpoint_write(const char *path, const GPT *model, const TrainState *state, int with_optimizer);
static FILE *file_begin(const char *path);
void file_commit(const char *path);
void checkpoint_save(const char *path, const GPT *model, const TrainState *state, int with_optimizer);
void checkpoint_load(const char *path, GPT *model, int want_kinds, TrainState *state);
static char *read_whole_file(const char *path, size_t *size);
static long file_size(FILE *f, const char *path);
static void out_path(char *buf, size_t size, const Config *cfg, const char *name);
static void dir_path(char *buf, size_t size, const char *dir, const char *name);
static void make_out_dir(const Config *cfg);
void load_or_train_tokenizer(Tokenizer *tok, const Config *cfg);
void tokenizer_save(const Tokenizer *tok, const char *path);
void tokenizer_load(Tokenizer *tok, const char *path);
static const char *resume_path(const Config *cfg, const char *name, char *buf, size_t size);
void load_tokenizer_for(Tokenizer *tok, const Config *cfg, GPT *model, const char *model_path);
static void stage_begin(const Config *cfg, const char *path, GPT *model, TrainState *state, Tokenizer *tok, int want_kinds);
static void pretrain_open(const Config *cfg, Tokenizer *tok, DataLoader *train, DataLoader *val, GPT *model,
                          TrainState *state);
static void pretrain_close(Tokenizer *tok, DataLoader *train, DataLoader *val, GPT *model);
static void stage_open(const Config *cfg, int own, int want_kinds, GPT *model, TrainState *state, Tokenizer *tok);
static void stage_fresh_start(GPT *model, TrainState *state, int kind, const Config *cfg);
static void policy_open(const Config *cfg, const char *command, int own, GPT *policy, GPT *ref, GPT *reward,
                        TrainState *state, Tokenizer *tok);
static void rlhf_open(const Config *cfg, GPT *policy, GPT *ref, GPT *value, GPT *reward, TrainState *state,
                      TrainState *value_state, Tokenizer *tok);
static void policy_save(const Config *cfg, const GPT *policy, const TrainState *state, const char *name);
static void rlhf_save(const Config *cfg, int iter, const GPT *policy, const TrainState *state, const GPT *value,
                      const TrainState *value_state);
static void load_weights(GPT *model, const char *path, int want_kinds);
static int open_reward_model(const Config *cfg, const GPT *policy, GPT *reward, int required);
static const char *reward_model_path(const Config *cfg, char *buf, size_t size);
static int save_due(const Config *cfg, int done);

// Appendix D, logs, curves and stage records
static FILE *open_log(const Config *cfg, const char *name, int step);
static Progress *progress_open(const Config *cfg, const char *log_name, int first_step);
static int progress_close(Progress *p, const Config *cfg, const char *stage, const char *checkpoint);
static void log_step(Progress *p, const Config *cfg, int step, float loss, float lr, float norm, double tokens);
static void log_val_loss(Progress *p, const char *label, float val_loss);
static void log_reward_step(Progress *p, const Config *cfg, int step, float loss, float acc, float lr, float norm);
static void log_reward_eval(Progress *p, const RewardStats *st, int pairs);
static void log_rlhf_iteration(Progress *p, const Config *cfg, int iter, const Rollouts *r, const PPOStats *st, float kl,
                               float beta, float entropy, double tail[2]);
static void log_grpo_iteration(Progress *p, const Config *cfg, int iter, const Rollouts *r, const PPOStats *st, float kl,
                               float entropy, float flat, double tail[2]);
static void print_dpo_stats(const char *when, const DPOStats *st);
static void log_dpo_step(Progress *p, const Config *cfg, int step, const DPOStats *st, float lr, float norm);
static void log_dpo_eval(Progress *p, const DPOStats *st);
static void finish_step(Progress *p, GPT *model, TrainState *state, const Config *cfg, int step, const char *name);
static void print_chat_data(const char *path, const ChatData *d);
void print_sample(GPT *model, const Tokenizer *tok, const char *prompt, const int *fallback, int gen_len,
                  float temperature, int top_k, uint64_t *rng);
void plot_stage(const Config *cfg, const char *stage);
void record_stage(const Config *cfg, const char *stage, const StageResult *res, double seconds);
static void print_reward_stats(const char *when, const RewardStats *st, int pairs);

// Appendix E, bench
void command_bench(const Config *cfg);

// Appendix H, other programs' formats, and the Unicode classes of GPT-2's chunks
enum { CLASS_OTHER, CLASS_LETTER, CLASS_NUMBER, CLASS_SPACE };
static int unicode_class(const unsigned char *s, size_t n, int *len);
void export_hf(const GPT *model, int kind, const Tokenizer *tok, const char *dir);
void export_llmc(const GPT *model, const Tokenizer *tok, const char *dir);
int import_hf(const char *dir, const char *tokenizer_path, GPT *model, Tokenizer *tok);

// Section 15, other commands: answering prompts, which the stages do too
static void stage_answers(GPT *model, const Tokenizer *tok, const Config *cfg, const char *name, StageResult *res);
static void alignment_answers(GPT *policy, GPT *ref, GPT *reward, const Tokenizer *tok, const Config *cfg, const char *name,
                              StageResult *res);
float answer_prompts(GPT *model, const Tokenizer *tok, const char *prompts_path, const char *out, float temperature,
                     int top_k, int max_new, uint64_t *rng, GPT *reward);

// ----------------------------------------------------------------------------
// 1. layers: forward and backward of each building block

// Passes over fewer elements than this run on one thread: starting the threads costs
// more than they save (generation with the KV cache makes about 60 passes a token over
// single rows of C or 4C values).
#define SMALL_PASS (1 << 14)

// encoder: token embedding plus position embedding
//   out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
// out (B,T,C), inp (B,T) token ids, wte (V,C), wpe (maxT,C)
REPLACED_ON_GPU void encoder_forward(float *out, const int *inp, const float *wte, const float *wpe, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *out_bt = out + ((size_t)b * T + t) * C;
            const float *wte_ix = wte + (size_t)inp[b * T + t] * C, *wpe_t = wpe + (size_t)t * C;
            for (int i = 0; i < C; i++) { out_bt[i] = wte_ix[i] + wpe_t[i]; }
        }
    }
}

// in the forward pass out = wte[ix] + wpe[t], so both receive dout unchanged.
// Serial on purpose: two positions may share a token, and a fixed order of the
// additions into dwte keeps the result independent of the thread count.
REPLACED_ON_GPU void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *dout_bt = dout + ((size_t)b * T + t) * C;
            float *dwte_ix = dwte + (size_t)inp[b * T + t] * C, *dwpe_t = dwpe + (size_t)t * C;
            for (int i = 0; i < C; i++) {
                dwte_ix[i] += dout_bt[i];
                dwpe_t[i] += dout_bt[i];
            }
        }
    }
}

// layernorm: normalize each row to zero mean and unit variance, then scale and shift
//   mean = sum(x)/C   var = sum((x-mean)^2)/C   rstd = 1/sqrt(var + 1e-5)
//   out = (x - mean) * rstd * weight + bias
// out, inp (B,T,C); mean, rstd (B,T) saved for backward; weight, bias (C)
// Ref: Ba et al. 2016, arXiv:1607.06450; the derivation of the backward in doc/exercises.md (exercise 2)
REPLACED_ON_GPU void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                       const float *bias, int B, int T, int C) {
    #pragma omp parallel for if ((size_t)B * T * C >= SMALL_PASS)
    for (int bt = 0; bt < B * T; bt++) {
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
}

// in the forward pass out = norm * weight + bias, with norm = (x - mean) * rstd, so
//   dbias += dout, dweight += dout * norm, and with dnorm = dout * weight:
//   dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
REPLACED_ON_GPU void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                        const float *weight, const float *mean, const float *rstd, int B, int T, int C) {
    // pass 1: dinp, one row (b,t) at a time
    #pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) {
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
    // pass 2: dweight and dbias, sums over the rows (b,t) in order. A thread takes a
    // strip of COLS channels and walks the rows, so that its reads are contiguous: one
    // channel at a time read a cache line per row for 1 float of it, and took 3.0 ms
    // where this takes 0.74 (at S, B*T = 2048, C = 384, 13 times a step)
    enum { COLS = 64 };
    #pragma omp parallel for
    for (int i0 = 0; i0 < C; i0 += COLS) {
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
}

// matmul, the product every layer below is built on:
//   c (M,N) = op(a) (M,K) . op(b) (K,N),   c[i][j] = sum_k op(a)[i][k] op(b)[k][j]
// op(a) is a (M,K), or with TRANSPOSE_A the transpose of a stored (K,M); op(b) is b
// (K,N), or with TRANSPOSE_B the transpose of b stored (N,K); with ACCUMULATE the
// product is added to c. All row-major. These loops define the numbers; the layers
// call matmul() (declared at the top), the engine of appendix A, which computes the
// same product fast, and the tests hold it to these loops. Two more flags are promises
// the engine may use to skip work, and these loops need neither: CAUSAL_OUT, only the
// c[i][j] with j <= i are wanted (the rest may be left as anything), and CAUSAL_A, a
// (square, as stored) is zero above its diagonal.
void matmul_reference(float *c, const float *a, const float *b, int M, int N, int K, int flags) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float sum = 0.0f;
            for (int k = 0; k < K; k++) {
                float a_ik = flags & TRANSPOSE_A ? a[(size_t)k * M + i] : a[(size_t)i * K + k];
                float b_kj = flags & TRANSPOSE_B ? b[(size_t)j * K + k] : b[(size_t)k * N + j];
                sum += a_ik * b_kj;
            }
            float *c_ij = c + (size_t)i * N + j;
            *c_ij = flags & ACCUMULATE ? *c_ij + sum : sum;
        }
    }
}

// matmul_forward: a linear layer
//   out[b,t,o] = bias[o] + sum_i inp[b,t,i] * weight[o,i]
// out (B,T,OC), inp (B,T,C), weight (OC,C), bias (OC) or NULL
REPLACED_ON_GPU void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int B, int T,
                                    int C, int OC) {
    int BT = B * T;
    // out (BT,OC) = inp (BT,C) . weight^T (C,OC)
    matmul(out, inp, weight, BT, OC, C, TRANSPOSE_B);
    if (bias) {
        #pragma omp parallel for if ((size_t)BT * OC >= SMALL_PASS)
        for (int bt = 0; bt < BT; bt++) {
            for (int o = 0; o < OC; o++) { out[(size_t)bt * OC + o] += bias[o]; }
        }
    }
}

// in the forward pass out = inp . weight^T + bias, so
//   dinp += dout . weight        (BT,OC) . (OC,C)
//   dweight += dout^T . inp      (OC,BT) . (BT,C)
//   dbias += sum over (b,t) of dout
REPLACED_ON_GPU void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                     const float *weight, int B, int T, int C, int OC) {
    int BT = B * T;
    matmul(dinp, dout, weight, BT, C, OC, ACCUMULATE);
    matmul(dweight, dout, inp, OC, C, BT, TRANSPOSE_A | ACCUMULATE);
    if (dbias) {
        // sums over the rows in order, a strip of COLS channels per thread as in
        // layernorm_backward (one channel at a time: 81 ms for the MLP's first layer at S,
        // against 77)
        enum { COLS = 64 };
        #pragma omp parallel for
        for (int o0 = 0; o0 < OC; o0 += COLS) {
            int n = OC - o0 < COLS ? OC - o0 : COLS;
            float sum[COLS] = {0};
            for (int bt = 0; bt < BT; bt++) {
                for (int o = 0; o < n; o++) { sum[o] += dout[(size_t)bt * OC + o0 + o]; }
            }
            for (int o = 0; o < n; o++) { dbias[o0 + o] += sum[o]; }
        }
    }
}

// x (n,) <- softmax(scale * x), in place: the attention probabilities of one query row
//   x[i] = exp(scale * x[i] - m) / sum_j exp(scale * x[j] - m),   m = max_j scale * x[j] (for stability)
static void scaled_softmax(float *x, int n, float scale) {
    float maxval = -FLT_MAX, sum = 0.0f;
    for (int i = 0; i < n; i++) { x[i] *= scale; }
    #pragma omp simd reduction(max : maxval) // (the largest value is the same in any order)
    for (int i = 0; i < n; i++) { maxval = x[i] > maxval ? x[i] : maxval; }
    for (int i = 0; i < n; i++) { x[i] = exp(x[i] - maxval); }
    for (int i = 0; i < n; i++) { sum += x[i]; }
    for (int i = 0; i < n; i++) { x[i] /= sum; }
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
REPLACED_ON_GPU void attention_forward(float *out, float *heads, float *att, const float *inp, int B, int T, int C,
                                       int NH) {
    int HS = C / NH;
    size_t BTC = (size_t)B * T * C;
    float *q = heads, *k = heads + BTC, *v = heads + 2 * BTC, *y = heads + 3 * BTC;
    float scale = 1.0f / sqrt((float)HS);
    // pass 1: split into heads, q[b,h,t,i] = inp[b,t,h*HS+i] (k and v: C and 2C further on)
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
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
    }
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            size_t bh = (size_t)b * NH + h;
            const float *q_bh = q + bh * T * HS, *k_bh = k + bh * T * HS, *v_bh = v + bh * T * HS;
            float *att_bh = att + bh * T * T, *y_bh = y + bh * T * HS;
            // pass 2: the scores q k^T (T,T), wanted only where t2 <= t
            matmul(att_bh, q_bh, k_bh, T, T, HS, TRANSPOSE_B | CAUSAL_OUT);
            // pass 3: each row t, scaled by 1/sqrt(HS), through a softmax over t2 <= t
            for (int t = 0; t < T; t++) {
                float *row = att_bh + (size_t)t * T;
                scaled_softmax(row, t + 1, scale);
                for (int t2 = t + 1; t2 < T; t2++) { row[t2] = 0.0f; } // the future
            }
            // pass 4: y (T,HS) = att v, where att is zero above the diagonal
            matmul(y_bh, att_bh, v_bh, T, HS, T, CAUSAL_A);
        }
    }
    // pass 5: merge the heads, out[b,t,h*HS+i] = y[b,h,t,i]
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *out_bt = out + ((size_t)b * T + t) * C;
            for (int h = 0; h < NH; h++) {
                const float *y_bht = y + (((size_t)b * NH + h) * T + t) * HS;
                for (int i = 0; i < HS; i++) { out_bt[h * HS + i] = y_bht[i]; }
            }
        }
    }
}

// Backward through the five passes above, in reverse. dheads (4,B,NH,T,HS) receives
// dq, dk, dv and dy (zeroed by the caller, as every gradient); datt (B,NH,T,T) is
// scratch that ends up holding the gradient of the scores.
REPLACED_ON_GPU void attention_backward(float *dinp, float *dheads, float *datt, const float *dout, const float *heads,
                                        const float *att, int B, int T, int C, int NH) {
    int HS = C / NH;
    size_t BTC = (size_t)B * T * C;
    const float *q = heads, *k = heads + BTC, *v = heads + 2 * BTC;
    float *dq = dheads, *dk = dheads + BTC, *dv = dheads + 2 * BTC, *dy = dheads + 3 * BTC;
    float scale = 1.0f / sqrt((float)HS);
    // pass 5 merged the heads, so dy[b,h,t,i] += dout[b,t,h*HS+i]
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *dout_bt = dout + ((size_t)b * T + t) * C;
            for (int h = 0; h < NH; h++) {
                float *dy_bht = dy + (((size_t)b * NH + h) * T + t) * HS;
                for (int i = 0; i < HS; i++) { dy_bht[i] += dout_bt[h * HS + i]; }
            }
        }
    }
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            size_t bh = (size_t)b * NH + h;
            const float *q_bh = q + bh * T * HS, *k_bh = k + bh * T * HS, *v_bh = v + bh * T * HS;
            const float *att_bh = att + bh * T * T, *dy_bh = dy + bh * T * HS;
            float *dq_bh = dq + bh * T * HS, *dk_bh = dk + bh * T * HS, *dv_bh = dv + bh * T * HS;
            float *datt_bh = datt + bh * T * T;
            // pass 4 was y = att v, so
            //   datt = dy v^T    (T,HS) . (HS,T), wanted only where t2 <= t
            //   dv += att^T dy   (T,T) . (T,HS)
            matmul(datt_bh, dy_bh, v_bh, T, T, HS, TRANSPOSE_B | CAUSAL_OUT);
            matmul(dv_bh, att_bh, dy_bh, T, HS, T, TRANSPOSE_A | CAUSAL_A | ACCUMULATE);
            // pass 3 was att = softmax(scale * scores) along each row, so with the scale folded in
            //   dscores[t2] = scale * att[t2] * (datt[t2] - sum_t3 att[t3] * datt[t3]),  0 above the diagonal
            for (int t = 0; t < T; t++) {
                const float *att_row = att_bh + (size_t)t * T;
                float *row = datt_bh + (size_t)t * T, weighted = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) { weighted += att_row[t2] * row[t2]; }
                for (int t2 = 0; t2 <= t; t2++) { row[t2] = scale * att_row[t2] * (row[t2] - weighted); }
                for (int t2 = t + 1; t2 < T; t2++) { row[t2] = 0.0f; }
            }
            // pass 2 was scores = q k^T, so
            //   dq += dscores k     (T,T) . (T,HS)
            //   dk += dscores^T q   (T,T) . (T,HS)
            matmul(dq_bh, datt_bh, k_bh, T, HS, T, CAUSAL_A | ACCUMULATE);
            matmul(dk_bh, datt_bh, q_bh, T, HS, T, TRANSPOSE_A | CAUSAL_A | ACCUMULATE);
        }
    }
    // pass 1 split inp into heads, so dinp[b,t,h*HS+i] += dq[b,h,t,i] (dk and dv: C and 2C further on)
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
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
    }
}

// attention of one new token at position pos against the KV cache (generation): the
// five passes of attention_forward for the last query row only, with the keys and
// values of positions 0..pos-1 kept in the cache from earlier tokens. For each head h,
//   att = softmax(q k^T / sqrt(HS)) over t2 <= pos,   out[h*HS ..] = att v
// out (C); att (NH, pos+1) scratch; k_cache, v_cache (NH, maxT, HS) this layer's keys
// and values, head by head; qkv (3C) of this token
REPLACED_ON_GPU void attention_forward_cached(float *out, float *att, float *k_cache, float *v_cache, const float *qkv,
                                              int pos, int maxT, int C, int NH) {
    int HS = C / NH;
    float scale = 1.0f / sqrt((float)HS);
    for (int h = 0; h < NH; h++) {
        const float *q = qkv + h * HS;
        float *k = k_cache + (size_t)h * maxT * HS, *v = v_cache + (size_t)h * maxT * HS, *att_h = att + (size_t)h * (pos + 1);
        // pass 1: this token's key and value join the cache, at row pos of head h
        for (int i = 0; i < HS; i++) {
            k[(size_t)pos * HS + i] = qkv[C + h * HS + i];
            v[(size_t)pos * HS + i] = qkv[2 * C + h * HS + i];
        }
        // pass 2: the scores q k^T (1, pos+1)
        matmul(att_h, q, k, 1, pos + 1, HS, TRANSPOSE_B);
        // pass 3: scaled by 1/sqrt(HS), through a softmax
        scaled_softmax(att_h, pos + 1, scale);
        // pass 4: out for head h (1, HS) = att v
        matmul(out + h * HS, att_h, v, 1, HS, pos + 1, 0);
    }
}

// gelu, the tanh approximation used by GPT-2 (Ref: GELU)
//   out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// out, inp (N,)
#define GELU_SCALE 0.7978845608028654f // sqrt(2/pi)

// tanh u = 1 - 2 / (e^(2u) + 1): libm's exp is several times faster than its tanh,
// and the absolute error stays near 1e-7 (exp overflowing to inf gives exactly 1)
static float fast_tanh(float u) { return 1.0f - 2.0f / (exp(2.0f * u) + 1.0f); }

// Both GELU passes run in blocks of GELU_BLOCK elements. The compiler computes exp 16
// at a time (libmvec) and a block's last few one at a time (libm), and the two differ
// in the last bit; with fixed blocks, which is which does not depend on how many
// threads split the loop.
#define GELU_BLOCK 64
REPLACED_ON_GPU void gelu_forward(float *out, const float *inp, size_t N) {
    #pragma omp parallel for if (N >= SMALL_PASS)
    for (size_t i0 = 0; i0 < N; i0 += GELU_BLOCK) {
        size_t i1 = i0 + GELU_BLOCK < N ? i0 + GELU_BLOCK : N;
        for (size_t i = i0; i < i1; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + fast_tanh(GELU_SCALE * (x + 0.044715f * x * x * x)));
        }
    }
}

// with u = sqrt(2/pi) (x + 0.044715 x^3), out = 0.5 x (1 + tanh u), so
//   dout/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
REPLACED_ON_GPU void gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
    #pragma omp parallel for
    for (size_t i0 = 0; i0 < N; i0 += GELU_BLOCK) {
        size_t i1 = i0 + GELU_BLOCK < N ? i0 + GELU_BLOCK : N;
        for (size_t i = i0; i < i1; i++) {
            float x = inp[i];
            float th = fast_tanh(GELU_SCALE * (x + 0.044715f * x * x * x));
            float sech2 = 1.0f - th * th;
            float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
            dinp[i] += grad * dout[i];
        }
    }
}

// residual: out = inp1 + inp2, all (N,); backward passes dout to both
REPLACED_ON_GPU void residual_forward(float *out, const float *inp1, const float *inp2, size_t N) {
    #pragma omp parallel for if (N >= SMALL_PASS)
    for (size_t i = 0; i < N; i++) { out[i] = inp1[i] + inp2[i]; }
}

REPLACED_ON_GPU void residual_backward(float *dinp1, float *dinp2, const float *dout, size_t N) {
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        dinp1[i] += dout[i];
        dinp2[i] += dout[i];
    }
}

// softmax and cross-entropy, fused
//   probs = softmax(logits)   losses[b,t] = -log probs[b,t,targets[b,t]]
// A target < 0 marks a position that takes no loss (its loss is 0): SFT uses this
// to leave prompt and padding tokens out. probs, logits (B,T,V); losses, targets (B,T)
REPLACED_ON_GPU void crossentropy_softmax_forward(float *losses, float *probs, const float *logits, const int *targets,
                                                  int B, int T, int V) {
    #pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) {
        const float *logits_bt = logits + (size_t)bt * V;
        float *probs_bt = probs + (size_t)bt * V;
        float maxval = -FLT_MAX, sum = 0.0f;
        #pragma omp simd reduction(max : maxval) // for stability (the largest value is the same in any order)
        for (int i = 0; i < V; i++) { maxval = logits_bt[i] > maxval ? logits_bt[i] : maxval; }
        for (int i = 0; i < V; i++) { probs_bt[i] = exp(logits_bt[i] - maxval); }
        for (int i = 0; i < V; i++) { sum += probs_bt[i]; }
        for (int i = 0; i < V; i++) { probs_bt[i] /= sum; }
        losses[bt] = targets[bt] >= 0 ? -log(probs_bt[targets[bt]]) : 0.0f;
    }
}

// with loss = -log softmax(logits)[target], dloss/dlogits[i] = probs[i] - (i == target)
// dlosses (B,T): the weight of each position's loss in the total (0 where target < 0)
REPLACED_ON_GPU void crossentropy_softmax_backward(float *dlogits, const float *dlosses, const float *probs,
                                                   const int *targets, int B, int T, int V) {
    #pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) {
        if (targets[bt] < 0) { continue; }
        float *dlogits_bt = dlogits + (size_t)bt * V;
        const float *probs_bt = probs + (size_t)bt * V;
        float d = dlosses[bt];
        for (int i = 0; i < V; i++) { dlogits_bt[i] += (probs_bt[i] - (i == targets[bt] ? 1.0f : 0.0f)) * d; }
    }
}

// ----------------------------------------------------------------------------
// 2. losses for the later stages

// softplus(x) = log(1 + exp(x)) = -log sigmoid(-x), without overflow for any x
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

// The pairwise reward loss of InstructGPT: for P pairs of rewards,
//   loss = mean over pairs of -log sigmoid(r_chosen - r_rejected) = softplus(-margin)
// Ref: InstructGPT (Ouyang et al. 2022, arXiv:2203.02155), eq. 1
float reward_loss_forward(const float *chosen, const float *rejected, int P) {
    double sum = 0.0;
    for (int i = 0; i < P; i++) { sum += softplus(-((double)chosen[i] - rejected[i])); }
    return (float)(sum / P);
}

// with loss = softplus(-m) / P and m = r_chosen - r_rejected,
//   dloss/dm = -sigmoid(-m) / P, so dchosen = -sigmoid(-m) / P and drejected = +sigmoid(-m) / P
void reward_loss_backward(float *dchosen, float *drejected, const float *chosen, const float *rejected, int P) {
    for (int i = 0; i < P; i++) {
        float m = chosen[i] - rejected[i];
        float s = 1.0f / (1.0f + exp(m)); // sigmoid(-m)
        dchosen[i] += -s / P;
        drejected[i] += s / P;
    }
}

// The reward of a sequence is the scalar head's value at its end token: the last
// position holding a real token, wherever the padding after it ends.
//   rewards[b] = values[b, ends[b]]      values (B,T), ends (B) positions
void reward_gather(float *rewards, const float *values, const int *ends, int B, int T) {
    for (int b = 0; b < B; b++) { rewards[b] = values[(size_t)b * T + ends[b]]; }
}

// the backward of the gather: each reward's gradient lands at its end position only
void reward_scatter(float *dvalues, const float *drewards, const int *ends, int B, int T) {
    memset(dvalues, 0, (size_t)B * T * sizeof(float));
    for (int b = 0; b < B; b++) { dvalues[(size_t)b * T + ends[b]] = drewards[b]; }
}

// RLHF: advantages by GAE, and the two PPO losses. They work on (B,T) grids laid out
// like a batch: position t holds the prediction of token t+1, and a target < 0
// marks a position that is not a response token (prompt, padding), which takes no
// loss and gets no gradient. Each loss is the mean over response tokens.

// Generalized advantage estimation over one response of n tokens:
//   delta[k] = rewards[k] + gamma * values[k+1] - values[k]     (values[n] = 0: the episode ends)
//   advantages[k] = delta[k] + gamma * lambda * advantages[k+1]
//   returns[k] = advantages[k] + values[k]                       (what the value model regresses on)
// Ref: Schulman et al. 2016, "High-dimensional continuous control using GAE", arXiv:1506.02438
void gae(float *advantages, float *returns, const float *rewards, const float *values, int n, float gamma, float lambda) {
    float next_value = 0.0f, next_adv = 0.0f;
    for (int k = n - 1; k >= 0; k--) {
        float delta = rewards[k] + gamma * next_value - values[k];
        advantages[k] = delta + gamma * lambda * next_adv;
        returns[k] = advantages[k] + values[k];
        next_value = values[k];
        next_adv = advantages[k];
    }
}

// x <- (x - mean) / std over the positions with a target (std floored at 1e-8)
void whiten(float *x, const int *targets, int N) {
    double sum = 0.0, sum2 = 0.0;
    int n = 0;
    for (int i = 0; i < N; i++) { if (targets[i] >= 0) { sum += x[i]; sum2 += (double)x[i] * x[i]; n++; } }
    if (n == 0) { return; }
    double mean = sum / n, std = sqrt(fmax(sum2 / n - mean * mean, 0.0));
    for (int i = 0; i < N; i++) { if (targets[i] >= 0) { x[i] = (float)((x[i] - mean) / (std + 1e-8)); } }
}

static int count_targets(const int *targets, int N) {
    int n = 0;
    for (int i = 0; i < N; i++) { n += targets[i] >= 0; }
    return n;
}

// PPO's clipped surrogate objective, as a loss to minimize:
//   ratio = exp(logp - logp_old)
//   loss = mean over response tokens of max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps))
// The max takes the pessimistic side: once the ratio has moved eps beyond 1 in the
// direction that helps, the token stops pulling.
// Ref: Schulman et al. 2017, "Proximal Policy Optimization Algorithms", arXiv:1707.06347, eq. 7
float ppo_policy_loss_forward(const float *logp, const float *logp_old, const float *adv, const int *targets, int N, float eps) {
    double sum = 0.0;
    int n = count_targets(targets, N);
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0) { continue; }
        float ratio = exp(logp[i] - logp_old[i]);
        float clipped = fmin(fmax(ratio, 1.0f - eps), 1.0f + eps);
        sum += fmax(-adv[i] * ratio, -adv[i] * clipped);
    }
    return n > 0 ? (float)(sum / n) : 0.0f;
}

// d loss / d logp: -A ratio / n where the unclipped term is the max, else 0 (the
// clipped term is constant in logp outside [1 - eps, 1 + eps], and equal to the
// unclipped one inside it)
void ppo_policy_loss_backward(float *dlogp, const float *logp, const float *logp_old, const float *adv, const int *targets,
                              int N, float eps) {
    int n = count_targets(targets, N);
    for (int i = 0; i < N; i++) {
        dlogp[i] = 0.0f;
        if (targets[i] < 0) { continue; }
        float ratio = exp(logp[i] - logp_old[i]);
        float clipped = fmin(fmax(ratio, 1.0f - eps), 1.0f + eps);
        if (-adv[i] * ratio >= -adv[i] * clipped) { dlogp[i] = -adv[i] * ratio / n; }
    }
}

// The value loss, clipped like the policy's so the value model cannot move far
// from the values the advantages were computed with:
//   v_clipped = v_old + clip(v - v_old, -eps, eps)
//   loss = mean over response tokens of 0.5 max((v - R)^2, (v_clipped - R)^2)
// Ref: the PPO2 baselines; InstructGPT's reproductions (e.g. Zheng et al. 2023, arXiv:2307.04964)
float ppo_value_loss_forward(const float *v, const float *v_old, const float *returns, const int *targets, int N, float eps) {
    double sum = 0.0;
    int n = count_targets(targets, N);
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0) { continue; }
        float vc = v_old[i] + fmin(fmax(v[i] - v_old[i], -eps), eps);
        float e1 = v[i] - returns[i], e2 = vc - returns[i];
        sum += 0.5 * fmax(e1 * e1, e2 * e2);
    }
    return n > 0 ? (float)(sum / n) : 0.0f;
}

// d loss / d v: (v - R) / n where the unclipped error is the max; (v_clipped - R) / n
// where the clipped one is and v - v_old lies inside the clip range; 0 otherwise
void ppo_value_loss_backward(float *dv, const float *v, const float *v_old, const float *returns, const int *targets, int N,
                             float eps) {
    int n = count_targets(targets, N);
    for (int i = 0; i < N; i++) {
        dv[i] = 0.0f;
        if (targets[i] < 0) { continue; }
        float d = v[i] - v_old[i];
        float vc = v_old[i] + fmin(fmax(d, -eps), eps);
        float e1 = v[i] - returns[i], e2 = vc - returns[i];
        if (e1 * e1 >= e2 * e2) { dv[i] = e1 / n; }
        else if (d > -eps && d < eps) { dv[i] = e2 / n; }
    }
}

// DPO: the policy learns from the preference pairs directly, with no reward model and
// no sampling. Its implicit reward of a response y to a prompt x is
//   beta * (log pi(y|x) - log pi_ref(y|x))
// (log-probabilities summed over the response's tokens, <|end|> included), and the
// loss is the reward model's pairwise loss on those rewards:
//   h = beta * ((logp_chosen - ref_chosen) - (logp_rejected - ref_rejected))
//   loss = mean over pairs of -log sigmoid(h)
// Labels that are sometimes flipped (the world's are, 5-10%) can be smoothed: with
// probability eps the preference is taken the other way round, which gives
//   loss = mean over pairs of (1 - eps) softplus(-h) + eps softplus(h)
// eps = 0 is plain DPO. At the start the policy is the reference: h = 0, loss = ln 2.
// Ref: Rafailov et al. 2023, "Direct Preference Optimization", arXiv:2305.18290, eq. 7;
// the smoothing: Mitchell 2023, "A note on DPO with noisy preferences" (cDPO)
float dpo_loss_forward(const float *logp_chosen, const float *logp_rejected, const float *ref_chosen,
                       const float *ref_rejected, int P, float beta, float eps) {
    double sum = 0.0;
    for (int i = 0; i < P; i++) {
        double h = beta * (((double)logp_chosen[i] - ref_chosen[i]) - ((double)logp_rejected[i] - ref_rejected[i]));
        sum += (1.0 - eps) * softplus(-h) + eps * softplus(h);
    }
    return (float)(sum / P);
}

// dloss/dh = (-(1 - eps) sigmoid(-h) + eps sigmoid(h)) / P, and h moves with
// beta * logp_chosen and -beta * logp_rejected
void dpo_loss_backward(float *dchosen, float *drejected, const float *logp_chosen, const float *logp_rejected,
                       const float *ref_chosen, const float *ref_rejected, int P, float beta, float eps) {
    for (int i = 0; i < P; i++) {
        double h = beta * (((double)logp_chosen[i] - ref_chosen[i]) - ((double)logp_rejected[i] - ref_rejected[i]));
        double s = 1.0 / (1.0 + exp(h)); // sigmoid(-h); sigmoid(h) = 1 - s
        double dh = (-(1.0 - eps) * s + eps * (1.0 - s)) / P;
        dchosen[i] += (float)(beta * dh);
        drejected[i] += (float)(-beta * dh);
    }
}

// A response's log-probability: the sum of its tokens' over the rows of a (B,T) grid,
//   seq[b] = sum over t with targets[b,t] >= 0 of logp[b,t]
// and its backward, which hands each token the gradient of its row's sum.
void sequence_logprobs(float *seq, const float *logp, const int *targets, int B, int T) {
    for (int b = 0; b < B; b++) {
        double sum = 0.0;
        for (int t = 0; t < T; t++) { if (targets[b * T + t] >= 0) { sum += logp[b * T + t]; } }
        seq[b] = (float)sum;
    }
}

void sequence_logprobs_backward(float *dlogp, const float *dseq, const int *targets, int B, int T) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) { dlogp[b * T + t] = targets[b * T + t] >= 0 ? dseq[b] : 0.0f; }
    }
}

// GRPO: PPO without the value model. Each prompt gets a group of G answers; an
// answer's advantage is its reward against the others of its group,
//   A_i = (r_i - mean(r)) / (std(r) + 1e-4)        (std with G - 1, as the reference
//                                                  implementations compute it)
// the same for every token of the answer. A group whose answers all score the same
// teaches nothing (A = 0): the group is its own baseline.
// Ref: Shao et al. 2024, "DeepSeekMath", arXiv:2402.03300, section 4.1 (outcome supervision)
void group_advantages(float *adv, const float *rewards, int n, int G) {
    assert(n % G == 0); // whole groups only
    for (int g = 0; g < n; g += G) {
        double mean = 0.0, var = 0.0;
        for (int i = g; i < g + G; i++) { mean += rewards[i]; }
        mean /= G;
        for (int i = g; i < g + G; i++) { var += (rewards[i] - mean) * (rewards[i] - mean); }
        double std = G > 1 ? sqrt(var / (G - 1)) : 0.0;
        for (int i = g; i < g + G; i++) { adv[i] = (float)((rewards[i] - mean) / (std + 1e-4)); }
    }
}

// GRPO's loss over (B,T) grids laid out as PPO's (a target < 0: no response token):
// per token the clipped surrogate plus beta times an estimate of KL(policy || ref),
// the "k3" estimator of Schulman's note on approximating KL, never < 0, and unbiased
// for tokens sampled from the policy (the rollouts' tokens, one update behind):
//   k3 = exp(q) - q - 1 = expm1(q) - q,   q = ref_logp - logp
// (expm1 keeps it accurate in float for the small q of a policy near its reference,
// where exp(q) - 1 would lose it to rounding). Its gradient on sampled tokens is, as in
// DeepSeekMath, that of KL(ref || policy) rather than of KL(policy || ref): the two agree
// to first order near the reference. Averaged over each response's tokens, then over
// the responses:
//   loss = (1/B) sum_b (1/n_b) sum_t [ max(-A ratio, -A clip(ratio, 1-eps, 1+eps)) + beta k3 ]
// Ref: DeepSeekMath (arXiv:2402.03300), eq. 3 and 4; J. Schulman, "Approximating KL
// divergence" (2020), for k3
float grpo_loss_forward(const float *logp, const float *logp_old, const float *ref_logp, const float *adv, const int *targets,
                        int B, int T, float eps, float beta) {
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        double sum = 0.0;
        int n = count_targets(targets + b * T, T);
        for (int t = b * T; t < (b + 1) * T; t++) {
            if (targets[t] < 0) { continue; }
            float ratio = exp(logp[t] - logp_old[t]);
            float clipped = fmin(fmax(ratio, 1.0f - eps), 1.0f + eps);
            float q = ref_logp[t] - logp[t];
            sum += fmax(-adv[t] * ratio, -adv[t] * clipped) + beta * (expm1(q) - q);
        }
        if (n > 0) { total += sum / n; }
    }
    return (float)(total / B);
}

// d loss / d logp per token, divided by B n_b: the surrogate's as PPO's (-A ratio
// where the unclipped term is the max, else 0), and d k3 / d logp = -expm1(q)
void grpo_loss_backward(float *dlogp, const float *logp, const float *logp_old, const float *ref_logp, const float *adv,
                        const int *targets, int B, int T, float eps, float beta) {
    for (int b = 0; b < B; b++) {
        int n = count_targets(targets + b * T, T);
        for (int t = b * T; t < (b + 1) * T; t++) {
            dlogp[t] = 0.0f;
            if (targets[t] < 0) { continue; }
            float ratio = exp(logp[t] - logp_old[t]);
            float clipped = fmin(fmax(ratio, 1.0f - eps), 1.0f + eps);
            float q = ref_logp[t] - logp[t];
            float d = -adv[t] * ratio >= -adv[t] * clipped ? -adv[t] * ratio : 0.0f;
            dlogp[t] = (d - beta * expm1(q)) / ((float)n * B);
        }
    }
}

// ----------------------------------------------------------------------------
// 3. the model: GPT-2 parameters, activations, forward, backward

typedef struct {
    int max_seq_len; // maxT: rows of the position table
    int vocab_size;  // V
    int num_layers;  // L
    int num_heads;   // NH
    int channels;    // C
    int scalar_head; // 0: the LM head (logits over V); 1: a scalar head (reward and value models)
} GPTConfig;

// The parameters, in the order of the checkpoint file. Names and shapes follow
// Hugging Face's GPT2LMHeadModel one to one (doc/formats.md gives the mapping; HF
// stores its Conv1D weights transposed, (in, out), where we store (out, in)).
// The last two form the scalar head of reward and value models, a Linear C -> 1 on
// the final layernorm's output; language models have them with size 0.
#define NUM_PARAMETER_TENSORS 18
typedef struct {
    float *wte;      // (V, C)     token embedding; also the LM head (tied)
    float *wpe;      // (maxT, C)  position embedding
    float *ln1w;     // (L, C)
    float *ln1b;     // (L, C)
    float *qkvw;     // (L, 3C, C)
    float *qkvb;     // (L, 3C)
    float *attprojw; // (L, C, C)
    float *attprojb; // (L, C)
    float *ln2w;     // (L, C)
    float *ln2b;     // (L, C)
    float *fcw;      // (L, 4C, C)
    float *fcb;      // (L, 4C)
    float *fcprojw;  // (L, C, 4C)
    float *fcprojb;  // (L, C)
    float *lnfw;     // (C)
    float *lnfb;     // (C)
    float *headw;    // (C) scalar head weight, or (0) for a language model
    float *headb;    // (1) scalar head bias, or (0)
} ParameterTensors;

void fill_in_parameter_sizes(size_t *sizes, GPTConfig config) {
    size_t V = (size_t)config.vocab_size, C = (size_t)config.channels, maxT = (size_t)config.max_seq_len;
    size_t L = (size_t)config.num_layers;
    sizes[0] = V * C;          // wte
    sizes[1] = maxT * C;       // wpe
    sizes[2] = L * C;          // ln1w
    sizes[3] = L * C;          // ln1b
    sizes[4] = L * 3 * C * C;  // qkvw
    sizes[5] = L * 3 * C;      // qkvb
    sizes[6] = L * C * C;      // attprojw
    sizes[7] = L * C;          // attprojb
    sizes[8] = L * C;          // ln2w
    sizes[9] = L * C;          // ln2b
    sizes[10] = L * 4 * C * C; // fcw
    sizes[11] = L * 4 * C;     // fcb
    sizes[12] = L * C * 4 * C; // fcprojw
    sizes[13] = L * C;         // fcprojb
    sizes[14] = C;             // lnfw
    sizes[15] = C;             // lnfb
    sizes[16] = config.scalar_head ? C : 0; // headw
    sizes[17] = config.scalar_head ? 1 : 0; // headb
}

// weight decay applies to the matrices (embeddings and linear weights), not to
// biases or layernorm parameters
static const int PARAMETER_DECAYS[NUM_PARAMETER_TENSORS] = {1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0};
// points each field of a tensor struct into one block of memory, in order
static void point_tensors(float **fields, const size_t *sizes, int count, float *memory) {
    for (int i = 0; i < count; i++) {
        fields[i] = memory;
        memory += sizes[i];
    }
}

#define NUM_ACTIVATION_TENSORS 23
typedef struct {
    float *encoded;   // (B, T, C)
    float *ln1;       // (L, B, T, C)
    float *ln1_mean;  // (L, B, T)
    float *ln1_rstd;  // (L, B, T)
    float *qkv;       // (L, B, T, 3C)
    float *heads;     // (L, 4, B, NH, T, HS) attention's q, k, v and y, split into heads
    float *atty;      // (L, B, T, C)
    float *att;       // (L, B, NH, T, T)
    float *attproj;   // (L, B, T, C)
    float *residual2; // (L, B, T, C)
    float *ln2;       // (L, B, T, C)
    float *ln2_mean;  // (L, B, T)
    float *ln2_rstd;  // (L, B, T)
    float *fch;       // (L, B, T, 4C)
    float *fch_gelu;  // (L, B, T, 4C)
    float *fcproj;    // (L, B, T, C)
    float *residual3; // (L, B, T, C)
    float *lnf;       // (B, T, C)
    float *lnf_mean;  // (B, T)
    float *lnf_rstd;  // (B, T)
    float *logits;    // (B, T, V) language models only
    float *probs;     // (B, T, V) language models only
    float *values;    // (B, T) the scalar head's output at every position; scalar-head models only
} ActivationTensors;

void fill_in_activation_sizes(size_t *sizes, GPTConfig config, int B, int T) {
    size_t C = (size_t)config.channels, L = (size_t)config.num_layers, NH = (size_t)config.num_heads;
    size_t V = (size_t)config.vocab_size, BT = (size_t)B * (size_t)T;
    sizes[0] = BT * C;               // encoded
    sizes[1] = L * BT * C;           // ln1
    sizes[2] = L * BT;               // ln1_mean
    sizes[3] = L * BT;               // ln1_rstd
    sizes[4] = L * BT * 3 * C;       // qkv
    sizes[5] = L * 4 * BT * C;       // heads
    sizes[6] = L * BT * C;           // atty
    sizes[7] = L * BT * NH * (size_t)T; // att
    sizes[8] = L * BT * C;           // attproj
    sizes[9] = L * BT * C;           // residual2
    sizes[10] = L * BT * C;          // ln2
    sizes[11] = L * BT;              // ln2_mean
    sizes[12] = L * BT;              // ln2_rstd
    sizes[13] = L * BT * 4 * C;      // fch
    sizes[14] = L * BT * 4 * C;      // fch_gelu
    sizes[15] = L * BT * C;          // fcproj
    sizes[16] = L * BT * C;          // residual3
    sizes[17] = BT * C;              // lnf
    sizes[18] = BT;                  // lnf_mean
    sizes[19] = BT;                  // lnf_rstd
    sizes[20] = config.scalar_head ? 0 : BT * V; // logits
    sizes[21] = config.scalar_head ? 0 : BT * V; // probs
    sizes[22] = config.scalar_head ? BT : 0;     // values
}

// Layer l's slices of the per-layer tensors, so a block reads lp.qkvw rather than
// p.qkvw + l * 3C * C. Tensors without a layer dimension are left as they are.
static ParameterTensors layer_params(ParameterTensors p, int l, int C) {
    size_t CC = (size_t)C * C;
    p.ln1w += l * C;            p.ln1b += l * C;
    p.qkvw += l * 3 * CC;       p.qkvb += l * 3 * C;
    p.attprojw += l * CC;       p.attprojb += l * C;
    p.ln2w += l * C;            p.ln2b += l * C;
    p.fcw += l * 4 * CC;        p.fcb += l * 4 * C;
    p.fcprojw += l * 4 * CC;    p.fcprojb += l * C;
    return p;
}

static ActivationTensors layer_acts(ActivationTensors a, int l, int B, int T, int C, int NH) {
    size_t BT = (size_t)B * T, BTC = BT * C;
    a.ln1 += l * BTC;           a.ln1_mean += l * BT;       a.ln1_rstd += l * BT;
    a.qkv += l * 3 * BTC;       a.heads += l * 4 * BTC;     a.atty += l * BTC;
    a.att += l * BT * NH * T;
    a.attproj += l * BTC;       a.residual2 += l * BTC;
    a.ln2 += l * BTC;           a.ln2_mean += l * BT;       a.ln2_rstd += l * BT;
    a.fch += l * 4 * BTC;       a.fch_gelu += l * 4 * BTC;
    a.fcproj += l * BTC;        a.residual3 += l * BTC;
    return a;
}

// One GPT. Every stage's models are GPTs: the policy and its frozen reference
// (LM head), the reward and value models (scalar head, with the reward stages).
// Frozen models never allocate gradients or optimizer state.
struct GPT {
    GPTConfig config;
    uint32_t tokenizer;       // tokenizer_fingerprint of the tokenizer whose ids it reads (appendix C); 0: not known
    ParameterTensors params;
    size_t param_sizes[NUM_PARAMETER_TENSORS];
    float *params_memory;
    size_t num_parameters;
    ParameterTensors grads;   // same layout as params; allocated by the first backward
    float *grads_memory;
    float *m_memory;          // AdamW first moment, same layout; allocated by the first update
    float *v_memory;          // AdamW second moment
    ActivationTensors acts;   // allocated by the first forward, for (B, T)
    ActivationTensors grads_acts;
    size_t act_sizes[NUM_ACTIVATION_TENSORS];
    float *acts_memory;
    float *grads_acts_memory;
    size_t num_activations;   // floats in use for the current (B, T)
    size_t acts_capacity;     // floats allocated (for the largest B*T so far)
    size_t rows_capacity;     // B*T the per-position buffers below can hold
    int batch_size, seq_len;  // the (B, T) the activations are laid out for
    int *inputs, *targets;    // (B, T) copies of the last forward's inputs and targets
    float *losses;            // (B, T) loss at each position of the last forward (0 without a target)
    float *dlosses;           // (B, T) weight of each position in the loss, for backward
    float mean_loss;          // mean loss over positions with a target of the last forward; -1 without targets
    int num_targets;          // positions with a target in the last forward
};

// Memory of the models and the KV cache, zeroed: all that the layers read and write.
REPLACED_ON_GPU void *model_calloc(size_t n, size_t size) { return callocAlignedCheck(n, size); }
REPLACED_ON_GPU void model_free(void *p) { free(p); }
// x = 0, x (n,): in chunks, in parallel, since one thread's memset reached about half
// of the machine's memory bandwidth (the gradients of 124M parameters: 44 ms on one
// thread, 23 ms on two)
REPLACED_ON_GPU void zero_floats(float *x, size_t n) {
    enum { CHUNK = 1 << 16 };
    #pragma omp parallel for if (n > CHUNK)
    for (size_t i = 0; i < n; i += CHUNK) { memset(x + i, 0, (n - i < CHUNK ? n - i : CHUNK) * sizeof(float)); }
}

static void gpt_check_config(GPTConfig c) {
    if (c.vocab_size < FIRST_MERGE || c.num_layers < 1 || c.num_heads < 1 || c.channels < 1 || c.max_seq_len < 1) {
        FAIL("bad model config: V=%d L=%d NH=%d C=%d T=%d (all must be positive, V at least %d)", c.vocab_size,
             c.num_layers, c.num_heads, c.channels, c.max_seq_len, FIRST_MERGE);
    }
    // attention splits the channels evenly across heads
    if (c.channels % c.num_heads != 0) { FAIL("channels C=%d must be divisible by heads NH=%d", c.channels, c.num_heads); }
}

// allocates the parameters (uninitialized)
void gpt_build(GPT *model, GPTConfig config) {
    gpt_check_config(config);
    memset(model, 0, sizeof(*model));
    model->config = config;
    fill_in_parameter_sizes(model->param_sizes, config);
    model->num_parameters = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { model->num_parameters += model->param_sizes[i]; }
    model->params_memory = model_calloc(model->num_parameters, sizeof(float));
    point_tensors((float **)&model->params, model->param_sizes, NUM_PARAMETER_TENSORS, model->params_memory);
    model->mean_loss = -1.0f;
}

// GPT-2 initialization: weights normal(0, 0.02), the two residual projections of
// each block scaled by 1/sqrt(2L) so the residual stream's variance does not grow
// with depth; biases 0; layernorm weights 1. A scalar head starts at 0, so a new
// reward model scores every answer 0 until it learns otherwise.
void gpt_init(GPT *model, uint64_t seed) {
    uint64_t rng = rng_stream(seed, RNG_INIT);
    float residual_std = 0.02f / sqrt(2.0f * model->config.num_layers);
    float *p = model->params_memory;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        size_t n = model->param_sizes[t];
        int is_ln_weight = (t == 2 || t == 8 || t == 14);
        float std = (t == 6 || t == 12) ? residual_std : t == 16 ? 0.0f : 0.02f; // a scalar head starts at 0
        for (size_t i = 0; i < n; i++) {
            p[i] = PARAMETER_DECAYS[t] ? (float)(std * random_normal(&rng)) : (is_ln_weight ? 1.0f : 0.0f);
        }
        p += n;
    }
}

void gpt_free(GPT *model) {
    model_free(model->params_memory);
    model_free(model->grads_memory);
    model_free(model->m_memory);
    model_free(model->v_memory);
    model_free(model->acts_memory);
    model_free(model->grads_acts_memory);
    model_free(model->inputs);
    model_free(model->targets);
    model_free(model->losses);
    model_free(model->dlosses);
    memset(model, 0, sizeof(*model));
}

// Lays out activations for a batch of (B, T). Memory is allocated for the largest
// B*T seen and kept: SFT and reward batches vary in length, and a shorter batch
// reuses the same block, laid out for its own (B, T).
static void gpt_alloc_activations(GPT *model, int B, int T) {
    if (T > model->config.max_seq_len) { FAIL("sequence length %d exceeds the model's context of %d", T, model->config.max_seq_len); }
    if (model->acts_memory && B == model->batch_size && T == model->seq_len) { return; }
    fill_in_activation_sizes(model->act_sizes, model->config, B, T);
    size_t needed = 0;
    for (int i = 0; i < NUM_ACTIVATION_TENSORS; i++) { needed += model->act_sizes[i]; }
    if (needed > model->acts_capacity || (size_t)B * T > model->rows_capacity) {
        model_free(model->acts_memory); model_free(model->grads_acts_memory);
        model_free(model->inputs); model_free(model->targets); model_free(model->losses); model_free(model->dlosses);
        model->acts_capacity = needed > model->acts_capacity ? needed : model->acts_capacity;
        model->rows_capacity = (size_t)B * T > model->rows_capacity ? (size_t)B * T : model->rows_capacity;
        model->acts_memory = model_calloc(model->acts_capacity, sizeof(float));
        model->grads_acts_memory = NULL; // allocated by the next backward
        model->inputs = model_calloc(model->rows_capacity, sizeof(int));
        model->targets = model_calloc(model->rows_capacity, sizeof(int));
        model->losses = model_calloc(model->rows_capacity, sizeof(float));
        model->dlosses = model_calloc(model->rows_capacity, sizeof(float));
    }
    model->batch_size = B;
    model->seq_len = T;
    model->num_activations = needed;
    point_tensors((float **)&model->acts, model->act_sizes, NUM_ACTIVATION_TENSORS, model->acts_memory);
    if (model->grads_acts_memory) {
        point_tensors((float **)&model->grads_acts, model->act_sizes, NUM_ACTIVATION_TENSORS, model->grads_acts_memory);
    }
}

// Forward pass. inputs (B,T) token ids; targets (B,T) next-token ids, or NULL for
// logits only. A target < 0 takes no loss. Leaves logits and probs in model->acts,
// and with targets, the mean loss over the positions that have one.
void gpt_forward(GPT *model, const int *inputs, const int *targets, int B, int T) {
    GPTConfig cfg = model->config;
    int V = cfg.vocab_size, L = cfg.num_layers, NH = cfg.num_heads, C = cfg.channels;
    for (int i = 0; i < B * T; i++) {
        if (inputs[i] < 0 || inputs[i] >= V) { FAIL("input token %d is outside the model's vocabulary (0..%d)", inputs[i], V - 1); }
        if (targets && targets[i] >= V) { FAIL("target token %d is outside the model's vocabulary (0..%d)", targets[i], V - 1); }
    }
    gpt_alloc_activations(model, B, T);
    // the layers read the model's own copies (on the GPU, memory they can address)
    memcpy(model->inputs, inputs, (size_t)B * T * sizeof(int));
    if (targets) { memcpy(model->targets, targets, (size_t)B * T * sizeof(int)); }

    ParameterTensors p = model->params;
    ActivationTensors a = model->acts;
    size_t BTC = (size_t)B * T * C;
    encoder_forward(a.encoded, model->inputs, p.wte, p.wpe, B, T, C);
    for (int l = 0; l < L; l++) {
        ParameterTensors lp = layer_params(p, l, C);
        ActivationTensors la = layer_acts(a, l, B, T, C, NH);
        const float *residual = l == 0 ? a.encoded : a.residual3 + (size_t)(l - 1) * BTC;
        // the block: x + attn(ln1(x)), then x + mlp(ln2(x))
        layernorm_forward(la.ln1, la.ln1_mean, la.ln1_rstd, residual, lp.ln1w, lp.ln1b, B, T, C);
        matmul_forward(la.qkv, la.ln1, lp.qkvw, lp.qkvb, B, T, C, 3 * C);
        attention_forward(la.atty, la.heads, la.att, la.qkv, B, T, C, NH);
        matmul_forward(la.attproj, la.atty, lp.attprojw, lp.attprojb, B, T, C, C);
        residual_forward(la.residual2, residual, la.attproj, BTC);
        layernorm_forward(la.ln2, la.ln2_mean, la.ln2_rstd, la.residual2, lp.ln2w, lp.ln2b, B, T, C);
        matmul_forward(la.fch, la.ln2, lp.fcw, lp.fcb, B, T, C, 4 * C);
        gelu_forward(la.fch_gelu, la.fch, BTC * 4);
        matmul_forward(la.fcproj, la.fch_gelu, lp.fcprojw, lp.fcprojb, B, T, 4 * C, C);
        residual_forward(la.residual3, la.residual2, la.fcproj, BTC);
    }
    layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, a.residual3 + (size_t)(L - 1) * BTC, p.lnfw, p.lnfb, B, T, C);
    model->mean_loss = -1.0f;
    if (cfg.scalar_head) { // reward and value models: one number per position
        if (targets) { FAIL("a scalar-head model has no next-token loss: call gpt_forward without targets"); }
        matmul_forward(a.values, a.lnf, p.headw, p.headb, B, T, C, 1);
        return;
    }
    matmul_forward(a.logits, a.lnf, p.wte, NULL, B, T, C, V); // the LM head is the token embedding, tied
    if (targets == NULL) { return; }
    // the loss is the mean over positions that have a target; probs holds the softmax
    float *losses = model->losses;
    crossentropy_softmax_forward(losses, a.probs, a.logits, model->targets, B, T, V);
    double sum = 0.0;
    int count = 0;
    for (int i = 0; i < B * T; i++) {
        if (targets[i] >= 0) { sum += losses[i]; count++; }
    }
    model->num_targets = count;
    model->mean_loss = count > 0 ? (float)(sum / count) : 0.0f;
}

// Gets the gradient buffers ready for a backward pass: parameter gradients are
// allocated once (zeroed by gpt_zero_grad), activation gradients are scratch for
// this pass and zeroed here, since every backward adds.
static void gpt_backward_begin(GPT *model) {
    if (model->grads_memory == NULL) {
        model->grads_memory = model_calloc(model->num_parameters, sizeof(float));
        point_tensors((float **)&model->grads, model->param_sizes, NUM_PARAMETER_TENSORS, model->grads_memory);
    }
    if (model->grads_acts_memory == NULL) {
        model->grads_acts_memory = model_calloc(model->acts_capacity, sizeof(float));
        point_tensors((float **)&model->grads_acts, model->act_sizes, NUM_ACTIVATION_TENSORS, model->grads_acts_memory);
    }
    zero_floats(model->grads_acts_memory, model->num_activations);
}

// The backward pass from the final layernorm's output down to the embeddings; the
// head's backward has put its gradient into grads_acts.lnf.
static void gpt_backward_trunk(GPT *model) {
    GPTConfig cfg = model->config;
    int B = model->batch_size, T = model->seq_len, L = cfg.num_layers, NH = cfg.num_heads, C = cfg.channels;
    ParameterTensors p = model->params, g = model->grads;
    ActivationTensors a = model->acts, da = model->grads_acts;
    size_t BTC = (size_t)B * T * C;
    float *residual = a.residual3 + (size_t)(L - 1) * BTC, *dresidual = da.residual3 + (size_t)(L - 1) * BTC;
    layernorm_backward(dresidual, g.lnfw, g.lnfb, da.lnf, residual, p.lnfw, a.lnf_mean, a.lnf_rstd, B, T, C);
    for (int l = L - 1; l >= 0; l--) {
        ParameterTensors lp = layer_params(p, l, C), lg = layer_params(g, l, C); // weights and their gradients
        ActivationTensors la = layer_acts(a, l, B, T, C, NH), lda = layer_acts(da, l, B, T, C, NH);
        residual = l == 0 ? a.encoded : a.residual3 + (size_t)(l - 1) * BTC;
        dresidual = l == 0 ? da.encoded : da.residual3 + (size_t)(l - 1) * BTC;
        // the block in reverse: the MLP half, then the attention half
        residual_backward(lda.residual2, lda.fcproj, lda.residual3, BTC);
        matmul_backward(lda.fch_gelu, lg.fcprojw, lg.fcprojb, lda.fcproj, la.fch_gelu, lp.fcprojw, B, T, 4 * C, C);
        gelu_backward(lda.fch, la.fch, lda.fch_gelu, BTC * 4);
        matmul_backward(lda.ln2, lg.fcw, lg.fcb, lda.fch, la.ln2, lp.fcw, B, T, C, 4 * C);
        layernorm_backward(lda.residual2, lg.ln2w, lg.ln2b, lda.ln2, la.residual2, lp.ln2w, la.ln2_mean, la.ln2_rstd, B, T, C);
        residual_backward(dresidual, lda.attproj, lda.residual2, BTC);
        matmul_backward(lda.atty, lg.attprojw, lg.attprojb, lda.attproj, la.atty, lp.attprojw, B, T, C, C);
        attention_backward(lda.qkv, lda.heads, lda.att, lda.atty, la.heads, la.att, B, T, C, NH);
        matmul_backward(lda.ln1, lg.qkvw, lg.qkvb, lda.qkv, la.ln1, lp.qkvw, B, T, C, 3 * C);
        layernorm_backward(dresidual, lg.ln1w, lg.ln1b, lda.ln1, residual, lp.ln1w, la.ln1_mean, la.ln1_rstd, B, T, C);
    }
    encoder_backward(g.wte, g.wpe, da.encoded, model->inputs, B, T, C);
}

// Backward pass of a language model for any loss built from the per-position
// cross-entropies losses[b,t] = -log p(targets[b,t]) of the last forward (with
// targets): dlosses (B,T) holds d loss / d losses[b,t]. The mean loss of pretraining
// and SFT is one such loss; PPO's, which weighs each token's log-probability by its
// advantage, is another. Positions without a target get no gradient at all.
void gpt_backward_weighted(GPT *model, const float *dlosses) {
    if (model->mean_loss < 0) { FAIL("gpt_backward needs a forward pass with targets first"); }
    int B = model->batch_size, T = model->seq_len, V = model->config.vocab_size, C = model->config.channels;
    gpt_backward_begin(model);
    // the layers read the model's own copy (on the GPU, memory they can address)
    if (dlosses != model->dlosses) { memcpy(model->dlosses, dlosses, (size_t)B * T * sizeof(float)); }
    crossentropy_softmax_backward(model->grads_acts.logits, model->dlosses, model->acts.probs, model->targets, B, T, V);
    matmul_backward(model->grads_acts.lnf, model->grads.wte, NULL, model->grads_acts.logits, model->acts.lnf,
                    model->params.wte, B, T, C, V);
    gpt_backward_trunk(model);
}

// Backward pass of a language model, after a forward with targets: adds the
// gradient of loss_scale * mean_loss to model->grads (gradient accumulation passes
// 1/steps).
void gpt_backward(GPT *model, float loss_scale) {
    if (model->mean_loss < 0) { FAIL("gpt_backward needs a forward pass with targets first"); }
    // the mean over positions with a target: each such position weighs loss_scale / count
    for (int i = 0; i < model->batch_size * model->seq_len; i++) {
        model->dlosses[i] = model->targets[i] >= 0 ? loss_scale / (float)model->num_targets : 0.0f;
    }
    gpt_backward_weighted(model, model->dlosses);
}

// log p(targets[b,t]) under the model, (B,T), after a forward with targets: the
// per-position cross-entropy, negated (0 where there is no target)
void gpt_logprobs(const GPT *model, float *logp) {
    for (int i = 0; i < model->batch_size * model->seq_len; i++) { logp[i] = -model->losses[i]; }
}

// Backward pass of a loss built from those log-probabilities (PPO's): dlogp (B,T) is
// d loss / d logp[b,t], and since logp = -losses, the weights of the cross-entropies
// are -dlogp.
void gpt_backward_logprobs(GPT *model, const float *dlogp) {
    for (int i = 0; i < model->batch_size * model->seq_len; i++) { model->dlosses[i] = -dlogp[i]; }
    gpt_backward_weighted(model, model->dlosses);
}

// Backward pass of a scalar-head model: dvalues (B,T) is the gradient of the loss
// with respect to each position's value (zero where the loss does not read one).
void gpt_backward_values(GPT *model, const float *dvalues) {
    if (!model->config.scalar_head) { FAIL("gpt_backward_values needs a scalar-head model"); }
    int B = model->batch_size, T = model->seq_len, C = model->config.channels;
    gpt_backward_begin(model);
    memcpy(model->dlosses, dvalues, (size_t)B * T * sizeof(float)); // the model's own copy, as above
    // values = lnf . headw + headb, a matmul with one output channel
    matmul_backward(model->grads_acts.lnf, model->grads.headw, model->grads.headb, model->dlosses, model->acts.lnf,
                    model->params.headw, B, T, C, 1);
    gpt_backward_trunk(model);
}

void gpt_zero_grad(GPT *model) {
    if (model->grads_memory) { zero_floats(model->grads_memory, model->num_parameters); }
}

// The KV cache: generation one token at a time. Keys and values of every earlier
// position are kept, so each new token costs one pass over the weights instead of
// a forward over the whole sequence. The step below is gpt_forward with B = T = 1,
// except that attention reads the cached keys and values.
typedef struct {
    int max_seq_len, num_layers, channels;
    float *k, *v;   // (L, NH, maxT, HS) keys and values of positions 0..pos, head by head
    float *x;       // (C) the residual stream of the current token
    float *ln;      // (C)
    float *qkv;     // (3C)
    float *atty;    // (C)
    float *att;     // (NH, maxT) room for the attention probabilities of the current token
    float *h;       // (4C) MLP hidden
    float *hg;      // (4C) after gelu
    float *proj;    // (C)
    float *logits;  // (V)
    float *stats;   // (2) mean, rstd scratch of layernorm
    int *token;     // (1) the current token
} KVCache;

void kvcache_init(KVCache *kv, GPTConfig cfg) {
    size_t C = (size_t)cfg.channels, T = (size_t)cfg.max_seq_len, L = (size_t)cfg.num_layers;
    kv->max_seq_len = cfg.max_seq_len;
    kv->num_layers = cfg.num_layers;
    kv->channels = cfg.channels;
    kv->k = model_calloc(L * T * C, sizeof(float));
    kv->v = model_calloc(L * T * C, sizeof(float));
    kv->x = model_calloc(C, sizeof(float));
    kv->ln = model_calloc(C, sizeof(float));
    kv->qkv = model_calloc(3 * C, sizeof(float));
    kv->atty = model_calloc(C, sizeof(float));
    kv->att = model_calloc((size_t)cfg.num_heads * T, sizeof(float));
    kv->h = model_calloc(4 * C, sizeof(float));
    kv->hg = model_calloc(4 * C, sizeof(float));
    kv->proj = model_calloc(C, sizeof(float));
    kv->logits = model_calloc((size_t)cfg.vocab_size, sizeof(float));
    kv->stats = model_calloc(2, sizeof(float));
    kv->token = model_calloc(1, sizeof(int));
}

void kvcache_free(KVCache *kv) {
    float *buffers[] = {kv->k, kv->v, kv->x, kv->ln, kv->qkv, kv->atty, kv->att, kv->h, kv->hg, kv->proj, kv->logits, kv->stats};
    for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); i++) { model_free(buffers[i]); }
    model_free(kv->token);
}

// Feeds token at position pos (all of 0..pos-1 already fed); returns the logits (V)
// for the next token.
float *gpt_forward_cached(GPT *model, KVCache *kv, int token, int pos) {
    GPTConfig cfg = model->config;
    int C = cfg.channels, NH = cfg.num_heads;
    if (cfg.scalar_head) { FAIL("generation needs a language model, not a scalar-head (reward) model"); }
    if (pos < 0 || pos >= cfg.max_seq_len) { FAIL("position %d is outside the model's context of %d", pos, cfg.max_seq_len); }
    if (token < 0 || token >= cfg.vocab_size) { FAIL("token %d is outside the vocabulary (0..%d)", token, cfg.vocab_size - 1); }
    ParameterTensors p = model->params;
    kv->token[0] = token; // in model memory, where the layers can read it
    encoder_forward(kv->x, kv->token, p.wte, p.wpe + (size_t)pos * C, 1, 1, C);
    for (int l = 0; l < cfg.num_layers; l++) {
        float *k_cache = kv->k + (size_t)l * kv->max_seq_len * C, *v_cache = kv->v + (size_t)l * kv->max_seq_len * C; // layer l
        layernorm_forward(kv->ln, kv->stats, kv->stats + 1, kv->x, p.ln1w + l * C, p.ln1b + l * C, 1, 1, C);
        matmul_forward(kv->qkv, kv->ln, p.qkvw + (size_t)l * 3 * C * C, p.qkvb + l * 3 * C, 1, 1, C, 3 * C);
        attention_forward_cached(kv->atty, kv->att, k_cache, v_cache, kv->qkv, pos, kv->max_seq_len, C, NH);
        matmul_forward(kv->proj, kv->atty, p.attprojw + (size_t)l * C * C, p.attprojb + l * C, 1, 1, C, C);
        residual_forward(kv->x, kv->x, kv->proj, (size_t)C);
        layernorm_forward(kv->ln, kv->stats, kv->stats + 1, kv->x, p.ln2w + l * C, p.ln2b + l * C, 1, 1, C);
        matmul_forward(kv->h, kv->ln, p.fcw + (size_t)l * 4 * C * C, p.fcb + l * 4 * C, 1, 1, C, 4 * C);
        gelu_forward(kv->hg, kv->h, (size_t)4 * C);
        matmul_forward(kv->proj, kv->hg, p.fcprojw + (size_t)l * C * 4 * C, p.fcprojb + l * C, 1, 1, 4 * C, C);
        residual_forward(kv->x, kv->x, kv->proj, (size_t)C);
    }
    layernorm_forward(kv->ln, kv->stats, kv->stats + 1, kv->x, p.lnfw, p.lnfb, 1, 1, C);
    matmul_forward(kv->logits, kv->ln, p.wte, NULL, 1, 1, C, cfg.vocab_size);
    return kv->logits;
}

// what a checkpoint holds: which stage made it, and so which head it has: reward and value models have the scalar head
enum { KIND_BASE = 1, KIND_SFT, KIND_REWARD, KIND_RLHF, KIND_VALUE, KIND_DPO, KIND_GRPO, NUM_KINDS };
static const char *kind_name(int kind) {
    static const char *NAMES[NUM_KINDS] = {"unknown", "base (pretrained)", "SFT", "reward", "RLHF", "value", "DPO", "GRPO"};
    return kind >= 1 && kind < NUM_KINDS ? NAMES[kind] : NAMES[0];
}
static const char *KIND_FILES[NUM_KINDS] = {"", "base", "sft", "reward", "rlhf", "value", "dpo", "grpo"}; // <out>/<name>.bin
static int kind_scalar_head(int kind) { return kind == KIND_REWARD || kind == KIND_VALUE; }
// the kinds that generate text: what answer, sample and chat accept
#define LANGUAGE_MODELS ((1 << KIND_BASE) | (1 << KIND_SFT) | (1 << KIND_RLHF) | (1 << KIND_DPO) | (1 << KIND_GRPO))

// what a training run needs besides the weights to continue where it stopped
struct TrainState {
    int kind;
    int step;             // optimizer steps done (rlhf: iterations)
    uint64_t data_rng;    // the RNG state of the data order (rlhf: prompts and minibatch order)
    uint64_t sample_rng;  // the RNG state of sampling (pretrain: samples; rlhf: rollouts); 0 if none saved
    float beta;           // rlhf: the KL coefficient, which the adaptive controller changes
};

// ----------------------------------------------------------------------------
// 4. the optimizer: AdamW, learning-rate schedule, gradient clipping, frozen embedding rows

#define ADAM_BETA1 0.9f
#define ADAM_BETA2 0.95f
#define ADAM_EPS 1e-8f

// Learning rate at optimizer step `step` (0-based) of `total`: linear warmup from
// lr/warmup to lr over the first `warmup` steps, then cosine decay from lr down to
// lr * final_frac at the last step.
float lr_schedule(int step, int total, int warmup, float lr, float final_frac) {
    if (step < warmup) { return lr * (float)(step + 1) / (float)warmup; }
    int decay_steps = total - warmup - 1;
    double progress = decay_steps > 0 ? (double)(step - warmup) / decay_steps : 1.0;
    if (progress > 1.0) { progress = 1.0; }
    double cosine = 0.5 * (1.0 + cos(3.141592653589793 * progress)); // 1 -> 0
    return (float)(lr * (final_frac + (1.0 - final_frac) * cosine));
}

// sum of x[i]^2 over x (n,), in double. It runs over fixed chunks, added in order:
// the same bits for any number of threads.
REPLACED_ON_GPU double sum_of_squares(const float *x, size_t n) {
    // within a chunk, LANES interleaved partial sums: one running sum would be a chain
    // of dependent additions, 2.3x slower at 124M parameters
    enum { CHUNK = 1 << 16, LANES = 16 };
    size_t chunks = (n + CHUNK - 1) / CHUNK;
    double *partial = mallocCheck(chunks * sizeof(double));
    #pragma omp parallel for
    for (size_t c = 0; c < chunks; c++) {
        double lane[LANES] = {0}, sum = 0.0;
        size_t i = c * CHUNK, end = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
        for (; i + LANES <= end; i += LANES) {
            for (int j = 0; j < LANES; j++) { lane[j] += (double)x[i + j] * x[i + j]; }
        }
        for (int j = 0; j < LANES; j++) { sum += lane[j]; }
        for (; i < end; i++) { sum += (double)x[i] * x[i]; }
        partial[c] = sum;
    }
    double total = 0.0;
    for (size_t c = 0; c < chunks; c++) { total += partial[c]; }
    free(partial);
    return total;
}

// x = x * coef, x (n,)
REPLACED_ON_GPU void scale_floats(float *x, float coef, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) { x[i] *= coef; }
}

// Returns the global L2 norm of all gradients; if it exceeds max_norm (> 0), scales
// every gradient by max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_ does.
float gpt_clip_grad_norm(GPT *model, float max_norm) {
    float norm = (float)sqrt(sum_of_squares(model->grads_memory, model->num_parameters));
    if (max_norm > 0 && norm > max_norm) { scale_floats(model->grads_memory, max_norm / (norm + 1e-6f), model->num_parameters); }
    return norm;
}

// AdamW on one tensor, step t (1-based), in the order torch.optim.AdamW computes it:
//   p = p * (1 - lr * decay)                      decoupled weight decay
//   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// p, m, v, g (n,): parameters, the two moments, gradients
// Ref: AdamW
REPLACED_ON_GPU void adamw_tensor(float *p, float *m, float *v, const float *g, float lr, float beta1, float beta2,
                                  float eps, float decay, int t, size_t n) {
    // all in float, as PyTorch and train.cu do it (sqrt and pow of a float would round
    // through double, which made this pass compute-bound: 1.6x slower at 124M parameters)
    float bias_correction1 = 1.0f - powf(beta1, (float)t);
    float bias_correction2_sqrt = sqrtf(1.0f - powf(beta2, (float)t));
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        p[i] *= 1.0f - lr * decay;
        m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        p[i] -= (lr / bias_correction1) * m[i] / (sqrtf(v[i]) / bias_correction2_sqrt + eps);
    }
}

// Fine-tuning may keep the rows of the token embedding that pretraining learned well
// (-F 1): the rows of the merges, the strings frequent enough in the pretraining text
// to become tokens, stay as they are; the 256 bytes, which spell what pretraining
// rarely saw, and the special tokens, which it never saw, train. (So a word that SFT
// needs must be in the pretraining text: spelt with a merge that pretraining never
// emits, it cannot be said. doc/sft.md: how "Yes" became "Yo".) Why it matters: the
// embedding is also the LM head, and SFT's answers name
// only the animals of its own data. Trained, the row of every other name is pushed away
// from the hidden state wherever an answer starts, step after step, and the model
// learns never to name an animal it was not fine-tuned on: asked about one, it names
// another (doc/sft.md has the figures). This zeroes the gradient of the merges' rows,
// so that clipping measures only what trains; adamw_update leaves the rows as they are.
void gpt_freeze_token_embeddings_grad(GPT *model) {
    size_t C = (size_t)model->config.channels, V = (size_t)model->config.vocab_size;
    zero_floats(model->grads.wte + FIRST_MERGE * C, (V - FIRST_MERGE) * C);
}

// One AdamW step on every parameter tensor; weight decay on matrices only. With
// freeze_embeddings, of the token embedding only the rows of the bytes and the special
// tokens change.
void adamw_update(GPT *model, float lr, float beta1, float beta2, float eps, float weight_decay, int t,
                  int freeze_embeddings) {
    if (model->m_memory == NULL) {
        model->m_memory = model_calloc(model->num_parameters, sizeof(float));
        model->v_memory = model_calloc(model->num_parameters, sizeof(float));
    }
    size_t offset = 0;
    for (int tensor = 0; tensor < NUM_PARAMETER_TENSORS; tensor++) {
        size_t n = model->param_sizes[tensor];
        if (tensor == 0 && freeze_embeddings) { n = FIRST_MERGE * (size_t)model->config.channels; } // wte: rows 0..259
        adamw_tensor(model->params_memory + offset, model->m_memory + offset, model->v_memory + offset,
                     model->grads_memory + offset, lr, beta1, beta2, eps, PARAMETER_DECAYS[tensor] ? weight_decay : 0.0f, t, n);
        offset += model->param_sizes[tensor];
    }
}

// ----------------------------------------------------------------------------
// 5. sampling: temperature and top-k, generation with a KV cache

static int compare_floats_descending(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

// Draws a token from softmax(logits / temperature), restricted to the top_k most
// likely tokens when 0 < top_k < V (ties with the k-th are kept). temperature 0
// means greedy (argmax). scratch holds V floats.
int sample_token(const float *logits, int V, float temperature, int top_k, uint64_t *rng, float *scratch) {
    int best = 0;
    for (int i = 1; i < V; i++) { if (logits[i] > logits[best]) { best = i; } }
    if (temperature <= 0.0f) { return best; }
    float threshold = -FLT_MAX;
    if (top_k > 0 && top_k < V) {
        memcpy(scratch, logits, (size_t)V * sizeof(float));
        qsort(scratch, (size_t)V, sizeof(float), compare_floats_descending);
        threshold = scratch[top_k - 1];
    }
    // softmax over the kept tokens, then walk the cumulative sum to a uniform draw
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        scratch[i] = logits[i] >= threshold ? (float)exp((logits[i] - logits[best]) / temperature) : 0.0f;
        sum += scratch[i];
    }
    double u = random_f32(rng) * sum, cdf = 0.0;
    for (int i = 0; i < V; i++) {
        cdf += scratch[i];
        if (u < cdf && scratch[i] > 0.0f) { return i; }
    }
    return best; // only reached through rounding at the very end of the cdf
}

// log softmax(logits)[token]: the model's log-probability of token
static float token_logprob(const float *logits, int V, int token) {
    float maxval = -FLT_MAX;
    for (int i = 0; i < V; i++) { if (logits[i] > maxval) { maxval = logits[i]; } }
    double sum = 0.0;
    for (int i = 0; i < V; i++) { sum += exp(logits[i] - maxval); }
    return (float)(logits[token] - maxval - log(sum));
}

// Extends tokens[0..n) by up to max_new tokens, one KV-cached step each, stopping
// after a token of `stops` (a set of special tokens, STOP_AT(TOKEN_END) | ...; 0:
// none) or at the end of the context. tokens must have room for max_seq_len ids.
// Returns the new length. If logprobs is not NULL, logprobs[i] gets the model's
// log-probability (before temperature and top-k) of new token i. If sink is not NULL,
// each new token but a stop goes to it as soon as it is drawn (chat and sample print
// them as they come).
int gpt_generate(GPT *model, KVCache *kv, int *tokens, int n, int max_new, float temperature, int top_k, unsigned stops,
                 uint64_t *rng, float *logprobs, const TokenSink *sink) {
    int maxT = model->config.max_seq_len, V = model->config.vocab_size;
    if (n < 1) { FAIL("generation needs at least one token to start from"); }
    if (n > maxT) { FAIL("the prompt has %d tokens, more than the model's context of %d", n, maxT); }
    float *scratch = mallocCheck((size_t)V * sizeof(float));
    float *logits = NULL;
    for (int pos = 0; pos < n; pos++) { logits = gpt_forward_cached(model, kv, tokens[pos], pos); } // the prompt
    for (int i = 0; i < max_new && n < maxT; i++) {
        int next = sample_token(logits, V, temperature, top_k, rng, scratch);
        if (logprobs) { logprobs[i] = token_logprob(logits, V, next); }
        tokens[n++] = next;
        if (is_stop(next, stops)) { break; }
        if (sink) { sink->put(sink->ctx, next); }
        if (n == maxT) { break; }
        logits = gpt_forward_cached(model, kv, next, n - 1);
    }
    free(scratch);
    return n;
}

// The room a prompt leaves for the answer: -m tokens, but at most half the context,
// so that a long prompt or conversation is cut rather than left no room.
static int answer_room(int max_seq_len, int max_new) { return max_new < max_seq_len / 2 ? max_new : max_seq_len / 2; }

// ----------------------------------------------------------------------------
// 6. the tokenizer: bytes <-> token ids (byte-level BPE)
//
// Token ids: 0..255 are the raw bytes, so every byte string can be encoded.
// Then come the special tokens, which no text ever encodes to (they are only ever
// inserted by code), then one token per learned merge, in the order learned.
//
// Training (BPE): split the text into chunks (below), then repeatedly merge the
// most frequent adjacent pair of tokens into a new token (ties: the smallest pair):
//     aaabdaaabac  ->  merge (a,a)=Z:  ZabdZabac  ->  (a,b)=Y:  ZYdZYac  ->  (Z,Y)=X:  XdXac
// Merges never cross chunk boundaries. A chunk is, much as in GPT-2, one of:
//     an optional space and a run of letters (bytes >= 0x80 count as letters, so
//     UTF-8 characters stay inside words):           " world", "caf\xc3\xa9"
//     an optional space and a run of digits:        " 2024"
//     an optional space and a run of other symbols: " (!", "."
//     a run of whitespace, leaving a last space before a word to that word: "\n\n"
// Encoding applies the learned merges to each chunk, lowest rank (earliest learned) first.
//
// An imported GPT-2 (appendix H) brings its own tokenizer: its 50,000 merges, and its
// own chunks, which differ from ours in three ways: contractions ('s 't 're 've 'm 'll 'd)
// are chunks of their own, letters and numbers are Unicode's where ours counts every
// byte >= 0x80 a letter ("½" is a number, "。" a symbol, U+3000 a space), and a
// whitespace run before a non-space stops one character short, whatever that character
// is: a space then joins the word, and anything else ("\n") is a chunk of its own.
// The tokenizer file says which rule it uses.
enum { SPLIT_OURS, SPLIT_GPT2 };

// PairMap: open-addressing hash map from a token pair (a, b) to an integer.
// Training keeps pair counts in it; encoding keeps merge ranks.
typedef struct {
    uint64_t *keys;   // (cap,) (a << 32 | b) + 1, 0 marks an empty slot
    int64_t *values;  // (cap,)
    size_t cap, len;
} PairMap;

static uint64_t pair_key(int a, int b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static size_t pairmap_slot(const PairMap *m, uint64_t key) {
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & (m->cap - 1);
    while (m->keys[i] != 0 && m->keys[i] != key) { i = (i + 1) & (m->cap - 1); }
    return i;
}

static void pairmap_init(PairMap *m, size_t cap) {
    m->cap = cap;
    m->len = 0;
    m->keys = callocCheck(cap, sizeof(uint64_t));
    m->values = callocCheck(cap, sizeof(int64_t));
}

static void pairmap_free(PairMap *m) {
    free(m->keys);
    free(m->values);
}

// a pointer to the value of (a, b), inserted as 0 if absent
static int64_t *pairmap_at(PairMap *m, int a, int b) {
    if (2 * (m->len + 1) > m->cap) { // keep the load under 1/2: grow and reinsert
        PairMap bigger;
        pairmap_init(&bigger, m->cap * 2);
        for (size_t i = 0; i < m->cap; i++) {
            if (m->keys[i] == 0) { continue; }
            size_t j = pairmap_slot(&bigger, m->keys[i]);
            bigger.keys[j] = m->keys[i];
            bigger.values[j] = m->values[i];
        }
        bigger.len = m->len;
        pairmap_free(m);
        *m = bigger;
    }
    uint64_t key = pair_key(a, b);
    size_t i = pairmap_slot(m, key);
    if (m->keys[i] == 0) { m->keys[i] = key; m->values[i] = 0; m->len++; }
    return &m->values[i];
}

// the value of (a, b), or -1 if absent
static int64_t pairmap_get(const PairMap *m, int a, int b) {
    size_t i = pairmap_slot(m, pair_key(a, b));
    return m->keys[i] ? m->values[i] : -1;
}

struct Tokenizer {
    int split;                // how text is cut into chunks: SPLIT_OURS, or SPLIT_GPT2 for GPT-2's own (imported)
    int vocab_size;           // 256 bytes + NUM_SPECIAL + num_merges
    int num_merges;
    int (*merges)[2];         // (num_merges, 2): merge i makes token FIRST_MERGE + i from (left, right)
    PairMap ranks;            // (left, right) -> merge index, for encoding
    unsigned char **bytes;    // (vocab_size,) each token's bytes, for decoding
    int *lengths;             // (vocab_size,)
};

// fills in ranks and the byte strings of every token from the merge list
static void tokenizer_index(Tokenizer *tok) {
    tok->vocab_size = FIRST_MERGE + tok->num_merges;
    pairmap_init(&tok->ranks, 1024);
    tok->bytes = mallocCheck((size_t)tok->vocab_size * sizeof(unsigned char *));
    tok->lengths = mallocCheck((size_t)tok->vocab_size * sizeof(int));
    for (int i = 0; i < tok->vocab_size; i++) {
        if (i < 256) {
            tok->lengths[i] = 1;
            tok->bytes[i] = mallocCheck(1);
            tok->bytes[i][0] = (unsigned char)i;
        } else if (i < FIRST_MERGE) {
            const char *s = SPECIAL_TOKENS[i - 256];
            tok->lengths[i] = (int)strlen(s);
            tok->bytes[i] = mallocCheck((size_t)tok->lengths[i]);
            memcpy(tok->bytes[i], s, (size_t)tok->lengths[i]);
        } else {
            int a = tok->merges[i - FIRST_MERGE][0], b = tok->merges[i - FIRST_MERGE][1]; // earlier tokens (checked on load)
            tok->lengths[i] = tok->lengths[a] + tok->lengths[b];
            tok->bytes[i] = mallocCheck((size_t)tok->lengths[i]);
            memcpy(tok->bytes[i], tok->bytes[a], (size_t)tok->lengths[a]);
            memcpy(tok->bytes[i] + tok->lengths[a], tok->bytes[b], (size_t)tok->lengths[b]);
            *pairmap_at(&tok->ranks, a, b) = i - FIRST_MERGE;
        }
    }
}

void tokenizer_free(Tokenizer *tok) {
    for (int i = 0; i < tok->vocab_size; i++) { free(tok->bytes[i]); }
    free(tok->bytes);
    free(tok->lengths);
    free(tok->merges);
    pairmap_free(&tok->ranks);
}

static int is_letter(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// the length of the chunk that starts at s (n > 0 bytes left)
static size_t chunk_length(const unsigned char *s, size_t n) {
    size_t i = 0;
    if (is_space(s[0]) && !(s[0] == ' ' && n > 1 && !is_space(s[1]))) {
        // whitespace run; a final space before a non-space goes with the next chunk
        while (i < n && is_space(s[i])) { i++; }
        if (i < n && i > 1 && s[i - 1] == ' ') { i--; }
        return i;
    }
    if (s[0] == ' ') { i = 1; } // the optional leading space
    int (*same)(unsigned char) = is_letter(s[i]) ? is_letter : is_digit(s[i]) ? is_digit : NULL;
    if (same) {
        while (i < n && same(s[i])) { i++; }
    } else { // other symbols: anything that is not a letter, digit or space
        while (i < n && !is_letter(s[i]) && !is_digit(s[i]) && !is_space(s[i])) { i++; }
    }
    return i;
}

// GPT-2's chunk at s, the first match of its regular expression (OpenAI's encoder.py)
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// whose alternatives are tried in order: a contraction; an optional space and a run of
// letters, of numbers, or of other symbols; a whitespace run that a non-space does not
// follow, so that a run before a word stops one character short of it; and the
// whitespace run itself when that leaves nothing ("\n\nHi" is "\n", "\n", "Hi";
// "\n  Hi" is "\n ", " Hi"). Classes come from unicode_class (appendix H), which calls
// a byte that is not valid UTF-8 an other symbol.
static size_t gpt2_chunk_length(const unsigned char *s, size_t n) {
    static const char *CONTRACTIONS[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (int c = 0; c < (int)(sizeof(CONTRACTIONS) / sizeof(CONTRACTIONS[0])); c++) {
        size_t k = strlen(CONTRACTIONS[c]);
        if (n >= k && !memcmp(s, CONTRACTIONS[c], k)) { return k; }
    }
    size_t i = 0;
    int len, cls = unicode_class(s, n, &len);
    if (s[0] == ' ' && n > 1) {
        int next = unicode_class(s + 1, n - 1, &len);
        if (next != CLASS_SPACE) { i = 1; cls = next; }
    }
    if (cls != CLASS_SPACE) { // letters, numbers or others, after the optional space
        while (i < n && unicode_class(s + i, n - i, &len) == cls) { i += (size_t)len; }
        return i;
    }
    size_t last = 0; // where the run's last character starts
    while (i < n && unicode_class(s + i, n - i, &len) == CLASS_SPACE) { last = i; i += (size_t)len; }
    return (i == n || last == 0) ? i : last;
}

static size_t tokenizer_chunk(const Tokenizer *tok, const unsigned char *s, size_t n) {
    return tok->split == SPLIT_GPT2 ? gpt2_chunk_length(s, n) : chunk_length(s, n);
}

// Applies the merges to one chunk, lowest rank first; appends the ids to out.
static int encode_chunk(const Tokenizer *tok, const unsigned char *s, size_t n, int *out) {
    int local[64];
    int *ids = n <= 64 ? local : mallocCheck(n * sizeof(int));
    for (size_t i = 0; i < n; i++) { ids[i] = s[i]; }
    int len = (int)n;
    for (;;) {
        // pass 1: the adjacent pair with the lowest merge rank
        int64_t best = INT64_MAX;
        for (int i = 0; i + 1 < len; i++) {
            int64_t r = pairmap_get(&tok->ranks, ids[i], ids[i + 1]);
            if (r >= 0 && r < best) { best = r; }
        }
        if (best == INT64_MAX) { break; }
        // pass 2: merge every occurrence of it, left to right
        int a = tok->merges[best][0], b = tok->merges[best][1], k = 0;
        for (int i = 0; i < len; i++) {
            if (i + 1 < len && ids[i] == a && ids[i + 1] == b) { ids[k++] = FIRST_MERGE + (int)best; i++; }
            else { ids[k++] = ids[i]; }
        }
        len = k;
    }
    memcpy(out, ids, (size_t)len * sizeof(int));
    if (ids != local) { free(ids); }
    return len;
}

// Encodes n bytes into out, which must hold n ids (no encoding is longer than its
// bytes). Returns the number of ids. Never produces special tokens.
int tokenizer_encode(const Tokenizer *tok, const char *text, size_t n, int *out) {
    const unsigned char *s = (const unsigned char *)text;
    int count = 0;
    for (size_t i = 0; i < n;) {
        size_t len = tokenizer_chunk(tok, s + i, n - i);
        count += encode_chunk(tok, s + i, len, out + count);
        i += len;
    }
    return count;
}

// Decodes ids into a NUL-terminated string (caller frees). Bytes come back exactly;
// special tokens come back as their names.
char *tokenizer_decode(const Tokenizer *tok, const int *ids, int n, size_t *out_len) {
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size) { FAIL("token id %d is outside the vocabulary (0..%d)", ids[i], tok->vocab_size - 1); }
        len += (size_t)tok->lengths[ids[i]];
    }
    char *s = mallocCheck(len + 1);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        memcpy(s + k, tok->bytes[ids[i]], (size_t)tok->lengths[ids[i]]);
        k += (size_t)tok->lengths[ids[i]];
    }
    s[len] = '\0';
    if (out_len) { *out_len = len; }
    return s;
}

// Decodes ids into text that is valid UTF-8, for people and JSON files: a token can
// end inside a character, and a model can draw bytes that make none. What cannot be
// read as UTF-8 becomes U+FFFD (utf8_stream_put, appendix B). Caller frees.
char *tokenizer_decode_text(const Tokenizer *tok, const int *ids, int n) {
    size_t len;
    char *raw = tokenizer_decode(tok, ids, n, &len);
    Str out = {0};
    Utf8Stream u = {0};
    utf8_stream_put(&u, raw, len, &out);
    utf8_stream_end(&u, &out);
    free(raw);
    str_add(&out, "", 0); // an empty text is still a string
    return out.s;
}

// A TokenSink that prints each token as it comes, as valid UTF-8 (a character split
// across tokens is held back until it completes); special tokens print as their names.
typedef struct {
    const Tokenizer *tok;
    FILE *f;
    int one_line; // newlines print as \n and backslashes as \\ (chat from a pipe: one line an answer)
    Utf8Stream u;
    Str buf;
} TokenPrinter;

static void token_printer_write(TokenPrinter *p) {
    for (size_t i = 0; i < p->buf.len; i++) {
        char c = p->buf.s[i];
        if (p->one_line && (c == '\n' || c == '\\')) { fputc('\\', p->f); fputc(c == '\n' ? 'n' : '\\', p->f); }
        else { fputc(c, p->f); }
    }
    fflush(p->f);
}

static void token_printer_put(void *ctx, int token) {
    TokenPrinter *p = ctx;
    str_clear(&p->buf);
    utf8_stream_put(&p->u, (const char *)p->tok->bytes[token], (size_t)p->tok->lengths[token], &p->buf);
    token_printer_write(p);
}

// the end of the printed text: a character still incomplete prints as U+FFFD
static void token_printer_end(TokenPrinter *p) {
    str_clear(&p->buf);
    utf8_stream_end(&p->u, &p->buf);
    token_printer_write(p);
    str_free(&p->buf);
}

// A distinct chunk of the training text, as a sequence of token ids, with its count.
typedef struct {
    int *ids;
    int len;
    int64_t count;
} Word;

// Learns merges from text until the vocabulary reaches vocab_size, or until no pair
// occurs twice. Pair counts are kept incrementally: a merge only recounts the
// distinct chunks that contain the merged pair.
void tokenizer_train(Tokenizer *tok, const char *text, size_t n, int vocab_size) {
    if (vocab_size < FIRST_MERGE) { FAIL("vocabulary size %d is below %d (256 bytes + %d special tokens)", vocab_size, FIRST_MERGE, NUM_SPECIAL); }
    const unsigned char *s = (const unsigned char *)text;
    // pass 1: the distinct chunks, in order of first occurrence, and their counts.
    // `table` is a hash set of word indices (+1, 0 = empty slot), keyed by the chunk's bytes.
    size_t num_words = 0, words_cap = 1024, table_cap = 2048;
    Word *words = mallocCheck(words_cap * sizeof(Word));
    size_t *first = mallocCheck(words_cap * sizeof(size_t)); // offset of each word's first occurrence
    size_t *table = callocCheck(table_cap, sizeof(size_t));
    for (size_t i = 0; i < n;) {
        size_t len = chunk_length(s + i, n - i);
        uint64_t h = 1469598103934665603ULL; // FNV-1a of the chunk
        for (size_t j = 0; j < len; j++) { h = (h ^ s[i + j]) * 1099511628211ULL; }
        size_t k = (size_t)h & (table_cap - 1);
        while (table[k] && !(words[table[k] - 1].len == (int)len && !memcmp(s + first[table[k] - 1], s + i, len))) {
            k = (k + 1) & (table_cap - 1);
        }
        if (table[k]) {
            words[table[k] - 1].count++;
        } else {
            if (num_words == words_cap) {
                words_cap *= 2;
                words = realloc(words, words_cap * sizeof(Word));
                first = realloc(first, words_cap * sizeof(size_t));
                if (!words || !first) { FAIL("out of memory counting the chunks of the tokenizer's text"); }
            }
            words[num_words] = (Word){.ids = NULL, .len = (int)len, .count = 1};
            first[num_words] = i;
            table[k] = ++num_words;
            if (2 * num_words > table_cap) { // keep the load under 1/2: rebuild the set twice as large
                free(table);
                table_cap *= 2;
                table = callocCheck(table_cap, sizeof(size_t));
                for (size_t w = 0; w < num_words; w++) {
                    uint64_t g = 1469598103934665603ULL;
                    for (int j = 0; j < words[w].len; j++) { g = (g ^ s[first[w] + (size_t)j]) * 1099511628211ULL; }
                    size_t q = (size_t)g & (table_cap - 1);
                    while (table[q]) { q = (q + 1) & (table_cap - 1); }
                    table[q] = w + 1;
                }
            }
        }
        i += len;
    }
    for (size_t w = 0; w < num_words; w++) {
        words[w].ids = mallocCheck((size_t)words[w].len * sizeof(int));
        for (int j = 0; j < words[w].len; j++) { words[w].ids[j] = s[first[w] + (size_t)j]; }
    }
    free(first);
    free(table);

    // pass 2: count every adjacent pair, weighted by the word's count
    PairMap counts;
    pairmap_init(&counts, 1 << 16);
    for (size_t i = 0; i < num_words; i++) {
        for (int j = 0; j + 1 < words[i].len; j++) { *pairmap_at(&counts, words[i].ids[j], words[i].ids[j + 1]) += words[i].count; }
    }

    // pass 3: merge the most frequent pair, update the counts of the words it touches, repeat
    int max_merges = vocab_size - FIRST_MERGE;
    tok->merges = mallocCheck((size_t)(max_merges > 0 ? max_merges : 1) * sizeof(int[2]));
    tok->num_merges = 0;
    tok->split = SPLIT_OURS;
    while (tok->num_merges < max_merges) {
        int64_t best = 0;
        uint64_t best_key = 0;
        for (size_t i = 0; i < counts.cap; i++) { // ties go to the smallest pair, for determinism
            int64_t c = counts.values[i];
            if (counts.keys[i] && c >= 2 && (c > best || (c == best && counts.keys[i] < best_key))) {
                best = c;
                best_key = counts.keys[i];
            }
        }
        if (best_key == 0) { break; } // no pair occurs twice: more merges would not shorten anything
        int a = (int)((best_key - 1) >> 32), b = (int)(uint32_t)(best_key - 1), id = FIRST_MERGE + tok->num_merges;
        tok->merges[tok->num_merges][0] = a;
        tok->merges[tok->num_merges][1] = b;
        tok->num_merges++;
        for (size_t i = 0; i < num_words; i++) {
            Word *wd = &words[i];
            int has = 0;
            for (int j = 0; j + 1 < wd->len && !has; j++) { has = (wd->ids[j] == a && wd->ids[j + 1] == b); }
            if (!has) { continue; }
            for (int j = 0; j + 1 < wd->len; j++) { *pairmap_at(&counts, wd->ids[j], wd->ids[j + 1]) -= wd->count; }
            int k = 0;
            for (int j = 0; j < wd->len; j++) {
                if (j + 1 < wd->len && wd->ids[j] == a && wd->ids[j + 1] == b) { wd->ids[k++] = id; j++; }
                else { wd->ids[k++] = wd->ids[j]; }
            }
            wd->len = k;
            for (int j = 0; j + 1 < wd->len; j++) { *pairmap_at(&counts, wd->ids[j], wd->ids[j + 1]) += wd->count; }
        }
    }
    for (size_t i = 0; i < num_words; i++) { free(words[i].ids); }
    free(words);
    pairmap_free(&counts);
    tokenizer_index(tok);
}

// ----------------------------------------------------------------------------
// 7. data: text -> batches of token ids

// The chat template (doc/chat.md), the one format SFT, the reward model, RLHF and
// sampling all use:
//     <|user|> prompt <|assistant|> response <|end|>
// and for a conversation, its turns in order, each answer closed by <|end|>:
//     <|user|> a <|assistant|> b <|end|> <|user|> c <|assistant|> d <|end|>
// The special tokens come only from code, never from text, so no prompt can forge a
// turn. A response ends with <|end|>: SFT teaches the model to produce it, so that
// generation knows where an answer stops, and the reward model reads its score there.
typedef struct {
    int *tokens;         // (n,) the whole template
    unsigned char *loss; // (n,) 1 where SFT learns to predict the token: the trained answers and their <|end|>
    int n;
    int n_prompt;        // tokens up to and including the last <|assistant|>; the response starts here
    int dropped_turns;   // the oldest turns of the conversation left out to fit
    int cut_tokens;      // then the tokens cut from the left of the last user turn
    int record;          // its record's place in the file, from 1 (set by chat_data_load)
} ChatExample;

void chat_example_free(ChatExample *ex) {
    free(ex->tokens);
    free(ex->loss);
    ex->tokens = NULL;
    ex->loss = NULL;
}

// Encodes a conversation into ex: the turns of prompt, which end with a user turn,
// then <|assistant|>, then (unless response is NULL) the response and <|end|>; at
// most max_len tokens, with room for `reserve` more after the prompt (for a response,
// at least its own length). The length rule: if too long, the oldest turns go first,
// whole, until the prompt starts with a user turn again and fits, the last user turn
// always staying; if that turn alone is still too long, its text is cut from the
// left (its end, next to the question, matters most) while <|user|> stays. If not
// even one of its tokens can stay, the example is dropped. Returns 0 if dropped, 1 if
// kept whole, 2 if kept but cut.
int chat_encode_turns(ChatExample *ex, const Tokenizer *tok, const Chat *prompt, const Turn *response, int reserve,
                      int max_len) {
    int n = prompt->n, total = 0, nr = 0, *r = NULL;
    int **text = mallocCheck((size_t)n * sizeof(int *)), *len = mallocCheck((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) { // each turn: its role's token, its text, and <|end|> after an answer
        size_t bytes = strlen(prompt->turns[i].content);
        text[i] = mallocCheck((bytes + 1) * sizeof(int));
        len[i] = tokenizer_encode(tok, prompt->turns[i].content, bytes, text[i]);
        total += 1 + len[i] + (prompt->turns[i].role == ROLE_ASSISTANT);
    }
    if (response) {
        size_t bytes = strlen(response->content);
        r = mallocCheck((bytes + 1) * sizeof(int));
        nr = tokenizer_encode(tok, response->content, bytes, r);
        if (reserve < nr + 1) { reserve = nr + 1; }
    }
    int budget = max_len - reserve - 1, first = 0; // - 1: the <|assistant|> that closes the prompt
    while (total > budget && first < n - 1) { // the oldest turns go, then any answer that would lead
        do {
            total -= 1 + len[first] + (prompt->turns[first].role == ROLE_ASSISTANT);
            first++;
        } while (first < n - 1 && prompt->turns[first].role != ROLE_USER);
    }
    int cut = 0, status = first > 0 ? 2 : 1; // cut: text tokens to drop from the left of the last user turn
    if (total > budget) {
        cut = total - budget;
        status = len[first] - cut >= 1 ? 2 : 0;
    }
    ex->tokens = NULL;
    ex->loss = NULL;
    ex->n = ex->n_prompt = 0;
    ex->dropped_turns = first;
    ex->cut_tokens = cut;
    if (status) {
        int size = total - cut + 1 + (response ? nr + 1 : 0), k = 0;
        ex->tokens = mallocCheck((size_t)size * sizeof(int));
        ex->loss = mallocCheck((size_t)size);
        for (int i = first; i < n; i++) {
            const Turn *t = &prompt->turns[i];
            int answer = t->role == ROLE_ASSISTANT, learn = answer && t->train;
            ex->tokens[k] = answer ? TOKEN_ASSISTANT : TOKEN_USER;
            ex->loss[k++] = 0;
            for (int j = i == first ? cut : 0; j < len[i]; j++) { ex->tokens[k] = text[i][j]; ex->loss[k++] = learn; }
            if (answer) { ex->tokens[k] = TOKEN_END; ex->loss[k++] = learn; }
        }
        ex->tokens[k] = TOKEN_ASSISTANT;
        ex->loss[k++] = 0;
        ex->n_prompt = k;
        if (response) {
            for (int j = 0; j < nr; j++) { ex->tokens[k] = r[j]; ex->loss[k++] = 1; }
            ex->tokens[k] = TOKEN_END;
            ex->loss[k++] = 1;
        }
        ex->n = k;
    }
    for (int i = 0; i < n; i++) { free(text[i]); }
    free(text);
    free(len);
    free(r);
    return status;
}

// chat_encode_turns for one prompt string and one response string (or NULL)
int chat_encode(ChatExample *ex, const Tokenizer *tok, const char *prompt, const char *response, int max_len) {
    Turn p = {.role = ROLE_USER, .content = (char *)prompt}, a = {.role = ROLE_ASSISTANT, .train = 1, .content = (char *)response};
    Chat c = {.turns = &p, .n = 1};
    return chat_encode_turns(ex, tok, &c, response ? &a : NULL, 0, max_len);
}

// Anthropic's HH-RLHF writes a conversation as one string, "\n\nHuman: a\n\nAssistant:
// b\n\nHuman: c\n\nAssistant:", which would go whole into one user turn. A string that
// starts with "Human:" and ends with "Assistant:" becomes its turns, each trimmed of
// spaces (the last, empty "Assistant:" is where the answer goes). Returns 1 if
// converted, 0 if the string is not such a transcript (c untouched).
static int chat_from_transcript(Chat *c) {
    static const char *MARKS[2] = {"Human:", "Assistant:"};
    const char *s = c->turns[0].content;
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') { s++; }
    size_t n = strlen(s);
    while (n > 0 && strchr(" \n\t\r", s[n - 1])) { n--; }
    if (c->listed || c->n != 1 || strncmp(s, MARKS[0], 6) != 0 || n < 10 || strncmp(s + n - 10, MARKS[1], 10) != 0) { return 0; }
    Chat out = {.listed = 1};
    int role = ROLE_USER;
    const char *p = s + 6, *end = s + n - 10;
    while (p <= end) {
        // this turn runs to the next "\n\nHuman:" or "\n\nAssistant:", or to the final mark
        const char *next = end;
        int next_role = -1;
        for (const char *q = p; q < end; q++) {
            if (q[0] == '\n' && q[1] == '\n') {
                if (!strncmp(q + 2, MARKS[0], 6)) { next = q; next_role = ROLE_USER; break; }
                if (!strncmp(q + 2, MARKS[1], 10)) { next = q; next_role = ROLE_ASSISTANT; break; }
            }
        }
        const char *a = p, *b = next;
        while (a < b && strchr(" \n\t\r", *a)) { a++; }
        while (b > a && strchr(" \n\t\r", b[-1])) { b--; }
        chat_add(&out, role, a, (size_t)(b - a));
        if (next == end) { break; }
        role = next_role;
        p = next + 2 + strlen(MARKS[role == ROLE_USER ? 0 : 1]);
    }
    if (out.turns[out.n - 1].role != ROLE_USER) { chat_free(&out); return 0; } // "Assistant: ...\n\nAssistant:"
    chat_free(c);
    *c = out;
    return 1;
}

// trims the spaces at the ends of a response that followed "Assistant:"
static void trim_turn(Turn *t) {
    char *a = t->content;
    while (*a && strchr(" \n\t\r", *a)) { a++; }
    size_t n = strlen(a);
    while (n > 0 && strchr(" \n\t\r", a[n - 1])) { n--; }
    memmove(t->content, a, n);
    t->content[n] = '\0';
}

// A system message has no token of its own in the template: its text opens the next
// user turn. Returns the number merged.
static int chat_merge_system(Chat *c) {
    int merged = 0, k = 0;
    for (int i = 0; i < c->n; i++) {
        Turn t = c->turns[i];
        if (t.role == ROLE_SYSTEM && i + 1 < c->n && c->turns[i + 1].role == ROLE_USER) {
            Turn *u = &c->turns[i + 1];
            size_t a = strlen(t.content), b = strlen(u->content);
            char *joined = mallocCheck(a + b + 3);
            memcpy(joined, t.content, a);
            memcpy(joined + a, "\n\n", 2);
            memcpy(joined + a + 2, u->content, b + 1);
            free(u->content);
            free(t.content);
            u->content = joined;
            merged++;
            continue;
        }
        if (t.role == ROLE_SYSTEM) { t.role = ROLE_USER; merged++; } // with no user turn after it: a user turn
        c->turns[k++] = t;
    }
    c->n = k;
    return merged;
}

// What one line of a chat data file holds, read into conversations:
//   RECORD_PROMPT  a prompt to answer: {"prompt": string or messages}, or {"messages"}
//                  ending with a user turn; into out[0]
//   RECORD_SFT     {"prompt", "completion"} (strings, or messages as TRL's
//                  conversational prompt-completion), or {"messages"} ending with the
//                  assistant's answer; the prompt into out[0], the answer into out[1].
//                  SFT learns the completion, or every assistant turn of "messages".
//   RECORD_PAIR    {"prompt", "chosen", "rejected"}, each a string or messages; into
//                  out[0..2]
// Counts into counts[]: [0] Human:/Assistant: transcripts converted into turns (unless
// keep_transcripts), [1] system messages merged. Returns NULL, or what was wrong.
enum { RECORD_PROMPT, RECORD_SFT, RECORD_PAIR };
static const char *chat_record(const char *line, int kind, int keep_transcripts, Chat out[3], int counts[2]) {
    static const char *keys[3][3] = {{"prompt"}, {"prompt", "completion"}, {"prompt", "chosen", "rejected"}};
    int nkeys = kind + 1;
    for (int k = 0; k < 3; k++) { out[k] = (Chat){0}; }
    const char *value, *err = json_find(line, "messages", &value);
    if (err == NULL && value != NULL && kind != RECORD_PAIR) { // the whole conversation in one list
        err = json_get_chat(line, "messages", ROLE_USER, &out[0]);
        if (err == NULL && kind == RECORD_SFT) { // the last turn is the answer; every answer trains
            for (int i = 0; i < out[0].n; i++) { out[0].turns[i].train = out[0].turns[i].role == ROLE_ASSISTANT; }
            Turn *last = &out[0].turns[out[0].n - 1];
            if (last->role != ROLE_ASSISTANT) { err = "the last of \"messages\" must be the assistant's answer"; }
            else {
                chat_add(&out[1], ROLE_ASSISTANT, last->content, strlen(last->content));
                free(last->content);
                out[0].n--;
            }
        }
    } else if (err == NULL) {
        for (int k = 0; k < nkeys && !err; k++) {
            err = json_get_chat(line, keys[kind][k], k ? ROLE_ASSISTANT : ROLE_USER, &out[k]);
            if (err && k == 0 && kind != RECORD_PAIR && !strcmp(err, "missing key")) { err = "missing \"prompt\" (or \"messages\")"; }
        }
        if (err == NULL && !keep_transcripts && chat_from_transcript(&out[0])) {
            counts[0]++;
            for (int k = 1; k < nkeys; k++) { if (!out[k].listed) { trim_turn(&out[k].turns[0]); } }
        }
    }
    if (err == NULL) { counts[1] += chat_merge_system(&out[0]); }
    if (err == NULL && (out[0].n < 1 || out[0].turns[out[0].n - 1].role != ROLE_USER)) {
        err = "the prompt must end with a user turn (the answer follows it)";
    }
    for (int k = 1; k < nkeys && err == NULL; k++) {
        if (out[k].n != 1 || out[k].turns[0].role != ROLE_ASSISTANT) { err = "a response must be one assistant message"; }
        else { out[k].turns[0].train = 1; }
    }
    if (err) { for (int k = 0; k < 3; k++) { chat_free(&out[k]); } }
    return err;
}

// Chat examples for SFT (one per record) or reward modeling (two per record, chosen
// then rejected, with the same prompt), read from JSONL and encoded, with the counts
// of the length rule and of the conversions for the log.
struct ChatData {
    ChatExample *examples;
    int count;          // examples kept (for pairs: 2 x pairs kept)
    int per_record;     // 1 (SFT) or 2 (pairs)
    int records, cut, dropped;
    int conversations;  // records whose prompt has more than one turn
    int transcripts;    // Human:/Assistant: transcripts converted into turns
    int systems;        // system messages merged into the user turn after them
    int max_len;        // the longest example kept, in tokens
};

void chat_data_load(ChatData *d, const char *path, const Tokenizer *tok, int pairs, int max_len, int keep_transcripts) {
    JsonlLines lines;
    char err[1024];
    if (jsonl_lines(path, &lines, err, sizeof(err))) { FAIL("%s", err); }
    *d = (ChatData){.per_record = pairs ? 2 : 1, .records = lines.count, .max_len = max_len};
    d->examples = mallocCheck((size_t)lines.count * d->per_record * sizeof(ChatExample));
    for (int i = 0; i < lines.count; i++) {
        Chat rec[3];
        int counts[2] = {0, 0};
        const char *why = chat_record(lines.lines[i], pairs ? RECORD_PAIR : RECORD_SFT, keep_transcripts, rec, counts);
        if (why) {
            FAIL("%s:%d: %s: every line must be a JSON object with %s (see doc/chat.md)", path, lines.numbers[i], why,
                 pairs ? "\"prompt\", \"chosen\" and \"rejected\"" : "\"prompt\" and \"completion\", or \"messages\"");
        }
        d->transcripts += counts[0];
        d->systems += counts[1];
        d->conversations += rec[0].n > 1;
        ChatExample *ex = d->examples + d->count;
        int reserve = 0; // both responses of a pair follow the same prompt, cut the same way: the
        for (int j = 0; j < d->per_record && pairs; j++) { // longer one in tokens sets the room both leave
            const char *text = rec[1 + j].turns[0].content;
            int *scratch = mallocCheck((strlen(text) + 1) * sizeof(int));
            int nt = tokenizer_encode(tok, text, strlen(text), scratch) + 1; // + <|end|>
            if (nt > reserve) { reserve = nt; }
            free(scratch);
        }
        int status[2] = {1, 1};
        for (int j = 0; j < d->per_record; j++) {
            status[j] = chat_encode_turns(&ex[j], tok, &rec[0], &rec[1 + j].turns[0], reserve, max_len);
        }
        for (int k = 0; k < 3; k++) { chat_free(&rec[k]); }
        if (!status[0] || !status[1]) { // a dropped example holds no tokens (NULL), so freeing both is safe
            for (int j = 0; j < d->per_record; j++) { chat_example_free(&ex[j]); }
            d->dropped++;
            continue;
        }
        d->cut += status[0] == 2 || status[1] == 2;
        for (int j = 0; j < d->per_record; j++) { ex[j].record = i + 1; }
        d->count += d->per_record;
    }
    jsonl_lines_free(&lines);
    if (d->count == 0) {
        FAIL("%s: all %d examples are longer than the context of %d tokens (raise -t when pretraining)", path, d->records, max_len);
    }
}

// The validation examples: -j's, or with no -j the last tenth of the training records
// (at least one), taken out of train, so that "val" never means data the model trains on.
void chat_data_validation(ChatData *val, ChatData *train, const char *val_path, const char *train_path, const Tokenizer *tok,
                          int pairs, int max_len, int keep_transcripts) {
    if (val_path) {
        chat_data_load(val, val_path, tok, pairs, max_len, keep_transcripts);
        print_chat_data(val_path, val);
        return;
    }
    int per = train->per_record, records = train->count / per, held = records / 10 > 0 ? records / 10 : 1;
    if (held >= records) { FAIL("%s: %d records are too few to hold out validation data from: give -j", train_path, records); }
    *val = (ChatData){.per_record = per, .records = held, .count = held * per, .max_len = max_len};
    val->examples = mallocCheck((size_t)val->count * sizeof(ChatExample));
    train->count -= val->count;
    memcpy(val->examples, train->examples + train->count, (size_t)val->count * sizeof(ChatExample));
    printf("data: no -j: the last %d of %s's %d records (records %d to %d) are held out for validation\n", held,
           train_path, records, val->examples[0].record, val->examples[val->count - 1].record);
}

void chat_data_free(ChatData *d) {
    for (int i = 0; i < d->count; i++) { chat_example_free(&d->examples[i]); }
    free(d->examples);
}

// The prompts of a JSONL file (RECORD_PROMPT), as conversations in *chats (count of
// them) and encoded with room for `reserve` tokens of answer; a prompt that cannot
// leave that room is dropped (its example has no tokens). Prints what it read.
ChatExample *prompts_load(const char *path, const Tokenizer *tok, int reserve, int max_len, int keep_transcripts,
                          Chat **chats, int *count) {
    JsonlLines lines;
    char err[1024];
    if (jsonl_lines(path, &lines, err, sizeof(err))) { FAIL("%s", err); }
    ChatExample *ex = mallocCheck((size_t)lines.count * sizeof(ChatExample));
    *chats = mallocCheck((size_t)lines.count * sizeof(Chat));
    int counts[2] = {0, 0}, cut = 0, dropped = 0, turns = 0, conversations = 0;
    for (int i = 0; i < lines.count; i++) {
        Chat rec[3];
        const char *why = chat_record(lines.lines[i], RECORD_PROMPT, keep_transcripts, rec, counts);
        if (why) {
            FAIL("%s:%d: %s: every line must be a JSON object with \"prompt\" (a string or messages) or \"messages\" "
                 "(see doc/chat.md)", path, lines.numbers[i], why);
        }
        (*chats)[i] = rec[0];
        conversations += rec[0].n > 1;
        int status = chat_encode_turns(&ex[i], tok, &rec[0], NULL, reserve, max_len);
        cut += status == 2;
        dropped += status == 0;
        turns += ex[i].dropped_turns;
        ex[i].record = i + 1;
    }
    printf("data: %s %d prompts (%d cut, %d dropped", path, lines.count, cut, dropped);
    if (conversations) { printf("; %d conversations, %d oldest turns left out to fit", conversations, turns); }
    if (counts[0]) { printf("; %d Human:/Assistant: transcripts read as turns", counts[0]); }
    if (counts[1]) { printf("; %d system messages merged into the user turn after them", counts[1]); }
    printf(")\n");
    *count = lines.count;
    jsonl_lines_free(&lines);
    return ex;
}

// SFT batch: examples idx[0..B), right-padded to the longest. Inputs are the
// template without its last token; targets are the template shifted by one, and -1
// (no loss, no gradient) wherever the next token is not one SFT learns (the prompt,
// and in a conversation the turns of the user and any answer it does not train), and
// on padding. Padding sits after each example, so causal attention keeps it out of
// every real position. Returns T, the padded length.
int sft_batch(const ChatData *d, const int *idx, int B, int *inputs, int *targets) {
    int T = 1;
    for (int b = 0; b < B; b++) { if (d->examples[idx[b]].n - 1 > T) { T = d->examples[idx[b]].n - 1; } }
    for (int b = 0; b < B; b++) {
        const ChatExample *ex = &d->examples[idx[b]];
        for (int t = 0; t < T; t++) {
            int real = t < ex->n - 1;
            inputs[b * T + t] = real ? ex->tokens[t] : TOKEN_EOT;
            targets[b * T + t] = real && ex->loss[t + 1] ? ex->tokens[t + 1] : -1;
        }
    }
    return T;
}

// Reward batch: pairs idx[0..B) as 2B rows, chosen in rows 0..B-1 and rejected in
// rows B..2B-1, right-padded to the longest. ends[row] is the position of the row's
// <|end|> token, where its reward is read. Returns T.
int reward_batch(const ChatData *d, const int *idx, int B, int *inputs, int *ends) {
    int T = 1;
    for (int row = 0; row < 2 * B; row++) {
        const ChatExample *ex = &d->examples[2 * idx[row % B] + row / B];
        if (ex->n > T) { T = ex->n; }
    }
    for (int row = 0; row < 2 * B; row++) {
        const ChatExample *ex = &d->examples[2 * idx[row % B] + row / B];
        for (int t = 0; t < T; t++) { inputs[row * T + t] = t < ex->n ? ex->tokens[t] : TOKEN_EOT; }
        ends[row] = ex->n - 1;
    }
    return T;
}

// Length-grouped sampling, as Hugging Face's group_by_length, for the reward model's
// pairs. A batch is padded to its longest example, so B examples drawn at random
// waste most of their rows on padding (two thirds of a batch of the world's pairs).
// Instead, the training batches come in groups of BATCH_GROUP: draw BATCH_GROUP * B
// records at random, sort them by length, cut the sorted list into BATCH_GROUP
// batches of similar lengths, and take those in a random order. Every record is still
// drawn at random; only which records share a batch changes. (SFT keeps random
// batches: its loss is a mean over a batch's tokens, which grouping would reweigh.)
// The group is drawn afresh for each of its batches from the data RNG as it stood at
// the group's start, and that state moves on only after the group's last batch. So
// the RNG saved in a checkpoint after any step is enough to resume mid-group.
#define BATCH_GROUP 16

typedef struct { int len, slot, record; } GroupItem;

static int group_item_cmp(const void *pa, const void *pb) {
    const GroupItem *a = pa, *b = pb; // by length, ties by the order of drawing
    return a->len != b->len ? (a->len > b->len) - (a->len < b->len) : a->slot - b->slot;
}

// a pair's padded cost: the longer of its two rows
static int pair_len(const ChatData *d, int pair) {
    int a = d->examples[2 * pair].n, b = d->examples[2 * pair + 1].n;
    return a > b ? a : b;
}

// The pairs of training batch n (counted from 0 over the whole run) into idx[0..B).
// *rng is the data stream at the start of batch n's group; it moves past the group
// when n is the group's last batch. items: space for BATCH_GROUP * B entries.
void grouped_batch(const ChatData *d, long n, int B, uint64_t *rng, int *idx, GroupItem *items) {
    uint64_t r = *rng;
    int pairs = d->count / 2, order[BATCH_GROUP];
    for (int s = 0; s < BATCH_GROUP * B; s++) {
        int rec = (int)(random_u64(&r) % (uint64_t)pairs);
        items[s] = (GroupItem){.len = pair_len(d, rec), .slot = s, .record = rec};
    }
    qsort(items, BATCH_GROUP * B, sizeof(GroupItem), group_item_cmp);
    for (int g = 0; g < BATCH_GROUP; g++) { // the order of the batches: a Fisher-Yates shuffle
        int j = (int)(random_u64(&r) % (uint64_t)(g + 1));
        order[g] = order[j];
        order[j] = g;
    }
    const GroupItem *batch = items + (size_t)order[n % BATCH_GROUP] * B;
    for (int b = 0; b < B; b++) { idx[b] = batch[b].record; }
    if (n % BATCH_GROUP == BATCH_GROUP - 1) { *rng = r; }
}

// Pretraining batches: B windows of T+1 consecutive tokens. Training windows start
// at random offsets (the data RNG stream); validation windows are consecutive from
// the start, so every evaluation sees the same tokens.
struct DataLoader {
    const int *tokens;   // (n,)
    size_t n;
    int B, T;
    uint64_t rng;        // RNG_DATA stream; saved in checkpoints so a resumed run continues the same order
    int *inputs;         // (B,T)
    int *targets;        // (B,T) inputs shifted left by one
};

void dataloader_init(DataLoader *dl, const int *tokens, size_t n, int B, int T, uint64_t seed) {
    if (n < (size_t)T + 1) { FAIL("the text has %zu tokens, fewer than one sequence of %d + 1: use a longer text or a smaller -t", n, T); }
    dl->tokens = tokens;
    dl->n = n;
    dl->B = B;
    dl->T = T;
    dl->rng = rng_stream(seed, RNG_DATA);
    dl->inputs = mallocCheck((size_t)B * T * sizeof(int));
    dl->targets = mallocCheck((size_t)B * T * sizeof(int));
}

static void dataloader_fill(DataLoader *dl, int b, size_t start) {
    for (int t = 0; t < dl->T; t++) {
        dl->inputs[b * dl->T + t] = dl->tokens[start + (size_t)t];
        dl->targets[b * dl->T + t] = dl->tokens[start + (size_t)t + 1];
    }
}

// the next training batch: B random windows
void dataloader_next(DataLoader *dl) {
    size_t positions = dl->n - (size_t)dl->T; // a window may start at 0 .. n - T - 1
    for (int b = 0; b < dl->B; b++) { dataloader_fill(dl, b, (size_t)(random_u64(&dl->rng) % positions)); }
}

// validation batch i: B consecutive windows, wrapping around at the end
void dataloader_val_batch(DataLoader *dl, int i) {
    size_t windows = (dl->n - 1) / (size_t)dl->T;
    for (int b = 0; b < dl->B; b++) { dataloader_fill(dl, b, (((size_t)i * dl->B + b) % windows) * (size_t)dl->T); }
}

void dataloader_free(DataLoader *dl) {
    free(dl->inputs);
    free(dl->targets);
}

// the tokens of a text file; *n receives the count
int *encode_file(const Tokenizer *tok, const char *path, size_t *n) {
    size_t bytes;
    char *text = read_whole_file(path, &bytes);
    if (bytes == 0) { FAIL("%s is empty: pretraining needs text", path); }
    int *tokens = mallocCheck(bytes * sizeof(int));
    *n = (size_t)tokenizer_encode(tok, text, bytes, tokens);
    free(text);
    return tokens;
}

// ----------------------------------------------------------------------------
// 8. settings: every flag, and each stage's defaults

// every setting of every command, with its flag; defaults in CONFIG_DEFAULTS
struct Config {
    const char *train_path;     // -i training text
    const char *val_path;       // -j validation text
    const char *out_dir;        // -o where outputs go
    const char *init_path;      // -c checkpoint to start from (default: the previous stage's, in <out>)
    const char *prompts_path;   // -q prompts to answer after SFT (JSONL {"prompt"})
    const char *tokenizer_path; // -z tokenizer to use (default <out>/tokenizer.bin, trained if missing)
    const char *output_path;    // -O the file that answer and score write
    int vocab_size;             // -V vocabulary size when training a tokenizer (bench: the model's V)
    int num_layers;             // -L
    int channels;               // -C
    int num_heads;              // -H
    int seq_len;                // -t T, the context length
    int batch_size;             // -b B
    int grad_accum;             // -a micro-batches per optimizer step
    int steps;                  // -n optimizer steps
    float lr;                   // -l peak learning rate
    int warmup;                 // -w warmup steps
    float final_lr_frac;        // -f learning rate at the end, as a fraction of the peak
    float weight_decay;         // -d
    float grad_clip;            // -g global gradient norm limit (0: off)
    int freeze_embeddings;      // -F 1: the rows of the tokenizer's merges in the token embedding stay as they are
    int eval_every;             // -e steps between validation passes (rlhf: iterations between answering -j)
    int eval_batches;           // -x batches per validation loss
    int sample_every;           // -y steps between samples (0: only at the end)
    int save_every;             // -S steps between checkpoints (0: only at the end)
    const char *prompt;         // -p prompt for samples
    float temperature;          // -r sampling temperature (0: greedy)
    int top_k;                  // -k sample from the k most likely tokens (0: all)
    int gen_len;                // -m tokens to generate (rlhf: the longest response)
    uint64_t seed;              // -s
    // RLHF
    const char *reward_path;    // -R the frozen reward model (default <out>/reward.bin)
    float kl_coef;              // -B beta: the weight of the KL penalty to the SFT model (dpo: of the implicit reward)
    float kl_target;            // -K target KL of the adaptive controller (0: beta stays fixed)
    int kl_horizon;             // -Z rollouts over which the controller closes most of the gap
    int ppo_epochs;             // -E passes over each rollout batch
    int minibatch;              // -M rollouts per PPO minibatch
    float end_penalty;          // -P subtracted from the score of a response that never says <|end|>
    float reward_clip;          // -X scores are clipped to [-X, X] (0: off)
    float clip_range;           // -U epsilon of the ratio's clip range [1 - eps, 1 + eps] (rlhf, grpo)
    int group_size;             // -G grpo: answers per prompt, each judged against its group
    float label_smoothing;      // -D dpo: the probability that a pair's label is flipped (0: plain DPO)
    int resume;                 // --resume: continue the stage from its own last checkpoint in <out>
    int keep_transcripts;       // --keep-transcripts: "Human: ... Assistant:" prompts stay one user turn
    int llmc;                   // --llmc: export writes llm.c's format
    char given[128];            // given['t'] is 1 when -t was on the command line (else the value is a default)
};

// Defaults shared by every command; NULL paths, and a batch size, steps, lr, clip or
// freeze of -1, take the defaults of the stage being run (STAGE_DEFAULTS below).
static const Config CONFIG_DEFAULTS = {
    .train_path = NULL, .val_path = NULL, .out_dir = "out", .init_path = NULL, .prompts_path = NULL,
    .tokenizer_path = NULL, .vocab_size = 1024, .num_layers = 4, .channels = 128,
    .num_heads = 4, .seq_len = 128, .batch_size = -1, .grad_accum = 1, .steps = -1, .lr = -1.0f, .warmup = 20,
    .final_lr_frac = 0.1f, .weight_decay = 0.1f, .grad_clip = -1.0f, .freeze_embeddings = -1, .eval_every = -1, .eval_batches = 8,
    .sample_every = 0, .save_every = 0, .prompt = NULL, .temperature = -1.0f, .top_k = 40, .gen_len = 64,
    .seed = 1337, .reward_path = NULL, .kl_coef = -1.0f, .kl_target = 0.0f, .kl_horizon = 1000, .ppo_epochs = 4, .minibatch = 8,
    .end_penalty = 1.0f, .reward_clip = 0.0f, .clip_range = 0.2f, .group_size = 4, .label_smoothing = 0.1f,
};

// What each stage reads and starts from when the flags do not say. `init` names a
// checkpoint in the output directory.
typedef struct {
    const char *command, *train, *val, *init, *prompts;
    int batch, steps, eval_every, freeze;
    float lr, clip, temperature, beta;
} StageDefaults;

// The reward model trains 1500 steps of 32 pairs at 3e-4, with the gradient norm
// clipped at 0.3 (every step is clipped, so each moves as far as any other): it learns
// content besides style on any of three seeds. 2400 steps of 16 pairs clipped at 1 did
// on two seeds of three, 600 steps on 4000 pairs learned less, and 300 at 1e-3 learned
// style only (doc/reward.md has the measurements). RLHF takes 50 iterations of 32
// rollouts: the same 1600 rollouts and PPO steps as 100 iterations of 16, but each
// batch's advantages are whitened over twice the samples. With each of three reward
// models that kept more of SFT's correctness (doc/rlhf.md). SFT and RLHF keep the
// merges' rows of the token embedding (freeze 1; why: gpt_freeze_token_embeddings_grad).
// DPO and GRPO start from the same SFT model as RLHF and see the same data: the reward
// model's pairs (DPO) and RLHF's prompts, 8 a batch with 4 answers each, the 32
// rollouts of a PPO batch (GRPO). beta is each method's own scale: the weight of the
// KL penalty in PPO's reward and in GRPO's loss, DPO's temperature of the implicit
// reward. Both betas were chosen on the dev prompts (doc/alignment.md): DPO at 0.1 let
// both log-probabilities fall until the answers broke, at 2 it barely moved; GRPO at
// DeepSeekMath's 0.04 found the reward model's blind spot (every answer began "No,"),
// at 2 it barely moved. DPO smooths its labels by 0.1: the world flips 8% of them.
static const StageDefaults STAGE_DEFAULTS[] = {
    {"pretrain", "data/world/pretrain_train.txt", "data/world/pretrain_val.txt", NULL, "data/world/eval_test.jsonl", 16, 1200, 100, 0, 3e-3f, 1.0f, 0.8f, 0.0f},
    {"sft", "data/world/sft_train.jsonl", "data/world/sft_val.jsonl", "base.bin", "data/world/eval_test.jsonl", 16, 300, 25, 1, 1e-3f, 1.0f, 0.0f, 0.0f},
    {"rm", "data/world/pref_train.jsonl", "data/world/pref_val.jsonl", "sft.bin", NULL, 32, 1500, 150, 0, 3e-4f, 0.3f, 0.0f, 0.0f},
    {"rlhf", "data/world/rl_prompts.jsonl", "data/world/eval_dev.jsonl", "sft.bin", "data/world/eval_test.jsonl", 32, 50, 10, 1, 1e-4f, 1.0f, 0.0f, 1.0f},
    {"dpo", "data/world/pref_train.jsonl", "data/world/pref_val.jsonl", "sft.bin", "data/world/eval_test.jsonl", 16, 300, 50, 1, 1e-4f, 1.0f, 0.0f, 0.5f},
    {"grpo", "data/world/rl_prompts.jsonl", "data/world/eval_dev.jsonl", "sft.bin", "data/world/eval_test.jsonl", 8, 50, 10, 1, 1e-4f, 1.0f, 0.0f, 0.5f},
    {"answer", NULL, NULL, NULL, "data/world/eval_test.jsonl", 16, 0, 0, 0, 0.0f, 1.0f, 0.0f, 0.0f},
    {"score", NULL, "data/world/pref_val.jsonl", NULL, NULL, 32, 0, 0, 0, 0.0f, 1.0f, 0.0f, 0.0f},
    {"sample", NULL, NULL, "base.bin", NULL, 16, 0, 0, 0, 0.0f, 1.0f, 0.8f, 0.0f},
    {"chat", NULL, NULL, "rlhf.bin", NULL, 16, 0, 0, 0, 0.0f, 1.0f, 0.0f, 0.0f},
    {"bench", NULL, NULL, NULL, NULL, 16, 5, 0, 0, 1e-4f, 1.0f, 0.0f, 0.0f},
    {"export", NULL, NULL, NULL, NULL, 16, 0, 0, 0, 0.0f, 1.0f, 0.0f, 0.0f},
    {"import", NULL, NULL, NULL, NULL, 16, 0, 0, 0, 0.0f, 1.0f, 0.0f, 0.0f},
};

// What a stage did, for <out>/stages.jsonl, from which `./world summary` makes the
// table at the end of `make run-cpu`: one line per run of a stage, all values strings.
struct StageResult {
    char trained[256]; // what was trained, on what ("" if nothing was)
    char metric[256];  // the stage's key figure, in words
    char answers[64];  // the file of answers to the evaluation prompts in <out> ("" if none)
    char rm_score[32]; // stage 4: the reward model's mean score of those answers ("" if none)
    char kl[32];       // stage 4: KL(policy || SFT) per answer to those prompts ("" if none)
};

// ----------------------------------------------------------------------------
// 9. stage 1: pretraining
//
// Objective: next-token prediction, minimize the mean over positions of
//     -log p(x[t+1] | x[0..t])
// Data: plain text (default: data/world/pretrain_train.txt, val pretrain_val.txt).
// Starts from: random GPT-2 initialization, or a base checkpoint to continue (-c).
// Writes: <out>/tokenizer.bin (trained on the text unless -z names one), <out>/base.bin
// (weights, optimizer state, data position), <out>/pretrain.jsonl (metrics), and the
// base model's answers to the prompts of -q through the chat template (default, with
// the world's data: its held-out evaluation prompts) in <out>/answers_base.jsonl.
// Ref: GPT-2. Simplifications: no dropout; random windows rather than epochs;
// one text stream rather than documents separated by an end-of-text token.

// mean validation loss over eval_batches fixed batches
float evaluate(GPT *model, DataLoader *val, int batches) {
    double sum = 0.0;
    for (int i = 0; i < batches; i++) {
        dataloader_val_batch(val, i);
        gpt_forward(model, val->inputs, val->targets, val->B, val->T);
        sum += model->mean_loss;
    }
    return (float)(sum / batches);
}

// whether step (0-based) ends with a validation pass: every -e steps, and the last
static int eval_due(const Config *cfg, int step) {
    return (cfg->eval_every > 0 && (step + 1) % cfg->eval_every == 0) || step + 1 == cfg->steps;
}

// One optimizer step after the gradients are in: clip, then AdamW at the scheduled
// learning rate. Returns the gradient norm before clipping; *lr gets the rate used.
// A loss or gradient that is NaN or infinite means training has diverged: the stage
// stops here, before the update, so neither the weights nor any checkpoint take it,
// and the checkpoints already written stay as they are.
float optimizer_step(GPT *model, const Config *cfg, int step, float loss, float *lr) {
    *lr = lr_schedule(step, cfg->steps, cfg->warmup, cfg->lr, cfg->final_lr_frac);
    if (cfg->freeze_embeddings) { gpt_freeze_token_embeddings_grad(model); }
    float norm = gpt_clip_grad_norm(model, cfg->grad_clip);
    if (!isfinite(loss) || !isfinite(norm)) {
        FAIL("step %d: the loss is %g and the gradient norm %g: training diverged (NaN or infinity). The weights were not "
             "updated and the checkpoints in %s/ are as the last save left them. Try a lower learning rate (-l), a longer "
             "warmup (-w) or a tighter gradient clip (-g)", step + 1, loss, norm, cfg->out_dir);
    }
    adamw_update(model, *lr, ADAM_BETA1, ADAM_BETA2, ADAM_EPS, cfg->weight_decay, step + 1, cfg->freeze_embeddings);
    return norm;
}

void stage_pretrain(const Config *cfg, StageResult *res) {
    Tokenizer tok;
    DataLoader train, val;
    GPT model;
    TrainState state;
    pretrain_open(cfg, &tok, &train, &val, &model, &state); // the tokenizer, the text, a new or a continued model
    Progress *run = progress_open(cfg, "pretrain.jsonl", state.step);
    uint64_t sample_rng = state.step > 0 && state.sample_rng ? state.sample_rng : rng_stream(cfg->seed, RNG_SAMPLE);
    for (int step = state.step; step < cfg->steps; step++) {
        gpt_zero_grad(&model);
        float loss = 0.0f;
        for (int micro = 0; micro < cfg->grad_accum; micro++) { // the gradient of the mean over -a micro-batches
            dataloader_next(&train);
            gpt_forward(&model, train.inputs, train.targets, train.B, train.T);
            gpt_backward(&model, 1.0f / cfg->grad_accum);
            loss += model.mean_loss / cfg->grad_accum;
        }
        float lr, norm = optimizer_step(&model, cfg, step, loss, &lr);
        log_step(run, cfg, step, loss, lr, norm, (double)cfg->batch_size * cfg->seq_len * cfg->grad_accum);
        if (eval_due(cfg, step)) { log_val_loss(run, "val loss", evaluate(&model, &val, cfg->eval_batches)); }
        if ((cfg->sample_every > 0 && (step + 1) % cfg->sample_every == 0) || step + 1 == cfg->steps) {
            print_sample(&model, &tok, cfg->prompt, val.tokens, cfg->gen_len, cfg->temperature, cfg->top_k, &sample_rng);
        }
        state.data_rng = train.rng;
        state.sample_rng = sample_rng;
        finish_step(run, &model, &state, cfg, step, "base.bin");
    }
    int steps = progress_close(run, cfg, "pretraining", "base.bin");
    snprintf(res->trained, sizeof(res->trained), "base.bin: %d steps on %s", steps, cfg->train_path);
    snprintf(res->metric, sizeof(res->metric), "val loss %.3f", evaluate(&model, &val, cfg->eval_batches));
    stage_answers(&model, &tok, cfg, "answers_base.jsonl", res);
    pretrain_close(&tok, &train, &val, &model);
}

// ----------------------------------------------------------------------------
// 10. stage 2: supervised fine-tuning
//
// Objective: the same next-token loss as pretraining, but only on the response:
//     minimize the mean over response tokens (and <|end|>) of -log p(token | prompt, earlier tokens)
// Data: JSONL {"prompt", "completion"} (default: data/world/sft_{train,val}.jsonl).
// Starts from: the base checkpoint (<out>/base.bin), with a fresh optimizer.
// Writes: <out>/sft.bin, <out>/sft.jsonl (metrics), and the answers to the prompts of
// -q (default, with the world's data: its held-out evaluation prompts) in
// <out>/answers_sft.jsonl. (./train answer answers with any checkpoint, training nothing.)
// Ref: InstructGPT (arXiv:2203.02155), section 3.5. Simplifications: random examples
// with replacement rather than epochs; right padding rather than packing; no dropout.

// mean loss over every response token of the data, in batches of B
float sft_evaluate(GPT *model, const ChatData *d, int B, int *inputs, int *targets) {
    double sum = 0.0;
    long count = 0;
    int *idx = mallocCheck((size_t)B * sizeof(int));
    for (int start = 0; start < d->count; start += B) {
        int n = d->count - start < B ? d->count - start : B;
        for (int b = 0; b < n; b++) { idx[b] = start + b; }
        int T = sft_batch(d, idx, n, inputs, targets);
        gpt_forward(model, inputs, targets, n, T);
        sum += (double)model->mean_loss * model->num_targets;
        count += model->num_targets;
    }
    free(idx);
    return (float)(sum / count);
}

void stage_sft(const Config *cfg, StageResult *res) {
    GPT model;
    TrainState state;
    Tokenizer tok;
    stage_open(cfg, KIND_SFT, (1 << KIND_BASE) | (1 << KIND_SFT), &model, &state, &tok);
    if (!cfg->resume) { stage_fresh_start(&model, &state, KIND_SFT, cfg); } // own steps, a new optimizer
    int maxT = model.config.max_seq_len, B = cfg->batch_size;
    ChatData train, val;
    chat_data_load(&train, cfg->train_path, &tok, 0, maxT + 1, cfg->keep_transcripts); // n - 1 inputs must fit the context
    print_chat_data(cfg->train_path, &train);
    chat_data_validation(&val, &train, cfg->val_path, cfg->train_path, &tok, 0, maxT + 1, cfg->keep_transcripts);
    int *inputs = mallocCheck((size_t)B * maxT * sizeof(int)), *targets = mallocCheck((size_t)B * maxT * sizeof(int));
    int *idx = mallocCheck((size_t)B * sizeof(int));
    printf("val loss (response tokens) before SFT: %.4f\n", sft_evaluate(&model, &val, B, inputs, targets));
    Progress *run = progress_open(cfg, "sft.jsonl", state.step); // its clock starts here, for the first step's speed
    float val_loss = 0.0f; // the last step always has one (eval_due)
    for (int step = state.step; step < cfg->steps; step++) {
        gpt_zero_grad(&model);
        float loss = 0.0f;
        long tokens = 0;
        for (int micro = 0; micro < cfg->grad_accum; micro++) {
            for (int b = 0; b < B; b++) { idx[b] = (int)(random_u64(&state.data_rng) % (uint64_t)train.count); }
            int T = sft_batch(&train, idx, B, inputs, targets); // prompt and padding: target -1, no loss
            gpt_forward(&model, inputs, targets, B, T);
            gpt_backward(&model, 1.0f / cfg->grad_accum);
            loss += model.mean_loss / cfg->grad_accum;
            tokens += (long)B * T;
        }
        float lr, norm = optimizer_step(&model, cfg, step, loss, &lr);
        log_step(run, cfg, step, loss, lr, norm, (double)tokens);
        if (eval_due(cfg, step)) {
            val_loss = sft_evaluate(&model, &val, B, inputs, targets);
            log_val_loss(run, "val loss (response tokens)", val_loss);
        }
        finish_step(run, &model, &state, cfg, step, "sft.bin");
    }
    int steps = progress_close(run, cfg, "sft", "sft.bin");
    snprintf(res->trained, sizeof(res->trained), "sft.bin: %d steps on %s", steps, cfg->train_path);
    snprintf(res->metric, sizeof(res->metric), "val loss %.3f (response tokens)", val_loss);
    stage_answers(&model, &tok, cfg, "answers_sft.jsonl", res);
    free(inputs); free(targets); free(idx);
    chat_data_free(&train);
    chat_data_free(&val);
    gpt_free(&model);
    tokenizer_free(&tok);
}

// ----------------------------------------------------------------------------
// 11. stage 3: reward modeling
//
// Objective: for each pair of responses to one prompt, the one people preferred
// should score higher:
//     minimize the mean over pairs of -log sigmoid(r(prompt, chosen) - r(prompt, rejected))
// where r is the scalar head's value at the response's <|end|> token.
// Data: JSONL {"prompt", "chosen", "rejected"} (default: data/world/pref_{train,val}.jsonl).
// Starts from: the SFT checkpoint (<out>/sft.bin): its body, with the LM head replaced
// by a scalar head (Linear C -> 1, starting at 0).
// Writes: <out>/reward.bin (doc/formats.md), <out>/reward.jsonl (metrics). (./train score
// scores any pairs with a reward model, training nothing.)
// Ref: InstructGPT (arXiv:2203.02155), section 3.5. Simplifications: one pair per
// prompt (InstructGPT compares all K-choose-2 pairs of K answers together); no dropout.

struct RewardStats {
    float accuracy, margin, loss;    // share of pairs with r_chosen > r_rejected (ties count half); mean margin; mean loss
    float chosen_mean, chosen_std, rejected_mean, rejected_std;
};

// the reward model on every pair of d, in batches of B pairs; with scores (2 per pair)
// not NULL, also each pair's two rewards, chosen then rejected
RewardStats reward_evaluate(GPT *model, const ChatData *d, int B, int *inputs, int *ends, float *rewards, float *scores) {
    int pairs = d->count / 2;
    double right = 0, margin = 0, loss = 0, sc = 0, sc2 = 0, sr = 0, sr2 = 0;
    int *idx = mallocCheck((size_t)B * sizeof(int));
    for (int start = 0; start < pairs; start += B) {
        int n = pairs - start < B ? pairs - start : B;
        for (int b = 0; b < n; b++) { idx[b] = start + b; }
        int T = reward_batch(d, idx, n, inputs, ends);
        gpt_forward(model, inputs, NULL, 2 * n, T);
        reward_gather(rewards, model->acts.values, ends, 2 * n, T);
        loss += (double)reward_loss_forward(rewards, rewards + n, n) * n;
        for (int b = 0; b < n; b++) {
            float c = rewards[b], r = rewards[n + b];
            if (scores) { scores[2 * (start + b)] = c; scores[2 * (start + b) + 1] = r; }
            right += c > r ? 1.0 : c == r ? 0.5 : 0.0; // a tie is a coin flip
            margin += c - r;
            sc += c; sc2 += (double)c * c; sr += r; sr2 += (double)r * r;
        }
    }
    free(idx);
    RewardStats st = {.accuracy = (float)(right / pairs), .margin = (float)(margin / pairs), .loss = (float)(loss / pairs),
                      .chosen_mean = (float)(sc / pairs), .rejected_mean = (float)(sr / pairs)};
    st.chosen_std = (float)sqrt(fmax(0.0, sc2 / pairs - (sc / pairs) * (sc / pairs)));
    st.rejected_std = (float)sqrt(fmax(0.0, sr2 / pairs - (sr / pairs) * (sr / pairs)));
    return st;
}

// a reward model made from a language model: the same body, a scalar head at 0
static void reward_model_from_lm(GPT *rm, const GPT *lm) {
    GPTConfig cfg = lm->config;
    cfg.scalar_head = 1;
    gpt_build(rm, cfg);
    // the LM's tensors are the reward model's first 16, in the same layout
    memcpy(rm->params_memory, lm->params_memory, lm->num_parameters * sizeof(float));
    rm->tokenizer = lm->tokenizer;
    memset(rm->params.headw, 0, (size_t)(cfg.channels + 1) * sizeof(float)); // headw, then headb
}

void stage_reward(const Config *cfg, StageResult *res) {
    GPT model;
    TrainState state;
    Tokenizer tok;
    stage_open(cfg, KIND_REWARD, (1 << KIND_SFT) | (1 << KIND_REWARD), &model, &state, &tok);
    if (state.kind == KIND_SFT) { // the reward model starts from the SFT model's body, with a scalar head at 0
        GPT lm = model;
        reward_model_from_lm(&model, &lm);
        gpt_free(&lm);
    }
    if (!cfg->resume) { stage_fresh_start(&model, &state, KIND_REWARD, cfg); } // own steps, a new optimizer
    int maxT = model.config.max_seq_len, B = cfg->batch_size;
    ChatData train, val;
    chat_data_load(&train, cfg->train_path, &tok, 1, maxT, cfg->keep_transcripts); // the reward reads <|end|> as an input: n must fit
    print_chat_data(cfg->train_path, &train);
    chat_data_validation(&val, &train, cfg->val_path, cfg->train_path, &tok, 1, maxT, cfg->keep_transcripts);
    int *inputs = mallocCheck((size_t)2 * B * maxT * sizeof(int)), *ends = mallocCheck((size_t)2 * B * sizeof(int));
    int *idx = mallocCheck((size_t)B * sizeof(int));
    float *rewards = mallocCheck((size_t)2 * B * sizeof(float)), *drewards = mallocCheck((size_t)2 * B * sizeof(float));
    float *dvalues = mallocCheck((size_t)2 * B * maxT * sizeof(float));
    GroupItem *group = mallocCheck((size_t)BATCH_GROUP * B * sizeof(GroupItem));
    RewardStats st = reward_evaluate(&model, &val, B, inputs, ends, rewards, NULL);
    print_reward_stats(state.step == 0 ? "before training" : "reward model", &st, val.count / 2);
    Progress *run = progress_open(cfg, "reward.jsonl", state.step);
    for (int step = state.step; step < cfg->steps; step++) {
        gpt_zero_grad(&model);
        float loss = 0.0f, acc = 0.0f;
        for (int micro = 0; micro < cfg->grad_accum; micro++) {
            grouped_batch(&train, (long)step * cfg->grad_accum + micro, B, &state.data_rng, idx, group);
            int T = reward_batch(&train, idx, B, inputs, ends); // rows 0..B-1 chosen, B..2B-1 rejected
            gpt_forward(&model, inputs, NULL, 2 * B, T);
            reward_gather(rewards, model.acts.values, ends, 2 * B, T); // each response's value at its <|end|>
            loss += reward_loss_forward(rewards, rewards + B, B) / cfg->grad_accum;
            for (int b = 0; b < B; b++) { acc += (rewards[b] > rewards[B + b]) / (float)(B * cfg->grad_accum); }
            memset(drewards, 0, (size_t)2 * B * sizeof(float));
            reward_loss_backward(drewards, drewards + B, rewards, rewards + B, B);
            for (int i = 0; i < 2 * B; i++) { drewards[i] /= cfg->grad_accum; }
            reward_scatter(dvalues, drewards, ends, 2 * B, T);
            gpt_backward_values(&model, dvalues);
        }
        float lr, norm = optimizer_step(&model, cfg, step, loss, &lr);
        log_reward_step(run, cfg, step, loss, acc, lr, norm);
        if (eval_due(cfg, step)) {
            st = reward_evaluate(&model, &val, B, inputs, ends, rewards, NULL);
            log_reward_eval(run, &st, val.count / 2);
        }
        finish_step(run, &model, &state, cfg, step, "reward.bin");
    }
    int steps = progress_close(run, cfg, "rm", "reward.bin");
    print_reward_stats("reward model", &st, val.count / 2);
    snprintf(res->trained, sizeof(res->trained), "reward.bin: %d steps on %s", steps, cfg->train_path);
    snprintf(res->metric, sizeof(res->metric), "held-out accuracy %.3f, margin %.2f", st.accuracy, st.margin);
    free(inputs); free(ends); free(idx); free(rewards); free(drewards); free(dvalues); free(group);
    chat_data_free(&train);
    chat_data_free(&val);
    gpt_free(&model);
    tokenizer_free(&tok);
}

// ----------------------------------------------------------------------------
// 12. stage 4: RLHF with PPO
//
// Objective: maximize the reward model's score of the policy's own answers, while
// staying close to the SFT model:
//     maximize E[ r(prompt, response) ] - beta * KL(policy || SFT)
// with the KL paid token by token, -beta * (log p_policy - log p_SFT), and the score
// added at the last token. PPO makes each batch of samples count several times:
// advantages by GAE from a value model, then a few epochs of the clipped surrogate.
// Models: the policy (from <out>/sft.bin, trained), the reference (the same SFT
// weights, frozen), the reward model (<out>/reward.bin, frozen), and the value model
// (from the reward model's weights, trained, read at every response token).
// Data: JSONL {"prompt"} (default: data/world/rl_prompts.jsonl), sampled at random.
// Writes: <out>/rlhf.bin (the policy), <out>/value.bin, <out>/rlhf.jsonl (metrics), and
// the answers to -q (default: the world's held-out evaluation prompts) in
// <out>/answers_rlhf.jsonl.
// Ref: InstructGPT (arXiv:2203.02155), section 3.5; Ziegler et al. 2019 (arXiv:1909.08593)
// for the per-token KL penalty and the adaptive controller; PPO (arXiv:1707.06347).
// Simplifications: one sample per prompt; no pretraining-loss mix (InstructGPT's
// "PPO-ptx"); no entropy bonus; the value model has its own optimizer, not a shared body.

#define VALUE_CLIP 0.2f     // how far a value may move from the rollout's value per batch
#define GAE_GAMMA 1.0f      // no discount within a response
#define GAE_LAMBDA 0.95f

// One batch of rollouts, padded to a common length T. Grids are (B,T) with the
// layout of a training batch: position t predicts token t+1, so a response token's
// log-probability, value and reward sit one position before it.
struct Rollouts {
    int B, T;
    int *tokens;         // (B,T) <|user|> prompt <|assistant|> response [<|end|>], then EOT padding
    int *targets;        // (B,T) token t+1 where it is a response token, -1 elsewhere (no loss)
    int *prompt_len;     // (B) tokens up to and including <|assistant|>
    int *len;            // (B) tokens in all
    int *ended;          // (B) 1 if the response ends with <|end|>
    float *gen_logp;     // (B,T) the policy's log-probabilities as seen while sampling (KV cache)
    float *logp;         // (B,T) the same from a full forward: PPO's "old" log-probabilities
    float *ref_logp;     // (B,T) the reference (SFT) model's
    float *values;       // (B,T) the value model's, before the update
    float *rewards;      // (B,T) -beta * KL per token, plus the score at the last one
    float *advantages;   // (B,T) GAE, whitened over the batch
    float *returns;      // (B,T) advantages + values (before whitening): the value model's targets
    float *scores;       // (B) the reward model's score of each rollout
    long sampled;        // response tokens sampled
    double gen_seconds;  // the time sampling took
};

void rollouts_init(Rollouts *r, int B, int maxT) {
    size_t n = (size_t)B * maxT;
    r->B = B;
    r->T = maxT;
    r->tokens = mallocCheck(n * sizeof(int));
    r->targets = mallocCheck(n * sizeof(int));
    r->prompt_len = mallocCheck((size_t)B * sizeof(int));
    r->len = mallocCheck((size_t)B * sizeof(int));
    r->ended = mallocCheck((size_t)B * sizeof(int));
    float **grids[] = {&r->gen_logp, &r->logp, &r->ref_logp, &r->values, &r->rewards, &r->advantages, &r->returns};
    for (size_t i = 0; i < sizeof(grids) / sizeof(grids[0]); i++) { *grids[i] = callocCheck(n, sizeof(float)); }
    r->scores = mallocCheck((size_t)B * sizeof(float));
}

void rollouts_free(Rollouts *r) {
    free(r->tokens); free(r->targets); free(r->prompt_len); free(r->len); free(r->ended);
    free(r->gen_logp); free(r->logp); free(r->ref_logp); free(r->values); free(r->rewards);
    free(r->advantages); free(r->returns); free(r->scores);
}

// Samples one response per prompt (examples idx[0..B) of prompts, templates without a
// response) with the KV cache, at temperature 1 with no top-k, so that the tokens
// come from the policy's own distribution and the KL estimate below stays honest.
// A response stops after <|end|> or after max_new tokens. Fills tokens, targets,
// lengths and gen_logp, with r->T the longest rollout. Returns the tokens sampled.
long rlhf_generate(Rollouts *r, GPT *policy, KVCache *kv, const ChatExample *prompts, const int *idx, int max_new,
                   uint64_t *rng) {
    int maxT = policy->config.max_seq_len, B = r->B;
    int *seq = mallocCheck((size_t)maxT * sizeof(int));
    float *lp = mallocCheck((size_t)maxT * sizeof(float));
    long sampled = 0;
    double t0 = now_seconds();
    r->T = 1;
    for (int b = 0; b < B; b++) { // first pass: generate, keeping each rollout in the row of a maxT-wide grid
        const ChatExample *ex = &prompts[idx[b]];
        memcpy(seq, ex->tokens, (size_t)ex->n * sizeof(int));
        int n = gpt_generate(policy, kv, seq, ex->n, max_new, 1.0f, 0, STOP_AT(TOKEN_END), rng, lp, NULL);
        r->prompt_len[b] = ex->n;
        r->len[b] = n;
        r->ended[b] = seq[n - 1] == TOKEN_END;
        sampled += n - ex->n;
        if (n > r->T) { r->T = n; }
        memcpy(r->tokens + (size_t)b * maxT, seq, (size_t)n * sizeof(int));
        memcpy(r->gen_logp + (size_t)b * maxT, lp, (size_t)(n - ex->n) * sizeof(float));
    }
    // second pass: repack rows to width T (row b moves to a lower address, so front to back is safe)
    int T = r->T;
    for (int b = 0; b < B; b++) {
        int p = r->prompt_len[b], n = r->len[b];
        int *tok = r->tokens + (size_t)b * T, *tgt = r->targets + (size_t)b * T;
        float *glp = r->gen_logp + (size_t)b * T;
        memmove(tok, r->tokens + (size_t)b * maxT, (size_t)n * sizeof(int));
        memmove(lp, r->gen_logp + (size_t)b * maxT, (size_t)(n - p) * sizeof(float));
        for (int t = 0; t < T; t++) {
            int response = t >= p - 1 && t < n - 1; // position t predicts response token t+1
            if (t >= n) { tok[t] = TOKEN_EOT; }
            tgt[t] = response ? tok[t + 1] : -1;
            glp[t] = response ? lp[t - (p - 1)] : 0.0f;
        }
    }
    free(seq);
    free(lp);
    r->sampled = sampled;
    r->gen_seconds = now_seconds() - t0;
    return sampled;
}

// Runs the four models over the rollouts, in minibatches of M rows, exactly as PPO's
// first epoch will: the policy's log-probabilities (logp), the reference's (ref_logp),
// the value model's values (unless value is NULL: GRPO has none) and the reward
// model's score at each rollout's last token. Returns the policy's mean entropy per
// response token.
float rlhf_score(Rollouts *r, GPT *policy, GPT *ref, GPT *value, GPT *reward, int M) {
    int T = r->T;
    double entropy = 0.0;
    long count = 0;
    for (int s = 0; s < r->B; s += M) {
        int m = r->B - s < M ? r->B - s : M;
        size_t off = (size_t)s * T, N = (size_t)m * T;
        const int *tokens = r->tokens + off, *targets = r->targets + off;
        gpt_forward(policy, tokens, targets, m, T);
        gpt_logprobs(policy, r->logp + off);
        int V = policy->config.vocab_size;
        for (size_t i = 0; i < N; i++) { // H = -sum p log p over the vocabulary, at response positions
            if (targets[i] < 0) { continue; }
            const float *probs = policy->acts.probs + i * V;
            for (int v = 0; v < V; v++) { if (probs[v] > 0.0f) { entropy -= probs[v] * log(probs[v]); } }
            count++;
        }
        gpt_forward(ref, tokens, targets, m, T);
        gpt_logprobs(ref, r->ref_logp + off);
        if (value) {
            gpt_forward(value, tokens, NULL, m, T);
            memcpy(r->values + off, value->acts.values, N * sizeof(float));
        }
        gpt_forward(reward, tokens, NULL, m, T);
        for (int b = 0; b < m; b++) { r->scores[s + b] = reward->acts.values[(size_t)b * T + r->len[s + b] - 1]; }
    }
    return count > 0 ? (float)(entropy / count) : 0.0f;
}

// the mean over rollouts of the summed log-ratio log pi - log pi_ref: the KL to the reference
float rollouts_kl(const Rollouts *r) {
    double kl = 0.0;
    for (int i = 0; i < r->B * r->T; i++) { if (r->targets[i] >= 0) { kl += r->logp[i] - r->ref_logp[i]; } }
    return (float)(kl / r->B);
}

// Per-token rewards, then advantages and returns by GAE, then whitened advantages.
//   rewards[t] = -beta * (logp[t] - ref_logp[t])       at every response position
//   rewards[last] += clip(score) - penalty * (no <|end|>)
// Returns the mean over rollouts of the summed KL estimate (log p_policy - log p_ref).
float rlhf_advantages(Rollouts *r, float beta, float end_penalty, float reward_clip) {
    int T = r->T;
    for (int b = 0; b < r->B; b++) {
        size_t first = (size_t)b * T + r->prompt_len[b] - 1; // predicts the first response token
        int n = r->len[b] - r->prompt_len[b];                // response tokens
        for (int k = 0; k < n; k++) { r->rewards[first + k] = -beta * (r->logp[first + k] - r->ref_logp[first + k]); }
        float score = r->scores[b];
        if (reward_clip > 0.0f) { score = fmin(fmax(score, -reward_clip), reward_clip); }
        r->rewards[first + n - 1] += score - (r->ended[b] ? 0.0f : end_penalty);
        gae(r->advantages + first, r->returns + first, r->rewards + first, r->values + first, n, GAE_GAMMA, GAE_LAMBDA);
    }
    whiten(r->advantages, r->targets, r->B * T);
    return rollouts_kl(r);
}

// what one PPO batch did, summed over its minibatch updates
struct PPOStats {
    double policy_loss, value_loss, clip_frac, approx_kl;
    double seconds; // the time the updates took
    int updates;
};

// How far an update's policy has moved from the rollouts', over the response tokens:
// adds the share whose probability ratio left the clip range, and the mean of Schulman's
// k3 estimator of KL(old || new), (r - 1) - log r >= 0
static void ratio_stats(const float *logp, const float *logp_old, const int *targets, size_t N, float eps, PPOStats *st) {
    int n = count_targets(targets, (int)N);
    for (size_t i = 0; i < N; i++) {
        if (targets[i] < 0) { continue; }
        double log_ratio = logp[i] - logp_old[i], ratio = exp(log_ratio);
        st->clip_frac += (fabs(ratio - 1.0) > eps) / (double)n;
        st->approx_kl += ((ratio - 1.0) - log_ratio) / n;
    }
}

// One PPO update of the policy and the value model on rows [s, s+m) of the rollouts.
void ppo_update(Rollouts *r, int s, int m, GPT *policy, GPT *value, const Config *sched, int step, float *scratch,
                float *dscratch, PPOStats *st) {
    double t0 = now_seconds();
    int T = r->T;
    size_t off = (size_t)s * T, N = (size_t)m * T;
    const int *tokens = r->tokens + off, *targets = r->targets + off;
    // the policy: new log-probabilities, the clipped surrogate, its gradient through the model
    gpt_forward(policy, tokens, targets, m, T);
    gpt_logprobs(policy, scratch); // under the current weights
    const float *logp_old = r->logp + off, *adv = r->advantages + off;
    float eps = sched->clip_range, policy_loss = ppo_policy_loss_forward(scratch, logp_old, adv, targets, (int)N, eps);
    st->policy_loss += policy_loss;
    ratio_stats(scratch, logp_old, targets, N, eps, st);
    ppo_policy_loss_backward(dscratch, scratch, logp_old, adv, targets, (int)N, eps);
    gpt_zero_grad(policy);
    gpt_backward_logprobs(policy, dscratch);
    float lr;
    optimizer_step(policy, sched, step, policy_loss, &lr);
    // the value model: the clipped regression onto the returns
    gpt_forward(value, tokens, NULL, m, T);
    const float *v_old = r->values + off, *returns = r->returns + off;
    float value_loss = ppo_value_loss_forward(value->acts.values, v_old, returns, targets, (int)N, VALUE_CLIP);
    st->value_loss += value_loss;
    ppo_value_loss_backward(dscratch, value->acts.values, v_old, returns, targets, (int)N, VALUE_CLIP);
    gpt_zero_grad(value);
    gpt_backward_values(value, dscratch);
    optimizer_step(value, sched, step, value_loss, &lr);
    st->updates++;
    st->seconds += now_seconds() - t0;
}

// The adaptive KL controller: after a batch of n rollouts whose KL to the reference
// was kl, beta grows when the KL runs above its target and shrinks below it, by at
// most 20% of the gap per horizon's worth of rollouts:
//     beta <- beta * (1 + clip(kl / target - 1, -0.2, 0.2) * n / horizon)
// Ref: Ziegler et al. 2019 (arXiv:1909.08593), section 2.2
float kl_controller(float beta, float kl, float target, int n, int horizon) {
    float err = fmin(fmax(kl / target - 1.0f, -0.2f), 0.2f);
    return beta * (1.0f + err * n / horizon);
}

// the prompts of -i as chat templates that leave room for a response of -m tokens;
// prompts that cannot are dropped (prompts_load counts them)
static ChatExample *load_prompts(const Config *cfg, const Tokenizer *tok, int maxT, int *count) {
    Chat *chats;
    int total, n = 0;
    ChatExample *ex = prompts_load(cfg->train_path, tok, cfg->gen_len, maxT, cfg->keep_transcripts, &chats, &total);
    for (int i = 0; i < total; i++) {
        chat_free(&chats[i]);
        if (ex[i].tokens) { ex[n++] = ex[i]; }
    }
    free(chats);
    if (n == 0) { FAIL("%s: no prompt leaves room for a response of -m tokens in the context", cfg->train_path); }
    *count = n;
    return ex;
}

// How far a policy has moved from its reference, KL(policy || ref) per answer, by
// sampling: for one answer to each prompt, drawn from the policy at temperature 1 with
// the whole vocabulary, the sum over its tokens of log pi - log pi_ref, averaged over the
// prompts. An unbiased estimate of the mean KL between the two distributions of answers.
float sampled_kl(GPT *policy, GPT *ref, const ChatExample *prompts, int count, int max_new, uint64_t *rng) {
    int maxT = policy->config.max_seq_len;
    int *tokens = mallocCheck((size_t)(maxT + 1) * sizeof(int)), *targets = mallocCheck((size_t)maxT * sizeof(int));
    float *lp = mallocCheck((size_t)maxT * sizeof(float));
    KVCache kv;
    kvcache_init(&kv, policy->config);
    double kl = 0.0;
    for (int i = 0; i < count; i++) {
        const ChatExample *ex = &prompts[i];
        memcpy(tokens, ex->tokens, (size_t)ex->n * sizeof(int));
        int n = gpt_generate(policy, &kv, tokens, ex->n, max_new, 1.0f, 0, STOP_AT(TOKEN_END), rng, lp, NULL);
        if (n == ex->n) { continue; }
        for (int t = 0; t < n - 1; t++) { targets[t] = t >= ex->n - 1 ? tokens[t + 1] : -1; }
        gpt_forward(ref, tokens, targets, 1, n - 1);
        for (int t = ex->n - 1; t < n - 1; t++) { kl += lp[t - (ex->n - 1)] + ref->losses[t]; } // log pi - log pi_ref
    }
    free(tokens); free(targets); free(lp);
    kvcache_free(&kv);
    return count > 0 ? (float)(kl / count) : 0.0f;
}

// The held-out view of RLHF (and GRPO) as it trains: every -e iterations and after the
// last, the policy answers the dev prompts of -j as it will after training, and the
// reward model scores those answers. Iteration `step` (0 = the SFT model) writes
// <out>/answers_<stage>_step<step>.jsonl and a line of <out>/<stage>_eval.jsonl; ./world
// summary grades the same answers with the referee: the reward model's view and the
// truth, side by side. Dev, not the test prompts of -q that the final model answers:
// whoever watches training chooses by it. Greedy by default, and with its own RNG
// stream, so evaluating never changes training.
static void evaluate_on_dev(GPT *policy, GPT *reward, const Tokenizer *tok, const Config *cfg, const char *stage, int step,
                            FILE *log) {
    char name[64], path[4096];
    snprintf(name, sizeof(name), "answers_%s_step%d.jsonl", stage, step);
    out_path(path, sizeof(path), cfg, name);
    uint64_t rng = rng_stream(cfg->seed, RNG_SAMPLE);
    float score = answer_prompts(policy, tok, cfg->val_path, path, cfg->temperature, cfg->top_k, cfg->gen_len, &rng, reward);
    fprintf(log, "{\"step\": %d, \"answers\": \"%s\", \"rm_score\": %.6f}\n", step, name, score);
    fflush(log);
}

void stage_rlhf(const Config *cfg, StageResult *res) {
    GPT policy, ref, value, reward; // trained, frozen SFT, trained critic, frozen reward model
    TrainState state, value_state;
    Tokenizer tok;
    rlhf_open(cfg, &policy, &ref, &value, &reward, &state, &value_state, &tok);
    int maxT = policy.config.max_seq_len, B = cfg->batch_size, M = cfg->minibatch < B ? cfg->minibatch : B;
    int n_prompts, chunks = (B + M - 1) / M;
    ChatExample *prompts = load_prompts(cfg, &tok, maxT, &n_prompts);
    printf("rlhf: %d iterations of %d rollouts (up to %d tokens each), %d PPO epochs of minibatches of %d, beta %g%s\n",
           cfg->steps, B, cfg->gen_len, cfg->ppo_epochs, M, cfg->kl_coef, cfg->kl_target > 0 ? " (adaptive)" : "");
    Rollouts r;
    rollouts_init(&r, B, maxT);
    KVCache kv;
    kvcache_init(&kv, policy.config);
    int *idx = mallocCheck((size_t)B * sizeof(int)), *order = mallocCheck((size_t)chunks * sizeof(int));
    float *logp = mallocCheck((size_t)M * maxT * sizeof(float)), *dscratch = mallocCheck((size_t)M * maxT * sizeof(float));
    Config sched = *cfg; // the learning-rate schedule runs over every minibatch update
    sched.steps = cfg->steps * cfg->ppo_epochs * chunks;
    float beta = state.beta;
    double tail[2] = {0.0, 0.0}; // the means of the score and the KL over the last 10 iterations
    Progress *run = progress_open(cfg, "rlhf.jsonl", state.step);
    FILE *eval_log = open_log(cfg, "rlhf_eval.jsonl", state.step - 1); // the evaluation at state.step is done again
    int updates = state.step * cfg->ppo_epochs * chunks;
    for (int iter = state.step; iter < cfg->steps; iter++) {
        if (cfg->val_path && cfg->eval_every > 0 && iter % cfg->eval_every == 0) {
            evaluate_on_dev(&policy, &reward, &tok, cfg, "rlhf", iter, eval_log);
        }
        // 1. rollouts: the policy answers B prompts drawn at random, then the four models
        //    read every response token: log-probabilities, reference log-probabilities,
        //    values, and the reward model's score at the end
        for (int b = 0; b < B; b++) { idx[b] = (int)(random_u64(&state.data_rng) % (uint64_t)n_prompts); }
        rlhf_generate(&r, &policy, &kv, prompts, idx, cfg->gen_len, &state.sample_rng);
        float entropy = rlhf_score(&r, &policy, &ref, &value, &reward, M);
        // 2. rewards per token (the score at the end, -beta * KL at every token), and
        //    advantages by GAE
        float kl = rlhf_advantages(&r, beta, cfg->end_penalty, cfg->reward_clip);
        // 3. PPO: epochs over the rollouts, in minibatches of M, in a new order each epoch
        PPOStats st = {0};
        for (int e = 0; e < cfg->ppo_epochs; e++) {
            shuffle(order, chunks, &state.data_rng);
            for (int c = 0; c < chunks; c++) {
                int s = order[c] * M, m = B - s < M ? B - s : M;
                ppo_update(&r, s, m, &policy, &value, &sched, updates++, logp, dscratch, &st);
            }
        }
        log_rlhf_iteration(run, cfg, iter, &r, &st, kl, beta, entropy, tail);
        // 4. the adaptive KL controller (Ziegler et al. 2019, section 2.2)
        if (cfg->kl_target > 0.0f) { beta = kl_controller(beta, kl, cfg->kl_target, B, cfg->kl_horizon); }
        state.step = value_state.step = iter + 1;
        state.beta = beta;
        rlhf_save(cfg, iter, &policy, &state, &value, &value_state);
    }
    int iterations = progress_close(run, cfg, "rlhf", "rlhf.bin");
    snprintf(res->trained, sizeof(res->trained), "rlhf.bin: %d PPO iterations of %d prompts of %s", iterations, B,
             cfg->train_path);
    snprintf(res->metric, sizeof(res->metric), "RM score %+.3f, KL to SFT %.2f (last 10 iterations)", tail[0], tail[1]);
    if (cfg->val_path) { evaluate_on_dev(&policy, &reward, &tok, cfg, "rlhf", cfg->steps, eval_log); }
    fcloseCheck(eval_log);
    alignment_answers(&policy, &ref, &reward, &tok, cfg, "answers_rlhf.jsonl", res);
    for (int i = 0; i < n_prompts; i++) { chat_example_free(&prompts[i]); }
    free(prompts); free(idx); free(order); free(logp); free(dscratch);
    kvcache_free(&kv);
    rollouts_free(&r);
    gpt_free(&policy); gpt_free(&ref); gpt_free(&value); gpt_free(&reward);
    tokenizer_free(&tok);
}

// ----------------------------------------------------------------------------
// 13. stage 4 without a reward model: DPO
//
// Objective: the same as RLHF's, maximize E[ r(x, y) ] - beta KL(policy || SFT), solved
// without sampling. For a fixed reward r that objective's best policy is known:
//     pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x)
// Turned around, every policy defines the reward it is best for,
//     r(x, y) = beta log(pi(y|x) / pi_ref(y|x)) + beta log Z(x),
// and in the reward model's pairwise loss, -log sigmoid(r(x, chosen) - r(x, rejected)),
// the unknown Z(x) cancels. So that loss, with this implicit reward, trains the policy
// straight from the preference pairs (dpo_loss_forward, section 2). doc/alignment.md
// has the derivation.
// Data: JSONL {"prompt", "chosen", "rejected"} (default: data/world/pref_{train,val}.jsonl,
// the reward model's pairs).
// Models: the policy (from <out>/sft.bin, trained) and the reference (the same SFT
// weights, frozen). The reward model, when there is one, only scores the answers at the end.
// Writes: <out>/dpo.bin, <out>/dpo.jsonl (metrics), and the answers to -q in
// <out>/answers_dpo.jsonl.
// Ref: Rafailov et al. 2023 (arXiv:2305.18290). Simplifications: the reference's
// log-probabilities are computed with each batch, not once ahead; one pair per prompt.

// one batch of pairs through both models, and what the log shows of it (sums over pairs)
typedef struct {
    int *inputs, *targets, *rows;  // (2B,T) chosen rows then rejected rows; (2B) their examples
    float *logp, *dlogp;           // (2B,T) per token
    float *seq, *ref_seq, *dseq;   // (2B) per response: summed log-probabilities, and the gradient
} DPOBatch;

void dpo_batch_init(DPOBatch *b, int B, int maxT) {
    size_t cells = (size_t)2 * B * maxT, rows = (size_t)2 * B;
    b->inputs = mallocCheck(cells * sizeof(int));
    b->targets = mallocCheck(cells * sizeof(int));
    b->rows = mallocCheck(rows * sizeof(int));
    b->logp = mallocCheck(cells * sizeof(float));
    b->dlogp = mallocCheck(cells * sizeof(float));
    b->seq = mallocCheck(rows * sizeof(float));
    b->ref_seq = mallocCheck(rows * sizeof(float));
    b->dseq = mallocCheck(rows * sizeof(float));
}

void dpo_batch_free(DPOBatch *b) {
    free(b->inputs); free(b->targets); free(b->rows); free(b->logp); free(b->dlogp);
    free(b->seq); free(b->ref_seq); free(b->dseq);
}

struct DPOStats {
    double loss, right, margin;            // loss; pairs whose implicit rewards rank them right; reward margin
    double chosen_reward, rejected_reward; // beta (log pi - log pi_ref), chosen and rejected
    double chosen_logp, rejected_logp;     // log pi of each response (a known failure: both fall)
    int pairs;
};

// The summed log-probabilities of the responses of pairs idx[0..P) under the reference
// and then the policy, whose activations stay for the backward; the loss and its
// figures go into *st. Returns the loss.
float dpo_forward(GPT *policy, GPT *ref, const ChatData *d, const int *idx, int P, float beta, float eps, DPOBatch *b,
                  DPOStats *st) {
    for (int i = 0; i < P; i++) { b->rows[i] = 2 * idx[i]; b->rows[P + i] = 2 * idx[i] + 1; } // chosen, rejected
    int T = sft_batch(d, b->rows, 2 * P, b->inputs, b->targets); // targets on each response and its <|end|>
    gpt_forward(ref, b->inputs, b->targets, 2 * P, T);
    gpt_logprobs(ref, b->logp);
    sequence_logprobs(b->ref_seq, b->logp, b->targets, 2 * P, T);
    gpt_forward(policy, b->inputs, b->targets, 2 * P, T);
    gpt_logprobs(policy, b->logp);
    sequence_logprobs(b->seq, b->logp, b->targets, 2 * P, T);
    float loss = dpo_loss_forward(b->seq, b->seq + P, b->ref_seq, b->ref_seq + P, P, beta, eps);
    for (int i = 0; i < P; i++) {
        double rc = beta * (b->seq[i] - b->ref_seq[i]), rr = beta * (b->seq[P + i] - b->ref_seq[P + i]);
        st->right += rc > rr ? 1.0 : rc == rr ? 0.5 : 0.0; // a tie is a coin flip
        st->margin += rc - rr;
        st->chosen_reward += rc;
        st->rejected_reward += rr;
        st->chosen_logp += b->seq[i];
        st->rejected_logp += b->seq[P + i];
    }
    st->loss += (double)loss * P;
    st->pairs += P;
    return loss;
}

// The gradient of dpo_forward's loss, divided by `accum` (the micro-batches of a step),
// added into the policy's: the loss -> each response's summed log-probability -> each
// of its tokens -> the weights
void dpo_backward(GPT *policy, DPOBatch *b, int P, float beta, float eps, int accum) {
    memset(b->dseq, 0, (size_t)2 * P * sizeof(float));
    dpo_loss_backward(b->dseq, b->dseq + P, b->seq, b->seq + P, b->ref_seq, b->ref_seq + P, P, beta, eps);
    for (int i = 0; i < 2 * P; i++) { b->dseq[i] /= accum; }
    sequence_logprobs_backward(b->dlogp, b->dseq, b->targets, 2 * P, policy->seq_len);
    gpt_backward_logprobs(policy, b->dlogp);
}

// the DPO loss and its figures over every pair of d, in batches of B
DPOStats dpo_evaluate(GPT *policy, GPT *ref, const ChatData *d, int B, float beta, float eps, DPOBatch *b) {
    DPOStats st = {0};
    int pairs = d->count / 2, *idx = mallocCheck((size_t)B * sizeof(int));
    for (int start = 0; start < pairs; start += B) {
        int n = pairs - start < B ? pairs - start : B;
        for (int i = 0; i < n; i++) { idx[i] = start + i; }
        dpo_forward(policy, ref, d, idx, n, beta, eps, b, &st);
    }
    free(idx);
    return st;
}

void stage_dpo(const Config *cfg, StageResult *res) {
    GPT policy, ref, reward;
    TrainState state;
    Tokenizer tok;
    stage_open(cfg, KIND_DPO, cfg->resume ? 1 << KIND_DPO : 1 << KIND_SFT, &policy, &state, &tok); // the reference is SFT
    if (!cfg->resume) { stage_fresh_start(&policy, &state, KIND_DPO, cfg); }
    load_weights(&ref, cfg->init_path, 1 << KIND_SFT);
    int has_reward = open_reward_model(cfg, &policy, &reward, 0);
    int maxT = policy.config.max_seq_len, B = cfg->batch_size;
    float beta = cfg->kl_coef, eps = cfg->label_smoothing;
    if (beta <= 0.0f) { FAIL("dpo -B %g: beta must be > 0 (at 0 every implicit reward is 0 and nothing trains)", beta); }
    if (eps >= 0.5f) { FAIL("dpo -D %g: label smoothing must be below 0.5 (at 0.5 a label says nothing)", eps); }
    ChatData train, val;
    chat_data_load(&train, cfg->train_path, &tok, 1, maxT + 1, cfg->keep_transcripts); // n - 1 inputs must fit
    print_chat_data(cfg->train_path, &train);
    chat_data_validation(&val, &train, cfg->val_path, cfg->train_path, &tok, 1, maxT + 1, cfg->keep_transcripts);
    DPOBatch b;
    dpo_batch_init(&b, B, maxT);
    int *idx = mallocCheck((size_t)B * sizeof(int));
    GroupItem *group = mallocCheck((size_t)BATCH_GROUP * B * sizeof(GroupItem));
    printf("dpo: beta %g, label smoothing %g%s\n", beta, eps,
           state.step == 0 ? "; the policy starts as the reference, so the loss starts at ln 2 = 0.6931" : "");
    DPOStats val_st = dpo_evaluate(&policy, &ref, &val, B, beta, eps, &b);
    print_dpo_stats(state.step == 0 ? "val before DPO" : "val", &val_st);
    Progress *run = progress_open(cfg, "dpo.jsonl", state.step);
    for (int step = state.step; step < cfg->steps; step++) {
        gpt_zero_grad(&policy);
        DPOStats st = {0};
        float loss = 0.0f;
        for (int micro = 0; micro < cfg->grad_accum; micro++) {
            grouped_batch(&train, (long)step * cfg->grad_accum + micro, B, &state.data_rng, idx, group);
            loss += dpo_forward(&policy, &ref, &train, idx, B, beta, eps, &b, &st) / cfg->grad_accum;
            dpo_backward(&policy, &b, B, beta, eps, cfg->grad_accum);
        }
        float lr, norm = optimizer_step(&policy, cfg, step, loss, &lr);
        log_dpo_step(run, cfg, step, &st, lr, norm);
        if (eval_due(cfg, step)) {
            val_st = dpo_evaluate(&policy, &ref, &val, B, beta, eps, &b);
            log_dpo_eval(run, &val_st);
        }
        finish_step(run, &policy, &state, cfg, step, "dpo.bin");
    }
    int steps = progress_close(run, cfg, "dpo", "dpo.bin");
    print_dpo_stats("val after DPO", &val_st);
    snprintf(res->trained, sizeof(res->trained), "dpo.bin: %d steps on %s", steps, cfg->train_path);
    snprintf(res->metric, sizeof(res->metric), "val pairs ranked right %.3f, margin %.2f",
             val_st.right / val_st.pairs, val_st.margin / val_st.pairs);
    alignment_answers(&policy, &ref, has_reward ? &reward : NULL, &tok, cfg, "answers_dpo.jsonl", res);
    dpo_batch_free(&b);
    free(idx); free(group);
    chat_data_free(&train);
    chat_data_free(&val);
    gpt_free(&policy); gpt_free(&ref);
    if (has_reward) { gpt_free(&reward); }
    tokenizer_free(&tok);
}

// ----------------------------------------------------------------------------
// 14. stage 4 without a critic: GRPO
//
// Objective: RLHF's, maximize E[ r(prompt, response) ] - beta KL(policy || SFT), with
// PPO's clipped updates but no value model. PPO needs a critic to say how good an
// answer was compared with what was expected; GRPO asks the policy for G answers to
// each prompt and compares each with its own group: the advantage of an answer is its
// score standardized within the group (group_advantages, section 2), shared by all its
// tokens. The KL to the SFT model is a term of the loss (the k3 estimate), not a
// penalty inside the reward, so the advantages are the reward model's alone.
// Models: the policy (from <out>/sft.bin, trained), the reference (the same SFT weights,
// frozen) and the reward model (<out>/reward.bin, frozen).
// Data: JSONL {"prompt"} (default: data/world/rl_prompts.jsonl, RLHF's prompts).
// Writes: <out>/grpo.bin, <out>/grpo.jsonl (metrics), and the answers to -q in
// <out>/answers_grpo.jsonl.
// Ref: Shao et al. 2024, DeepSeekMath (arXiv:2402.03300), section 4; DeepSeek-R1 (arXiv:2501.12948).
// Simplifications: outcome rewards only (one score per answer).

// the advantages of a batch of rollouts in groups of G: each rollout's score (clipped,
// less the penalty when it never said <|end|>) against its group's, at every response
// token. Returns the share of groups whose G scores were all equal (they teach nothing).
float grpo_advantages(Rollouts *r, int G, float end_penalty, float reward_clip, float *scores, float *adv) {
    for (int b = 0; b < r->B; b++) {
        float s = r->scores[b];
        if (reward_clip > 0.0f) { s = fmin(fmax(s, -reward_clip), reward_clip); }
        scores[b] = s - (r->ended[b] ? 0.0f : end_penalty);
    }
    group_advantages(adv, scores, r->B, G);
    int T = r->T, flat = 0;
    for (int b = 0; b < r->B; b++) {
        for (int t = 0; t < T; t++) { r->advantages[b * T + t] = r->targets[b * T + t] >= 0 ? adv[b] : 0.0f; }
    }
    for (int g = 0; g < r->B; g += G) {
        int same = 1;
        for (int i = g + 1; i < g + G; i++) { same &= scores[i] == scores[g]; }
        flat += same;
    }
    return (float)flat / (r->B / G);
}

// One GRPO update of the policy on rows [s, s+m) of the rollouts: PPO's update without
// the value model, with the KL term in the loss.
void grpo_update(Rollouts *r, int s, int m, GPT *policy, const Config *sched, int step, float *scratch, float *dscratch,
                 PPOStats *st) {
    double t0 = now_seconds();
    int T = r->T;
    size_t off = (size_t)s * T, N = (size_t)m * T;
    const int *tokens = r->tokens + off, *targets = r->targets + off;
    gpt_forward(policy, tokens, targets, m, T);
    gpt_logprobs(policy, scratch);
    const float *logp_old = r->logp + off, *ref_logp = r->ref_logp + off, *adv = r->advantages + off;
    float eps = sched->clip_range, beta = sched->kl_coef;
    float loss = grpo_loss_forward(scratch, logp_old, ref_logp, adv, targets, m, T, eps, beta);
    st->policy_loss += loss;
    ratio_stats(scratch, logp_old, targets, N, eps, st);
    grpo_loss_backward(dscratch, scratch, logp_old, ref_logp, adv, targets, m, T, eps, beta);
    gpt_zero_grad(policy);
    gpt_backward_logprobs(policy, dscratch);
    float lr;
    optimizer_step(policy, sched, step, loss, &lr);
    st->updates++;
    st->seconds += now_seconds() - t0;
}

void stage_grpo(const Config *cfg, StageResult *res) {
    GPT policy, ref, reward;
    TrainState state;
    Tokenizer tok;
    if (cfg->group_size < 2) { FAIL("grpo -G %d: a group needs at least 2 answers to compare", cfg->group_size); }
    policy_open(cfg, "grpo", KIND_GRPO, &policy, &ref, &reward, &state, &tok);
    int G = cfg->group_size, P = cfg->batch_size, B = P * G; // P prompts, G answers each
    int maxT = policy.config.max_seq_len, M = cfg->minibatch < B ? cfg->minibatch : B;
    int n_prompts, chunks = (B + M - 1) / M;
    ChatExample *prompts = load_prompts(cfg, &tok, maxT, &n_prompts);
    printf("grpo: %d iterations of %d prompts x %d answers (up to %d tokens each), %d epochs of minibatches of %d, "
           "beta %g\n", cfg->steps, P, G, cfg->gen_len, cfg->ppo_epochs, M, cfg->kl_coef);
    Rollouts r;
    rollouts_init(&r, B, maxT);
    KVCache kv;
    kvcache_init(&kv, policy.config);
    int *idx = mallocCheck((size_t)B * sizeof(int)), *order = mallocCheck((size_t)chunks * sizeof(int));
    float *logp = mallocCheck((size_t)M * maxT * sizeof(float)), *dscratch = mallocCheck((size_t)M * maxT * sizeof(float));
    float *scores = mallocCheck((size_t)B * sizeof(float)), *adv = mallocCheck((size_t)B * sizeof(float));
    Config sched = *cfg; // the learning-rate schedule runs over every minibatch update
    sched.steps = cfg->steps * cfg->ppo_epochs * chunks;
    double tail[2] = {0.0, 0.0}; // the means of the score and the KL over the last 10 iterations
    Progress *run = progress_open(cfg, "grpo.jsonl", state.step);
    FILE *eval_log = open_log(cfg, "grpo_eval.jsonl", state.step - 1);
    int updates = state.step * cfg->ppo_epochs * chunks;
    for (int iter = state.step; iter < cfg->steps; iter++) {
        if (cfg->val_path && cfg->eval_every > 0 && iter % cfg->eval_every == 0) {
            evaluate_on_dev(&policy, &reward, &tok, cfg, "grpo", iter, eval_log);
        }
        // 1. the groups: P prompts drawn at random, each answered G times at temperature 1;
        //    the policy, the reference and the reward model read every answer
        for (int p = 0; p < P; p++) {
            int prompt = (int)(random_u64(&state.data_rng) % (uint64_t)n_prompts);
            for (int g = 0; g < G; g++) { idx[p * G + g] = prompt; }
        }
        rlhf_generate(&r, &policy, &kv, prompts, idx, cfg->gen_len, &state.sample_rng);
        float entropy = rlhf_score(&r, &policy, &ref, NULL, &reward, M);
        // 2. advantages: each answer against its group
        float flat = grpo_advantages(&r, G, cfg->end_penalty, cfg->reward_clip, scores, adv);
        float kl = rollouts_kl(&r);
        // 3. epochs over the rollouts, in minibatches of M, in a new order each epoch
        PPOStats st = {0};
        for (int e = 0; e < cfg->ppo_epochs; e++) {
            shuffle(order, chunks, &state.data_rng);
            for (int c = 0; c < chunks; c++) {
                int s = order[c] * M, m = B - s < M ? B - s : M;
                grpo_update(&r, s, m, &policy, &sched, updates++, logp, dscratch, &st);
            }
        }
        log_grpo_iteration(run, cfg, iter, &r, &st, kl, entropy, flat, tail);
        state.step = iter + 1;
        policy_save(cfg, &policy, &state, "grpo.bin");
    }
    int iterations = progress_close(run, cfg, "grpo", "grpo.bin");
    snprintf(res->trained, sizeof(res->trained), "grpo.bin: %d iterations of %d prompts x %d answers of %s", iterations, P, G,
             cfg->train_path);
    snprintf(res->metric, sizeof(res->metric), "RM score %+.3f, KL to SFT %.2f (last 10 iterations)", tail[0], tail[1]);
    if (cfg->val_path) { evaluate_on_dev(&policy, &reward, &tok, cfg, "grpo", cfg->steps, eval_log); }
    fcloseCheck(eval_log);
    alignment_answers(&policy, &ref, &reward, &tok, cfg, "answers_grpo.jsonl", res);
    for (int i = 0; i < n_prompts; i++) { chat_example_free(&prompts[i]); }
    free(prompts); free(idx); free(order); free(logp); free(dscratch); free(scores); free(adv);
    kvcache_free(&kv);
    rollouts_free(&r);
    gpt_free(&policy); gpt_free(&ref); gpt_free(&reward);
    tokenizer_free(&tok);
}

// ----------------------------------------------------------------------------
// 15. other commands: answer, score, sample

// Answers every prompt of a JSONL file of {"prompt"} with a language model, greedy
// (temperature 0) or sampled, through the chat template; generation stops at
// <|end|> or after max_new tokens. Writes {"prompt", "response"} lines, the input of
// `./world score`. Given a reward model (else NULL), it also scores each answer as
// RLHF scores a rollout, at the answer's last token, and returns the mean score.
float answer_prompts(GPT *model, const Tokenizer *tok, const char *prompts_path, const char *out, float temperature,
                     int top_k, int max_new, uint64_t *rng, GPT *reward) {
    int maxT = model->config.max_seq_len, ended = 0, count;
    Chat *chats;
    ChatExample *prompts = prompts_load(prompts_path, tok, answer_room(maxT, max_new), maxT, 0, &chats, &count); // too long: cut
    int *tokens = mallocCheck((size_t)(maxT + 1) * sizeof(int));
    double score = 0.0;
    KVCache kv;
    kvcache_init(&kv, model->config);
    Str lines = {0};
    for (int i = 0; i < count; i++) {
        const ChatExample *ex = &prompts[i];
        if (ex->tokens == NULL) { FAIL("%s: prompt %d does not fit the context", prompts_path, i + 1); }
        memcpy(tokens, ex->tokens, (size_t)ex->n * sizeof(int));
        int n = gpt_generate(model, &kv, tokens, ex->n, max_new, temperature, top_k, STOP_AT(TOKEN_END), rng, NULL, NULL);
        int stop = n > ex->n && tokens[n - 1] == TOKEN_END;
        ended += stop;
        if (reward) {
            gpt_forward(reward, tokens, NULL, 1, n);
            score += reward->acts.values[n - 1];
        }
        char *response = tokenizer_decode_text(tok, tokens + ex->n, n - ex->n - stop);
        str_add(&lines, "{\"prompt\": ", 11);
        json_write_chat(&lines, &chats[i]);
        str_add(&lines, ", \"response\": ", 14);
        json_write_string(&lines, response);
        str_add(&lines, "}\n", 2);
        free(response);
    }
    FILE *f = fopenCheck(out, "wb");
    fwriteCheck(str_cstr(&lines), 1, lines.len, f);
    fcloseCheck(f);
    score /= count;
    printf("answers: %d prompts of %s -> %s (%.0f%% ended with <|end|>", count, prompts_path, out, 100.0 * ended / count);
    if (reward) { printf("; reward-model score %+.3f", score); }
    printf(")\n");
    for (int i = 0; i < count; i++) { chat_example_free(&prompts[i]); chat_free(&chats[i]); }
    free(prompts);
    free(chats);
    str_free(&lines);
    kvcache_free(&kv);
    free(tokens);
    return (float)score;
}

// A stage's answers to the prompts of -q, greedy by default (-r 0), in <out>/<name>,
// for ./world summary to grade (the name goes into the stage's record).
static void stage_answers(GPT *model, const Tokenizer *tok, const Config *cfg, const char *name, StageResult *res) {
    if (!cfg->prompts_path) { return; }
    char path[4096];
    out_path(path, sizeof(path), cfg, name);
    uint64_t rng = rng_stream(cfg->seed, RNG_SAMPLE);
    answer_prompts(model, tok, cfg->prompts_path, path, cfg->temperature, cfg->top_k, cfg->gen_len, &rng, NULL);
    snprintf(res->answers, sizeof(res->answers), "%s", name);
}

// The answers of a policy that stage 4 aligned (PPO, DPO or GRPO), as stage_answers,
// and two figures that put the three methods side by side on the same test prompts:
// the reward model's mean score of those answers (if there is a reward model), and how
// far the policy moved from the SFT model: KL(policy || SFT) per answer, estimated by
// sampled_kl (section 12) on its own RNG stream.
static void alignment_answers(GPT *policy, GPT *ref, GPT *reward, const Tokenizer *tok, const Config *cfg, const char *name,
                              StageResult *res) {
    if (!cfg->prompts_path) { return; }
    char path[4096];
    out_path(path, sizeof(path), cfg, name);
    uint64_t rng = rng_stream(cfg->seed, RNG_SAMPLE);
    float score = answer_prompts(policy, tok, cfg->prompts_path, path, cfg->temperature, cfg->top_k, cfg->gen_len, &rng, reward);
    snprintf(res->answers, sizeof(res->answers), "%s", name);
    if (reward) { snprintf(res->rm_score, sizeof(res->rm_score), "%.4f", score); }
    int maxT = policy->config.max_seq_len, count;
    Chat *chats;
    ChatExample *prompts = prompts_load(cfg->prompts_path, tok, answer_room(maxT, cfg->gen_len), maxT, 0, &chats, &count);
    rng = rng_stream(cfg->seed, RNG_KL);
    float kl = sampled_kl(policy, ref, prompts, count, cfg->gen_len, &rng);
    snprintf(res->kl, sizeof(res->kl), "%.4f", kl);
    printf("on %s: KL(policy || SFT) %.3f per answer (one sampled answer per prompt)\n", cfg->prompts_path, kl);
    for (int i = 0; i < count; i++) { chat_example_free(&prompts[i]); chat_free(&chats[i]); }
    free(prompts); free(chats);
}

// The model of -c, of one of want_kinds, with its tokenizer: -z, else the tokenizer.bin
// beside the checkpoint. For the commands that use a model without training it.
static void open_model(const Config *cfg, int want_kinds, GPT *model, Tokenizer *tok, TrainState *state_out, FILE *say) {
    if (!cfg->init_path) { FAIL("give the checkpoint to use with -c, e.g. -c out/sft.bin"); }
    if (!cfg->given['c'] && access(cfg->init_path, F_OK) != 0) {
        FAIL("%s, this command's default model, does not exist: name a language model with -c, e.g. -c %s/sft.bin",
             cfg->init_path, cfg->out_dir);
    }
    TrainState state;
    checkpoint_load(cfg->init_path, model, want_kinds, &state);
    char path[4096];
    const char *slash = strrchr(cfg->init_path, '/');
    if (cfg->tokenizer_path) { snprintf(path, sizeof(path), "%s", cfg->tokenizer_path); }
    else if (slash) { snprintf(path, sizeof(path), "%.*s/tokenizer.bin", (int)(slash - cfg->init_path), cfg->init_path); }
    else { snprintf(path, sizeof(path), "tokenizer.bin"); }
    Config with_tok = *cfg;
    with_tok.tokenizer_path = path;
    load_tokenizer_for(tok, &with_tok, model, cfg->init_path);
    fprintf(say, "model: %s (%s), %.2fM parameters, context %d; tokenizer %s\n", cfg->init_path, kind_name(state.kind),
            model->num_parameters / 1e6, model->config.max_seq_len, path);
    if (state_out) { *state_out = state; }
}

static void need_output(const Config *cfg) {
    if (!cfg->output_path) { FAIL("give the file to write with -O, e.g. -O my_answers.jsonl"); }
}

// ./train answer: a language model (-c: base, SFT, RLHF, DPO or GRPO) answers every prompt of -q
// through the chat template, greedy unless -r says otherwise, and the answers go to
// the file that -O names, as {"prompt", "response"} lines (the input of ./world score).
// It writes nothing else.
void command_answer(const Config *cfg) {
    GPT model;
    Tokenizer tok;
    need_output(cfg);
    open_model(cfg, LANGUAGE_MODELS, &model, &tok, NULL, stdout);
    uint64_t rng = rng_stream(cfg->seed, RNG_SAMPLE);
    answer_prompts(&model, &tok, cfg->prompts_path, cfg->output_path, cfg->temperature, cfg->top_k, cfg->gen_len, &rng, NULL);
    gpt_free(&model);
    tokenizer_free(&tok);
}

// ./train score: a reward model (-c) scores both answers of every pair of -j
// ({"prompt", "chosen", "rejected"}), prints its accuracy and margin on them, and
// writes one line per pair kept to the file that -O names: {"record": n, the pair's
// place in -j from 1, "chosen": r, "rejected": r}. It writes nothing else.
void command_score(const Config *cfg) {
    GPT model;
    Tokenizer tok;
    need_output(cfg);
    open_model(cfg, 1 << KIND_REWARD, &model, &tok, NULL, stdout);
    int maxT = model.config.max_seq_len, B = cfg->batch_size;
    ChatData pairs;
    chat_data_load(&pairs, cfg->val_path, &tok, 1, maxT, cfg->keep_transcripts);
    print_chat_data(cfg->val_path, &pairs);
    int *inputs = mallocCheck((size_t)2 * B * maxT * sizeof(int)), *ends = mallocCheck((size_t)2 * B * sizeof(int));
    float *rewards = mallocCheck((size_t)2 * B * sizeof(float)), *scores = mallocCheck((size_t)pairs.count * sizeof(float));
    RewardStats st = reward_evaluate(&model, &pairs, B, inputs, ends, rewards, scores);
    print_reward_stats("reward model", &st, pairs.count / 2);
    FILE *f = fopenCheck(cfg->output_path, "wb");
    for (int i = 0; i < pairs.count / 2; i++) {
        fprintf(f, "{\"record\": %d, \"chosen\": %.6f, \"rejected\": %.6f}\n", pairs.examples[2 * i].record, scores[2 * i],
                scores[2 * i + 1]);
    }
    fcloseCheck(f);
    printf("scores: %d pairs -> %s\n", pairs.count / 2, cfg->output_path);
    free(inputs); free(ends); free(rewards); free(scores);
    chat_data_free(&pairs);
    gpt_free(&model);
    tokenizer_free(&tok);
}

// ./train sample: text from any language-model checkpoint (-c), continuing -p as
// plain text (no chat template), until <|end|>, <|endoftext|> or -m tokens
void command_sample(const Config *cfg) {
    GPT model;
    Tokenizer tok;
    open_model(cfg, LANGUAGE_MODELS, &model, &tok, NULL, stdout);
    uint64_t rng = rng_stream(cfg->seed, RNG_SAMPLE);
    int start[4] = {TOKEN_EOT, TOKEN_EOT, TOKEN_EOT, TOKEN_EOT}; // with no prompt: the end-of-text token
    int has_prompt = cfg->prompt && cfg->prompt[0];
    print_sample(&model, &tok, has_prompt ? cfg->prompt : NULL, start, cfg->gen_len, cfg->temperature, cfg->top_k, &rng);
    tokenizer_free(&tok);
    gpt_free(&model);
}

// ./train export -c CKPT -o DIR: any checkpoint as a folder that Hugging Face's
// transformers loads as it is, or (--llmc) as llm.c's checkpoint (appendix H)
void command_export(const Config *cfg) {
    if (!cfg->given['o']) { FAIL("export: name the folder to write with -o DIR"); }
    GPT model;
    Tokenizer tok;
    TrainState state;
    open_model(cfg, ~0, &model, &tok, &state, stdout);
    make_out_dir(cfg);
    if (cfg->llmc) { export_llmc(&model, &tok, cfg->out_dir); }
    else { export_hf(&model, state.kind, &tok, cfg->out_dir); }
    gpt_free(&model);
    tokenizer_free(&tok);
}

// ./train import -i DIR -o OUT: the folder back into <OUT>/<kind>.bin (base.bin for a
// language model without a kind of ours) and <OUT>/tokenizer.bin, the weights bit for bit
void command_import(const Config *cfg) {
    if (!cfg->given['i']) { FAIL("import: name the folder to read with -i DIR"); }
    if (!cfg->given['o']) { FAIL("import: name the folder to write with -o DIR (a new one: its tokenizer.bin is replaced)"); }
    struct stat st;
    if (stat(cfg->train_path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        FAIL("import: %s is not a folder: -i takes the folder that holds config.json and model.safetensors", cfg->train_path);
    }
    char path[4096];
    Tokenizer tok;
    GPT model;
    int kind = import_hf(cfg->train_path, cfg->tokenizer_path, &model, &tok);
    make_out_dir(cfg);
    TrainState state = {.kind = kind, .step = 0};
    char out[4096], name[64];
    snprintf(name, sizeof(name), "%s.bin", KIND_FILES[kind]);
    out_path(path, sizeof(path), cfg, name);
    checkpoint_save(path, &model, &state, 0);
    out_path(out, sizeof(out), cfg, "tokenizer.bin");
    tokenizer_save(&tok, out);
    printf("imported %s: %s (%s, %.2fM parameters) and %s\n", cfg->train_path, path, kind_name(kind),
           model.num_parameters / 1e6, out);
    gpt_free(&model);
    tokenizer_free(&tok);
}

// ./train chat: a conversation with a language model (-c, by default PPO's policy,
// <out>/rlhf.bin; out/dpo.bin or out/grpo.bin for the others). Each line typed is a
// user turn; the model's answer streams as it is drawn and stops at <|end|>. The
// conversation so far is the prompt:
//     <|user|> a <|assistant|> b <|end|> <|user|> c <|assistant|>
// and when it no longer leaves room for an answer (answer_room) its oldest turns
// are dropped, which it says. Lines that start with / are commands: /reset, /temp T,
// /topk K, /quit, /help. From a terminal it prompts "you> "; from a pipe it answers
// each line on one line of its own (a newline in an answer as \n, a backslash as
// \\) and ends with the input, so it can be scripted. Notices go to standard error.
static const char *CHAT_HELP = "commands: /reset (start a new conversation), /temp T (0 = greedy), /topk K (0 = all), "
                               "/quit (or end the input)";

void command_chat(const Config *cfg) {
    GPT model;
    Tokenizer tok;
    TrainState state;
    int terminal = isatty(STDIN_FILENO); // from a pipe, standard output holds the answers alone
    open_model(cfg, LANGUAGE_MODELS, &model, &tok, &state, terminal ? stdout : stderr);
    int maxT = model.config.max_seq_len, room = answer_room(maxT, cfg->gen_len);
    float temperature = cfg->temperature;
    int top_k = cfg->top_k;
    uint64_t rng = rng_stream(cfg->seed, RNG_SAMPLE);
    if (terminal) {
        printf("chat with %s (%s, context %d tokens, answers up to %d). %s\n", cfg->init_path, kind_name(state.kind), maxT,
               cfg->gen_len, CHAT_HELP);
    }
    Chat history = {.listed = 1};
    KVCache kv;
    kvcache_init(&kv, model.config);
    int *tokens = mallocCheck((size_t)maxT * sizeof(int));
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (terminal) { printf("you> "); fflush(stdout); }
        ssize_t got = getline(&line, &cap, stdin);
        if (got < 0) { break; }
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) { line[--got] = '\0'; }
        if (line[0] == '/') { // a command
            char *arg = strchr(line, ' ');
            if (arg) { *arg++ = '\0'; }
            char *end = NULL;
            double value = arg ? strtod(arg, &end) : -1.0;
            int number = arg && end != arg && *end == '\0' && value >= 0 && value <= 100;
            if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) { break; }
            else if (!strcmp(line, "/help")) { fprintf(stderr, "(%s)\n", CHAT_HELP); }
            else if (!strcmp(line, "/reset")) { chat_free(&history); history.listed = 1; fprintf(stderr, "(a new conversation)\n"); }
            else if (!strcmp(line, "/temp") && number) {
                temperature = (float)value;
                fprintf(stderr, "(temperature %g)\n", temperature);
            } else if (!strcmp(line, "/topk") && number && value == (int)value) {
                top_k = (int)value;
                fprintf(stderr, "(top-k %d)\n", top_k);
            } else { fprintf(stderr, "(unknown command or value: %s. %s)\n", line, CHAT_HELP); }
            continue;
        }
        Utf8Stream check = {0};
        Str clean = {0}; // what was typed, as valid UTF-8
        utf8_stream_put(&check, line, (size_t)got, &clean);
        utf8_stream_end(&check, &clean);
        str_add(&clean, "", 0);
        chat_add(&history, ROLE_USER, clean.s, clean.len);
        str_free(&clean);
        ChatExample ex;
        int status = chat_encode_turns(&ex, &tok, &history, NULL, room, maxT);
        if (status == 0) { FAIL("chat: no room for a prompt in the context"); }
        if (ex.dropped_turns > 0) { // gone for good: the next prompts start after them too
            fprintf(stderr, "(the %d oldest turns no longer fit the context of %d tokens and are left out)\n", ex.dropped_turns, maxT);
            for (int i = 0; i < ex.dropped_turns; i++) { free(history.turns[i].content); }
            history.n -= ex.dropped_turns;
            memmove(history.turns, history.turns + ex.dropped_turns, (size_t)history.n * sizeof(Turn));
        }
        if (ex.cut_tokens > 0) { // the line alone is too long
            fprintf(stderr, "(the line is longer than the context of %d tokens leaves for it: its start is left out)\n", maxT);
        }
        memcpy(tokens, ex.tokens, (size_t)ex.n * sizeof(int));
        if (terminal) { printf("model> "); fflush(stdout); }
        TokenPrinter out = {.tok = &tok, .f = stdout, .one_line = !terminal};
        TokenSink sink = {token_printer_put, &out};
        int n = gpt_generate(&model, &kv, tokens, ex.n, cfg->gen_len, temperature, top_k, STOP_AT(TOKEN_END), &rng, NULL, &sink);
        token_printer_end(&out);
        printf("\n");
        fflush(stdout);
        int ended = n > ex.n && tokens[n - 1] == TOKEN_END;
        if (!ended) { fprintf(stderr, "(no <|end|> within %d tokens: the answer is cut there)\n", n - ex.n); }
        char *answer = tokenizer_decode_text(&tok, tokens + ex.n, n - ex.n - ended);
        chat_add(&history, ROLE_ASSISTANT, answer, strlen(answer));
        free(answer);
        chat_example_free(&ex);
    }
    if (terminal) { printf("\n"); }
    free(line);
    free(tokens);
    chat_free(&history);
    kvcache_free(&kv);
    tokenizer_free(&tok);
    gpt_free(&model);
}

// ----------------------------------------------------------------------------
// 16. main
// (left out when a test, or data/world.c, includes this file for its functions)

#if !defined(TESTING) && !defined(TRAIN_NO_MAIN)

// Appendix F, the command line
static int config_resolve(Config *c, const char *command);
static void config_in_force(Config *c, const char *command);
static void error_usage(void);
static void parse_flags(Config *c, int argc, char **argv);
static void print_config(const char *command, const Config *c);

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { error_usage(); }
    Config cfg = CONFIG_DEFAULTS;
    parse_flags(&cfg, argc, argv);
    const char *command = argv[1];
    if (!config_resolve(&cfg, command)) { fprintf(stderr, "unknown command '%s'\n", command); error_usage(); }
    config_in_force(&cfg, command);
    StageResult res = {0};
    double t0 = now_seconds();
    if (!strcmp(command, "sample")) { command_sample(&cfg); }
    else if (!strcmp(command, "chat")) { command_chat(&cfg); }
    else if (!strcmp(command, "bench")) { print_config(command, &cfg); command_bench(&cfg); }
    else if (!strcmp(command, "export")) { command_export(&cfg); }
    else if (!strcmp(command, "import")) { command_import(&cfg); }
    else if (!strcmp(command, "answer")) { print_config(command, &cfg); command_answer(&cfg); }
    else if (!strcmp(command, "score")) { print_config(command, &cfg); command_score(&cfg); }
    else {
        print_config(command, &cfg);
        if (!strcmp(command, "pretrain")) { stage_pretrain(&cfg, &res); }
        else if (!strcmp(command, "sft")) { stage_sft(&cfg, &res); }
        else if (!strcmp(command, "rm")) { stage_reward(&cfg, &res); }
        else if (!strcmp(command, "dpo")) { stage_dpo(&cfg, &res); }
        else if (!strcmp(command, "grpo")) { stage_grpo(&cfg, &res); }
        else { stage_rlhf(&cfg, &res); }
        record_stage(&cfg, command, &res, now_seconds() - t0);
        if (res.trained[0]) { plot_stage(&cfg, command); }
    }
    gemm_free();
    return 0;
}

#endif

// ----------------------------------------------------------------------------
// Appendix A. the matmul engine

// The matrix multiply engine: matmul(c, a, b, M, N, K, flags) computes the numbers
// of matmul_reference (section 1), c (M,N) (+)= op(a) (M,K) . op(b) (K,N), fast.
// Inside, an operand is a pointer and two strides: element (i,k) of a is
// a[i*a_rs + k*a_cs] and element (k,j) of b is b[k*b_rs + j*b_cs], so a transposed
// operand is just other strides; c is row-major, ldc floats a row.
// The loops are blocked as in BLIS/GotoBLAS (see doc/performance.md):
//   - c is worked through in MC x NC tiles: the threads share out blocks of MC rows,
//     or (when c is wider than tall) equal shares of the columns (see matmul() below);
//   - k runs in blocks of KC; the KC x NC slice of b is copied ("packed") into
//     contiguous panels that stay in cache, once for all the row blocks that use it.
//     An MC x KC block of a is packed too, unless its rows are contiguous in k: then
//     the micro-kernel reads them where they are (only a last, partial panel of MR
//     rows is packed, with zeros below it);
//   - the micro-kernel computes an MR x NR block of c in registers: for each k, an
//     outer product of MR values of a and NR values of b. The compiler vectorizes
//     its inner loop over NR with FMA instructions.
// Every element of c is summed by one thread, over k in order (in slices of KC), whatever
// the number of threads: results do not depend on OMP_NUM_THREADS.
//
// The register block: the MR x NR sums stay in vector registers for a whole k loop.
// With AVX-512 (32 registers of 16 floats), 12 x 32 takes 24 of them. With AVX2 (16
// registers of 8 floats) 6 x 32 already needs more than there are, and 12 x 32 made a
// training step slower still (doc/performance.md). The block only groups the sums
// and never reorders one, so results are the same either way.
#if defined(__AVX512F__)
#define MR 12
#else
#define MR 6
#endif
#define NR 32
#define MC 96
#define KC 256
#define NC 512
_Static_assert(MC % MR == 0 && NC % NR == 0, "packed panels must tile the packing space exactly");

static float *gemm_pack = NULL; // per-thread packing space, (threads, MC*KC + KC*NC), kept across calls
static int gemm_pack_threads = 0;

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// threads in the current parallel region
static int team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// what runs the layers, for the config table
REPLACED_ON_GPU const char *device_name(void) {
    static char name[64];
    snprintf(name, sizeof(name), "CPU, %d OpenMP thread%s", max_threads(), max_threads() > 1 ? "s" : "");
    return name;
}

void gemm_free(void) {
    free(gemm_pack);
    gemm_pack = NULL;
    gemm_pack_threads = 0;
}

// c[0:MR, 0:NR] (+)= a (MR, kc) . bp (kc, NR panel), the MR x NR sums kept in
// registers. Element (i,k) of a is a[i*a_rs + k*a_cs]: a packed panel (a_rs 1, a_cs
// MR) or MR rows of a read in place (a_rs the row stride, a_cs 1). Every call site
// passes constant a strides and the kernel is inlined into it, so all bounds and
// strides but a's row stride are constants, and the compiler keeps all of acc in
// vector registers from the first k to the last store.
static inline __attribute__((always_inline)) void gemm_micro(float *c, size_t ldc, const float *a, size_t a_rs,
                                                             size_t a_cs, const float *bp, int kc, int overwrite) {
    // ask for the tile of c now (16 floats to a cache line), so that it is on its way
    // while the k loop runs instead of a wait at the end
    for (int i = 0; i < MR; i++) {
        for (int j = 0; j < NR; j += 16) { __builtin_prefetch(c + i * ldc + j, 1); }
    }
    float acc[MR][NR] = {{0}};
    for (int k = 0; k < kc; k++) {
        for (int i = 0; i < MR; i++) {
            float aik = a[i * a_rs + k * a_cs];
            for (int j = 0; j < NR; j++) { acc[i][j] += aik * bp[k * NR + j]; }
        }
    }
    for (int i = 0; i < MR; i++) {
        if (overwrite) {
            for (int j = 0; j < NR; j++) { c[i * ldc + j] = acc[i][j]; }
        } else {
            for (int j = 0; j < NR; j++) { c[i * ldc + j] += acc[i][j]; }
        }
    }
}

// the same for a tile at the edge of c, of only mr x nr elements: the micro-kernel
// fills a whole tile of its own, whose mr x nr corner goes to c
static inline __attribute__((always_inline)) void gemm_micro_edge(float *c, size_t ldc, const float *a, size_t a_rs,
                                                                  size_t a_cs, const float *bp, int kc, int mr, int nr,
                                                                  int overwrite) {
    float tile[MR * NR];
    gemm_micro(tile, NR, a, a_rs, a_cs, bp, kc, 1);
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) { c[i * ldc + j] = overwrite ? tile[i * NR + j] : c[i * ldc + j] + tile[i * NR + j]; }
    }
}

// Packs b[pc:pc+kc, j:j+NR] into one NR-wide panel, k-major, with zeros for the
// columns from jend on. The loops run along whichever index of b is contiguous.
static void gemm_pack_b(float *panel, const float *b, size_t b_rs, size_t b_cs, int pc, int kc, int j, int jend) {
    if (b_rs == 1 && b_cs != 1) { // b is stored transposed: each column j is contiguous in k
        // (a weight matrix in the forward pass). A transpose, done 16 values of k (a cache
        // line) at a time across all NR columns: the NR lines are fetched together, where
        // one column after another would wait for each line in turn
        for (int k0 = 0; k0 < kc; k0 += 16) {
            int k1 = k0 + 16 < kc ? k0 + 16 : kc;
            for (int jj = 0; jj < NR; jj++) {
                const float *bcol = b + (size_t)pc + (size_t)(j + jj) * b_cs;
                for (int k = k0; k < k1; k++) { panel[k * NR + jj] = j + jj < jend ? bcol[k] : 0.0f; }
            }
        }
        return;
    }
    if (b_cs == 1 && j + NR <= jend) {
        // rows contiguous in j and a whole panel: NR floats a row, copied as one block
        // (the general loop below, with its bounds test, compiles to one float at a time)
        for (int k = 0; k < kc; k++) { memcpy(panel + k * NR, b + (size_t)(pc + k) * b_rs + j, NR * sizeof(float)); }
        return;
    }
    for (int k = 0; k < kc; k++) {
        const float *brow = b + (size_t)(pc + k) * b_rs + (size_t)j * b_cs;
        for (int jj = 0; jj < NR; jj++) { panel[k * NR + jj] = j + jj < jend ? brow[(size_t)jj * b_cs] : 0.0f; }
    }
}

// Packs a[ic:ic+mc, pc:pc+kc] into MR-tall panels, k-major, zero-padded, again along
// the index of a that is contiguous in memory.
static void gemm_pack_a(float *ap, const float *a, size_t a_rs, size_t a_cs, int ic, int mc, int pc, int kc) {
    if (a_rs == 1 && a_cs != 1) { // a is stored transposed: each column k is contiguous in i
        // k outermost: the mc values of column k are contiguous, and go to the panels in
        // runs of MR, each copied as one block (a loop with a bounds test compiled to one
        // float at a time: a fifth of a weight gradient's time). Panel by panel would
        // instead walk all kc columns, each on a page of its own, once for every panel.
        int full = mc / MR * MR;
        for (int k = 0; k < kc; k++) {
            const float *acol = a + (size_t)ic + (size_t)(pc + k) * a_cs;
            for (int ir = 0; ir < full; ir += MR) {
                float *dst = ap + (size_t)ir * kc + (size_t)k * MR;
                memcpy(dst, acol + ir, MR * sizeof(float));
            }
            if (full < mc) {
                float *dst = ap + (size_t)full * kc + (size_t)k * MR;
                for (int i = 0; i < MR; i++) { dst[i] = full + i < mc ? acol[full + i] : 0.0f; }
            }
        }
        return;
    }
    for (int ir = 0; ir < mc; ir += MR) {
        float *panel = ap + (size_t)ir * kc;
        for (int i = 0; i < MR; i++) {
            if (ir + i >= mc) { for (int k = 0; k < kc; k++) { panel[k * MR + i] = 0.0f; } continue; }
            const float *arow = a + (size_t)(ic + ir + i) * a_rs + (size_t)pc * a_cs;
            for (int k = 0; k < kc; k++) { panel[k * MR + i] = arow[(size_t)k * a_cs]; }
        }
    }
}

// Gets a[ic:ic+mc, pc:pc+kc] ready for the micro-kernel. Rows contiguous in k (a_cs
// 1) are read in place: copying them into a panel would be a transpose, MR scattered
// stores per cache line of a, for no gain in order. Then only a last panel of fewer
// than MR rows is packed, at ap, where its rows would be. Returns the block's first
// row in place, or NULL when all of it is packed at ap.
static const float *gemm_prepare_a(float *ap, const float *a, size_t a_rs, size_t a_cs, int ic, int mc, int pc, int kc) {
    if (a_cs != 1) {
        gemm_pack_a(ap, a, a_rs, a_cs, ic, mc, pc, kc);
        return NULL;
    }
    int full = mc / MR * MR;
    if (full < mc) { gemm_pack_a(ap + (size_t)full * kc, a, a_rs, a_cs, ic + full, mc - full, pc, kc); }
    return a + (size_t)ic * a_rs + pc;
}

// Which part of a product is needed (from matmul's CAUSAL_OUT and CAUSAL_A). Attention's
// products are causal: a score matters only where t2 <= t, and a probability is 0 where t2 > t.
enum {
    GEMM_FULL,    // all of c
    GEMM_LOWER_C, // only c[i][j] with j <= i: micro-tiles wholly above the diagonal are skipped
                  // (those elements of c are left as they were)
    GEMM_LOWER_A, // a[i][k] is 0 for k > i: a tile's sums stop after the k of its last row
                  // (the terms left out are exact zeros, so the sums are the same)
};

// c[ic:ic+mc, jc:jc+nc] (+)= the block of a (mc x kc) . the packed b slice bp (kc x
// nc), for the slice of k that starts at pc, one micro-tile at a time. The block is as
// gemm_prepare_a left it: a_rows (rows a_rs apart) for its whole panels, or NULL, and
// packed panels at ap. The order of the tiles (which never changes a sum) keeps in
// cache the operand that is dearer to fetch: with a packed, one panel of b at a time
// while all of a's contiguous panels stream past it; with a read in place, one panel
// of a (MR rows, far apart in memory) at a time while the panels of b stream past.
static void gemm_block(float *c, size_t ldc, const float *ap, const float *a_rows, size_t a_rs, const float *bp, int ic,
                       int mc, int jc, int nc, int pc, int kc, int overwrite, int shape) {
    int tiles_i = (mc + MR - 1) / MR, tiles_j = (nc + NR - 1) / NR;
    int outer = a_rows ? tiles_i : tiles_j, inner = a_rows ? tiles_j : tiles_i;
    for (int o = 0; o < outer; o++) {
        for (int n = 0; n < inner; n++) {
            int ir = (a_rows ? o : n) * MR, jr = (a_rows ? n : o) * NR;
            float *cij = c + (size_t)(ic + ir) * ldc + jc + jr;
            const float *bpj = bp + (size_t)jr * kc;
            int mr = mc - ir < MR ? mc - ir : MR, nr = nc - jr < NR ? nc - jr : NR;
            int kn = kc; // the k of the slice that this tile sums
            if (shape == GEMM_LOWER_C && jc + jr >= ic + ir + mr) { continue; }
            if (shape == GEMM_LOWER_A && ic + ir + mr - pc < kc) {
                kn = ic + ir + mr - pc;
                if (kn <= 0) { continue; } // (then pc > 0, and there is nothing to add)
            }
            if (a_rows && mr == MR) { // in place
                const float *ai = a_rows + (size_t)ir * a_rs;
                if (nr == NR) {
                    gemm_micro(cij, ldc, ai, a_rs, 1, bpj, kn, overwrite);
                } else {
                    gemm_micro_edge(cij, ldc, ai, a_rs, 1, bpj, kn, mr, nr, overwrite);
                }
            } else { // packed
                const float *api = ap + (size_t)ir * kc;
                if (mr == MR && nr == NR) {
                    gemm_micro(cij, ldc, api, 1, MR, bpj, kn, overwrite);
                } else {
                    gemm_micro_edge(cij, ldc, api, 1, MR, bpj, kn, mr, nr, overwrite);
                }
            }
        }
    }
}

// Rows [i0, i1) and columns [j0, j1) of c, by one thread, with its packing space ap
// (MC*KC) and bp (KC*NC). Each KC x NC slice of b is packed once and used for all the
// rows, each MC x KC slice of a prepared once per slice of b. shape: GEMM_FULL, or the
// causal part of a product (see gemm_block), where whole blocks of rows are skipped too.
static void gemm_tiles(float *c, size_t ldc, const float *a, size_t a_rs, size_t a_cs, const float *b, size_t b_rs,
                       size_t b_cs, int K, int accumulate, int i0, int i1, int j0, int j1, float *ap, float *bp, int shape) {
    for (int jc = j0; jc < j1; jc += NC) {
        int nc = j1 - jc < NC ? j1 - jc : NC;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = K - pc < KC ? K - pc : KC;
            for (int jr = 0; jr < nc; jr += NR) { gemm_pack_b(bp + (size_t)jr * kc, b, b_rs, b_cs, pc, kc, jc + jr, jc + nc); }
            for (int ic = i0; ic < i1; ic += MC) {
                int mc = i1 - ic < MC ? i1 - ic : MC;
                if (shape == GEMM_LOWER_C && jc >= ic + mc) { continue; } // all of it above the diagonal
                if (shape == GEMM_LOWER_A && pc >= ic + mc) { continue; } // all of a's slice is 0
                const float *a_rows = gemm_prepare_a(ap, a, a_rs, a_cs, ic, mc, pc, kc);
                gemm_block(c, ldc, ap, a_rows, a_rs, bp, ic, mc, jc, nc, pc, kc, pc == 0 && !accumulate, shape);
            }
        }
    }
}

// the packing space of every thread, MC*KC + KC*NC floats each, then one KC*NC slice of
// b that the threads share; allocated on first use, for at least `threads`, and kept.
// Called inside a parallel region, all the team's threads ask for the same size: the
// first allocates, under the lock, and the others find it done.
#define GEMM_SPACE (MC * KC + KC * NC)
static float *gemm_space(int threads) {
    float *space;
    #pragma omp critical(gemm_space)
    {
        if (threads < max_threads()) { threads = max_threads(); }
        if (threads > gemm_pack_threads) {
            free(gemm_pack);
            gemm_pack = callocAlignedCheck((size_t)threads * GEMM_SPACE + KC * NC, sizeof(float));
            gemm_pack_threads = threads;
        }
        space = gemm_pack;
    }
    return space;
}

#ifdef _OPENMP
static int in_parallel(void) { return omp_in_parallel(); }
#else
static int in_parallel(void) { return 0; }
#endif

// c (M,N) (+)= a (M,K) . b (K,N) with strides, as above. shape: GEMM_FULL, or the causal
// part of a product. Called inside a parallel region (attention runs one (b,h) per
// thread), or for a causal shape, the calling thread computes all of c alone; otherwise
// all threads share it. With at least as many rows as columns, the threads pack each
// KC x NC slice of b together, into one shared slice, and then take blocks of MC rows
// in turn (dynamic: a thread slowed by other work on the machine takes fewer).
// Otherwise each thread takes an equal share of the columns and works through all of
// a. Either way every element of c is summed by one thread, over k in the same order.
static void gemm(float *c, size_t ldc, const float *a, size_t a_rs, size_t a_cs, const float *b, size_t b_rs,
                 size_t b_cs, int M, int N, int K, int accumulate, int shape) {
    if (M <= 0 || N <= 0) { return; }
    if (K <= 0) { // an empty sum
        if (!accumulate) {
            for (int i = 0; i < M; i++) {
                for (int j = 0; j < N; j++) { c[(size_t)i * ldc + j] = 0.0f; }
            }
        }
        return;
    }
    if (in_parallel() || shape != GEMM_FULL) {
        float *ap = gemm_space(team_size()) + (size_t)thread_id() * GEMM_SPACE;
        gemm_tiles(c, ldc, a, a_rs, a_cs, b, b_rs, b_cs, K, accumulate, 0, M, 0, N, ap, ap + MC * KC, shape);
        return;
    }
    if (M < MR && a_cs == 1 && b_cs == 1 && !accumulate && (size_t)N * K < SMALL_PASS) {
        // A few rows times a small b (attention with the KV cache: att . v): row i of c
        // gathers the rows of b, weighted by a[i][k], in the order of k; each pass over a
        // row of b vectorizes
        for (int i = 0; i < M; i++) {
            float *ci = c + (size_t)i * ldc;
            for (int j = 0; j < N; j++) { ci[j] = 0.0f; }
            for (int k = 0; k < K; k++) {
                float aik = a[(size_t)i * a_rs + k];
                for (int j = 0; j < N; j++) { ci[j] += aik * b[(size_t)k * b_rs + j]; }
            }
        }
        return;
    }
    if (M < MR && a_cs == 1 && b_rs == 1) {
        // A few rows times a weight matrix stored transposed: generation with the KV
        // cache. Packing would copy all of b to use each element once, so each output is
        // instead a dot product over contiguous memory, c[i][j] = sum_k a[i][k] b[j][k],
        // parallel over the outputs j. Each keeps LANES interleaved partial sums, added in
        // a fixed order at the end: the compiler vectorizes that, where one running sum
        // would be a chain of dependent additions that it may not reorder.
        enum { LANES = 16 };
        #pragma omp parallel for if ((size_t)N * K >= SMALL_PASS)
        for (int j = 0; j < N; j++) {
            const float *bj = b + (size_t)j * b_cs;
            for (int i = 0; i < M; i++) {
                const float *ai = a + (size_t)i * a_rs;
                float lane[LANES] = {0}, sum = 0.0f;
                int k = 0;
                for (; k + LANES <= K; k += LANES) {
                    for (int u = 0; u < LANES; u++) { lane[u] += ai[k + u] * bj[k + u]; }
                }
                for (int u = 0; u < LANES; u++) { sum += lane[u]; }
                for (; k < K; k++) { sum += ai[k] * bj[k]; }
                c[(size_t)i * ldc + j] = accumulate ? c[(size_t)i * ldc + j] + sum : sum;
            }
        }
        return;
    }
    float *space = gemm_space(max_threads());
    if (M >= N) {
        float *bp = space + (size_t)gemm_pack_threads * GEMM_SPACE; // the shared slice of b
        #pragma omp parallel
        {
            float *ap = space + (size_t)thread_id() * GEMM_SPACE;
            for (int jc = 0; jc < N; jc += NC) {
                int nc = N - jc < NC ? N - jc : NC;
                for (int pc = 0; pc < K; pc += KC) {
                    int kc = K - pc < KC ? K - pc : KC;
                    #pragma omp for // ends with a barrier: the slice is whole before any use
                    for (int jr = 0; jr < nc; jr += NR) { gemm_pack_b(bp + (size_t)jr * kc, b, b_rs, b_cs, pc, kc, jc + jr, jc + nc); }
                    #pragma omp for schedule(dynamic) // ends with a barrier: all done before the next slice
                    for (int ic = 0; ic < M; ic += MC) {
                        int mc = M - ic < MC ? M - ic : MC;
                        const float *a_rows = gemm_prepare_a(ap, a, a_rs, a_cs, ic, mc, pc, kc);
                        gemm_block(c, ldc, ap, a_rows, a_rs, bp, ic, mc, jc, nc, pc, kc, pc == 0 && !accumulate, GEMM_FULL);
                    }
                }
            }
        }
        return;
    }
    #pragma omp parallel
    {
        // shares of whole micro-tiles (NR columns)
        int nt = team_size(), t = thread_id(), units = (N + NR - 1) / NR;
        int lo = units * t / nt * NR, hi = units * (t + 1) / nt * NR;
        if (hi > N) { hi = N; }
        float *ap = space + (size_t)t * GEMM_SPACE;
        if (lo < hi) { gemm_tiles(c, ldc, a, a_rs, a_cs, b, b_rs, b_cs, K, accumulate, 0, M, lo, hi, ap, ap + MC * KC, GEMM_FULL); }
    }
}

// matmul (declared at the top, defined by matmul_reference in section 1), by the engine:
// the flags become strides and a shape. One more causal case: a transposed operand
// that is zero above its diagonal (attention's backward, att^T . dy), whose row k
// reaches only the rows i <= k of c. Its rows k come in blocks of ATT_BLOCK, and the
// block that ends at r1 is a full product into rows [0, r1) of c.
#define ATT_BLOCK 64 // (it sets the order of the sums over k: another value changes their last bits)
static void matmul(float *c, const float *a, const float *b, int M, int N, int K, int flags) {
    int ta = (flags & TRANSPOSE_A) != 0, tb = (flags & TRANSPOSE_B) != 0, accumulate = (flags & ACCUMULATE) != 0;
    size_t a_rs = ta ? 1 : (size_t)K, a_cs = ta ? (size_t)M : 1;
    size_t b_rs = tb ? 1 : (size_t)N, b_cs = tb ? (size_t)K : 1;
    if ((flags & CAUSAL_A) && ta) {
        if (!accumulate) { gemm(c, (size_t)N, a, a_rs, a_cs, b, b_rs, b_cs, M, N, 0, 0, GEMM_FULL); } // c = 0
        for (int r0 = 0; r0 < K; r0 += ATT_BLOCK) {
            int r1 = r0 + ATT_BLOCK < K ? r0 + ATT_BLOCK : K;
            gemm(c, (size_t)N, a + (size_t)r0 * a_cs, a_rs, a_cs, b + (size_t)r0 * b_rs, b_rs, b_cs, r1 < M ? r1 : M, N,
                 r1 - r0, 1, GEMM_FULL);
        }
        return;
    }
    int shape = flags & CAUSAL_OUT ? GEMM_LOWER_C : flags & CAUSAL_A ? GEMM_LOWER_A : GEMM_FULL;
    gemm(c, (size_t)N, a, a_rs, a_cs, b, b_rs, b_cs, M, N, K, accumulate, shape);
}

// ----------------------------------------------------------------------------
// Appendix B. JSON and UTF-8

static void str_reserve(Str *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) { return; }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) { cap *= 2; }
    char *s = realloc(b->s, cap);
    if (s == NULL) { FAIL("out of memory growing a string to %zu bytes", cap); }
    b->s = s;
    b->cap = cap;
}

static void str_add(Str *b, const char *s, size_t n) {
    str_reserve(b, n);
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void str_addf(Str *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    str_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void str_clear(Str *b) {
    b->len = 0;
    if (b->s) { b->s[0] = '\0'; }
}

static void str_free(Str *b) {
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

static const char *str_cstr(const Str *b) { return b->s ? b->s : ""; }

// JSON lines, in the conventions of Hugging Face TRL: one object per line, string
// values, {"prompt", "completion"} for SFT and {"prompt", "chosen", "rejected"} for
// preferences. The reader decodes every escape of the JSON standard (\uXXXX with
// surrogate pairs to UTF-8); the writer escapes as Python's json.dumps with
// ensure_ascii=False does, so both tools write the same bytes.

// The two-character escapes, as (letter after the backslash, the byte it stands
// for); the reader also takes \/ for '/', and \uXXXX for anything
static const char JSON_ESCAPES[][2] = {{'"', '"'}, {'\\', '\\'}, {'b', '\b'}, {'f', '\f'},
                                       {'n', '\n'}, {'r', '\r'},   {'t', '\t'}};
#define NUM_JSON_ESCAPES ((int)(sizeof(JSON_ESCAPES) / sizeof(JSON_ESCAPES[0])))

// Writes s as a JSON string: the bytes of JSON_ESCAPES as their escapes, other
// control characters as \u00XX, everything else (UTF-8 included) as it is.
static void json_write_string(Str *out, const char *s) {
    str_add(out, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int e = 0;
        while (e < NUM_JSON_ESCAPES && (unsigned char)JSON_ESCAPES[e][1] != *p) { e++; }
        if (e < NUM_JSON_ESCAPES) { char esc[2] = {'\\', JSON_ESCAPES[e][0]}; str_add(out, esc, 2); }
        else if (*p < 0x20) { str_addf(out, "\\u%04x", *p); }
        else { str_add(out, (const char *)p, 1); }
    }
    str_add(out, "\"", 1);
}

// {"k0": "v0", "k1": "v1"}\n
static void json_write_object(Str *out, const char **keys, const char **values, int n) {
    str_add(out, "{", 1);
    for (int i = 0; i < n; i++) {
        if (i > 0) { str_add(out, ", ", 2); }
        json_write_string(out, keys[i]);
        str_add(out, ": ", 2);
        json_write_string(out, values[i]);
    }
    str_add(out, "}\n", 2);
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') { v |= (unsigned)(c - '0'); }
        else if (c >= 'a' && c <= 'f') { v |= (unsigned)(c - 'a' + 10); }
        else if (c >= 'A' && c <= 'F') { v |= (unsigned)(c - 'A' + 10); }
        else { return 0; }
    }
    *out = v;
    return 1;
}

static void utf8_put(Str *out, unsigned cp) {
    char b[4];
    if (cp < 0x80) { b[0] = (char)cp; str_add(out, b, 1); }
    else if (cp < 0x800) { b[0] = (char)(0xC0 | cp >> 6); b[1] = (char)(0x80 | (cp & 0x3F)); str_add(out, b, 2); }
    else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | cp >> 12); b[1] = (char)(0x80 | (cp >> 6 & 0x3F)); b[2] = (char)(0x80 | (cp & 0x3F));
        str_add(out, b, 3);
    } else {
        b[0] = (char)(0xF0 | cp >> 18); b[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        b[2] = (char)(0x80 | (cp >> 6 & 0x3F)); b[3] = (char)(0x80 | (cp & 0x3F));
        str_add(out, b, 4);
    }
}

// The length of the UTF-8 character at s (1 to 4 bytes), or 0 if the bytes there are
// not valid UTF-8. The valid forms (Unicode 15, table 3-7):
//   00..7F
//   C2..DF 80..BF
//   E0 A0..BF 80..BF | E1..EC 80..BF 80..BF | ED 80..9F 80..BF | EE..EF 80..BF 80..BF
//   F0 90..BF 80..BF 80..BF | F1..F3 80..BF 80..BF 80..BF | F4 80..8F 80..BF 80..BF
// which leave out overlong forms, surrogates (ED A0..) and anything past U+10FFFF.
static int utf8_length(const unsigned char *s) {
    unsigned char c = s[0];
    if (c < 0x80) { return 1; }
    int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (n == 0) { return 0; }
    // the second byte's range depends on the first; the later ones are 80..BF
    unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (s[1] < lo || s[1] > hi) { return 0; }
    for (int i = 2; i < n; i++) { if (s[i] < 0x80 || s[i] > 0xBF) { return 0; } }
    return n;
}

// the code point of the valid n-byte UTF-8 character at s (n from utf8_length)
static unsigned utf8_decode(const unsigned char *s, int n) {
    unsigned cp = n == 1 ? s[0] : s[0] & (0x7Fu >> n); // the lead byte's payload: 5, 4 or 3 bits
    for (int i = 1; i < n; i++) { cp = cp << 6 | (s[i] & 0x3Fu); }
    return cp;
}

// How the bytes s[0..n) stand as the start of one UTF-8 character, by the table
// above: -1 they cannot begin one, 0 they begin one and more must follow, 1 they are one.
static int utf8_prefix(const unsigned char *s, int n) {
    unsigned char c = s[0];
    if (c < 0x80) { return n == 1 ? 1 : -1; }
    int need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (need == 0 || n > need) { return -1; }
    unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (n > 1 && (s[1] < lo || s[1] > hi)) { return -1; }
    for (int i = 2; i < n; i++) { if (s[i] < 0x80 || s[i] > 0xBF) { return -1; } }
    return n == need;
}

// Passes bytes through to out as valid UTF-8. A character split between calls waits
// in u until its last byte comes; bytes that cannot complete a character come out as
// one U+FFFD for each maximal run that began one (as Unicode recommends, section 3.9),
// and the byte that broke the run starts afresh.
static void utf8_stream_put(Utf8Stream *u, const char *bytes, size_t n, Str *out) {
    for (size_t i = 0; i < n; i++) {
        u->pending[u->n++] = (unsigned char)bytes[i];
        int state = utf8_prefix(u->pending, u->n);
        if (state == 1) { str_add(out, (const char *)u->pending, (size_t)u->n); u->n = 0; }
        else if (state < 0) {
            str_add(out, "\xEF\xBF\xBD", 3); // U+FFFD for what came before this byte, or for this byte alone
            if (u->n > 1) { u->n = 0; i--; } // this byte starts afresh
            else { u->n = 0; }
        }
    }
}

// the end of the stream: a character still waiting can never complete
static void utf8_stream_end(Utf8Stream *u, Str *out) {
    if (u->n > 0) { str_add(out, "\xEF\xBF\xBD", 3); }
    u->n = 0;
}

// Parses the JSON string at *p (which must point at the opening quote) into out,
// decoding every escape, \uXXXX surrogate pairs included. Returns NULL on success
// and advances *p past the closing quote, or returns what was wrong.
static const char *json_parse_string(const char **p, Str *out) {
    const char *s = *p;
    if (*s != '"') { return "expected a string"; }
    s++;
    for (;;) {
        unsigned char c = (unsigned char)*s;
        if (c == '\0' || c == '\n') { return "unterminated string"; }
        if (c < 0x20) { return "raw control character in a string (write it as an escape)"; }
        if (c == '"') { break; }
        if (c != '\\') { // a character as it is, checked to be UTF-8
            int n = utf8_length((const unsigned char *)s);
            if (n == 0) { return "invalid UTF-8 in a string (the file must be UTF-8 text)"; }
            str_add(out, s, (size_t)n);
            s += n;
            continue;
        }
        s++;
        int e = 0;
        while (e < NUM_JSON_ESCAPES && JSON_ESCAPES[e][0] != *s) { e++; }
        if (e < NUM_JSON_ESCAPES || *s == '/') {
            str_add(out, e < NUM_JSON_ESCAPES ? &JSON_ESCAPES[e][1] : "/", 1);
            s++;
            continue;
        }
        switch (*s) {
        case 'u': {
            unsigned cp, lo;
            if (!hex4(s + 1, &cp)) { return "bad \\u escape (expected 4 hex digits)"; }
            s += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { // high surrogate: a low one must follow
                if (s[1] != '\\' || s[2] != 'u' || !hex4(s + 3, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    return "unpaired surrogate in \\u escape";
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                s += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return "unpaired surrogate in \\u escape";
            }
            utf8_put(out, cp);
            break;
        }
        default: return "unknown escape in a string";
        }
        s++;
    }
    *p = s + 1;
    return NULL;
}

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') { p++; }
    return p;
}

// Skips the JSON value at *p: a string, a number, true, false, null, or a list or object
// of them (nested at most 32 deep). Returns NULL and advances *p past it, or what was wrong.
static const char *json_skip_value(const char **p, int depth) {
    const char *s = skip_ws(*p), *err = NULL;
    if (depth > 32) { return "values nested more than 32 deep"; }
    if (*s == '"') {
        Str tmp = {0};
        err = json_parse_string(&s, &tmp);
        str_free(&tmp);
        if (err) { return err; }
    } else if (*s == '[' || *s == '{') {
        char close = *s == '[' ? ']' : '}';
        s = skip_ws(s + 1);
        if (*s == close) { s++; }
        else for (;;) {
            if (close == '}') { // a key and a colon first
                Str key = {0};
                err = json_parse_string(&s, &key);
                str_free(&key);
                if (err) { return err; }
                s = skip_ws(s);
                if (*s != ':') { return "expected ':' after a key"; }
                s++;
            }
            if ((err = json_skip_value(&s, depth + 1)) != NULL) { return err; }
            s = skip_ws(s);
            if (*s == ',') { s = skip_ws(s + 1); continue; }
            if (*s == close) { s++; break; }
            return close == ']' ? "expected ',' or ']' in a list" : "expected ',' or '}' in an object";
        }
    } else { // a scalar: a number, true, false or null
        const char *start = s;
        while (*s && !strchr(",}] \t\r\n", *s)) { s++; }
        size_t n = (size_t)(s - start);
        int ok = (n == 4 && !strncmp(start, "true", 4)) || (n == 5 && !strncmp(start, "false", 5)) ||
                 (n == 4 && !strncmp(start, "null", 4)) || (n > 0 && strspn(start, "-+.eE0123456789") >= n);
        if (!ok) { return "expected a string, number, true, false, null, list or object as a value"; }
    }
    *p = s;
    return NULL;
}

// Reads the JSON object at *p, checking all of it, and points *value at the value of
// `key` (NULL if the object lacks it). Returns NULL and advances *p past the object,
// or what was wrong.
static const char *json_object(const char **p, const char *key, const char **value) {
    Str k = {0};
    const char *err = NULL, *s = skip_ws(*p);
    *value = NULL;
    if (*s != '{') { return "expected '{' to open an object"; }
    s = skip_ws(s + 1);
    if (*s == '}') { *p = s + 1; return NULL; }
    for (;;) {
        str_clear(&k);
        if ((err = json_parse_string(&s, &k)) != NULL) { break; }
        s = skip_ws(s);
        if (*s != ':') { err = "expected ':' after a key"; break; }
        s = skip_ws(s + 1);
        if (strcmp(str_cstr(&k), key) == 0) {
            if (*value) { err = "duplicate key"; break; }
            *value = s;
        }
        if ((err = json_skip_value(&s, 1)) != NULL) { break; }
        s = skip_ws(s);
        if (*s == ',') { s = skip_ws(s + 1); continue; }
        if (*s == '}') { *p = s + 1; break; }
        err = "expected ',' or '}' in an object";
        break;
    }
    str_free(&k);
    return err;
}

// the value of `key` in the one-line JSON object `line`, which must hold nothing else;
// NULL in *value if it lacks the key
static const char *json_find(const char *line, const char *key, const char **value) {
    const char *p = line, *err = json_object(&p, key, value);
    if (err == NULL && *skip_ws(p) != '\0') { err = "trailing characters after the object"; }
    return err;
}

// Reads the string value of `key` from a one-line JSON object into out. Other keys
// may hold any JSON value. Returns NULL on success, else what was wrong ("missing
// key" when the object lacks it).
static const char *json_get(const char *line, const char *key, Str *out) {
    const char *value, *err = json_find(line, key, &value);
    if (err) { return err; }
    if (value == NULL) { return "missing key"; }
    if (*value != '"') { return "the key's value is not a string"; }
    str_clear(out);
    return json_parse_string(&value, out);
}

static const char *ROLE_NAMES[NUM_ROLES] = {"user", "assistant", "system"};

void chat_free(Chat *c) {
    for (int i = 0; i < c->n; i++) { free(c->turns[i].content); }
    free(c->turns);
    c->turns = NULL;
    c->n = 0;
}

static void chat_add(Chat *c, int role, const char *content, size_t len) {
    Turn *grown = realloc(c->turns, (size_t)(c->n + 1) * sizeof(Turn));
    if (grown == NULL) { FAIL("out of memory reading a conversation"); }
    c->turns = grown;
    char *copy = mallocCheck(len + 1);
    memcpy(copy, content, len);
    copy[len] = '\0';
    c->turns[c->n++] = (Turn){.role = role, .train = 0, .content = copy};
}

// Reads the value of `key` in a one-line JSON object as a conversation: either a
// string, which is one turn of `role`, or a list of messages as Hugging Face TRL
// writes them, [{"role": "user", "content": "..."}, {"role": "assistant", ...}], with
// the roles user, assistant and system (other keys of a message are allowed and
// skipped). Returns NULL and fills *out, or what was wrong (nothing left to free).
static const char *json_get_chat(const char *line, const char *key, int role, Chat *out) {
    *out = (Chat){0};
    const char *p, *err = json_find(line, key, &p);
    if (err) { return err; }
    if (p == NULL) { return "missing key"; }
    Str text = {0};
    if (*p == '"') {
        if ((err = json_parse_string(&p, &text)) == NULL) { chat_add(out, role, str_cstr(&text), text.len); }
        str_free(&text);
        return err;
    }
    if (*p != '[') { return "the key's value is neither a string nor a list of messages"; }
    out->listed = 1;
    p = skip_ws(p + 1);
    while (*p != ']' && err == NULL) {
        const char *r, *c, *at = p;
        if ((err = json_object(&p, "role", &r)) != NULL || (err = json_object(&at, "content", &c)) != NULL) { break; }
        if (r == NULL || c == NULL) { err = "a message needs \"role\" and \"content\""; break; }
        if (*r != '"' || *c != '"') { err = "a message's role and content must be strings"; break; }
        str_clear(&text);
        if ((err = json_parse_string(&r, &text)) != NULL) { break; }
        int found = -1;
        for (int i = 0; i < NUM_ROLES; i++) { if (!strcmp(str_cstr(&text), ROLE_NAMES[i])) { found = i; } }
        if (found < 0) { err = "a message's role must be \"user\", \"assistant\" or \"system\""; break; }
        str_clear(&text);
        if ((err = json_parse_string(&c, &text)) != NULL) { break; }
        chat_add(out, found, str_cstr(&text), text.len);
        p = skip_ws(p);
        if (*p == ',') { p = skip_ws(p + 1); }
        else if (*p != ']') { err = "expected ',' or ']' in a list of messages"; }
    }
    if (err == NULL && out->n == 0) { err = "an empty list of messages"; }
    str_free(&text);
    if (err) { chat_free(out); }
    return err;
}

// Writes a conversation as json_get_chat reads it: a string if it was one, else a
// list of {"role", "content"} messages.
static void json_write_chat(Str *out, const Chat *c) {
    if (!c->listed) { json_write_string(out, c->turns[0].content); return; }
    str_add(out, "[", 1);
    for (int i = 0; i < c->n; i++) {
        str_add(out, i ? ", {\"role\": " : "{\"role\": ", i ? 11 : 9);
        json_write_string(out, ROLE_NAMES[c->turns[i].role]);
        str_add(out, ", \"content\": ", 13);
        json_write_string(out, c->turns[i].content);
        str_add(out, "}", 1);
    }
    str_add(out, "]", 1);
}

void jsonl_free(JsonlRecords *records) {
    for (size_t i = 0; i < (size_t)records->count * records->nkeys; i++) { free(records->values[i]); }
    free(records->values);
    records->values = NULL;
    records->count = 0;
}

void jsonl_lines_free(JsonlLines *l) {
    free(l->text);
    free(l->lines);
    free(l->numbers);
    *l = (JsonlLines){0};
}

// The non-blank lines of a JSONL file ("-": standard input), split in place: line i
// of out is line number numbers[i] of the file. Returns NULL, or an error naming the
// file, with nothing left to free. A file with no line is an error.
const char *jsonl_lines(const char *path, JsonlLines *out, char *err, size_t err_size) {
    *out = (JsonlLines){0};
    if (strcmp(path, "-") != 0) {
        FILE *f = fopen(path, "rb");
        if (f == NULL) { snprintf(err, err_size, "cannot open %s (%s)", path, strerror(errno)); return err; }
        fclose(f);
    }
    size_t size;
    char *text = read_whole_file(path, &size);
    const char *nul = memchr(text, '\0', size); // the lines below end at the first NUL: say so rather than stop there
    if (nul) {
        int at = 1;
        for (const char *c = text; c < nul; c++) { at += *c == '\n'; }
        snprintf(err, err_size, "%s:%d: a NUL byte: JSONL must be UTF-8 text", path, at);
        free(text);
        return err;
    }
    out->text = text;
    int cap = 0, lineno = 0;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        if (end) { *end = '\0'; }
        lineno++;
        if (*skip_ws(line) != '\0') {
            if (out->count == cap) {
                cap = cap ? 2 * cap : 256;
                char **lines = realloc(out->lines, (size_t)cap * sizeof(char *));
                int *numbers = realloc(out->numbers, (size_t)cap * sizeof(int));
                if (lines == NULL || numbers == NULL) { FAIL("out of memory reading %s", path); }
                out->lines = lines;
                out->numbers = numbers;
            }
            out->lines[out->count] = line;
            out->numbers[out->count++] = lineno;
        }
        line = end ? end + 1 : line + strlen(line);
    }
    if (out->count == 0) {
        jsonl_lines_free(out);
        snprintf(err, err_size, "%s has no records (an empty file?)", path);
        return err;
    }
    return NULL;
}

// Reads a JSONL file whose every line has the string keys `keys`. Returns NULL and
// fills *records (count x nkeys strings, line by line), or returns an error naming
// the file and line, with nothing left to free. Blank lines are skipped; a file with
// no record is an error.
const char *jsonl_read(const char *path, const char **keys, int nkeys, JsonlRecords *records, char *err, size_t err_size) {
    records->count = 0;
    records->nkeys = nkeys;
    records->values = NULL;
    JsonlLines lines;
    if (jsonl_lines(path, &lines, err, err_size)) { return err; }
    records->values = mallocCheck((size_t)lines.count * nkeys * sizeof(char *));
    Str value = {0};
    const char *bad = NULL;
    for (int i = 0; i < lines.count && !bad; i++) {
        for (int k = 0; k < nkeys; k++) {
            const char *why = json_get(lines.lines[i], keys[k], &value);
            if (why) {
                snprintf(err, err_size, "%s:%d: %s \"%s\": every line must be a JSON object with string keys%s%s", path,
                         lines.numbers[i], why, keys[k], nkeys > 1 ? " " : "", nkeys > 1 ? "(see doc/chat.md)" : "");
                bad = err;
                for (int j = 0; j < k; j++) { free(records->values[(size_t)records->count * nkeys + j]); }
                break;
            }
            char *copy = mallocCheck(value.len + 1);
            memcpy(copy, str_cstr(&value), value.len + 1);
            records->values[(size_t)records->count * nkeys + k] = copy;
        }
        if (!bad) { records->count++; }
    }
    jsonl_lines_free(&lines);
    str_free(&value);
    if (bad) { jsonl_free(records); } // on an error, nothing is left for the caller to free
    return bad;
}

// ----------------------------------------------------------------------------
// Appendix C. files, checkpoints and the tokenizer's file format
//
// Layout (doc/formats.md): a header of 256 int32, then the parameters as fp32 in
// the order of ParameterTensors, then (if the header says so) AdamW's m and v in
// the same order. Header fields: see the CK_ enum. Files are written to a temporary
// name, flushed to disk and renamed, so a crash never leaves half a checkpoint.

#define TOKENIZER_MAGIC 0x45504231 // "1BPE"
#define TOKENIZER_VERSION 2          // 2 added the chunk rule; version 1 files are read as SPLIT_OURS

// File layout (little-endian int32): magic, version, vocab_size, NUM_SPECIAL,
// num_merges, split (SPLIT_OURS or SPLIT_GPT2), then num_merges pairs (left, right).
// See doc/formats.md.
void tokenizer_save(const Tokenizer *tok, const char *path) {
    FILE *f = file_begin(path);
    int header[6] = {TOKENIZER_MAGIC, TOKENIZER_VERSION, tok->vocab_size, NUM_SPECIAL, tok->num_merges, tok->split};
    fwriteCheck(header, sizeof(int), 6, f);
    fwriteCheck(tok->merges, sizeof(int[2]), (size_t)tok->num_merges, f);
    fcloseCheck(f);
    file_commit(path);
}

// Reads a tokenizer file from f; path names it in messages.
void tokenizer_read(Tokenizer *tok, FILE *f, const char *path) {
    int header[6] = {0};
    long size = file_size(f, path);
    if (size < 5 * (long)sizeof(int)) { FAIL("%s is truncated (%ld bytes): not a whole tokenizer file; retrain it", path, size); }
    freadCheck(header, sizeof(int), 5, f);
    if (header[0] != TOKENIZER_MAGIC) { FAIL("%s is not a tokenizer file (bad magic number)", path); }
    if (header[1] != 1 && header[1] != TOKENIZER_VERSION) {
        FAIL("%s is tokenizer version %d, this program reads 1 and %d: retrain it with ./train pretrain", path, header[1], TOKENIZER_VERSION);
    }
    int fields = header[1] == 1 ? 5 : 6;
    if (fields == 6 && size >= 6 * (long)sizeof(int)) { freadCheck(&header[5], sizeof(int), 1, f); }
    if (header[3] != NUM_SPECIAL || header[4] < 0 || header[4] > (1 << 20) || header[2] != FIRST_MERGE + header[4] ||
        (header[5] != SPLIT_OURS && header[5] != SPLIT_GPT2)) {
        FAIL("%s: inconsistent tokenizer header; retrain it", path);
    }
    tok->split = header[5];
    long want = (long)fields * (long)sizeof(int) + (long)header[4] * (long)sizeof(int[2]);
    if (size != want) {
        FAIL("%s is %s (%ld bytes, its header says %ld): not a whole tokenizer file; retrain it", path,
             size < want ? "truncated" : "longer than its header says", size, want);
    }
    tok->num_merges = header[4];
    tok->merges = mallocCheck((size_t)(tok->num_merges > 0 ? tok->num_merges : 1) * sizeof(int[2]));
    freadCheck(tok->merges, sizeof(int[2]), (size_t)tok->num_merges, f);
    // every merge joins two tokens that exist before it (bytes, or earlier merges)
    for (int m = 0; m < tok->num_merges; m++) {
        int a = tok->merges[m][0], b = tok->merges[m][1], id = FIRST_MERGE + m;
        if (a < 0 || b < 0 || a >= id || b >= id || (a >= 256 && a < FIRST_MERGE) || (b >= 256 && b < FIRST_MERGE)) {
            free(tok->merges);
            FAIL("%s: merge %d is (%d, %d), not two earlier tokens: the file is corrupt; retrain it", path, id, a, b);
        }
    }
    tokenizer_index(tok);
}

void tokenizer_load(Tokenizer *tok, const char *path) {
    FILE *f = fopenCheck(path, "rb");
    tokenizer_read(tok, f, path);
    fcloseCheck(f);
}

// What a checkpoint records of its tokenizer: a hash of the chunk rule and the merges,
// never 0 (FNV-1a, 32 bits). Two different tokenizers share one with odds of 1 in 4e9.
uint32_t tokenizer_fingerprint(const Tokenizer *tok) {
    uint32_t h = 2166136261u;
    int words[2] = {tok->split, tok->num_merges};
    const unsigned char *parts[2] = {(const unsigned char *)words, (const unsigned char *)tok->merges};
    size_t sizes[2] = {sizeof(words), (size_t)tok->num_merges * sizeof(int[2])};
    for (int p = 0; p < 2; p++) {
        for (size_t i = 0; i < sizes[p]; i++) { h = (h ^ parts[p][i]) * 16777619u; }
    }
    return h ? h : 1;
}

// Checks that tok (read from tok_path) is the tokenizer of the model (from model_path),
// by size and, where the checkpoint records it, by fingerprint; a model that does not
// record it yet takes tok's, for its next save.
static void tokenizer_match(const Tokenizer *tok, const char *tok_path, GPT *model, const char *model_path) {
    if (tok->vocab_size != model->config.vocab_size) {
        FAIL("%s has %d tokens but %s expects %d: pass the model's tokenizer with -z", tok_path, tok->vocab_size,
             model_path, model->config.vocab_size);
    }
    uint32_t fp = tokenizer_fingerprint(tok);
    if (model->tokenizer && model->tokenizer != fp) {
        FAIL("%s (%s chunks, fingerprint %08x) is not the tokenizer %s was trained with (fingerprint %08x): pass that one "
             "with -z", tok_path, tok->split == SPLIT_GPT2 ? "GPT-2's" : "our", fp, model_path, model->tokenizer);
    }
    model->tokenizer = fp;
}

#define CHECKPOINT_MAGIC 0x54504B43 // "CKPT"
#define CHECKPOINT_VERSION 1
enum { CK_MAGIC, CK_VERSION, CK_KIND, CK_MAX_SEQ_LEN, CK_VOCAB, CK_LAYERS, CK_HEADS, CK_CHANNELS,
       CK_HAS_OPTIMIZER, CK_STEP, CK_DATA_RNG_LO, CK_DATA_RNG_HI, CK_SCALAR_HEAD, CK_SAMPLE_RNG_LO, CK_SAMPLE_RNG_HI,
       CK_BETA, CK_TOKENIZER, CK_HEADER_INTS = 256 };

// Every file this program writes goes whole to path.tmp (file_begin), then is renamed
// to path (file_commit). rename is atomic: path holds either the old file or the new
// one, never a mix, whenever the program stops.
static FILE *file_begin(const char *path) {
    char tmp[4096 + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    return fopenCheck(tmp, "wb");
}

void file_commit(const char *path) {
    char tmp[4096 + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (rename(tmp, path) != 0) { FAIL("cannot rename %s to %s (%s)", tmp, path, strerror(errno)); }
}

// Writes a whole checkpoint to path.tmp and flushes it to disk; file_commit then
// renames it to path. checkpoint_save does both.
void checkpoint_write(const char *path, const GPT *model, const TrainState *state, int with_optimizer) {
    FILE *f = file_begin(path);
    int header[CK_HEADER_INTS] = {0};
    header[CK_MAGIC] = CHECKPOINT_MAGIC;
    header[CK_VERSION] = CHECKPOINT_VERSION;
    header[CK_KIND] = state->kind;
    header[CK_MAX_SEQ_LEN] = model->config.max_seq_len;
    header[CK_VOCAB] = model->config.vocab_size;
    header[CK_LAYERS] = model->config.num_layers;
    header[CK_HEADS] = model->config.num_heads;
    header[CK_CHANNELS] = model->config.channels;
    header[CK_HAS_OPTIMIZER] = with_optimizer && model->m_memory != NULL;
    header[CK_STEP] = state->step;
    header[CK_DATA_RNG_LO] = (int)(uint32_t)state->data_rng;
    header[CK_DATA_RNG_HI] = (int)(uint32_t)(state->data_rng >> 32);
    header[CK_SCALAR_HEAD] = model->config.scalar_head;
    header[CK_SAMPLE_RNG_LO] = (int)(uint32_t)state->sample_rng;
    header[CK_SAMPLE_RNG_HI] = (int)(uint32_t)(state->sample_rng >> 32);
    memcpy(&header[CK_BETA], &state->beta, sizeof(float));
    header[CK_TOKENIZER] = (int)model->tokenizer;
    fwriteCheck(header, sizeof(int), CK_HEADER_INTS, f);
    fwriteCheck(model->params_memory, sizeof(float), model->num_parameters, f);
    if (header[CK_HAS_OPTIMIZER]) {
        fwriteCheck(model->m_memory, sizeof(float), model->num_parameters, f);
        fwriteCheck(model->v_memory, sizeof(float), model->num_parameters, f);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) { FAIL("cannot flush %s.tmp to disk (%s)", path, strerror(errno)); }
    fcloseCheck(f);
}

void checkpoint_save(const char *path, const GPT *model, const TrainState *state, int with_optimizer) {
    checkpoint_write(path, model, state, with_optimizer);
    file_commit(path);
}

// Builds model from a checkpoint read from f (path names it in messages), with its
// optimizer state if it has one. want_kinds, a bit set of (1 << kind), says which
// kinds are accepted here (0: any). Every check comes before any allocation.
void checkpoint_read(FILE *f, const char *path, GPT *model, int want_kinds, TrainState *state) {
    int header[CK_HEADER_INTS];
    long size = file_size(f, path);
    if (size < (long)sizeof(header)) { FAIL("%s is truncated (%ld bytes, less than a header): not a whole checkpoint", path, size); }
    freadCheck(header, sizeof(int), CK_HEADER_INTS, f);
    if (header[CK_MAGIC] != CHECKPOINT_MAGIC) { FAIL("%s is not a checkpoint of train.c (bad magic number)", path); }
    if (header[CK_VERSION] != CHECKPOINT_VERSION) {
        FAIL("%s is checkpoint version %d; this program reads version %d: retrain it", path, header[CK_VERSION], CHECKPOINT_VERSION);
    }
    int kind = header[CK_KIND];
    if (kind < 1 || kind >= NUM_KINDS || header[CK_SCALAR_HEAD] != kind_scalar_head(kind)) {
        FAIL("%s: unknown model kind %d (head %d): the file is corrupt or from another version", path, kind, header[CK_SCALAR_HEAD]);
    }
    if (want_kinds && !(want_kinds & (1 << kind))) {
        char wanted[128] = "";
        for (int k = 1; k < NUM_KINDS; k++) {
            if (want_kinds & (1 << k)) { strcat(wanted, wanted[0] ? " or " : ""); strcat(wanted, kind_name(k)); }
        }
        FAIL("%s holds a %s model, but a %s model is needed here", path, kind_name(kind), wanted);
    }
    GPTConfig cfg = {.max_seq_len = header[CK_MAX_SEQ_LEN], .vocab_size = header[CK_VOCAB], .num_layers = header[CK_LAYERS],
                     .num_heads = header[CK_HEADS], .channels = header[CK_CHANNELS], .scalar_head = header[CK_SCALAR_HEAD]};
    // sizes within the flags' ranges, and a file as long as they imply, before allocating anything
    if (cfg.vocab_size < FIRST_MERGE || cfg.vocab_size > (1 << 20) || cfg.num_layers < 1 || cfg.num_layers > 1024 ||
        cfg.num_heads < 1 || cfg.num_heads > 1024 || cfg.channels < 1 || cfg.channels > (1 << 16) ||
        cfg.max_seq_len < 1 || cfg.max_seq_len > (1 << 16) || cfg.channels % cfg.num_heads != 0) {
        FAIL("%s: bad model config in the header (V=%d L=%d NH=%d C=%d T=%d): the file is corrupt", path, cfg.vocab_size,
             cfg.num_layers, cfg.num_heads, cfg.channels, cfg.max_seq_len);
    }
    size_t sizes[NUM_PARAMETER_TENSORS], count = 0;
    fill_in_parameter_sizes(sizes, cfg);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { count += sizes[i]; }
    double want = sizeof(header) + (header[CK_HAS_OPTIMIZER] ? 3.0 : 1.0) * count * sizeof(float);
    if ((double)size != want) {
        FAIL("%s is %s (%ld bytes, its header implies %.0f): not a whole checkpoint of this format", path,
             size < want ? "truncated" : "longer than its header says", size, want);
    }
    gpt_build(model, cfg);
    model->tokenizer = (uint32_t)header[CK_TOKENIZER];
    freadCheck(model->params_memory, sizeof(float), model->num_parameters, f);
    if (header[CK_HAS_OPTIMIZER]) {
        model->m_memory = model_calloc(model->num_parameters, sizeof(float));
        model->v_memory = model_calloc(model->num_parameters, sizeof(float));
        freadCheck(model->m_memory, sizeof(float), model->num_parameters, f);
        freadCheck(model->v_memory, sizeof(float), model->num_parameters, f);
    }
    state->kind = kind;
    state->step = header[CK_STEP];
    state->data_rng = (uint64_t)(uint32_t)header[CK_DATA_RNG_LO] | (uint64_t)(uint32_t)header[CK_DATA_RNG_HI] << 32;
    state->sample_rng = (uint64_t)(uint32_t)header[CK_SAMPLE_RNG_LO] | (uint64_t)(uint32_t)header[CK_SAMPLE_RNG_HI] << 32;
    memcpy(&state->beta, &header[CK_BETA], sizeof(float));
}

void checkpoint_load(const char *path, GPT *model, int want_kinds, TrainState *state) {
    FILE *f = fopenCheck(path, "rb");
    checkpoint_read(f, path, model, want_kinds, state);
    fcloseCheck(f);
}

// Reads a whole file ("-": standard input) into a NUL-terminated buffer.
static char *read_whole_file(const char *path, size_t *size) {
    int is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopenCheck(path, "rb");
    size_t cap = 1 << 16, len = 0;
    char *buf = mallocCheck(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            char *grown = realloc(buf, cap);
            if (grown == NULL) { FAIL("out of memory reading %s", path); }
            buf = grown;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0) { break; }
        len += n;
    }
    if (ferror(f)) { FAIL("cannot read %s (%s)", path, strerror(errno)); }
    if (!is_stdin) { fcloseCheck(f); }
    buf[len] = '\0';
    *size = len;
    return buf;
}

// the size in bytes of an open file, for checking a binary file against its header
static long file_size(FILE *f, const char *path) {
    long here = ftell(f), size;
    if (here < 0 || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, here, SEEK_SET) != 0) {
        FAIL("cannot measure %s (%s): a regular file is needed", path, strerror(errno));
    }
    return size;
}

// the folder's name for a file in it; out_path: in the output folder (-o)
static void dir_path(char *buf, size_t size, const char *dir, const char *name) { snprintf(buf, size, "%s/%s", dir, name); }
static void out_path(char *buf, size_t size, const Config *cfg, const char *name) { dir_path(buf, size, cfg->out_dir, name); }

static void make_out_dir(const Config *cfg) {
    if (mkdir(cfg->out_dir, 0755) != 0 && errno != EEXIST) { FAIL("cannot create directory %s (%s)", cfg->out_dir, strerror(errno)); }
}

// Loads the tokenizer named by -z, or <out>/tokenizer.bin; if neither exists,
// trains one on the training text and saves it to <out>/tokenizer.bin.
void load_or_train_tokenizer(Tokenizer *tok, const Config *cfg) {
    char path[4096];
    if (cfg->tokenizer_path) { tokenizer_load(tok, cfg->tokenizer_path); return; }
    out_path(path, sizeof(path), cfg, "tokenizer.bin");
    if (access(path, F_OK) == 0) {
        tokenizer_load(tok, path);
        if (cfg->given['V'] && cfg->vocab_size != tok->vocab_size) {
            FAIL("-V %d, but %s already has %d tokens and is used as it is: to train a new tokenizer, remove it or use "
                 "another -o; to keep it, drop -V", cfg->vocab_size, path, tok->vocab_size);
        }
        printf("tokenizer: %s (%d tokens)\n", path, tok->vocab_size);
        return;
    }
    size_t n;
    char *text = read_whole_file(cfg->train_path, &n);
    double t0 = now_seconds();
    tokenizer_train(tok, text, n, cfg->vocab_size);
    printf("tokenizer: trained %d merges on %s (%.1f MB) in %.2f s -> %s (%d tokens)\n", tok->num_merges,
           cfg->train_path, n / 1e6, now_seconds() - t0, path, tok->vocab_size);
    free(text);
    tokenizer_save(tok, path);
}

// With --resume, a stage continues from its own last checkpoint, <out>/<name>: returns
// that path in buf, or NULL without --resume.
static const char *resume_path(const Config *cfg, const char *name, char *buf, size_t size) {
    if (!cfg->resume) { return NULL; }
    out_path(buf, size, cfg, name);
    if (access(buf, F_OK) != 0) { FAIL("--resume: %s does not exist, so there is nothing to continue: run without --resume", buf); }
    return buf;
}

// the tokenizer of an earlier stage (-z, or <out>/tokenizer.bin), checked against the model
void load_tokenizer_for(Tokenizer *tok, const Config *cfg, GPT *model, const char *model_path) {
    char path[4096];
    if (cfg->tokenizer_path) { snprintf(path, sizeof(path), "%s", cfg->tokenizer_path); }
    else { out_path(path, sizeof(path), cfg, "tokenizer.bin"); }
    tokenizer_load(tok, path);
    tokenizer_match(tok, path, model, model_path);
}

// The opening of a later stage: the output directory, the checkpoint it starts
// from (path, one of want_kinds), and that checkpoint's tokenizer.
static void stage_begin(const Config *cfg, const char *path, GPT *model, TrainState *state, Tokenizer *tok, int want_kinds) {
    make_out_dir(cfg);
    checkpoint_load(path, model, want_kinds, state);
    load_tokenizer_for(tok, cfg, model, path);
    printf("model: %s (%s), %.2fM parameters, context %d%s\n", path, kind_name(state->kind), model->num_parameters / 1e6,
           model->config.max_seq_len, cfg->resume ? ", resumed" : "");
}

// a model's weights only, without optimizer state: the frozen models, and the value
// model, which starts as the reward model with a fresh optimizer
static void load_weights(GPT *model, const char *path, int want_kinds) {
    TrainState st;
    checkpoint_load(path, model, want_kinds, &st);
    model_free(model->m_memory); model_free(model->v_memory);
    model->m_memory = model->v_memory = NULL;
}

// Pretraining's start: the output directory, the tokenizer (-z, <out>/tokenizer.bin, or
// one trained on the text), the training and validation text as tokens, and the model:
// new, from the flags, or continued from a base checkpoint (-c, or --resume).
static void pretrain_open(const Config *cfg, Tokenizer *tok, DataLoader *train, DataLoader *val, GPT *model,
                          TrainState *state) {
    make_out_dir(cfg);
    load_or_train_tokenizer(tok, cfg);
    size_t n_train, n_val;
    int *train_tokens = encode_file(tok, cfg->train_path, &n_train), *val_tokens;
    if (cfg->val_path) {
        val_tokens = encode_file(tok, cfg->val_path, &n_val);
        printf("data: %s %zu tokens, %s %zu tokens\n", cfg->train_path, n_train, cfg->val_path, n_val);
    } else { // no -j: the last tenth of the text is held out, so that "val loss" is not training loss
        n_val = n_train / 10;
        n_train -= n_val;
        val_tokens = mallocCheck((n_val + 1) * sizeof(int));
        memcpy(val_tokens, train_tokens + n_train, n_val * sizeof(int));
        printf("data: %s %zu tokens to train on; no -j: its last tenth, %zu tokens, is held out for validation\n",
               cfg->train_path, n_train, n_val);
    }
    const char *paths[2] = {cfg->train_path, cfg->val_path ? cfg->val_path : "the held-out tenth of -i"};
    size_t counts[2] = {n_train, n_val};
    for (int i = 0; i < 2; i++) {
        if (counts[i] < (size_t)cfg->seq_len + 1) {
            FAIL("%s has %zu tokens, fewer than one sequence of %d + 1: use a longer text or a smaller -t", paths[i], counts[i],
                 cfg->seq_len);
        }
    }
    *state = (TrainState){.kind = KIND_BASE, .step = 0};
    dataloader_init(train, train_tokens, n_train, cfg->batch_size, cfg->seq_len, cfg->seed);
    dataloader_init(val, val_tokens, n_val, cfg->batch_size, cfg->seq_len, cfg->seed);
    char own[4096];
    const char *start = cfg->resume ? resume_path(cfg, "base.bin", own, sizeof(own)) : cfg->init_path;
    if (start && cfg->resume) {
        checkpoint_load(start, model, 1 << KIND_BASE, state);
        train->rng = state->data_rng;
        printf("continuing %s from step %d\n", start, state->step);
    } else if (start) { // more pretraining of a base model: a schedule of -n steps of its own
        checkpoint_load(start, model, 1 << KIND_BASE, state);
        stage_fresh_start(model, state, KIND_BASE, cfg);
        printf("pretraining %s further: %d new steps, a new schedule and optimizer (--resume continues a run)\n", start,
               cfg->steps);
    } else {
        GPTConfig gc = {.max_seq_len = cfg->seq_len, .vocab_size = tok->vocab_size, .num_layers = cfg->num_layers,
                        .num_heads = cfg->num_heads, .channels = cfg->channels};
        gpt_build(model, gc);
        gpt_init(model, cfg->seed);
    }
    tokenizer_match(tok, cfg->tokenizer_path ? cfg->tokenizer_path : "the tokenizer", model, start ? start : "the new model");
    if (cfg->seq_len > model->config.max_seq_len) { FAIL("-t %d exceeds the checkpoint's context of %d", cfg->seq_len, model->config.max_seq_len); }
    printf("model: L=%d C=%d NH=%d V=%d T=%d, %.2fM parameters\n", model->config.num_layers, model->config.channels,
           model->config.num_heads, model->config.vocab_size, model->config.max_seq_len, model->num_parameters / 1e6);
}

static void pretrain_close(Tokenizer *tok, DataLoader *train, DataLoader *val, GPT *model) {
    free((void *)train->tokens);
    free((void *)val->tokens);
    dataloader_free(train);
    dataloader_free(val);
    gpt_free(model);
    tokenizer_free(tok);
}

// The opening of SFT, reward modeling or DPO (the stage whose checkpoints are of kind
// `own`): the checkpoint it starts from (-c, or with --resume its own last one, of
// one of want_kinds), that checkpoint's tokenizer, and a check that -n leaves steps
// to train.
static void stage_open(const Config *cfg, int own, int want_kinds, GPT *model, TrainState *state, Tokenizer *tok) {
    char own_path[4096], name[64];
    snprintf(name, sizeof(name), "%s.bin", KIND_FILES[own]);
    const char *start = cfg->resume ? resume_path(cfg, name, own_path, sizeof(own_path)) : cfg->init_path;
    stage_begin(cfg, start, model, state, tok, want_kinds);
    int done = cfg->resume ? state->step : 0; // only --resume continues a run; -c starts a new one
    if (!cfg->resume && state->kind == own) {
        printf("training %s further: %d new steps, a new schedule and optimizer (--resume continues a run)\n", start,
               cfg->steps);
    }
    if (cfg->steps <= done) {
        FAIL("%s -n %d leaves nothing to train (%s has done %d of its steps): give a larger -n. To answer prompts with "
             "a checkpoint as it is: ./train answer -c CHECKPOINT -O FILE; to score pairs with a reward model: ./train "
             "score -c CHECKPOINT -O FILE", own == KIND_SFT ? "sft" : own == KIND_REWARD ? "rm" : "dpo", cfg->steps, start, done);
    }
}

// A stage that starts from an earlier stage's checkpoint counts its own steps from 0,
// draws its own data order, and starts a new optimizer.
static void stage_fresh_start(GPT *model, TrainState *state, int kind, const Config *cfg) {
    *state = (TrainState){.kind = kind, .step = 0, .data_rng = rng_stream(cfg->seed, RNG_DATA)};
    model_free(model->m_memory);
    model_free(model->v_memory);
    model->m_memory = model->v_memory = NULL;
}

// The models that stage 4's sampling methods share: the policy (from the SFT model of
// -c, or with --resume from the stage's own <out>/<own kind>.bin), the reference (the
// SFT model of -c, always) and the frozen reward model (-R or <out>/reward.bin).
static void policy_open(const Config *cfg, const char *command, int own, GPT *policy, GPT *ref, GPT *reward,
                        TrainState *state, Tokenizer *tok) {
    if (cfg->steps < 1) {
        FAIL("%s -n %d: it needs at least one iteration (to answer prompts with a checkpoint: ./train answer -c CHECKPOINT "
             "-O FILE)", command, cfg->steps);
    }
    char own_path[4096], name[64];
    snprintf(name, sizeof(name), "%s.bin", KIND_FILES[own]);
    const char *start = cfg->resume ? resume_path(cfg, name, own_path, sizeof(own_path)) : cfg->init_path;
    stage_begin(cfg, start, policy, state, tok, cfg->resume ? 1 << own : 1 << KIND_SFT);
    if (cfg->resume && state->step >= cfg->steps) {
        FAIL("%s -n %d leaves nothing to train (%s has done %d iterations): give a larger -n", command, cfg->steps, start,
             state->step);
    }
    open_reward_model(cfg, policy, reward, 1);
    load_weights(ref, cfg->init_path, 1 << KIND_SFT);
    if (!cfg->resume) { // a new stage: its own iterations, a new optimizer, its own sampling stream
        stage_fresh_start(policy, state, own, cfg);
        state->sample_rng = rng_stream(cfg->seed, RNG_SAMPLE);
    }
    int maxT = policy->config.max_seq_len;
    if (cfg->gen_len >= maxT - 2) { FAIL("-m %d leaves no room for a prompt in the context of %d", cfg->gen_len, maxT); }
}

// RLHF's four models: policy_open's three and the critic (a copy of the reward model,
// or with --resume <out>/value.bin of the same save).
static void rlhf_open(const Config *cfg, GPT *policy, GPT *ref, GPT *value, GPT *reward, TrainState *state,
                      TrainState *value_state, Tokenizer *tok) {
    policy_open(cfg, "rlhf", KIND_RLHF, policy, ref, reward, state, tok);
    char path[4096];
    if (cfg->resume) {
        // the critic of the same save: value.bin, or, if the save stopped between its two
        // renames, the whole new version still under value.bin.tmp (which it then completes)
        char tmp[4096 + 8];
        out_path(path, sizeof(path), cfg, "value.bin");
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        value_state->step = -1;
        if (access(path, F_OK) == 0) { checkpoint_load(path, value, 1 << KIND_VALUE, value_state); }
        if (value_state->step != state->step && access(tmp, F_OK) == 0) {
            if (value_state->step >= 0) { gpt_free(value); }
            checkpoint_load(tmp, value, 1 << KIND_VALUE, value_state);
            if (value_state->step == state->step) { file_commit(path); }
        }
        if (value_state->step != state->step) {
            FAIL("--resume: no critic (value.bin) from the save of rlhf.bin at iteration %d: the two must come from one save",
                 state->step);
        }
    } else { // a new stage: the critic starts as the reward model, with a fresh optimizer
        state->beta = cfg->kl_coef;
        load_weights(value, reward_model_path(cfg, path, sizeof(path)), 1 << KIND_REWARD);
        *value_state = (TrainState){.kind = KIND_VALUE, .step = 0};
    }
}

// After iteration `iter`, every -S iterations and after the last: the policy and the
// critic as one save. Both are written in full before either is renamed, so a stop
// between the renames leaves value.bin's new version whole under value.bin.tmp.
static void rlhf_save(const Config *cfg, int iter, const GPT *policy, const TrainState *state, const GPT *value,
                      const TrainState *value_state) {
    if (!save_due(cfg, iter + 1)) { return; }
    char path[4096], value_path[4096];
    out_path(path, sizeof(path), cfg, "rlhf.bin");
    out_path(value_path, sizeof(value_path), cfg, "value.bin");
    checkpoint_write(path, policy, state, 1);
    checkpoint_write(value_path, value, value_state, 1);
    file_commit(path);
    file_commit(value_path);
}

// GRPO's save, after its state's step: the policy, with its optimizer, every -S
// iterations and after the last
static void policy_save(const Config *cfg, const GPT *policy, const TrainState *state, const char *name) {
    if (!save_due(cfg, state->step)) { return; }
    char path[4096];
    out_path(path, sizeof(path), cfg, name);
    checkpoint_save(path, policy, state, 1);
}

// The shape of the model in a checkpoint, from its header alone: 1 and *shape, or 0 if
// the file cannot be read as one (the stage that loads it says why).
static int checkpoint_shape(const char *path, GPTConfig *shape) {
    int header[CK_HEADER_INTS];
    FILE *f = fopen(path, "rb");
    if (f == NULL) { return 0; }
    int ok = fread(header, sizeof(int), CK_HEADER_INTS, f) == CK_HEADER_INTS && header[CK_MAGIC] == CHECKPOINT_MAGIC &&
             header[CK_VERSION] == CHECKPOINT_VERSION;
    fclose(f);
    if (ok) {
        *shape = (GPTConfig){.max_seq_len = header[CK_MAX_SEQ_LEN], .vocab_size = header[CK_VOCAB],
                             .num_layers = header[CK_LAYERS], .num_heads = header[CK_HEADS], .channels = header[CK_CHANNELS]};
    }
    return ok;
}

// where the reward model is: -R, else <out>/reward.bin
static const char *reward_model_path(const Config *cfg, char *buf, size_t size) {
    if (cfg->reward_path) { snprintf(buf, size, "%s", cfg->reward_path); }
    else { out_path(buf, size, cfg, "reward.bin"); }
    return buf;
}

// The frozen reward model of -R or <out>/reward.bin, checked against the policy it
// will score. Returns 1, or 0 where it is optional (DPO only reports its scores with
// it): then a <out>/reward.bin that is missing is passed over, and one that does not
// fit the policy is passed over with a warning. One named with -R is always required.
static int open_reward_model(const Config *cfg, const GPT *policy, GPT *reward, int required) {
    char path[4096];
    reward_model_path(cfg, path, sizeof(path));
    required |= cfg->reward_path != NULL;
    if (access(path, R_OK) != 0) {
        if (required) { FAIL("%s: no reward model there (%s): train one with ./train rm, or name one with -R", path, strerror(errno)); }
        return 0;
    }
    GPTConfig shape, pc = policy->config;
    int readable = checkpoint_shape(path, &shape); // if not, load_weights below says why
    if (readable && (shape.vocab_size != pc.vocab_size || shape.max_seq_len != pc.max_seq_len)) {
        if (!required) {
            fprintf(stderr, "warning: %s does not fit %s: its scores are left out\n", path, cfg->init_path);
            return 0;
        }
        FAIL("%s (V=%d, T=%d) does not match the policy %s (V=%d, T=%d): train the reward model from this SFT model",
             path, shape.vocab_size, shape.max_seq_len, cfg->init_path, pc.vocab_size, pc.max_seq_len);
    }
    if (!readable && !required) {
        fprintf(stderr, "warning: %s is not a checkpoint this version reads: its scores are left out\n", path);
        return 0;
    }
    load_weights(reward, path, 1 << KIND_REWARD);
    if (reward->tokenizer && policy->tokenizer && reward->tokenizer != policy->tokenizer) {
        FAIL("%s reads another tokenizer than the policy %s (fingerprints %08x and %08x): train the reward model from "
             "this SFT model", path, cfg->init_path, reward->tokenizer, policy->tokenizer);
    }
    return 1;
}

// After `done` steps (iterations): whether to save, every -S and after the last
static int save_due(const Config *cfg, int done) {
    return (cfg->save_every > 0 && done % cfg->save_every == 0) || done == cfg->steps;
}

// ----------------------------------------------------------------------------
// Appendix D. logs, curves and stage records

// The value of a metric on one line of a stage's JSONL log ({"step": 1, "train_loss": ...}):
// returns 1 and sets *value if the line has the key
static int log_number(const char *line, const char *key, double *value) {
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\": ", key);
    const char *p = strstr(line, pattern);
    if (p == NULL) { return 0; }
    char *end;
    *value = strtod(p + strlen(pattern), &end);
    return end != p + strlen(pattern);
}

// Opens <out>/<name>, a JSONL log whose lines carry a "step". A run that continues from
// a checkpoint at `step` keeps the lines of steps up to `step` and drops any that a
// stopped run wrote after that checkpoint, so none appears twice; `step` < 0 begins a
// new file.
static FILE *open_log(const Config *cfg, const char *name, int step) {
    char path[4096];
    out_path(path, sizeof(path), cfg, name);
    if (step < 0 || access(path, F_OK) != 0) { return fopenCheck(path, "wb"); }
    size_t n, keep = 0;
    char *old = read_whole_file(path, &n);
    while (keep < n) { // the lines are in step order: keep them up to the first one past `step`
        char *nl = memchr(old + keep, '\n', n - keep);
        if (nl) { *nl = '\0'; }
        double line_step;
        int past = !log_number(old + keep, "step", &line_step) || line_step > step;
        if (nl) { *nl = '\n'; }
        if (past) { break; }
        keep = nl ? (size_t)(nl - old) + 1 : n;
    }
    FILE *f = fopenCheck(path, "wb");
    fwriteCheck(old, 1, keep, f);
    free(old);
    return f;
}

// A stage's progress: the log of its metrics, one JSON line per step, and its clock.
struct Progress {
    FILE *log;
    double t_start, t_step; // when the stage's loop began; when the current step began
    int first_step;         // where this run began (a resumed run: the checkpoint's step)
    char prefix[16];        // of the terminal lines: "pretrain ", "sft "
};

static Progress *progress_open(const Config *cfg, const char *log_name, int first_step) {
    Progress *p = mallocCheck(sizeof(Progress));
    p->log = open_log(cfg, log_name, first_step);
    p->t_start = p->t_step = now_seconds();
    p->first_step = first_step;
    snprintf(p->prefix, sizeof(p->prefix), "%.*s ", (int)strcspn(log_name, "."), log_name);
    return p;
}

// Closes the log and says what the run did; returns the steps it took.
static int progress_close(Progress *p, const Config *cfg, const char *stage, const char *checkpoint) {
    int steps = cfg->steps - p->first_step;
    printf("%s: %d %s in %.1f s -> %s/%s\n", stage, steps, strcmp(stage, "rlhf") && strcmp(stage, "grpo") ? "steps" : "iterations",
           now_seconds() - p->t_start, cfg->out_dir, checkpoint);
    fcloseCheck(p->log);
    free(p);
    return steps;
}

// An optimizer step of pretraining or SFT, on the terminal and in the log (whose line
// finish_step ends): the loss, the learning rate, the gradient norm before clipping,
// the tokens a second, and the time left.
static void log_step(Progress *p, const Config *cfg, int step, float loss, float lr, float norm, double tokens) {
    double now = now_seconds(), dt = now - p->t_step;
    double eta = (now - p->t_start) / (step + 1 - p->first_step) * (cfg->steps - step - 1);
    printf("%sstep %4d/%d | loss %.4f | lr %.2e | norm %6.3f | %6.0f tok/s | eta %.0fs\n", p->prefix, step + 1,
           cfg->steps, loss, lr, norm, tokens / dt, eta);
    fprintf(p->log, "{\"step\": %d, \"train_loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, \"tokens_per_s\": %.1f", step + 1,
            loss, lr, norm, tokens / dt);
}

// a validation loss, after its step's line
static void log_val_loss(Progress *p, const char *label, float val_loss) {
    printf("%s %.4f\n", label, val_loss);
    fprintf(p->log, ", \"val_loss\": %.6f", val_loss);
}

static void log_reward_step(Progress *p, const Config *cfg, int step, float loss, float acc, float lr, float norm) {
    printf("rm step %4d/%d | loss %.4f | accuracy %.3f | lr %.2e | norm %6.3f\n", step + 1, cfg->steps, loss, acc, lr, norm);
    fprintf(p->log, "{\"step\": %d, \"train_loss\": %.6f, \"train_accuracy\": %.4f, \"lr\": %.6e, \"grad_norm\": %.6f",
            step + 1, loss, acc, lr, norm);
}

static void log_reward_eval(Progress *p, const RewardStats *st, int pairs) {
    print_reward_stats("val", st, pairs);
    fprintf(p->log, ", \"val_accuracy\": %.4f, \"val_margin\": %.4f, \"val_loss\": %.6f", st->accuracy, st->margin, st->loss);
}

// the rollouts' mean score, response length, and share that said <|end|>
static void rollout_means(const Rollouts *r, double *score, double *length, double *ended) {
    int B = r->B;
    *score = *length = *ended = 0.0;
    for (int b = 0; b < B; b++) {
        *score += r->scores[b] / B;
        *length += (double)(r->len[b] - r->prompt_len[b]) / B;
        *ended += (double)r->ended[b] / B;
    }
}

// tail[0] and tail[1] gather the means of the score and the KL over the run's last 10 iterations
static void tail_add(const Progress *p, const Config *cfg, int iter, double score, float kl, double tail[2]) {
    int recent = cfg->steps - p->first_step < 10 ? cfg->steps - p->first_step : 10;
    if (iter >= cfg->steps - recent) {
        tail[0] += score / recent;
        tail[1] += kl / recent;
    }
}

// An RLHF iteration's line, on the terminal and in the log; tail as tail_add says.
static void log_rlhf_iteration(Progress *p, const Config *cfg, int iter, const Rollouts *r, const PPOStats *st, float kl,
                               float beta, float entropy, double tail[2]) {
    int B = r->B, U = st->updates;
    double score, length, ended;
    rollout_means(r, &score, &length, &ended);
    double gen_rate = r->sampled / r->gen_seconds, train_rate = (double)cfg->ppo_epochs * B * r->T / st->seconds;
    printf("rlhf iter %3d/%d | score %+.3f | kl %.3f | beta %.4f | pg %+.4f | vf %.4f | clip %.3f | approx_kl %.4f | "
           "entropy %.3f | len %.1f | ended %.2f | gen %.0f tok/s | train %.0f tok/s\n", iter + 1, cfg->steps, score, kl,
           beta, st->policy_loss / U, st->value_loss / U, st->clip_frac / U, st->approx_kl / U, entropy, length, ended,
           gen_rate, train_rate);
    fprintf(p->log, "{\"step\": %d, \"score\": %.6f, \"kl\": %.6f, \"beta\": %.6f, \"policy_loss\": %.6f, \"value_loss\": %.6f, "
            "\"clip_frac\": %.6f, \"approx_kl\": %.6f, \"entropy\": %.6f, \"response_len\": %.3f, \"ended\": %.4f, "
            "\"gen_tokens_per_s\": %.1f, \"train_tokens_per_s\": %.1f}\n", iter + 1, score, kl, beta, st->policy_loss / U,
            st->value_loss / U, st->clip_frac / U, st->approx_kl / U, entropy, length, ended, gen_rate, train_rate);
    fflush(p->log);
    tail_add(p, cfg, iter, score, kl, tail);
}

// A GRPO iteration's line, on the terminal and in the log; tail as for RLHF. flat: the
// share of groups whose answers all scored the same (no advantage, nothing learned).
static void log_grpo_iteration(Progress *p, const Config *cfg, int iter, const Rollouts *r, const PPOStats *st, float kl,
                               float entropy, float flat, double tail[2]) {
    int B = r->B, U = st->updates;
    double score, length, ended;
    rollout_means(r, &score, &length, &ended);
    double gen_rate = r->sampled / r->gen_seconds, train_rate = (double)cfg->ppo_epochs * B * r->T / st->seconds;
    printf("grpo iter %3d/%d | score %+.3f | kl %.3f | loss %+.4f | clip %.3f | approx_kl %.4f | entropy %.3f | "
           "flat groups %.2f | len %.1f | ended %.2f | gen %.0f tok/s | train %.0f tok/s\n", iter + 1, cfg->steps, score, kl,
           st->policy_loss / U, st->clip_frac / U, st->approx_kl / U, entropy, flat, length, ended, gen_rate, train_rate);
    fprintf(p->log, "{\"step\": %d, \"score\": %.6f, \"kl\": %.6f, \"loss\": %.6f, \"clip_frac\": %.6f, "
            "\"approx_kl\": %.6f, \"entropy\": %.6f, \"flat_groups\": %.4f, \"response_len\": %.3f, \"ended\": %.4f, "
            "\"gen_tokens_per_s\": %.1f, \"train_tokens_per_s\": %.1f}\n", iter + 1, score, kl, st->policy_loss / U,
            st->clip_frac / U, st->approx_kl / U, entropy, flat, length, ended, gen_rate, train_rate);
    fflush(p->log);
    tail_add(p, cfg, iter, score, kl, tail);
}

// DPO's figures over some pairs: the loss, how often the implicit rewards rank a pair
// right, their margin, and the log-probabilities of the two responses
static void print_dpo_stats(const char *when, const DPOStats *st) {
    double n = st->pairs > 0 ? st->pairs : 1;
    printf("%s: loss %.4f | ranked right %.3f | margin %+.3f | reward chosen %+.3f rejected %+.3f | "
           "logp chosen %.2f rejected %.2f (%d pairs)\n", when, st->loss / n, st->right / n, st->margin / n,
           st->chosen_reward / n, st->rejected_reward / n, st->chosen_logp / n, st->rejected_logp / n, st->pairs);
}

static void log_dpo_step(Progress *p, const Config *cfg, int step, const DPOStats *st, float lr, float norm) {
    double n = st->pairs;
    printf("dpo step %4d/%d | loss %.4f | ranked right %.3f | margin %+.3f | logp chosen %.2f rejected %.2f | lr %.2e | "
           "norm %6.3f\n", step + 1, cfg->steps, st->loss / n, st->right / n, st->margin / n, st->chosen_logp / n,
           st->rejected_logp / n, lr, norm);
    fprintf(p->log, "{\"step\": %d, \"train_loss\": %.6f, \"train_accuracy\": %.4f, \"margin\": %.6f, "
            "\"reward_chosen\": %.6f, \"reward_rejected\": %.6f, \"logp_chosen\": %.4f, \"logp_rejected\": %.4f, "
            "\"lr\": %.6e, \"grad_norm\": %.6f", step + 1, st->loss / n, st->right / n, st->margin / n,
            st->chosen_reward / n, st->rejected_reward / n, st->chosen_logp / n, st->rejected_logp / n, lr, norm);
}

static void log_dpo_eval(Progress *p, const DPOStats *st) {
    double n = st->pairs > 0 ? st->pairs : 1;
    print_dpo_stats("val", st);
    fprintf(p->log, ", \"val_loss\": %.6f, \"val_accuracy\": %.4f, \"val_margin\": %.6f, \"val_logp_chosen\": %.4f, "
            "\"val_logp_rejected\": %.4f", st->loss / n, st->right / n, st->margin / n, st->chosen_logp / n,
            st->rejected_logp / n);
}

// After an optimizer step: ends its line of the log, and saves the checkpoint
// <out>/<name> every -S steps and after the last step.
static void finish_step(Progress *p, GPT *model, TrainState *state, const Config *cfg, int step, const char *name) {
    fprintf(p->log, "}\n");
    fflush(p->log);
    state->step = step + 1;
    if (save_due(cfg, step + 1)) {
        char path[4096];
        out_path(path, sizeof(path), cfg, name);
        checkpoint_save(path, model, state, 1);
    }
    p->t_step = now_seconds();
}

// the examples or pairs kept from a file, and the counts of the length rule
static void print_chat_data(const char *path, const ChatData *d) {
    printf("data: %s %d %s (%d cut, %d dropped", path, d->count / d->per_record, d->per_record == 2 ? "pairs" : "examples",
           d->cut, d->dropped);
    if (d->conversations) { printf("; %d conversations", d->conversations); }
    if (d->transcripts) { printf("; %d Human:/Assistant: transcripts read as turns", d->transcripts); }
    if (d->systems) { printf("; %d system messages merged into the user turn after them", d->systems); }
    printf(")\n");
    if (d->dropped || d->cut) {
        printf("data: %.1f%% of %s's records dropped and %.1f%% cut to fit %d tokens an example (the context, -t when "
               "pretraining, sets it)\n", 100.0 * d->dropped / d->records, path, 100.0 * d->cut / d->records, d->max_len);
    }
}

// prints a sample continuing `prompt` (or the first tokens of `fallback`)
void print_sample(GPT *model, const Tokenizer *tok, const char *prompt, const int *fallback, int gen_len,
                  float temperature, int top_k, uint64_t *rng) {
    int maxT = model->config.max_seq_len, room = answer_room(maxT, gen_len);
    int *tokens = mallocCheck((size_t)(maxT + (prompt ? (int)strlen(prompt) : 0)) * sizeof(int));
    int n = 4;
    if (prompt) { n = tokenizer_encode(tok, prompt, strlen(prompt), tokens); }
    else { memcpy(tokens, fallback, 4 * sizeof(int)); }
    if (n == 0) { tokens[0] = TOKEN_EOT; n = 1; }
    if (n > maxT - room) { // cut from the left, as answering does: the end of the text is what continues
        int cut = n - (maxT - room);
        printf("sample: the prompt's %d tokens leave no room for %d new ones in the context of %d: its first %d "
               "tokens are left out\n", n, room, maxT, cut);
        memmove(tokens, tokens + cut, (size_t)(n - cut) * sizeof(int));
        n -= cut;
    }
    KVCache kv;
    kvcache_init(&kv, model->config);
    TokenPrinter out = {.tok = tok, .f = stdout};
    TokenSink sink = {token_printer_put, &out};
    printf("---\n");
    for (int i = 0; i < n; i++) { token_printer_put(&out, tokens[i]); }
    int len = gpt_generate(model, &kv, tokens, n, gen_len, temperature, top_k, STOP_AT(TOKEN_END) | STOP_AT(TOKEN_EOT), rng,
                           NULL, &sink);
    token_printer_end(&out);
    int stopped = len > n && is_stop(tokens[len - 1], STOP_AT(TOKEN_END) | STOP_AT(TOKEN_EOT));
    printf("\n---%s\n", stopped ? (tokens[len - 1] == TOKEN_END ? " (stopped at <|end|>)" : " (stopped at <|endoftext|>)") : "");
    kvcache_free(&kv);
    free(tokens);
}

// Curves of a stage's metrics as an SVG picture, which any browser opens: one panel
// per key, each with its own vertical scale, against the step. Reads the JSONL log at
// log_path; a key missing from a line (val_loss between evaluations) is skipped there.
void plot_log(const char *log_path, const char *svg_path, const char *title, const char *const *keys, int nkeys) {
    enum { W = 720, PANEL = 170, TOP = 40, LEFT = 80, RIGHT = 20, GAP = 40 };
    static const char *COLOURS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
    size_t size;
    char *text = read_whole_file(log_path, &size);
    int lines = 0;
    for (size_t i = 0; i < size; i++) { lines += text[i] == '\n'; }
    double *xs = mallocCheck((size_t)(lines + 1) * sizeof(double)), *ys = mallocCheck((size_t)(lines + 1) * sizeof(double));
    Str svg = {0};
    int height = TOP + nkeys * (PANEL + GAP);
    str_addf(&svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
             "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
             "<text x=\"%d\" y=\"24\" font-size=\"16\">%s</text>\n", W, height, LEFT, title);
    for (int k = 0; k < nkeys; k++) {
        // the points of this key, and their ranges
        int n = 0;
        double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
        for (char *line = text; *line;) {
            char *end = strchr(line, '\n');
            if (end) { *end = '\0'; }
            double step, v;
            if (log_number(line, "step", &step) && log_number(line, keys[k], &v) && isfinite(v)) {
                xs[n] = step; ys[n] = v; n++;
                x0 = fmin(x0, step); x1 = fmax(x1, step); y0 = fmin(y0, v); y1 = fmax(y1, v);
            }
            if (!end) { break; }
            *end = '\n';
            line = end + 1;
        }
        int top = TOP + k * (PANEL + GAP), right = W - RIGHT;
        str_addf(&svg, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", LEFT,
                 top, right - LEFT, PANEL);
        str_addf(&svg, "<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>\n", LEFT + 8, top + 16, COLOURS[k % 4], keys[k]);
        if (n == 0) { continue; }
        if (x1 == x0) { x1 = x0 + 1; }
        if (y1 == y0) { y1 = y0 + 1; }
        // axis labels: the ranges of both scales
        str_addf(&svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4g</text>\n", LEFT - 6, top + 12, y1);
        str_addf(&svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4g</text>\n", LEFT - 6, top + PANEL, y0);
        str_addf(&svg, "<text x=\"%d\" y=\"%d\">step %.0f</text>\n", LEFT, top + PANEL + 16, x0);
        str_addf(&svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.0f</text>\n", right, top + PANEL + 16, x1);
        // the curve: (step, value) scaled into the panel, y growing downwards in SVG
        str_addf(&svg, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", COLOURS[k % 4]);
        for (int i = 0; i < n; i++) {
            double px = LEFT + (xs[i] - x0) / (x1 - x0) * (right - LEFT), py = top + (y1 - ys[i]) / (y1 - y0) * PANEL;
            str_addf(&svg, "%.1f,%.1f ", px, py);
        }
        str_addf(&svg, "\"/>\n");
    }
    str_addf(&svg, "</svg>\n");
    FILE *f = fopenCheck(svg_path, "wb");
    fwriteCheck(str_cstr(&svg), 1, svg.len, f);
    fcloseCheck(f);
    str_free(&svg);
    free(xs); free(ys); free(text);
}

// After a stage that trained: its curves, <out>/<stage>.svg, from its log
void plot_stage(const Config *cfg, const char *stage) {
    static const struct { const char *stage, *log, *svg, *title, *keys[3]; } PLOTS[] = {
        {"pretrain", "pretrain.jsonl", "pretrain.svg", "pretraining: loss", {"train_loss", "val_loss", NULL}},
        {"sft", "sft.jsonl", "sft.svg", "SFT: loss on response tokens", {"train_loss", "val_loss", NULL}},
        {"rm", "reward.jsonl", "reward.svg", "reward model: held-out accuracy and margin", {"val_accuracy", "val_margin", "train_loss"}},
        {"rlhf", "rlhf.jsonl", "rlhf.svg", "RLHF: reward-model score and KL to the SFT model", {"score", "kl", "entropy"}},
        {"dpo", "dpo.jsonl", "dpo.svg", "DPO: held-out pairs ranked right, and the responses' log-probabilities",
         {"val_accuracy", "val_logp_chosen", "val_logp_rejected"}},
        {"grpo", "grpo.jsonl", "grpo.svg", "GRPO: reward-model score and KL to the SFT model", {"score", "kl", "entropy"}},
    };
    for (size_t i = 0; i < sizeof(PLOTS) / sizeof(PLOTS[0]); i++) {
        if (strcmp(PLOTS[i].stage, stage) != 0) { continue; }
        char log_path[4096], svg_path[4096];
        out_path(log_path, sizeof(log_path), cfg, PLOTS[i].log);
        out_path(svg_path, sizeof(svg_path), cfg, PLOTS[i].svg);
        int nkeys = PLOTS[i].keys[2] ? 3 : 2;
        plot_log(log_path, svg_path, PLOTS[i].title, PLOTS[i].keys, nkeys);
        printf("curves: %s\n", svg_path);
    }
}

void record_stage(const Config *cfg, const char *stage, const StageResult *res, double seconds) {
    char path[4096], secs[32];
    out_path(path, sizeof(path), cfg, "stages.jsonl");
    snprintf(secs, sizeof(secs), "%.1f", seconds);
    const char *keys[] = {"stage", "trained", "metric", "answers", "prompts", "val", "seconds", "rm_score", "kl"};
    const char *values[] = {stage, res->trained, res->metric, res->answers, res->answers[0] ? cfg->prompts_path : "",
                            cfg->val_path ? cfg->val_path : "", secs, res->rm_score, res->kl};
    Str line = {0};
    json_write_object(&line, keys, values, 9);
    FILE *f = fopenCheck(path, "ab");
    fwriteCheck(str_cstr(&line), 1, line.len, f);
    fcloseCheck(f);
    str_free(&line);
}

static void print_reward_stats(const char *when, const RewardStats *st, int pairs) {
    printf("%s: held-out accuracy %.4f | margin %.3f | loss %.4f | chosen %.3f +- %.3f | rejected %.3f +- %.3f (%d pairs)\n",
           when, st->accuracy, st->margin, st->loss, st->chosen_mean, st->chosen_std, st->rejected_mean, st->rejected_std, pairs);
}

// ----------------------------------------------------------------------------
// Appendix E. bench

// The products of a training step's linear layers, timed alone: for each layer's
// four linear layers (C -> 3C, C -> C, C -> 4C, 4C -> C) and the LM head (C -> V,
// without bias), the forward (out = inp . W^T + b) and both backward products (dinp,
// and dW with db), on B*T rows. One set of operands per shape serves all the layers,
// so they are warm in cache: this is the products' best case, the part of a step that
// the matmul engine sets. test/reference.py times the same products with PyTorch.
// Returns the median seconds of 3 runs.
static double bench_linear_layers(GPTConfig gc, int BT, uint64_t *rng) {
    int C = gc.channels, V = gc.vocab_size;
    int shapes[5][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}, {C, V}}; // (in, out) channels
    int widest = V > 4 * C ? V : 4 * C; // the most output channels of any shape
    size_t max_w = (size_t)C * widest, max_act = (size_t)BT * widest;
    float *w = model_calloc(max_w, sizeof(float)), *dw = model_calloc(max_w, sizeof(float));
    float *bias = model_calloc(4 * (size_t)C, sizeof(float)), *dbias = model_calloc(4 * (size_t)C, sizeof(float));
    float *inp = model_calloc(max_act, sizeof(float)), *dinp = model_calloc(max_act, sizeof(float));
    float *out = model_calloc(max_act, sizeof(float)), *dout = model_calloc(max_act, sizeof(float));
    for (size_t i = 0; i < max_w; i++) { w[i] = 0.02f * (random_f32(rng) - 0.5f); }
    for (size_t i = 0; i < max_act; i++) { inp[i] = random_f32(rng) - 0.5f; dout[i] = 1e-3f * (random_f32(rng) - 0.5f); }
    double runs[3];
    for (int r = 0; r < 3; r++) {
        double t0 = now_seconds();
        for (int s = 0; s < 5; s++) {
            int in = shapes[s][0], oc = shapes[s][1], layers = s < 4 ? gc.num_layers : 1;
            float *b = s < 4 ? bias : NULL, *db = s < 4 ? dbias : NULL;
            for (int l = 0; l < layers; l++) {
                matmul_forward(out, inp, w, b, 1, BT, in, oc);
                matmul_backward(dinp, dw, db, dout, inp, w, 1, BT, in, oc);
            }
        }
        runs[r] = now_seconds() - t0;
    }
    model_free(w); model_free(dw); model_free(bias); model_free(dbias);
    model_free(inp); model_free(dinp); model_free(out); model_free(dout);
    return median(runs, 3);
}

// ./train bench: the speed of a training step (forward, backward, AdamW) on random
// tokens, at the model size given by the flags; of its linear layers' products alone;
// and of one large matmul, the machine's ceiling for this code. FLOPs per step as in
// doc/performance.md.
void command_bench(const Config *cfg) {
    GPTConfig gc = {.max_seq_len = cfg->seq_len, .vocab_size = cfg->vocab_size, .num_layers = cfg->num_layers,
                    .num_heads = cfg->num_heads, .channels = cfg->channels};
    GPT model;
    gpt_build(&model, gc);
    gpt_init(&model, cfg->seed);
    int B = cfg->batch_size, T = cfg->seq_len;
    int *tokens = mallocCheck((size_t)B * (T + 1) * sizeof(int));
    uint64_t rng = rng_stream(cfg->seed, RNG_DATA);
    for (int i = 0; i < B * (T + 1); i++) { tokens[i] = (int)(random_u64(&rng) % (uint64_t)gc.vocab_size); }
    int *inputs = mallocCheck((size_t)B * T * sizeof(int)), *targets = mallocCheck((size_t)B * T * sizeof(int));
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) { inputs[b * T + t] = tokens[b * (T + 1) + t]; targets[b * T + t] = tokens[b * (T + 1) + t + 1]; }
    }
    double n_flop_params = (double)model.num_parameters - (double)model.param_sizes[1]; // all but the position table
    double L = gc.num_layers, C = gc.channels;
    double flops = (6.0 * n_flop_params + 12.0 * L * C * T) * B * T;
    double *times = mallocCheck((size_t)cfg->steps * sizeof(double));
    for (int step = 0; step < cfg->steps; step++) {
        double t0 = now_seconds();
        gpt_zero_grad(&model);
        gpt_forward(&model, inputs, targets, B, T);
        gpt_backward(&model, 1.0f);
        gpt_clip_grad_norm(&model, 1.0f);
        adamw_update(&model, 1e-4f, ADAM_BETA1, ADAM_BETA2, ADAM_EPS, 0.1f, step + 1, 0);
        times[step] = now_seconds() - t0;
        printf("bench step %d: %.0f ms, loss %.4f\n", step + 1, 1e3 * times[step], model.mean_loss);
    }
    // the median of all steps but the first (which allocates and warms up)
    int first = cfg->steps > 1 ? 1 : 0, count = cfg->steps - first;
    double step_s = count > 0 ? median(times + first, count) : 0.0;
    printf("bench train: L=%d C=%d NH=%d V=%d T=%d B=%d, %.2fM parameters | median %.0f ms/step | %.0f tok/s | %.1f GFLOP/s\n",
           gc.num_layers, gc.channels, gc.num_heads, gc.vocab_size, T, B, model.num_parameters / 1e6, 1e3 * step_s,
           B * T / step_s, flops / step_s / 1e9);
    // the linear layers: 6 FLOPs per weight and row (forward, dinp, dW), the head's tied
    // embedding included and the position table not
    double mm_flops = 6.0 * (12.0 * L * C * C + C * (double)gc.vocab_size) * B * T;
    double mm_s = bench_linear_layers(gc, B * T, &rng);
    printf("bench linear layers: the products of one step alone | median %.0f ms | %.1f GFLOP/s | the rest of the step %.0f ms\n",
           1e3 * mm_s, mm_flops / mm_s / 1e9, 1e3 * (step_s - mm_s));
    // generation, the cost of RLHF's rollouts: one token at a time with the KV cache, and
    // without it (a full forward over the sequence so far for every new token)
    int G = T < 128 ? T : 128;
    KVCache kv;
    kvcache_init(&kv, gc);
    double t_gen = now_seconds();
    for (int pos = 0; pos < G; pos++) { gpt_forward_cached(&model, &kv, inputs[pos], pos); }
    t_gen = now_seconds() - t_gen;
    double t_full = now_seconds();
    for (int n = 1; n <= G; n++) { gpt_forward(&model, inputs, NULL, 1, n); }
    t_full = now_seconds() - t_full;
    kvcache_free(&kv);
    printf("bench generate: %d tokens | KV cache %.0f tok/s | without the cache %.0f tok/s (%.1fx)\n", G, G / t_gen, G / t_full,
           t_full / t_gen);
    // the ceiling: one large square matmul through the model's own matmul_forward
    int N = 2048;
    float *a = model_calloc((size_t)N * N, sizeof(float)), *b = model_calloc((size_t)N * N, sizeof(float));
    float *c = model_calloc((size_t)N * N, sizeof(float));
    for (size_t i = 0; i < (size_t)N * N; i++) { a[i] = random_f32(&rng) - 0.5f; b[i] = random_f32(&rng) - 0.5f; }
    double mm[5];
    for (int r = 0; r < 5; r++) {
        double t0 = now_seconds();
        matmul_forward(c, a, b, NULL, 1, N, N, N);
        mm[r] = now_seconds() - t0;
    }
    printf("bench matmul: %dx%dx%d | median %.1f ms | %.1f GFLOP/s\n", N, N, N, 1e3 * median(mm, 5), 2.0 * N * N * N / median(mm, 5) / 1e9);
    model_free(a); model_free(b); model_free(c);
    free(times);
    free(tokens); free(inputs); free(targets);
    gpt_free(&model);
}

// ----------------------------------------------------------------------------
// Appendix F. the command line: flags, usage, the settings table

#if !defined(TESTING) && !defined(TRAIN_NO_MAIN)

// fills in every setting the flags left to the stage; returns 0 for an unknown command
static int config_resolve(Config *c, const char *command) {
    static char init[4096];
    for (size_t i = 0; i < sizeof(STAGE_DEFAULTS) / sizeof(STAGE_DEFAULTS[0]); i++) {
        const StageDefaults *d = &STAGE_DEFAULTS[i];
        if (strcmp(d->command, command) != 0) { continue; }
        // a stage answers the world's held-out prompts when it trains on the world's data
        int world_data = !c->train_path || !d->train;
        if (!c->prompts_path && world_data) { c->prompts_path = d->prompts; }
        if (!c->train_path) { c->train_path = d->train; }
        // rlhf's -j is the world's dev prompts, watched as it trains: only with the world's data
        // other data without -j: pretrain, sft and rm hold out the tail of -i (held_out_tail)
        if (!c->val_path && world_data) { c->val_path = d->val; }
        if (!c->init_path && d->init) { snprintf(init, sizeof(init), "%s/%s", c->out_dir, d->init); c->init_path = init; }
        if (c->batch_size < 0) { c->batch_size = d->batch; }
        if (c->steps < 0) { c->steps = d->steps; }
        if (c->eval_every < 0) { c->eval_every = d->eval_every; }
        if (c->lr < 0) { c->lr = d->lr; }
        if (c->grad_clip < 0) { c->grad_clip = d->clip; }
        if (c->freeze_embeddings < 0) { c->freeze_embeddings = d->freeze; }
        if (c->temperature < 0) { c->temperature = d->temperature; }
        if (c->kl_coef < 0) { c->kl_coef = d->beta; }
        return 1;
    }
    return 0;
}

// The model's shape comes from the checkpoint a command starts from, when there is
// one, and a new model's vocabulary from an existing tokenizer: the settings table
// shows those, and a flag that says otherwise is an error, since neither can change.
// (Pretraining may train on windows shorter than its checkpoint's context.)
static void config_in_force(Config *c, const char *command) {
    static const char *own[][2] = {{"pretrain", "base.bin"}, {"sft", "sft.bin"}, {"rm", "reward.bin"}, {"rlhf", "rlhf.bin"},
                                   {"dpo", "dpo.bin"}, {"grpo", "grpo.bin"}};
    static char path[4096];
    const char *start = c->init_path;
    int pretrain = !strcmp(command, "pretrain");
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        if (!strcmp(command, own[i][0]) && c->resume) { out_path(path, sizeof(path), c, own[i][1]); start = path; }
    }
    GPTConfig m;
    if (!strcmp(command, "bench")) { return; }
    if (start && checkpoint_shape(start, &m)) {
        struct { char flag; int *value, model; const char *what; } shape[] = {
            {'L', &c->num_layers, m.num_layers, "%d layers"}, {'C', &c->channels, m.channels, "%d channels"},
            {'H', &c->num_heads, m.num_heads, "%d heads"}, {'t', &c->seq_len, m.max_seq_len, "a context of %d tokens"},
            {'V', &c->vocab_size, m.vocab_size, "a vocabulary of %d tokens"}};
        for (int i = 0; i < 5; i++) {
            int flag = shape[i].flag, shorter = pretrain && flag == 't' && *shape[i].value < shape[i].model;
            if (c->given[flag] && *shape[i].value != shape[i].model && !shorter) {
                char has[64];
                snprintf(has, sizeof(has), shape[i].what, shape[i].model);
                FAIL("-%c %d, but %s has %s, and a checkpoint keeps the shape it was trained with: drop -%c, or pretrain a "
                     "new model with -%c %d", flag, *shape[i].value, start, has, flag, flag, *shape[i].value);
            }
            if (!(c->given[flag] && shorter)) { *shape[i].value = shape[i].model; }
        }
    } else if (pretrain && !start) { // a new model: its vocabulary is the tokenizer's, if there is one already
        if (c->tokenizer_path) { snprintf(path, sizeof(path), "%s", c->tokenizer_path); }
        else { out_path(path, sizeof(path), c, "tokenizer.bin"); }
        if (access(path, F_OK) == 0) {
            Tokenizer tok;
            tokenizer_load(&tok, path);
            if (c->given['V'] && c->vocab_size != tok.vocab_size) {
                FAIL("-V %d, but %s already has %d tokens and is used as it is: to train a new tokenizer, remove it or use "
                     "another -o; to keep it, drop -V", c->vocab_size, path, tok.vocab_size);
            }
            c->vocab_size = tok.vocab_size;
            tokenizer_free(&tok);
        }
    }
}

static void error_usage(void) {
    Config d = CONFIG_DEFAULTS;
    fprintf(stderr,
        "usage: ./train <command> [flags]\n"
        "commands (each stage reads the previous stage's checkpoint from the output directory):\n"
        "  pretrain   stage 1: train a tokenizer (if needed) and a base model on plain text -> base.bin\n"
        "  sft        stage 2: fine-tune base.bin on prompt/completion JSONL -> sft.bin, then answer the -q prompts\n"
        "  rm         stage 3: train a reward model from sft.bin on chosen/rejected JSONL -> reward.bin\n"
        "  rlhf       stage 4: PPO on sft.bin against reward.bin, on prompts JSONL -> rlhf.bin, then answer -q\n"
        "  dpo        stage 4 another way: DPO on sft.bin from chosen/rejected JSONL, no reward model -> dpo.bin\n"
        "  grpo       stage 4 a third way: GRPO on sft.bin against reward.bin, no critic -> grpo.bin\n"
        "  answer     a language model (-c) answers the prompts of -q -> the file -O names\n"
        "  score      a reward model (-c) scores the pairs of -j: accuracy, margin -> the file -O names\n"
        "  chat       talk with a language model (-c, default <out>/rlhf.bin): one line a turn, /help for commands\n"
        "  sample     continue the text -p with a language-model checkpoint (-c, default <out>/base.bin)\n"
        "  bench      time training steps on random tokens at the size given by -L -C -H -V -t -b\n"
        "  export     a checkpoint (-c) as a Hugging Face folder (-o DIR); --llmc: llm.c's format (doc/interop.md)\n"
        "  import     a Hugging Face GPT-2 folder (-i DIR: one export wrote, or GPT-2 with its vocab.json and merges.txt)\n"
        "             into a checkpoint and tokenizer in -o (doc/interop.md)\n"
        "flags (all optional; 'stage' means the default depends on the command, see README.md):\n"
        "  -i <file>  training data: text (pretrain) or JSONL (the others) (stage: data/world/...)\n"
        "  -j <file>  validation data; rlhf, grpo: prompts answered as they train (stage: data/world/...)\n"
        "  -o <dir>   output directory                                  (%s)\n"
        "  -c <file>  checkpoint to start from                          (stage: <out>/base.bin, <out>/sft.bin)\n"
        "  -q <file>  prompts (JSONL) to answer                         (with the world's data: its test prompts)\n"
        "  -O <file>  the file that answer and score write              (none: they need one)\n"
        "  -z <file>  tokenizer                                         (<out>/tokenizer.bin, trained if missing)\n"
        "  -V <int>   vocabulary size for a new tokenizer               (%d)\n"
        "  -L <int>   layers                                            (%d)\n"
        "  -C <int>   channels                                          (%d)\n"
        "  -H <int>   heads                                             (%d)\n"
        "  -t <int>   context length T                                  (%d)\n"
        "  -b <int>   batch size B (rm, dpo: pairs; rlhf: rollouts;     (stage: 16, 16, 32, 32,\n"
        "             grpo: prompts, each answered -G times)             dpo 16, grpo 8)\n"
        "  -a <int>   gradient accumulation micro-batches               (%d)\n"
        "  -n <int>   optimizer steps (rlhf, grpo: iterations)          (stage: 1200, 300, 1500, 50,\n"
        "                                                                dpo 300, grpo 50)\n"
        "  -l <float> peak learning rate                                (stage: 3e-3, 1e-3, 3e-4, 1e-4,\n"
        "                                                                dpo 1e-4, grpo 1e-4)\n"
        "  -w <int>   warmup steps                                      (%d)\n"
        "  -f <float> final learning rate / peak                        (%g)\n"
        "  -d <float> weight decay                                      (%g)\n"
        "  -g <float> gradient norm clip, 0 = off                       (stage: 1, 1, 0.3, 1; dpo, grpo 1)\n"
        "  -F <0|1>   keep the merges' rows of the token embedding     (stage: 0, 1, 0, 1; dpo, grpo 1)\n"
        "  -e <int>   steps between validation passes (rlhf, grpo:      (stage: 100, 25, 150, 10;\n"
        "             iterations between answering -j)                  dpo 50, grpo 10)\n"
        "  -x <int>   batches per validation loss (pretrain)            (%d)\n"
        "  -y <int>   steps between samples, 0 = at the end             (%d)\n"
        "  -S <int>   steps between checkpoints, 0 = at the end         (%d)\n"
        "  -p <text>  prompt for samples                                (start of the val text)\n"
        "  -r <float> temperature, 0 = greedy                           (stage: samples 0.8, answers 0)\n"
        "  -k <int>   top-k, 0 = all tokens                             (%d)\n"
        "  -m <int>   tokens to generate (rlhf: longest response)       (%d)\n"
        "  -s <int>   seed                                              (%llu)\n"
        "  --resume   continue the stage from its own last checkpoint in -o, with its optimizer,\n"
        "             data order and RNG state (save often with -S): the same steps as one whole run\n"
        "rlhf, and where said dpo and grpo:\n"
        "  -R <file>  the frozen reward model (grpo too)                (<out>/reward.bin)\n"
        "  -B <float> beta: the weight of the KL penalty to the SFT model (rlhf 1, grpo 0.5);\n"
        "             dpo: the scale of the implicit reward              (dpo 0.5)\n"
        "  -K <float> target KL per response, adapts beta; 0 = fixed     (%g)\n"
        "  -Z <int>   horizon of the adaptive KL controller, rollouts   (%d)\n"
        "  -E <int>   epochs over each batch of rollouts (grpo too)     (%d)\n"
        "  -M <int>   rollouts per minibatch (grpo too)                 (%d)\n"
        "  -P <float> penalty for a response without <|end|> (grpo too) (%g)\n"
        "  -X <float> clip reward-model scores to [-X, X], 0 = off (grpo too) (%g)\n"
        "  -U <float> clip range of the probability ratio (grpo too)    (%g)\n"
        "  -G <int>   grpo: answers per prompt, the group               (%d)\n"
        "  -D <float> dpo: label smoothing, the chance a label is wrong (%g)\n",
        d.out_dir, d.vocab_size, d.num_layers, d.channels, d.num_heads, d.seq_len, d.grad_accum,
        d.warmup, d.final_lr_frac, d.weight_decay, d.eval_batches, d.sample_every,
        d.save_every, d.top_k, d.gen_len, (unsigned long long)d.seed, d.kl_target, d.kl_horizon, d.ppo_epochs, d.minibatch,
        d.end_penalty, d.reward_clip, d.clip_range, d.group_size, d.label_smoothing);
    exit(EXIT_FAILURE);
}

// a flag's integer or float value, or an error naming the flag
static long flag_int(const char *flag, const char *val, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(val, &end, 10);
    if (end == val || *end != '\0' || errno) { FAIL("flag %s: '%s' is not an integer", flag, val); }
    if (x < lo || x > hi) { FAIL("flag %s: %ld is out of range [%ld, %ld]", flag, x, lo, hi); }
    return x;
}

static float flag_float(const char *flag, const char *val, double lo, double hi) {
    char *end;
    double x = strtod(val, &end);
    if (end == val || *end != '\0' || x != x) { FAIL("flag %s: '%s' is not a number", flag, val); }
    if (x < lo || x > hi) { FAIL("flag %s: %g is out of range [%g, %g]", flag, x, lo, hi); }
    return (float)x;
}

static void parse_flags(Config *c, int argc, char **argv) {
    for (int i = 2; i < argc; i += 2) {
        const char *flag = argv[i];
        if (!strcmp(flag, "--resume")) { c->resume = 1; i--; continue; } // the flags without a value
        if (!strcmp(flag, "--keep-transcripts")) { c->keep_transcripts = 1; i--; continue; }
        if (!strcmp(flag, "--llmc")) { c->llmc = 1; i--; continue; }
        if (flag[0] != '-' || strlen(flag) != 2) { fprintf(stderr, "unknown argument '%s'\n", flag); error_usage(); }
        if (i + 1 >= argc) { fprintf(stderr, "flag %s needs a value\n", flag); error_usage(); }
        const char *v = argv[i + 1];
        c->given[(unsigned char)flag[1] & 127] = 1;
        switch (flag[1]) {
        case 'i': c->train_path = v; break;
        case 'j': c->val_path = v; break;
        case 'o': c->out_dir = v; break;
        case 'c': c->init_path = v; break;
        case 'q': c->prompts_path = v; break;
        case 'z': c->tokenizer_path = v; break;
        case 'O': c->output_path = v; break;
        case 'V': c->vocab_size = (int)flag_int(flag, v, FIRST_MERGE, 1 << 20); break;
        case 'L': c->num_layers = (int)flag_int(flag, v, 1, 1024); break;
        case 'C': c->channels = (int)flag_int(flag, v, 1, 1 << 16); break;
        case 'H': c->num_heads = (int)flag_int(flag, v, 1, 1024); break;
        case 't': c->seq_len = (int)flag_int(flag, v, 1, 1 << 16); break;
        case 'b': c->batch_size = (int)flag_int(flag, v, 1, 1 << 16); break;
        case 'a': c->grad_accum = (int)flag_int(flag, v, 1, 1 << 16); break;
        case 'n': c->steps = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 'l': c->lr = flag_float(flag, v, 0, 10); break;
        case 'w': c->warmup = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 'f': c->final_lr_frac = flag_float(flag, v, 0, 1); break;
        case 'd': c->weight_decay = flag_float(flag, v, 0, 10); break;
        case 'g': c->grad_clip = flag_float(flag, v, 0, 1e9); break;
        case 'F': c->freeze_embeddings = (int)flag_int(flag, v, 0, 1); break;
        case 'e': c->eval_every = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 'x': c->eval_batches = (int)flag_int(flag, v, 1, 1 << 20); break;
        case 'y': c->sample_every = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 'S': c->save_every = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 'p': c->prompt = v; break;
        case 'r': c->temperature = flag_float(flag, v, 0, 100); break;
        case 'k': c->top_k = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 'm': c->gen_len = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 's': c->seed = (uint64_t)flag_int(flag, v, 0, 0x7fffffffL); break;
        case 'R': c->reward_path = v; break;
        case 'B': c->kl_coef = flag_float(flag, v, 0, 100); break;
        case 'K': c->kl_target = flag_float(flag, v, 0, 1e6); break;
        case 'Z': c->kl_horizon = (int)flag_int(flag, v, 1, 1 << 30); break;
        case 'E': c->ppo_epochs = (int)flag_int(flag, v, 1, 1 << 10); break;
        case 'M': c->minibatch = (int)flag_int(flag, v, 1, 1 << 16); break;
        case 'P': c->end_penalty = flag_float(flag, v, 0, 1e6); break;
        case 'X': c->reward_clip = flag_float(flag, v, 0, 1e6); break;
        case 'U': c->clip_range = flag_float(flag, v, 0, 1); break;
        case 'G': c->group_size = (int)flag_int(flag, v, 1, 1 << 10); break;
        case 'D': c->label_smoothing = flag_float(flag, v, 0, 0.5); break;
        default: fprintf(stderr, "unknown flag %s\n", flag); error_usage();
        }
    }
    if (c->channels % c->num_heads != 0) { FAIL("-C %d must be divisible by -H %d", c->channels, c->num_heads); }
}

// one row of the startup table: a name and a printf-formatted value
static void config_row(const char *name, const char *fmt, ...) {
    char value[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    printf("| %-14s | %-40s |\n", name, value);
}

static void print_config(const char *command, const Config *c) {
    const char *rule = "+----------------+------------------------------------------+\n";
    printf("%s", rule);
    config_row("command", "%s", command);
    config_row("train data", "%s", c->train_path ? c->train_path : "-");
    int holds_out = !strcmp(command, "pretrain") || !strcmp(command, "sft") || !strcmp(command, "rm") || !strcmp(command, "dpo");
    config_row("val data", "%s", c->val_path ? c->val_path : holds_out ? "the last tenth of the train data" : "-");
    config_row("output", "%s/", c->out_dir);
    config_row("start from", "%s", c->init_path ? c->init_path : "random init (GPT-2)");
    config_row("model", "L=%d C=%d NH=%d T=%d V=%d", c->num_layers, c->channels, c->num_heads, c->seq_len, c->vocab_size);
    config_row("batch", "B=%d x accum %d, %d steps", c->batch_size, c->grad_accum, c->steps);
    config_row("learning rate", "%.1e, warmup %d, final x%.2f", c->lr, c->warmup, c->final_lr_frac);
    config_row("regularization", "weight decay %.2f, clip %.2f", c->weight_decay, c->grad_clip);
    if (c->freeze_embeddings) { config_row("token embedding", "merges' rows frozen; bytes, specials train"); }
    if (!strcmp(command, "rlhf")) {
        config_row("reward model", "%s", c->reward_path ? c->reward_path : "<out>/reward.bin");
        config_row("KL penalty", "beta %g%s", c->kl_coef, c->kl_target > 0 ? ", adaptive" : ", fixed");
        if (c->kl_target > 0) { config_row("KL target", "%g per response, horizon %d", c->kl_target, c->kl_horizon); }
        config_row("PPO", "%d epochs, minibatch %d, clip %.2f", c->ppo_epochs, c->minibatch, c->clip_range);
        config_row("responses", "up to %d tokens, penalty %g if no <|end|>", c->gen_len, c->end_penalty);
    }
    if (!strcmp(command, "grpo")) {
        config_row("reward model", "%s", c->reward_path ? c->reward_path : "<out>/reward.bin");
        config_row("group", "%d answers per prompt, %d prompts a batch", c->group_size, c->batch_size);
        config_row("KL penalty", "beta %g (k3 estimate, in the loss)", c->kl_coef);
        config_row("updates", "%d epochs, minibatch %d, clip %.2f", c->ppo_epochs, c->minibatch, c->clip_range);
        config_row("responses", "up to %d tokens, penalty %g if no <|end|>", c->gen_len, c->end_penalty);
    }
    if (!strcmp(command, "dpo")) {
        config_row("DPO", "beta %g, label smoothing %g", c->kl_coef, c->label_smoothing);
    }
    config_row("seed", "%llu", (unsigned long long)c->seed);
    if (c->resume) { config_row("resume", "from the stage's own checkpoint in %s/", c->out_dir); }
    config_row("device", "%s", device_name());
    printf("%s", rule);
}

#endif

// ----------------------------------------------------------------------------
// Appendix G. utilities: checked libc calls, RNG, timer

#ifdef FUZZING
#include <setjmp.h>
// The fuzz targets (test/fuzz/) point this at their own jmp_buf: an input rejected with
// a message is a success for them, so fail() returns there instead of ending the process.
static jmp_buf *fuzz_on_error = NULL;
#endif

// Each wrapper has the signature of the call it wraps, and on failure names the
// file and line of the caller, what went wrong, and what to try.
static void fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error (%s:%d): ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
#ifdef FUZZING
    if (fuzz_on_error) { longjmp(*fuzz_on_error, 1); }
#endif
    exit(EXIT_FAILURE);
}

static FILE *fopen_check(const char *path, const char *mode, const char *file, int line) {
    FILE *f = fopen(path, mode);
    if (f == NULL) {
        fail(file, line, "cannot open %s for %s (%s). Check the path, or the flag that names it.", path,
             mode[0] == 'r' ? "reading" : "writing", strerror(errno));
    }
    return f;
}

static void fread_check(void *ptr, size_t size, size_t nmemb, FILE *f, const char *file, int line) {
    size_t got = fread(ptr, size, nmemb, f);
    if (got != nmemb) {
        fail(file, line, "file ended early or could not be read (read %zu of %zu items): the file is truncated or "
             "not of this format; regenerate it", got, nmemb);
    }
}

static void fwrite_check(const void *ptr, size_t size, size_t nmemb, FILE *f, const char *file, int line) {
    if (fwrite(ptr, size, nmemb, f) != nmemb) { fail(file, line, "write failed (%s): is the disk full?", strerror(errno)); }
}

static void fclose_check(FILE *f, const char *file, int line) {
    if (fclose(f) != 0) { fail(file, line, "closing a file failed (%s): is the disk full?", strerror(errno)); }
}

static void *malloc_check(size_t size, const char *file, int line) {
    void *p = malloc(size);
    if (p == NULL && size > 0) {
        fail(file, line, "out of memory allocating %.1f MB: try a smaller batch (-b), context (-t) or model", size / 1e6);
    }
    return p;
}

static void *calloc_check(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n, size);
    if (p == NULL && n > 0 && size > 0) {
        fail(file, line, "out of memory allocating %.1f MB: try a smaller batch (-b), context (-t) or model", n * size / 1e6);
    }
    return p;
}

// The same, aligned to a cache line, for the arrays that the layers read as vectors.
// malloc aligns to 16 bytes only: a large block then starts 16 bytes into a page,
// and every 64-byte vector load (AVX-512) straddles two cache lines.
#define CACHE_LINE 64
static void *calloc_aligned_check(size_t n, size_t size, const char *file, int line) {
    if (n == 0 || size == 0) { return NULL; }
    size_t bytes = n * size;
    void *mem = NULL;
    if (bytes / n != size || posix_memalign(&mem, CACHE_LINE, bytes) != 0) {
        fail(file, line, "out of memory allocating %.1f MB: try a smaller batch (-b), context (-t) or model", (double)n * size / 1e6);
    }
    memset(mem, 0, bytes);
    return mem;
}

// xorshift64*: the one RNG of the file. Streams for init, data order and sampling
// are derived from one seed, so turning on sampling never changes the initial weights.
static uint64_t random_u64(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1DULL;
}

static uint64_t rng_stream(uint64_t seed, uint64_t purpose) {
    uint64_t state = (seed + 1) * 0x9E3779B97F4A7C15ULL ^ (purpose + 1) * 0xD1B54A32D192ED03ULL;
    if (state == 0) { state = 1; }
    for (int i = 0; i < 4; i++) { random_u64(&state); }
    return state;
}

// uniform in [0, 1), from the top 24 bits (exactly representable as a float)
static float random_f32(uint64_t *state) { return (float)(random_u64(state) >> 40) / 16777216.0f; }

// standard normal by Box-Muller, computed in double for the same bits everywhere
static double random_normal(uint64_t *state) {
    double u1 = ((double)(random_u64(state) >> 11) + 1.0) / 9007199254740993.0; // (0, 1]
    double u2 = (double)(random_u64(state) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// x = 0, 1, ..., n-1 in a random order (Fisher-Yates)
static void shuffle(int *x, int n, uint64_t *rng) {
    for (int i = 0; i < n; i++) { x[i] = i; }
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(random_u64(rng) % (uint64_t)(i + 1)), tmp = x[i];
        x[i] = x[j];
        x[j] = tmp;
    }
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// the median of n values (sorts them)
static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof(double), compare_doubles);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

// ----------------------------------------------------------------------------
// Appendix H. other programs' formats: Hugging Face transformers and llm.c
//
// ./train export writes a checkpoint as a folder that transformers loads with no code of
// ours (doc/interop.md): model.safetensors, config.json, generation_config.json,
// tokenizer.json and tokenizer_config.json; with --llmc, llm.c's fp32 checkpoint.
// ./train import reads such a folder back into a checkpoint.

// Hugging Face's GPT-2 (GPT2LMHeadModel, GPT2ForSequenceClassification) holds the same
// tensors under other names, one tensor per layer, and its linear layers (Conv1D)
// store their weights (in, out), the transpose of ours. The LM head is tied to wte and
// not stored. Its classification head has no bias: export folds ours into the final
// layernorm's bias, and keeps the exact tensors under train_c.* names, which
// transformers ignores and import prefers.
typedef struct { const char *name; int per_layer, transposed, in_mult; } HFTensor;
static const HFTensor HF_TENSORS[NUM_PARAMETER_TENSORS] = {
    {"transformer.wte.weight", 0, 0, 0}, {"transformer.wpe.weight", 0, 0, 0},
    {"transformer.h.%d.ln_1.weight", 1, 0, 0}, {"transformer.h.%d.ln_1.bias", 1, 0, 0},
    {"transformer.h.%d.attn.c_attn.weight", 1, 1, 1}, {"transformer.h.%d.attn.c_attn.bias", 1, 0, 0},
    {"transformer.h.%d.attn.c_proj.weight", 1, 1, 1}, {"transformer.h.%d.attn.c_proj.bias", 1, 0, 0},
    {"transformer.h.%d.ln_2.weight", 1, 0, 0}, {"transformer.h.%d.ln_2.bias", 1, 0, 0},
    {"transformer.h.%d.mlp.c_fc.weight", 1, 1, 1}, {"transformer.h.%d.mlp.c_fc.bias", 1, 0, 0},
    {"transformer.h.%d.mlp.c_proj.weight", 1, 1, 4}, {"transformer.h.%d.mlp.c_proj.bias", 1, 0, 0},
    {"transformer.ln_f.weight", 0, 0, 0}, {"transformer.ln_f.bias", 0, 0, 0},
    {"score.weight", 0, 0, 0}, {"train_c.score.bias", 0, 0, 0},
};
#define HF_EXACT_LNF_BIAS "train_c.ln_f.bias" // a reward model's ln_f.bias before the fold

// One tensor of the safetensors file: its name, shape and where its floats come from
// (rows x cols of ours, read transposed if asked).
typedef struct {
    char name[96];
    int ndim, shape[2];
    const float *data;
    int rows, cols, transposed;
} SafeTensor;

// the safetensors tensors of a model, in order: ours, by layer, then the exact ones
static int hf_tensors(const GPT *model, SafeTensor *out, const float *lnfb_folded) {
    GPTConfig c = model->config;
    int L = c.num_layers, C = c.channels, n = 0;
    const float *p = model->params_memory;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        const HFTensor *h = &HF_TENSORS[t];
        size_t size = model->param_sizes[t];
        if (size == 0) { p += size; continue; }
        int layers = h->per_layer ? L : 1;
        size_t each = size / layers;
        for (int l = 0; l < layers; l++) {
            SafeTensor *s = &out[n++];
            snprintf(s->name, sizeof(s->name), h->name, l);
            s->data = p + l * each;
            s->transposed = h->transposed;
            if (h->transposed) { s->cols = C * h->in_mult; s->rows = (int)(each / s->cols); }
            else if (t <= 1) { s->rows = (int)(each / C); s->cols = C; }
            else { s->rows = 1; s->cols = (int)each; }
            // the shape in the file: (in, out) for a transposed weight; (1, C) for the score
            if (h->transposed) { s->ndim = 2; s->shape[0] = s->cols; s->shape[1] = s->rows; }
            else if (t <= 1 || t == 16) { s->ndim = 2; s->shape[0] = t == 16 ? 1 : s->rows; s->shape[1] = s->cols; }
            else { s->ndim = 1; s->shape[0] = s->cols; }
            if (t == 15 && lnfb_folded) { s->data = lnfb_folded; }
        }
        p += size;
    }
    if (lnfb_folded) { // the exact final-layernorm bias, beside the folded one
        SafeTensor *s = &out[n++];
        snprintf(s->name, sizeof(s->name), "%s", HF_EXACT_LNF_BIAS);
        s->data = model->params.lnfb;
        s->ndim = 1; s->shape[0] = s->cols = C; s->rows = 1; s->transposed = 0;
    }
    return n;
}

// Writes n bytes to path through path.tmp and a rename (appendix C), so that a stop leaves no half file.
static void write_file_atomic(const char *path, const void *data, size_t n) {
    FILE *f = file_begin(path);
    fwriteCheck(data, 1, n, f);
    fcloseCheck(f);
    file_commit(path);
}

// safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the tensors' bytes, little-endian, back to back.
// Ref: https://github.com/huggingface/safetensors (the format's README)
static void safetensors_write(const char *path, const SafeTensor *t, int n, const char *metadata_json) {
    Str h = {0};
    size_t offset = 0;
    str_add(&h, "{\"__metadata__\": ", 17);
    str_add(&h, metadata_json, strlen(metadata_json));
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)t[i].rows * t[i].cols * sizeof(float);
        if (t[i].ndim == 2) {
            str_addf(&h, ", \"%s\": {\"dtype\": \"F32\", \"shape\": [%d, %d], \"data_offsets\": [%zu, %zu]}", t[i].name,
                     t[i].shape[0], t[i].shape[1], offset, offset + bytes);
        } else {
            str_addf(&h, ", \"%s\": {\"dtype\": \"F32\", \"shape\": [%d], \"data_offsets\": [%zu, %zu]}", t[i].name,
                     t[i].shape[0], offset, offset + bytes);
        }
        offset += bytes;
    }
    str_add(&h, "}", 1);
    while (h.len % 8) { str_add(&h, " ", 1); } // the tensors start 8-byte aligned
    FILE *f = file_begin(path);
    uint64_t hlen = h.len;
    fwriteCheck(&hlen, sizeof(hlen), 1, f); // little-endian: the machines this runs on are
    fwriteCheck(h.s, 1, h.len, f);
    for (int i = 0; i < n; i++) {
        if (!t[i].transposed) { fwriteCheck(t[i].data, sizeof(float), (size_t)t[i].rows * t[i].cols, f); continue; }
        float *col = mallocCheck((size_t)t[i].rows * sizeof(float));
        for (int c = 0; c < t[i].cols; c++) { // row c of the file is column c of ours
            for (int r = 0; r < t[i].rows; r++) { col[r] = t[i].data[(size_t)r * t[i].cols + c]; }
            fwriteCheck(col, sizeof(float), (size_t)t[i].rows, f);
        }
        free(col);
    }
    fcloseCheck(f);
    file_commit(path);
    str_free(&h);
}

// GPT-2's byte-to-character map, which tokenizer.json's byte-level BPE uses to write
// bytes as text: the printable bytes stand for themselves, the others (controls, space,
// 0x7f-0xa0, 0xad) for the characters from U+0100 on, in order
static int byte_printable(int b) { return (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff); }
enum { PRINTABLE_BYTES = 188 }; // how many bytes byte_printable keeps
static unsigned byte_char(int b) {
    if (byte_printable(b)) { return (unsigned)b; }
    int n = 0;
    for (int x = 0; x < b; x++) { n += !byte_printable(x); }
    return 256u + (unsigned)n;
}

// the byte that a character of byte_char's stands for; -1 if it stands for none
static int char_byte(unsigned cp) {
    if (cp < 256) { return byte_printable((int)cp) ? (int)cp : -1; }
    for (int b = 0, n = 0; b < 256; b++) {
        if (!byte_printable(b) && 256u + (unsigned)n++ == cp) { return b; }
    }
    return -1;
}

// a token's bytes as tokenizer.json writes them (byte_char of each byte, in UTF-8)
static void token_text(Str *out, const Tokenizer *tok, int id) {
    str_clear(out);
    for (int i = 0; i < tok->lengths[id]; i++) { utf8_put(out, byte_char(tok->bytes[id][i])); }
}

// The id that a transformers folder gives our token `id`. With our tokenizer it is the
// same. GPT-2 numbers its tokens otherwise: the 256 bytes in the order of their
// characters (the 188 printable bytes first, then the others), its merges, then
// <|endoftext|>; our chat tokens follow as new ones: <|user|>, <|assistant|>, <|end|>.
static int hf_id(const Tokenizer *tok, int id) {
    if (tok->split != SPLIT_GPT2) { return id; }
    if (id >= FIRST_MERGE) { return id - NUM_SPECIAL; }
    if (id >= TOKEN_EOT) { return 256 + tok->num_merges + (id - TOKEN_EOT); }
    int n = 0;
    for (int x = 0; x < id; x++) { n += byte_printable(x) == byte_printable(id); }
    return byte_printable(id) ? n : PRINTABLE_BYTES + n;
}

// wte with its rows in the order of hf_id (caller frees), or NULL where that is ours
static float *hf_wte(const GPT *model, const Tokenizer *tok) {
    if (tok->split != SPLIT_GPT2) { return NULL; }
    size_t C = (size_t)model->config.channels;
    float *rows = mallocCheck(model->param_sizes[0] * sizeof(float));
    for (int id = 0; id < model->config.vocab_size; id++) { memcpy(rows + (size_t)hf_id(tok, id) * C, model->params.wte + (size_t)id * C, C * sizeof(float)); }
    return rows;
}

// Reads a token's text in vocab.json or merges.txt (len bytes of UTF-8) into the bytes
// it stands for (char_byte of each character). Returns NULL, or what was wrong.
static const char *parse_token_text(const char *text, size_t len, Str *out) {
    str_clear(out);
    if (len == 0) { return "an empty token"; }
    for (const unsigned char *s = (const unsigned char *)text, *end = s + len; s < end;) {
        int n = utf8_length(s), b = n == 0 || s + n > end ? -1 : char_byte(utf8_decode(s, n));
        if (b < 0) { return "a character that stands for no byte"; }
        char c = (char)b;
        str_add(out, &c, 1);
        s += n;
    }
    return NULL;
}

// the slot of some bytes in a PairMap, keyed by their 64-bit hash in two halves
static int64_t *bytes_slot(PairMap *m, const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; // FNV-1a
    for (size_t i = 0; i < n; i++) { h = (h ^ (unsigned char)s[i]) * 1099511628211ULL; }
    return pairmap_at(m, (int)(h >> 32), (int)(uint32_t)h);
}

// GPT-2's own tokenizer from the vocab.json and merges.txt of a Hugging Face folder, in
// our layout (bytes, our special tokens, merge r as token FIRST_MERGE + r) with GPT-2's
// chunks. It must be numbered as GPT-2's is (see hf_id); anything else is refused.
static void gpt2_tokenizer_read(Tokenizer *tok, const char *dir) {
    char vpath[4096], mpath[4096];
    dir_path(vpath, sizeof(vpath), dir, "vocab.json");
    dir_path(mpath, sizeof(mpath), dir, "merges.txt");
    if (access(vpath, R_OK) != 0 || access(mpath, R_OK) != 0) {
        FAIL("%s: no tokenizer.bin (which ./train export writes) and no GPT-2 tokenizer (vocab.json and merges.txt): %s is "
             "missing. A folder saved again by transformers keeps only tokenizer.json, which import does not read: pass the "
             "export's tokenizer.bin with -z", dir, access(vpath, R_OK) != 0 ? vpath : mpath);
    }
    size_t size;
    char *vocab = read_whole_file(vpath, &size), *merges = read_whole_file(mpath, &size);
    // vocab.json: {"token text": id, ...}, after an optional byte-order mark; keep each id's bytes
    int count = 0, cap = 1024;
    Str *bytes = callocCheck((size_t)cap, sizeof(Str)), key = {0};
    const char *p = skip_ws(vocab + (strncmp(vocab, "\xEF\xBB\xBF", 3) ? 0 : 3)), *err = NULL;
    if (*p != '{') { err = "expected an object"; }
    else { p = skip_ws(p + 1); }
    while (!err && *p != '}') {
        str_clear(&key);
        if ((err = json_parse_string(&p, &key)) != NULL) { break; }
        p = skip_ws(p);
        char *end;
        long id = *p == ':' ? strtol(p + 1, &end, 10) : -1;
        if (id < 0 || id >= (1 << 20) || end == p + 1) { err = "expected \"token\": id"; break; }
        for (; id >= cap; cap *= 2) { // grow, zeroing the new entries
            bytes = realloc(bytes, (size_t)cap * 2 * sizeof(Str));
            if (bytes == NULL) { FAIL("out of memory reading %s", vpath); }
            memset(bytes + cap, 0, (size_t)cap * sizeof(Str));
        }
        if (bytes[id].s) { err = "an id given twice"; break; }
        if ((err = parse_token_text(key.s, key.len, &bytes[id])) != NULL) { break; }
        if (id >= count) { count = (int)id + 1; }
        p = skip_ws(end);
        if (*p == ',' && *skip_ws(p + 1) != '}') { p = skip_ws(p + 1); }
        else if (*p != '}') { err = "expected ',' and a token, or '}'"; }
    }
    if (!err && *skip_ws(p + 1) != '\0') { err = "text after the object"; p++; }
    if (err) { FAIL("%s: %s near \"%.20s\"", vpath, err, p); }
    if (count < 257) { FAIL("%s has %d ids: GPT-2's vocabulary has the 256 bytes, merges and <|endoftext|>", vpath, count); }
    // GPT-2's numbering: the bytes in hf_id's order, then merges, then <|endoftext|> last
    int num_merges = count - 257;
    tok->split = SPLIT_GPT2;
    tok->num_merges = num_merges;
    for (int id = 0; id < count; id++) {
        int want = id < 256 ? 1 : id < count - 1 ? 0 : -1;
        if (bytes[id].s == NULL) { FAIL("%s: no token has id %d: not a GPT-2 vocabulary", vpath, id); }
        if (want < 0 && (bytes[id].len != 13 || memcmp(bytes[id].s, "<|endoftext|>", 13) != 0)) {
            FAIL("%s: its last id, %d, is not <|endoftext|>, as GPT-2's is: not a GPT-2 vocabulary", vpath, id);
        }
        if (want > 0 && (bytes[id].len != 1 || hf_id(tok, (unsigned char)bytes[id].s[0]) != id)) {
            FAIL("%s: id %d is not the byte GPT-2 gives that id: not GPT-2's byte order", vpath, id);
        }
    }
    // merges.txt: "#version" first, then "left right" per line in rank order; merge r makes GPT-2's token 256 + r
    PairMap ids; // bytes -> 1 + GPT-2 id (0: none)
    pairmap_init(&ids, 1 << 17);
    for (int id = 0; id < count - 1; id++) { *bytes_slot(&ids, bytes[id].s, bytes[id].len) = id + 1; }
    tok->merges = mallocCheck((size_t)(num_merges > 0 ? num_merges : 1) * sizeof(int[2]));
    Str left = {0}, right = {0};
    char *line = merges + (strncmp(merges, "\xEF\xBB\xBF", 3) ? 0 : 3), *next;
    int r = 0, lineno = 0;
    for (; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) { *next++ = '\0'; }
        lineno++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') { line[--len] = '\0'; } // Windows line ends
        if (len == 0 || !strncmp(line, "#version", 8)) { continue; }
        char *space = strchr(line, ' ');
        if (r == num_merges) { FAIL("%s:%d: more merges than vocab.json has tokens for", mpath, lineno); }
        if (!space || parse_token_text(line, (size_t)(space - line), &left) ||
            parse_token_text(space + 1, strlen(space + 1), &right)) {
            FAIL("%s:%d: not two tokens of GPT-2's byte characters, separated by one space", mpath, lineno);
        }
        int *pair = tok->merges[r];
        for (int side = 0; side < 2; side++) {
            Str *b = side ? &right : &left;
            int64_t g = *bytes_slot(&ids, b->s, b->len) - 1;
            if (g < 0 || g >= 256 + r || bytes[g].len != b->len || memcmp(bytes[g].s, b->s, b->len)) {
                FAIL("%s:%d: merge %d's %s part is not a token made before it", mpath, lineno, r, side ? "right" : "left");
            }
            pair[side] = g < 256 ? (unsigned char)bytes[g].s[0] : (int)g + NUM_SPECIAL; // our id of GPT-2's token g
        }
        Str *made = &bytes[256 + r];
        if (made->len != left.len + right.len || memcmp(made->s, left.s, left.len) || memcmp(made->s + left.len, right.s, right.len)) {
            FAIL("%s:%d: merge %d does not make token %d of %s: not GPT-2's numbering", mpath, lineno, r, 256 + r, vpath);
        }
        r++;
    }
    if (r != num_merges) { FAIL("%s has %d merges, %s %d tokens: they are not one tokenizer", mpath, r, vpath, count); }
    tokenizer_index(tok);
    for (int id = 0; id < count; id++) { str_free(&bytes[id]); }
    free(bytes);
    str_free(&key);
    str_free(&left);
    str_free(&right);
    pairmap_free(&ids);
    free(vocab);
    free(merges);
}

// The chunking of chunk_length (section 6) as the regular expression of a Split
// pre-tokenizer (as written in JSON: backslashes doubled): a letter run (ASCII letters
// and every non-ASCII character), a digit run, or a run of other symbols, each with an
// optional leading space; else whitespace: a run that ends in a whitespace other than
// space, a run that leaves its last space to the word after it, or the text's last run.
static const char *CHUNK_REGEX =
    " ?[A-Za-z\\\\x{80}-\\\\x{10FFFF}]+| ?[0-9]+| ?[^A-Za-z0-9 \\\\t\\\\n\\\\r\\\\x0b\\\\f\\\\x{80}-\\\\x{10FFFF}]+"
    "|[ \\\\t\\\\n\\\\r\\\\x0b\\\\f]*[\\\\t\\\\n\\\\r\\\\x0b\\\\f](?![ \\\\t\\\\n\\\\r\\\\x0b\\\\f])"
    "|[ \\\\t\\\\n\\\\r\\\\x0b\\\\f]+(?= [^ \\\\t\\\\n\\\\r\\\\x0b\\\\f])|[ \\\\t\\\\n\\\\r\\\\x0b\\\\f]+\\\\z";

// tokenizer.json for the `tokenizers` library: byte-level BPE with our merges in rank
// order, the four special tokens, both as added tokens and in the vocabulary
// (tokenizers numbers an added token missing from the vocabulary after it), ids as
// hf_id gives them, and the chunks of the tokenizer's rule: ours as a Split regex, or
// GPT-2's, which is the ByteLevel pre-tokenizer's own. Returns the number of merges whose
// bytes repeat an earlier token's: tokenizers keys its vocabulary by text, so such a
// token cannot keep its own id there (export says so).
static int tokenizer_json(Str *j, const Tokenizer *tok) {
    Str a = {0}, b = {0};
    int repeats = 0, gpt2 = tok->split == SPLIT_GPT2;
    str_addf(j, "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [");
    for (int i = 0; i < NUM_SPECIAL; i++) {
        str_addf(j, "%s{\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                 "\"normalized\": false, \"special\": true}", i ? ", " : "", hf_id(tok, TOKEN_EOT + i), SPECIAL_TOKENS[i]);
    }
    str_addf(j, "], \"normalizer\": null, \"pre_tokenizer\": ");
    if (gpt2) { str_addf(j, "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}"); }
    else {
        str_addf(j, "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, "
                 "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                 "\"trim_offsets\": false, \"use_regex\": false}]}", CHUNK_REGEX);
    }
    str_addf(j, ", \"post_processor\": null, "
             "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}, "
             "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null, "
             "\"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false, "
             "\"vocab\": {");
    for (int id = 0; id < tok->vocab_size; id++) {
        if (id >= TOKEN_EOT && id < FIRST_MERGE) { // in the vocabulary too, so that they keep their ids
            str_addf(j, ", \"%s\": %d", SPECIAL_TOKENS[id - TOKEN_EOT], hf_id(tok, id));
            continue;
        }
        for (int k = 0; k < id && id >= FIRST_MERGE && !gpt2; k++) { // a repeat of an earlier token's bytes? (never in GPT-2's)
            if (tok->lengths[k] == tok->lengths[id] && !memcmp(tok->bytes[k], tok->bytes[id], (size_t)tok->lengths[id])) {
                repeats++;
                break;
            }
        }
        token_text(&a, tok, id);
        if (id) { str_add(j, ", ", 2); }
        json_write_string(j, str_cstr(&a));
        str_addf(j, ": %d", hf_id(tok, id));
    }
    str_add(j, "}, \"merges\": [", 14);
    for (int m = 0; m < tok->num_merges; m++) {
        token_text(&a, tok, tok->merges[m][0]);
        token_text(&b, tok, tok->merges[m][1]);
        str_add(&a, " ", 1);
        str_add(&a, str_cstr(&b), b.len);
        if (m) { str_add(j, ", ", 2); }
        json_write_string(j, str_cstr(&a));
    }
    str_add(j, "]}}\n", 4);
    str_free(&a);
    str_free(&b);
    return repeats;
}

// The chat template (section 7) in the Jinja of tokenizer_config.json: a system message
// opens the user turn after it, separated by a blank line; the answer to come follows
// <|assistant|> when add_generation_prompt is set.
static const char *CHAT_TEMPLATE_JINJA =
    "{%- set ns = namespace(sys='') -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' and not loop.last and messages[loop.index0 + 1]['role'] == 'user' -%}"
    "{%- set ns.sys = m['content'] + '\\n\\n' -%}"
    "{%- elif m['role'] == 'assistant' -%}<|assistant|>{{ m['content'] }}<|end|>"
    "{%- else -%}<|user|>{{ ns.sys + m['content'] }}{%- set ns.sys = '' -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}";

// ./train export -c CKPT -o DIR: the checkpoint as a Hugging Face model folder, with the
// project's own tokenizer.bin beside it (for ./train import to restore exactly)
void export_hf(const GPT *model, int kind, const Tokenizer *tok, const char *dir) {
    GPTConfig c = model->config;
    int scalar = c.scalar_head, L = c.num_layers;
    char path[4096];
    // a reward or value model: fold the head's bias b into ln_f's bias, which the head
    // reads through its weight w: lnfb' = lnfb + b w / |w|^2 adds exactly b to w . lnf
    float *folded = NULL;
    if (scalar) {
        folded = mallocCheck((size_t)c.channels * sizeof(float));
        double w2 = 0.0;
        for (int i = 0; i < c.channels; i++) { w2 += (double)model->params.headw[i] * model->params.headw[i]; }
        for (int i = 0; i < c.channels; i++) {
            folded[i] = model->params.lnfb[i] + (w2 > 0 ? (float)(model->params.headb[0] * model->params.headw[i] / w2) : 0.0f);
        }
    }
    SafeTensor *t = mallocCheck((size_t)(16 * L + 8) * sizeof(SafeTensor));
    int n = hf_tensors(model, t, folded);
    float *wte = hf_wte(model, tok); // GPT-2's tokenizer numbers the rows its own way
    if (wte) { t[0].data = wte; }
    char metadata[256];
    snprintf(metadata, sizeof(metadata), "{\"format\": \"pt\", \"train_c_kind\": \"%s\"}", KIND_FILES[kind]);
    dir_path(path, sizeof(path), dir, "model.safetensors");
    safetensors_write(path, t, n, metadata);
    Str j = {0};
    str_addf(&j, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"gpt2\",\n  \"vocab_size\": %d,\n  \"n_positions\": %d,\n"
             "  \"n_ctx\": %d,\n  \"n_embd\": %d,\n  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_inner\": null,\n"
             "  \"activation_function\": \"gelu_new\",\n  \"layer_norm_epsilon\": 1e-05,\n  \"resid_pdrop\": 0.0,\n"
             "  \"embd_pdrop\": 0.0,\n  \"attn_pdrop\": 0.0,\n  \"initializer_range\": 0.02,\n  \"scale_attn_weights\": true,\n"
             "  \"tie_word_embeddings\": true,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"pad_token_id\": %d,\n"
             "%s  \"torch_dtype\": \"float32\"\n}\n", scalar ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel", c.vocab_size,
             c.max_seq_len, c.max_seq_len, c.channels, L, c.num_heads, hf_id(tok, TOKEN_EOT), hf_id(tok, TOKEN_END),
             hf_id(tok, TOKEN_EOT), scalar ? "  \"num_labels\": 1,\n  \"id2label\": {\"0\": \"LABEL_0\"},\n  \"label2id\": {\"LABEL_0\": 0},\n" : "");
    dir_path(path, sizeof(path), dir, "config.json");
    write_file_atomic(path, j.s, j.len);
    str_clear(&j);
    str_addf(&j, "{\n  \"bos_token_id\": %d,\n  \"eos_token_id\": [%d, %d],\n  \"pad_token_id\": %d,\n  \"do_sample\": false\n}\n",
             hf_id(tok, TOKEN_EOT), hf_id(tok, TOKEN_END), hf_id(tok, TOKEN_EOT), hf_id(tok, TOKEN_EOT));
    dir_path(path, sizeof(path), dir, "generation_config.json");
    write_file_atomic(path, j.s, j.len);
    str_clear(&j);
    str_addf(&j, "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"model_max_length\": %d,\n"
             "  \"bos_token\": \"<|endoftext|>\",\n  \"eos_token\": \"<|end|>\",\n  \"pad_token\": \"<|endoftext|>\",\n"
             "  \"clean_up_tokenization_spaces\": false,\n  \"chat_template\": ", c.max_seq_len);
    json_write_string(&j, CHAT_TEMPLATE_JINJA);
    str_add(&j, "\n}\n", 3);
    dir_path(path, sizeof(path), dir, "tokenizer_config.json");
    write_file_atomic(path, j.s, j.len);
    str_clear(&j);
    int repeats = tokenizer_json(&j, tok);
    dir_path(path, sizeof(path), dir, "tokenizer.json");
    write_file_atomic(path, j.s, j.len);
    if (repeats) {
        fprintf(stderr, "warning: %d tokens repeat the bytes of an earlier token: tokenizer.json gives those bytes the "
                "earlier id\n", repeats);
    }
    dir_path(path, sizeof(path), dir, "tokenizer.bin");
    tokenizer_save(tok, path);
    str_free(&j);
    free(t);
    free(folded);
    free(wte);
    printf("exported to %s/: model.safetensors (%s, %d tensors), config.json, generation_config.json, tokenizer.json, "
           "tokenizer_config.json, tokenizer.bin\n", dir, scalar ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel", n);
}

// llm.c's fp32 checkpoint (train_gpt2.c): a header of 256 int32 (magic 20240326,
// version 3, maxT, V, L, NH, C, and V padded up to a multiple of 128), then our 16
// tensors in our order and layout, wte padded with zero rows to the padded V (its rows
// in GPT-2's order for a model with GPT-2's tokenizer, as llm.c's tokenizer numbers them).
// Language models only: llm.c has no scalar head.
void export_llmc(const GPT *model, const Tokenizer *tok, const char *dir) {
    GPTConfig c = model->config;
    if (c.scalar_head) { FAIL("export --llmc: llm.c's format holds language models only, not a reward or value model"); }
    int Vp = (c.vocab_size + 127) / 128 * 128, header[256] = {0};
    header[0] = 20240326; header[1] = 3; header[2] = c.max_seq_len; header[3] = c.vocab_size;
    header[4] = c.num_layers; header[5] = c.num_heads; header[6] = c.channels; header[7] = Vp;
    char path[4096];
    dir_path(path, sizeof(path), dir, "model_llmc.bin");
    FILE *f = file_begin(path);
    fwriteCheck(header, sizeof(int), 256, f);
    float *wte = hf_wte(model, tok);
    fwriteCheck(wte ? wte : model->params.wte, sizeof(float), model->param_sizes[0], f);
    free(wte);
    float *zeros = callocCheck((size_t)(Vp - c.vocab_size) * c.channels + 1, sizeof(float));
    fwriteCheck(zeros, sizeof(float), (size_t)(Vp - c.vocab_size) * c.channels, f);
    free(zeros);
    fwriteCheck(model->params.wpe, sizeof(float), model->num_parameters - model->param_sizes[0], f); // the rest, in order
    fcloseCheck(f);
    file_commit(path);
    printf("exported to %s (llm.c's fp32 format, V %d padded to %d)\n", path, c.vocab_size, Vp);
}

// an integer field of a JSON object (config.json), or a clear error
static int json_int_field(const char *text, const char *key, const char *path) {
    const char *v, *err = json_find(text, key, &v);
    if (err) { FAIL("%s: %s", path, err); }
    if (v == NULL) { FAIL("%s: no \"%s\": is this a GPT-2 config.json?", path, key); }
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || x <= 0 || x > (1 << 24)) { FAIL("%s: \"%s\" must be a positive integer", path, key); }
    return (int)x;
}

// Finds a tensor in a safetensors header by name, with or without the "transformer."
// prefix (the Hub's GPT-2 files have none), and checks its dtype, shape and byte range;
// returns its data's offset in the buffer.
static size_t safetensors_find(const char *header, const char *name, const int *shape, int ndim, size_t buffer, const char *path) {
    const char *v, *err = json_find(header, name, &v);
    if (!err && v == NULL && !strncmp(name, "transformer.", 12)) { err = json_find(header, name + 12, &v); }
    if (err) { FAIL("%s: the header: %s", path, err); }
    if (v == NULL) { FAIL("%s: no tensor %s: not a GPT-2 of this shape", path, name); }
    Str dtype = {0};
    const char *d, *s, *o, *p = v;
    if ((err = json_object(&p, "dtype", &d)) || !d || json_parse_string(&d, &dtype)) { FAIL("%s: %s has no dtype", path, name); }
    if (strcmp(str_cstr(&dtype), "F32") != 0) {
        FAIL("%s: %s is %s; import reads F32 only: convert the model first, in place, so that the tokenizer files stay "
             "beside it, e.g. in Python GPT2LMHeadModel.from_pretrained(dir, torch_dtype=torch.float32).save_pretrained(dir)",
             path, name, str_cstr(&dtype));
    }
    str_free(&dtype);
    p = v;
    json_object(&p, "shape", &s);
    p = v;
    json_object(&p, "data_offsets", &o);
    if (!s || !o || *s != '[' || *o != '[') { FAIL("%s: %s lacks its shape or data_offsets", path, name); }
    char *end;
    long dims[4], k = 0;
    for (s++; k < 4; k++) { // the shape, as a list of integers
        s = skip_ws(s);
        if (*s == ']') { break; }
        dims[k] = strtol(s, &end, 10);
        s = skip_ws(end);
        if (*s == ',') { s++; }
    }
    int same = k == ndim;
    for (int i = 0; i < ndim && same; i++) { same = dims[i] == shape[i]; }
    if (!same) {
        char has[64] = "", want[64] = "";
        for (int i = 0; i < k; i++) { snprintf(has + strlen(has), sizeof(has) - strlen(has), "%s%ld", i ? ", " : "", dims[i]); }
        for (int i = 0; i < ndim; i++) { snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%d", i ? ", " : "", shape[i]); }
        FAIL("%s: %s has shape [%s], but config.json's sizes make it [%s]: not a GPT-2 of that shape", path, name, has, want);
    }
    unsigned long long begin = strtoull(skip_ws(o + 1), &end, 10), stop = strtoull(skip_ws(skip_ws(end) + 1), NULL, 10);
    size_t want = sizeof(float);
    for (int i = 0; i < ndim; i++) { want *= (size_t)shape[i]; }
    if (stop < begin || stop - begin != want || stop > buffer) {
        FAIL("%s: %s's bytes [%llu, %llu) do not fit its shape or the file (%zu bytes of tensors): truncated?", path, name,
             begin, stop, buffer);
    }
    return (size_t)begin;
}

// wte's rows from the file's order (hf_id) into ours. The `added` chat tokens that the
// file lacks (GPT-2 as published has none) get new rows, each the mean of the file's
// rows, so that their logits start at the mean logit, neither favoured nor shut out
// (Hewitt, "Initializing new word embeddings for pretrained language models", 2021).
static void wte_from_hf(GPT *model, const Tokenizer *tok, int added) {
    GPTConfig c = model->config;
    size_t C = (size_t)c.channels, rows = (size_t)c.vocab_size;
    float *file = mallocCheck(rows * C * sizeof(float)), *mean = callocCheck(C, sizeof(float));
    memcpy(file, model->params.wte, rows * C * sizeof(float));
    for (size_t i = 0; i < C; i++) {
        double sum = 0.0;
        for (size_t r = 0; r < rows; r++) { sum += file[r * C + i]; }
        mean[i] = (float)(sum / (double)rows);
    }
    if (added) { // a model with more rows: the other tensors as they are
        GPT wide;
        c.vocab_size += added;
        gpt_build(&wide, c);
        memcpy(wide.params_memory + wide.param_sizes[0], model->params_memory + model->param_sizes[0],
               (model->num_parameters - model->param_sizes[0]) * sizeof(float));
        gpt_free(model);
        *model = wide;
        printf("import: %s, %s and %s are not in the file's vocabulary: new rows of the token embedding, each the mean of "
               "its %zu rows\n", SPECIAL_TOKENS[1], SPECIAL_TOKENS[2], SPECIAL_TOKENS[3], rows);
    }
    for (int id = 0; id < c.vocab_size; id++) {
        size_t h = (size_t)hf_id(tok, id);
        memcpy(model->params.wte + (size_t)id * C, h < rows ? file + h * C : mean, C * sizeof(float));
    }
    free(file);
    free(mean);
}

// ./train import -i DIR: a model folder as export writes it, or a Hugging Face GPT-2 in
// F32 with its own tokenizer (vocab.json and merges.txt), into a model of its kind and
// that tokenizer. Returns the kind.
int import_hf(const char *dir, const char *tokenizer_path, GPT *model, Tokenizer *tok) {
    char path[4096];
    size_t size;
    // the tokenizer: -z, or the project's own file, exactly, where export left one; else GPT-2's
    dir_path(path, sizeof(path), dir, "tokenizer.bin");
    if (tokenizer_path) { tokenizer_load(tok, tokenizer_path); }
    else if (access(path, F_OK) == 0) { tokenizer_load(tok, path); }
    else { gpt2_tokenizer_read(tok, dir); }
    dir_path(path, sizeof(path), dir, "config.json");
    char *config = read_whole_file(path, &size);
    const char *arch;
    if (json_find(config, "architectures", &arch) || !arch) { FAIL("%s: no \"architectures\"", path); }
    int scalar = strstr(arch, "GPT2ForSequenceClassification") != NULL;
    if (!scalar && !strstr(arch, "GPT2LMHeadModel") && !strstr(arch, "GPT2Model")) {
        FAIL("%s: architectures %.*s: import reads GPT-2 (GPT2LMHeadModel or GPT2ForSequenceClassification)", path,
             (int)(strchr(arch, ']') ? strchr(arch, ']') - arch + 1 : 40), arch);
    }
    GPTConfig c = {.vocab_size = json_int_field(config, "vocab_size", path), .max_seq_len = json_int_field(config, "n_positions", path),
                   .num_layers = json_int_field(config, "n_layer", path), .num_heads = json_int_field(config, "n_head", path),
                   .channels = json_int_field(config, "n_embd", path), .scalar_head = scalar};
    const char *inner;
    if (!json_find(config, "n_inner", &inner) && inner && strncmp(inner, "null", 4) != 0 && atoi(inner) != 4 * c.channels) {
        FAIL("%s: n_inner %d: train.c's MLP is 4 x n_embd = %d wide", path, atoi(inner), 4 * c.channels);
    }
    if (c.channels % c.num_heads) { FAIL("%s: n_embd %d is not a multiple of n_head %d", path, c.channels, c.num_heads); }
    // the file's rows of wte: one per token of the tokenizer, or GPT-2's without our chat tokens
    int added = tok->split == SPLIT_GPT2 && c.vocab_size == tok->vocab_size - (NUM_SPECIAL - 1) ? NUM_SPECIAL - 1 : 0;
    if (c.vocab_size + added != tok->vocab_size) {
        FAIL("%s: vocab_size %d, but its tokenizer has %d tokens%s: not that tokenizer's model", path, c.vocab_size,
             tok->vocab_size, tok->split == SPLIT_GPT2 ? " (or that many less our 3 chat tokens)" : "");
    }
    free(config);
    dir_path(path, sizeof(path), dir, "model.safetensors");
    FILE *f = fopenCheck(path, "rb");
    long total = file_size(f, path);
    uint64_t hlen = 0;
    if (total < 8 || fread(&hlen, sizeof(hlen), 1, f) != 1 || hlen > (uint64_t)total - 8) {
        FAIL("%s: too short for its header (%ld bytes): truncated?", path, total);
    }
    char *header = mallocCheck((size_t)hlen + 1);
    freadCheck(header, 1, (size_t)hlen, f);
    header[hlen] = '\0';
    size_t buffer = (size_t)total - 8 - (size_t)hlen;
    gpt_build(model, c);
    const char *meta, *kind_value;
    int kind = scalar ? KIND_REWARD : KIND_BASE;
    if (!json_find(header, "__metadata__", &meta) && meta && !json_object(&meta, "train_c_kind", &kind_value) && kind_value) {
        for (int k = 1; k < NUM_KINDS; k++) {
            size_t n = strlen(KIND_FILES[k]);
            if (kind_value[0] == '"' && !strncmp(kind_value + 1, KIND_FILES[k], n) && kind_value[n + 1] == '"') { kind = k; }
        }
        if (kind_scalar_head(kind) != scalar) { FAIL("%s: its kind (%s) and its architecture disagree", path, KIND_FILES[kind]); }
    }
    SafeTensor *t = mallocCheck((size_t)(16 * c.num_layers + 8) * sizeof(SafeTensor));
    int n = hf_tensors(model, t, NULL);
    long data = 8 + (long)hlen;
    for (int i = 0; i < n; i++) {
        if (!strcmp(t[i].name, HF_TENSORS[17].name)) { // headb, ours only: a Hugging Face model's head has no bias
            const char *v;
            if (json_find(header, t[i].name, &v) || v == NULL) { model->params.headb[0] = 0.0f; continue; }
        }
        size_t begin = safetensors_find(header, t[i].name, t[i].shape, t[i].ndim, buffer, path);
        float *dst = (float *)t[i].data; // hf_tensors points into the model's own memory
        if (fseek(f, data + (long)begin, SEEK_SET) != 0) { FAIL("%s: cannot seek to %s", path, t[i].name); }
        if (!t[i].transposed) { freadCheck(dst, sizeof(float), (size_t)t[i].rows * t[i].cols, f); continue; }
        float *col = mallocCheck((size_t)t[i].rows * sizeof(float));
        for (int cc = 0; cc < t[i].cols; cc++) {
            freadCheck(col, sizeof(float), (size_t)t[i].rows, f);
            for (int r = 0; r < t[i].rows; r++) { dst[(size_t)r * t[i].cols + cc] = col[r]; }
        }
        free(col);
    }
    if (scalar) { // the exact final-layernorm bias when export kept it; else the file's is right as it is
        const char *v;
        if (!json_find(header, HF_EXACT_LNF_BIAS, &v) && v) {
            int shape[1] = {c.channels};
            size_t begin = safetensors_find(header, HF_EXACT_LNF_BIAS, shape, 1, buffer, path);
            if (fseek(f, data + (long)begin, SEEK_SET) != 0) { FAIL("%s: cannot seek", path); }
            freadCheck(model->params.lnfb, sizeof(float), (size_t)c.channels, f);
        }
    }
    fclose(f);
    free(header);
    free(t);
    if (tok->split == SPLIT_GPT2) { wte_from_hf(model, tok, added); }
    model->tokenizer = tokenizer_fingerprint(tok);
    return kind;
}

// GPT-2's character classes (gpt2_chunk_length, section 6): Unicode's letters (\p{L}),
// numbers (\p{N}) and whitespace (\s) as ranges of code points, first and last, as
// tiktoken's regular-expression engine reads them. Other engines follow other Unicode
// versions and differ on recently assigned characters (tokenizers 0.19 on about 9,400).
// generated by test/interop/unicode_classes.py with tiktoken 0.14.0
static const uint32_t UNICODE_LETTERS[677][2] = { // \p{L}
    {0x41, 0x5A}, {0x61, 0x7A}, {0xAA, 0xAA}, {0xB5, 0xB5}, {0xBA, 0xBA}, {0xC0, 0xD6},
    {0xD8, 0xF6}, {0xF8, 0x2C1}, {0x2C6, 0x2D1}, {0x2E0, 0x2E4}, {0x2EC, 0x2EC}, {0x2EE, 0x2EE},
    {0x370, 0x374}, {0x376, 0x377}, {0x37A, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A},
    {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x559, 0x559}, {0x560, 0x588}, {0x5D0, 0x5EA}, {0x5EF, 0x5F2}, {0x620, 0x64A}, {0x66E, 0x66F},
    {0x671, 0x6D3}, {0x6D5, 0x6D5}, {0x6E5, 0x6E6}, {0x6EE, 0x6EF}, {0x6FA, 0x6FC}, {0x6FF, 0x6FF},
    {0x710, 0x710}, {0x712, 0x72F}, {0x74D, 0x7A5}, {0x7B1, 0x7B1}, {0x7CA, 0x7EA}, {0x7F4, 0x7F5},
    {0x7FA, 0x7FA}, {0x800, 0x815}, {0x81A, 0x81A}, {0x824, 0x824}, {0x828, 0x828}, {0x840, 0x858},
    {0x860, 0x86A}, {0x870, 0x887}, {0x889, 0x88E}, {0x8A0, 0x8C9}, {0x904, 0x939}, {0x93D, 0x93D},
    {0x950, 0x950}, {0x958, 0x961}, {0x971, 0x980}, {0x985, 0x98C}, {0x98F, 0x990}, {0x993, 0x9A8},
    {0x9AA, 0x9B0}, {0x9B2, 0x9B2}, {0x9B6, 0x9B9}, {0x9BD, 0x9BD}, {0x9CE, 0x9CE}, {0x9DC, 0x9DD},
    {0x9DF, 0x9E1}, {0x9F0, 0x9F1}, {0x9FC, 0x9FC}, {0xA05, 0xA0A}, {0xA0F, 0xA10}, {0xA13, 0xA28},
    {0xA2A, 0xA30}, {0xA32, 0xA33}, {0xA35, 0xA36}, {0xA38, 0xA39}, {0xA59, 0xA5C}, {0xA5E, 0xA5E},
    {0xA72, 0xA74}, {0xA85, 0xA8D}, {0xA8F, 0xA91}, {0xA93, 0xAA8}, {0xAAA, 0xAB0}, {0xAB2, 0xAB3},
    {0xAB5, 0xAB9}, {0xABD, 0xABD}, {0xAD0, 0xAD0}, {0xAE0, 0xAE1}, {0xAF9, 0xAF9}, {0xB05, 0xB0C},
    {0xB0F, 0xB10}, {0xB13, 0xB28}, {0xB2A, 0xB30}, {0xB32, 0xB33}, {0xB35, 0xB39}, {0xB3D, 0xB3D},
    {0xB5C, 0xB5D}, {0xB5F, 0xB61}, {0xB71, 0xB71}, {0xB83, 0xB83}, {0xB85, 0xB8A}, {0xB8E, 0xB90},
    {0xB92, 0xB95}, {0xB99, 0xB9A}, {0xB9C, 0xB9C}, {0xB9E, 0xB9F}, {0xBA3, 0xBA4}, {0xBA8, 0xBAA},
    {0xBAE, 0xBB9}, {0xBD0, 0xBD0}, {0xC05, 0xC0C}, {0xC0E, 0xC10}, {0xC12, 0xC28}, {0xC2A, 0xC39},
    {0xC3D, 0xC3D}, {0xC58, 0xC5A}, {0xC5D, 0xC5D}, {0xC60, 0xC61}, {0xC80, 0xC80}, {0xC85, 0xC8C},
    {0xC8E, 0xC90}, {0xC92, 0xCA8}, {0xCAA, 0xCB3}, {0xCB5, 0xCB9}, {0xCBD, 0xCBD}, {0xCDD, 0xCDE},
    {0xCE0, 0xCE1}, {0xCF1, 0xCF2}, {0xD04, 0xD0C}, {0xD0E, 0xD10}, {0xD12, 0xD3A}, {0xD3D, 0xD3D},
    {0xD4E, 0xD4E}, {0xD54, 0xD56}, {0xD5F, 0xD61}, {0xD7A, 0xD7F}, {0xD85, 0xD96}, {0xD9A, 0xDB1},
    {0xDB3, 0xDBB}, {0xDBD, 0xDBD}, {0xDC0, 0xDC6}, {0xE01, 0xE30}, {0xE32, 0xE33}, {0xE40, 0xE46},
    {0xE81, 0xE82}, {0xE84, 0xE84}, {0xE86, 0xE8A}, {0xE8C, 0xEA3}, {0xEA5, 0xEA5}, {0xEA7, 0xEB0},
    {0xEB2, 0xEB3}, {0xEBD, 0xEBD}, {0xEC0, 0xEC4}, {0xEC6, 0xEC6}, {0xEDC, 0xEDF}, {0xF00, 0xF00},
    {0xF40, 0xF47}, {0xF49, 0xF6C}, {0xF88, 0xF8C}, {0x1000, 0x102A}, {0x103F, 0x103F}, {0x1050, 0x1055},
    {0x105A, 0x105D}, {0x1061, 0x1061}, {0x1065, 0x1066}, {0x106E, 0x1070}, {0x1075, 0x1081}, {0x108E, 0x108E},
    {0x10A0, 0x10C5}, {0x10C7, 0x10C7}, {0x10CD, 0x10CD}, {0x10D0, 0x10FA}, {0x10FC, 0x1248}, {0x124A, 0x124D},
    {0x1250, 0x1256}, {0x1258, 0x1258}, {0x125A, 0x125D}, {0x1260, 0x1288}, {0x128A, 0x128D}, {0x1290, 0x12B0},
    {0x12B2, 0x12B5}, {0x12B8, 0x12BE}, {0x12C0, 0x12C0}, {0x12C2, 0x12C5}, {0x12C8, 0x12D6}, {0x12D8, 0x1310},
    {0x1312, 0x1315}, {0x1318, 0x135A}, {0x1380, 0x138F}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1401, 0x166C},
    {0x166F, 0x167F}, {0x1681, 0x169A}, {0x16A0, 0x16EA}, {0x16F1, 0x16F8}, {0x1700, 0x1711}, {0x171F, 0x1731},
    {0x1740, 0x1751}, {0x1760, 0x176C}, {0x176E, 0x1770}, {0x1780, 0x17B3}, {0x17D7, 0x17D7}, {0x17DC, 0x17DC},
    {0x1820, 0x1878}, {0x1880, 0x1884}, {0x1887, 0x18A8}, {0x18AA, 0x18AA}, {0x18B0, 0x18F5}, {0x1900, 0x191E},
    {0x1950, 0x196D}, {0x1970, 0x1974}, {0x1980, 0x19AB}, {0x19B0, 0x19C9}, {0x1A00, 0x1A16}, {0x1A20, 0x1A54},
    {0x1AA7, 0x1AA7}, {0x1B05, 0x1B33}, {0x1B45, 0x1B4C}, {0x1B83, 0x1BA0}, {0x1BAE, 0x1BAF}, {0x1BBA, 0x1BE5},
    {0x1C00, 0x1C23}, {0x1C4D, 0x1C4F}, {0x1C5A, 0x1C7D}, {0x1C80, 0x1C8A}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1CE9, 0x1CEC}, {0x1CEE, 0x1CF3}, {0x1CF5, 0x1CF6}, {0x1CFA, 0x1CFA}, {0x1D00, 0x1DBF}, {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4},
    {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC},
    {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D},
    {0x212F, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2CE4},
    {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0x2D00, 0x2D25}, {0x2D27, 0x2D27}, {0x2D2D, 0x2D2D}, {0x2D30, 0x2D67},
    {0x2D6F, 0x2D6F}, {0x2D80, 0x2D96}, {0x2DA0, 0x2DA6}, {0x2DA8, 0x2DAE}, {0x2DB0, 0x2DB6}, {0x2DB8, 0x2DBE},
    {0x2DC0, 0x2DC6}, {0x2DC8, 0x2DCE}, {0x2DD0, 0x2DD6}, {0x2DD8, 0x2DDE}, {0x2E2F, 0x2E2F}, {0x3005, 0x3006},
    {0x3031, 0x3035}, {0x303B, 0x303C}, {0x3041, 0x3096}, {0x309D, 0x309F}, {0x30A1, 0x30FA}, {0x30FC, 0x30FF},
    {0x3105, 0x312F}, {0x3131, 0x318E}, {0x31A0, 0x31BF}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF}, {0x4E00, 0xA48C},
    {0xA4D0, 0xA4FD}, {0xA500, 0xA60C}, {0xA610, 0xA61F}, {0xA62A, 0xA62B}, {0xA640, 0xA66E}, {0xA67F, 0xA69D},
    {0xA6A0, 0xA6E5}, {0xA717, 0xA71F}, {0xA722, 0xA788}, {0xA78B, 0xA7CD}, {0xA7D0, 0xA7D1}, {0xA7D3, 0xA7D3},
    {0xA7D5, 0xA7DC}, {0xA7F2, 0xA801}, {0xA803, 0xA805}, {0xA807, 0xA80A}, {0xA80C, 0xA822}, {0xA840, 0xA873},
    {0xA882, 0xA8B3}, {0xA8F2, 0xA8F7}, {0xA8FB, 0xA8FB}, {0xA8FD, 0xA8FE}, {0xA90A, 0xA925}, {0xA930, 0xA946},
    {0xA960, 0xA97C}, {0xA984, 0xA9B2}, {0xA9CF, 0xA9CF}, {0xA9E0, 0xA9E4}, {0xA9E6, 0xA9EF}, {0xA9FA, 0xA9FE},
    {0xAA00, 0xAA28}, {0xAA40, 0xAA42}, {0xAA44, 0xAA4B}, {0xAA60, 0xAA76}, {0xAA7A, 0xAA7A}, {0xAA7E, 0xAAAF},
    {0xAAB1, 0xAAB1}, {0xAAB5, 0xAAB6}, {0xAAB9, 0xAABD}, {0xAAC0, 0xAAC0}, {0xAAC2, 0xAAC2}, {0xAADB, 0xAADD},
    {0xAAE0, 0xAAEA}, {0xAAF2, 0xAAF4}, {0xAB01, 0xAB06}, {0xAB09, 0xAB0E}, {0xAB11, 0xAB16}, {0xAB20, 0xAB26},
    {0xAB28, 0xAB2E}, {0xAB30, 0xAB5A}, {0xAB5C, 0xAB69}, {0xAB70, 0xABE2}, {0xAC00, 0xD7A3}, {0xD7B0, 0xD7C6},
    {0xD7CB, 0xD7FB}, {0xF900, 0xFA6D}, {0xFA70, 0xFAD9}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFB1D, 0xFB1D},
    {0xFB1F, 0xFB28}, {0xFB2A, 0xFB36}, {0xFB38, 0xFB3C}, {0xFB3E, 0xFB3E}, {0xFB40, 0xFB41}, {0xFB43, 0xFB44},
    {0xFB46, 0xFBB1}, {0xFBD3, 0xFD3D}, {0xFD50, 0xFD8F}, {0xFD92, 0xFDC7}, {0xFDF0, 0xFDFB}, {0xFE70, 0xFE74},
    {0xFE76, 0xFEFC}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0xFF66, 0xFFBE}, {0xFFC2, 0xFFC7}, {0xFFCA, 0xFFCF},
    {0xFFD2, 0xFFD7}, {0xFFDA, 0xFFDC}, {0x10000, 0x1000B}, {0x1000D, 0x10026}, {0x10028, 0x1003A}, {0x1003C, 0x1003D},
    {0x1003F, 0x1004D}, {0x10050, 0x1005D}, {0x10080, 0x100FA}, {0x10280, 0x1029C}, {0x102A0, 0x102D0}, {0x10300, 0x1031F},
    {0x1032D, 0x10340}, {0x10342, 0x10349}, {0x10350, 0x10375}, {0x10380, 0x1039D}, {0x103A0, 0x103C3}, {0x103C8, 0x103CF},
    {0x10400, 0x1049D}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10500, 0x10527}, {0x10530, 0x10563}, {0x10570, 0x1057A},
    {0x1057C, 0x1058A}, {0x1058C, 0x10592}, {0x10594, 0x10595}, {0x10597, 0x105A1}, {0x105A3, 0x105B1}, {0x105B3, 0x105B9},
    {0x105BB, 0x105BC}, {0x105C0, 0x105F3}, {0x10600, 0x10736}, {0x10740, 0x10755}, {0x10760, 0x10767}, {0x10780, 0x10785},
    {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x10800, 0x10805}, {0x10808, 0x10808}, {0x1080A, 0x10835}, {0x10837, 0x10838},
    {0x1083C, 0x1083C}, {0x1083F, 0x10855}, {0x10860, 0x10876}, {0x10880, 0x1089E}, {0x108E0, 0x108F2}, {0x108F4, 0x108F5},
    {0x10900, 0x10915}, {0x10920, 0x10939}, {0x10980, 0x109B7}, {0x109BE, 0x109BF}, {0x10A00, 0x10A00}, {0x10A10, 0x10A13},
    {0x10A15, 0x10A17}, {0x10A19, 0x10A35}, {0x10A60, 0x10A7C}, {0x10A80, 0x10A9C}, {0x10AC0, 0x10AC7}, {0x10AC9, 0x10AE4},
    {0x10B00, 0x10B35}, {0x10B40, 0x10B55}, {0x10B60, 0x10B72}, {0x10B80, 0x10B91}, {0x10C00, 0x10C48}, {0x10C80, 0x10CB2},
    {0x10CC0, 0x10CF2}, {0x10D00, 0x10D23}, {0x10D4A, 0x10D65}, {0x10D6F, 0x10D85}, {0x10E80, 0x10EA9}, {0x10EB0, 0x10EB1},
    {0x10EC2, 0x10EC4}, {0x10F00, 0x10F1C}, {0x10F27, 0x10F27}, {0x10F30, 0x10F45}, {0x10F70, 0x10F81}, {0x10FB0, 0x10FC4},
    {0x10FE0, 0x10FF6}, {0x11003, 0x11037}, {0x11071, 0x11072}, {0x11075, 0x11075}, {0x11083, 0x110AF}, {0x110D0, 0x110E8},
    {0x11103, 0x11126}, {0x11144, 0x11144}, {0x11147, 0x11147}, {0x11150, 0x11172}, {0x11176, 0x11176}, {0x11183, 0x111B2},
    {0x111C1, 0x111C4}, {0x111DA, 0x111DA}, {0x111DC, 0x111DC}, {0x11200, 0x11211}, {0x11213, 0x1122B}, {0x1123F, 0x11240},
    {0x11280, 0x11286}, {0x11288, 0x11288}, {0x1128A, 0x1128D}, {0x1128F, 0x1129D}, {0x1129F, 0x112A8}, {0x112B0, 0x112DE},
    {0x11305, 0x1130C}, {0x1130F, 0x11310}, {0x11313, 0x11328}, {0x1132A, 0x11330}, {0x11332, 0x11333}, {0x11335, 0x11339},
    {0x1133D, 0x1133D}, {0x11350, 0x11350}, {0x1135D, 0x11361}, {0x11380, 0x11389}, {0x1138B, 0x1138B}, {0x1138E, 0x1138E},
    {0x11390, 0x113B5}, {0x113B7, 0x113B7}, {0x113D1, 0x113D1}, {0x113D3, 0x113D3}, {0x11400, 0x11434}, {0x11447, 0x1144A},
    {0x1145F, 0x11461}, {0x11480, 0x114AF}, {0x114C4, 0x114C5}, {0x114C7, 0x114C7}, {0x11580, 0x115AE}, {0x115D8, 0x115DB},
    {0x11600, 0x1162F}, {0x11644, 0x11644}, {0x11680, 0x116AA}, {0x116B8, 0x116B8}, {0x11700, 0x1171A}, {0x11740, 0x11746},
    {0x11800, 0x1182B}, {0x118A0, 0x118DF}, {0x118FF, 0x11906}, {0x11909, 0x11909}, {0x1190C, 0x11913}, {0x11915, 0x11916},
    {0x11918, 0x1192F}, {0x1193F, 0x1193F}, {0x11941, 0x11941}, {0x119A0, 0x119A7}, {0x119AA, 0x119D0}, {0x119E1, 0x119E1},
    {0x119E3, 0x119E3}, {0x11A00, 0x11A00}, {0x11A0B, 0x11A32}, {0x11A3A, 0x11A3A}, {0x11A50, 0x11A50}, {0x11A5C, 0x11A89},
    {0x11A9D, 0x11A9D}, {0x11AB0, 0x11AF8}, {0x11BC0, 0x11BE0}, {0x11C00, 0x11C08}, {0x11C0A, 0x11C2E}, {0x11C40, 0x11C40},
    {0x11C72, 0x11C8F}, {0x11D00, 0x11D06}, {0x11D08, 0x11D09}, {0x11D0B, 0x11D30}, {0x11D46, 0x11D46}, {0x11D60, 0x11D65},
    {0x11D67, 0x11D68}, {0x11D6A, 0x11D89}, {0x11D98, 0x11D98}, {0x11EE0, 0x11EF2}, {0x11F02, 0x11F02}, {0x11F04, 0x11F10},
    {0x11F12, 0x11F33}, {0x11FB0, 0x11FB0}, {0x12000, 0x12399}, {0x12480, 0x12543}, {0x12F90, 0x12FF0}, {0x13000, 0x1342F},
    {0x13441, 0x13446}, {0x13460, 0x143FA}, {0x14400, 0x14646}, {0x16100, 0x1611D}, {0x16800, 0x16A38}, {0x16A40, 0x16A5E},
    {0x16A70, 0x16ABE}, {0x16AD0, 0x16AED}, {0x16B00, 0x16B2F}, {0x16B40, 0x16B43}, {0x16B63, 0x16B77}, {0x16B7D, 0x16B8F},
    {0x16D40, 0x16D6C}, {0x16E40, 0x16E7F}, {0x16F00, 0x16F4A}, {0x16F50, 0x16F50}, {0x16F93, 0x16F9F}, {0x16FE0, 0x16FE1},
    {0x16FE3, 0x16FE3}, {0x17000, 0x187F7}, {0x18800, 0x18CD5}, {0x18CFF, 0x18D08}, {0x1AFF0, 0x1AFF3}, {0x1AFF5, 0x1AFFB},
    {0x1AFFD, 0x1AFFE}, {0x1B000, 0x1B122}, {0x1B132, 0x1B132}, {0x1B150, 0x1B152}, {0x1B155, 0x1B155}, {0x1B164, 0x1B167},
    {0x1B170, 0x1B2FB}, {0x1BC00, 0x1BC6A}, {0x1BC70, 0x1BC7C}, {0x1BC80, 0x1BC88}, {0x1BC90, 0x1BC99}, {0x1D400, 0x1D454},
    {0x1D456, 0x1D49C}, {0x1D49E, 0x1D49F}, {0x1D4A2, 0x1D4A2}, {0x1D4A5, 0x1D4A6}, {0x1D4A9, 0x1D4AC}, {0x1D4AE, 0x1D4B9},
    {0x1D4BB, 0x1D4BB}, {0x1D4BD, 0x1D4C3}, {0x1D4C5, 0x1D505}, {0x1D507, 0x1D50A}, {0x1D50D, 0x1D514}, {0x1D516, 0x1D51C},
    {0x1D51E, 0x1D539}, {0x1D53B, 0x1D53E}, {0x1D540, 0x1D544}, {0x1D546, 0x1D546}, {0x1D54A, 0x1D550}, {0x1D552, 0x1D6A5},
    {0x1D6A8, 0x1D6C0}, {0x1D6C2, 0x1D6DA}, {0x1D6DC, 0x1D6FA}, {0x1D6FC, 0x1D714}, {0x1D716, 0x1D734}, {0x1D736, 0x1D74E},
    {0x1D750, 0x1D76E}, {0x1D770, 0x1D788}, {0x1D78A, 0x1D7A8}, {0x1D7AA, 0x1D7C2}, {0x1D7C4, 0x1D7CB}, {0x1DF00, 0x1DF1E},
    {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E100, 0x1E12C}, {0x1E137, 0x1E13D}, {0x1E14E, 0x1E14E}, {0x1E290, 0x1E2AD},
    {0x1E2C0, 0x1E2EB}, {0x1E4D0, 0x1E4EB}, {0x1E5D0, 0x1E5ED}, {0x1E5F0, 0x1E5F0}, {0x1E7E0, 0x1E7E6}, {0x1E7E8, 0x1E7EB},
    {0x1E7ED, 0x1E7EE}, {0x1E7F0, 0x1E7FE}, {0x1E800, 0x1E8C4}, {0x1E900, 0x1E943}, {0x1E94B, 0x1E94B}, {0x1EE00, 0x1EE03},
    {0x1EE05, 0x1EE1F}, {0x1EE21, 0x1EE22}, {0x1EE24, 0x1EE24}, {0x1EE27, 0x1EE27}, {0x1EE29, 0x1EE32}, {0x1EE34, 0x1EE37},
    {0x1EE39, 0x1EE39}, {0x1EE3B, 0x1EE3B}, {0x1EE42, 0x1EE42}, {0x1EE47, 0x1EE47}, {0x1EE49, 0x1EE49}, {0x1EE4B, 0x1EE4B},
    {0x1EE4D, 0x1EE4F}, {0x1EE51, 0x1EE52}, {0x1EE54, 0x1EE54}, {0x1EE57, 0x1EE57}, {0x1EE59, 0x1EE59}, {0x1EE5B, 0x1EE5B},
    {0x1EE5D, 0x1EE5D}, {0x1EE5F, 0x1EE5F}, {0x1EE61, 0x1EE62}, {0x1EE64, 0x1EE64}, {0x1EE67, 0x1EE6A}, {0x1EE6C, 0x1EE72},
    {0x1EE74, 0x1EE77}, {0x1EE79, 0x1EE7C}, {0x1EE7E, 0x1EE7E}, {0x1EE80, 0x1EE89}, {0x1EE8B, 0x1EE9B}, {0x1EEA1, 0x1EEA3},
    {0x1EEA5, 0x1EEA9}, {0x1EEAB, 0x1EEBB}, {0x20000, 0x2A6DF}, {0x2A700, 0x2B739}, {0x2B740, 0x2B81D}, {0x2B820, 0x2CEA1},
    {0x2CEB0, 0x2EBE0}, {0x2EBF0, 0x2EE5D}, {0x2F800, 0x2FA1D}, {0x30000, 0x3134A}, {0x31350, 0x323AF},
};
static const uint32_t UNICODE_NUMBERS[144][2] = { // \p{N}
    {0x30, 0x39}, {0xB2, 0xB3}, {0xB9, 0xB9}, {0xBC, 0xBE}, {0x660, 0x669}, {0x6F0, 0x6F9},
    {0x7C0, 0x7C9}, {0x966, 0x96F}, {0x9E6, 0x9EF}, {0x9F4, 0x9F9}, {0xA66, 0xA6F}, {0xAE6, 0xAEF},
    {0xB66, 0xB6F}, {0xB72, 0xB77}, {0xBE6, 0xBF2}, {0xC66, 0xC6F}, {0xC78, 0xC7E}, {0xCE6, 0xCEF},
    {0xD58, 0xD5E}, {0xD66, 0xD78}, {0xDE6, 0xDEF}, {0xE50, 0xE59}, {0xED0, 0xED9}, {0xF20, 0xF33},
    {0x1040, 0x1049}, {0x1090, 0x1099}, {0x1369, 0x137C}, {0x16EE, 0x16F0}, {0x17E0, 0x17E9}, {0x17F0, 0x17F9},
    {0x1810, 0x1819}, {0x1946, 0x194F}, {0x19D0, 0x19DA}, {0x1A80, 0x1A89}, {0x1A90, 0x1A99}, {0x1B50, 0x1B59},
    {0x1BB0, 0x1BB9}, {0x1C40, 0x1C49}, {0x1C50, 0x1C59}, {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089},
    {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793}, {0x2CFD, 0x2CFD},
    {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303A}, {0x3192, 0x3195}, {0x3220, 0x3229}, {0x3248, 0x324F},
    {0x3251, 0x325F}, {0x3280, 0x3289}, {0x32B1, 0x32BF}, {0xA620, 0xA629}, {0xA6E6, 0xA6EF}, {0xA830, 0xA835},
    {0xA8D0, 0xA8D9}, {0xA900, 0xA909}, {0xA9D0, 0xA9D9}, {0xA9F0, 0xA9F9}, {0xAA50, 0xAA59}, {0xABF0, 0xABF9},
    {0xFF10, 0xFF19}, {0x10107, 0x10133}, {0x10140, 0x10178}, {0x1018A, 0x1018B}, {0x102E1, 0x102FB}, {0x10320, 0x10323},
    {0x10341, 0x10341}, {0x1034A, 0x1034A}, {0x103D1, 0x103D5}, {0x104A0, 0x104A9}, {0x10858, 0x1085F}, {0x10879, 0x1087F},
    {0x108A7, 0x108AF}, {0x108FB, 0x108FF}, {0x10916, 0x1091B}, {0x109BC, 0x109BD}, {0x109C0, 0x109CF}, {0x109D2, 0x109FF},
    {0x10A40, 0x10A48}, {0x10A7D, 0x10A7E}, {0x10A9D, 0x10A9F}, {0x10AEB, 0x10AEF}, {0x10B58, 0x10B5F}, {0x10B78, 0x10B7F},
    {0x10BA9, 0x10BAF}, {0x10CFA, 0x10CFF}, {0x10D30, 0x10D39}, {0x10D40, 0x10D49}, {0x10E60, 0x10E7E}, {0x10F1D, 0x10F26},
    {0x10F51, 0x10F54}, {0x10FC5, 0x10FCB}, {0x11052, 0x1106F}, {0x110F0, 0x110F9}, {0x11136, 0x1113F}, {0x111D0, 0x111D9},
    {0x111E1, 0x111F4}, {0x112F0, 0x112F9}, {0x11450, 0x11459}, {0x114D0, 0x114D9}, {0x11650, 0x11659}, {0x116C0, 0x116C9},
    {0x116D0, 0x116E3}, {0x11730, 0x1173B}, {0x118E0, 0x118F2}, {0x11950, 0x11959}, {0x11BF0, 0x11BF9}, {0x11C50, 0x11C6C},
    {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x11F50, 0x11F59}, {0x11FC0, 0x11FD4}, {0x12400, 0x1246E}, {0x16130, 0x16139},
    {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59}, {0x16B5B, 0x16B61}, {0x16D70, 0x16D79}, {0x16E80, 0x16E96},
    {0x1CCF0, 0x1CCF9}, {0x1D2C0, 0x1D2D3}, {0x1D2E0, 0x1D2F3}, {0x1D360, 0x1D378}, {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149},
    {0x1E2F0, 0x1E2F9}, {0x1E4F0, 0x1E4F9}, {0x1E5F1, 0x1E5FA}, {0x1E8C7, 0x1E8CF}, {0x1E950, 0x1E959}, {0x1EC71, 0x1ECAB},
    {0x1ECAD, 0x1ECAF}, {0x1ECB1, 0x1ECB4}, {0x1ED01, 0x1ED2D}, {0x1ED2F, 0x1ED3D}, {0x1F100, 0x1F10C}, {0x1FBF0, 0x1FBF9},
};
static const uint32_t UNICODE_SPACES[10][2] = { // \s
    {0x9, 0xD}, {0x20, 0x20}, {0x85, 0x85}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
};

static int in_ranges(uint32_t cp, const uint32_t (*r)[2], int n) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) { // binary search for the range that could hold cp
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0]) { hi = mid - 1; }
        else if (cp > r[mid][1]) { lo = mid + 1; }
        else { return 1; }
    }
    return 0;
}

// The class of the character at s (n > 0 bytes left), and its length in *len. A byte
// that does not begin valid UTF-8 is one character of its own, an other symbol.
static int unicode_class(const unsigned char *s, size_t n, int *len) {
    unsigned char b[4] = {0}; // utf8_length may look 4 bytes ahead; a 0 ends any character
    memcpy(b, s, n < 4 ? n : 4);
    *len = utf8_length(b);
    if (*len == 0) { *len = 1; return CLASS_OTHER; }
    uint32_t cp = utf8_decode(b, *len);
    if (in_ranges(cp, UNICODE_LETTERS, (int)(sizeof(UNICODE_LETTERS) / sizeof(UNICODE_LETTERS[0])))) { return CLASS_LETTER; }
    if (in_ranges(cp, UNICODE_NUMBERS, (int)(sizeof(UNICODE_NUMBERS) / sizeof(UNICODE_NUMBERS[0])))) { return CLASS_NUMBER; }
    if (in_ranges(cp, UNICODE_SPACES, (int)(sizeof(UNICODE_SPACES) / sizeof(UNICODE_SPACES[0])))) { return CLASS_SPACE; }
    return CLASS_OTHER;
}
