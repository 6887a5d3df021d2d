// test/logits.c: train.c's logits for a sequence of ids, and its greedy continuation,
// for test/test_interop.py to compare with transformers running the same weights.
//     ./test/logits CKPT TOKENIZER.bin < ids              (T, V) float32 logits on stdout
//     ./test/logits --greedy N CKPT TOKENIZER.bin < ids   N greedy ids (KV-cached generation)
// Ids, in and out, are numbered as the exported folder numbers them (hf_id).
#define TESTING
#include "../train.c"

int main(int argc, char **argv) {
    int greedy = argc == 5 && !strcmp(argv[1], "--greedy") ? atoi(argv[2]) : 0;
    if (argc != 3 && !greedy) { fprintf(stderr, "usage: %s [--greedy N] CKPT TOKENIZER.bin < ids\n", argv[0]); return 2; }
    GPT model;
    TrainState state;
    Tokenizer tok;
    checkpoint_load(argv[argc - 2], &model, 0, &state);
    tokenizer_load(&tok, argv[argc - 1]);
    int V = model.config.vocab_size, maxT = model.config.max_seq_len, T = 0;
    int *ours_of = mallocCheck((size_t)V * sizeof(int)), *ids = mallocCheck((size_t)maxT * sizeof(int));
    for (int id = 0; id < V; id++) { ours_of[hf_id(&tok, id)] = id; }
    for (int x; T < maxT && scanf("%d", &x) == 1; T++) {
        if (x < 0 || x >= V) { FAIL("id %d is outside the vocabulary", x); }
        ids[T] = ours_of[x];
    }
    if (greedy) {
        KVCache kv;
        kvcache_init(&kv, model.config);
        uint64_t rng = 1;
        int n = gpt_generate(&model, &kv, ids, T, greedy, 0.0f, 0, 0, &rng, NULL, NULL);
        for (int i = T; i < n; i++) { printf("%d\n", hf_id(&tok, ids[i])); }
        kvcache_free(&kv);
    } else {
        gpt_forward(&model, ids, NULL, 1, T);
        float *row = mallocCheck((size_t)V * sizeof(float));
        for (int t = 0; t < T; t++) {
            for (int id = 0; id < V; id++) { row[hf_id(&tok, id)] = model.acts.logits[(size_t)t * V + id]; }
            fwriteCheck(row, sizeof(float), (size_t)V, stdout);
        }
        free(row);
    }
    free(ids);
    free(ours_of);
    gpt_free(&model);
    tokenizer_free(&tok);
    gemm_free();
    return 0;
}
