#!/usr/bin/env python3
# A 110M-parameter llama (llama2.c's stories110M shape) with random weights, in Hugging Face layout,
# for speed benchmarks against llama.cpp. Not a trained model: its text is noise, its speed is real.
"""Writes OUT/ with:

    config.json            LlamaForCausalLM: dim 768, 12 layers, 12 heads (no GQA), FFN 2048,
                           vocab 32000, context 1024, tied embeddings (110M parameters)
    model.safetensors      random weights, N(0, 0.02) matrices, norms near 1 (f32 by default)
    tokenizer.model        Llama 2's SentencePiece BPE vocabulary (pieces, scores, types), so that
                           llama.cpp's convert_hf_to_gguf.py writes the real Llama vocabulary
    tokenizer.json         the same vocabulary as a Hugging Face BPE tokenizer (lmkit reads this)
    tokenizer_config.json  BOS added, as Llama 2's is
    generation_config.json

The vocabulary is read from ../shared/tokenizers/ggml-vocab-llama-spm.gguf (no download). The
SentencePiece model file is a protobuf written here by hand from sentencepiece_model.proto's field
numbers, so neither protobuf nor sentencepiece is needed to write it (llama.cpp's converter needs
sentencepiece to read it: Debian's python3-sentencepiece).

Usage: /usr/bin/python3 bench/make_llama110m.py --out DIR [--seed 0] [--dtype f32|f16|bf16]
"""

import argparse
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
from gguf_writer import read_gguf  # noqa: E402  (plain-Python GGUF reader of the test oracle)

DIM, N_LAYER, N_HEAD, FFN, VOCAB, CTX = 768, 12, 12, 2048, 32000, 1024
SPACE = "\u2581"  # SentencePiece's visible space


# ---- protobuf (only the wire types SentencePiece's ModelProto uses) -----------------------------

def _varint(n):
    n &= (1 << 64) - 1  # negative int32 values are written as 10-byte two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_varint(num, v):
    return _varint(num << 3 | 0) + _varint(int(v))


def _field_f32(num, v):
    return _varint(num << 3 | 5) + struct.pack("<f", v)


def _field_bytes(num, b):
    if isinstance(b, str):
        b = b.encode("utf-8")
    return _varint(num << 3 | 2) + _varint(len(b)) + b


def sentencepiece_model(tokens, scores, types):
    """Bytes of a SentencePiece ModelProto: BPE, byte fallback, identity normalizer with a dummy
    prefix and no whitespace collapsing (Llama 2's settings)."""
    out = bytearray()
    for piece, score, ty in zip(tokens, scores, types):
        # SentencePiece { piece = 1; score = 2; type = 3 }; types share llama.cpp's numbering
        out += _field_bytes(1, _field_bytes(1, piece) + _field_f32(2, score) + _field_varint(3, ty))
    trainer = (_field_varint(3, 2)  # model_type = BPE
               + _field_varint(4, len(tokens))  # vocab_size
               + _field_varint(35, 1)  # byte_fallback
               + _field_varint(40, 0) + _field_varint(41, 1) + _field_varint(42, 2)  # unk/bos/eos ids
               + _field_varint(43, -1))  # pad_id: none
    normalizer = (_field_bytes(1, "identity") + _field_varint(3, 1)  # add_dummy_prefix
                  + _field_varint(4, 0)  # remove_extra_whitespaces: off
                  + _field_varint(5, 1))  # escape_whitespaces
    out += _field_bytes(2, trainer) + _field_bytes(3, normalizer)
    return bytes(out)


# ---- Hugging Face tokenizer.json ----------------------------------------------------------------

def bpe_merges(tokens, scores, types):
    """SentencePiece BPE has no merge list; Hugging Face derives one from the vocabulary: every
    split of a piece into two pieces of the vocabulary, ranked by the merged piece's score (so
    Llama's whitespace runs, scored -1e9, merge last: " Hello" is "▁" "▁Hello", not "▁▁" "Hello")."""
    ids = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 1}  # normal pieces only
    merges = []
    for piece, pid in ids.items():
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in ids and right in ids:
                merges.append((-scores[pid], pid, ids[left], ids[right], left, right))
    merges.sort()
    return [f"{m[4]} {m[5]}" for m in merges]


