// Tests of train.c in its shipped precision (float), in the order of its sections.
// Gradients against finite differences live in test/test_grad.c (double precision).
#define TESTING
// make check N compiles these tests against a student's copy (-DTRAIN_C='"path"')
#ifndef TRAIN_C
#define TRAIN_C "../train.c"
#endif
#include TRAIN_C
#include "check.h"

static const char *fixture_path = "test/fixtures/gpt_tiny.bin";

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float worst = 0.0f;
    for (size_t i = 0; i < n; i++) { float d = fabs(a[i] - b[i]); if (d > worst || d != d) { worst = d; } }
    return worst;
}

static float max_abs(const float *a, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) { if (fabs(a[i]) > m) { m = fabs(a[i]); } }
    return m;
}

static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

// ----------------------------------------------------------------------------
// 2. the tokenizer

static int roundtrip_ok(const Tokenizer *tok, const char *s, size_t n) {
    int *ids = mallocCheck((n + 1) * sizeof(int));
    int count = tokenizer_encode(tok, s, n, ids);
    size_t len;
    char *back = tokenizer_decode(tok, ids, count, &len);
    int ok = len == n && memcmp(back, s, n) == 0;
    for (int i = 0; i < count; i++) { ok &= ids[i] < 256 || ids[i] >= FIRST_MERGE; } // never a special token
    free(ids);
    free(back);
    return ok;
}

// a deterministic text of made-up words with Zipf frequencies (the word of rank r
// has probability ~ 1/r), so that, as in real text, a few words are very common
// and tens of thousands are rare (the world corpus has only a few hundred words)
static char *zipf_text(size_t bytes) {
    enum { WORDS = 30000 };
    char (*words)[12] = mallocCheck(WORDS * sizeof(*words));
    uint64_t rng = 99;
    for (int w = 0; w < WORDS; w++) {
        int len = 2 + (int)(random_u64(&rng) % 9);
        for (int i = 0; i < len; i++) { words[w][i] = (char)('a' + random_u64(&rng) % 26); }
        words[w][len] = '\0';
    }
    char *text = mallocCheck(bytes + 64);
    size_t n = 0;
    while (n < bytes) {
        int rank = (int)exp(random_f32(&rng) * log((double)WORDS)); // log-uniform rank: P(r) ~ 1/r
        n += (size_t)sprintf(text + n, random_u64(&rng) % 12 == 0 ? "%s.\n" : "%s ", words[rank - 1]);
    }
    text[n] = '\0';
    free(words);
    return text;
}

static void test_tokenizer(void) {
    // the textbook example (Wikipedia's BPE article): aaabdaaabac, three merges
    Tokenizer tok;
    const char *text = "aaabdaaabac";
    tokenizer_train(&tok, text, strlen(text), FIRST_MERGE + 3);
    int want_merges[3][2] = {{'a', 'a'}, {'a', 'b'}, {FIRST_MERGE, FIRST_MERGE + 1}}; // Z=aa, Y=ab, X=ZY
    int ids[16], n = tokenizer_encode(&tok, text, strlen(text), ids);
    int want_ids[5] = {FIRST_MERGE + 2, 'd', FIRST_MERGE + 2, 'a', 'c'}; // X d X a c
    check(tok.num_merges == 3 && !memcmp(tok.merges, want_merges, sizeof(want_merges)) && n == 5 && !memcmp(ids, want_ids, sizeof(want_ids)),
          "tokenizer: aaabdaaabac learns aa, ab, (aa)(ab) and encodes to X d X a c", "%d merges, %d ids", tok.num_merges, n);
    tokenizer_free(&tok);

    // training speed and round trips on 1 MB of many-worded text
    size_t bytes = 1000000;
    char *big = zipf_text(bytes);
    set_threads(1);
    double t0 = now_seconds();
    tokenizer_train(&tok, big, bytes, 4096);
    double seconds = now_seconds() - t0;
    set_threads(2);
    check(tok.vocab_size == 4096 && seconds < 10.0, "tokenizer: trains a 4096-token vocabulary on 1 MB in under 10 s on one core",
          "%d tokens in %.2f s", tok.vocab_size, seconds);
    int *all = mallocCheck(bytes * sizeof(int));
    int count = tokenizer_encode(&tok, big, bytes, all);
    check(roundtrip_ok(&tok, big, bytes), "tokenizer: decode(encode(text)) == text on the 1 MB training text",
          "%d tokens, %.2f bytes per token", count, (double)bytes / count);
    free(all);

    const char *cases[] = {"", "a", " ", "\n\n\n", "caf\xc3\xa9 na\xc3\xafve", "\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\xf0\x9f\x8e\x89",
                           "<|user|> not special <|end|>", "tabs\tand   spaces  \r\n"};
    int bad = 0;
    for (int i = 0; i < (int)(sizeof(cases) / sizeof(cases[0])); i++) { bad += !roundtrip_ok(&tok, cases[i], strlen(cases[i])); }
    uint64_t rng = 5;
    char random_bytes[4096];
    for (int trial = 0; trial < 50; trial++) {
        size_t len = random_u64(&rng) % sizeof(random_bytes);
        for (size_t i = 0; i < len; i++) { random_bytes[i] = (char)(random_u64(&rng) & 0xFF); } // NUL bytes included
        bad += !roundtrip_ok(&tok, random_bytes, len);
    }
    check(bad == 0, "tokenizer: round trips of empty, UTF-8, emoji, special-token text and 50 random byte strings", "%d fail", bad);

    int specials[NUM_SPECIAL] = {TOKEN_EOT, TOKEN_USER, TOKEN_ASSISTANT, TOKEN_END};
    char *names = tokenizer_decode(&tok, specials, NUM_SPECIAL, NULL);
    check(!strcmp(names, "<|endoftext|><|user|><|assistant|><|end|>"), "tokenizer: special tokens decode to their names", "%s", names);
    free(names);

    // save and load give the same merges and the same encoding
    const char *path = "/tmp/test_tokenizer.bin";
    tokenizer_save(&tok, path);
    Tokenizer loaded;
    tokenizer_load(&loaded, path);
    int *a = mallocCheck(bytes * sizeof(int)), *b = mallocCheck(bytes * sizeof(int));
    int na = tokenizer_encode(&tok, big, 100000, a), nb = tokenizer_encode(&loaded, big, 100000, b);
    check(loaded.vocab_size == tok.vocab_size && !memcmp(loaded.merges, tok.merges, sizeof(int[2]) * (size_t)tok.num_merges) &&
          na == nb && !memcmp(a, b, (size_t)na * sizeof(int)), "tokenizer: save and load round trip", "%d tokens", loaded.vocab_size);
    free(a); free(b);
    tokenizer_free(&loaded);
    tokenizer_free(&tok);
    remove(path);
    free(big);
}

// GPT-2's chunks (gpt2_chunk_length): each case's chunks, joined by |, as the `regex`
// module splits the text (decoded with surrogateescape, so that an invalid byte is one
// character of no class) by GPT-2's pattern; generated once, by hand, with that module
static void test_gpt2_chunks(void) {
    static const char *cases[][2] = {
        {"Hello world, it's 2024!", "Hello| world|,| it|'s| 2024|!"},
        {"I'M we'll they've 'sx don't", "I|'|M| we|'ll| they|'ve| '|sx| don|'t"},
        {"x   \012  y", "x|   \012 | y"},
        {"\012\012Hello", "\012|\012|Hello"},
        {"end   ", "end|   "},
        {"a\302\240b \343\200\200c d\342\200\250e", "a|\302\240|b| |\343\200\200|c| d|\342\200\250|e"},
        {"caf\303\251 na\314\210ive", "caf\303\251| na|\314\210|ive"},
        {"\302\275 \342\205\247 \331\243\331\244 x\302\262", "\302\275| \342\205\247| \331\243\331\244| x|\302\262"},
        {"\346\225\260\345\255\227123\345\222\214\344\270\255\346\226\207\343\200\202", "\346\225\260\345\255\227|123|\345\222\214\344\270\255\346\226\207|\343\200\202"},
        {"emoji \360\237\230\200\360\237\216\211! ok", "emoji| \360\237\230\200\360\237\216\211!| ok"},
        {"tabs\011\011here\015\012\015\012next", "tabs|\011|\011|here|\015\012\015|\012|next"},
        {" !!?? --> x", " !!??| -->| x"},
        {"a\377\376 b\342\202 c\355\240\200", "a|\377\376| b|\342\202| c|\355\240\200"},
        {"x \012", "x| \012"},
        {"__init__ = 3.14e-10", "__|init|__| =| 3|.|14|e|-|10"},
        {"  \011 x", "  \011| x"},
        {"' s", "'| s"},
        {"A\013\014B \034\035C", "A|\013|\014|B| \034\035|C"},
    };
    int bad = 0;
    for (int c = 0; c < (int)(sizeof(cases) / sizeof(cases[0])); c++) {
        const unsigned char *s = (const unsigned char *)cases[c][0];
        size_t n = strlen(cases[c][0]);
        Str got = {0};
        for (size_t i = 0, len; i < n; i += len) {
            len = gpt2_chunk_length(s + i, n - i);
            if (i) { str_add(&got, "|", 1); }
            str_add(&got, (const char *)s + i, len);
        }
        if (strcmp(str_cstr(&got), cases[c][1]) != 0) { printf("  case %d: got \"%s\"\n", c, str_cstr(&got)); bad++; }
        str_free(&got);
    }
    check(bad == 0, "tokenizer: GPT-2's chunks (contractions, Unicode letters, numbers and spaces, invalid bytes) as the regex module cuts them",
          "%d of %d cases differ", bad, (int)(sizeof(cases) / sizeof(cases[0])));
}

// ----------------------------------------------------------------------------
// 3. data: JSON lines, the chat template, SFT and reward batches

static void test_json(void) {
    // writer then parser gives back every string, whatever bytes it holds
    const char *tricky[] = {"", "plain", "quote \" and backslash \\ and slash /", "new\nline\ttab\rcr\bbs\fff",
                            "\x01\x02\x1f control", "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 emoji",
                            "{\"nested\": \"json\"}, [1, 2]"};
    int bad = 0;
    for (int i = 0; i < (int)(sizeof(tricky) / sizeof(tricky[0])); i++) {
        Str line = {0}, back = {0};
        const char *keys[] = {"k"}, *values[] = {tricky[i]};
        json_write_object(&line, keys, values, 1);
        line.s[line.len - 1] = '\0'; // drop the newline
        const char *err = json_get(line.s, "k", &back);
        if (err || strcmp(str_cstr(&back), tricky[i]) != 0) { bad++; }
        str_free(&line); str_free(&back);
    }
    check(bad == 0, "json round trip of quotes, escapes, control bytes, UTF-8", "%d of %d strings differ", bad, (int)(sizeof(tricky) / sizeof(tricky[0])));

    // escapes written by other tools
    struct { const char *json, *want; } cases[] = {
        {"{\"k\": \"caf\\u00e9\"}", "caf\xc3\xa9"},
        {"{\"k\": \"\\ud83d\\ude00\"}", "\xf0\x9f\x98\x80"},
        {"{\"k\": \"\\u4e2d\\/\\\"\"}", "\xe4\xb8\xad/\""},
        {"{\"n\": 12.5, \"b\": true, \"z\": null, \"k\": \"x\"}", "x"},
        {" { \"k\" :\"y\" } ", "y"},
    };
    bad = 0;
    for (int i = 0; i < (int)(sizeof(cases) / sizeof(cases[0])); i++) {
        Str out = {0};
        const char *err = json_get(cases[i].json, "k", &out);
        if (err || strcmp(str_cstr(&out), cases[i].want) != 0) { bad++; printf("  case %d: %s\n", i, err ? err : out.s); }
        str_free(&out);
    }
    check(bad == 0, "json parses \\u escapes, surrogate pairs and other scalar values", "%d of %d cases wrong", bad, (int)(sizeof(cases) / sizeof(cases[0])));

    // bad input is an error, with the reason
    struct { const char *json, *reason; } errors[] = {
        {"{\"k\": \"\\x\"}", "unknown escape"},
        {"{\"k\": \"\\ud83d\"}", "unpaired surrogate"},
        {"{\"k\": \"\\ude00\"}", "unpaired surrogate"},
        {"{\"k\": \"\\u12G4\"}", "bad \\u escape"},
        {"{\"k\": \"open", "unterminated"},
        {"{\"k\": \"a\tb\"}", "raw control"},
        {"{\"j\": \"x\"}", "missing key"},
        {"{\"k\": 3}", "not a string"},
        {"{\"k\": \"a\", \"k\": \"b\"}", "duplicate"},
        {"{\"k\": \"a\"} x", "trailing"},
        {"[\"k\"]", "expected '{'"},
        {"{\"k\": \"a\" \"j\": \"b\"}", "expected ','"},
    };
    bad = 0;
    for (int i = 0; i < (int)(sizeof(errors) / sizeof(errors[0])); i++) {
        Str out = {0};
        const char *err = json_get(errors[i].json, "k", &out);
        if (err == NULL || strstr(err, errors[i].reason) == NULL) { bad++; printf("  case %d: %s\n", i, err ? err : "accepted"); }
        str_free(&out);
    }
    check(bad == 0, "json rejects bad escapes, missing keys and wrong types with a reason", "%d of %d cases wrong", bad, (int)(sizeof(errors) / sizeof(errors[0])));
}


static void write_text(const char *path, const char *text) {
    FILE *f = fopenCheck(path, "wb");
    fputs(text, f);
    fcloseCheck(f);
}

