# Training oracle for lmkit: float64 loss, every parameter gradient, 10 AdamW steps and a gradient-accumulation
# check for the tiny HF-layout models of make_models.py. Not a trainer: one fixed batch, no data, no checkpoints.
"""Usage:  /usr/bin/python3 tests/reference/train_ref.py --models DIR --out DIR2

DIR is the output of make_models.py. For each f32 model in MODELS below, from the weights stored in DIR:

  DIR2/NAME/batch.json             B=2 x T=12 inputs, shifted targets (one set to -100, ignored), float64 loss
  DIR2/NAME/grads.safetensors      d loss / d every HF tensor, HF names and layouts, float64 rounded to F32
  DIR2/NAME/adamw.json             10 AdamW steps on that batch: hyper-parameters, losses, lrs, grad norms
  DIR2/NAME/after_adamw.safetensors  the weights after those 10 steps (HF names/layouts, F32)
  DIR2/llama_gqa_tied/accum.json + accum_grads.safetensors   mean-loss gradient over a global batch of 4
  DIR2/manifest.json

Everything is computed in float64 (forward, backward, optimizer); the only loss of precision is the final
float64 -> float32 rounding of the tensors written to .safetensors. Deterministic: CPU, one thread, fixed
seeds; the same bytes on every run. See tests/reference/README.md ("Training oracle") for the exact formulas.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_models as mm  # noqa: E402  (write_json only: the same JSON formatting as the model fixtures)
import ref_models as rm  # noqa: E402
import st_writer as st  # noqa: E402

MODELS = ["llama_gqa_tied", "llama_untied_scaled", "mistral_swa", "qwen2_bias", "gpt2"]
ACCUM_MODEL = "llama_gqa_tied"

B, T = 2, 12                    # batch: B sequences of T input tokens (+1 for the shifted targets)
BATCH_SEED = 1234
ACCUM_SEED = 4321               # the 2 extra sequences of the accumulation batch
IGNORE_INDEX = -100
IGNORED = (1, 3)                # targets[1, 3] = -100 in batch.json (not in the accumulation batch)

HYPER = {
    "total_steps": 10, "warmup_steps": 3, "max_lr": 1e-2, "min_lr": 1e-3,
    "max_grad_norm": 1.0, "clip_eps": 1e-6,
    "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "amsgrad": False,
}
# names of embedding tensors (never decayed; a tied lm_head *is* the embedding, so it is covered too)
EMBEDDINGS = {"model.embed_tokens.weight", "transformer.wte.weight", "transformer.wpe.weight"}

# self-check tolerances
FD_STEP = 1e-5                  # central finite difference step (float64)
FD_REL_TOL = 1e-6
ADAMW_TOL = 1e-12


# ---- loading: HF folder -> (spec, HF-named float64 leaves, canonical weight dict on the autograd graph) ---------

def read_state_dict(d):
    """{HF name: tensor} from model.safetensors or the shards named by model.safetensors.index.json."""
    index = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(index):
        return st.load_file(os.path.join(d, "model.safetensors"))[1]
    sd = {}
    for fname in sorted(set(json.load(open(index))["weight_map"].values())):
        sd.update(st.load_file(os.path.join(d, fname))[1])
    return sd


def spec_from_config(c):
    """ref_models.Spec from an HF config.json (independent of make_models' own model table)."""
    if c["model_type"] == "gpt2":
        return rm.Spec(n_layer=c["n_layer"], n_head=c["n_head"], n_head_kv=c["n_head"],
                       head_dim=c["n_embd"] // c["n_head"], norm="layer", eps=c["layer_norm_epsilon"],
                       mlp="gelu_tanh")
    D = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    rs = c.get("rope_scaling")
    if rs is None:
        inv = rm.rope_inv_freq_default(D, c["rope_theta"])
    elif rs["rope_type"] == "linear":
        inv = rm.rope_inv_freq_linear(D, c["rope_theta"], rs["factor"])
    elif rs["rope_type"] == "llama3":
        inv = rm.rope_inv_freq_llama3(D, c["rope_theta"], rs["factor"], rs["low_freq_factor"],
                                      rs["high_freq_factor"], rs["original_max_position_embeddings"])
    else:
        raise ValueError(rs)
    # Mistral applies sliding_window; Qwen2 only when use_sliding_window is true (it is false in our fixture)
    sw = c.get("sliding_window") if c["model_type"] == "mistral" or c.get("use_sliding_window") else None
    return rm.Spec(n_layer=c["num_hidden_layers"], n_head=c["num_attention_heads"],
                   n_head_kv=c["num_key_value_heads"], head_dim=D, norm="rms", eps=c["rms_norm_eps"],
                   mlp="swiglu", inv_freq=inv, rope_pairs="half", sliding_window=sw)


class Model:
    """HF-named leaves (`params`: float64, or float32 for the yardstick; the tensors we differentiate and
    update) + the canonical view of them.

    ref_models' loaders keep leaves that require grad on the graph (transpose, slice, tie are views),
    so d loss / d params[name] is the gradient in the file's own layout: a tied embedding gets the sum of its two
    uses, GPT-2's fused c_attn gets q | k | v columns and Conv1D weights stay (in, out).
    """

    def __init__(self, d, dtype=torch.float64):
        self.config = json.load(open(os.path.join(d, "config.json")))
        expected = json.load(open(os.path.join(d, "expected.json")))
        self.tokenizer_size = expected["config"]["tokenizer_size"]
        self.spec = spec_from_config(self.config)
        if self.spec.inv_freq is not None:  # our frequencies are exactly the fixture's
            assert self.spec.inv_freq.tolist() == expected["config"]["rope"]["inv_freq"]
        assert self.spec.sliding_window == expected["config"]["sliding_window"]
        sd = read_state_dict(d)
        assert all(t.dtype == torch.float32 for t in sd.values())
        self.dtype = dtype   # float64: the oracle; float32: only the yardstick run (see f32_yardstick)
        self.params = {k: sd[k].to(dtype).requires_grad_(True) for k in sorted(sd)}
        self.V = self.config["vocab_size"]

    def canonical(self):
        c = self.config
        if c["model_type"] == "gpt2":
            W = rm.from_hf_gpt2(self.params, c["n_layer"], c["n_embd"])
        else:
            W = rm.from_hf_llama(self.params, c["num_hidden_layers"], c["tie_word_embeddings"])
        if torch.is_grad_enabled():   # every canonical tensor must be on the graph, else its gradient is lost
            assert all(w.requires_grad for w in W.values())
        return W

    def loss(self, inputs, targets):
        """mean cross-entropy over non-ignored targets; inputs/targets: (B, T) long. Sequences are independent
        (each causal over its own T tokens at positions 0..T-1), so the batch is a loop over rm.forward."""
        W = self.canonical()
        logits = torch.stack([rm.forward(self.spec, W, row.tolist())[0] for row in inputs])   # (B, T, V)
        assert logits.dtype == self.dtype
        return F.cross_entropy(logits.reshape(-1, self.V), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                               reduction="mean")

    def grads(self, inputs, targets):
        """(loss, {HF name: float64 gradient})."""
        for p in self.params.values():
            p.grad = None
        loss = self.loss(inputs, targets)
        loss.backward()
        return loss.item(), {k: p.grad.detach().clone() for k, p in self.params.items()}


def make_batch(seed, tokenizer_size):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, tokenizer_size, (B, T + 1), generator=g)
    return ids[:, :T].clone(), ids[:, 1:].clone()


