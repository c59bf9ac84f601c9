# Byte-level BPE for the reference fixtures: GPT-2 byte alphabet, a tiny deterministic trainer, an encoder, and
# writers for HF tokenizer.json / tokenizer_config.json and GGUF vocab arrays. Not a general tokenizer: ASCII text only.
"""Byte-level BPE in plain Python, written from the GPT-2 / HF `tokenizers` conventions (not copied).

The pre-tokenizer is GPT-2's regex
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
Python's `re` has no \\p{..}; for ASCII input `[^\\W\\d_]` is exactly \\p{L} and `\\d` is \\p{N}, so the encoder
refuses non-ASCII text rather than silently diverge from HF on it.
"""

import json
import re
from collections import Counter

# GPT-2's printable-byte ordering: vocab ids 0..255 follow this list (id 0 is '!', byte 33), exactly as
# GPT-2's vocab.json and llama.cpp's ggml-vocab-gpt-2.gguf order them.
_PRINTABLE = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))


def byte_order_and_chars():
    """Returns (bytes in vocab-id order, the unicode char standing for each of those bytes)."""
    bs = list(_PRINTABLE)
    cs = list(_PRINTABLE)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)  # non-printable bytes shift up past U+00FF (byte 32 -> 'Ġ', byte 10 -> 'Ċ')
            n += 1
    return bs, [chr(c) for c in cs]


BYTE_ORDER, BYTE_CHARS = byte_order_and_chars()
B2U = dict(zip(BYTE_ORDER, BYTE_CHARS))
U2B = {c: b for b, c in B2U.items()}

# ASCII-exact transcription of GPT-2's pattern (see module docstring); `_` is neither \p{L} nor \p{N}.
PRETOKENIZE_RE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def pretokenize(text):
    if not text.isascii():
        raise ValueError("reference pre-tokenizer is exact for ASCII only")
    return PRETOKENIZE_RE.findall(text)


def to_symbols(piece):
    return tuple(B2U[b] for b in piece.encode("utf-8"))


def train_bpe(text, n_merges):
    """Greedy BPE: merge the most frequent adjacent pair, ties broken by the smaller (a, b) string pair.

    Pairs whose concatenation is already a token are skipped, so every merge adds exactly one vocab entry.
    Returns the merges as a list of (a, b) pairs in rank order.
    """
    words = Counter(to_symbols(p) for p in pretokenize(text))
    known = set(BYTE_CHARS)
    merges = []
    while len(merges) < n_merges:
        pairs = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        cands = [(-c, p) for p, c in pairs.items() if c >= 2 and p[0] + p[1] not in known]
        if not cands:
            raise ValueError(f"training text too small for {n_merges} merges (got {len(merges)})")
        _, best = min(cands)
        merges.append(best)
        known.add(best[0] + best[1])
        new_words = Counter()
        for w, c in words.items():
            new_words[_merge_word(w, best)] += c
        words = new_words
    return merges


def _merge_word(w, pair):
    out, i = [], 0
    while i < len(w):
        if i + 1 < len(w) and (w[i], w[i + 1]) == pair:
            out.append(w[i] + w[i + 1])
            i += 2
        else:
            out.append(w[i])
            i += 1
    return tuple(out)