def tokenizer_json(tokens, scores, types):
    special = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True} for i in (0, 1, 2)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": bpe_merges(tokens, scores, types)},
    }


# ---- weights -------------------------------------------------------------------------------------

def weight_shapes(tied):
    shapes = {"model.embed_tokens.weight": (VOCAB, DIM), "model.norm.weight": (DIM,)}
    if not tied:
        shapes["lm_head.weight"] = (VOCAB, DIM)
    for i in range(N_LAYER):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (DIM,), p + "post_attention_layernorm.weight": (DIM,),
            p + "self_attn.q_proj.weight": (DIM, DIM), p + "self_attn.k_proj.weight": (DIM, DIM),
            p + "self_attn.v_proj.weight": (DIM, DIM), p + "self_attn.o_proj.weight": (DIM, DIM),
            p + "mlp.gate_proj.weight": (FFN, DIM), p + "mlp.up_proj.weight": (FFN, DIM),
            p + "mlp.down_proj.weight": (DIM, FFN)})
    return shapes


def to_dtype(a, dtype):
    """float32 array -> raw little-endian bytes of `dtype` (bf16 rounds to nearest even)."""
    if dtype == "f32":
        return a.astype("<f4").tobytes()
    if dtype == "f16":
        return a.astype("<f2").tobytes()
    u = a.astype("<f4").view("<u4").astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()


def write_safetensors(path, shapes, dtype, seed):
    """Streams tensors to a safetensors file (sorted by name, as Hugging Face's writer does)."""
    rng = np.random.default_rng(seed)
    itemsize = {"f32": 4, "f16": 2, "bf16": 2}[dtype]
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name in sorted(shapes):
        n = int(np.prod(shapes[name])) * itemsize
        header[name] = {"dtype": dtype.upper(), "shape": list(shapes[name]), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name in sorted(shapes):
            shape = shapes[name]
            if len(shape) == 1:  # norm weights: near 1, so activations keep a sane scale
                a = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
            else:
                a = 0.02 * rng.standard_normal(shape, dtype=np.float32)
            f.write(to_dtype(a, dtype))
    os.replace(tmp, path)
    return sum(int(np.prod(s)) for s in shapes.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32", help="safetensors dtype")
    ap.add_argument("--untied", action="store_true", help="separate lm_head (134M parameters)")
    ap.add_argument("--vocab", default=os.path.join(os.environ.get("LMKIT_SHARED_DIR", os.path.join(HERE, "..", "..", "shared")),
                                                    "tokenizers", "ggml-vocab-llama-spm.gguf"),
                    help="GGUF holding Llama 2's SentencePiece vocabulary")
    args = ap.parse_args()

    with open(args.vocab, "rb") as f:
        _, kv, _ = read_gguf(f.read())
    tokens = kv["tokenizer.ggml.tokens"][1]
    scores = kv["tokenizer.ggml.scores"][1]
    types = kv["tokenizer.ggml.token_type"][1]
    if kv["tokenizer.ggml.model"][1] != "llama" or len(tokens) != VOCAB:
        sys.exit(f"{args.vocab}: expected a llama SentencePiece vocabulary of {VOCAB} tokens")

    os.makedirs(args.out, exist_ok=True)
    tied = not args.untied
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": DIM,
        "intermediate_size": FFN, "num_hidden_layers": N_LAYER, "num_attention_heads": N_HEAD,
        "num_key_value_heads": N_HEAD, "vocab_size": VOCAB, "max_position_embeddings": CTX,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": tied,
        "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[args.dtype],
        "initializer_range": 0.02,
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2}, f, indent=2)
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
                   "unk_token": "<unk>", "pad_token": None, "model_max_length": CTX,
                   "tokenizer_class": "LlamaTokenizer", "clean_up_tokenization_spaces": False}, f, indent=2)
    with open(os.path.join(args.out, "tokenizer.model"), "wb") as f:
        f.write(sentencepiece_model(tokens, scores, types))
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(tokens, scores, types), f, ensure_ascii=False, indent=2)
    n = write_safetensors(os.path.join(args.out, "model.safetensors"), weight_shapes(tied), args.dtype, args.seed)
    print(f"{args.out}: llama, {n / 1e6:.1f}M parameters ({args.dtype}), vocab {VOCAB}")


if __name__ == "__main__":
    main()