static void test_jsonl(void) {
    const char *path = "/tmp/test_jsonl.jsonl", *keys[] = {"prompt", "completion"};
    char err[1024];
    JsonlRecords rec;
    write_text(path, "{\"prompt\": \"caf\\u00e9 \\ud83d\\ude00\", \"completion\": \"a \\\"quote\\\"\\n\\tand \xe4\xb8\xad\"}\n\n"
                     "{\"completion\": \"second\", \"prompt\": \"keys in any order\", \"extra\": 1}\n");
    const char *why = jsonl_read(path, keys, 2, &rec, err, sizeof(err));
    int ok = !why && rec.count == 2 && !strcmp(rec.values[0], "caf\xc3\xa9 \xf0\x9f\x98\x80") &&
             !strcmp(rec.values[1], "a \"quote\"\n\tand \xe4\xb8\xad") && !strcmp(rec.values[2], "keys in any order");
    check(ok, "jsonl: escapes, \\u with surrogates, raw UTF-8, a blank line, keys in any order, an extra key", "%s", why ? why : "2 records");
    if (!why) { jsonl_free(&rec); }
    struct { const char *text, *want; } bad[] = {
        {"{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \"completion\": \"b\"\n", ":2: expected ','"},
        {"{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"only\"}\n", ":2: missing key \"completion\""},
        {"{\"prompt\": \"a\", \"completion\": 5}\n", ":1: the key's value is not a string \"completion\""},
        {"{\"prompt\": \"bad \\q escape\", \"completion\": \"b\"}\n", ":1: unknown escape"},
        {"", "has no records"},
        {"\n\n", "has no records"},
    };
    int wrong = 0;
    for (int i = 0; i < (int)(sizeof(bad) / sizeof(bad[0])); i++) {
        write_text(path, bad[i].text);
        why = jsonl_read(path, keys, 2, &rec, err, sizeof(err));
        if (!why || !strstr(why, bad[i].want) || !strstr(why, path)) { wrong++; printf("  case %d: %s\n", i, why ? why : "accepted"); }
        if (!why) { jsonl_free(&rec); }
    }
    remove(path);
    why = jsonl_read(path, keys, 2, &rec, err, sizeof(err));
    wrong += !why || !strstr(why, "cannot open");
    check(wrong == 0, "jsonl: a malformed line, a missing key, a wrong type, a bad escape, an empty file and a missing file are errors naming file and line",
          "%d of 7 wrong", wrong);
}

// a tokenizer that knows only bytes: one token per byte, so lengths are easy to reason about
static void byte_tokenizer(Tokenizer *tok) {
    tok->split = SPLIT_OURS;
    tok->num_merges = 0;
    tok->merges = mallocCheck(sizeof(int[2]));
    tokenizer_index(tok);
}

static void test_chat_template(void) {
    Tokenizer tok;
    byte_tokenizer(&tok);
    ChatExample ex;
    int status = chat_encode(&ex, &tok, "hi", "yo", 100);
    int want[] = {TOKEN_USER, 'h', 'i', TOKEN_ASSISTANT, 'y', 'o', TOKEN_END};
    check(status == 1 && ex.n == 7 && ex.n_prompt == 4 && !memcmp(ex.tokens, want, sizeof(want)),
          "chat template: <|user|> prompt <|assistant|> response <|end|>", "%d tokens, response from %d", ex.n, ex.n_prompt);
    chat_example_free(&ex);
    status = chat_encode(&ex, &tok, "abcdef", "yo", 7); // room for 2 of the 6 prompt tokens
    int cut[] = {TOKEN_USER, 'e', 'f', TOKEN_ASSISTANT, 'y', 'o', TOKEN_END};
    int ok = status == 2 && ex.n == 7 && !memcmp(ex.tokens, cut, sizeof(cut));
    chat_example_free(&ex);
    status = chat_encode(&ex, &tok, "abcdef", "a long answer", 10); // the response alone does not fit
    ok &= status == 0 && ex.tokens == NULL;
    status = chat_encode(&ex, &tok, "question", NULL, 100); // a prompt to answer: ends at <|assistant|>
    ok &= status == 1 && ex.n == 10 && ex.n_prompt == 10 && ex.tokens[9] == TOKEN_ASSISTANT;
    chat_example_free(&ex);
    check(ok, "chat template: too long, the prompt is cut from the left; if the response cannot fit, dropped", "statuses as documented");
    tokenizer_free(&tok);
}

// SFT: a loss on response tokens and <|end|> only; prompt and padding positions get
// exactly zero gradient, and the padding's content changes nothing at all
static void test_sft_masking(void) {
    Tokenizer tok;
    byte_tokenizer(&tok);
    ChatData d = {.per_record = 1};
    d.examples = mallocCheck(2 * sizeof(ChatExample));
    chat_encode(&d.examples[0], &tok, "What is it?", "A fox.", 64);
    chat_encode(&d.examples[1], &tok, "Hi", "Hello", 64);
    d.count = 2;
    int idx[2] = {0, 1}, inputs[128], targets[128];
    int T = sft_batch(&d, idx, 2, inputs, targets);
    // row 0: 13 prompt tokens ("What is it?" + 2 specials), then 6 + 1 response targets
    int masked_ok = 1, count = 0;
    for (int b = 0; b < 2; b++) {
        const ChatExample *ex = &d.examples[b];
        for (int t = 0; t < T; t++) {
            int want = (t + 1 >= ex->n_prompt && t + 1 < ex->n) ? ex->tokens[t + 1] : -1;
            masked_ok &= targets[b * T + t] == want;
            count += want >= 0;
        }
    }
    check(masked_ok && count == 7 + 6 && T == d.examples[0].n - 1, "sft batch: targets only on the response and <|end|>, -1 on prompt and padding",
          "T=%d, %d targets (want 13)", T, count);
    if (T < 1 || T > 64) { chat_data_free(&d); tokenizer_free(&tok); return; } // no batch to train on

    GPTConfig cfg = {.max_seq_len = 32, .vocab_size = FIRST_MERGE, .num_layers = 2, .num_heads = 2, .channels = 16};
    GPT model;
    gpt_build(&model, cfg);
    gpt_init(&model, 5);
    gpt_zero_grad(&model);
    gpt_forward(&model, inputs, targets, 2, T);
    gpt_backward(&model, 1.0f);
    float nonzero = 0.0f;
    for (int i = 0; i < 2 * T; i++) {
        if (targets[i] < 0) { nonzero = fmax(nonzero, max_abs(model.grads_acts.logits + (size_t)i * FIRST_MERGE, FIRST_MERGE)); }
    }
    size_t P = model.num_parameters;
    float *grads = mallocCheck(P * sizeof(float));
    memcpy(grads, model.grads_memory, P * sizeof(float));
    for (int t = d.examples[1].n - 1; t < T; t++) { inputs[T + t] = 'z'; } // other padding tokens in row 1
    gpt_zero_grad(&model);
    gpt_forward(&model, inputs, targets, 2, T);
    gpt_backward(&model, 1.0f);
    int same = !memcmp(grads, model.grads_memory, P * sizeof(float));
    check(nonzero == 0.0f && same, "sft: prompt and padding positions get exactly zero gradient; other padding gives bit-identical gradients",
          "max |dlogits| at masked positions %g", nonzero);
    free(grads);
    gpt_free(&model);
    chat_data_free(&d);
    tokenizer_free(&tok);
}

// the reward is read at <|end|>, wherever padding puts it: the same pair scores the
// same alone, beside a longer pair (so with padding after it), and in another row
static void test_reward_position(void) {
    Tokenizer tok;
    byte_tokenizer(&tok);
    ChatData d = {.per_record = 2};
    d.examples = mallocCheck(4 * sizeof(ChatExample));
    chat_encode(&d.examples[0], &tok, "Who?", "Bilo.", 64);
    chat_encode(&d.examples[1], &tok, "Who?", "Nobody at all.", 64);
    chat_encode(&d.examples[2], &tok, "A much longer question here?", "A long and winding answer to it.", 64);
    chat_encode(&d.examples[3], &tok, "A much longer question here?", "No.", 64);
    d.count = 4;
    GPTConfig cfg = {.max_seq_len = 64, .vocab_size = FIRST_MERGE, .num_layers = 2, .num_heads = 2, .channels = 16, .scalar_head = 1};
    GPT model;
    gpt_build(&model, cfg);
    gpt_init(&model, 6);
    uint64_t rng = 3;
    for (size_t i = 0; i < model.param_sizes[16]; i++) { model.params.headw[i] = (float)random_normal(&rng); } // a head that is not 0
    int inputs[4 * 64], ends[4], layouts[3][2] = {{0, -1}, {0, 1}, {1, 0}};
    float r[3][2], rewards[4];
    int ends_ok = 1;
    for (int k = 0; k < 3; k++) {
        int n = layouts[k][1] < 0 ? 1 : 2;
        int T = reward_batch(&d, layouts[k], n, inputs, ends);
        gpt_forward(&model, inputs, NULL, 2 * n, T);
        reward_gather(rewards, model.acts.values, ends, 2 * n, T);
        int row = layouts[k][0] == 0 ? 0 : 1; // where pair 0 sits
        r[k][0] = rewards[row];
        r[k][1] = rewards[n + row];
        for (int i = 0; i < 2 * n; i++) { ends_ok &= inputs[i * T + ends[i]] == TOKEN_END && (ends[i] + 1 == T || inputs[i * T + ends[i] + 1] == TOKEN_EOT); }
    }
    // each row's value depends only on its own tokens: any difference is float rounding
    float d1 = fmax(fabs(r[1][0] - r[0][0]), fabs(r[1][1] - r[0][1])), d2 = fmax(fabs(r[2][0] - r[0][0]), fabs(r[2][1] - r[0][1]));
    check(ends_ok && d1 < 1e-6f && d2 < 1e-6f && r[0][0] != r[0][1], "reward: read at <|end|> under three padding layouts (alone, padded, other row)",
          "chosen %.6f rejected %.6f; max |diff| %.1e and %.1e (tolerance 1e-6)", r[0][0], r[0][1], d1, d2);
    gpt_free(&model);
    chat_data_free(&d);
    tokenizer_free(&tok);
}

// Length-grouped batches: a group of BATCH_GROUP batches holds exactly the records
// that BATCH_GROUP * B plain random draws give, with less than half the padding, and
// the RNG moves on only after the group's last batch, to where the group's draws leave
// it (so a run resumed mid-group redraws the same group).
static void test_grouped_batches(void) {
    enum { RECORDS = 300, B = 4 };
    ChatData d = {.per_record = 2, .count = 2 * RECORDS};
    d.examples = callocCheck(2 * RECORDS, sizeof(ChatExample));
    uint64_t len_rng = 11;
    for (int i = 0; i < 2 * RECORDS; i++) { d.examples[i].n = 3 + (int)(random_u64(&len_rng) % 120); }
    GroupItem items[BATCH_GROUP * B];
    int idx[B], drawn[RECORDS] = {0}, got[RECORDS] = {0};
    uint64_t start = 77, rng = start, plain = start;
    long padding = 0, padding_plain = 0; // padding tokens: 2B rows of the longest, less the rows' own lengths
    int rng_held = 1;
    for (long n = 0; n < BATCH_GROUP; n++) {
        grouped_batch(&d, n, B, &rng, idx, items);
        rng_held &= n == BATCH_GROUP - 1 || rng == start;
        int longest = 0, longest_plain = 0;
        for (int b = 0; b < B; b++) {
            got[idx[b]]++;
            padding -= d.examples[2 * idx[b]].n + d.examples[2 * idx[b] + 1].n;
            int r = (int)(random_u64(&plain) % RECORDS);
            drawn[r]++;
            padding_plain -= d.examples[2 * r].n + d.examples[2 * r + 1].n;
            longest = fmax(longest, pair_len(&d, idx[b]));
            longest_plain = fmax(longest_plain, pair_len(&d, r));
        }
        padding += 2L * B * longest;
        padding_plain += 2L * B * longest_plain;
    }
    for (int g = 0; g < BATCH_GROUP; g++) { random_u64(&plain); } // the shuffle's draws
    int same = !memcmp(drawn, got, sizeof(drawn));
    check(same && rng_held && rng == plain && padding * 2 < padding_plain,
          "grouped batches: the same records as plain random draws, under half the padding, the RNG moved only after the group",
          "same records %d, RNG held %d, moved to the end %d; padding tokens %ld against %ld", same, rng_held, rng == plain,
          padding, padding_plain);
    free(d.examples);
}

// ----------------------------------------------------------------------------
// 4. layers: the matmul engine against the three plain loops

static void test_matmul_engine(void) {
    // shapes around the block sizes (MR, NR, MC, KC, NC), plain and transposed operands
    // (few rows and several column blocks: the threads split the columns; one row times a
    // transposed b: the dot products of generation)
    int shapes[][3] = {{1, 1, 1}, {5, 33, 7}, {97, 257, 300}, {MR, NR, KC}, {130, 70, 513}, {5, 600, 40}, {1, 300, 77}};
    uint64_t rng = 11;
    float worst = 0.0f;
    int cases = 0;
    for (int s = 0; s < 7; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *a = mallocCheck((size_t)M * K * sizeof(float)), *b = mallocCheck((size_t)K * N * sizeof(float));
        float *c = mallocCheck((size_t)M * N * sizeof(float)), *ref = mallocCheck((size_t)M * N * sizeof(float));
        for (size_t i = 0; i < (size_t)M * K; i++) { a[i] = random_f32(&rng) - 0.5f; }
        for (size_t i = 0; i < (size_t)K * N; i++) { b[i] = random_f32(&rng) - 0.5f; }
        for (int trans = 0; trans < 4; trans++) {
            for (int acc = 0; acc < 2; acc++) {
                int flags = (trans & 1 ? TRANSPOSE_A : 0) | (trans & 2 ? TRANSPOSE_B : 0) | (acc ? ACCUMULATE : 0);
                for (size_t i = 0; i < (size_t)M * N; i++) { c[i] = ref[i] = acc ? (float)i * 1e-3f : 7.0f; }
                matmul_reference(ref, a, b, M, N, K, flags);
                matmul(c, a, b, M, N, K, flags);
                float d = max_abs_diff(c, ref, (size_t)M * N);
                if (d > worst) { worst = d; }
                cases++;
            }
        }
        free(a); free(b); free(c); free(ref);
    }
    // float sums of up to 513 products of values in [-0.5, 0.5), in another grouping
    // (slices of KC, lanes): rounding stays near 1e-6
    check(worst < 1e-5f, "matmul: the engine against matmul_reference's loops, 7 shapes x transposes x accumulate",
          "%d cases, max |diff| %.2e (tolerance 1e-5)", cases, worst);
}