def f32_file(tensors, path):
    """write {name: float64 tensor} as F32 safetensors (the only rounding in this oracle)."""
    st.save_file({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}, path)
    return os.path.basename(path)


# ---- optimizer: lr schedule, clipping, AdamW (each written out; cross-checked against torch in train_10) -------

def lr_at(s, h=HYPER):
    """0-based step s: linear warmup to max_lr over warmup_steps, then cosine from max_lr down to min_lr."""
    if s < h["warmup_steps"]:
        return h["max_lr"] * (s + 1) / h["warmup_steps"]
    progress = (s - h["warmup_steps"]) / (h["total_steps"] - h["warmup_steps"])
    return h["min_lr"] + 0.5 * (h["max_lr"] - h["min_lr"]) * (1.0 + math.cos(math.pi * progress))


def clip_(grads, h=HYPER):
    """torch.nn.utils.clip_grad_norm_ semantics, in place. Returns (norm before clipping, whether it clipped)."""
    total = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    coef = h["max_grad_norm"] / (total + h["clip_eps"])
    if coef < 1.0:
        for g in grads.values():
            g.mul_(coef)
    return total, coef < 1.0


def weight_decay_for(name, p, h=HYPER):
    """decay 2-D matrices except embeddings; never norms, biases (1-D) or embeddings."""
    return h["weight_decay"] if p.dim() == 2 and name not in EMBEDDINGS else 0.0