class ByteBPE:
    """A trained byte-level BPE vocabulary plus special tokens appended after the merges.

    ids: 0..255 the byte symbols (GPT-2 order), 256..256+M-1 the merge results, then the specials.
    """

    def __init__(self, merges, specials):
        self.merges = list(merges)
        self.ranks = {p: i for i, p in enumerate(self.merges)}
        self.vocab = {c: i for i, c in enumerate(BYTE_CHARS)}
        for a, b in self.merges:
            self.vocab[a + b] = len(self.vocab)
        self.n_base = len(self.vocab)  # bytes + merges: the BPE model's own vocab
        self.specials = list(specials)
        self.special_ids = {s: self.n_base + i for i, s in enumerate(self.specials)}
        self.size = self.n_base + len(self.specials)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.id_to_token.update({i: s for s, i in self.special_ids.items()})

    def _bpe(self, symbols):
        w = list(symbols)
        while len(w) > 1:
            ranked = [(self.ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(w, w[1:]))]
            ranked = [(r, i) for r, i in ranked if r is not None]
            if not ranked:
                break
            best = self.merges[min(ranked)[0]]
            w = list(_merge_word(tuple(w), best))
        return w

    def encode(self, text):
        """HF semantics with add_special_tokens=False: specials are matched in the raw text first."""
        ids = []
        pattern = "|".join(re.escape(s) for s in sorted(self.specials, key=len, reverse=True))
        pieces = re.split(f"({pattern})", text) if pattern else [text]
        for piece in pieces:
            if piece in self.special_ids:
                ids.append(self.special_ids[piece])
                continue
            for pre in pretokenize(piece):
                ids.extend(self.vocab[s] for s in self._bpe(to_symbols(pre)))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            tok = self.id_to_token[i]
            if i in self.special_ids.values():
                out += tok.encode("utf-8")
            else:
                out += bytes(U2B[c] for c in tok)
        return out.decode("utf-8", errors="replace")

    # ---- HF files -----------------------------------------------------------------------------------------

    def added_token_entry(self, tok, normalized):
        return {"id": self.special_ids[tok], "content": tok, "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": normalized, "special": True}

    def tokenizer_json(self, style, bos=None):
        """HF tokenizer.json.

        style "gpt2":  the layout of GPT-2's own tokenizer.json on the Hub (older `tokenizers`): merges as
                       "a b" strings, specials also inside model.vocab, post_processor ByteLevel only.
        style "llama3": the layout of Llama-3's tokenizer.json (newer `tokenizers`): merges as [a, b] pairs,
                       specials only in added_tokens, BOS prepended by a TemplateProcessing post-processor.
        style "qwen2": newer layout like llama3 but no BOS (Qwen adds none).
        """
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        decoder = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
        post_bl = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
        vocab = dict(self.vocab)
        if style == "gpt2":
            added = [self.added_token_entry(s, True) for s in self.specials]
            vocab.update(self.special_ids)
            post = post_bl
            model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                     "vocab": vocab, "merges": [f"{a} {b}" for a, b in self.merges]}
        else:
            added = [self.added_token_entry(s, False) for s in self.specials]
            if style == "llama3":
                single = [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]
                pair = single + [{"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}]
                post = {"type": "Sequence", "processors": [post_bl, {
                    "type": "TemplateProcessing", "single": single, "pair": pair,
                    "special_tokens": {bos: {"id": bos, "ids": [self.special_ids[bos]], "tokens": [bos]}}}]}
            else:
                post = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
            model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": vocab, "merges": [[a, b] for a, b in self.merges]}
        return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
                "pre_tokenizer": byte_level, "post_processor": post, "decoder": decoder, "model": model}

    def added_tokens_decoder(self, normalized):
        return {str(self.special_ids[s]): {"content": s, "lstrip": False, "normalized": normalized, "rstrip": False,
                                           "single_word": False, "special": True} for s in self.specials}

    # ---- GGUF arrays (llama.cpp's converter conventions) ----------------------------------------------------

    def gguf_vocab(self, vocab_size):
        """tokens, token_type, merges as llama.cpp's converter writes them for a BPE ("gpt2") vocab.

        The token list is padded to the model's vocab_size with "[PAD{i}]" entries of type UNUSED (5);
        specials are CONTROL (3), everything else NORMAL (1).
        """
        tokens, types = [], []
        for i in range(vocab_size):
            if i < self.size:
                tokens.append(self.id_to_token[i])
                types.append(3 if i >= self.n_base else 1)
            else:
                tokens.append(f"[PAD{i}]")
                types.append(5)
        return tokens, types, [f"{a} {b}" for a, b in self.merges]


def dump_json(obj, path):
    """json the way HF's save_pretrained writes configs: indent 2, sorted keys, trailing newline."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
