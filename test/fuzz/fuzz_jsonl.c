// libFuzzer target: the JSONL reader (jsonl_read), on any bytes as a file.
// A bad input must come back as an error message, never a crash, a leak or a read
// past the end; a good one must give strings that are valid UTF-8 with no NUL.
// Build and run: make fuzz (test/fuzz/README.md).
#define FUZZING
#define TESTING
#include "../../train.c"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) { snprintf(path, sizeof(path), "/tmp/fuzz_jsonl.%d.jsonl", (int)getpid()); }
    FILE *f = fopen(path, "wb");
    if (!f) { return 0; }
    fwrite(data, 1, size, f);
    fclose(f);
    const char *keys[] = {"prompt", "chosen", "rejected"};
    JsonlRecords rec;
    char err[1024];
    // one key, as SFT prompts are read, and three, as preference pairs are
    for (int nkeys = 1; nkeys <= 3; nkeys += 2) {
        if (jsonl_read(path, keys, nkeys, &rec, err, sizeof(err)) != NULL) { continue; }
        for (int i = 0; i < rec.count * nkeys; i++) {
            const unsigned char *v = (const unsigned char *)rec.values[i];
            for (size_t k = 0; v[k];) {
                int n = utf8_length(v + k);
                if (n == 0) { abort(); } // a value that is not UTF-8 got through
                k += (size_t)n;
            }
        }
        jsonl_free(&rec);
    }
    return 0;
}