// attention as causal matrix products against its definition as plain loops in double
// precision, at a length past one slice of b's columns (NC) and two of k (KC), which
// also ends in partial micro-tiles and a partial block of rows
static void test_attention(void) {
    int B = 2, T = NC + 37, C = 32, NH = 2, HS = C / NH, C3 = 3 * C;
    size_t n_inp = (size_t)B * T * C3, n_out = (size_t)B * T * C, n_att = (size_t)B * NH * T * T;
    float *inp = mallocCheck(n_inp * sizeof(float)), *out = mallocCheck(n_out * sizeof(float));
    float *att = mallocCheck(n_att * sizeof(float)), *datt = mallocCheck(n_att * sizeof(float));
    float *dout = mallocCheck(n_out * sizeof(float)), *dinp = calloc_check(n_inp, sizeof(float), __FILE__, __LINE__);
    float *heads = mallocCheck(4 * n_out * sizeof(float)), *dheads = calloc_check(4 * n_out, sizeof(float), __FILE__, __LINE__);
    double *ref_out = calloc_check(n_out, sizeof(double), __FILE__, __LINE__);
    double *ref_dinp = calloc_check(n_inp, sizeof(double), __FILE__, __LINE__);
    double *p = mallocCheck((size_t)T * sizeof(double)), *dp = mallocCheck((size_t)T * sizeof(double));
    uint64_t rng = 21;
    for (size_t i = 0; i < n_inp; i++) { inp[i] = 2.0f * random_f32(&rng) - 1.0f; }
    for (size_t i = 0; i < n_out; i++) { dout[i] = 2.0f * random_f32(&rng) - 1.0f; }
    attention_forward(out, heads, att, inp, B, T, C, NH);
    attention_backward(dinp, dheads, datt, dout, heads, att, B, T, C, NH);
    double scale = 1.0 / sqrt((double)HS), worst_out = 0.0, worst_d = 0.0, upper = 0.0;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float *q = inp + ((size_t)b * T + t) * C3 + h * HS;
                double maxval = -1e300, sum = 0.0, weighted = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = inp + ((size_t)b * T + t2) * C3 + C + h * HS;
                    double dot = 0.0;
                    for (int i = 0; i < HS; i++) { dot += (double)q[i] * k[i]; }
                    p[t2] = dot * scale;
                    if (p[t2] > maxval) { maxval = p[t2]; }
                }
                for (int t2 = 0; t2 <= t; t2++) { p[t2] = exp(p[t2] - maxval); sum += p[t2]; }
                const float *g = dout + ((size_t)b * T + t) * C + h * HS;
                for (int t2 = 0; t2 <= t; t2++) {
                    p[t2] /= sum;
                    const float *v = inp + ((size_t)b * T + t2) * C3 + 2 * C + h * HS;
                    double *dv = ref_dinp + ((size_t)b * T + t2) * C3 + 2 * C + h * HS;
                    dp[t2] = 0.0;
                    for (int i = 0; i < HS; i++) {
                        ref_out[((size_t)b * T + t) * C + h * HS + i] += p[t2] * v[i];
                        dv[i] += p[t2] * g[i];
                        dp[t2] += (double)g[i] * v[i];
                    }
                    weighted += p[t2] * dp[t2];
                }
                for (int t2 = 0; t2 <= t; t2++) {
                    double ds = p[t2] * (dp[t2] - weighted) * scale;
                    const float *k = inp + ((size_t)b * T + t2) * C3 + C + h * HS;
                    double *dq = ref_dinp + ((size_t)b * T + t) * C3 + h * HS, *dk = ref_dinp + ((size_t)b * T + t2) * C3 + C + h * HS;
                    for (int i = 0; i < HS; i++) { dq[i] += ds * k[i]; dk[i] += ds * q[i]; }
                }
                const float *att_row = att + (((size_t)b * NH + h) * T + t) * T;
                for (int t2 = t + 1; t2 < T; t2++) { upper = fmax(upper, fabs(att_row[t2])); }
            }
        }
    }
    for (size_t i = 0; i < n_out; i++) { worst_out = fmax(worst_out, fabs(out[i] - ref_out[i])); }
    for (size_t i = 0; i < n_inp; i++) { worst_d = fmax(worst_d, fabs(dinp[i] - ref_dinp[i])); }
    // float sums of up to T (about 550) terms, weighted by probabilities that sum to 1:
    // rounding stays near 1e-6
    check(worst_out < 1e-5 && upper == 0.0, "attention_forward: blocked matrix products against plain loops",
          "T = %d, max |diff| %.2e (tolerance 1e-5); above the diagonal: %g", T, worst_out, upper);
    check(worst_d < 1e-5, "attention_backward: dq, dk, dv against plain loops", "T = %d, max |diff| %.2e (tolerance 1e-5)", T,
          worst_d);
    free(inp); free(out); free(heads); free(dheads); free(att); free(datt); free(dout); free(dinp); free(ref_out); free(ref_dinp); free(p); free(dp);
}

// ----------------------------------------------------------------------------
// 6. the model, against the PyTorch reference (test/reference.py)

typedef struct {
    int header[16];
    GPTConfig cfg;
    int B, T, steps;
    float *weights, *logits, *grads, *settings, *losses, *final_weights, loss;
    int *inputs, *targets;
} Fixture;

static int fixture_load(Fixture *fx, GPT *model) {
    FILE *f = fopen(fixture_path, "rb");
    if (f == NULL) { return 0; }
    freadCheck(fx->header, sizeof(int), 16, f);
    if (fx->header[0] != 0x58494646 || fx->header[1] != 1) { FAIL("%s: bad fixture header; regenerate with make fixtures", fixture_path); }
    fx->cfg = (GPTConfig){.vocab_size = fx->header[2], .max_seq_len = fx->header[3], .num_layers = fx->header[4],
                          .num_heads = fx->header[5], .channels = fx->header[6]};
    fx->B = fx->header[7]; fx->T = fx->header[8]; fx->steps = fx->header[9];
    gpt_build(model, fx->cfg);
    size_t P = model->num_parameters, BT = (size_t)fx->B * fx->T, V = (size_t)fx->cfg.vocab_size;
    fx->weights = mallocCheck(P * sizeof(float)); fx->grads = mallocCheck(P * sizeof(float));
    fx->final_weights = mallocCheck(P * sizeof(float)); fx->logits = mallocCheck(BT * V * sizeof(float));
    fx->inputs = mallocCheck(BT * sizeof(int)); fx->targets = mallocCheck(BT * sizeof(int));
    fx->settings = mallocCheck(8 * sizeof(float)); fx->losses = mallocCheck((size_t)fx->steps * sizeof(float));
    freadCheck(fx->weights, sizeof(float), P, f);
    freadCheck(fx->inputs, sizeof(int), BT, f);
    freadCheck(fx->targets, sizeof(int), BT, f);
    freadCheck(fx->logits, sizeof(float), BT * V, f);
    freadCheck(&fx->loss, sizeof(float), 1, f);
    freadCheck(fx->grads, sizeof(float), P, f);
    freadCheck(fx->settings, sizeof(float), 8, f);
    freadCheck(fx->losses, sizeof(float), (size_t)fx->steps, f);
    freadCheck(fx->final_weights, sizeof(float), P, f);
    fclose(f);
    memcpy(model->params_memory, fx->weights, P * sizeof(float));
    return 1;
}

static void test_against_pytorch(void) {
    static const char *NAMES[NUM_PARAMETER_TENSORS] = {"wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
                                                        "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb",
                                                        "headw", "headb"};
    Fixture fx;
    GPT model;
    if (!fixture_load(&fx, &model)) { check(0, "pytorch fixture", "%s is missing: run make fixtures", fixture_path); return; }
    size_t BT = (size_t)fx.B * fx.T, V = (size_t)fx.cfg.vocab_size;
    gpt_forward(&model, fx.inputs, fx.targets, fx.B, fx.T);
    // logits are O(1); float32 rounding through 2 layers gives ~1e-7 to 1e-6
    float d = max_abs_diff(model.acts.logits, fx.logits, BT * V);
    check(d < 1e-5f, "pytorch: logits of a V=300 L=2 C=16 NH=2 model on B=3 T=12", "max |diff| %.2e (tolerance 1e-5)", d);
    d = fabs(model.mean_loss - fx.loss);
    check(d < 1e-5f, "pytorch: loss, with two positions masked out", "C %.7f torch %.7f |diff| %.2e (tolerance 1e-5)", model.mean_loss, fx.loss, d);
    gpt_zero_grad(&model);
    gpt_backward(&model, 1.0f);
    // each tensor: max |diff| relative to the tensor's largest gradient. Float sums of
    // a few hundred terms keep this near 1e-6; a single wrong element would be O(1).
    size_t offset = 0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        size_t n = model.param_sizes[t];
        if (n == 0) { continue; } // the scalar head, absent from a language model
        float rel = max_abs_diff(model.grads_memory + offset, fx.grads + offset, n) / max_abs(fx.grads + offset, n);
        char name[96];
        snprintf(name, sizeof(name), "pytorch: gradient of %s (%zu values)", NAMES[t], n);
        check(rel < 1e-4f, name, "max |diff| / max |grad| = %.2e (tolerance 1e-4)", rel);
        offset += n;
    }
    // three optimizer steps: schedule, clipping (the norm exceeds the limit), weight decay, AdamW
    float lr = fx.settings[0], final_frac = fx.settings[2], wd = fx.settings[3], clip = fx.settings[4];
    int warmup = (int)fx.settings[1];
    float worst_loss = 0.0f, first_norm = 0.0f;
    for (int step = 0; step < fx.steps; step++) {
        gpt_zero_grad(&model);
        gpt_forward(&model, fx.inputs, fx.targets, fx.B, fx.T);
        gpt_backward(&model, 1.0f);
        float norm = gpt_clip_grad_norm(&model, clip);
        if (step == 0) { first_norm = norm; }
        adamw_update(&model, lr_schedule(step, fx.steps, warmup, lr, final_frac), fx.settings[5], fx.settings[6], fx.settings[7], wd, step + 1, 0);
        float dl = fabs(model.mean_loss - fx.losses[step]);
        if (dl > worst_loss) { worst_loss = dl; }
    }
    check(worst_loss < 1e-5f, "pytorch: losses of 3 AdamW steps", "max |diff| %.2e (tolerance 1e-5)", worst_loss);
    // lr 1e-2 for 3 steps moves weights by up to ~3e-2; float rounding in the
    // updates leaves ~1e-7; the tolerance is a thousandth of a step.
    // One exception, the key biases: their gradient is exactly 0 (q.(k + b) adds the
    // same q.b to every score of a query, and softmax ignores a shared shift). Torch
    // in float64 gets ~1e-17 and never moves them; our float sum leaves ~1e-10 of
    // rounding, which Adam's normalization turns into real steps. So those 2 x 16
    // weights are left out here, and their gradient is checked to be 0 instead.
    int C = fx.cfg.channels;
    for (int l = 0; l < fx.cfg.num_layers; l++) {
        size_t key_bias = (size_t)(model.params.qkvb - model.params_memory) + (size_t)l * 3 * C + C;
        for (int i = 0; i < C; i++) { model.params_memory[key_bias + i] = fx.final_weights[key_bias + i]; }
    }
    d = max_abs_diff(model.params_memory, fx.final_weights, model.num_parameters);
    check(d < 1e-5f && first_norm > clip, "pytorch: every weight after 3 AdamW steps with decay, clipping and warmup/cosine",
          "max |diff| %.2e (tolerance 1e-5); clipping engaged (norm %.2f > %.2f); key biases apart", d, first_norm, clip);
    float key_grad = 0.0f, max_grad = max_abs(model.grads_memory, model.num_parameters);
    for (int l = 0; l < fx.cfg.num_layers; l++) {
        float g = max_abs(model.grads.qkvb + (size_t)l * 3 * C + C, (size_t)C);
        if (g > key_grad) { key_grad = g; }
    }
    check(key_grad < 1e-6f * max_grad, "pytorch: the key biases' gradient is 0 up to rounding (softmax ignores a shared shift)",
          "max |grad| %.2e, %.2e of the largest gradient (tolerance 1e-6)", key_grad, key_grad / max_grad);
    gpt_free(&model);
    free(fx.weights); free(fx.grads); free(fx.final_weights); free(fx.logits); free(fx.inputs); free(fx.targets);
    free(fx.settings); free(fx.losses);
}

// the reward model (scalar head, rewards read at <|end|>, pairwise loss) against PyTorch
static void test_reward_against_pytorch(void) {
    FILE *f = fopen("test/fixtures/reward_tiny.bin", "rb");
    if (f == NULL) { check(0, "pytorch reward fixture", "test/fixtures/reward_tiny.bin is missing: run make fixtures"); return; }
    int h[16];
    freadCheck(h, sizeof(int), 16, f);
    GPTConfig cfg = {.vocab_size = h[2], .max_seq_len = h[3], .num_layers = h[4], .num_heads = h[5], .channels = h[6], .scalar_head = 1};
    int B = h[7], T = h[8], P = B / 2;
    GPT model;
    gpt_build(&model, cfg);
    size_t N = model.num_parameters;
    float *grads = mallocCheck(N * sizeof(float)), want_rewards[16], want_loss, rewards[16], drewards[16] = {0};
    int *inputs = mallocCheck((size_t)B * T * sizeof(int)), ends[16];
    float *dvalues = mallocCheck((size_t)B * T * sizeof(float));
    freadCheck(model.params_memory, sizeof(float), N, f);
    freadCheck(inputs, sizeof(int), (size_t)B * T, f);
    freadCheck(ends, sizeof(int), (size_t)B, f);
    freadCheck(want_rewards, sizeof(float), (size_t)B, f);
    freadCheck(&want_loss, sizeof(float), 1, f);
    freadCheck(grads, sizeof(float), N, f);
    fclose(f);
    gpt_forward(&model, inputs, NULL, B, T);
    reward_gather(rewards, model.acts.values, ends, B, T);
    float loss = reward_loss_forward(rewards, rewards + P, P);
    float dr = max_abs_diff(rewards, want_rewards, (size_t)B), dl = fabs(loss - want_loss);
    check(dr < 1e-5f && dl < 1e-5f, "pytorch: rewards at <|end|> of 4 padded rows, and the pairwise loss",
          "max |diff| rewards %.2e, loss %.2e (tolerance 1e-5)", dr, dl);
    gpt_zero_grad(&model);
    reward_loss_backward(drewards, drewards + P, rewards, rewards + P, P);
    reward_scatter(dvalues, drewards, ends, B, T);
    gpt_backward_values(&model, dvalues);
    // the same standard as the language model: per tensor, relative to its largest
    // gradient. Three tensors have a gradient that is exactly 0 in exact arithmetic, so
    // float rounding is all there is to compare: the key biases (see above), and the
    // head's bias and the final layernorm's bias: the loss depends on r_chosen -
    // r_rejected only, and each of those biases shifts both rewards alike (by headb,
    // and by headw . lnfb). Those are measured against the model's largest gradient.
    float worst = 0.0f, worst_zero = 0.0f, largest = max_abs(grads, N);
    size_t offset = 0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        size_t n = model.param_sizes[t];
        float d = n ? max_abs_diff(model.grads_memory + offset, grads + offset, n) : 0.0f;
        if (t == 5 || t == 15 || t == 17) { worst_zero = fmax(worst_zero, d / largest); }
        else if (n > 0) { worst = fmax(worst, d / max_abs(grads + offset, n)); }
        offset += n;
    }
    float headb = model.grads.headb[0];
    check(worst < 1e-4f && worst_zero < 1e-6f && fabs(headb) < 1e-6f * largest,
          "pytorch: every gradient of the reward model, the scalar head included",
          "max |diff| / max |grad| per tensor %.2e (tolerance 1e-4); qkvb, lnfb, headb (0 in exact arithmetic) %.2e of the largest (tolerance 1e-6)",
          worst, worst_zero);
    free(grads); free(inputs); free(dvalues);
    gpt_free(&model);
}

