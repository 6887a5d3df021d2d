// libFuzzer target: the checkpoint loader (checkpoint_read), on any bytes. A bad
// file must be refused with a message before anything is allocated for it; one that
// loads must be whole and run a forward pass.
#define FUZZING
#define TESTING
#include "../../train.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) { return 0; }
    FILE *f = fmemopen((void *)data, size, "rb");
    if (!f) { return 0; }
    jmp_buf on_error;
    fuzz_on_error = &on_error;
    if (setjmp(on_error) == 0) {
        GPT model;
        TrainState st;
        checkpoint_read(f, "fuzz input", &model, 0, &st);
        if (model.config.max_seq_len <= 64 && model.num_parameters < (1 << 20)) { // small enough to run
            int tokens[2] = {0, 1};
            gpt_forward(&model, tokens, NULL, 1, 2);
        }
        gpt_free(&model);
    }
    fuzz_on_error = NULL;
    fclose(f);
    return 0;
}
