#!/usr/bin/env python3
"""Each function of train.c that train.cu replaces, beside its GPU version.

Usage:
    python3 test/gpu/pairs.py                the table of shares for the working tree
    python3 test/gpu/pairs.py --rev REV      the same for train.c and train.cu at a git revision
    python3 test/gpu/pairs.py --before REV   the table with REV's share beside the working tree's
    python3 test/gpu/pairs.py --show NAME    one pair side by side (NAME: the C function);
                                             with --rev, at that revision

A pair is a C function of train.c and its GPU side in train.cu: the launcher (the
function of the same name, GPU(name) there) and the kernels listed in PAIRS below.
Its identical-line share: of the lines of the C function's body that are neither
blank nor only braces, the part that also occurs, whitespace-normalized, somewhere in
the bodies of the GPU side. So 100% means every line of the C function can be found
word for word in its port. Not a measure of correctness (test/test_train.cu is that),
only of how closely a student can lay the two side by side.

--show prints the C function on the left and the GPU side on the right, lines aligned
where they agree (difflib). The mark between the columns: '=' the two lines are the
same; '+' the C line occurs in the GPU side, elsewhere. Standard library only.
"""
import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# train.c function -> the kernels of train.cu that port it (the launcher of the same name
# always belongs to the GPU side too). model_calloc, model_free, zero_floats and
# device_name have no kernel: they are CUDA runtime calls.
PAIRS = [
    ("encoder_forward", ["encoder_forward_kernel"]),
    ("encoder_backward", ["encoder_backward_kernel"]),
    ("layernorm_forward", ["layernorm_forward_kernel"]),
    ("layernorm_backward", ["layernorm_backward_dinp_kernel", "layernorm_backward_dweight_kernel"]),
    ("matmul_forward", ["matmul_forward_bias_kernel"]),
    ("matmul_backward", ["matmul_backward_bias_kernel"]),
    ("attention_forward", ["attention_forward_split_kernel", "attention_forward_softmax_kernel",
                           "attention_forward_merge_kernel"]),
    ("attention_backward", ["attention_backward_split_kernel", "attention_backward_softmax_kernel",
                            "attention_backward_merge_kernel"]),
    ("attention_forward_cached", ["attention_forward_cached_store_kernel", "attention_forward_cached_softmax_kernel"]),
    ("scaled_softmax", ["scaled_softmax"]),  # a __device__ function, which both attentions' softmax kernels call
    ("gelu_forward", ["gelu_forward_kernel"]),
    ("gelu_backward", ["gelu_backward_kernel"]),
    ("residual_forward", ["residual_forward_kernel"]),
    ("residual_backward", ["residual_backward_kernel"]),
    ("crossentropy_softmax_forward", ["crossentropy_softmax_forward_kernel"]),
    ("crossentropy_softmax_backward", ["crossentropy_softmax_backward_kernel"]),
    ("sum_of_squares", ["sum_of_squares_kernel"]),
    ("scale_floats", ["scale_floats_kernel"]),
    ("adamw_tensor", ["adamw_kernel"]),
]

# The kernels' names in train.cu before the ports of commit a827623's layers (up to and
# including a827623 itself), so that --rev gives the before figures. A name that a
# revision does not hold is left out of its pair.
FORMER = {
    "matmul_forward": ["add_bias_kernel"],
    "attention_forward": ["attention_forward_kernel"],
    "attention_backward": ["attention_backward_query_kernel", "attention_backward_key_kernel"],
    "attention_forward_cached": ["attention_forward_cached_kernel"],
}


def read_sources(rev):
    """train.c and train.cu, from the working tree or from git revision rev."""
    texts = []
    for name in ("train.c", "train.cu"):
        if rev is None:
            with open(os.path.join(ROOT, name)) as f:
                texts.append(f.read())
        else:
            res = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:{name}"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            if res.returncode != 0:
                sys.exit(f"pairs.py: cannot read {name} at {rev}: {res.stderr.strip()}")
            texts.append(res.stdout)
    return texts


def body_after(text, start):
    """The text between the first '{' at or after start and its matching '}', skipping
    braces in comments, strings and character literals; None if there is none."""
    i, n = text.find("{", start), len(text)
    if i < 0:
        return None
    depth, j = 0, i
    while j < n:
        ch = text[j]
        if text.startswith("//", j):
            j = text.find("\n", j)
            j = n if j < 0 else j
            continue
        if text.startswith("/*", j):
            j = text.find("*/", j + 2)
            j = n if j < 0 else j + 2
            continue
        if ch in "\"'":
            k = j + 1
            while k < n and text[k] != ch:
                k += 2 if text[k] == "\\" else 1
            j = k + 1
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
        j += 1
    return None


def find_function(text, pattern):
    """(first line of the definition, body) of the function whose definition line, at
    the start of a line, matches pattern; a prototype (ending in ';' before any '{') is
    passed over. None if there is no such definition."""
    for m in re.finditer(pattern, text, re.M):
        brace, semicolon = text.find("{", m.start()), text.find(";", m.start())
        if brace < 0 or 0 <= semicolon < brace:
            continue
        body = body_after(text, m.start())
        if body is not None:
            line_end = text.find("\n", m.start())
            return text[m.start():line_end if line_end >= 0 else len(text)], body
    return None


def c_function(text, name):
    return find_function(text, r"^(?:REPLACED_ON_GPU\s+)?[A-Za-z_][\w \t\*]*\b" + re.escape(name) + r"\(")


