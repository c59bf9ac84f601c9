# The PyTorch baseline for bench/train_vs_pytorch.sh: the same GPT-style model lmkit's bench_train
# trains (LayerNorm, GELU-tanh MLP, learned positions, tied embeddings, AdamW), fp32 on the CPU.
# Not a reference for correctness (tests/reference/ is): only a speed baseline.
"""Usage: /usr/bin/python3 bench/train_torch.py [--shape gpt-384|gpt2-small] [--steps N] [--threads T]"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPES = {  # n_layer, n_embd, n_head, n_ff, vocab, context, batch
    "gpt-384": (6, 384, 6, 1536, 8192, 256, 8),
    "gpt2-small": (12, 768, 12, 3072, 50257, 512, 4),
}


class Block(nn.Module):
    def __init__(self, d, h, ff):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.h)
        att = att.masked_fill(mask[:T, :T] == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L, d, h, ff, V, T):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, d), nn.Embedding(T, d)
        self.blocks = nn.ModuleList(Block(d, h, ff) for _ in range(L))
        self.ln_f = nn.LayerNorm(d)
        self.register_buffer("mask", torch.tril(torch.ones(T, T)))

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.blocks:
            x = b(x, self.mask)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="gpt-384", choices=SHAPES)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    L, d, h, ff, V, T, B = SHAPES[a.shape]
    model = GPT(L, d, h, ff, V, T)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x, y = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
    best = 0.0
    for s in range(a.steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(x, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tok_s = B * T / (time.perf_counter() - t0)
        if s > 0:
            best = max(best, tok_s)
    print(json.dumps({"shape": a.shape, "threads": a.threads, "tok_s": best,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