class AdamW:
    """torch.optim.AdamW (amsgrad False) written out: decoupled decay first, then the bias-corrected Adam step."""

    def __init__(self, params, h=HYPER):
        self.h = h
        self.wd = {k: weight_decay_for(k, p) for k, p in params.items()}
        self.m = {k: torch.zeros_like(p) for k, p in params.items()}
        self.v = {k: torch.zeros_like(p) for k, p in params.items()}
        self.t = 0

    @torch.no_grad()
    def step(self, params, grads, lr):
        h = self.h
        b1, b2 = h["beta1"], h["beta2"]
        self.t += 1
        for k, p in params.items():
            g = grads[k]
            p.mul_(1.0 - lr * self.wd[k])
            self.m[k] = b1 * self.m[k] + (1.0 - b1) * g
            self.v[k] = b2 * self.v[k] + (1.0 - b2) * g * g
            m_hat = self.m[k] / (1.0 - b1 ** self.t)
            v_hat = self.v[k] / (1.0 - b2 ** self.t)
            p.sub_(lr * m_hat / (torch.sqrt(v_hat) + h["eps"]))


def max_abs_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def train_10(model, inputs, targets, check_torch=False):
    """10 steps on the same batch with clip_ + AdamW above; returns the per-step records.

    check_torch: also step a shadow copy of the parameters with torch.nn.utils.clip_grad_norm_ and
    torch.optim.AdamW (two param groups), fed the same unclipped gradients every step, and assert both agree to
    ADAMW_TOL at every step. (Two independent 10-step runs would instead measure how Adam amplifies 1e-16
    differences in near-zero gradients, not the optimizer: see README.)
    """
    P = model.params
    opt = AdamW(P)
    if check_torch:
        shadow = {k: p.detach().clone().requires_grad_(True) for k, p in P.items()}
        groups = [{"params": [shadow[k] for k in P if opt.wd[k] > 0], "weight_decay": HYPER["weight_decay"]},
                  {"params": [shadow[k] for k in P if opt.wd[k] == 0], "weight_decay": 0.0}]
        topt = torch.optim.AdamW(groups, lr=HYPER["max_lr"], betas=(HYPER["beta1"], HYPER["beta2"]),
                                 eps=HYPER["eps"], amsgrad=False)
        worst = 0.0
    rec = {"losses": [], "lrs": [], "grad_norms": [], "clipped": []}
    for s in range(HYPER["total_steps"]):
        lr = lr_at(s)
        loss, grads = model.grads(inputs, targets)         # loss and gradient at the weights before step s
        if check_torch:
            for k, p in shadow.items():
                p.grad = grads[k].clone()
            tnorm = float(torch.nn.utils.clip_grad_norm_(list(shadow.values()), HYPER["max_grad_norm"]))
        norm, clipped = clip_(grads)
        opt.step(P, grads, lr)
        if check_torch:
            assert abs(tnorm - norm) <= ADAMW_TOL * norm, (tnorm, norm)
            assert max_abs_diff(grads, {k: p.grad for k, p in shadow.items()}) < ADAMW_TOL
            for grp in topt.param_groups:
                grp["lr"] = lr
            topt.step()
            worst = max(worst, max_abs_diff({k: p.detach() for k, p in P.items()},
                                            {k: p.detach() for k, p in shadow.items()}))
            assert worst < ADAMW_TOL, worst
        for key, val in zip(("losses", "lrs", "grad_norms", "clipped"), (loss, lr, norm, clipped)):
            rec[key].append(val)
    with torch.no_grad():
        rec["final_loss"] = model.loss(inputs, targets).item()
    if check_torch:
        rec["torch_max_abs_param_diff"] = worst
    return rec