def gpu_functions(text, name, kernels):
    """The GPU side of a pair: [(name, (first line, body))] for the launcher, which
    runs the passes in train.c's order, then each kernel train.cu holds, in file order."""
    found = []
    for kernel in kernels:
        f = find_function(text, r"^(?:__global__|__device__)\s+void\s+" + re.escape(kernel) + r"\(")
        if f:
            found.append((text.find(f[0]), kernel, f))
    found.sort()
    launcher = find_function(text, r"^extern \"C\" [^\n(]*\bGPU\(" + re.escape(name) + r"\)\(")
    side = [(f"{name} (launcher)", launcher)] if launcher else []
    return side + [(kernel, f) for _, kernel, f in found]


def normalize(line):
    return " ".join(line.split())


def counted(line):
    """A line that counts: not blank, and not only braces (and semicolons)."""
    return re.fullmatch(r"[{};\s]*", line) is None


def share(c_body, gpu_bodies):
    """(identical, lines) of the C body's counted lines."""
    gpu = {normalize(line) for body in gpu_bodies for line in body.splitlines() if counted(line)}
    lines = [normalize(line) for line in c_body.splitlines() if counted(line)]
    return sum(line in gpu for line in lines), len(lines)


def measure(rev):
    """{C function: (identical, lines, GPU names)} for every pair found in the revision."""
    c_text, cu_text = read_sources(rev)
    result = {}
    for name, kernels in PAIRS:
        c = c_function(c_text, name)
        side = gpu_functions(cu_text, name, kernels + FORMER.get(name, []))
        if c is None or not side:
            continue
        identical, lines = share(c[1], [f[1] for _, f in side])
        result[name] = (identical, lines, [n for n, _ in side if not n.endswith("(launcher)")])
    return result


def percent(identical, lines):
    return f"{identical:>3}/{lines:<3} {100 * identical / lines:4.0f}%" if lines else "   -"


def print_table(rev, before=None):
    now = measure(rev)
    old = measure(before) if before is not None else None
    where = f"revision {rev}" if rev is not None else "the working tree"
    print(f"identical-line share of each train.c function and its GPU side (launcher and kernels), {where}"
          + (f", and at revision {before}" if before is not None else ""))
    head = f"{'train.c function':<30}"
    if old is not None:
        head += f" {before:>13}"
    print(head + f" {'share':>13}  train.cu kernels")
    total, old_total = [0, 0], [0, 0]
    for name, _ in PAIRS:
        if name not in now:
            print(f"{name:<30} (not found)")
            continue
        identical, lines, kernels = now[name]
        total[0] += identical
        total[1] += lines
        row = f"{name:<30}"
        if old is not None:
            if name in old:
                old_total[0] += old[name][0]
                old_total[1] += old[name][1]
                row += f" {percent(old[name][0], old[name][1]):>13}"
            else:
                row += f" {'-':>13}"
        print(row + f" {percent(identical, lines):>13}  {', '.join(kernels)}")
    row = f"{'all pairs':<30}"
    if old is not None:
        row += f" {percent(*old_total):>13}"
    print(row + f" {percent(*total):>13}")


def dedent(lines):
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents) if indents else 0
    return [line[cut:].rstrip() for line in lines]


def body_lines(body):
    lines = body.split("\n")
    # the text after '{' on the definition's line, and before the closing '}', if blank
    if lines and not lines[0].strip():
        lines = lines[1:]
    if lines and not lines[-1].strip():
        lines = lines[:-1]
    return dedent(lines)


def show(rev, name, width):
    c_text, cu_text = read_sources(rev)
    kernels = dict(PAIRS).get(name)
    if kernels is None:
        sys.exit(f"pairs.py: {name} is not one of the pairs: {', '.join(n for n, _ in PAIRS)}")
    c = c_function(c_text, name)
    side = gpu_functions(cu_text, name, kernels + FORMER.get(name, []))
    if c is None or not side:
        sys.exit(f"pairs.py: {name} or its GPU side not found")
    left = [c[0].strip()] + ["    " + line if line else "" for line in body_lines(c[1])]
    right = []
    for _, (first, body) in side:
        right += [first.strip()] + ["    " + line if line else "" for line in body_lines(body)] + [""]
    right = right[:-1]
    gpu_set = {normalize(line) for line in right if counted(line)}
    identical, lines = share(c[1], [f[1] for _, f in side])
    col = max(20, (width - 3) // 2)

    def cell(text):
        return text if len(text) <= col else text[:col - 1] + ">"

    def mark(line, other):
        if not counted(line):
            return " "
        if other is not None and normalize(line) == normalize(other):
            return "="
        return "+" if normalize(line) in gpu_set else " "

    print(f"{'train.c':<{col}}   train.cu")
    a, b = [normalize(line) for line in left], [normalize(line) for line in right]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        for k in range(max(i2 - i1, j2 - j1)):
            l = left[i1 + k] if i1 + k < i2 else None
            r = right[j1 + k] if j1 + k < j2 else None
            m = mark(l, r) if l is not None else " "
            print(f"{cell(l or ''):<{col}} {m} {cell(r or '')}".rstrip())
    print(f"\n{name}: {identical} of its {lines} lines occur in the GPU side "
          f"({100 * identical / lines:.0f}%); '=' the same line beside it, '+' the same line elsewhere")


def main():
    parser = argparse.ArgumentParser(description="Each train.c function beside its train.cu kernels, and the share "
                                                 "of lines they have in common.")
    parser.add_argument("--rev", help="read train.c and train.cu from this git revision (default: the working tree)")
    parser.add_argument("--before", help="also give the share at this git revision, beside the other")
    parser.add_argument("--show", metavar="NAME", help="print the pair of this C function side by side")
    parser.add_argument("--width", type=int, default=max(120, shutil.get_terminal_size((160, 24)).columns),
                        help="total width of --show's two columns (default: the terminal's, at least 120)")
    args = parser.parse_args()
    if args.show:
        show(args.rev, args.show, args.width)
    else:
        print_table(args.rev, args.before)


if __name__ == "__main__":
    main()
