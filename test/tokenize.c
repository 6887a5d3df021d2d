// test/tokenize.c: the ids train.c's tokenizer gives a text, for test/test_interop.py to
// compare with Hugging Face's tokenizers (reading the tokenizer.json that export wrote)
// and with tiktoken (GPT-2's tokenizer, read from vocab.json and merges.txt).
//     ./test/tokenize TOKENIZER.bin < text         our ids, one per line
//     ./test/tokenize --hf TOKENIZER.bin < text    the ids of the exported folder (hf_id)
//     ./test/tokenize --hf GPT2_DIR < text         GPT-2's ids, its tokenizer read from the folder
//     ./test/tokenize --decode TOKENIZER < ids     our ids (one per line) back to bytes
#define TESTING
#include "../train.c"

int main(int argc, char **argv) {
    int hf = argc == 3 && !strcmp(argv[1], "--hf"), decode = argc == 3 && !strcmp(argv[1], "--decode");
    if (argc != 2 && !hf && !decode) { fprintf(stderr, "usage: %s [--hf | --decode] TOKENIZER.bin|GPT2_DIR < input\n", argv[0]); return 2; }
    const char *path = argv[argc - 1];
    Tokenizer tok;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) { gpt2_tokenizer_read(&tok, path); }
    else { tokenizer_load(&tok, path); }
    size_t n = 0, cap = 1 << 16;
    char *text = mallocCheck(cap);
    for (size_t got; (got = fread(text + n, 1, cap - n, stdin)) > 0;) {
        n += got;
        if (n == cap) { text = realloc(text, cap *= 2); if (!text) { FAIL("out of memory"); } }
    }
    if (decode) {
        int *ids = mallocCheck((n / 2 + 2) * sizeof(int)), count = 0; // an id and a separator take 2 bytes or more
        text[n < cap ? n : cap - 1] = '\0';
        for (char *p = text, *end; (ids[count] = (int)strtol(p, &end, 10)), end != p; p = end) { count++; }
        size_t len;
        char *bytes = tokenizer_decode(&tok, ids, count, &len);
        fwrite(bytes, 1, len, stdout);
        free(bytes);
        free(ids);
    } else {
        int *ids = mallocCheck((n + 1) * sizeof(int));
        int count = tokenizer_encode(&tok, text, n, ids);
        for (int i = 0; i < count; i++) { printf("%d\n", hf ? hf_id(&tok, ids[i]) : ids[i]); }
        free(ids);
    }
    free(text);
    tokenizer_free(&tok);
    gemm_free();
    return 0;
}