// ----------------------------------------------------------------------------
// 6. the KV cache gives the logits of the full forward pass

static void test_kv_cache(void) {
    GPTConfig cfg = {.max_seq_len = 32, .vocab_size = 300, .num_layers = 3, .num_heads = 4, .channels = 32};
    GPT model;
    gpt_build(&model, cfg);
    gpt_init(&model, 3);
    uint64_t rng = 8;
    for (size_t i = 0; i < model.num_parameters; i++) { model.params_memory[i] += 0.05f * (float)random_normal(&rng); }
    int T = 32, tokens[32];
    for (int t = 0; t < T; t++) { tokens[t] = (int)(random_u64(&rng) % 300); }
    gpt_forward(&model, tokens, NULL, 1, T);
    KVCache kv;
    kvcache_init(&kv, cfg);
    float worst = 0.0f;
    for (int t = 0; t < T; t++) {
        float *logits = gpt_forward_cached(&model, &kv, tokens[t], t);
        float d = max_abs_diff(logits, model.acts.logits + (size_t)t * 300, 300);
        if (d > worst) { worst = d; }
    }
    // the same math with sums in another order (dot products vs blocked matmul): float rounding only
    check(worst < 1e-5f, "kv cache: logits of 32 one-token steps equal the full forward pass", "max |diff| %.2e (tolerance 1e-5)", worst);
    kvcache_free(&kv);
    gpt_free(&model);
}

// ----------------------------------------------------------------------------
// 7. the optimizer, by hand

static void test_optimizer(void) {
    // schedule: warmup 2 of 10 steps, peak 1.0, final 0.1
    float got[4] = {lr_schedule(0, 10, 2, 1.0f, 0.1f), lr_schedule(1, 10, 2, 1.0f, 0.1f), lr_schedule(2, 10, 2, 1.0f, 0.1f),
                    lr_schedule(9, 10, 2, 1.0f, 0.1f)};
    float mid = lr_schedule(5, 10, 2, 1.0f, 0.1f); // halfway through the decay of 7 steps: 0.1 + 0.9 * 0.5 (1 + cos(3pi/7))
    float want_mid = 0.1f + 0.9f * 0.5f * (1.0f + cos(3.14159265f * 3.0f / 7.0f));
    check(got[0] == 0.5f && got[1] == 1.0f && got[2] == 1.0f && fabs(got[3] - 0.1f) < 1e-7f && fabs(mid - want_mid) < 1e-6f,
          "lr schedule: warmup 0.5, 1.0; peak 1.0; cosine midpoint; final 0.1", "%g %g %g %.4f %g", got[0], got[1], got[2], mid, got[3]);

    // one AdamW step on a tiny model: p = 0.5, g = 0.2, lr 0.1, wd 0.1, t = 1
    GPTConfig cfg = {.max_seq_len = 1, .vocab_size = FIRST_MERGE, .num_layers = 1, .num_heads = 1, .channels = 1};
    GPT model;
    gpt_build(&model, cfg);
    model.grads_memory = callocCheck(model.num_parameters, sizeof(float));
    for (size_t i = 0; i < model.num_parameters; i++) { model.params_memory[i] = 0.5f; model.grads_memory[i] = 0.2f; }
    adamw_update(&model, 0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 0);
    // decayed: 0.5 (1 - 0.01) = 0.495; m = 0.02, v = 0.002; mhat = 0.2, sqrt(vhat) = 0.2: step 0.1 * 0.2 / (0.2 + 1e-8)
    float want_decayed = 0.495f - 0.1f * (0.2f / (0.2f + 1e-8f)), want_plain = 0.5f - 0.1f * (0.2f / (0.2f + 1e-8f));
    float wte = model.params_memory[0], ln1w = model.params.ln1w[0];
    check(fabs(wte - want_decayed) < 1e-7f && fabs(ln1w - want_plain) < 1e-7f,
          "adamw: one step by hand, decay on matrices only", "wte %.7f (want %.7f), ln1w %.7f (want %.7f)", wte, want_decayed, ln1w, want_plain);

    // clipping: the norm of n gradients of 0.2 is 0.2 sqrt(n); clipped to 1 it becomes 1
    for (size_t i = 0; i < model.num_parameters; i++) { model.grads_memory[i] = 0.2f; }
    float norm = gpt_clip_grad_norm(&model, 1.0f), after = gpt_clip_grad_norm(&model, 0.0f);
    float want = 0.2f * sqrt((float)model.num_parameters);
    check(fabs(norm - want) < 1e-4f * want && fabs(after - 1.0f) < 1e-5f, "gradient clipping: norm measured, then scaled to the limit",
          "norm %.5f (want %.5f), after %.6f", norm, want, after);
    gpt_free(&model);

    // the sum of squares behind the norm: two whole chunks and a partial one whose end is
    // not a whole number of lanes, against one plain sum in long double; the same bits
    // on 1 and 2 threads
    size_t n = 2 * 65536 + 37;
    float *x = mallocCheck(n * sizeof(float));
    uint64_t rng = 5;
    long double plain = 0.0L;
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)((double)(random_u64(&rng) >> 11) / 9007199254740992.0 - 0.5);
        plain += (long double)x[i] * x[i];
    }
    set_threads(1);
    double one = sum_of_squares(x, n);
    set_threads(2);
    double two = sum_of_squares(x, n);
    double rel = fabs((double)(one - plain)) / (double)plain;
    check(rel < 1e-14 && one == two, "sum of squares: a plain sum's value to 1e-14, the same bits on 1 and 2 threads",
          "relative difference %.2g; 1 thread %.17g, 2 threads %.17g", rel, one, two);
    free(x);
}

// -F 1: an optimizer step leaves the rows of every merge exactly as they were, trains
// the rows of the bytes and the special tokens and every other tensor, and clips by the
// norm of what trains alone
static void test_frozen_embeddings(void) {
    GPTConfig cfg = {.max_seq_len = 4, .vocab_size = FIRST_MERGE + 6, .num_layers = 1, .num_heads = 1, .channels = 3};
    GPT model;
    gpt_build(&model, cfg);
    gpt_init(&model, 3);
    model.grads_memory = callocCheck(model.num_parameters, sizeof(float));
    point_tensors((float **)&model.grads, model.param_sizes, NUM_PARAMETER_TENSORS, model.grads_memory);
    size_t P = model.num_parameters, C = 3, V = (size_t)cfg.vocab_size;
    float *before = mallocCheck(P * sizeof(float));
    memcpy(before, model.params_memory, P * sizeof(float));
    for (size_t i = 0; i < P; i++) { model.grads_memory[i] = 0.2f; }
    Config c = CONFIG_DEFAULTS;
    c.steps = 10; c.lr = 1e-2f; c.grad_clip = 1e9f; c.freeze_embeddings = 1;
    float lr, norm = optimizer_step(&model, &c, 0, 1.0f, &lr);
    size_t trained = P - (V - FIRST_MERGE) * C; // every parameter but the merges' rows
    int frozen_same = 1, bytes_moved = 1, rest_moved = 1;
    for (size_t r = 0; r < V; r++) {
        for (size_t i = 0; i < C; i++) {
            int same = model.params.wte[r * C + i] == before[r * C + i];
            if (r < FIRST_MERGE) { bytes_moved &= !same; } else { frozen_same &= same; }
        }
    }
    for (size_t i = V * C; i < P; i++) { rest_moved &= model.params_memory[i] != before[i]; }
    float want = 0.2f * sqrtf((float)trained);
    check(frozen_same && bytes_moved && rest_moved && fabsf(norm - want) < 1e-4f * want,
          "frozen token embedding: merge rows unchanged; byte and special rows, and all else, trained; norm of what trains",
          "merges unchanged %d, bytes and specials moved %d, rest moved %d, norm %.5f (want %.5f)", frozen_same, bytes_moved,
          rest_moved, norm, want);
    free(before);
    gpt_free(&model);
}

// gradient accumulation: two micro-batches of 2 rows, each scaled by 1/2, give the
// gradient of one batch of 4 rows (every position has a target, so the means agree)
static void test_grad_accumulation(void) {
    GPTConfig cfg = {.max_seq_len = 8, .vocab_size = 280, .num_layers = 2, .num_heads = 2, .channels = 16};
    GPT model;
    gpt_build(&model, cfg);
    gpt_init(&model, 4);
    int B = 4, T = 8, inputs[32], targets[32];
    uint64_t rng = 12;
    for (int i = 0; i < B * T; i++) { inputs[i] = (int)(random_u64(&rng) % 280); targets[i] = (int)(random_u64(&rng) % 280); }
    gpt_zero_grad(&model);
    gpt_forward(&model, inputs, targets, B, T);
    gpt_backward(&model, 1.0f);
    size_t P = model.num_parameters;
    float *whole = mallocCheck(P * sizeof(float));
    memcpy(whole, model.grads_memory, P * sizeof(float));
    gpt_zero_grad(&model);
    for (int micro = 0; micro < 2; micro++) {
        gpt_forward(&model, inputs + micro * 2 * T, targets + micro * 2 * T, 2, T);
        gpt_backward(&model, 0.5f);
    }
    // the same sums in two parts: float rounding only, relative to the largest gradient
    float rel = max_abs_diff(model.grads_memory, whole, P) / max_abs(whole, P);
    check(rel < 1e-5f, "gradient accumulation: 2 micro-batches x 1/2 equal one batch of 4", "max |diff| / max |grad| %.2e (tolerance 1e-5)", rel);
    free(whole);
    gpt_free(&model);
}

// ----------------------------------------------------------------------------
// 8. sampling

static void test_sampling(void) {
    float logits[4] = {1.0f, 3.0f, 2.0f, 0.5f}, scratch[4];
    uint64_t rng = 1;
    int greedy = sample_token(logits, 4, 0.0f, 0, &rng, scratch), top1 = sample_token(logits, 4, 1.0f, 1, &rng, scratch);
    int counts[4] = {0}, n = 40000;
    for (int i = 0; i < n; i++) { counts[sample_token(logits, 4, 1.0f, 2, &rng, scratch)]++; }
    // top-2 keeps tokens 1 and 2 with probabilities e^3/(e^3+e^2) = 0.731 and 0.269
    double p1 = (double)counts[1] / n, want = exp(3.0) / (exp(3.0) + exp(2.0));
    check(greedy == 1 && top1 == 1 && counts[0] == 0 && counts[3] == 0 && fabs(p1 - want) < 0.01,
          "sampling: greedy and top-1 pick the argmax; top-2 draws in proportion to softmax", "P(token 1) %.4f (want %.4f +- 0.01)", p1, want);
}

// ----------------------------------------------------------------------------
// 9. checkpoints

static void test_checkpoint(void) {
    GPTConfig cfg = {.max_seq_len = 8, .vocab_size = 270, .num_layers = 2, .num_heads = 2, .channels = 8};
    GPT model, loaded;
    gpt_build(&model, cfg);
    gpt_init(&model, 9);
    model.grads_memory = callocCheck(model.num_parameters, sizeof(float));
    for (size_t i = 0; i < model.num_parameters; i++) { model.grads_memory[i] = (float)i * 1e-6f; }
    adamw_update(&model, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 0);
    TrainState state = {.kind = KIND_BASE, .step = 17, .data_rng = 0x123456789ABCDEF0ULL}, back;
    const char *path = "/tmp/test_checkpoint.bin";
    checkpoint_save(path, &model, &state, 1);
    checkpoint_load(path, &loaded, 1 << KIND_BASE, &back);
    size_t P = model.num_parameters;
    int same = !memcmp(&loaded.config, &model.config, sizeof(GPTConfig)) && loaded.num_parameters == P &&
               !memcmp(loaded.params_memory, model.params_memory, P * sizeof(float)) &&
               !memcmp(loaded.m_memory, model.m_memory, P * sizeof(float)) && !memcmp(loaded.v_memory, model.v_memory, P * sizeof(float)) &&
               back.step == 17 && back.data_rng == state.data_rng && back.kind == KIND_BASE;
    check(same, "checkpoint: save and load give back config, weights, AdamW moments, step and data position", "%zu parameters", P);
    remove(path);
    gpt_free(&model);
    gpt_free(&loaded);
}

// ----------------------------------------------------------------------------
// 10. pretraining: determinism, threads, and learning on the world corpus

// trains a small model for `steps` steps on text tokens; returns the losses, and in
// *params (when not NULL) a hash of the bits of every trained parameter
static void train_losses(const int *tokens, size_t n, int vocab, int steps, float lr, int threads, float *losses,
                         float *val_loss, const int *val_tokens, size_t n_val, uint64_t *params) {
    set_threads(threads);
    GPTConfig cfg = {.max_seq_len = 64, .vocab_size = vocab, .num_layers = 2, .num_heads = 4, .channels = 64};
    GPT model;
    gpt_build(&model, cfg);
    gpt_init(&model, 1337);
    DataLoader dl;
    dataloader_init(&dl, tokens, n, 8, 64, 1337);
    for (int step = 0; step < steps; step++) {
        gpt_zero_grad(&model);
        dataloader_next(&dl);
        gpt_forward(&model, dl.inputs, dl.targets, dl.B, dl.T);
        gpt_backward(&model, 1.0f);
        gpt_clip_grad_norm(&model, 1.0f);
        adamw_update(&model, lr_schedule(step, steps, 10, lr, 0.1f), ADAM_BETA1, ADAM_BETA2, ADAM_EPS, 0.1f, step + 1, 0);
        losses[step] = model.mean_loss;
    }
    if (val_loss) {
        DataLoader val;
        dataloader_init(&val, val_tokens, n_val, 8, 64, 1337);
        *val_loss = evaluate(&model, &val, 16);
        dataloader_free(&val);
    }
    if (params) { // FNV-1a over the bytes
        const unsigned char *bytes = (const unsigned char *)model.params_memory;
        *params = 14695981039346656037ull;
        for (size_t i = 0; i < model.num_parameters * sizeof(float); i++) { *params = (*params ^ bytes[i]) * 1099511628211ull; }
    }
    dataloader_free(&dl);
    gpt_free(&model);
    set_threads(2);
}

