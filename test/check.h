// The one reporting device of every test program: one line per check, "ok" or
// "FAIL", the check's name, and what was measured (with the tolerance, where one
// applies). test/run.sh counts the lines; a test program exits non-zero on a failure.
#ifndef CHECK_H
#define CHECK_H
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int checks_passed = 0, checks_failed = 0;

static void check(int ok, const char *name, const char *fmt, ...) {
    char detail[512] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    printf("%s %s: %s\n", ok ? "ok  " : "FAIL", name, detail);
    fflush(stdout);
    if (ok) { checks_passed++; } else { checks_failed++; }
}

// A test program runs all its tests, or, given names on its command line, only those
// (make check N runs the tests of exercise N so: ./test_grad layernorm). A name
// that matches no test is an error, so a typo cannot pass for a clean run.
static int test_argc;
static char **test_argv;
static int test_matched[64];

static inline int wanted(const char *name) {
    if (test_argc < 2) { return 1; }
    for (int i = 1; i < test_argc && i < 64; i++) {
        if (strcmp(test_argv[i], name) == 0) { test_matched[i] = 1; return 1; }
    }
    return 0;
}

static inline void check_unmatched_names(void) {
    for (int i = 1; i < test_argc && i < 64; i++) {
        if (!test_matched[i]) { check(0, "test names", "no test is called %s", test_argv[i]); }
    }
}
#endif
