# Builds lmkit's PyTorch parity fixtures: tiny random-weight models of each family in HF layout (+ GGUF copies),
# float64 expected logits/greedy ids/hook activations, and malformed files. Not a converter for real checkpoints.
"""Usage:  /usr/bin/python3 tests/reference/make_models.py --out DIR

Deterministic: fixed seeds, CPU, one thread; the same bytes on every run. See tests/reference/README.md for the
layout of DIR, the JSON schemas and the RoPE conventions per file.
"""

import argparse
import json
import math
import os
import shutil
import struct
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bpe_tokenizer as bpe  # noqa: E402
import gguf_writer as gw  # noqa: E402
import ref_models as rm  # noqa: E402
import st_writer as st  # noqa: E402

TRANSFORMERS_VERSION = "4.46.3"  # the config schema mirrored below (field names as that version writes them)
N_MERGES = 80
N_GREEDY = 16
PROMPT_TEXT = "The robot and the cat sat in the garden."
TOKENIZER_CHECK_TEXTS = [
    "Hello world",
    "The cat sat on the mat, and the dog ran in the garden.",
    "it's 2024 -- isn't it?  Yes!",
    "under_score snake_case\tx\n\nnew  lines   ",
]

# one check per family with its special tokens inside the text (HF splits added tokens out before BPE)
SPECIAL_CHECK = {"llama": "<s>The cat</s><|endoftext|>", "mistral": "<s>The cat</s><|endoftext|>",
                 "qwen2": "<|im_start|>user\nThe cat<|im_end|>\n", "gpt2": "The cat<|endoftext|>The dog"}

# Training text for the tiny BPE: our own words, ASCII only.
TRAIN_TEXT = """
Once upon a time there was a little robot who lived in a quiet garden at the edge of a small town.
The robot liked to walk between the tall flowers in the morning, when the sun was warm and the grass was
still wet. Every day the robot found something new: a red ball under a tree, a blue stone near the water,
a small bird that sang on the fence. The robot did not know the names of these things, so it asked the
old cat who slept on the wall. The cat was slow and patient, and it told the robot the name of every
thing in the garden. The robot wrote the names in a little book and read them again in the evening.
One day it started to rain. The robot was afraid of the water, because water is not good for a robot.
It ran to the house and waited at the door. The girl who lived in the house opened the door and said,
"Come in, little robot, and sit by the fire." The robot sat by the fire and told the girl about the
red ball, the blue stone and the small bird. The girl listened and smiled. When the rain stopped, they
went out together to find the ball again. They looked under the tree, behind the wall and in the tall
grass. At last the cat found the ball in the water near the stone. The girl laughed, the robot was
happy, and the cat went back to sleep on the wall. That night the robot wrote a new word in its book:
friend. It was the best word in the whole book, and the robot read it again and again until morning.
The end of the story is not the end of the garden: there are more things to find there every day.
"""