static void test_pretraining(void) {
    const char *train_path = "data/world/pretrain_train.txt", *val_path = "data/world/pretrain_val.txt";
    if (access(train_path, R_OK) != 0) { check(0, "pretraining", "%s is missing: run make data", train_path); return; }
    size_t bytes;
    char *text = read_whole_file(train_path, &bytes);
    Tokenizer tok;
    tokenizer_train(&tok, text, bytes, 1024);
    free(text);
    size_t n, n_val;
    int *tokens = encode_file(&tok, train_path, &n), *val_tokens = encode_file(&tok, val_path, &n_val);

    enum { STEPS = 8 };
    float a[STEPS], b[STEPS], c[STEPS], d[STEPS];
    uint64_t pa, pb, pc, pd;
    train_losses(tokens, n, tok.vocab_size, STEPS, 3e-3f, 2, a, NULL, NULL, 0, &pa);
    train_losses(tokens, n, tok.vocab_size, STEPS, 3e-3f, 2, b, NULL, NULL, 0, &pb);
    train_losses(tokens, n, tok.vocab_size, STEPS, 3e-3f, 1, c, NULL, NULL, 0, &pc);
    train_losses(tokens, n, tok.vocab_size, STEPS, 3e-3f, 3, d, NULL, NULL, 0, &pd); // 3: splits no power of two divides
    check(!memcmp(a, b, sizeof(a)) && pa == pb, "determinism: the same seed gives bit-identical losses and parameters",
          "loss after %d steps %.6f and %.6f", STEPS, a[STEPS - 1], b[STEPS - 1]);
    check(!memcmp(a, c, sizeof(a)) && !memcmp(a, d, sizeof(a)) && pa == pc && pa == pd,
          "determinism: 1, 2 and 3 OpenMP threads give bit-identical losses and parameters",
          "losses %.9g, %.9g and %.9g; parameter hashes %016llx, %016llx and %016llx", a[STEPS - 1], c[STEPS - 1], d[STEPS - 1],
          (unsigned long long)pa, (unsigned long long)pc, (unsigned long long)pd);

    // A short run learns the world's language. Baselines on the val text: uniform
    // guessing costs ln V, and a model of token frequencies alone costs the unigram
    // entropy (measured below, about 4.9). The bar of 1.9 nats is far below both,
    // which takes grammar and facts; this run measured 1.71 when the bar was set (the
    // text's habits of speech are random phrases, a few nats each, that no model predicts).
    double *freq = callocCheck((size_t)tok.vocab_size, sizeof(double)), unigram = 0.0;
    for (size_t i = 0; i < n_val; i++) { freq[val_tokens[i]] += 1.0 / n_val; }
    for (int i = 0; i < tok.vocab_size; i++) { if (freq[i] > 0) { unigram -= freq[i] * log(freq[i]); } }
    free(freq);
    enum { LONG = 200 };
    float losses[LONG], val_loss;
    train_losses(tokens, n, tok.vocab_size, LONG, 1e-2f, 2, losses, &val_loss, val_tokens, n_val, NULL);
    check(val_loss < 1.9f, "pretraining: 200 steps of a 0.2M-parameter model on the world corpus reach val loss < 1.9",
          "train loss %.3f -> %.3f, val loss %.3f (uniform ln V = %.2f, unigram entropy %.2f)", losses[0], losses[LONG - 1],
          val_loss, log((float)tok.vocab_size), unigram);
    free(tokens);
    free(val_tokens);
    tokenizer_free(&tok);
}

// ----------------------------------------------------------------------------
// 13. RLHF: GAE by hand, PPO's losses against PyTorch, and the rollouts

static void test_gae(void) {
    // rewards 1, 0, 2 and values 0.5, 1, -0.5, worked by hand from the definitions:
    // gamma 1, lambda 0.5: deltas (from the end) 2 + 0 + 0.5 = 2.5, 0 - 0.5 - 1 = -1.5,
    //   1 + 1 - 0.5 = 1.5; advantages 2.5, -1.5 + 0.5 * 2.5 = -0.25, 1.5 + 0.5 * -0.25 = 1.375
    // gamma 0.5, lambda 1: deltas 2.5, 0 + 0.5 * -0.5 - 1 = -1.25, 1 + 0.5 * 1 - 0.5 = 1;
    //   advantages 2.5, -1.25 + 0.5 * 2.5 = 0, 1 + 0.5 * 0 = 1
    float rewards[3] = {1.0f, 0.0f, 2.0f}, values[3] = {0.5f, 1.0f, -0.5f}, adv[3], ret[3];
    gae(adv, ret, rewards, values, 3, 1.0f, 0.5f);
    float want1[3] = {1.375f, -0.25f, 2.5f}, want_ret[3] = {1.875f, 0.75f, 2.0f};
    int ok1 = max_abs_diff(adv, want1, 3) < 1e-6f && max_abs_diff(ret, want_ret, 3) < 1e-6f;
    gae(adv, ret, rewards, values, 3, 0.5f, 1.0f);
    float want2[3] = {1.0f, 0.0f, 2.5f};
    int ok2 = max_abs_diff(adv, want2, 3) < 1e-6f;
    // lambda = 1, gamma = 1 is the plain return minus the value: the rewards to go
    gae(adv, ret, rewards, values, 3, 1.0f, 1.0f);
    float want3[3] = {3.0f - 0.5f, 2.0f - 1.0f, 2.0f + 0.5f};
    int ok3 = max_abs_diff(adv, want3, 3) < 1e-6f;
    check(ok1 && ok2 && ok3, "gae: three hand-worked examples (gamma 1 lambda 0.5, gamma 0.5 lambda 1, gamma 1 lambda 1)",
          "right: %s, %s, %s; the last gave advantages %.4f %.4f %.4f (want 2.5 1 2.5)", ok1 ? "yes" : "NO", ok2 ? "yes" : "NO",
          ok3 ? "yes" : "NO", adv[0], adv[1], adv[2]);
    // whitening: mean 0, std 1 over the positions with a target; the others untouched
    float x[6] = {1.0f, 2.0f, 7.0f, 3.0f, 4.0f, 9.0f};
    int targets[6] = {1, 1, -1, 1, 1, -1};
    whiten(x, targets, 6); // 1..4: mean 2.5, std sqrt(1.25)
    float sd = sqrt(1.25f), want_w[6] = {-1.5f / sd, -0.5f / sd, 7.0f, 0.5f / sd, 1.5f / sd, 9.0f};
    check(max_abs_diff(x, want_w, 6) < 1e-6f, "whiten: mean 0 and std 1 over response positions, others untouched", "x[0] %.5f", x[0]);
    // the adaptive KL controller, by hand: target 2, 16 rollouts, horizon 160.
    // KL 2.2 is 10% over: beta * (1 + 0.1 * 0.1); KL 8 is far over: the step is capped
    // at 20% (1 + 0.2 * 0.1); KL 1 is 50% under: capped at -20%; on target it stays.
    float up = kl_controller(0.5f, 2.2f, 2.0f, 16, 160), capped = kl_controller(0.5f, 8.0f, 2.0f, 16, 160);
    float down = kl_controller(0.5f, 1.0f, 2.0f, 16, 160), same = kl_controller(0.5f, 2.0f, 2.0f, 16, 160);
    check(fabs(up - 0.505f) < 1e-6f && fabs(capped - 0.51f) < 1e-6f && fabs(down - 0.49f) < 1e-6f && same == 0.5f,
          "adaptive KL controller: beta moves toward the target, at most 20% of the gap per horizon",
          "beta 0.5 -> %.4f (KL 10%% over), %.4f (far over), %.4f (50%% under), %.4f (on target)", up, capped, down, same);
}

static void test_ppo_against_pytorch(void) {
    FILE *f = fopen("test/fixtures/ppo_tiny.bin", "rb");
    if (f == NULL) { check(0, "pytorch ppo fixture", "test/fixtures/ppo_tiny.bin is missing: run make fixtures"); return; }
    int h[16];
    freadCheck(h, sizeof(int), 16, f);
    GPTConfig cfg = {.vocab_size = h[2], .max_seq_len = h[3], .num_layers = h[4], .num_heads = h[5], .channels = h[6]};
    int B = h[7], T = h[8], N = B * T;
    GPT policy, value;
    gpt_build(&policy, cfg);
    cfg.scalar_head = 1;
    gpt_build(&value, cfg);
    int *inputs = mallocCheck((size_t)N * sizeof(int)), *targets = mallocCheck((size_t)N * sizeof(int));
    float *grid = mallocCheck((size_t)6 * N * sizeof(float)); // logp_old, adv, v_old, returns, logp, d
    float *logp_old = grid, *adv = grid + N, *v_old = grid + 2 * N, *returns = grid + 3 * N, *logp = grid + 4 * N, *d = grid + 5 * N;
    float *pgrads = mallocCheck(policy.num_parameters * sizeof(float)), *vgrads = mallocCheck(value.num_parameters * sizeof(float));
    float want_ploss, want_vloss;
    freadCheck(policy.params_memory, sizeof(float), policy.num_parameters, f);
    freadCheck(value.params_memory, sizeof(float), value.num_parameters, f);
    freadCheck(inputs, sizeof(int), (size_t)N, f);
    freadCheck(targets, sizeof(int), (size_t)N, f);
    freadCheck(grid, sizeof(float), (size_t)4 * N, f);
    freadCheck(&want_ploss, sizeof(float), 1, f);
    freadCheck(pgrads, sizeof(float), policy.num_parameters, f);
    freadCheck(&want_vloss, sizeof(float), 1, f);
    freadCheck(vgrads, sizeof(float), value.num_parameters, f);
    fclose(f);
    // the policy: log-probabilities from a forward pass, the clipped surrogate, backward
    gpt_forward(&policy, inputs, targets, B, T);
    for (int i = 0; i < N; i++) { logp[i] = -policy.losses[i]; }
    float ploss = ppo_policy_loss_forward(logp, logp_old, adv, targets, N, 0.2f);
    ppo_policy_loss_backward(d, logp, logp_old, adv, targets, N, 0.2f);
    for (int i = 0; i < N; i++) { d[i] = -d[i]; }
    gpt_zero_grad(&policy);
    gpt_backward_weighted(&policy, d);
    gpt_forward(&value, inputs, NULL, B, T);
    float vloss = ppo_value_loss_forward(value.acts.values, v_old, returns, targets, N, 0.2f);
    ppo_value_loss_backward(d, value.acts.values, v_old, returns, targets, N, 0.2f);
    gpt_zero_grad(&value);
    gpt_backward_values(&value, d);
    check(fabs(ploss - want_ploss) < 1e-5f && fabs(vloss - want_vloss) < 1e-5f,
          "pytorch: PPO clipped policy loss and clipped value loss on 3 padded rollouts",
          "policy %.6f (torch %.6f), value %.6f (torch %.6f), tolerance 1e-5", ploss, want_ploss, vloss, want_vloss);
    // per tensor, relative to its largest gradient, as for pretraining (the key
    // biases' gradient, 0 in exact arithmetic, is a small part of the qkvb tensor)
    float worst[2] = {0.0f, 0.0f};
    GPT *models[2] = {&policy, &value};
    float *want[2] = {pgrads, vgrads};
    for (int k = 0; k < 2; k++) {
        size_t offset = 0;
        for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
            size_t n = models[k]->param_sizes[t];
            if (n > 0) { worst[k] = fmax(worst[k], max_abs_diff(models[k]->grads_memory + offset, want[k] + offset, n) / max_abs(want[k] + offset, n)); }
            offset += n;
        }
    }
    check(worst[0] < 1e-4f && worst[1] < 1e-4f, "pytorch: every gradient of the policy (PPO loss) and of the value model",
          "max |diff| / max |grad| per tensor: policy %.2e, value %.2e (tolerance 1e-4)", worst[0], worst[1]);
    free(inputs); free(targets); free(grid); free(pgrads); free(vgrads);
    gpt_free(&policy);
    gpt_free(&value);
}

// the worst gradient error of a model against a fixture's, per tensor, relative to
// the tensor's largest gradient (as for the other PyTorch checks)
static float worst_tensor_error(const GPT *model, const float *want) {
    float worst = 0.0f;
    size_t offset = 0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        size_t n = model->param_sizes[t];
        if (n > 0) { worst = fmax(worst, max_abs_diff(model->grads_memory + offset, want + offset, n) / max_abs(want + offset, n)); }
        offset += n;
    }
    return worst;
}

// The DPO and GRPO fixtures open alike: a header of 16 int32 (magic, version, V, maxT,
// L, NH, C, and two sizes), two float32 settings, then the policy's weights, which this
// reads into a new model. NULL (and a failed check) if the file is missing.
static FILE *open_policy_fixture(const char *path, int h[16], float settings[2], GPT *policy) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) { check(0, "pytorch fixture", "%s is missing: run make fixtures", path); return NULL; }
    freadCheck(h, sizeof(int), 16, f);
    freadCheck(settings, sizeof(float), 2, f);
    GPTConfig cfg = {.vocab_size = h[2], .max_seq_len = h[3], .num_layers = h[4], .num_heads = h[5], .channels = h[6]};
    gpt_build(policy, cfg);
    freadCheck(policy->params_memory, sizeof(float), policy->num_parameters, f);
    return f;
}

