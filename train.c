/*
train.c: a GPT trained in four stages, in one file of C.

From bytes to a base model: a byte-level BPE tokenizer, GPT-2 with every forward and
backward pass written by hand, AdamW, and stage 1 of training a chat model,
pretraining by next-token prediction. Later stages (SFT, reward modeling, RLHF)
build on the same pieces.

Left out on purpose:
  - no dependencies beyond libc and (optionally) OpenMP: every matrix multiply is ours,
    so a reader can see the whole computation;
  - fp32 only: no mixed precision, no fused-kernel libraries, nothing hidden;
  - no dropout: at these sizes and step counts it only slows learning;
  - one machine, one process: no distributed training.

Run it:
    make run-cpu     builds, generates data/world, trains tokenizer and model, samples
    make test        every check, against finite differences and PyTorch

Sections (search for the banner titles):
   1. utilities: checked libc calls, RNG, timer
   2. the tokenizer: bytes <-> token ids (byte-level BPE)
   3. data: text -> batches of token ids
   4. layers: forward and backward of each building block
   6. the model: GPT-2 parameters, activations, forward, backward
   7. the optimizer: AdamW, learning-rate schedule, gradient clipping
   8. sampling: temperature and top-k, generation with a KV cache
   9. checkpoints: save and load, with magic number and version
  10. stage 1: pretraining
  14. command line and main
(sections 5, 11, 12, 13 come with SFT, reward modeling and RLHF)

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

// ----------------------------------------------------------------------------
// 1. utilities: checked libc calls, RNG, timer

// Each wrapper has the signature of the call it wraps, and on failure names the
// file and line of the caller, what went wrong, and what to try.
static void fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error (%s:%d): ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(EXIT_FAILURE);
}
#define FAIL(...) fail(__FILE__, __LINE__, __VA_ARGS__)

static FILE *fopen_check(const char *path, const char *mode, const char *file, int line) {
    FILE *f = fopen(path, mode);
    if (f == NULL) {
        fail(file, line, "cannot open %s for %s (%s). Check the path, or the flag that names it.", path,
             mode[0] == 'r' ? "reading" : "writing", strerror(errno));
    }
    return f;
}
#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)

static void fread_check(void *ptr, size_t size, size_t nmemb, FILE *f, const char *file, int line) {
    size_t got = fread(ptr, size, nmemb, f);
    if (got != nmemb) {
        fail(file, line, "file ended early or could not be read (read %zu of %zu items): the file is truncated or "
             "not of this format; regenerate it", got, nmemb);
    }
}
#define freadCheck(ptr, size, nmemb, f) fread_check(ptr, size, nmemb, f, __FILE__, __LINE__)

static void fwrite_check(const void *ptr, size_t size, size_t nmemb, FILE *f, const char *file, int line) {
    if (fwrite(ptr, size, nmemb, f) != nmemb) { fail(file, line, "write failed (%s): is the disk full?", strerror(errno)); }
}
#define fwriteCheck(ptr, size, nmemb, f) fwrite_check(ptr, size, nmemb, f, __FILE__, __LINE__)

static void fclose_check(FILE *f, const char *file, int line) {
    if (fclose(f) != 0) { fail(file, line, "closing a file failed (%s): is the disk full?", strerror(errno)); }
}
#define fcloseCheck(f) fclose_check(f, __FILE__, __LINE__)

static void *malloc_check(size_t size, const char *file, int line) {
    void *p = malloc(size);
    if (p == NULL && size > 0) {
        fail(file, line, "out of memory allocating %.1f MB: try a smaller batch (-b), context (-t) or model", size / 1e6);
    }
    return p;
}
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)

static void *calloc_check(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n, size);
    if (p == NULL && n > 0 && size > 0) {
        fail(file, line, "out of memory allocating %.1f MB: try a smaller batch (-b), context (-t) or model", n * size / 1e6);
    }
    return p;
}
#define callocCheck(n, size) calloc_check(n, size, __FILE__, __LINE__)

// Reads a whole file into a NUL-terminated buffer.
static char *read_whole_file(const char *path, size_t *size) {
    FILE *f = fopenCheck(path, "rb");
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
    fcloseCheck(f);
    buf[len] = '\0';
    *size = len;
    return buf;
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
enum { RNG_INIT = 1, RNG_DATA = 2, RNG_SAMPLE = 3 };

// uniform in [0, 1), from the top 24 bits (exactly representable as a float)
static float random_f32(uint64_t *state) { return (float)(random_u64(state) >> 40) / 16777216.0f; }

// standard normal by Box-Muller, computed in double for the same bits everywhere
static double random_normal(uint64_t *state) {
    double u1 = ((double)(random_u64(state) >> 11) + 1.0) / 9007199254740993.0; // (0, 1]
    double u2 = (double)(random_u64(state) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ----------------------------------------------------------------------------
// 2. the tokenizer: bytes <-> token ids (byte-level BPE)
//
// Token ids: 0..255 are the raw bytes, so every byte string can be encoded.
// Then come the special tokens, which no text ever encodes to (they are only ever
// inserted by code), then one token per learned merge, in the order learned.
//
// Training (BPE): split the text into chunks (below), then repeatedly merge the
// most frequent adjacent pair of tokens into a new token. minbpe-style example:
//     aaabdaaabac  ->  merge (a,a)=Z:  ZabdZabac  ->  (Z,a)=Y:  YbdYbac  ->  (Y,b)=X:  XdXac
// Merges never cross chunk boundaries. A chunk is, as in GPT-2, one of:
//     an optional space and a run of letters (bytes >= 0x80 count as letters, so
//     UTF-8 characters stay inside words):           " world", "caf\xc3\xa9"
//     an optional space and a run of digits:        " 2024"
//     an optional space and a run of other symbols: " (!", "."
//     a run of whitespace, leaving a last space before a word to that word: "\n\n"
// Encoding applies the learned merges to each chunk, lowest rank (earliest learned) first.

enum { TOKEN_EOT = 256, TOKEN_USER, TOKEN_ASSISTANT, TOKEN_END, NUM_SPECIAL = 4, FIRST_MERGE = 256 + NUM_SPECIAL };
static const char *SPECIAL_TOKENS[NUM_SPECIAL] = {"<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"};

#define TOKENIZER_MAGIC 0x45504231 // "1BPE"
#define TOKENIZER_VERSION 1

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

typedef struct {
    int vocab_size;           // 256 bytes + NUM_SPECIAL + num_merges
    int num_merges;
    int (*merges)[2];         // (num_merges, 2): merge i makes token FIRST_MERGE + i from (left, right)
    PairMap ranks;            // (left, right) -> merge index, for encoding
    unsigned char **bytes;    // (vocab_size,) each token's bytes, for decoding
    int *lengths;             // (vocab_size,)
} Tokenizer;

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
            int a = tok->merges[i - FIRST_MERGE][0], b = tok->merges[i - FIRST_MERGE][1];
            if (a < 0 || b < 0 || a >= i || b >= i || (a >= 256 && a < FIRST_MERGE) || (b >= 256 && b < FIRST_MERGE)) {
                FAIL("tokenizer merge %d is (%d, %d): not two earlier tokens; the file is corrupt, retrain it", i, a, b);
            }
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
        size_t len = chunk_length(s + i, n - i);
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

// File layout (little-endian int32): magic, version, vocab_size, NUM_SPECIAL,
// num_merges, then num_merges pairs (left, right). See doc/formats.md.
void tokenizer_save(const Tokenizer *tok, const char *path) {
    FILE *f = fopenCheck(path, "wb");
    int header[5] = {TOKENIZER_MAGIC, TOKENIZER_VERSION, tok->vocab_size, NUM_SPECIAL, tok->num_merges};
    fwriteCheck(header, sizeof(int), 5, f);
    fwriteCheck(tok->merges, sizeof(int[2]), (size_t)tok->num_merges, f);
    fcloseCheck(f);
}

void tokenizer_load(Tokenizer *tok, const char *path) {
    FILE *f = fopenCheck(path, "rb");
    int header[5];
    freadCheck(header, sizeof(int), 5, f);
    if (header[0] != TOKENIZER_MAGIC) { FAIL("%s is not a tokenizer file (bad magic number)", path); }
    if (header[1] != TOKENIZER_VERSION) { FAIL("%s is tokenizer version %d, this program reads %d: retrain it with ./train pretrain", path, header[1], TOKENIZER_VERSION); }
    if (header[3] != NUM_SPECIAL || header[4] < 0 || header[2] != FIRST_MERGE + header[4]) { FAIL("%s: inconsistent tokenizer header; retrain it", path); }
    tok->num_merges = header[4];
    tok->merges = mallocCheck((size_t)(tok->num_merges > 0 ? tok->num_merges : 1) * sizeof(int[2]));
    freadCheck(tok->merges, sizeof(int[2]), (size_t)tok->num_merges, f);
    fcloseCheck(f);
    tokenizer_index(tok);
}

// ----------------------------------------------------------------------------
// 3. data: text -> batches of token ids

// Pretraining batches: B windows of T+1 consecutive tokens. Training windows start
// at random offsets (the data RNG stream); validation windows are consecutive from
// the start, so every evaluation sees the same tokens.
typedef struct {
    const int *tokens;   // (n,)
    size_t n;
    int B, T;
    uint64_t rng;        // RNG_DATA stream; saved in checkpoints so a resumed run continues the same order
    int *inputs;         // (B,T)
    int *targets;        // (B,T) inputs shifted left by one
} DataLoader;

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

// ----------------------------------------------------------------------------
// 4. layers: forward and backward of each building block

// The matrix multiply engine. Every matmul in the model goes through gemm():
//     c (M,N) = c * accumulate + a (M,K) . b (K,N)
// where element (i,k) of a is a[i*a_rs + k*a_cs] and element (k,j) of b is
// b[k*b_rs + j*b_cs], so a transposed operand is just other strides; c is row-major.
// The plain math is three loops (for i, for j, for k: c[i][j] += a[i][k] * b[k][j]).
// For speed (see doc/performance.md) the loops are blocked as in BLIS/GotoBLAS:
//   - c is cut into MC x NC tiles, one thread per tile (OpenMP);
//   - within a tile, k runs in blocks of KC; the KC x NC slice of b and the MC x KC
//     slice of a are copied ("packed") into contiguous panels that stay in cache;
//   - the micro-kernel computes an MR x NR block of c in registers: for each k, an
//     outer product of MR values of a and NR values of b. The compiler vectorizes
//     its inner loop over NR with FMA instructions.
// Every element of c is summed by one thread, in the same order of k, whatever the
// number of threads: results do not depend on OMP_NUM_THREADS.
#define MR 6
#define NR 32
#define MC 96
#define KC 256
#define NC 256

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

void gemm_free(void) {
    free(gemm_pack);
    gemm_pack = NULL;
    gemm_pack_threads = 0;
}

// c[0:mr, 0:nr] (+)= ap (kc, MR panel) . bp (kc, NR panel), the MR x NR sums kept in registers
static void gemm_micro(float *c, size_t ldc, const float *ap, const float *bp, int kc, int mr, int nr, int overwrite) {
    float acc[MR][NR] = {{0}};
    for (int k = 0; k < kc; k++) {
        for (int i = 0; i < MR; i++) {
            float a = ap[k * MR + i];
            for (int j = 0; j < NR; j++) { acc[i][j] += a * bp[k * NR + j]; }
        }
    }
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) { c[i * ldc + j] = overwrite ? acc[i][j] : c[i * ldc + j] + acc[i][j]; }
    }
}

static void gemm(float *c, size_t ldc, const float *a, size_t a_rs, size_t a_cs, const float *b, size_t b_rs,
                 size_t b_cs, int M, int N, int K, int accumulate) {
    if (M <= 0 || N <= 0) { return; }
    if (K <= 0) { // an empty sum
        if (!accumulate) { for (int i = 0; i < M; i++) { memset(c + (size_t)i * ldc, 0, (size_t)N * sizeof(float)); } }
        return;
    }
    int threads = max_threads();
    if (threads > gemm_pack_threads) {
        free(gemm_pack);
        gemm_pack = mallocCheck((size_t)threads * (MC * KC + KC * NC) * sizeof(float));
        gemm_pack_threads = threads;
    }
    int tiles_m = (M + MC - 1) / MC, tiles_n = (N + NC - 1) / NC;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int tile = 0; tile < tiles_m * tiles_n; tile++) {
        int ic = (tile / tiles_n) * MC, jc = (tile % tiles_n) * NC;
        int mc = M - ic < MC ? M - ic : MC, nc = N - jc < NC ? N - jc : NC;
        float *ap = gemm_pack + (size_t)thread_id() * (MC * KC + KC * NC);
        float *bp = ap + MC * KC;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = K - pc < KC ? K - pc : KC;
            // pack b[pc:pc+kc, jc:jc+nc] into NR-wide panels, k-major, zero-padded
            for (int jr = 0; jr < nc; jr += NR) {
                float *panel = bp + (size_t)jr * kc;
                for (int k = 0; k < kc; k++) {
                    const float *brow = b + (size_t)(pc + k) * b_rs + (size_t)(jc + jr) * b_cs;
                    for (int j = 0; j < NR; j++) { panel[k * NR + j] = jr + j < nc ? brow[(size_t)j * b_cs] : 0.0f; }
                }
            }
            // pack a[ic:ic+mc, pc:pc+kc] into MR-tall panels, k-major, zero-padded
            for (int ir = 0; ir < mc; ir += MR) {
                float *panel = ap + (size_t)ir * kc;
                for (int i = 0; i < MR; i++) {
                    if (ir + i >= mc) { for (int k = 0; k < kc; k++) { panel[k * MR + i] = 0.0f; } continue; }
                    const float *arow = a + (size_t)(ic + ir + i) * a_rs + (size_t)pc * a_cs;
                    for (int k = 0; k < kc; k++) { panel[k * MR + i] = arow[(size_t)k * a_cs]; }
                }
            }
            int overwrite = (pc == 0 && !accumulate);
            for (int jr = 0; jr < nc; jr += NR) {
                for (int ir = 0; ir < mc; ir += MR) {
                    gemm_micro(c + (size_t)(ic + ir) * ldc + jc + jr, ldc, ap + (size_t)ir * kc, bp + (size_t)jr * kc, kc,
                               mc - ir < MR ? mc - ir : MR, nc - jr < NR ? nc - jr : NR, overwrite);
                }
            }
        }
    }
}

// encoder: token embedding plus position embedding
//   out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
// out (B,T,C), inp (B,T) token ids, wte (V,C), wpe (maxT,C)
void encoder_forward(float *out, const int *inp, const float *wte, const float *wpe, int B, int T, int C) {
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
void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T, int C) {
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
// Ref: Ba et al. 2016, arXiv:1607.06450; derivation in doc/layernorm.md
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int B, int T, int C) {
    #pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) {
        const float *x = inp + (size_t)bt * C;
        float *out_bt = out + (size_t)bt * C;
        float m = 0.0f;
        for (int i = 0; i < C; i++) { m += x[i]; }
        m /= C;
        float v = 0.0f;
        for (int i = 0; i < C; i++) { float xshift = x[i] - m; v += xshift * xshift; }
        v /= C;
        float s = 1.0f / sqrt(v + 1e-5f);
        for (int i = 0; i < C; i++) { out_bt[i] = (s * (x[i] - m)) * weight[i] + bias[i]; }
        mean[bt] = m;
        rstd[bt] = s;
    }
}

// in the forward pass out = norm * weight + bias, with norm = (x - mean) * rstd, so
//   dbias += dout, dweight += dout * norm, and with dnorm = dout * weight:
//   dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int B, int T, int C) {
    // pass 1: dinp, one row per iteration
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
    // pass 2: dweight and dbias, one channel per iteration (a sum over rows, kept in one thread)
    #pragma omp parallel for
    for (int i = 0; i < C; i++) {
        float dw = 0.0f, db = 0.0f;
        for (int bt = 0; bt < B * T; bt++) {
            float d = dout[(size_t)bt * C + i];
            db += d;
            dw += d * (inp[(size_t)bt * C + i] - mean[bt]) * rstd[bt];
        }
        dweight[i] += dw;
        dbias[i] += db;
    }
}

// matmul: a linear layer
//   out[b,t,o] = bias[o] + sum_i inp[b,t,i] * weight[o,i]
// out (B,T,OC), inp (B,T,C), weight (OC,C), bias (OC) or NULL
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int B, int T, int C, int OC) {
    int BT = B * T;
    if (BT < MR) {
        // a few rows (generation, one token at a time): plain dot products, parallel over outputs
        #pragma omp parallel for
        for (int o = 0; o < OC; o++) {
            const float *w = weight + (size_t)o * C;
            for (int bt = 0; bt < BT; bt++) {
                const float *x = inp + (size_t)bt * C;
                float sum = bias ? bias[o] : 0.0f;
                for (int i = 0; i < C; i++) { sum += x[i] * w[i]; }
                out[(size_t)bt * OC + o] = sum;
            }
        }
        return;
    }
    // out (BT,OC) = inp (BT,C) . weight^T: b[k][j] = weight[j*C + k]
    gemm(out, (size_t)OC, inp, (size_t)C, 1, weight, 1, (size_t)C, BT, OC, C, 0);
    if (bias) {
        #pragma omp parallel for
        for (int bt = 0; bt < BT; bt++) {
            for (int o = 0; o < OC; o++) { out[(size_t)bt * OC + o] += bias[o]; }
        }
    }
}

// in the forward pass out = inp . weight^T + bias, so
//   dinp += dout . weight        (BT,OC) . (OC,C)
//   dweight += dout^T . inp      (OC,BT) . (BT,C)
//   dbias += sum over (b,t) of dout
void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int B, int T, int C, int OC) {
    int BT = B * T;
    gemm(dinp, (size_t)C, dout, (size_t)OC, 1, weight, (size_t)C, 1, BT, C, OC, 1);
    gemm(dweight, (size_t)C, dout, 1, (size_t)OC, inp, (size_t)C, 1, OC, C, BT, 1);
    if (dbias) {
        #pragma omp parallel for
        for (int o = 0; o < OC; o++) {
            float sum = 0.0f;
            for (int bt = 0; bt < BT; bt++) { sum += dout[(size_t)bt * OC + o]; }
            dbias[o] += sum;
        }
    }
}

// attention: causal multi-head self-attention, for each head h
//   att[t,t2] = softmax over t2 <= t of (q[t] . k[t2]) / sqrt(HS)
//   out[t] = sum_t2 att[t,t2] * v[t2]
// inp (B,T,3C) holds q, k, v side by side (head h at channels h*HS .. h*HS+HS-1 of each);
// out (B,T,C); att (B,NH,T,T) the probabilities, saved for backward (zero above the diagonal)
// Ref: Vaswani et al. 2017, arXiv:1706.03762
void attention_forward(float *out, float *att, const float *inp, int B, int T, int C, int NH) {
    int HS = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrt((float)HS);
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float *q = inp + ((size_t)b * T + t) * C3 + h * HS;
                float *att_bth = att + (((size_t)b * NH + h) * T + t) * T;
                // pass 1: scores q.k and their maximum, for a stable softmax
                float maxval = -FLT_MAX;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = inp + ((size_t)b * T + t2) * C3 + C + h * HS;
                    float dot = 0.0f;
                    for (int i = 0; i < HS; i++) { dot += q[i] * k[i]; }
                    dot *= scale;
                    att_bth[t2] = dot;
                    if (dot > maxval) { maxval = dot; }
                }
                // pass 2: exponentiate and normalize; future positions get probability 0
                float sum = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) { att_bth[t2] = exp(att_bth[t2] - maxval); sum += att_bth[t2]; }
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
        }
    }
}

// Backward through the three passes above, in reverse. datt (B,NH,T,T) is scratch
// (it ends up holding the gradient of the scores). One thread owns a whole (b,h),
// so the sums into dk and dv over t have a fixed order.
void attention_backward(float *dinp, float *datt, const float *dout, const float *inp, const float *att,
                        int B, int T, int C, int NH) {
    int HS = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrt((float)HS);
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float *att_bth = att + (((size_t)b * NH + h) * T + t) * T;
                float *datt_bth = datt + (((size_t)b * NH + h) * T + t) * T;
                const float *dout_bth = dout + ((size_t)b * T + t) * C + h * HS;
                // pass 3 was out[t] = sum_t2 att[t,t2] v[t2], so
                //   datt[t,t2] = dout[t] . v[t2]   and   dv[t2] += att[t,t2] * dout[t]
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = inp + ((size_t)b * T + t2) * C3 + 2 * C + h * HS;
                    float *dv = dinp + ((size_t)b * T + t2) * C3 + 2 * C + h * HS;
                    float dot = 0.0f;
                    for (int i = 0; i < HS; i++) {
                        dot += dout_bth[i] * v[i];
                        dv[i] += att_bth[t2] * dout_bth[i];
                    }
                    datt_bth[t2] = dot;
                }
                // pass 2 was att = softmax(scores), so
                //   dscores[t2] = att[t2] * (datt[t2] - sum_t3 att[t3] * datt[t3])
                float weighted = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) { weighted += att_bth[t2] * datt_bth[t2]; }
                for (int t2 = 0; t2 <= t; t2++) { datt_bth[t2] = att_bth[t2] * (datt_bth[t2] - weighted); }
                // pass 1 was scores[t2] = scale * q[t] . k[t2], so
                //   dq[t] += scale * sum_t2 dscores[t2] k[t2]   and   dk[t2] += scale * dscores[t2] q[t]
                const float *q = inp + ((size_t)b * T + t) * C3 + h * HS;
                float *dq = dinp + ((size_t)b * T + t) * C3 + h * HS;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = inp + ((size_t)b * T + t2) * C3 + C + h * HS;
                    float *dk = dinp + ((size_t)b * T + t2) * C3 + C + h * HS;
                    float ds = datt_bth[t2] * scale;
                    for (int i = 0; i < HS; i++) {
                        dq[i] += ds * k[i];
                        dk[i] += ds * q[i];
                    }
                }
            }
        }
    }
}

// gelu, the tanh approximation used by GPT-2 (Ref: GELU)
//   out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// out, inp (N,)
#define GELU_SCALE 0.7978845608028654f // sqrt(2/pi)

// tanh u = 1 - 2 / (e^(2u) + 1): libm's exp is several times faster than its tanh,
// and the absolute error stays near 1e-7 (exp overflowing to inf gives exactly 1)
static float fast_tanh(float u) { return 1.0f - 2.0f / (exp(2.0f * u) + 1.0f); }

void gelu_forward(float *out, const float *inp, size_t N) {
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + fast_tanh(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

// with u = sqrt(2/pi) (x + 0.044715 x^3), out = 0.5 x (1 + tanh u), so
//   dout/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float th = fast_tanh(GELU_SCALE * (x + 0.044715f * x * x * x));
        float sech2 = 1.0f - th * th;
        float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += grad * dout[i];
    }
}

// residual: out = inp1 + inp2, all (N,); backward passes dout to both
void residual_forward(float *out, const float *inp1, const float *inp2, size_t N) {
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) { out[i] = inp1[i] + inp2[i]; }
}

void residual_backward(float *dinp1, float *dinp2, const float *dout, size_t N) {
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
void crossentropy_softmax_forward(float *losses, float *probs, const float *logits, const int *targets, int B, int T, int V) {
    #pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) {
        const float *logits_bt = logits + (size_t)bt * V;
        float *probs_bt = probs + (size_t)bt * V;
        float maxval = -FLT_MAX;
        for (int i = 0; i < V; i++) { if (logits_bt[i] > maxval) { maxval = logits_bt[i]; } }
        float sum = 0.0f;
        for (int i = 0; i < V; i++) { probs_bt[i] = exp(logits_bt[i] - maxval); sum += probs_bt[i]; }
        for (int i = 0; i < V; i++) { probs_bt[i] /= sum; }
        losses[bt] = targets[bt] >= 0 ? -log(probs_bt[targets[bt]]) : 0.0f;
    }
}

// with loss = -log softmax(logits)[target], dloss/dlogits[i] = probs[i] - (i == target)
// dlosses (B,T): the weight of each position's loss in the total (0 where target < 0)
void crossentropy_softmax_backward(float *dlogits, const float *dlosses, const float *probs, const int *targets,
                                   int B, int T, int V) {
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
// 6. the model: GPT-2 parameters, activations, forward, backward

typedef struct {
    int max_seq_len; // maxT: rows of the position table
    int vocab_size;  // V
    int num_layers;  // L
    int num_heads;   // NH
    int channels;    // C
} GPTConfig;

// The parameters, in the order of the checkpoint file. Names and shapes follow
// Hugging Face's GPT2LMHeadModel one to one (doc/formats.md gives the mapping; HF
// stores its Conv1D weights transposed, (in, out), where we store (out, in)).
#define NUM_PARAMETER_TENSORS 16
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
}

// weight decay applies to the matrices (embeddings and linear weights), not to
// biases or layernorm parameters
static const int PARAMETER_DECAYS[NUM_PARAMETER_TENSORS] = {1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0};
// points each field of a tensor struct into one block of memory, in order
static void point_tensors(float **fields, const size_t *sizes, int count, float *memory) {
    for (int i = 0; i < count; i++) {
        fields[i] = memory;
        memory += sizes[i];
    }
}

#define NUM_ACTIVATION_TENSORS 21
typedef struct {
    float *encoded;   // (B, T, C)
    float *ln1;       // (L, B, T, C)
    float *ln1_mean;  // (L, B, T)
    float *ln1_rstd;  // (L, B, T)
    float *qkv;       // (L, B, T, 3C)
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
    float *logits;    // (B, T, V)
    float *probs;     // (B, T, V)
} ActivationTensors;

void fill_in_activation_sizes(size_t *sizes, GPTConfig config, int B, int T) {
    size_t C = (size_t)config.channels, L = (size_t)config.num_layers, NH = (size_t)config.num_heads;
    size_t V = (size_t)config.vocab_size, BT = (size_t)B * (size_t)T;
    sizes[0] = BT * C;               // encoded
    sizes[1] = L * BT * C;           // ln1
    sizes[2] = L * BT;               // ln1_mean
    sizes[3] = L * BT;               // ln1_rstd
    sizes[4] = L * BT * 3 * C;       // qkv
    sizes[5] = L * BT * C;           // atty
    sizes[6] = L * BT * NH * (size_t)T; // att
    sizes[7] = L * BT * C;           // attproj
    sizes[8] = L * BT * C;           // residual2
    sizes[9] = L * BT * C;           // ln2
    sizes[10] = L * BT;              // ln2_mean
    sizes[11] = L * BT;              // ln2_rstd
    sizes[12] = L * BT * 4 * C;      // fch
    sizes[13] = L * BT * 4 * C;      // fch_gelu
    sizes[14] = L * BT * C;          // fcproj
    sizes[15] = L * BT * C;          // residual3
    sizes[16] = BT * C;              // lnf
    sizes[17] = BT;                  // lnf_mean
    sizes[18] = BT;                  // lnf_rstd
    sizes[19] = BT * V;              // logits
    sizes[20] = BT * V;              // probs
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
    a.qkv += l * 3 * BTC;       a.atty += l * BTC;          a.att += l * BT * NH * T;
    a.attproj += l * BTC;       a.residual2 += l * BTC;
    a.ln2 += l * BTC;           a.ln2_mean += l * BT;       a.ln2_rstd += l * BT;
    a.fch += l * 4 * BTC;       a.fch_gelu += l * 4 * BTC;
    a.fcproj += l * BTC;        a.residual3 += l * BTC;
    return a;
}

// One GPT. Every stage's models are GPTs: the policy and its frozen reference
// (LM head), the reward and value models (scalar head, with the reward stages).
// Frozen models never allocate gradients or optimizer state.
typedef struct {
    GPTConfig config;
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
    size_t num_activations;
    int batch_size, seq_len;  // the (B, T) the activations were allocated for
    int *inputs, *targets;    // (B, T) copies of the last forward's inputs and targets
    float *losses;            // (B, T) loss at each position of the last forward (0 without a target)
    float *dlosses;           // (B, T) weight of each position in the loss, for backward
    float mean_loss;          // mean loss over positions with a target of the last forward; -1 without targets
    int num_targets;          // positions with a target in the last forward
} GPT;

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
    model->params_memory = mallocCheck(model->num_parameters * sizeof(float));
    point_tensors((float **)&model->params, model->param_sizes, NUM_PARAMETER_TENSORS, model->params_memory);
    model->mean_loss = -1.0f;
}

// GPT-2 initialization: weights normal(0, 0.02), the two residual projections of
// each block scaled by 1/sqrt(2L) so the residual stream's variance does not grow
// with depth; biases 0; layernorm weights 1.
void gpt_init(GPT *model, uint64_t seed) {
    uint64_t rng = rng_stream(seed, RNG_INIT);
    float residual_std = 0.02f / sqrt(2.0f * model->config.num_layers);
    float *p = model->params_memory;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        size_t n = model->param_sizes[t];
        int is_ln_weight = (t == 2 || t == 8 || t == 14);
        float std = (t == 6 || t == 12) ? residual_std : 0.02f;
        for (size_t i = 0; i < n; i++) {
            p[i] = PARAMETER_DECAYS[t] ? (float)(std * random_normal(&rng)) : (is_ln_weight ? 1.0f : 0.0f);
        }
        p += n;
    }
}

void gpt_free(GPT *model) {
    free(model->params_memory);
    free(model->grads_memory);
    free(model->m_memory);
    free(model->v_memory);
    free(model->acts_memory);
    free(model->grads_acts_memory);
    free(model->inputs);
    free(model->targets);
    free(model->losses);
    free(model->dlosses);
    memset(model, 0, sizeof(*model));
}

// (re)allocates activations for a batch of (B, T); kept while B and T stay the same
static void gpt_alloc_activations(GPT *model, int B, int T) {
    if (T > model->config.max_seq_len) { FAIL("sequence length %d exceeds the model's context of %d", T, model->config.max_seq_len); }
    if (model->acts_memory && B == model->batch_size && T == model->seq_len) { return; }
    free(model->acts_memory); free(model->grads_acts_memory);
    free(model->inputs); free(model->targets); free(model->losses); free(model->dlosses);
    model->grads_acts_memory = NULL;
    model->batch_size = B;
    model->seq_len = T;
    fill_in_activation_sizes(model->act_sizes, model->config, B, T);
    model->num_activations = 0;
    for (int i = 0; i < NUM_ACTIVATION_TENSORS; i++) { model->num_activations += model->act_sizes[i]; }
    model->acts_memory = mallocCheck(model->num_activations * sizeof(float));
    point_tensors((float **)&model->acts, model->act_sizes, NUM_ACTIVATION_TENSORS, model->acts_memory);
    model->inputs = mallocCheck((size_t)B * T * sizeof(int));
    model->targets = mallocCheck((size_t)B * T * sizeof(int));
    model->losses = mallocCheck((size_t)B * T * sizeof(float));
    model->dlosses = mallocCheck((size_t)B * T * sizeof(float));
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
    memcpy(model->inputs, inputs, (size_t)B * T * sizeof(int));
    if (targets) { memcpy(model->targets, targets, (size_t)B * T * sizeof(int)); }

    ParameterTensors p = model->params;
    ActivationTensors a = model->acts;
    size_t BTC = (size_t)B * T * C;
    encoder_forward(a.encoded, inputs, p.wte, p.wpe, B, T, C);
    for (int l = 0; l < L; l++) {
        ParameterTensors lp = layer_params(p, l, C);
        ActivationTensors la = layer_acts(a, l, B, T, C, NH);
        const float *residual = l == 0 ? a.encoded : a.residual3 + (size_t)(l - 1) * BTC;
        // the block: x + attn(ln1(x)), then x + mlp(ln2(x))
        layernorm_forward(la.ln1, la.ln1_mean, la.ln1_rstd, residual, lp.ln1w, lp.ln1b, B, T, C);
        matmul_forward(la.qkv, la.ln1, lp.qkvw, lp.qkvb, B, T, C, 3 * C);
        attention_forward(la.atty, la.att, la.qkv, B, T, C, NH);
        matmul_forward(la.attproj, la.atty, lp.attprojw, lp.attprojb, B, T, C, C);
        residual_forward(la.residual2, residual, la.attproj, BTC);
        layernorm_forward(la.ln2, la.ln2_mean, la.ln2_rstd, la.residual2, lp.ln2w, lp.ln2b, B, T, C);
        matmul_forward(la.fch, la.ln2, lp.fcw, lp.fcb, B, T, C, 4 * C);
        gelu_forward(la.fch_gelu, la.fch, BTC * 4);
        matmul_forward(la.fcproj, la.fch_gelu, lp.fcprojw, lp.fcprojb, B, T, 4 * C, C);
        residual_forward(la.residual3, la.residual2, la.fcproj, BTC);
    }
    layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, a.residual3 + (size_t)(L - 1) * BTC, p.lnfw, p.lnfb, B, T, C);
    matmul_forward(a.logits, a.lnf, p.wte, NULL, B, T, C, V); // the LM head is the token embedding, tied

    model->mean_loss = -1.0f;
    if (targets == NULL) { return; }
    // the loss is the mean over positions that have a target; probs holds the softmax
    float *losses = model->losses;
    crossentropy_softmax_forward(losses, a.probs, a.logits, targets, B, T, V);
    double sum = 0.0;
    int count = 0;
    for (int i = 0; i < B * T; i++) {
        if (targets[i] >= 0) { sum += losses[i]; count++; }
    }
    model->num_targets = count;
    model->mean_loss = count > 0 ? (float)(sum / count) : 0.0f;
}

// Backward pass, after a forward with targets: adds the gradient of
// loss_scale * mean_loss to model->grads (gradient accumulation passes 1/steps).
void gpt_backward(GPT *model, float loss_scale) {
    if (model->mean_loss < 0) { FAIL("gpt_backward needs a forward pass with targets first"); }
    GPTConfig cfg = model->config;
    int B = model->batch_size, T = model->seq_len;
    int V = cfg.vocab_size, L = cfg.num_layers, NH = cfg.num_heads, C = cfg.channels;
    if (model->grads_memory == NULL) {
        model->grads_memory = callocCheck(model->num_parameters, sizeof(float));
        point_tensors((float **)&model->grads, model->param_sizes, NUM_PARAMETER_TENSORS, model->grads_memory);
    }
    if (model->grads_acts_memory == NULL) {
        model->grads_acts_memory = mallocCheck(model->num_activations * sizeof(float));
        point_tensors((float **)&model->grads_acts, model->act_sizes, NUM_ACTIVATION_TENSORS, model->grads_acts_memory);
    }
    // activation gradients are scratch for this pass: zero them, since every backward adds
    memset(model->grads_acts_memory, 0, model->num_activations * sizeof(float));

    ParameterTensors p = model->params, g = model->grads;
    ActivationTensors a = model->acts, da = model->grads_acts;
    size_t BTC = (size_t)B * T * C;
    // the mean over positions with a target: each such position weighs loss_scale / count
    for (int i = 0; i < B * T; i++) {
        model->dlosses[i] = model->targets[i] >= 0 ? loss_scale / (float)model->num_targets : 0.0f;
    }
    crossentropy_softmax_backward(da.logits, model->dlosses, a.probs, model->targets, B, T, V);
    matmul_backward(da.lnf, g.wte, NULL, da.logits, a.lnf, p.wte, B, T, C, V);
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
        attention_backward(lda.qkv, lda.att, lda.atty, la.qkv, la.att, B, T, C, NH);
        matmul_backward(lda.ln1, lg.qkvw, lg.qkvb, lda.qkv, la.ln1, lp.qkvw, B, T, C, 3 * C);
        layernorm_backward(dresidual, lg.ln1w, lg.ln1b, lda.ln1, residual, lp.ln1w, la.ln1_mean, la.ln1_rstd, B, T, C);
    }
    encoder_backward(g.wte, g.wpe, da.encoded, model->inputs, B, T, C);
}

void gpt_zero_grad(GPT *model) {
    if (model->grads_memory) { memset(model->grads_memory, 0, model->num_parameters * sizeof(float)); }
}

// The KV cache: generation one token at a time. Keys and values of every earlier
// position are kept, so each new token costs one pass over the weights instead of
// a forward over the whole sequence. The step below is gpt_forward with B = T = 1,
// except that attention reads the cached keys and values.
typedef struct {
    int max_seq_len, num_layers, channels;
    float *k, *v;   // (L, maxT, C) keys and values of positions 0..pos
    float *x;       // (C) the residual stream of the current token
    float *ln;      // (C)
    float *qkv;     // (3C)
    float *atty;    // (C)
    float *att;     // (maxT) attention probabilities of one head
    float *h;       // (4C) MLP hidden
    float *hg;      // (4C) after gelu
    float *proj;    // (C)
    float *logits;  // (V)
    float stats[2]; // mean, rstd scratch of layernorm
} KVCache;

void kvcache_init(KVCache *kv, GPTConfig cfg) {
    size_t C = (size_t)cfg.channels, T = (size_t)cfg.max_seq_len, L = (size_t)cfg.num_layers;
    kv->max_seq_len = cfg.max_seq_len;
    kv->num_layers = cfg.num_layers;
    kv->channels = cfg.channels;
    kv->k = mallocCheck(L * T * C * sizeof(float));
    kv->v = mallocCheck(L * T * C * sizeof(float));
    kv->x = mallocCheck(C * sizeof(float));
    kv->ln = mallocCheck(C * sizeof(float));
    kv->qkv = mallocCheck(3 * C * sizeof(float));
    kv->atty = mallocCheck(C * sizeof(float));
    kv->att = mallocCheck(T * sizeof(float));
    kv->h = mallocCheck(4 * C * sizeof(float));
    kv->hg = mallocCheck(4 * C * sizeof(float));
    kv->proj = mallocCheck(C * sizeof(float));
    kv->logits = mallocCheck((size_t)cfg.vocab_size * sizeof(float));
}

void kvcache_free(KVCache *kv) {
    free(kv->k); free(kv->v); free(kv->x); free(kv->ln); free(kv->qkv); free(kv->atty);
    free(kv->att); free(kv->h); free(kv->hg); free(kv->proj); free(kv->logits);
}

// Feeds token at position pos (all of 0..pos-1 already fed); returns the logits (V)
// for the next token. Same math as attention_forward, for one query row.
float *gpt_forward_cached(GPT *model, KVCache *kv, int token, int pos) {
    GPTConfig cfg = model->config;
    int C = cfg.channels, NH = cfg.num_heads, HS = C / NH;
    if (pos < 0 || pos >= cfg.max_seq_len) { FAIL("position %d is outside the model's context of %d", pos, cfg.max_seq_len); }
    if (token < 0 || token >= cfg.vocab_size) { FAIL("token %d is outside the vocabulary (0..%d)", token, cfg.vocab_size - 1); }
    ParameterTensors p = model->params;
    float scale = 1.0f / sqrt((float)HS);
    encoder_forward(kv->x, &token, p.wte, p.wpe + (size_t)pos * C, 1, 1, C);
    for (int l = 0; l < cfg.num_layers; l++) {
        float *k_cache = kv->k + (size_t)l * kv->max_seq_len * C, *v_cache = kv->v + (size_t)l * kv->max_seq_len * C;
        layernorm_forward(kv->ln, &kv->stats[0], &kv->stats[1], kv->x, p.ln1w + l * C, p.ln1b + l * C, 1, 1, C);
        matmul_forward(kv->qkv, kv->ln, p.qkvw + (size_t)l * 3 * C * C, p.qkvb + l * 3 * C, 1, 1, C, 3 * C);
        memcpy(k_cache + (size_t)pos * C, kv->qkv + C, (size_t)C * sizeof(float));
        memcpy(v_cache + (size_t)pos * C, kv->qkv + 2 * C, (size_t)C * sizeof(float));
        for (int h = 0; h < NH; h++) {
            const float *q = kv->qkv + h * HS;
            float maxval = -FLT_MAX, sum = 0.0f;
            for (int t2 = 0; t2 <= pos; t2++) {
                const float *k = k_cache + (size_t)t2 * C + h * HS;
                float dot = 0.0f;
                for (int i = 0; i < HS; i++) { dot += q[i] * k[i]; }
                kv->att[t2] = dot * scale;
                if (kv->att[t2] > maxval) { maxval = kv->att[t2]; }
            }
            for (int t2 = 0; t2 <= pos; t2++) { kv->att[t2] = exp(kv->att[t2] - maxval); sum += kv->att[t2]; }
            float *out = kv->atty + h * HS;
            for (int i = 0; i < HS; i++) { out[i] = 0.0f; }
            for (int t2 = 0; t2 <= pos; t2++) {
                const float *v = v_cache + (size_t)t2 * C + h * HS;
                float w = kv->att[t2] / sum;
                for (int i = 0; i < HS; i++) { out[i] += w * v[i]; }
            }
        }
        matmul_forward(kv->proj, kv->atty, p.attprojw + (size_t)l * C * C, p.attprojb + l * C, 1, 1, C, C);
        residual_forward(kv->x, kv->x, kv->proj, (size_t)C);
        layernorm_forward(kv->ln, &kv->stats[0], &kv->stats[1], kv->x, p.ln2w + l * C, p.ln2b + l * C, 1, 1, C);
        matmul_forward(kv->h, kv->ln, p.fcw + (size_t)l * 4 * C * C, p.fcb + l * 4 * C, 1, 1, C, 4 * C);
        gelu_forward(kv->hg, kv->h, (size_t)4 * C);
        matmul_forward(kv->proj, kv->hg, p.fcprojw + (size_t)l * C * 4 * C, p.fcprojb + l * C, 1, 1, 4 * C, C);
        residual_forward(kv->x, kv->x, kv->proj, (size_t)C);
    }
    layernorm_forward(kv->ln, &kv->stats[0], &kv->stats[1], kv->x, p.lnfw, p.lnfb, 1, 1, C);
    matmul_forward(kv->logits, kv->ln, p.wte, NULL, 1, 1, C, cfg.vocab_size);
    return kv->logits;
}

// ----------------------------------------------------------------------------
// 7. the optimizer: AdamW, learning-rate schedule, gradient clipping

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

// Returns the global L2 norm of all gradients; if it exceeds max_norm (> 0), scales
// every gradient by max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_ does.
// The sum of squares runs over fixed chunks, added in order: the same bits for any
// number of threads.
float gpt_clip_grad_norm(GPT *model, float max_norm) {
    enum { CHUNK = 1 << 16 };
    size_t n = model->num_parameters, chunks = (n + CHUNK - 1) / CHUNK;
    double *partial = mallocCheck(chunks * sizeof(double));
    const float *g = model->grads_memory;
    #pragma omp parallel for
    for (size_t c = 0; c < chunks; c++) {
        double sum = 0.0;
        size_t end = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
        for (size_t i = c * CHUNK; i < end; i++) { sum += (double)g[i] * g[i]; }
        partial[c] = sum;
    }
    double total = 0.0;
    for (size_t c = 0; c < chunks; c++) { total += partial[c]; }
    free(partial);
    float norm = (float)sqrt(total);
    if (max_norm > 0 && norm > max_norm) {
        float coef = max_norm / (norm + 1e-6f);
        #pragma omp parallel for
        for (size_t i = 0; i < n; i++) { model->grads_memory[i] *= coef; }
    }
    return norm;
}

// AdamW, step t (1-based), in the order torch.optim.AdamW computes it:
//   p = p * (1 - lr * wd)                         decoupled weight decay (matrices only)
//   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Ref: AdamW
void adamw_update(GPT *model, float lr, float beta1, float beta2, float eps, float weight_decay, int t) {
    if (model->m_memory == NULL) {
        model->m_memory = callocCheck(model->num_parameters, sizeof(float));
        model->v_memory = callocCheck(model->num_parameters, sizeof(float));
    }
    float bias_correction1 = 1.0f - pow(beta1, (float)t);
    float bias_correction2_sqrt = sqrt(1.0f - pow(beta2, (float)t));
    size_t offset = 0;
    for (int tensor = 0; tensor < NUM_PARAMETER_TENSORS; tensor++) {
        size_t n = model->param_sizes[tensor];
        float decay = PARAMETER_DECAYS[tensor] ? weight_decay : 0.0f;
        float *p = model->params_memory + offset, *g = model->grads_memory + offset;
        float *m = model->m_memory + offset, *v = model->v_memory + offset;
        #pragma omp parallel for
        for (size_t i = 0; i < n; i++) {
            p[i] *= 1.0f - lr * decay;
            m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
            v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
            p[i] -= (lr / bias_correction1) * m[i] / (sqrt(v[i]) / bias_correction2_sqrt + eps);
        }
        offset += n;
    }
}

// ----------------------------------------------------------------------------
// 8. sampling: temperature and top-k, generation with a KV cache

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// the median of n values (sorts them)
static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof(double), compare_doubles);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

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

// Extends tokens[0..n) by up to max_new tokens, one KV-cached step each, stopping
// after stop_token (if >= 0) or at the end of the context. tokens must have room
// for max_seq_len ids. Returns the new length.
int gpt_generate(GPT *model, KVCache *kv, int *tokens, int n, int max_new, float temperature, int top_k,
                 int stop_token, uint64_t *rng) {
    int maxT = model->config.max_seq_len, V = model->config.vocab_size;
    if (n < 1) { FAIL("generation needs at least one token to start from"); }
    if (n > maxT) { FAIL("the prompt has %d tokens, more than the model's context of %d", n, maxT); }
    float *scratch = mallocCheck((size_t)V * sizeof(float));
    float *logits = NULL;
    for (int pos = 0; pos < n; pos++) { logits = gpt_forward_cached(model, kv, tokens[pos], pos); } // the prompt
    for (int i = 0; i < max_new && n < maxT; i++) {
        int next = sample_token(logits, V, temperature, top_k, rng, scratch);
        tokens[n++] = next;
        if (next == stop_token || n == maxT) { break; }
        logits = gpt_forward_cached(model, kv, next, n - 1);
    }
    free(scratch);
    return n;
}

// ----------------------------------------------------------------------------
// 9. checkpoints: save and load, with magic number and version
//
// Layout (doc/formats.md): a header of 256 int32, then the parameters as fp32 in
// the order of ParameterTensors, then (if the header says so) AdamW's m and v in
// the same order. Header fields: see the CK_ enum. Files are written to a temporary
// name, flushed to disk and renamed, so a crash never leaves half a checkpoint.

#define CHECKPOINT_MAGIC 0x54504B43 // "CKPT"
#define CHECKPOINT_VERSION 1
enum { CK_MAGIC, CK_VERSION, CK_KIND, CK_MAX_SEQ_LEN, CK_VOCAB, CK_LAYERS, CK_HEADS, CK_CHANNELS,
       CK_HAS_OPTIMIZER, CK_STEP, CK_DATA_RNG_LO, CK_DATA_RNG_HI, CK_HEADER_INTS = 256 };
enum { KIND_BASE = 1 }; // what a checkpoint holds; SFT, reward and policy models come with their stages
static const char *kind_name(int kind) {
    static const char *NAMES[] = {"unknown", "base (pretrained)"};
    return kind >= 1 && kind < (int)(sizeof(NAMES) / sizeof(NAMES[0])) ? NAMES[kind] : NAMES[0];
}

// what a training run needs besides the weights to continue where it stopped
typedef struct {
    int kind;
    int step;           // optimizer steps done
    uint64_t data_rng;  // the data loader's RNG state
} TrainState;

void checkpoint_save(const char *path, const GPT *model, const TrainState *state, int with_optimizer) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopenCheck(tmp, "wb");
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
    fwriteCheck(header, sizeof(int), CK_HEADER_INTS, f);
    fwriteCheck(model->params_memory, sizeof(float), model->num_parameters, f);
    if (header[CK_HAS_OPTIMIZER]) {
        fwriteCheck(model->m_memory, sizeof(float), model->num_parameters, f);
        fwriteCheck(model->v_memory, sizeof(float), model->num_parameters, f);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) { FAIL("cannot flush %s to disk (%s)", tmp, strerror(errno)); }
    fcloseCheck(f);
    if (rename(tmp, path) != 0) { FAIL("cannot rename %s to %s (%s)", tmp, path, strerror(errno)); }
}

// Builds model from the checkpoint at path, with its optimizer state if it has one.
// want_kind > 0 insists on that kind of model.
void checkpoint_load(const char *path, GPT *model, int want_kind, TrainState *state) {
    FILE *f = fopenCheck(path, "rb");
    int header[CK_HEADER_INTS];
    freadCheck(header, sizeof(int), CK_HEADER_INTS, f);
    if (header[CK_MAGIC] != CHECKPOINT_MAGIC) { FAIL("%s is not a checkpoint of train.c (bad magic number)", path); }
    if (header[CK_VERSION] != CHECKPOINT_VERSION) {
        FAIL("%s is checkpoint version %d; this program reads version %d: retrain it", path, header[CK_VERSION], CHECKPOINT_VERSION);
    }
    int kind = header[CK_KIND];
    if (kind != KIND_BASE) { FAIL("%s: unknown model kind %d", path, kind); }
    if (want_kind > 0 && kind != want_kind) {
        FAIL("%s holds a %s model, but a %s model is needed here", path, kind_name(kind), kind_name(want_kind));
    }
    GPTConfig cfg = {.max_seq_len = header[CK_MAX_SEQ_LEN], .vocab_size = header[CK_VOCAB], .num_layers = header[CK_LAYERS],
                     .num_heads = header[CK_HEADS], .channels = header[CK_CHANNELS]};
    gpt_build(model, cfg);
    freadCheck(model->params_memory, sizeof(float), model->num_parameters, f);
    if (header[CK_HAS_OPTIMIZER]) {
        model->m_memory = mallocCheck(model->num_parameters * sizeof(float));
        model->v_memory = mallocCheck(model->num_parameters * sizeof(float));
        freadCheck(model->m_memory, sizeof(float), model->num_parameters, f);
        freadCheck(model->v_memory, sizeof(float), model->num_parameters, f);
    }
    char extra;
    if (fread(&extra, 1, 1, f) != 0) { FAIL("%s is longer than its header says: not a whole checkpoint of this format", path); }
    fcloseCheck(f);
    state->kind = kind;
    state->step = header[CK_STEP];
    state->data_rng = (uint64_t)(uint32_t)header[CK_DATA_RNG_LO] | (uint64_t)(uint32_t)header[CK_DATA_RNG_HI] << 32;
}

// ----------------------------------------------------------------------------
// 10. stage 1: pretraining
//
// Objective: next-token prediction, minimize the mean over positions of
//     -log p(x[t+1] | x[0..t])
// Data: plain text (default: data/world/pretrain_train.txt, val pretrain_val.txt).
// Starts from: random GPT-2 initialization, or a base checkpoint to continue (-c).
// Writes: <out>/tokenizer.bin (trained on the text unless -z names one), <out>/base.bin
// (weights, optimizer state, data position), <out>/pretrain.jsonl (metrics).
// Ref: GPT-2. Simplifications: no dropout; random windows rather than epochs;
// one text stream rather than documents separated by an end-of-text token.

// every setting of every command, with its flag; defaults in CONFIG_DEFAULTS
typedef struct {
    const char *train_path;     // -i training text
    const char *val_path;       // -j validation text
    const char *out_dir;        // -o where outputs go
    const char *init_path;      // -c checkpoint to continue from (pretrain) or sample from
    const char *tokenizer_path; // -z tokenizer to use (default <out>/tokenizer.bin, trained if missing)
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
    int eval_every;             // -e steps between validation losses
    int eval_batches;           // -x batches per validation loss
    int sample_every;           // -y steps between samples (0: only at the end)
    int save_every;             // -S steps between checkpoints (0: only at the end)
    const char *prompt;         // -p prompt for samples
    float temperature;          // -r sampling temperature (0: greedy)
    int top_k;                  // -k sample from the k most likely tokens (0: all)
    int gen_len;                // -m tokens to generate
    uint64_t seed;              // -s
} Config;

static const Config CONFIG_DEFAULTS = {
    .train_path = "data/world/pretrain_train.txt", .val_path = "data/world/pretrain_val.txt", .out_dir = "out",
    .init_path = NULL, .tokenizer_path = NULL, .vocab_size = 1024, .num_layers = 4, .channels = 128,
    .num_heads = 4, .seq_len = 128, .batch_size = 16, .grad_accum = 1, .steps = 360, .lr = 3e-3f, .warmup = 20,
    .final_lr_frac = 0.1f, .weight_decay = 0.1f, .grad_clip = 1.0f, .eval_every = 100, .eval_batches = 8,
    .sample_every = 0, .save_every = 0, .prompt = NULL, .temperature = 0.8f, .top_k = 40, .gen_len = 64,
    .seed = 1337,
};

#define ADAM_BETA1 0.9f
#define ADAM_BETA2 0.95f
#define ADAM_EPS 1e-8f

static void out_path(char *buf, size_t size, const Config *cfg, const char *name) {
    snprintf(buf, size, "%s/%s", cfg->out_dir, name);
}

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

// prints a sample continuing `prompt` (or the first tokens of `fallback`)
void print_sample(GPT *model, const Tokenizer *tok, const char *prompt, const int *fallback, int gen_len,
                  float temperature, int top_k, uint64_t *rng) {
    int maxT = model->config.max_seq_len;
    int *tokens = mallocCheck((size_t)(maxT + (prompt ? (int)strlen(prompt) : 0)) * sizeof(int));
    int n = 4;
    if (prompt) { n = tokenizer_encode(tok, prompt, strlen(prompt), tokens); }
    else { memcpy(tokens, fallback, 4 * sizeof(int)); }
    if (n == 0) { tokens[0] = TOKEN_EOT; n = 1; }
    if (n >= maxT) { FAIL("the prompt is %d tokens long; the model's context is %d", n, maxT); }
    KVCache kv;
    kvcache_init(&kv, model->config);
    int len = gpt_generate(model, &kv, tokens, n, gen_len, temperature, top_k, -1, rng);
    char *text = tokenizer_decode(tok, tokens, len, NULL);
    printf("---\n%s\n---\n", text);
    free(text);
    kvcache_free(&kv);
    free(tokens);
}

void stage_pretrain(const Config *cfg) {
    make_out_dir(cfg);
    Tokenizer tok;
    load_or_train_tokenizer(&tok, cfg);
    size_t n_train, n_val;
    int *train_tokens = encode_file(&tok, cfg->train_path, &n_train);
    int *val_tokens = encode_file(&tok, cfg->val_path, &n_val);
    printf("data: %s %zu tokens, %s %zu tokens\n", cfg->train_path, n_train, cfg->val_path, n_val);

    GPT model;
    TrainState state = {.kind = KIND_BASE, .step = 0};
    DataLoader train, val;
    dataloader_init(&train, train_tokens, n_train, cfg->batch_size, cfg->seq_len, cfg->seed);
    dataloader_init(&val, val_tokens, n_val, cfg->batch_size, cfg->seq_len, cfg->seed);
    if (cfg->init_path) {
        checkpoint_load(cfg->init_path, &model, KIND_BASE, &state);
        train.rng = state.data_rng;
        printf("continuing %s from step %d\n", cfg->init_path, state.step);
    } else {
        GPTConfig gc = {.max_seq_len = cfg->seq_len, .vocab_size = tok.vocab_size, .num_layers = cfg->num_layers,
                        .num_heads = cfg->num_heads, .channels = cfg->channels};
        gpt_build(&model, gc);
        gpt_init(&model, cfg->seed);
    }
    if (model.config.vocab_size != tok.vocab_size) {
        FAIL("the model has a vocabulary of %d but the tokenizer has %d: use the tokenizer it was trained with (-z)",
             model.config.vocab_size, tok.vocab_size);
    }
    if (cfg->seq_len > model.config.max_seq_len) { FAIL("-t %d exceeds the checkpoint's context of %d", cfg->seq_len, model.config.max_seq_len); }
    printf("model: L=%d C=%d NH=%d V=%d T=%d, %.2fM parameters\n", model.config.num_layers, model.config.channels,
           model.config.num_heads, model.config.vocab_size, model.config.max_seq_len, model.num_parameters / 1e6);

    char log_path[4096], ckpt_path[4096];
    out_path(log_path, sizeof(log_path), cfg, "pretrain.jsonl");
    out_path(ckpt_path, sizeof(ckpt_path), cfg, "base.bin");
    FILE *log = fopenCheck(log_path, state.step > 0 ? "ab" : "wb");
    uint64_t sample_rng = rng_stream(cfg->seed, RNG_SAMPLE);
    size_t tokens_per_step = (size_t)cfg->batch_size * cfg->seq_len * cfg->grad_accum;
    double t_start = now_seconds();
    int first_step = state.step;
    for (int step = first_step; step < cfg->steps; step++) {
        double t0 = now_seconds();
        float lr = lr_schedule(step, cfg->steps, cfg->warmup, cfg->lr, cfg->final_lr_frac);
        gpt_zero_grad(&model);
        float loss = 0.0f;
        for (int micro = 0; micro < cfg->grad_accum; micro++) {
            dataloader_next(&train);
            gpt_forward(&model, train.inputs, train.targets, train.B, train.T);
            gpt_backward(&model, 1.0f / cfg->grad_accum);
            loss += model.mean_loss / cfg->grad_accum;
        }
        float norm = gpt_clip_grad_norm(&model, cfg->grad_clip);
        adamw_update(&model, lr, ADAM_BETA1, ADAM_BETA2, ADAM_EPS, cfg->weight_decay, step + 1);
        double dt = now_seconds() - t0, elapsed = now_seconds() - t_start;
        double eta = elapsed / (step + 1 - first_step) * (cfg->steps - step - 1);
        printf("step %4d/%d | loss %.4f | lr %.2e | norm %6.3f | %6.0f tok/s | eta %.0fs\n", step + 1, cfg->steps, loss,
               lr, norm, tokens_per_step / dt, eta);
        fprintf(log, "{\"step\": %d, \"train_loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, \"tokens_per_s\": %.1f",
                step + 1, loss, lr, norm, tokens_per_step / dt);
        int last = step + 1 == cfg->steps;
        if ((cfg->eval_every > 0 && (step + 1) % cfg->eval_every == 0) || last) {
            float val_loss = evaluate(&model, &val, cfg->eval_batches);
            printf("val loss %.4f\n", val_loss);
            fprintf(log, ", \"val_loss\": %.6f", val_loss);
        }
        fprintf(log, "}\n");
        fflush(log);
        if ((cfg->sample_every > 0 && (step + 1) % cfg->sample_every == 0) || last) {
            print_sample(&model, &tok, cfg->prompt, val_tokens, cfg->gen_len, cfg->temperature, cfg->top_k, &sample_rng);
        }
        if ((cfg->save_every > 0 && (step + 1) % cfg->save_every == 0) || last) {
            state.step = step + 1;
            state.data_rng = train.rng;
            checkpoint_save(ckpt_path, &model, &state, 1);
        }
    }
    fcloseCheck(log);
    printf("pretraining: %d steps in %.1f s -> %s\n", cfg->steps - first_step, now_seconds() - t_start, ckpt_path);
    dataloader_free(&train);
    dataloader_free(&val);
    gpt_free(&model);
    tokenizer_free(&tok);
    free(train_tokens);
    free(val_tokens);
}

// ./train sample: text from any checkpoint
void command_sample(const Config *cfg) {
    if (!cfg->init_path) { FAIL("sample needs a checkpoint: -c out/base.bin"); }
    GPT model;
    TrainState state;
    checkpoint_load(cfg->init_path, &model, 0, &state);
    Tokenizer tok;
    char path[4096];
    if (cfg->tokenizer_path) { snprintf(path, sizeof(path), "%s", cfg->tokenizer_path); }
    else { out_path(path, sizeof(path), cfg, "tokenizer.bin"); }
    tokenizer_load(&tok, path);
    if (tok.vocab_size != model.config.vocab_size) {
        FAIL("%s has %d tokens but %s expects %d: pass the model's tokenizer with -z", path, tok.vocab_size,
             cfg->init_path, model.config.vocab_size);
    }
    uint64_t rng = rng_stream(cfg->seed, RNG_SAMPLE);
    int start = TOKEN_EOT;
    if (cfg->prompt == NULL || cfg->prompt[0] == '\0') {
        int tokens[4] = {start, start, start, start};
        print_sample(&model, &tok, NULL, tokens, cfg->gen_len, cfg->temperature, cfg->top_k, &rng);
    } else {
        print_sample(&model, &tok, cfg->prompt, NULL, cfg->gen_len, cfg->temperature, cfg->top_k, &rng);
    }
    tokenizer_free(&tok);
    gpt_free(&model);
}

// ./train bench: the speed of a training step (forward, backward, AdamW) on random
// tokens, at the model size given by the flags; and of one large matmul, the
// machine's ceiling for this code. FLOPs per step as in doc/performance.md.
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
        adamw_update(&model, 1e-4f, ADAM_BETA1, ADAM_BETA2, ADAM_EPS, 0.1f, step + 1);
        times[step] = now_seconds() - t0;
        printf("bench step %d: %.0f ms, loss %.4f\n", step + 1, 1e3 * times[step], model.mean_loss);
    }
    // the median of all steps but the first (which allocates and warms up)
    int first = cfg->steps > 1 ? 1 : 0, count = cfg->steps - first;
    double step_s = count > 0 ? median(times + first, count) : 0.0;
    printf("bench train: L=%d C=%d NH=%d V=%d T=%d B=%d, %.2fM parameters | median %.0f ms/step | %.0f tok/s | %.1f GFLOP/s\n",
           gc.num_layers, gc.channels, gc.num_heads, gc.vocab_size, T, B, model.num_parameters / 1e6, 1e3 * step_s,
           B * T / step_s, flops / step_s / 1e9);
    // the ceiling: one large square matmul through the same engine
    int N = 2048;
    float *a = mallocCheck((size_t)N * N * sizeof(float)), *b = mallocCheck((size_t)N * N * sizeof(float));
    float *c = mallocCheck((size_t)N * N * sizeof(float));
    for (size_t i = 0; i < (size_t)N * N; i++) { a[i] = random_f32(&rng) - 0.5f; b[i] = random_f32(&rng) - 0.5f; }
    double mm[5];
    for (int r = 0; r < 5; r++) {
        double t0 = now_seconds();
        gemm(c, (size_t)N, a, (size_t)N, 1, b, (size_t)N, 1, N, N, N, 0);
        mm[r] = now_seconds() - t0;
    }
    printf("bench matmul: %dx%dx%d | median %.1f ms | %.1f GFLOP/s\n", N, N, N, 1e3 * median(mm, 5), 2.0 * N * N * N / median(mm, 5) / 1e9);
    free(a); free(b); free(c);
    free(times);
    free(tokens); free(inputs); free(targets);
    gpt_free(&model);
}

// ----------------------------------------------------------------------------
// 14. command line and main

#ifndef TESTING
static void error_usage(void) {
    Config d = CONFIG_DEFAULTS;
    fprintf(stderr,
        "usage: ./train <command> [flags]\n"
        "commands:\n"
        "  pretrain   stage 1: train a tokenizer (if needed) and a base model on plain text\n"
        "  sample     generate text from a checkpoint (-c)\n"
        "  bench      time training steps on random tokens at the size given by -L -C -H -V -t -b\n"
        "flags (all optional):\n"
        "  -i <file>  training text                       (%s)\n"
        "  -j <file>  validation text                     (%s)\n"
        "  -o <dir>   output directory                    (%s)\n"
        "  -c <file>  checkpoint to continue / sample from (none)\n"
        "  -z <file>  tokenizer                           (<out>/tokenizer.bin, trained if missing)\n"
        "  -V <int>   vocabulary size for a new tokenizer (%d)\n"
        "  -L <int>   layers                              (%d)\n"
        "  -C <int>   channels                            (%d)\n"
        "  -H <int>   heads                               (%d)\n"
        "  -t <int>   context length T                    (%d)\n"
        "  -b <int>   batch size B                        (%d)\n"
        "  -a <int>   gradient accumulation micro-batches (%d)\n"
        "  -n <int>   optimizer steps                     (%d)\n"
        "  -l <float> peak learning rate                  (%g)\n"
        "  -w <int>   warmup steps                        (%d)\n"
        "  -f <float> final learning rate / peak          (%g)\n"
        "  -d <float> weight decay                        (%g)\n"
        "  -g <float> gradient norm clip, 0 = off         (%g)\n"
        "  -e <int>   steps between validation losses     (%d)\n"
        "  -x <int>   batches per validation loss         (%d)\n"
        "  -y <int>   steps between samples, 0 = at end   (%d)\n"
        "  -S <int>   steps between checkpoints, 0 = at end (%d)\n"
        "  -p <text>  prompt for samples                  (start of the val text)\n"
        "  -r <float> sampling temperature, 0 = greedy    (%g)\n"
        "  -k <int>   top-k, 0 = all tokens               (%d)\n"
        "  -m <int>   tokens to generate                  (%d)\n"
        "  -s <int>   seed                                (%llu)\n",
        d.train_path, d.val_path, d.out_dir, d.vocab_size, d.num_layers, d.channels, d.num_heads, d.seq_len,
        d.batch_size, d.grad_accum, d.steps, d.lr, d.warmup, d.final_lr_frac, d.weight_decay, d.grad_clip,
        d.eval_every, d.eval_batches, d.sample_every, d.save_every, d.temperature, d.top_k, d.gen_len,
        (unsigned long long)d.seed);
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
        if (flag[0] != '-' || strlen(flag) != 2) { fprintf(stderr, "unknown argument '%s'\n", flag); error_usage(); }
        if (i + 1 >= argc) { fprintf(stderr, "flag %s needs a value\n", flag); error_usage(); }
        const char *v = argv[i + 1];
        switch (flag[1]) {
        case 'i': c->train_path = v; break;
        case 'j': c->val_path = v; break;
        case 'o': c->out_dir = v; break;
        case 'c': c->init_path = v; break;
        case 'z': c->tokenizer_path = v; break;
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
        case 'e': c->eval_every = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 'x': c->eval_batches = (int)flag_int(flag, v, 1, 1 << 20); break;
        case 'y': c->sample_every = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 'S': c->save_every = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 'p': c->prompt = v; break;
        case 'r': c->temperature = flag_float(flag, v, 0, 100); break;
        case 'k': c->top_k = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 'm': c->gen_len = (int)flag_int(flag, v, 0, 1 << 30); break;
        case 's': c->seed = (uint64_t)flag_int(flag, v, 0, 0x7fffffffL); break;
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
    config_row("train text", "%s", c->train_path);
    config_row("val text", "%s", c->val_path);
    config_row("output", "%s/", c->out_dir);
    config_row("start from", "%s", c->init_path ? c->init_path : "random init (GPT-2)");
    config_row("model", "L=%d C=%d NH=%d T=%d", c->num_layers, c->channels, c->num_heads, c->seq_len);
    config_row("batch", "B=%d x accum %d, %d steps", c->batch_size, c->grad_accum, c->steps);
    config_row("learning rate", "%.1e, warmup %d, final x%.2f", c->lr, c->warmup, c->final_lr_frac);
    config_row("regularization", "weight decay %.2f, clip %.2f", c->weight_decay, c->grad_clip);
    config_row("seed, threads", "%llu, %d", (unsigned long long)c->seed, max_threads());
    printf("%s", rule);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { error_usage(); }
    Config cfg = CONFIG_DEFAULTS;
    parse_flags(&cfg, argc, argv);
    const char *command = argv[1];
    if (!strcmp(command, "pretrain")) { print_config(command, &cfg); stage_pretrain(&cfg); }
    else if (!strcmp(command, "sample")) { command_sample(&cfg); }
    else if (!strcmp(command, "bench")) { print_config(command, &cfg); command_bench(&cfg); }
    else { fprintf(stderr, "unknown command '%s'\n", command); error_usage(); }
    gemm_free();
    return 0;
}
#endif
