// The one reporting device of every test program: one line per check, "ok" or
// "FAIL", the check's name, and what was measured (with the tolerance, where one
// applies). test/run.sh counts the lines; a test program exits non-zero on a failure.
#ifndef CHECK_H
#define CHECK_H
#include <stdarg.h>
#include <stdio.h>

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
#endif