// DPO through a whole policy against PyTorch (test/reference.py dpo-fixtures)
static void test_dpo_against_pytorch(void) {
    int h[16];
    float hp[2], want_loss;
    GPT policy;
    FILE *f = open_policy_fixture("test/fixtures/dpo_tiny.bin", h, hp, &policy);
    if (f == NULL) { return; }
    int P = h[7], T = h[8], N = 2 * P * T;
    float beta = hp[0], eps = hp[1];
    int *inputs = mallocCheck((size_t)N * sizeof(int)), *targets = mallocCheck((size_t)N * sizeof(int));
    float *ref = mallocCheck((size_t)2 * P * sizeof(float)), *seq = mallocCheck((size_t)2 * P * sizeof(float));
    float *dseq = callocCheck((size_t)2 * P, sizeof(float)), *logp = mallocCheck((size_t)N * sizeof(float));
    float *dlogp = mallocCheck((size_t)N * sizeof(float)), *grads = mallocCheck(policy.num_parameters * sizeof(float));
    freadCheck(inputs, sizeof(int), (size_t)N, f);
    freadCheck(targets, sizeof(int), (size_t)N, f);
    freadCheck(ref, sizeof(float), (size_t)2 * P, f);
    freadCheck(&want_loss, sizeof(float), 1, f);
    freadCheck(grads, sizeof(float), policy.num_parameters, f);
    fclose(f);
    gpt_forward(&policy, inputs, targets, 2 * P, T);
    gpt_logprobs(&policy, logp);
    sequence_logprobs(seq, logp, targets, 2 * P, T);
    float loss = dpo_loss_forward(seq, seq + P, ref, ref + P, P, beta, eps);
    dpo_loss_backward(dseq, dseq + P, seq, seq + P, ref, ref + P, P, beta, eps);
    sequence_logprobs_backward(dlogp, dseq, targets, 2 * P, T);
    gpt_zero_grad(&policy);
    gpt_backward_logprobs(&policy, dlogp);
    float worst = worst_tensor_error(&policy, grads);
    check(fabs(loss - want_loss) < 1e-5f && worst < 1e-4f,
          "pytorch: DPO loss (label smoothing) on 3 padded pairs, and every gradient of the policy",
          "loss %.6f (torch %.6f), max |diff| / max |grad| per tensor %.2e (tolerances 1e-5, 1e-4)", loss, want_loss, worst);
    free(inputs); free(targets); free(ref); free(seq); free(dseq); free(logp); free(dlogp); free(grads);
    gpt_free(&policy);
}

// GRPO's loss through a whole policy against PyTorch (test/reference.py grpo-fixtures)
static void test_grpo_against_pytorch(void) {
    int h[16];
    float hp[2], want_loss;
    GPT policy;
    FILE *f = open_policy_fixture("test/fixtures/grpo_tiny.bin", h, hp, &policy);
    if (f == NULL) { return; }
    int B = h[7], T = h[8], N = B * T;
    float eps = hp[0], beta = hp[1];
    int *inputs = mallocCheck((size_t)N * sizeof(int)), *targets = mallocCheck((size_t)N * sizeof(int));
    float *grid = mallocCheck((size_t)5 * N * sizeof(float)); // old, ref, adv, logp, d
    float *old = grid, *ref = grid + N, *adv = grid + 2 * N, *logp = grid + 3 * N, *d = grid + 4 * N;
    float *grads = mallocCheck(policy.num_parameters * sizeof(float));
    freadCheck(inputs, sizeof(int), (size_t)N, f);
    freadCheck(targets, sizeof(int), (size_t)N, f);
    freadCheck(grid, sizeof(float), (size_t)3 * N, f);
    freadCheck(&want_loss, sizeof(float), 1, f);
    freadCheck(grads, sizeof(float), policy.num_parameters, f);
    fclose(f);
    gpt_forward(&policy, inputs, targets, B, T);
    gpt_logprobs(&policy, logp);
    float loss = grpo_loss_forward(logp, old, ref, adv, targets, B, T, eps, beta);
    grpo_loss_backward(d, logp, old, ref, adv, targets, B, T, eps, beta);
    gpt_zero_grad(&policy);
    gpt_backward_logprobs(&policy, d);
    float worst = worst_tensor_error(&policy, grads);
    check(fabs(loss - want_loss) < 1e-5f && worst < 1e-4f,
          "pytorch: GRPO loss (clipped surrogate + beta k3, per-response means) on 4 padded rollouts, every gradient",
          "loss %.6f (torch %.6f), max |diff| / max |grad| per tensor %.2e (tolerances 1e-5, 1e-4)", loss, want_loss, worst);
    free(inputs); free(targets); free(grid); free(grads);
    gpt_free(&policy);
}

// a model with weights from gpt_init plus noise (so the scalar head is not 0)
static void random_model(GPT *model, GPTConfig cfg, uint64_t seed) {
    gpt_build(model, cfg);
    gpt_init(model, seed);
    uint64_t rng = seed * 7 + 1;
    for (size_t i = 0; i < model->num_parameters; i++) { model->params_memory[i] += 0.05f * (float)random_normal(&rng); }
}

static void test_rlhf_rollouts(void) {
    GPTConfig cfg = {.max_seq_len = 24, .vocab_size = FIRST_MERGE + 40, .num_layers = 2, .num_heads = 2, .channels = 16};
    GPT policy, ref, value, reward;
    random_model(&policy, cfg, 5);
    random_model(&ref, cfg, 5); // the same weights: the reference is the policy before training
    cfg.scalar_head = 1;
    random_model(&value, cfg, 6);
    random_model(&reward, cfg, 7);
    // make <|end|> likely enough (about 1 in 10 per token) that some responses end and
    // some run to the limit: the final layernorm's bias points at <|end|>'s embedding,
    // adding about 3.5 to its logit against ~V others near 0
    for (int c = 0; c < cfg.channels; c++) {
        float sign = c % 2 ? 1.0f : -1.0f;
        policy.params.lnfb[c] = ref.params.lnfb[c] = sign;
        policy.params.wte[(size_t)TOKEN_END * cfg.channels + c] = ref.params.wte[(size_t)TOKEN_END * cfg.channels + c] = 3.5f * sign / cfg.channels;
    }
    enum { B = 5, P = 5 };
    ChatExample prompts[P];
    uint64_t rng = 3;
    for (int i = 0; i < P; i++) { // <|user|> 1 to 7 byte tokens <|assistant|>
        int n = 3 + i + (i == 4 ? 2 : 0);
        prompts[i].tokens = mallocCheck((size_t)n * sizeof(int));
        prompts[i].tokens[0] = TOKEN_USER;
        for (int t = 1; t < n - 1; t++) { prompts[i].tokens[t] = 97 + (int)(random_u64(&rng) % 26); }
        prompts[i].tokens[n - 1] = TOKEN_ASSISTANT;
        prompts[i].n = prompts[i].n_prompt = n;
    }
    int idx[B] = {0, 1, 2, 3, 4};
    Rollouts r;
    rollouts_init(&r, B, cfg.max_seq_len);
    KVCache kv;
    kvcache_init(&kv, policy.config);
    uint64_t sample_rng = 11;
    long sampled = rlhf_generate(&r, &policy, &kv, prompts, idx, 10, &sample_rng);
    int ended = 0, response = 0, T = r.T;
    for (int b = 0; b < B; b++) { ended += r.ended[b]; response += r.len[b] - r.prompt_len[b]; }
    rlhf_score(&r, &policy, &ref, &value, &reward, 2); // minibatches of 2, 2 and 1 rows
    // 1. the log-probabilities seen while sampling (KV cache) are those of a full forward
    float worst = 0.0f;
    int positions = 0;
    for (int i = 0; i < B * T; i++) {
        if (r.targets[i] < 0) { continue; }
        positions++;
        worst = fmax(worst, fabs(r.gen_logp[i] - r.logp[i]));
    }
    check(worst < 1e-5f && positions == response && sampled == response && ended > 0 && ended < B,
          "rlhf: rollout log-probs (KV cache, while sampling) equal a full forward's, at every response token",
          "%d response tokens in %d rollouts (%d ended with <|end|>), max |diff| %.2e (tolerance 1e-5)", positions, B, ended, worst);
    // 2. before any update: the policy is the reference, so the KL is exactly 0
    int same = !memcmp(r.logp, r.ref_logp, (size_t)B * T * sizeof(float));
    float kl = rlhf_advantages(&r, 0.1f, 1.0f, 0.0f);
    check(same && kl == 0.0f, "rlhf: before the first update, the KL to the reference is exactly 0", "kl %g", kl);
    // 3. rewards: 0 everywhere but each response's last token, which holds the score
    //    (minus the penalty when no <|end|> came); advantages only at response positions
    int rewards_ok = 1;
    for (int b = 0; b < B; b++) {
        int last = b * T + r.len[b] - 2;
        for (int t = 0; t < T; t++) {
            int i = b * T + t;
            float want = i == last ? r.scores[b] - (r.ended[b] ? 0.0f : 1.0f) : 0.0f;
            rewards_ok &= r.rewards[i] == want && (r.targets[i] >= 0 || r.advantages[i] == 0.0f);
        }
    }
    check(rewards_ok, "rlhf: the score (less the no-<|end|> penalty) lands on each response's last token, nothing elsewhere",
          "%d rollouts, %d of them penalized", B, B - ended);
    // 4. the first PPO minibatch: the ratio is exactly 1, so nothing is clipped and
    //    the approximate KL is exactly 0; prompt and padding positions get no gradient
    Config sched = CONFIG_DEFAULTS;
    sched.steps = 8; sched.lr = 1e-3f; sched.warmup = 0; sched.grad_clip = 1.0f;
    float *scratch = mallocCheck((size_t)2 * T * sizeof(float)), *dscratch = mallocCheck((size_t)2 * T * sizeof(float));
    PPOStats st = {0};
    ppo_update(&r, 0, 2, &policy, &value, &sched, 0, scratch, dscratch, &st);
    int ratio_one = 1;
    for (int i = 0; i < 2 * T; i++) { if (r.targets[i] >= 0) { ratio_one &= scratch[i] == r.logp[i]; } }
    float leak = 0.0f, grad = 0.0f;
    for (int i = 0; i < 2 * T; i++) {
        float g = max_abs(policy.grads_acts.logits + (size_t)i * cfg.vocab_size, (size_t)cfg.vocab_size);
        if (r.targets[i] < 0) { leak = fmax(leak, g); } else { grad = fmax(grad, g); }
    }
    check(ratio_one && st.clip_frac == 0.0 && st.approx_kl == 0.0, "rlhf: in the first PPO update the probability ratio is exactly 1",
          "clip fraction %g, approx KL %g", st.clip_frac, st.approx_kl);
    check(leak == 0.0f && grad > 0.0f, "rlhf: prompt and padding positions get exactly zero gradient in the PPO loss",
          "max |dlogits| at masked positions %g, at response positions %.2e", leak, grad);
    // 5. after some updates the policy has moved: the ratio leaves 1 and the KL grows
    for (int k = 1; k < 8; k++) { ppo_update(&r, (k % 2) * 2, 2, &policy, &value, &sched, k, scratch, dscratch, &st); }
    rlhf_score(&r, &policy, &ref, &value, &reward, 2);
    float kl_after = rlhf_advantages(&r, 0.1f, 1.0f, 0.0f);
    check(st.approx_kl > 0.0 && kl_after != 0.0f, "rlhf: after 8 PPO updates the policy differs from the reference",
          "kl %.4f, mean approx KL %.2e", kl_after, st.approx_kl / st.updates);
    free(scratch); free(dscratch);
    for (int i = 0; i < P; i++) { free(prompts[i].tokens); }
    rollouts_free(&r);
    kvcache_free(&kv);
    gpt_free(&policy); gpt_free(&ref); gpt_free(&value); gpt_free(&reward);
}

// 9c. DPO and GRPO: the pieces by hand, their start (the policy is the reference), and
// with learning rate 0 a policy that stays exactly where it started through every
// epoch and minibatch (PPO too)
static void test_alignment_by_hand(void) {
    // DPO, one pair: log-ratios +1 (chosen) and -1 (rejected), beta 0.5: h = 1,
    // loss softplus(-1) = 0.3132617; smoothed 0.1: 0.9 softplus(-1) + 0.1 softplus(1)
    float lc = -3.0f, lr = -5.0f, rc = -4.0f, rr = -4.0f;
    float plain = dpo_loss_forward(&lc, &lr, &rc, &rr, 1, 0.5f, 0.0f), smooth = dpo_loss_forward(&lc, &lr, &rc, &rr, 1, 0.5f, 0.1f);
    float dc = 0.0f, dr = 0.0f;
    dpo_loss_backward(&dc, &dr, &lc, &lr, &rc, &rr, 1, 0.5f, 0.0f); // -beta sigmoid(-1) = -0.1344707
    check(fabs(plain - 0.3132617f) < 1e-6f && fabs(smooth - 0.4132617f) < 1e-6f && fabs(dc + 0.1344707f) < 1e-6f && dr == -dc,
          "dpo loss by hand: -log sigmoid(beta h), label smoothing, d/dlogp = -+beta sigmoid(-h)",
          "loss %.7f (want 0.3132617), smoothed %.7f (0.4132617), dchosen %.7f (-0.1344707), drejected %.7f", plain, smooth, dc, dr);
    // group advantages: (1 2 3 4) has mean 2.5 and std sqrt(5/3); (5 5 5 5) gives 0 exactly
    float rewards[8] = {1, 2, 3, 4, 5, 5, 5, 5}, adv[8];
    group_advantages(adv, rewards, 8, 4);
    float sd = sqrtf(5.0f / 3.0f) + 1e-4f;
    check(fabs(adv[0] + 1.5f / sd) < 1e-6f && fabs(adv[3] - 1.5f / sd) < 1e-6f && fabs(adv[1] + 0.5f / sd) < 1e-6f &&
          adv[4] == 0.0f && adv[7] == 0.0f, "grpo group advantages by hand: standardized within each group, 0 for a flat group",
          "%.5f %.5f %.5f %.5f | %g %g %g %g", adv[0], adv[1], adv[2], adv[3], adv[4], adv[5], adv[6], adv[7]);
    // k3 = expm1(q) - q for q = ref_logp - logp, through the GRPO loss with A = 0 and
    // beta 1: at q = 0.5, e^0.5 - 1.5 = 0.1487213; at q = 1e-3, 5.001667e-7 (where
    // exp(q) - q - 1 in float loses everything to rounding)
    float logp[2] = {-2.0f, -2.0f}, ref[2] = {-1.5f, -1.999f}, zero[2] = {0, 0};
    int targets[2] = {1, -1};
    float k_big = grpo_loss_forward(logp, logp, ref, zero, targets, 1, 2, 0.2f, 1.0f);
    float q = ref[1] - logp[1];
    targets[0] = -1; targets[1] = 1;
    float k_small = grpo_loss_forward(logp, logp, ref, zero, targets, 1, 2, 0.2f, 1.0f);
    float want_small = q * q / 2 + q * q * q / 6;
    check(fabs(k_big - 0.1487213f) < 1e-6f && fabs(k_small - want_small) < 1e-3f * want_small,
          "grpo's k3 KL estimate by hand: exp(q) - q - 1, exact to 0.1% even at q = 1e-3 (expm1)",
          "k3(0.5) %.7f (want 0.1487213), k3(%.3g) %.6e (want %.6e)", k_big, q, k_small, want_small);
}

