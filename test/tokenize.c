// test/tokenize.c: the ids train.c's tokenizer gives a text, for test/test_interop.py to
// compare with Hugging Face's tokenizers reading the tokenizer.json that export wrote.
//     ./test/tokenize TOKENIZER.bin < text    one id per line
#define TESTING
#include "../train.c"

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s tokenizer.bin < text\n", argv[0]); return 2; }
    Tokenizer tok;
    tokenizer_load(&tok, argv[1]);
    size_t n = 0, cap = 1 << 16;
    char *text = mallocCheck(cap);
    for (size_t got; (got = fread(text + n, 1, cap - n, stdin)) > 0;) {
        n += got;
        if (n == cap) { text = realloc(text, cap *= 2); if (!text) { FAIL("out of memory"); } }
    }
    int *ids = mallocCheck((n + 1) * sizeof(int));
    int count = tokenizer_encode(&tok, text, n, ids);
    for (int i = 0; i < count; i++) { printf("%d\n", ids[i]); }
    free(ids); free(text);
    tokenizer_free(&tok);
    gemm_free();
    return 0;
}
