# Float64 reference forward for the decoder families lmkit loads (Llama/Mistral/Qwen2 and GPT-2), in plain PyTorch,
# written from HF transformers' model semantics. Not a training or serving model: no KV cache, batch 1, no dropout.
"""One generic decoder driven by a small spec, mirroring lmkit's "architecture is data" design.

Weights are first mapped from a file layout (HF or GGUF names) into canonical names:
    tok_emb (V, C)              pos_emb (P, C) [GPT-2 only]
    l{i}.attn_norm.w/.b (C)     l{i}.wq (Hq*D, C)  l{i}.wk (Hkv*D, C)  l{i}.wv (Hkv*D, C)  l{i}.wo (C, Hq*D)
    l{i}.bq/.bk/.bv/.bo         (optional biases)
    l{i}.mlp_norm.w/.b (C)      l{i}.w_gate (F, C) [SwiGLU]  l{i}.w_up (F, C)  l{i}.w_down (C, F)  l{i}.b_up/.b_down
    final_norm.w/.b (C)         lm_head (V, C)
All matrices are nn.Linear layout (out, in): y = x @ W.T + b.

Autograd runs through it: train_ref.py passes HF-named leaves that require grad (see _f64) and backpropagates.
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class Spec:
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    norm: str                       # "rms" (Llama family) or "layer" (GPT-2)
    eps: float
    mlp: str                        # "swiglu": down(silu(gate(x)) * up(x));  "gelu_tanh": down(gelu_new(up(x)))
    inv_freq: Optional[torch.Tensor] = None   # (head_dim/2,) float64 RoPE frequencies; None = no RoPE
    rope_pairs: str = "half"        # "half": HF rotate_half, pairs (i, i+D/2);  "adjacent": pairs (2i, 2i+1)
    sliding_window: Optional[int] = None      # key j visible to query i iff j <= i and i - j < sliding_window


# ---- RoPE frequencies (HF modeling_rope_utils semantics, in float64) ------------------------------------------

def rope_inv_freq_default(head_dim, theta):
    # inv_freq[i] = theta^(-2i/D), i = 0..D/2-1
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))


def rope_inv_freq_linear(head_dim, theta, factor):
    # "linear" (position interpolation): positions divided by factor == frequencies divided by factor
    return rope_inv_freq_default(head_dim, theta) / factor


def rope_inv_freq_llama3(head_dim, theta, factor, low_freq_factor, high_freq_factor, original_max_pos):
    """Llama 3.1 frequency adjustment (HF _compute_llama3_parameters).

    wavelength 2*pi/f shorter than original_max_pos/high_freq_factor: kept;
    longer than original_max_pos/low_freq_factor: divided by factor;
    in between: (1 - s) * f / factor + s * f  with  s = (original_max_pos / wavelen - low) / (high - low).
    """
    inv = rope_inv_freq_default(head_dim, theta)
    low_wavelen = original_max_pos / low_freq_factor
    high_wavelen = original_max_pos / high_freq_factor
    wavelen = 2 * math.pi / inv
    out = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (original_max_pos / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, out)


def apply_rope(x, inv_freq, pairs):
    """x: (H, T, D) at positions 0..T-1."""
    T, D = x.shape[1], x.shape[2]
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]   # (T, D/2)
    cos, sin = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)   # no-op for float64 x
    if pairs == "half":      # HF: x * cos(cat(ang, ang)) + rotate_half(x) * sin(cat(ang, ang))
        x1, x2 = x[..., :D // 2], x[..., D // 2:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    if pairs == "adjacent":  # ggml NORM mode / Meta's original complex-pair layout
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = x1 * cos - x2 * sin
        out[..., 1::2] = x2 * cos + x1 * sin
        return out
    raise ValueError(pairs)


# ---- building blocks ---------------------------------------------------------------------------------------

def norm(spec, x, w, b):
    if spec.norm == "rms":
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + spec.eps) * w
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) * torch.rsqrt(var + spec.eps) * w + b


def linear(x, w, b=None):
    y = x @ w.T
    return y + b if b is not None else y


def gelu_new(x):
    # GPT-2's "gelu_new": tanh approximation
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def attention(spec, W, i, x, hooks):
    T = x.shape[0]
    H, Hkv, D = spec.n_head, spec.n_head_kv, spec.head_dim
    q = linear(x, W[f"l{i}.wq"], W.get(f"l{i}.bq")).view(T, H, D).transpose(0, 1)     # (H, T, D)
    k = linear(x, W[f"l{i}.wk"], W.get(f"l{i}.bk")).view(T, Hkv, D).transpose(0, 1)   # (Hkv, T, D)
    v = linear(x, W[f"l{i}.wv"], W.get(f"l{i}.bv")).view(T, Hkv, D).transpose(0, 1)   # (Hkv, T, D)
    if spec.inv_freq is not None:
        q = apply_rope(q, spec.inv_freq, spec.rope_pairs)
        k = apply_rope(k, spec.inv_freq, spec.rope_pairs)
    # GQA: query head h reads kv head h // (H / Hkv)  (HF repeat_kv)
    k = k.repeat_interleave(H // Hkv, dim=0)
    v = v.repeat_interleave(H // Hkv, dim=0)
    scores = (q @ k.transpose(1, 2)) / math.sqrt(D)                                     # (H, T, T)
    qi = torch.arange(T)[:, None]
    kj = torch.arange(T)[None, :]
    visible = kj <= qi
    if spec.sliding_window is not None:
        visible = visible & (qi - kj < spec.sliding_window)
    scores = scores.masked_fill(~visible, float("-inf"))
    p = torch.softmax(scores, dim=-1)                                                   # masked entries exactly 0
    hooks[f"blocks.{i}.attn.hook_pattern"] = p
    o = (p @ v).transpose(0, 1).reshape(T, H * D)
    return linear(o, W[f"l{i}.wo"], W.get(f"l{i}.bo"))


def mlp(spec, W, i, x):
    if spec.mlp == "swiglu":
        g = linear(x, W[f"l{i}.w_gate"])
        u = linear(x, W[f"l{i}.w_up"], W.get(f"l{i}.b_up"))
        return linear(torch.nn.functional.silu(g) * u, W[f"l{i}.w_down"], W.get(f"l{i}.b_down"))
    h = gelu_new(linear(x, W[f"l{i}.w_up"], W.get(f"l{i}.b_up")))
    return linear(h, W[f"l{i}.w_down"], W.get(f"l{i}.b_down"))


def forward(spec, W, ids):
    """ids: list of T token ids -> (logits (T, V) float64, hooks {TransformerLens name: tensor})."""
    hooks = {}
    idx = torch.tensor(ids, dtype=torch.long)
    x = W["tok_emb"][idx]
    if "pos_emb" in W:
        x = x + W["pos_emb"][: len(ids)]
    for i in range(spec.n_layer):
        hooks[f"blocks.{i}.hook_resid_pre"] = x
        a = attention(spec, W, i, norm(spec, x, W[f"l{i}.attn_norm.w"], W.get(f"l{i}.attn_norm.b")), hooks)
        hooks[f"blocks.{i}.hook_attn_out"] = a
        x = x + a
        hooks[f"blocks.{i}.hook_resid_mid"] = x
        m = mlp(spec, W, i, norm(spec, x, W[f"l{i}.mlp_norm.w"], W.get(f"l{i}.mlp_norm.b")))
        hooks[f"blocks.{i}.hook_mlp_out"] = m
        x = x + m
        hooks[f"blocks.{i}.hook_resid_post"] = x
    h = norm(spec, x, W["final_norm.w"], W.get("final_norm.b"))
    hooks["ln_final.hook_normalized"] = h
    return linear(h, W["lm_head"]), hooks


def greedy(spec, W, ids, n_new):
    """Greedy continuation, recomputing the full forward each step. Returns (new ids, smallest top1-top2 gap)."""
    seq = list(ids)
    margin = float("inf")
    for _ in range(n_new):
        logits, _ = forward(spec, W, seq)
        top = torch.topk(logits[-1], 2).values
        margin = min(margin, float(top[0] - top[1]))
        seq.append(int(torch.argmax(logits[-1])))
    return seq[len(ids):], margin


# ---- file layouts -> canonical names -----------------------------------------------------------------------

def _f64(t):
    # A leaf that requires grad (train_ref.py: float64, and float32 for its yardstick run) is kept as is, so the
    # mapping below (transpose, slice, tie) stays on the autograd graph and gradients land on the HF-named
    # tensor. Anything else (all of make_models.py's use) is detached and upcast.
    if t.requires_grad:
        return t
    return t.detach().to(torch.float64)


def from_hf_llama(sd, n_layer, tied):
    """HF LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM state dict."""
    W = {"tok_emb": _f64(sd["model.embed_tokens.weight"]), "final_norm.w": _f64(sd["model.norm.weight"])}
    W["lm_head"] = W["tok_emb"] if tied else _f64(sd["lm_head.weight"])
    for i in range(n_layer):
        p = f"model.layers.{i}."
        W[f"l{i}.attn_norm.w"] = _f64(sd[p + "input_layernorm.weight"])
        W[f"l{i}.mlp_norm.w"] = _f64(sd[p + "post_attention_layernorm.weight"])
        for ours, theirs in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("o", "o_proj")):
            W[f"l{i}.w{ours}"] = _f64(sd[f"{p}self_attn.{theirs}.weight"])
            if f"{p}self_attn.{theirs}.bias" in sd:
                W[f"l{i}.b{ours}"] = _f64(sd[f"{p}self_attn.{theirs}.bias"])
        W[f"l{i}.w_gate"] = _f64(sd[p + "mlp.gate_proj.weight"])
        W[f"l{i}.w_up"] = _f64(sd[p + "mlp.up_proj.weight"])
        W[f"l{i}.w_down"] = _f64(sd[p + "mlp.down_proj.weight"])
    return W


def from_hf_gpt2(sd, n_layer, n_embd):
    """HF GPT2LMHeadModel state dict. Conv1D stores (in, out): transpose to (out, in); split fused c_attn."""
    W = {"tok_emb": _f64(sd["transformer.wte.weight"]), "pos_emb": _f64(sd["transformer.wpe.weight"]),
         "final_norm.w": _f64(sd["transformer.ln_f.weight"]), "final_norm.b": _f64(sd["transformer.ln_f.bias"])}
    W["lm_head"] = W["tok_emb"]  # GPT-2 ties lm_head to wte
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        W[f"l{i}.attn_norm.w"], W[f"l{i}.attn_norm.b"] = _f64(sd[p + "ln_1.weight"]), _f64(sd[p + "ln_1.bias"])
        W[f"l{i}.mlp_norm.w"], W[f"l{i}.mlp_norm.b"] = _f64(sd[p + "ln_2.weight"]), _f64(sd[p + "ln_2.bias"])
        qkv_w = _f64(sd[p + "attn.c_attn.weight"]).T            # (3C, C): rows q | k | v
        qkv_b = _f64(sd[p + "attn.c_attn.bias"])
        for j, n in enumerate("qkv"):
            W[f"l{i}.w{n}"] = qkv_w[j * n_embd:(j + 1) * n_embd]
            W[f"l{i}.b{n}"] = qkv_b[j * n_embd:(j + 1) * n_embd]
        W[f"l{i}.wo"], W[f"l{i}.bo"] = _f64(sd[p + "attn.c_proj.weight"]).T, _f64(sd[p + "attn.c_proj.bias"])
        W[f"l{i}.w_up"], W[f"l{i}.b_up"] = _f64(sd[p + "mlp.c_fc.weight"]).T, _f64(sd[p + "mlp.c_fc.bias"])
        W[f"l{i}.w_down"], W[f"l{i}.b_down"] = _f64(sd[p + "mlp.c_proj.weight"]).T, _f64(sd[p + "mlp.c_proj.bias"])
    return W


def from_gguf(g, n_layer, n_embd=None):
    """llama.cpp tensor names (llama / qwen2 / gpt2). Missing output.weight means tied to token_embd."""
    W = {"tok_emb": _f64(g["token_embd.weight"]), "final_norm.w": _f64(g["output_norm.weight"])}
    if "output_norm.bias" in g:
        W["final_norm.b"] = _f64(g["output_norm.bias"])
    if "position_embd.weight" in g:
        W["pos_emb"] = _f64(g["position_embd.weight"])
    W["lm_head"] = _f64(g["output.weight"]) if "output.weight" in g else W["tok_emb"]
    names = {"attn_norm": "attn_norm", "ffn_norm": "mlp_norm"}
    for i in range(n_layer):
        p = f"blk.{i}."
        for theirs, ours in names.items():
            W[f"l{i}.{ours}.w"] = _f64(g[p + theirs + ".weight"])
            if p + theirs + ".bias" in g:
                W[f"l{i}.{ours}.b"] = _f64(g[p + theirs + ".bias"])
        if p + "attn_qkv.weight" in g:   # GPT-2: fused (3C, C), rows q | k | v
            qkv_w, qkv_b = _f64(g[p + "attn_qkv.weight"]), _f64(g[p + "attn_qkv.bias"])
            for j, n in enumerate("qkv"):
                W[f"l{i}.w{n}"] = qkv_w[j * n_embd:(j + 1) * n_embd]
                W[f"l{i}.b{n}"] = qkv_b[j * n_embd:(j + 1) * n_embd]
        else:
            for n in "qkv":
                W[f"l{i}.w{n}"] = _f64(g[f"{p}attn_{n}.weight"])
                if f"{p}attn_{n}.bias" in g:
                    W[f"l{i}.b{n}"] = _f64(g[f"{p}attn_{n}.bias"])
        W[f"l{i}.wo"] = _f64(g[p + "attn_output.weight"])
        if p + "attn_output.bias" in g:
            W[f"l{i}.bo"] = _f64(g[p + "attn_output.bias"])
        if p + "ffn_gate.weight" in g:
            W[f"l{i}.w_gate"] = _f64(g[p + "ffn_gate.weight"])
        W[f"l{i}.w_up"] = _f64(g[p + "ffn_up.weight"])
        W[f"l{i}.w_down"] = _f64(g[p + "ffn_down.weight"])
        for theirs, ours in (("ffn_up.bias", "b_up"), ("ffn_down.bias", "b_down")):
            if p + theirs in g:
                W[f"l{i}.{ours}"] = _f64(g[p + theirs])
    return W