// a ChatData of P pairs by hand: <|user|> prompt <|assistant|> response <|end|>, the
// loss mask on the response and its <|end|>
static void pairs_by_hand(ChatData *d, int P, uint64_t *rng) {
    *d = (ChatData){.count = 2 * P, .per_record = 2};
    d->examples = callocCheck((size_t)2 * P, sizeof(ChatExample));
    for (int i = 0; i < 2 * P; i++) {
        ChatExample *ex = &d->examples[i];
        int prompt = 2 + (i / 2) % 3, response = 1 + (int)(random_u64(rng) % 4);
        ex->n_prompt = prompt + 2;
        ex->n = ex->n_prompt + response + 1;
        ex->tokens = mallocCheck((size_t)ex->n * sizeof(int));
        ex->loss = callocCheck((size_t)ex->n, 1);
        ex->tokens[0] = TOKEN_USER;
        for (int t = 1; t < ex->n - 1; t++) { ex->tokens[t] = 97 + (int)(random_u64(rng) % 26); }
        if (i % 2) { memcpy(ex->tokens, d->examples[i - 1].tokens, (size_t)ex->n_prompt * sizeof(int)); } // one prompt per pair
        ex->tokens[ex->n_prompt - 1] = TOKEN_ASSISTANT;
        ex->tokens[ex->n - 1] = TOKEN_END;
        for (int t = ex->n_prompt; t < ex->n; t++) { ex->loss[t] = 1; }
    }
}

static void test_dpo_start(void) {
    GPTConfig cfg = {.max_seq_len = 16, .vocab_size = FIRST_MERGE + 40, .num_layers = 2, .num_heads = 2, .channels = 16};
    GPT policy, ref;
    random_model(&policy, cfg, 21);
    random_model(&ref, cfg, 21);
    enum { P = 4 };
    uint64_t rng = 5;
    ChatData d;
    pairs_by_hand(&d, P, &rng);
    int maxT = cfg.max_seq_len, idx[P] = {2, 0, 3, 1};
    DPOBatch b;
    dpo_batch_init(&b, P, maxT);
    DPOStats st = {0};
    float loss0 = dpo_forward(&policy, &ref, &d, idx, P, 0.1f, 0.1f, &b, &st);
    check(loss0 == (float)log(2.0) && st.right == 0.5 * P && st.margin == 0.0,
          "dpo: at step 0 the policy is the reference: loss exactly ln 2, every pair a tie, margin 0",
          "loss %.7f, ranked right %.1f of %d, margin %g", loss0, st.right, P, st.margin);
    // row i is pair idx[i]'s chosen answer and row P + i its rejected one: each summed
    // log-probability equals a forward of that example alone
    float worst = 0.0f;
    for (int i = 0; i < 2 * P; i++) {
        const ChatExample *ex = &d.examples[2 * idx[i % P] + i / P];
        int targets[16];
        for (int t = 0; t < ex->n - 1; t++) { targets[t] = t + 1 >= ex->n_prompt ? ex->tokens[t + 1] : -1; }
        gpt_forward(&policy, ex->tokens, targets, 1, ex->n - 1);
        worst = fmax(worst, fabs(b.seq[i] + policy.mean_loss * policy.num_targets));
    }
    check(worst < 1e-5f, "dpo: rows 0..P-1 are the chosen answers and P..2P-1 the rejected, each summed over its response",
          "max |batched sum - the example alone| %.2e over %d rows (tolerance 1e-5)", worst, 2 * P);
    // some steps on these pairs: the loss falls and the implicit rewards rank them right
    Config sched = CONFIG_DEFAULTS;
    sched.steps = 20; sched.lr = 3e-3f; sched.warmup = 0; sched.grad_clip = 1.0f; sched.freeze_embeddings = 0;
    float loss = loss0;
    for (int step = 0; step < 20; step++) {
        DPOStats s = {0};
        gpt_zero_grad(&policy);
        loss = dpo_forward(&policy, &ref, &d, idx, P, 0.1f, 0.0f, &b, &s);
        dpo_backward(&policy, &b, P, 0.1f, 0.0f, 1);
        float lr;
        optimizer_step(&policy, &sched, step, loss, &lr);
        st = s;
    }
    check(loss < 0.9f * loss0 && st.right == P, "dpo: 20 steps on 4 pairs lower the loss and rank every pair right",
          "loss %.4f -> %.4f, ranked right %.1f of %d", loss0, loss, st.right, P);
    dpo_batch_free(&b);
    chat_data_free(&d);
    gpt_free(&policy); gpt_free(&ref);
}