def f32_yardstick(models_dir, name, inputs, targets, rec, after):
    """The same 10 steps in float32 (torch CPU): a measured scale for how far a correct float32 engine lands,
    per tensor, so the C++ side can pick tolerances (see README: attention k biases)."""
    m32 = Model(os.path.join(models_dir, name), dtype=torch.float32)
    r32 = train_10(m32, inputs, targets)
    return {
        "what": "|float32 run - this float64 run| of the same code (torch 1.13 CPU, one thread); a hint for "
                "tolerances, not a reference value",
        "losses_max_abs_diff": max(abs(a - b) for a, b in zip(r32["losses"], rec["losses"])),
        "final_loss_abs_diff": abs(r32["final_loss"] - rec["final_loss"]),
        "grad_norms_max_rel_diff": max(abs(a - b) / b for a, b in zip(r32["grad_norms"], rec["grad_norms"])),
        "same_clipping": r32["clipped"] == rec["clipped"],
        "after_adamw_max_abs_diff": {k: float((m32.params[k].detach().double() - after[k]).abs().max())
                                     for k in sorted(after)},
    }


# ---- self-check: autograd against central finite differences -------------------------------------------------

def check_finite_differences(model, inputs, targets, grads):
    """(L(p + h) - L(p - h)) / 2h at the largest-|grad| entry of a spread of tensors (+ the embeddings)."""
    names = sorted(grads)
    picks = list(dict.fromkeys(names[:: max(1, len(names) // 8)] + [n for n in names if n in EMBEDDINGS]))
    worst = 0.0
    with torch.no_grad():
        for n in picks:
            g = grads[n].reshape(-1)
            idx = int(torch.argmax(g.abs()))
            p = model.params[n].view(-1)
            orig = p[idx].item()
            p[idx] = orig + FD_STEP
            up = model.loss(inputs, targets).item()
            p[idx] = orig - FD_STEP
            down = model.loss(inputs, targets).item()
            p[idx] = orig
            fd = (up - down) / (2 * FD_STEP)
            rel = abs(fd - g[idx].item()) / abs(g[idx].item())
            assert rel < FD_REL_TOL, (n, idx, fd, g[idx].item(), rel)
            worst = max(worst, rel)
    return worst, picks


# ---- per model -----------------------------------------------------------------------------------------------

def run_model(models_dir, out, name):
    d_out = os.path.join(out, name)
    os.makedirs(d_out, exist_ok=True)
    model = Model(os.path.join(models_dir, name))
    init = {k: p.detach().clone() for k, p in model.params.items()}
    inputs, targets = make_batch(BATCH_SEED, model.tokenizer_size)
    targets[IGNORED] = IGNORE_INDEX
    checks = {}

    # 1. loss and gradients
    loss, grads = model.grads(inputs, targets)
    assert set(grads) == set(init) and all(grads[k].shape == init[k].shape for k in grads)
    assert all(float(g.abs().max()) > 0 for g in grads.values()), "a parameter with an all-zero gradient"
    mm.write_json({"model": name, "inputs": inputs.tolist(), "targets": targets.tolist(),
                   "ignore_index": IGNORE_INDEX, "n_valid_targets": int((targets != IGNORE_INDEX).sum()),
                   "loss": loss}, os.path.join(d_out, "batch.json"))
    files = ["batch.json", f32_file(grads, os.path.join(d_out, "grads.safetensors"))]
    checks["fd_worst_rel_err"], fd_picks = check_finite_differences(model, inputs, targets, grads)
    checks["fd_entries"] = len(fd_picks)
    with torch.no_grad():   # the ignored target really is ignored: a real class there changes the loss
        t2 = targets.clone()
        t2[IGNORED] = (int(inputs[IGNORED]) + 1) % model.tokenizer_size
        assert model.loss(inputs, t2).item() != loss and model.loss(inputs, targets).item() == loss

    # 2. ten AdamW steps from the initial weights (cross-checked against torch.optim.AdamW step by step)
    rec = train_10(model, inputs, targets, check_torch=True)
    checks["adamw_vs_torch_max_abs_param_diff"] = rec.pop("torch_max_abs_param_diff")
    after = {k: p.detach().clone() for k, p in model.params.items()}
    assert rec["final_loss"] < rec["losses"][0], (name, rec)
    hyper = dict(HYPER)
    hyper.update({"schedule": "s < warmup_steps: max_lr*(s+1)/warmup_steps; else min_lr + 0.5*(max_lr-min_lr)*"
                              "(1+cos(pi*(s-warmup_steps)/(total_steps-warmup_steps))), s = 0-based step",
                  "batch": "batch.json, the same inputs/targets at every step",
                  "decay": sorted(k for k in init if weight_decay_for(k, init[k]) > 0),
                  "no_decay": sorted(k for k in init if weight_decay_for(k, init[k]) == 0)})
    yard = f32_yardstick(models_dir, name, inputs, targets, rec, after)
    mm.write_json({"model": name, "hyper": hyper, **rec, "f32_yardstick": yard}, os.path.join(d_out, "adamw.json"))
    files += ["adamw.json", f32_file(after, os.path.join(d_out, "after_adamw.safetensors"))]
    summary = (f"loss {loss:.4f} -> {rec['final_loss']:.2e} after 10 steps; grad norms {rec['grad_norms'][0]:.3g}"
               f"..{rec['grad_norms'][-1]:.3g}, clipped {sum(rec['clipped'])}/10; f32 run: losses within "
               f"{yard['losses_max_abs_diff']:.1e}, params within {max(yard['after_adamw_max_abs_diff'].values()):.1e}")

    # 3. gradient accumulation: mean loss over 4 sequences == mean of the two micro-batches' mean losses
    written = {"grads.safetensors": grads, "after_adamw.safetensors": after}
    if name == ACCUM_MODEL:
        with torch.no_grad():
            for k, p in model.params.items():
                p.copy_(init[k])
        in1, tg1 = make_batch(BATCH_SEED, model.tokenizer_size)    # the batch above, nothing ignored
        in2, tg2 = make_batch(ACCUM_SEED, model.tokenizer_size)
        inputs4, targets4 = torch.cat([in1, in2]), torch.cat([tg1, tg2])
        assert (targets4 != IGNORE_INDEX).all()
        loss4, grads4 = model.grads(inputs4, targets4)
        la, ga = model.grads(in1, tg1)
        lb, gb = model.grads(in2, tg2)
        checks["accum_max_abs_diff"] = max_abs_diff({k: 0.5 * ga[k] + 0.5 * gb[k] for k in ga}, grads4)
        assert checks["accum_max_abs_diff"] < 1e-12 and abs(0.5 * (la + lb) - loss4) < 1e-12
        mm.write_json({"model": name, "inputs": inputs4.tolist(), "targets": targets4.tolist(),
                       "micro_batches": [[0, 1], [2, 3]], "micro_batch_scale": 0.5,
                       "micro_batch_losses": [la, lb], "loss": loss4},
                      os.path.join(d_out, "accum.json"))
        files += ["accum.json", f32_file(grads4, os.path.join(d_out, "accum_grads.safetensors"))]
        written["accum_grads.safetensors"] = grads4

    # read-back: each file holds exactly the F32 rounding of its float64 tensors, under the HF names
    for fname, src in written.items():
        _, back = st.load_file(os.path.join(d_out, fname))
        assert set(back) == set(init) and all(torch.equal(back[k], src[k].to(torch.float32)) for k in src)
    return {"name": name, "files": files, "checks": checks, "fd_picks": fd_picks, "summary": summary}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="output directory of make_models.py")
    ap.add_argument("--out", required=True, help="output directory (created; existing files are overwritten)")
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)

    infos = []
    for name in MODELS:
        info = run_model(args.models, args.out, name)
        print(f"{name:20s} {info['summary']}\n{'':20s} self-checks {info['checks']}")
        infos.append(info)

    manifest = {
        "generator": "tests/reference/train_ref.py",
        "notes": "float64 forward/backward/AdamW from the stored f32 weights; tensors written as F32 (the only "
                 "rounding). Gradients under HF names and layouts: a tied embedding's gradient includes the "
                 "lm_head use; GPT-2 Conv1D gradients are (in, out) like the weights.",
        "batch": {"B": B, "T": T, "seed": BATCH_SEED, "ignored_target": list(IGNORED), "ignore_index": IGNORE_INDEX},
        "hyper": HYPER,
        "models": [{"name": i["name"], "dir": i["name"], "files": i["files"], "self_checks": i["checks"],
                    "fd_checked": i["fd_picks"]} for i in infos],
        "accumulation": {"model": ACCUM_MODEL, "seeds": [BATCH_SEED, ACCUM_SEED], "micro_batches": [[0, 1], [2, 3]],
                         "files": [f"{ACCUM_MODEL}/accum.json", f"{ACCUM_MODEL}/accum_grads.safetensors"]},
    }
    mm.write_json(manifest, os.path.join(args.out, "manifest.json"))
    print(f"{len(infos)} models -> {args.out} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
