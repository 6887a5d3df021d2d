"""An independent PyTorch reference for train.c.

The same GPT-2 (our own module, written from the architecture, not train.c's code),
the same loss, AdamW, gradient clipping and learning-rate schedule.

    python3 test/reference.py fixtures test/fixtures/gpt_tiny.bin   # regenerate the fixture
    python3 test/reference.py bench -L 6 -C 384 -H 6 -V 4096 -t 256 -b 8 -n 5

The fixture is computed in float64 so that it is exact to far below the tolerances of
test/test_train.c, which compares train.c (float32) against it. Regenerating it is
deliberate (`make fixtures`); the file is committed, and CI never needs PyTorch.
File layout (little-endian): int32 header[16] = magic, version, V, maxT, L, NH, C, B,
T, steps; then float32: weights (train.c's order and (out, in) layout), then int32
inputs (B*T) and targets (B*T); then float32 logits (B*T*V), loss, gradients of every
weight, the 8 AdamW settings (lr, warmup, final_frac, weight_decay, clip, beta1,
beta2, eps), the losses of `steps` training steps, and the weights after them.
"""
import argparse
import math
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MAGIC, VERSION = 0x58494646, 1  # "FFIX"
NAMES = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
         "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln1 = nn.LayerNorm(C, eps=1e-5)
        self.qkv = nn.Linear(C, 3 * C)
        self.attproj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C, eps=1e-5)
        self.fc = nn.Linear(C, 4 * C)
        self.fcproj = nn.Linear(4 * C, C)

    def attention(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        heads = lambda y: y.view(B, T, self.NH, C // self.NH).transpose(1, 2)  # (B, NH, T, HS)
        q, k, v = heads(q), heads(k), heads(v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.NH)
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = F.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        return self.attproj((att @ v).transpose(1, 2).reshape(B, T, C))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V, maxT, L, NH, C, scalar_head=False):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(maxT, C)
        self.blocks = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.lnf = nn.LayerNorm(C, eps=1e-5)
        self.head = nn.Linear(C, 1) if scalar_head else None  # reward and value models

    def body(self, idx):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.blocks:
            x = block(x)
        return self.lnf(x)

    def values(self, idx):
        """The scalar head's output at every position, (B, T)."""
        return self.head(self.body(idx)).squeeze(-1)

    def forward(self, idx, targets=None):
        logits = self.body(idx) @ self.wte.weight.T  # the LM head, tied to the token embedding
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def tensors(self, get=lambda p: p):
        """The weights (or, with get=lambda p: p.grad, their gradients) as train.c
        orders them: per kind of tensor, all layers stacked."""
        stack = lambda part: torch.stack([get(part(b)) for b in self.blocks])
        return [get(self.wte.weight), get(self.wpe.weight),
                stack(lambda b: b.ln1.weight), stack(lambda b: b.ln1.bias),
                stack(lambda b: b.qkv.weight), stack(lambda b: b.qkv.bias),
                stack(lambda b: b.attproj.weight), stack(lambda b: b.attproj.bias),
                stack(lambda b: b.ln2.weight), stack(lambda b: b.ln2.bias),
                stack(lambda b: b.fc.weight), stack(lambda b: b.fc.bias),
                stack(lambda b: b.fcproj.weight), stack(lambda b: b.fcproj.bias),
                get(self.lnf.weight), get(self.lnf.bias)] + (
                [get(self.head.weight).reshape(-1), get(self.head.bias)] if self.head is not None else [])


def lr_schedule(step, total, warmup, lr, final_frac):
    """train.c's lr_schedule: linear warmup, then cosine decay to lr * final_frac."""
    if step < warmup:
        return lr * (step + 1) / warmup
    decay_steps = total - warmup - 1
    progress = min(1.0, (step - warmup) / decay_steps) if decay_steps > 0 else 1.0
    return lr * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def optimizer(model, lr, weight_decay, beta1, beta2, eps):
    """AdamW with decay on matrices (embeddings, linear weights) only."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2), eps=eps)


def flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors]).to(torch.float32)


def random_weights(model):
    """Random values everywhere, layernorms included, so no term hides behind a 0 or a 1."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.1 if p.dim() >= 2 else 0.05))
        for b in model.blocks:
            b.ln1.weight.add_(1.0)
            b.ln2.weight.add_(1.0)
        model.lnf.weight.add_(1.0)


def fixtures(path):
    torch.manual_seed(1337)
    torch.set_default_dtype(torch.float64)
    V, maxT, L, NH, C, B, T, steps = 300, 12, 2, 2, 16, 3, 12, 3
    model = GPT(V, maxT, L, NH, C)
    random_weights(model)
    idx = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    targets[0, 3] = -1  # positions without a target take no loss (SFT masks prompts this way)
    targets[2, 0] = -1
    weights = flat(model.tensors())
    logits, loss = model(idx, targets)
    loss.backward()
    grads = flat(model.tensors(lambda p: p.grad))
    lr, warmup, final_frac, wd, clip, beta1, beta2, eps = 1e-2, 2, 0.1, 0.1, 0.5, 0.9, 0.95, 1e-8
    model.zero_grad()
    opt = optimizer(model, lr, wd, beta1, beta2, eps)
    losses = []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_schedule(step, steps, warmup, lr, final_frac)
        opt.zero_grad()
        _, step_loss = model(idx, targets)
        step_loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(step_loss.item())
    with open(path, "wb") as f:
        f.write(struct.pack("<16i", MAGIC, VERSION, V, maxT, L, NH, C, B, T, steps, *([0] * 6)))
        f.write(weights.numpy().tobytes())
        f.write(idx.to(torch.int32).numpy().tobytes())
        f.write(targets.to(torch.int32).numpy().tobytes())
        f.write(logits.detach().to(torch.float32).numpy().tobytes())
        f.write(struct.pack("<f", loss.item()))
        f.write(grads.numpy().tobytes())
        f.write(struct.pack("<8f", lr, warmup, final_frac, wd, clip, beta1, beta2, eps))
        f.write(struct.pack(f"<{steps}f", *losses))
        f.write(flat(model.tensors()).numpy().tobytes())
    print(f"wrote {path}: loss {loss.item():.6f}, losses after steps {losses}")


def gpt2_init(model, L):
    """GPT-2's initialization, as train.c's gpt_init: normal(0, 0.02), residual
    projections 0.02 / sqrt(2L), biases 0, layernorm weights 1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith(("attproj.weight", "fcproj.weight")) else 0.02
                p.normal_(0.0, std)
            elif "ln" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()


def matmul_speed():
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    mm = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        mm.append(time.perf_counter() - t0)
    mm.sort()
    print(f"torch matmul: 2048x2048x2048 | median {1e3 * mm[2]:.1f} ms | {2 * 2048 ** 3 / mm[2] / 1e9:.1f} GFLOP/s", flush=True)


def linear_layers_speed(args, step_s):
    """The products of one training step's linear layers alone, as train.c's bench
    times them (bench_linear_layers): forward, dinp and dW with db for each layer's
    four linear layers and the head, one set of warm operands per shape."""
    BT, C, V = args.b * args.t, args.C, args.V
    # (in, out) channels, how many of them in a step, and whether they have a bias
    shapes = [(C, 3 * C, args.L, True), (C, C, args.L, True), (C, 4 * C, args.L, True), (4 * C, C, args.L, True),
              (C, V, 1, False)]
    ops = []
    for cin, oc, layers, has_bias in shapes:
        w = 0.02 * (torch.rand(oc, cin) - 0.5)
        b = torch.zeros(oc) if has_bias else None
        x, dout = torch.rand(BT, cin) - 0.5, 1e-3 * (torch.rand(BT, oc) - 0.5)
        ops.append((w, b, x, dout, layers))
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        for w, b, x, dout, layers in ops:
            for _ in range(layers):  # the products autograd computes for F.linear
                F.linear(x, w, b)
                dout @ w
                dout.t() @ x
                if b is not None:
                    dout.sum(0)
        runs.append(time.perf_counter() - t0)
    med = sorted(runs)[1]
    flops = 6 * (12 * args.L * C * C + C * V) * BT
    print(f"torch linear layers: the products of one step alone | median {1e3 * med:.0f} ms | "
          f"{flops / med / 1e9:.1f} GFLOP/s | the rest of the step {1e3 * (step_s - med):.0f} ms", flush=True)


def reward_fixtures(path):
    """A tiny reward model on 2 pairs of different lengths, right-padded: rewards read
    at each row's end token, the pairwise loss, and every gradient.
    Layout: int32 header[16] = magic, version, V, maxT, L, NH, C, B (rows), T; float32
    weights; int32 inputs (B*T), ends (B); float32 rewards (B), loss, gradients."""
    torch.manual_seed(7)
    torch.set_default_dtype(torch.float64)
    V, maxT, L, NH, C, B, T = 300, 10, 2, 2, 16, 4, 10
    model = GPT(V, maxT, L, NH, C, scalar_head=True)
    random_weights(model)
    # rows 0, 1 chosen; rows 2, 3 rejected (train.c's reward_batch layout); lengths differ
    ends = torch.tensor([9, 4, 6, 7])
    idx = torch.randint(0, V, (B, T))
    for row in range(B):
        idx[row, ends[row] + 1:] = 256  # padding after the end token (train.c pads with <|endoftext|>)
    weights = flat(model.tensors())
    values = model.values(idx)
    rewards = values[torch.arange(B), ends]
    P = B // 2
    loss = -F.logsigmoid(rewards[:P] - rewards[P:]).mean()
    loss.backward()
    grads = flat(model.tensors(lambda p: p.grad))
    with open(path, "wb") as f:
        f.write(struct.pack("<16i", MAGIC, VERSION, V, maxT, L, NH, C, B, T, *([0] * 7)))
        f.write(weights.numpy().tobytes())
        f.write(idx.to(torch.int32).numpy().tobytes())
        f.write(ends.to(torch.int32).numpy().tobytes())
        f.write(rewards.detach().to(torch.float32).numpy().tobytes())
        f.write(struct.pack("<f", loss.item()))
        f.write(grads.numpy().tobytes())
    print(f"wrote {path}: rewards {rewards.tolist()}, loss {loss.item():.6f}")


def ppo_fixtures(path):
    """PPO's two losses through whole models: a tiny policy (LM head) whose per-token
    log-probabilities enter the clipped surrogate, and a tiny value model (scalar head)
    with the clipped value loss. Written from the PPO paper's formulas, not train.c's.
    Layout: int32 header[16] = magic, version, V, maxT, L, NH, C, B, T; float32 policy
    weights, value weights; int32 inputs (B*T), targets (B*T, -1 = no loss); float32
    logp_old, advantages, v_old, returns (B*T each); policy loss, its gradients; value
    loss, its gradients."""
    torch.manual_seed(11)
    torch.set_default_dtype(torch.float64)
    V, maxT, L, NH, C, B, T, eps = 300, 10, 2, 2, 16, 3, 10, 0.2
    policy, value = GPT(V, maxT, L, NH, C), GPT(V, maxT, L, NH, C, scalar_head=True)
    random_weights(policy)
    random_weights(value)
    idx = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    prompt, length = [3, 5, 2], [10, 8, 6]  # response positions: prompt - 1 .. length - 2
    for b in range(B):
        targets[b, :prompt[b] - 1] = -1
        targets[b, length[b] - 1:] = -1
        idx[b, length[b]:] = 256
    mask = targets >= 0
    logits, _ = policy(idx)
    logp = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    logp_old = (logp + 0.3 * torch.randn(B, T)).detach()  # ratios on both sides of the clip range
    adv = torch.randn(B, T)
    ratio = torch.exp(logp - logp_old)
    surrogate = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - eps, 1 + eps))
    policy_loss = surrogate[mask].mean()
    policy_loss.backward()
    v = value.values(idx)
    v_old = (v + 0.3 * torch.randn(B, T)).detach()
    returns = torch.randn(B, T)
    v_clipped = v_old + torch.clamp(v - v_old, -eps, eps)
    value_loss = 0.5 * torch.max((v - returns) ** 2, (v_clipped - returns) ** 2)[mask].mean()
    value_loss.backward()
    f32 = lambda t: t.detach().to(torch.float32).numpy().tobytes()
    with open(path, "wb") as f:
        f.write(struct.pack("<16i", MAGIC, VERSION, V, maxT, L, NH, C, B, T, *([0] * 7)))
        f.write(flat(policy.tensors()).numpy().tobytes())
        f.write(flat(value.tensors()).numpy().tobytes())
        f.write(idx.to(torch.int32).numpy().tobytes())
        f.write(targets.to(torch.int32).numpy().tobytes())
        for t in (logp_old, adv, v_old, returns):
            f.write(f32(t))
        f.write(struct.pack("<f", policy_loss.item()))
        f.write(flat(policy.tensors(lambda p: p.grad)).numpy().tobytes())
        f.write(struct.pack("<f", value_loss.item()))
        f.write(flat(value.tensors(lambda p: p.grad)).numpy().tobytes())
    clipped = ((ratio[mask] - 1).abs() > eps).double().mean().item()
    print(f"wrote {path}: policy loss {policy_loss.item():.6f} ({clipped:.2f} of ratios outside the clip range), "
          f"value loss {value_loss.item():.6f}")


def token_logprobs(model, idx, targets):
    """log p(target) at every position, 0 where the target is -1."""
    logits, _ = model(idx)
    logp = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * (targets >= 0)


def dpo_fixtures(path):
    """DPO's loss through a whole policy, written from the DPO paper (eq. 7) and the cDPO
    note on label smoothing, not from train.c: P pairs as 2P rows (chosen, then rejected),
    each response's log-probability summed over its tokens, against fixed reference sums.
    Layout: int32 header[16] = magic, version, V, maxT, L, NH, C, P, T; float32 beta,
    label smoothing; policy weights; int32 inputs (2P*T), targets (2P*T, -1 = no loss);
    float32 reference sums (2P); loss; gradients."""
    torch.manual_seed(12)
    torch.set_default_dtype(torch.float64)
    V, maxT, L, NH, C, P, T, beta, eps = 300, 10, 2, 2, 16, 3, 10, 0.5, 0.1
    policy = GPT(V, maxT, L, NH, C)
    random_weights(policy)
    idx = torch.randint(0, V, (2 * P, T))
    targets = torch.randint(0, V, (2 * P, T))
    prompt, length = [3, 5, 2, 3, 5, 2], [10, 8, 6, 7, 10, 4]  # response targets: prompt - 1 .. length - 2
    for b in range(2 * P):
        targets[b, :prompt[b] - 1] = -1
        targets[b, length[b] - 1:] = -1
        idx[b, length[b]:] = 256
    seq = token_logprobs(policy, idx, targets).sum(-1)
    ref = (seq + 2.0 * torch.randn(2 * P)).detach()  # the reference: the policy's sums, moved
    h = beta * ((seq[:P] - ref[:P]) - (seq[P:] - ref[P:]))
    loss = ((1 - eps) * F.softplus(-h) + eps * F.softplus(h)).mean()
    loss.backward()
    with open(path, "wb") as f:
        f.write(struct.pack("<16i", MAGIC, VERSION, V, maxT, L, NH, C, P, T, *([0] * 7)))
        f.write(struct.pack("<2f", beta, eps))
        f.write(flat(policy.tensors()).numpy().tobytes())
        f.write(idx.to(torch.int32).numpy().tobytes())
        f.write(targets.to(torch.int32).numpy().tobytes())
        f.write(ref.to(torch.float32).numpy().tobytes())
        f.write(struct.pack("<f", loss.item()))
        f.write(flat(policy.tensors(lambda p: p.grad)).numpy().tobytes())
    print(f"wrote {path}: dpo loss {loss.item():.6f}, h {h.tolist()}")


def grpo_fixtures(path):
    """GRPO's loss through a whole policy, written from DeepSeekMath (eq. 3, 4) and
    Schulman's k3 estimator, not from train.c: per token the clipped surrogate plus
    beta (exp(q) - q - 1), q = log pi_ref - log pi; mean over each response's tokens,
    then over the responses. Layout: int32 header[16] = magic, version, V, maxT, L, NH,
    C, B, T; float32 clip eps, beta; policy weights; int32 inputs (B*T), targets (B*T);
    float32 logp_old, ref_logp, advantages (B*T each); loss; gradients."""
    torch.manual_seed(13)
    torch.set_default_dtype(torch.float64)
    V, maxT, L, NH, C, B, T, eps, beta = 300, 10, 2, 2, 16, 4, 10, 0.2, 0.3
    policy = GPT(V, maxT, L, NH, C)
    random_weights(policy)
    idx = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    prompt, length = [3, 5, 2, 4], [10, 8, 6, 9]
    for b in range(B):
        targets[b, :prompt[b] - 1] = -1
        targets[b, length[b] - 1:] = -1
        idx[b, length[b]:] = 256
    mask = (targets >= 0).double()
    logp = token_logprobs(policy, idx, targets)
    old = (logp + 0.3 * torch.randn(B, T)).detach()  # ratios on both sides of the clip range
    ref = (logp + 0.5 * torch.randn(B, T)).detach()
    adv = torch.randn(B, 1).expand(B, T).contiguous()  # one advantage per response
    ratio = torch.exp(logp - old)
    surrogate = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - eps, 1 + eps))
    q = ref - logp
    per_token = surrogate + beta * (torch.exp(q) - q - 1)
    loss = ((per_token * mask).sum(-1) / mask.sum(-1)).mean()
    loss.backward()
    f32 = lambda t: t.detach().to(torch.float32).numpy().tobytes()
    with open(path, "wb") as f:
        f.write(struct.pack("<16i", MAGIC, VERSION, V, maxT, L, NH, C, B, T, *([0] * 7)))
        f.write(struct.pack("<2f", eps, beta))
        f.write(flat(policy.tensors()).numpy().tobytes())
        f.write(idx.to(torch.int32).numpy().tobytes())
        f.write(targets.to(torch.int32).numpy().tobytes())
        for t in (old, ref, adv):
            f.write(f32(t))
        f.write(struct.pack("<f", loss.item()))
        f.write(flat(policy.tensors(lambda p: p.grad)).numpy().tobytes())
    clipped = ((ratio[mask > 0] - 1).abs() > eps).double().mean().item()
    print(f"wrote {path}: grpo loss {loss.item():.6f} ({clipped:.2f} of ratios outside the clip range)")


def bench(args):
    torch.manual_seed(1337)
    torch.set_num_threads(args.threads)
    blas = "MKL" if torch.backends.mkl.is_available() else "OpenBLAS or other"
    print(f"torch version: {torch.__version__} ({blas})", flush=True)
    matmul_speed()
    model = GPT(args.V, args.t, args.L, args.H, args.C)
    gpt2_init(model, args.L)
    opt = optimizer(model, 1e-4, 0.1, 0.9, 0.95, 1e-8)
    idx = torch.randint(0, args.V, (args.b, args.t + 1))
    x, y = idx[:, :-1], idx[:, 1:]
    times = []
    for step in range(args.n):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        print(f"torch step {step + 1}: {1e3 * times[-1]:.0f} ms, loss {loss.item():.4f}", flush=True)
    steady = sorted(times[1:] if len(times) > 1 else times)
    med = steady[len(steady) // 2] if len(steady) % 2 else 0.5 * (steady[len(steady) // 2 - 1] + steady[len(steady) // 2])
    n = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()
    flops = (6 * n + 12 * args.L * args.C * args.t) * args.b * args.t
    print(f"torch train: L={args.L} C={args.C} NH={args.H} V={args.V} T={args.t} B={args.b} | median {1e3 * med:.0f} "
          f"ms/step | {args.b * args.t / med:.0f} tok/s | {flops / med / 1e9:.1f} GFLOP/s")
    linear_layers_speed(args, med)
    matmul_speed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["fixtures", "reward-fixtures", "ppo-fixtures", "dpo-fixtures", "grpo-fixtures", "bench"])
    parser.add_argument("path", nargs="?", default="test/fixtures/gpt_tiny.bin")
    for flag, default in [("-L", 6), ("-C", 384), ("-H", 6), ("-V", 4096), ("-t", 256), ("-b", 8), ("-n", 5), ("--threads", 2)]:
        parser.add_argument(flag, type=int, default=default)
    args = parser.parse_args()
    if args.mode == "fixtures":
        fixtures(args.path)
    elif args.mode == "reward-fixtures":
        reward_fixtures(args.path)
    elif args.mode == "ppo-fixtures":
        ppo_fixtures(args.path)
    elif args.mode == "dpo-fixtures":
        dpo_fixtures(args.path)
    elif args.mode == "grpo-fixtures":
        grpo_fixtures(args.path)
    else:
        bench(args)