// rollouts of B answers to P prompts by a random policy equal to its reference
static void rollouts_by_hand(Rollouts *r, GPT *policy, GPT *ref, GPT *value, GPT *reward, int B, int G) {
    GPTConfig cfg = {.max_seq_len = 24, .vocab_size = FIRST_MERGE + 40, .num_layers = 2, .num_heads = 2, .channels = 16};
    random_model(policy, cfg, 5);
    random_model(ref, cfg, 5);
    cfg.scalar_head = 1;
    random_model(value, cfg, 6);
    random_model(reward, cfg, 7);
    for (int c = 0; c < cfg.channels; c++) { // <|end|> about 1 token in 10 (test_rlhf_rollouts)
        float sign = c % 2 ? 1.0f : -1.0f;
        policy->params.lnfb[c] = ref->params.lnfb[c] = sign;
        policy->params.wte[(size_t)TOKEN_END * cfg.channels + c] = ref->params.wte[(size_t)TOKEN_END * cfg.channels + c] = 3.5f * sign / cfg.channels;
    }
    int P = B / G;
    ChatExample *prompts = callocCheck((size_t)P, sizeof(ChatExample));
    uint64_t rng = 3;
    for (int i = 0; i < P; i++) {
        int n = 3 + i;
        prompts[i].tokens = mallocCheck((size_t)n * sizeof(int));
        prompts[i].tokens[0] = TOKEN_USER;
        for (int t = 1; t < n - 1; t++) { prompts[i].tokens[t] = 97 + (int)(random_u64(&rng) % 26); }
        prompts[i].tokens[n - 1] = TOKEN_ASSISTANT;
        prompts[i].n = prompts[i].n_prompt = n;
    }
    int *idx = mallocCheck((size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) { idx[b] = b / G; }
    rollouts_init(r, B, cfg.max_seq_len);
    KVCache kv;
    kvcache_init(&kv, policy->config);
    uint64_t sample_rng = 11;
    rlhf_generate(r, policy, &kv, prompts, idx, 10, &sample_rng);
    kvcache_free(&kv);
    for (int i = 0; i < P; i++) { free(prompts[i].tokens); }
    free(prompts); free(idx);
}

// With learning rate 0, the weights never move, so every update of every epoch sees
// log-probabilities bit-identical to the rollouts' (the ratio exactly 1): anything else
// would mean the update and the scoring computed different things.
static void test_lr_zero(void) {
    enum { B = 8, G = 4, M = 3 };
    for (int grpo = 0; grpo < 2; grpo++) {
        GPT policy, ref, value, reward;
        Rollouts r;
        rollouts_by_hand(&r, &policy, &ref, &value, &reward, B, G);
        rlhf_score(&r, &policy, &ref, grpo ? NULL : &value, &reward, M); // minibatches of 3, 3 and 2
        float scores[B], adv[B];
        float kl = grpo ? rollouts_kl(&r) : rlhf_advantages(&r, 0.1f, 1.0f, 0.0f);
        if (grpo) { grpo_advantages(&r, G, 1.0f, 0.0f, scores, adv); }
        Config sched = CONFIG_DEFAULTS;
        sched.steps = 9; sched.lr = 0.0f; sched.warmup = 0; sched.grad_clip = 1.0f; sched.freeze_embeddings = 0;
        sched.kl_coef = 0.04f;
        int T = r.T, moved = 0, updates = 0;
        float *scratch = mallocCheck((size_t)M * T * sizeof(float)), *dscratch = mallocCheck((size_t)M * T * sizeof(float));
        PPOStats st = {0};
        float first_loss = 0.0f;
        for (int e = 0; e < 3; e++) {
            for (int c = 2; c >= 0; c--) { // the minibatches in another order than scoring's
                int s = c * M, m = B - s < M ? B - s : M;
                if (grpo) { grpo_update(&r, s, m, &policy, &sched, updates++, scratch, dscratch, &st); }
                else { ppo_update(&r, s, m, &policy, &value, &sched, updates++, scratch, dscratch, &st); }
                if (updates == 1) { first_loss = (float)st.policy_loss; }
                for (int i = 0; i < m * T; i++) { moved += r.targets[s * T + i] >= 0 && scratch[i] != r.logp[s * T + i]; }
            }
        }
        check(kl == 0.0f && moved == 0 && st.clip_frac == 0.0 && st.approx_kl == 0.0,
              grpo ? "grpo, learning rate 0: the log-ratio stays exactly 0 through 3 epochs of 3 minibatches"
                   : "ppo, learning rate 0: the log-ratio stays exactly 0 through 3 epochs of 3 minibatches",
              "KL to the reference %g, response tokens whose log-prob moved %d, clip fraction %g, approx KL %g", kl, moved,
              st.clip_frac, st.approx_kl);
        if (grpo) { // at the first update the ratio is 1 and the k3 term 0: the loss is the mean of -A over responses
            double want = 0.0;
            for (int b = 2 * M; b < B; b++) { want -= adv[b] / 2; }
            check(fabs(first_loss - want) < 1e-5, "grpo: at the start the loss is -mean(A), the KL term exactly 0",
                  "loss %.6f, -mean A of the minibatch %.6f", first_loss, want);
        }
        free(scratch); free(dscratch);
        rollouts_free(&r);
        gpt_free(&policy); gpt_free(&ref); gpt_free(&value); gpt_free(&reward);
    }
}

// sampled_kl, the KL to the SFT model that the summary reports: about 0 for a policy
// that is its reference (the KV cache's log-probabilities against a full forward's),
// and clearly above 0 for one that is not
static void test_sampled_kl(void) {
    GPT policy, ref, value, reward;
    Rollouts r;
    rollouts_by_hand(&r, &policy, &ref, &value, &reward, 4, 2); // for the models and their <|end|> bias
    ChatExample prompts[6];
    uint64_t rng = 9;
    for (int i = 0; i < 6; i++) {
        int n = 3 + i % 3;
        prompts[i] = (ChatExample){.tokens = mallocCheck((size_t)n * sizeof(int)), .n = n, .n_prompt = n};
        prompts[i].tokens[0] = TOKEN_USER;
        for (int t = 1; t < n - 1; t++) { prompts[i].tokens[t] = 97 + (int)(random_u64(&rng) % 26); }
        prompts[i].tokens[n - 1] = TOKEN_ASSISTANT;
    }
    uint64_t s1 = 4, s2 = 4;
    float same = sampled_kl(&policy, &ref, prompts, 6, 10, &s1);
    // the other model: the policy with its bias toward <|end|> turned around (the
    // final layernorm's bias), so that each <|end|> the policy samples is about e^-7
    // times as likely under it: a KL of several nats per answer
    GPT other;
    random_model(&other, policy.config, 5);
    for (int c = 0; c < policy.config.channels; c++) {
        other.params.lnfb[c] = -policy.params.lnfb[c];
        other.params.wte[(size_t)TOKEN_END * policy.config.channels + c] = policy.params.wte[(size_t)TOKEN_END * policy.config.channels + c];
    }
    float apart = sampled_kl(&policy, &other, prompts, 6, 10, &s2);
    check(fabs(same) < 1e-4f && apart > 1.0f, "sampled KL to the reference: 0 for the reference itself, > 0 for another model",
          "KL(policy || itself) %.2e (tolerance 1e-4), KL(policy || the policy without its <|end|> bias) %.3f", same, apart);
    for (int i = 0; i < 6; i++) { free(prompts[i].tokens); }
    rollouts_free(&r);
    gpt_free(&policy); gpt_free(&ref); gpt_free(&value); gpt_free(&reward); gpt_free(&other);
}

// 10. the curves: plot_log draws one polyline per key, with a point per line that has it,
// all inside the picture
static void test_plot(void) {
    const char *log = "/tmp/test_plot.jsonl", *svg = "/tmp/test_plot.svg";
    FILE *f = fopenCheck(log, "wb");
    for (int step = 1; step <= 50; step++) {
        fprintf(f, "{\"step\": %d, \"train_loss\": %.4f", step, 5.0 / step);
        if (step % 10 == 0) { fprintf(f, ", \"val_loss\": %.4f", 6.0 / step); }
        fprintf(f, "}\n");
    }
    fcloseCheck(f);
    const char *keys[] = {"train_loss", "val_loss"};
    plot_log(log, svg, "test", keys, 2);
    size_t n;
    char *text = read_whole_file(svg, &n);
    int lines = 0, points[2] = {0, 0}, outside = 0;
    const char *p = text;
    while ((p = strstr(p, "points=\"")) != NULL && lines < 2) {
        p += 8;
        double x, y;
        int used;
        while (sscanf(p, "%lf,%lf %n", &x, &y, &used) == 2) {
            points[lines]++;
            outside += x < 0 || x > 720 || y < 0 || y > 40 + 2 * (170 + 40);
            p += used;
        }
        lines++;
    }
    check(lines == 2 && points[0] == 50 && points[1] == 5 && outside == 0 && strstr(text, "</svg>") != NULL,
          "plot_log: an SVG with a curve per key, a point per logged value, all inside the picture",
          "%d curves of %d and %d points, %d outside", lines, points[0], points[1], outside);
    free(text);
}

// UTF-8 out: bytes pass through a Utf8Stream as valid UTF-8, however they are split,
// with one U+FFFD for each maximal run that cannot complete a character
static void test_utf8_stream(void) {
    // Unicode 15, section 3.9, table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64
    const char in[] = "a\xF1\x80\x80\xE1\x80\xC2" "b\x80" "c\x80\xBF" "d";
    const char want[] = "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD" "d";
    int ok = 1;
    for (size_t split = 0; split <= sizeof(in) - 1; split++) { // the same at every place the input is cut in two
        Str out = {0};
        Utf8Stream u = {0};
        utf8_stream_put(&u, in, split, &out);
        utf8_stream_put(&u, in + split, sizeof(in) - 1 - split, &out);
        utf8_stream_end(&u, &out);
        ok &= out.len == sizeof(want) - 1 && !memcmp(out.s, want, out.len);
        str_free(&out);
    }
    check(ok, "utf8 stream: invalid bytes become U+FFFD, one per maximal run (Unicode table 3-8), cut anywhere", "");
    // a valid character split over several calls waits, then comes out whole; one cut short ends as U+FFFD
    const char *emoji = "\xF0\x9F\xA6\x8A", *chinese = "\xE7\x8B\x90";
    Str out = {0};
    Utf8Stream u = {0};
    int early = 0;
    for (int i = 0; i < 4; i++) { utf8_stream_put(&u, emoji + i, 1, &out); early += i < 3 && out.len > 0; }
    utf8_stream_put(&u, chinese, 2, &out);
    size_t before_end = out.len;
    utf8_stream_end(&u, &out);
    check(early == 0 && before_end == 4 && !memcmp(out.s, emoji, 4) && out.len == 7 && !memcmp(out.s + 4, "\xEF\xBF\xBD", 3),
          "utf8 stream: a character split across tokens is held back until whole; an unfinished one ends as U+FFFD",
          "%zu bytes before the end, %zu after", before_end, out.len);
    str_free(&out);
    // random valid text passes through unchanged; random bytes always come out valid
    uint64_t rng = 7;
    int same = 1, valid = 1;
    for (int trial = 0; trial < 200; trial++) {
        Str text = {0}, back = {0};
        for (int i = 0; i < 40; i++) {
            unsigned cps[] = {0x41, 0xE9, 0x4E2D, 0x1F98A, 0x10FFFF, 0xD7FF, 0xE000, 0x7FF, 0x800};
            utf8_put(&text, cps[random_u64(&rng) % 9]);
        }
        Utf8Stream s1 = {0};
        for (size_t i = 0; i < text.len;) { // in random pieces
            size_t n = 1 + random_u64(&rng) % 5;
            if (n > text.len - i) { n = text.len - i; }
            utf8_stream_put(&s1, text.s + i, n, &back);
            i += n;
        }
        utf8_stream_end(&s1, &back);
        same &= back.len == text.len && !memcmp(back.s, text.s, text.len);
        unsigned char junk[64];
        for (int i = 0; i < 64; i++) { junk[i] = (unsigned char)random_u64(&rng); }
        Str clean = {0};
        Utf8Stream s2 = {0};
        utf8_stream_put(&s2, (const char *)junk, 64, &clean);
        utf8_stream_end(&s2, &clean);
        for (size_t i = 0; i < clean.len;) {
            int n = utf8_length((const unsigned char *)clean.s + i);
            if (n == 0) { valid = 0; break; }
            i += (size_t)n;
        }
        str_free(&text); str_free(&back); str_free(&clean);
    }
    check(same && valid, "utf8 stream: 200 valid texts in random pieces come back unchanged; 200 random byte strings come out valid",
          "unchanged %d, valid %d", same, valid);
}

// the tokens and loss mask of an example, as a string: U A E for the specials, the
// bytes as they are; and a string of 0/1 for the mask
static void example_strings(const ChatExample *ex, char *tokens, char *mask) {
    for (int i = 0; i < ex->n; i++) {
        int t = ex->tokens[i];
        tokens[i] = t == TOKEN_USER ? 'U' : t == TOKEN_ASSISTANT ? 'A' : t == TOKEN_END ? 'E' : (char)t;
        mask[i] = ex->loss[i] ? '1' : '0';
    }
    tokens[ex->n] = mask[ex->n] = '\0';
}

// Conversations: TRL's messages read into turns, laid out by the template, SFT's loss
// on the answers it trains, the oldest turns dropped first, HH transcripts and system
// messages converted
static void test_conversations(void) {
    Tokenizer tok;
    byte_tokenizer(&tok);
    struct { const char *line; int kind; const char *tokens, *mask; } cases[] = {
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}, "
         "{\"role\": \"user\", \"content\": \"ok\"}, {\"role\": \"assistant\", \"content\": \"no\"}]}",
         RECORD_SFT, "UhiAyoEUokAnoE", "00001110000111"},
        {"{\"prompt\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}, "
         "{\"role\": \"user\", \"content\": \"ok\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"no\"}]}",
         RECORD_SFT, "UhiAyoEUokAnoE", "00000000000111"},
        {"{\"prompt\": \"hi\", \"completion\": \"yo\"}", RECORD_SFT, "UhiAyoE", "0000111"},
        {"{\"messages\": [{\"role\": \"system\", \"content\": \"be\"}, {\"role\": \"user\", \"content\": \"hi\"}, "
         "{\"role\": \"assistant\", \"content\": \"yo\", \"name\": \"x\"}]}", RECORD_SFT, "Ube\n\nhiAyoE", "00000000111"},
        {"{\"prompt\": \"\\n\\nHuman: hi\\n\\nAssistant: yo\\n\\nHuman: ok\\n\\nAssistant:\", \"completion\": \" no\"}",
         RECORD_SFT, "UhiAyoEUokAnoE", "00000000000111"},
        {"{\"prompt\": \"Human: hi, not a transcript\", \"completion\": \"yo\"}", RECORD_SFT, "UHuman: hi, not a transcriptAyoE",
         "00000000000000000000000000000111"},
        {"{\"prompt\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}, "
         "{\"role\": \"user\", \"content\": \"ok\"}]}", RECORD_PROMPT, "UhiAyoEUokA", "00000000000"},
    };
    int ok = 1;
    char tokens[256], mask[256];
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        Chat rec[3];
        int counts[2] = {0, 0};
        const char *err = chat_record(cases[c].line, cases[c].kind, 0, rec, counts);
        ChatExample ex = {0};
        if (err == NULL) {
            chat_encode_turns(&ex, &tok, &rec[0], cases[c].kind == RECORD_SFT ? &rec[1].turns[0] : NULL, 0, 256);
            example_strings(&ex, tokens, mask);
        }
        int good = err == NULL && !strcmp(tokens, cases[c].tokens) && !strcmp(mask, cases[c].mask);
        if (!good) { printf("     case %zu: %s, tokens \"%s\", mask %s\n", c, err ? err : "read", err ? "" : tokens, err ? "" : mask); }
        ok &= good;
        chat_example_free(&ex);
        for (int k = 0; k < 3; k++) { chat_free(&rec[k]); }
    }
    check(ok, "conversations: messages, prompt/completion lists, system messages and HH transcripts laid out by the template, "
          "loss on the trained answers only", "%zu cases", sizeof(cases) / sizeof(cases[0]));

    // --keep-transcripts leaves one user turn
    Chat rec[3];
    int counts[2] = {0, 0};
    chat_record("{\"prompt\": \"Human: hi\\n\\nAssistant:\", \"completion\": \"yo\"}", RECORD_SFT, 1, rec, counts);
    check(rec[0].n == 1 && counts[0] == 0, "conversations: --keep-transcripts keeps a transcript as one user turn", "%d turns", rec[0].n);
    for (int k = 0; k < 3; k++) { chat_free(&rec[k]); }

    // the oldest turns go first, whole, until the prompt fits and starts with the user's turn
    const char *line = "{\"messages\": [{\"role\": \"user\", \"content\": \"aaaa\"}, {\"role\": \"assistant\", \"content\": \"bbbb\"}, "
                       "{\"role\": \"user\", \"content\": \"cccc\"}, {\"role\": \"assistant\", \"content\": \"dd\"}]}";
    chat_record(line, RECORD_SFT, 0, rec, counts);
    struct { int max_len; const char *tokens; int dropped, status; } cuts[] = {
        {20, "UaaaaAbbbbEUccccAddE", 0, 1}, {19, "UccccAddE", 2, 2}, {9, "UccccAddE", 2, 2}, {8, "UcccAddE", 2, 2},
        {5, "", 2, 0},
    };
    ok = 1;
    for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
        ChatExample ex = {0};
        int status = chat_encode_turns(&ex, &tok, &rec[0], &rec[1].turns[0], 0, cuts[c].max_len);
        tokens[0] = '\0';
        if (status) { example_strings(&ex, tokens, mask); }
        int good = status == cuts[c].status && !strcmp(tokens, cuts[c].tokens) && (status == 0 || ex.dropped_turns == cuts[c].dropped);
        if (!good) { printf("     max_len %d: status %d, \"%s\", %d dropped\n", cuts[c].max_len, status, tokens, ex.dropped_turns); }
        ok &= good;
        chat_example_free(&ex);
    }
    for (int k = 0; k < 3; k++) { chat_free(&rec[k]); }
    check(ok, "conversations: too long, the oldest turns go first, whole; then the last user turn is cut from the left; "
          "then the example is dropped", "%zu lengths", sizeof(cuts) / sizeof(cuts[0]));

    // what is refused, with the reason
    struct { const char *line; int kind; const char *why; } bad[] = {
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", RECORD_SFT, "assistant's answer"},
        {"{\"messages\": [{\"role\": \"bot\", \"content\": \"hi\"}]}", RECORD_SFT, "role must be"},
        {"{\"messages\": [{\"role\": \"user\"}]}", RECORD_PROMPT, "\"content\""},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [1]}]}", RECORD_PROMPT, "must be strings"},
        {"{\"messages\": []}", RECORD_PROMPT, "empty"},
        {"{\"prompt\": [{\"role\": \"assistant\", \"content\": \"hi\"}]}", RECORD_PROMPT, "end with a user turn"},
        {"{\"prompt\": \"hi\", \"completion\": [{\"role\": \"user\", \"content\": \"x\"}]}", RECORD_SFT, "one assistant message"},
        {"{\"prompt\": 3}", RECORD_PROMPT, "neither a string nor a list"},
        {"{\"chosen\": \"a\", \"rejected\": \"b\"}", RECORD_PAIR, "missing key"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"} {\"role\": \"user\"}]}", RECORD_PROMPT, "expected ','"},
    };
    ok = 1;
    for (size_t c = 0; c < sizeof(bad) / sizeof(bad[0]); c++) {
        const char *err = chat_record(bad[c].line, bad[c].kind, 0, rec, counts);
        int good = err != NULL && strstr(err, bad[c].why) != NULL;
        if (!good) { printf("     refused %zu: %s\n", c, err ? err : "accepted"); }
        if (err == NULL) { for (int k = 0; k < 3; k++) { chat_free(&rec[k]); } }
        ok &= good;
    }
    check(ok, "conversations: malformed messages are refused, saying why", "%zu cases", sizeof(bad) / sizeof(bad[0]));
    tokenizer_free(&tok);
}

static void count_put(void *ctx, int token) { (void)token; (*(int *)ctx)++; }

// generation stops after a token of its stop set, and only there; the sink sees every
// token but the stop
static void test_generate_stops(void) {
    GPTConfig cfg = {.max_seq_len = 16, .vocab_size = FIRST_MERGE, .num_layers = 1, .num_heads = 1, .channels = 8};
    GPT model;
    gpt_build(&model, cfg);
    memset(model.params_memory, 0, model.num_parameters * sizeof(float));
    // every position's final state is the layernorm bias (all 1); the tied head then scores
    // each token by the sum of its embedding row: <|end|> alone has one
    for (int i = 0; i < 8; i++) { model.params.lnfb[i] = 1.0f; model.params.wte[(size_t)TOKEN_END * 8 + i] = 1.0f; }
    KVCache kv;
    kvcache_init(&kv, cfg);
    int tokens[16] = {TOKEN_USER}, seen = 0;
    uint64_t rng = 1;
    TokenSink sink = {count_put, &seen};
    int n1 = gpt_generate(&model, &kv, tokens, 1, 8, 0.0f, 0, STOP_AT(TOKEN_END), &rng, NULL, &sink);
    int stop1 = tokens[n1 - 1];
    int seen1 = seen;
    seen = 0;
    int n2 = gpt_generate(&model, &kv, tokens, 1, 8, 0.0f, 0, STOP_AT(TOKEN_EOT), &rng, NULL, &sink);
    check(n1 == 2 && stop1 == TOKEN_END && seen1 == 0 && n2 == 9 && seen == 8,
          "generate: stops after a token of its stop set and passes the others to the sink",
          "stop at <|end|>: %d tokens, %d seen; stop at <|endoftext|> only: %d tokens, %d seen", n1, seen1, n2, seen);
    kvcache_free(&kv);
    gpt_free(&model);
}

int main(int argc, char **argv) {
    test_argc = argc;
    test_argv = argv;
    set_threads(2);
    if (wanted("tokenizer")) { test_tokenizer(); test_gpt2_chunks(); }
    if (wanted("json")) { test_json(); }
    if (wanted("jsonl")) { test_jsonl(); }
    if (wanted("chat_template")) { test_chat_template(); }
    if (wanted("sft_masking")) { test_sft_masking(); }
    if (wanted("utf8_stream")) { test_utf8_stream(); }
    if (wanted("conversations")) { test_conversations(); }
    if (wanted("generate_stops")) { test_generate_stops(); }
    if (wanted("reward_position")) { test_reward_position(); }
    if (wanted("grouped_batches")) { test_grouped_batches(); }
    if (wanted("matmul")) { test_matmul_engine(); }
    if (wanted("attention")) { test_attention(); }
    if (wanted("plot")) { test_plot(); }
    if (wanted("against_pytorch")) { test_against_pytorch(); }
    if (wanted("reward_against_pytorch")) { test_reward_against_pytorch(); }
    if (wanted("kv_cache")) { test_kv_cache(); }
    if (wanted("optimizer")) { test_optimizer(); }
    if (wanted("frozen_embeddings")) { test_frozen_embeddings(); }
    if (wanted("grad_accumulation")) { test_grad_accumulation(); }
    if (wanted("sampling")) { test_sampling(); }
    if (wanted("checkpoint")) { test_checkpoint(); }
    if (wanted("pretraining")) { test_pretraining(); }
    if (wanted("gae")) { test_gae(); }
    if (wanted("ppo_against_pytorch")) { test_ppo_against_pytorch(); }
    if (wanted("rlhf_rollouts")) { test_rlhf_rollouts(); }
    if (wanted("alignment_by_hand")) { test_alignment_by_hand(); }
    if (wanted("dpo_start")) { test_dpo_start(); }
    if (wanted("lr_zero")) { test_lr_zero(); }
    if (wanted("sampled_kl")) { test_sampled_kl(); }
    if (wanted("dpo_against_pytorch")) { test_dpo_against_pytorch(); }
    if (wanted("grpo_against_pytorch")) { test_grpo_against_pytorch(); }
    check_unmatched_names();
    gemm_free();
    return checks_failed > 0;
}
