// libFuzzer target: the tokenizer. The first byte picks what the rest is:
//   0: text to encode; decode(encode(text)) must give the text back
//   1: token ids (2 bytes each) to decode
//   2: a tokenizer file to load; if it loads, text must round-trip through it
//   3: text to encode with GPT-2's chunk rule (gpt2_chunk_length): it must round-trip too
// Errors must be messages (fail() returns here while fuzzing), never crashes.
#define FUZZING
#define TESTING
#include "../../train.c"

static Tokenizer trained;
static int ready = 0;

static void roundtrip(const Tokenizer *tok, const char *text, size_t n) {
    int *ids = mallocCheck((n + 1) * sizeof(int));
    int count = tokenizer_encode(tok, text, n, ids);
    size_t len;
    char *back = tokenizer_decode(tok, ids, count, &len);
    if (len != n || memcmp(back, text, n) != 0) { abort(); }
    free(back);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ready) { // a small vocabulary with real merges, once
        const char *text = "the fox eats berries; the owl eats fish. \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80 the the fox fox";
        tokenizer_train(&trained, text, strlen(text), FIRST_MERGE + 40);
        ready = 1;
    }
    if (size < 1) { return 0; }
    jmp_buf on_error;
    fuzz_on_error = &on_error;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] % 4 == 0) {
        roundtrip(&trained, rest, n);
    } else if (data[0] % 4 == 3) {
        Tokenizer gpt2_rule = trained; // the same merges, GPT-2's chunks
        gpt2_rule.split = SPLIT_GPT2;
        roundtrip(&gpt2_rule, rest, n);
    } else if (data[0] % 4 == 1) {
        int count = (int)(n / 2), *ids = mallocCheck((size_t)(count + 1) * sizeof(int));
        for (int i = 0; i < count; i++) { ids[i] = (int)(((unsigned)(uint8_t)rest[2 * i] << 8 | (uint8_t)rest[2 * i + 1]) % 400); }
        if (setjmp(on_error) == 0) { free(tokenizer_decode(&trained, ids, count, NULL)); } // ids >= 300: an error
        free(ids);
    } else if (n > 0) {
        FILE *f = fmemopen((void *)rest, n, "rb");
        if (f && setjmp(on_error) == 0) {
            Tokenizer tok;
            tokenizer_read(&tok, f, "fuzz input");
            roundtrip(&tok, "the fox eats berries", 20);
            tokenizer_free(&tok);
        }
        if (f) { fclose(f); }
    }
    fuzz_on_error = NULL;
    return 0;
}