# ---- model definitions ---------------------------------------------------------------------------------------
# dims: C hidden, F intermediate, L layers, H query heads, Hkv kv heads, D head dim, V vocab.
MODELS = {
    "llama_gqa_tied": dict(family="llama", seed=101, C=64, F=172, L=2, H=4, Hkv=2, D=16, V=384, theta=10000.0,
                           eps=1e-5, tied=True, rope_scaling=None, max_pos=128, dtype="float32"),
    "llama_gqa_tied_f16": dict(same_weights_as="llama_gqa_tied", dtype="float16"),
    "llama_gqa_tied_bf16": dict(same_weights_as="llama_gqa_tied", dtype="bfloat16"),
    "llama_untied_scaled": dict(family="llama", seed=102, C=64, F=128, L=2, H=4, Hkv=4, D=16, V=384,
                                theta=500000.0, eps=1e-5, tied=False, max_pos=2048, dtype="float32",
                                rope_scaling={"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                              "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
    "llama_linear_scaled": dict(family="llama", seed=103, C=64, F=96, L=3, H=4, Hkv=1, D=32, V=384, theta=10000.0,
                                eps=1e-5, tied=False, max_pos=256, dtype="float32",
                                rope_scaling={"factor": 2.0, "rope_type": "linear"}),
    "mistral_swa": dict(family="mistral", seed=104, C=64, F=144, L=2, H=4, Hkv=2, D=16, V=384, theta=10000.0,
                        eps=1e-5, tied=False, max_pos=512, dtype="float32", sliding_window=4),
    # use_sliding_window is false, so HF ignores sliding_window (8, shorter than the prompt + continuation on
    # purpose: a loader that applies it anyway produces different logits at positions >= 8).
    "qwen2_bias": dict(family="qwen2", seed=105, C=64, F=112, L=3, H=4, Hkv=2, D=16, V=384, theta=1000000.0,
                       eps=1e-6, tied=False, max_pos=512, dtype="float32", sliding_window=8, max_window_layers=2,
                       sharded=True),
    "gpt2": dict(family="gpt2", seed=117, C=64, L=2, H=4, D=16, n_positions=64, n_inner=None, eps=1e-5,
                 dtype="float32"),
}
TORCH_DTYPE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# special tokens appended after the 256 bytes + merges, per family
SPECIALS = {"llama": ["<s>", "</s>", "<|endoftext|>"], "mistral": ["<s>", "</s>", "<|endoftext|>"],
            "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "gpt2": ["<|endoftext|>"]}
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def resolve(name):
    m = dict(MODELS[name])
    if "same_weights_as" in m:
        base = dict(MODELS[m["same_weights_as"]])
        base.update(m)
        m = base
    m["name"] = name
    return m


# ---- tokenizers ----------------------------------------------------------------------------------------------

def make_tokenizer(merges, family):
    return bpe.ByteBPE(merges, SPECIALS[family])


def bos_eos(tok, family):
    if family in ("llama", "mistral"):
        return tok.special_ids["<s>"], tok.special_ids["</s>"]
    return tok.special_ids["<|endoftext|>"], tok.special_ids["<|endoftext|>"]


def write_tokenizer(d, tok, family, max_len):
    added_dec = tok.added_tokens_decoder(normalized=(family == "gpt2"))
    if family == "gpt2":
        tj = tok.tokenizer_json("gpt2")
        cfg = {"add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": added_dec,
               "bos_token": "<|endoftext|>", "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>",
               "errors": "replace", "model_max_length": max_len, "pad_token": None,
               "tokenizer_class": "GPT2Tokenizer", "unk_token": "<|endoftext|>"}
    elif family == "qwen2":
        tj = tok.tokenizer_json("qwen2")
        cfg = {"add_prefix_space": False, "added_tokens_decoder": added_dec, "bos_token": None,
               "chat_template": CHATML, "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>",
               "errors": "replace", "model_max_length": max_len, "pad_token": "<|endoftext|>",
               "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}
    else:
        tj = tok.tokenizer_json("llama3", bos="<s>")
        cfg = {"add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": added_dec,
               "bos_token": "<s>", "clean_up_tokenization_spaces": True, "eos_token": "</s>",
               "model_input_names": ["input_ids", "attention_mask"], "model_max_length": max_len,
               "tokenizer_class": "PreTrainedTokenizerFast"}
    # tokenizer.json: `tokenizers` writes struct field order (not sorted), pretty-printed with 2 spaces
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(tj, indent=2, ensure_ascii=False) + "\n")
    bpe.dump_json(cfg, os.path.join(d, "tokenizer_config.json"))


def prompt_ids(tok, family):
    ids = tok.encode(PROMPT_TEXT)
    if family in ("llama", "mistral"):  # the TemplateProcessing post-processor prepends <s>
        ids = [tok.special_ids["<s>"]] + ids
    return ids


# ---- weights -------------------------------------------------------------------------------------------------

def gen_llama_weights(m):
    g = torch.Generator().manual_seed(m["seed"])

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * scale

    C, F, H, Hkv, D = m["C"], m["F"], m["H"], m["Hkv"], m["D"]
    bias = m["family"] == "qwen2"
    # Scales chosen so greedy decoding is a real test: with tied embeddings a large embedding dominates the
    # residual and the model just repeats its input token, so tied models get small embeddings and a large
    # final-norm gain; untied heads get logits of std ~4 so the top-2 gaps are comfortably above f32 error.
    tied = m["tied"]
    sd = {"model.embed_tokens.weight": randn(m["V"], C, scale=0.1 if tied else 1.0)}
    for i in range(m["L"]):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = 1.0 + randn(C, scale=0.1)
        sd[p + "self_attn.q_proj.weight"] = randn(H * D, C, scale=C ** -0.5)
        sd[p + "self_attn.k_proj.weight"] = randn(Hkv * D, C, scale=C ** -0.5)
        sd[p + "self_attn.v_proj.weight"] = randn(Hkv * D, C, scale=C ** -0.5)
        if bias:  # Qwen2: q/k/v carry biases, o_proj does not
            sd[p + "self_attn.q_proj.bias"] = randn(H * D, scale=0.2)
            sd[p + "self_attn.k_proj.bias"] = randn(Hkv * D, scale=0.2)
            sd[p + "self_attn.v_proj.bias"] = randn(Hkv * D, scale=0.2)
        sd[p + "self_attn.o_proj.weight"] = randn(C, H * D, scale=(H * D) ** -0.5)
        sd[p + "post_attention_layernorm.weight"] = 1.0 + randn(C, scale=0.1)
        sd[p + "mlp.gate_proj.weight"] = randn(F, C, scale=C ** -0.5)
        sd[p + "mlp.up_proj.weight"] = randn(F, C, scale=C ** -0.5)
        sd[p + "mlp.down_proj.weight"] = randn(C, F, scale=F ** -0.5)
    sd["model.norm.weight"] = (4.0 if tied else 1.0) * (1.0 + randn(C, scale=0.1))
    if not tied:
        sd["lm_head.weight"] = randn(m["V"], C, scale=4.0 * C ** -0.5)
    return sd


def gen_gpt2_weights(m):
    g = torch.Generator().manual_seed(m["seed"])

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * scale

    C, V, Fi = m["C"], m["V"], m["n_inner"] or 4 * m["C"]
    # tied wte: small embeddings + large ln_f gain, for the reason given in gen_llama_weights
    sd = {"transformer.wte.weight": randn(V, C, scale=0.1),
          "transformer.wpe.weight": randn(m["n_positions"], C, scale=0.05)}
    for i in range(m["L"]):
        p = f"transformer.h.{i}."
        # Conv1D weights are (in, out): y = x @ W + b
        sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = 1.0 + randn(C, scale=0.1), randn(C, scale=0.1)
        sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"] = randn(C, 3 * C, scale=C ** -0.5), randn(3 * C, scale=0.1)
        sd[p + "attn.c_proj.weight"], sd[p + "attn.c_proj.bias"] = randn(C, C, scale=C ** -0.5), randn(C, scale=0.1)
        sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = 1.0 + randn(C, scale=0.1), randn(C, scale=0.1)
        sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"] = randn(C, Fi, scale=C ** -0.5), randn(Fi, scale=0.1)
        sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"] = randn(Fi, C, scale=Fi ** -0.5), randn(C, scale=0.1)
    sd["transformer.ln_f.weight"] = 4.0 * (1.0 + randn(C, scale=0.1))
    sd["transformer.ln_f.bias"] = randn(C, scale=0.1)
    return sd


# ---- HF config.json (fields as transformers' config classes write them; save_pretrained sorts keys) ----------

def hf_config(m, bos, eos):
    fam = m["family"]
    if fam == "gpt2":
        return {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
                "bos_token_id": bos, "embd_pdrop": 0.1, "eos_token_id": eos, "initializer_range": 0.02,
                "layer_norm_epsilon": m["eps"], "model_type": "gpt2", "n_ctx": m["n_positions"], "n_embd": m["C"],
                "n_head": m["H"], "n_inner": m["n_inner"], "n_layer": m["L"], "n_positions": m["n_positions"],
                "reorder_and_upcast_attn": False, "resid_pdrop": 0.1, "scale_attn_by_inverse_layer_idx": False,
                "scale_attn_weights": True, "summary_activation": None, "summary_first_dropout": 0.1,
                "summary_proj_to_labels": True, "summary_type": "cls_index", "summary_use_proj": True,
                "torch_dtype": m["dtype"], "transformers_version": TRANSFORMERS_VERSION, "use_cache": True,
                "vocab_size": m["V"]}
    c = {"architectures": [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                            "qwen2": "Qwen2ForCausalLM"}[fam]],
         "attention_dropout": 0.0, "bos_token_id": bos, "eos_token_id": eos, "hidden_act": "silu",
         "hidden_size": m["C"], "initializer_range": 0.02, "intermediate_size": m["F"],
         "max_position_embeddings": m["max_pos"], "model_type": fam, "num_attention_heads": m["H"],
         "num_hidden_layers": m["L"], "num_key_value_heads": m["Hkv"], "rms_norm_eps": m["eps"],
         "rope_theta": m["theta"], "tie_word_embeddings": m["tied"], "torch_dtype": m["dtype"],
         "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": m["V"]}
    if fam == "llama":
        c.update({"attention_bias": False, "head_dim": m["D"], "mlp_bias": False, "pretraining_tp": 1,
                  "rope_scaling": m.get("rope_scaling")})
    elif fam == "mistral":
        c.update({"head_dim": m["D"], "sliding_window": m["sliding_window"]})
    elif fam == "qwen2":
        c.update({"max_window_layers": m["max_window_layers"], "rope_scaling": None,
                  "sliding_window": m["sliding_window"], "use_sliding_window": False})
    return c


def spec_for(m, rope_pairs="half"):
    if m["family"] == "gpt2":
        return rm.Spec(n_layer=m["L"], n_head=m["H"], n_head_kv=m["H"], head_dim=m["D"], norm="layer",
                       eps=m["eps"], mlp="gelu_tanh")
    rs = m.get("rope_scaling")
    if rs is None:
        inv = rm.rope_inv_freq_default(m["D"], m["theta"])
    elif rs["rope_type"] == "linear":
        inv = rm.rope_inv_freq_linear(m["D"], m["theta"], rs["factor"])
    elif rs["rope_type"] == "llama3":
        inv = rm.rope_inv_freq_llama3(m["D"], m["theta"], rs["factor"], rs["low_freq_factor"],
                                      rs["high_freq_factor"], rs["original_max_position_embeddings"])
    else:
        raise ValueError(rs)
    sw = m.get("sliding_window") if m["family"] == "mistral" else None  # qwen2: use_sliding_window false
    return rm.Spec(n_layer=m["L"], n_head=m["H"], n_head_kv=m["Hkv"], head_dim=m["D"], norm="rms", eps=m["eps"],
                   mlp="swiglu", inv_freq=inv, rope_pairs=rope_pairs, sliding_window=sw)


def canonical(m, sd):
    if m["family"] == "gpt2":
        return rm.from_hf_gpt2(sd, m["L"], m["C"])
    return rm.from_hf_llama(sd, m["L"], m["tied"])


# ---- GGUF conversion (llama.cpp convert_hf_to_gguf.py conventions, re-implemented) ---------------------------

def permute_for_ggml_rope(w, n_heads):
    """HF q/k rows -> llama.cpp "llama" rows.

    Per head, HF keeps the rotate_half pairs (i, i + D/2) in the two halves of the head's rows; ggml's NORM
    RoPE rotates adjacent rows (2i, 2i+1). Interleave the halves: new row 2i = old row i, new row 2i+1 =
    old row i + D/2 (same as llama.cpp's reshape(n_head, 2, D/2, in).swapaxes(1, 2)). For k, n_heads = n_kv_head.
    """
    out_dim = w.shape[0]
    D = out_dim // n_heads
    return w.reshape(n_heads, 2, D // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def add_tokenizer_kv(wr, tok, m, bos, eos, add_bos):
    tokens, types, merges = tok.gguf_vocab(m["V"])
    wr.add("tokenizer.ggml.model", gw.STRING, "gpt2")
    wr.add("tokenizer.ggml.pre", gw.STRING, "gpt-2")
    wr.add_array("tokenizer.ggml.tokens", gw.STRING, tokens)
    wr.add_array("tokenizer.ggml.token_type", gw.I32, types)
    wr.add_array("tokenizer.ggml.merges", gw.STRING, merges)
    wr.add("tokenizer.ggml.bos_token_id", gw.U32, bos)
    wr.add("tokenizer.ggml.eos_token_id", gw.U32, eos)
    wr.add("tokenizer.ggml.add_bos_token", gw.BOOL, add_bos)


def gguf_llama_like(m, sd, tok, bos, eos, arch, weight_type, alignment, explicit_alignment):
    """arch "llama": q/k permuted for ggml NORM rope; arch "qwen2": NEOX rope, no permutation, biases kept."""
    wr = gw.GGUFWriter(alignment=alignment, write_alignment_key=explicit_alignment)
    wr.add("general.architecture", gw.STRING, arch)
    wr.add("general.name", gw.STRING, m["name"])
    wr.add(f"{arch}.block_count", gw.U32, m["L"])
    wr.add(f"{arch}.context_length", gw.U32, m["max_pos"])
    wr.add(f"{arch}.embedding_length", gw.U32, m["C"])
    wr.add(f"{arch}.feed_forward_length", gw.U32, m["F"])
    wr.add(f"{arch}.attention.head_count", gw.U32, m["H"])
    wr.add(f"{arch}.attention.head_count_kv", gw.U32, m["Hkv"])
    wr.add(f"{arch}.rope.freq_base", gw.F32, m["theta"])
    wr.add(f"{arch}.attention.layer_norm_rms_epsilon", gw.F32, m["eps"])
    if arch == "llama":  # the converter writes these for llama (qwen2 readers derive D = C / H)
        wr.add("llama.attention.key_length", gw.U32, m["D"])
        wr.add("llama.attention.value_length", gw.U32, m["D"])
        wr.add("llama.vocab_size", gw.U32, m["V"])
        wr.add("llama.rope.dimension_count", gw.U32, m["D"])
    wr.add("general.file_type", gw.U32, 0 if weight_type == gw.GGML_F32 else 1)
    add_tokenizer_kv(wr, tok, m, bos, eos, add_bos=(arch == "llama"))
    wr.add("general.quantization_version", gw.U32, 2)

    def mat(name, t):   # 2-D weights in the file's weight type; 1-D (norms, biases) stay F32 as llama.cpp keeps them
        wr.add_tensor(name, t, weight_type if t.dim() == 2 else gw.GGML_F32)

    mat("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(m["L"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        q, k = sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"]
        if arch == "llama":
            q, k = permute_for_ggml_rope(q, m["H"]), permute_for_ggml_rope(k, m["Hkv"])
        mat(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        mat(b + "attn_q.weight", q)
        mat(b + "attn_k.weight", k)
        mat(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        for n in "qkv":
            if f"{p}self_attn.{n}_proj.bias" in sd:
                mat(f"{b}attn_{n}.bias", sd[f"{p}self_attn.{n}_proj.bias"])
        mat(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        mat(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        mat(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        mat(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        mat(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    mat("output_norm.weight", sd["model.norm.weight"])
    if "lm_head.weight" in sd:
        mat("output.weight", sd["lm_head.weight"])
    return wr


def gguf_gpt2(m, sd, tok, bos, eos):
    """Conv1D (in, out) weights are transposed to (out, in) as llama.cpp's converter does; no output.weight
    (GPT-2 ties it to token_embd, and current llama.cpp falls back to token_embd)."""
    wr = gw.GGUFWriter(alignment=32, write_alignment_key=True)
    wr.add("general.architecture", gw.STRING, "gpt2")
    wr.add("general.name", gw.STRING, m["name"])
    wr.add("gpt2.block_count", gw.U32, m["L"])
    wr.add("gpt2.context_length", gw.U32, m["n_positions"])
    wr.add("gpt2.embedding_length", gw.U32, m["C"])
    wr.add("gpt2.feed_forward_length", gw.U32, m["n_inner"] or 4 * m["C"])
    wr.add("gpt2.attention.head_count", gw.U32, m["H"])
    wr.add("gpt2.attention.layer_norm_epsilon", gw.F32, m["eps"])
    wr.add("general.file_type", gw.U32, 0)
    add_tokenizer_kv(wr, tok, m, bos, eos, add_bos=False)
    wr.add("general.quantization_version", gw.U32, 2)
    f32 = gw.GGML_F32
    wr.add_tensor("token_embd.weight", sd["transformer.wte.weight"], f32)
    wr.add_tensor("position_embd.weight", sd["transformer.wpe.weight"], f32)
    for i in range(m["L"]):
        p, b = f"transformer.h.{i}.", f"blk.{i}."
        for theirs, ours in (("ln_1", "attn_norm"), ("ln_2", "ffn_norm")):
            wr.add_tensor(f"{b}{ours}.weight", sd[f"{p}{theirs}.weight"], f32)
            wr.add_tensor(f"{b}{ours}.bias", sd[f"{p}{theirs}.bias"], f32)
        for theirs, ours in (("attn.c_attn", "attn_qkv"), ("attn.c_proj", "attn_output"),
                             ("mlp.c_fc", "ffn_up"), ("mlp.c_proj", "ffn_down")):
            wr.add_tensor(f"{b}{ours}.weight", sd[f"{p}{theirs}.weight"].T.contiguous(), f32)
            wr.add_tensor(f"{b}{ours}.bias", sd[f"{p}{theirs}.bias"], f32)
    wr.add_tensor("output_norm.weight", sd["transformer.ln_f.weight"], f32)
    wr.add_tensor("output_norm.bias", sd["transformer.ln_f.bias"], f32)
    return wr


# ---- output helpers ------------------------------------------------------------------------------------------

def _fmt(v, indent):
    """JSON with dicts and lists of rows one entry per line (readable diffs); innermost rows stay on one line."""
    pad = " " * indent
    if isinstance(v, dict):
        items = [f'{pad}  {json.dumps(k)}: {_fmt(x, indent + 2).lstrip()}' for k, x in v.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(v, list) and v and isinstance(v[0], (list, dict)):
        return pad + "[\n" + ",\n".join(_fmt(x, indent + 2) for x in v) + "\n" + pad + "]"
    return pad + json.dumps(v, separators=(",", ":"))


def write_json(obj, path):
    with open(path, "w", encoding="utf-8") as f:
        f.write(_fmt(obj, 0) + "\n")


def tensors_equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


HOOKS = ["blocks.0.hook_resid_pre", "blocks.0.attn.hook_pattern", "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out",
         "blocks.1.hook_resid_post", "ln_final.hook_normalized"]


# ---- one model -----------------------------------------------------------------------------------------------

def build_model(out, name, merges, cache):
    m = resolve(name)
    fam = m["family"]
    tok = make_tokenizer(merges, fam)
    if fam == "gpt2":
        m["V"] = tok.size  # GPT-2: the vocab is exactly the tokenizer's (like the real 50257)
    assert tok.size <= m["V"]
    bos, eos = bos_eos(tok, fam)

    # weights: float32 master copy, then stored in the variant's dtype
    base = m.get("same_weights_as", name)
    if base not in cache:
        cache[base] = gen_gpt2_weights(m) if fam == "gpt2" else gen_llama_weights(m)
    sd32 = cache[base]
    sd = {k: v.to(TORCH_DTYPE[m["dtype"]]) for k, v in sd32.items()}

    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    max_len = m.get("max_pos", m.get("n_positions"))
    bpe.dump_json(hf_config(m, bos, eos), os.path.join(d, "config.json"))
    bpe.dump_json({"_from_model_config": True, "bos_token_id": bos, "eos_token_id": eos,
                   "transformers_version": TRANSFORMERS_VERSION}, os.path.join(d, "generation_config.json"))
    write_tokenizer(d, tok, fam, max_len)

    files = []
    if m.get("sharded"):
        names = sorted(sd)
        half = len(names) // 2
        shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
        weight_map, total = {}, 0
        for fname, keys in shards.items():
            st.save_file({k: sd[k] for k in keys}, os.path.join(d, fname))
            for k in keys:
                weight_map[k] = fname
                total += sd[k].numel() * sd[k].element_size()
            files.append(fname)
        bpe.dump_json({"metadata": {"total_size": total}, "weight_map": weight_map},
                      os.path.join(d, "model.safetensors.index.json"))
        files.append("model.safetensors.index.json")
        # self-check: the shards reassemble into exactly the state dict
        loaded = {}
        for fname in shards:
            meta, part = st.load_file(os.path.join(d, fname))
            assert meta == {"format": "pt"}
            assert not set(part) & set(loaded), "a tensor in two shards"
            loaded.update(part)
        index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
        assert all(index["weight_map"][k] == f for f, ks in shards.items() for k in ks)
    else:
        st.save_file(sd, os.path.join(d, "model.safetensors"))
        files.append("model.safetensors")
        meta, loaded = st.load_file(os.path.join(d, "model.safetensors"))
        assert meta == {"format": "pt"}
    # self-check: every tensor reads back bit-identical, in the stored dtype
    assert set(loaded) == set(sd) and all(tensors_equal(loaded[k], sd[k]) for k in sd), name
    if m.get("tied", True):  # tied models (GPT-2 always) store no lm_head.weight, as save_pretrained does
        assert "lm_head.weight" not in loaded

    # expected outputs from the file's own (possibly rounded) weights, upcast to float64
    spec = spec_for(m)
    W = canonical(m, loaded)
    ids = prompt_ids(tok, fam)
    assert 10 <= len(ids) <= 16 and max(ids) < m["V"], ids
    logits, hooks = rm.forward(spec, W, ids)
    greedy_ids, margin = rm.greedy(spec, W, ids, N_GREEDY)
    _check_pattern(hooks["blocks.0.attn.hook_pattern"], spec.sliding_window)

    cfg_copy = {"family": fam, "n_layer": m["L"], "n_embd": m["C"], "n_head": m["H"],
                "n_head_kv": m.get("Hkv", m["H"]), "head_dim": m["D"],
                "n_ff": m.get("F", m.get("n_inner") or 4 * m["C"]), "vocab_size": m["V"],
                "tokenizer_size": tok.size, "norm": spec.norm, "norm_eps": m["eps"],
                "rope": None if spec.inv_freq is None else {
                    "theta": m["theta"], "scaling": m.get("rope_scaling"),
                    "pairs": "rotate_half (i, i + head_dim/2)",
                    "inv_freq": spec.inv_freq.tolist()},
                "sliding_window": spec.sliding_window, "tied_embeddings": m.get("tied", True),
                "qkv_bias": fam in ("qwen2", "gpt2"), "dtype": m["dtype"], "bos_token_id": bos, "eos_token_id": eos}
    expected = {
        "model": name,
        "config": cfg_copy,
        "prompt_text": PROMPT_TEXT,
        "prompt_ids": ids,
        "logits": logits.tolist(),
        "greedy_ids": greedy_ids,
        "greedy_min_margin": margin,
        "hooks": {h: hooks[h].tolist() for h in HOOKS},
        "hook_shapes": {h: list(hooks[h].shape) for h in HOOKS},
        "tokenizer_checks": [{"text": t, "ids": tok.encode(t)} for t in TOKENIZER_CHECK_TEXTS + [SPECIAL_CHECK[fam]]],
    }
    for c in expected["tokenizer_checks"]:
        assert tok.decode(c["ids"]) == c["text"]
    write_json(expected, os.path.join(d, "expected.json"))
    files += ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "expected.json"]
    return dict(m=m, tok=tok, sd=sd, loaded=loaded, spec=spec, W=W, ids=ids, logits=logits, bos=bos, eos=eos,
                files=files, margin=margin, greedy=greedy_ids)


def _check_pattern(p, sw):
    T = p.shape[-1]
    assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-12)
    for i in range(T):
        for j in range(T):
            if j > i or (sw is not None and i - j >= sw):
                assert float(p[:, i, j].abs().max()) == 0.0


# ---- GGUF files + their self-checks ----------------------------------------------------------------------------

def build_gguf(out, built, name, fname, weight_type=gw.GGML_F32):
    b = built[name]
    m, sd = b["m"], b["loaded"]
    fam = m["family"]
    if fam == "gpt2":
        wr = gguf_gpt2(m, sd, b["tok"], b["bos"], b["eos"])
        rope_pairs = None
    elif fam == "qwen2":
        wr = gguf_llama_like(m, sd, b["tok"], b["bos"], b["eos"], "qwen2", weight_type, 64, True)
        rope_pairs = "half"
    else:
        wr = gguf_llama_like(m, sd, b["tok"], b["bos"], b["eos"], "llama", weight_type, 32, False)
        rope_pairs = "adjacent"
    data = wr.to_bytes()
    with open(os.path.join(out, fname), "wb") as f:
        f.write(data)

    # self-check: read back, run the float64 forward on the GGUF tensors with the RoPE pairing that
    # llama.cpp uses for this architecture, and match the HF model's logits.
    version, kv, g = gw.read_gguf(data)
    assert version == 3 and kv["general.architecture"][1] in ("llama", "qwen2", "gpt2")
    assert len(kv["tokenizer.ggml.tokens"][1]) == m["V"]
    W = rm.from_gguf(g, m["L"], m["C"])
    spec = spec_for(m, rope_pairs=rope_pairs or "half")
    logits, _ = rm.forward(spec, W, b["ids"])
    err = float((logits - b["logits"]).abs().max())
    assert err < 1e-9, f"{fname}: GGUF forward differs from HF by {err}"
    if rope_pairs == "adjacent":
        # the permutation matters: the same tensors with HF's rotate_half pairing must NOT match
        wrong, _ = rm.forward(spec_for(m, rope_pairs="half"), W, b["ids"])
        assert float((wrong - b["logits"]).abs().max()) > 1e-3, "permutation check is not sensitive"
        # and un-permuting by hand gives back the HF rows: HF row i -> 2i, row i + D/2 -> 2i + 1
        D = m["D"]
        for layer in range(m["L"]):
            for n, heads in (("q", m["H"]), ("k", m["Hkv"])):
                hf = sd[f"model.layers.{layer}.self_attn.{n}_proj.weight"]
                gg = g[f"blk.{layer}.attn_{n}.weight"].to(hf.dtype)
                for h in range(heads):
                    for i in range(D // 2):
                        assert torch.equal(gg[h * D + 2 * i], hf[h * D + i])
                        assert torch.equal(gg[h * D + 2 * i + 1], hf[h * D + i + D // 2])
    stored = {n: str(t.dtype).replace("torch.", "") for n, t in g.items()}
    return {"file": fname, "arch": kv["general.architecture"][1], "n_tensors": len(g), "max_abs_err_vs_hf": err,
            "alignment": kv.get("general.alignment", (gw.U32, 32))[1],
            "explicit_alignment_key": "general.alignment" in kv,
            "dtypes": sorted(set(stored.values()))}


# ---- malformed files ------------------------------------------------------------------------------------------

def _raw_gguf(kvs, infos, data=b"", alignment=32, version=3, n_tensors=None, n_kv=None):
    """Hand-assembled GGUF where every field can lie. infos: (name, ne list, type, offset)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    head += b"".join(gw.pack_string(k) + struct.pack("<I", vt) + gw.pack_value(vt, v) for k, vt, v in kvs)
    head += b"".join(gw.pack_tensor_info(*i) for i in infos)
    head += b"\0" * ((-len(head)) % alignment)
    return head + data


def build_bad(out, built):
    d = os.path.join(out, "bad")
    os.makedirs(d, exist_ok=True)
    entries = []

    def put(fname, blob, fmt, problem):
        with open(os.path.join(d, fname), "wb") as f:
            f.write(blob)
        entries.append({"file": fname, "format": fmt, "problem": problem})

    good_st = open(os.path.join(out, "llama_gqa_tied", "model.safetensors"), "rb").read()
    (hlen,) = struct.unpack_from("<Q", good_st, 0)
    data_len = len(good_st) - 8 - hlen
    put("truncated.safetensors", good_st[:8 + hlen + data_len // 2], "safetensors",
        "valid header, file cut in the middle of the tensor data (half the data bytes missing)")
    small = st.serialize({"w": torch.arange(16, dtype=torch.float32).reshape(4, 4)})
    put("header_len_exceeds_file.safetensors", struct.pack("<Q", len(small) + 1000) + small[8:], "safetensors",
        "8-byte header length is 1000 bytes larger than the whole file")
    put("header_len_huge.safetensors", struct.pack("<Q", 2 ** 64 - 1) + small[8:], "safetensors",
        "header length 2^64-1 (overflows size arithmetic)")
    not_json = b'{"w": {"dtype": "F32", "shape": [4, 4], not json at all}   '  # 64 bytes, padded like HF
    put("header_not_json.safetensors", struct.pack("<Q", len(not_json)) + not_json + bytes(64), "safetensors",
        "header bytes are not valid JSON")
    put("offsets_out_of_range.safetensors",
        st.pack({"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 4096]}},
                bytes(64)), "safetensors", "data_offsets end (4096) beyond the 64 data bytes")
    put("offsets_size_mismatch.safetensors",
        st.pack({"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 32]}},
                bytes(64)), "safetensors", "data_offsets span 32 bytes but shape [4,4] F32 needs 64")
    put("unknown_dtype.safetensors",
        st.pack({"__metadata__": {"format": "pt"}, "w": {"dtype": "Q9_Z", "shape": [4, 4], "data_offsets": [0, 64]}},
                bytes(64)), "safetensors", "dtype 'Q9_Z' is not a safetensors dtype")

    # HF model folders, each with exactly one thing wrong (config + tokenizer otherwise valid)
    src = os.path.join(out, "llama_gqa_tied")
    base_sd = built["llama_gqa_tied"]["loaded"]

    def model_dir(sub, sd, problem, config_patch=None, files=None):
        dd = os.path.join(d, sub)
        os.makedirs(dd, exist_ok=True)
        for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(src, f), os.path.join(dd, f))
        if config_patch:
            cfg = json.load(open(os.path.join(dd, "config.json")))
            cfg.update(config_patch)
            bpe.dump_json(cfg, os.path.join(dd, "config.json"))
        if files is None:
            st.save_file(sd, os.path.join(dd, "model.safetensors"))
        else:
            files(dd)
        entries.append({"file": sub + "/", "format": "hf_dir", "problem": problem})

    wrong = dict(base_sd)
    wrong["model.layers.0.self_attn.k_proj.weight"] = base_sd["model.layers.0.self_attn.k_proj.weight"].T.contiguous()
    model_dir("wrong_shape", wrong, "model.layers.0.self_attn.k_proj.weight is transposed: [64, 32], config "
                                    "implies [32, 64] (n_kv_head 2 * head_dim 16, hidden 64)")
    missing = {k: v for k, v in base_sd.items() if k != "model.norm.weight"}
    model_dir("missing_tensor", missing, "model.norm.weight is absent")
    model_dir("unknown_arch", base_sd, "config.json model_type 'bloomz-unknown' (architectures "
              "['BloomzUnknownForCausalLM']): not a supported architecture",
              config_patch={"model_type": "bloomz-unknown", "architectures": ["BloomzUnknownForCausalLM"]})

    def half_shards(dd):
        names = sorted(base_sd)
        h = len(names) // 2
        st.save_file({k: base_sd[k] for k in names[:h]}, os.path.join(dd, "model-00001-of-00002.safetensors"))
        wm = {k: ("model-00001-of-00002.safetensors" if i < h else "model-00002-of-00002.safetensors")
              for i, k in enumerate(names)}
        total = sum(v.numel() * v.element_size() for v in base_sd.values())
        bpe.dump_json({"metadata": {"total_size": total}, "weight_map": wm},
                      os.path.join(dd, "model.safetensors.index.json"))
    model_dir("missing_shard", None, "model.safetensors.index.json names model-00002-of-00002.safetensors, "
              "which does not exist", files=half_shards)

    # GGUF
    good_gguf = open(os.path.join(out, "llama_gqa_tied.gguf"), "rb").read()
    put("truncated.gguf", good_gguf[:len(good_gguf) - (len(good_gguf) - 4096) // 2], "gguf",
        "valid llama_gqa_tied.gguf cut in the middle of the tensor data")
    put("truncated_metadata.gguf", good_gguf[:200], "gguf", "cut after 200 bytes, inside the metadata key/values")
    arch = [("general.architecture", gw.STRING, "llama")]
    tdata = torch.arange(32, dtype=torch.float32).numpy().tobytes()  # one (4, 8) F32 tensor = 128 bytes
    put("bad_magic.gguf", b"GGUX" + _raw_gguf(arch, [("token_embd.weight", [8, 4], 0, 0)], tdata)[4:], "gguf",
        "magic is 'GGUX', not 'GGUF'")
    put("unknown_tensor_type.gguf", _raw_gguf(arch, [("token_embd.weight", [8, 4], 99, 0)], tdata), "gguf",
        "tensor token_embd.weight has ggml type id 99 (no such type)")
    put("misaligned_offset.gguf", _raw_gguf(arch, [("token_embd.weight", [8, 4], 0, 4)], bytes(4) + tdata), "gguf",
        "tensor data offset 4 is not a multiple of the alignment (32)")
    put("too_many_dims.gguf", _raw_gguf(arch, [("token_embd.weight", [2, 2, 2, 2, 2, 1, 1], 0, 0)], tdata), "gguf",
        "tensor with n_dims 7 (ggml allows at most 4)")
    put("huge_dim.gguf", _raw_gguf(arch, [("token_embd.weight", [2 ** 62, 4], 0, 0)], tdata), "gguf",
        "tensor dims [2^62, 4] F32: element count 2^64 and byte size overflow uint64 (wrap to 0)")
    put("huge_string.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2 ** 62) + b"general",
        "gguf", "metadata key length 2^62 in a 40-byte file")
    put("huge_counts.gguf", _raw_gguf(arch, [], b"", n_tensors=2 ** 40, n_kv=1), "gguf",
        "header claims 2^40 tensors in a tiny file")

    # llama2.c: 7 int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len) + floats
    hdr = struct.pack("<7i", 64, 172, 2, 4, 2, 384, 128)
    put("truncated_llama2c.bin", hdr + struct.pack("<10f", *[0.5] * 10), "llama2c",
        "llama2.c header (dim 64, hidden 172, 2 layers, 4 heads, 2 kv heads, vocab 384, seq 128) then only 10 floats")

    write_json({"generator": "tests/reference/make_models.py", "files": entries}, os.path.join(d, "manifest.json"))
    return entries


# ---- extra self-checks on the semantics ----------------------------------------------------------------------

def semantic_checks(built):
    # mistral: the window changes positions >= sliding_window and nothing before
    b = built["mistral_swa"]
    sw = b["spec"].sliding_window
    full = rm.Spec(**{**b["spec"].__dict__, "sliding_window": None})
    l_full, _ = rm.forward(full, b["W"], b["ids"])
    diff = (l_full - b["logits"]).abs().max(-1).values
    assert float(diff[:sw].max()) == 0.0 and float(diff[sw:].min()) > 1e-3, diff
    # qwen2: applying the (disabled) window would change positions >= 8, so the fixture catches that bug
    b = built["qwen2_bias"]
    wrong = rm.Spec(**{**b["spec"].__dict__, "sliding_window": b["m"]["sliding_window"]})
    l_wrong, _ = rm.forward(wrong, b["W"], b["ids"])
    assert float((l_wrong - b["logits"]).abs().max()) > 1e-3
    # llama3 rope: all three regimes present (kept, divided by factor, smoothed)
    m = resolve("llama_untied_scaled")
    base = rm.rope_inv_freq_default(m["D"], m["theta"])
    inv = built["llama_untied_scaled"]["spec"].inv_freq
    ratio = (base / inv).tolist()
    assert any(abs(r - 1) < 1e-12 for r in ratio) and any(abs(r - 8) < 1e-12 for r in ratio) and \
        any(1 + 1e-6 < r < 8 - 1e-6 for r in ratio), ratio
    # f16/bf16 variants: genuinely rounded, and their logits differ from the float32 model's
    for v in ("llama_gqa_tied_f16", "llama_gqa_tied_bf16"):
        d = float((built[v]["logits"] - built["llama_gqa_tied"]["logits"]).abs().max())
        assert d > 1e-4, (v, d)
    # explicit head_dim: q_proj is (H * 32, 64), not (64, 64)
    b = built["llama_linear_scaled"]
    assert tuple(b["loaded"]["model.layers.0.self_attn.q_proj.weight"].shape) == (128, 64)


# ---- main ----------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (created; existing files are overwritten)")
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)

    merges = bpe.train_bpe(TRAIN_TEXT, N_MERGES)
    built, cache = {}, {}
    for name in MODELS:
        built[name] = build_model(args.out, name, merges, cache)
        print(f"{name:22s} vocab {built[name]['m']['V']:4d}  prompt {len(built[name]['ids'])} tokens  "
              f"greedy min margin {built[name]['margin']:.4f}")

    ggufs = [
        (build_gguf(args.out, built, "llama_gqa_tied", "llama_gqa_tied.gguf"), "llama_gqa_tied",
         "llama: q/k rows permuted for ggml NORM rope -> rotate ADJACENT pairs (2i, 2i+1)"),
        (build_gguf(args.out, built, "llama_gqa_tied_f16", "llama_gqa_tied_f16.gguf", gw.GGML_F16),
         "llama_gqa_tied_f16", "llama: q/k permuted -> ADJACENT pairs (2i, 2i+1); 2-D weights F16, norms F32"),
        (build_gguf(args.out, built, "qwen2_bias", "qwen2_bias.gguf"), "qwen2_bias",
         "qwen2: no permutation, NEOX rope -> HALF pairs (i, i + head_dim/2), same as HF"),
        (build_gguf(args.out, built, "gpt2", "gpt2.gguf"), "gpt2",
         "gpt2: no rope (learned positions); Conv1D weights transposed to (out, in)"),
    ]
    for info, _, _ in ggufs:
        print(f"{info['file']:26s} arch {info['arch']:5s} {info['n_tensors']} tensors, max |logit - HF| "
              f"{info['max_abs_err_vs_hf']:.2e}")
    semantic_checks(built)
    bad = build_bad(args.out, built)

    manifest = {
        "generator": "tests/reference/make_models.py",
        "notes": "Expected values are float64 forwards of the stored weights (f16/bf16 upcast exactly). "
                 "Every GGUF file must reproduce the logits of the expected.json it names.",
        "models": [{"name": n, "dir": n, "family": b["m"]["family"], "format": "hf",
                    "dtype": b["m"]["dtype"], "files": b["files"], "expected": f"{n}/expected.json",
                    "sharded": bool(b["m"].get("sharded"))} for n, b in built.items()],
        "gguf": [{"file": info["file"], "family": built[src]["m"]["family"], "arch": info["arch"],
                  "source_model": src, "expected": f"{src}/expected.json", "rope": rope,
                  "alignment": info["alignment"], "explicit_alignment_key": info["explicit_alignment_key"],
                  "dtypes": info["dtypes"], "same_logits_as_source": True} for info, src, rope in ggufs],
        "bad": "bad/manifest.json",
    }
    write_json(manifest, os.path.join(args.out, "manifest.json"))
    print(f"{len(built)} models, {len(ggufs)} GGUF files, {len(bad)} bad fixtures -> {args.out} "
          f"in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
