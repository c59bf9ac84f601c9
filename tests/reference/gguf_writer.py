# GGUF v3 writer and reader in plain Python, written from ggml's docs/gguf.md (not from gguf-py).
# Not a general library: F32/F16/BF16 tensors only, no quantized types, little-endian files only.
"""GGUF v3 layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):

    "GGUF" | u32 version=3 | u64 tensor_count | u64 kv_count
    kv:     string key | u32 value_type | value      (string = u64 length + bytes, no NUL)
            array value = u32 elem_type | u64 count | elems
    tensor: string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset (relative to data start)
    zero padding to ALIGNMENT | tensor data, each tensor at a multiple of ALIGNMENT

ne[0] is the innermost (fastest-varying) dimension, so a PyTorch (out, in) matrix is written ne = [in, out].
ALIGNMENT is general.alignment (u32) if present, else 32.
"""

import struct

import numpy as np
import torch

from st_writer import tensor_bytes

# metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR_FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?", U64: "Q", I64: "q",
               F64: "d"}

# ggml tensor types used here
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
_GGML_TORCH = {GGML_F32: torch.float32, GGML_F16: torch.float16, GGML_BF16: torch.bfloat16}
_GGML_SIZE = {GGML_F32: 4, GGML_F16: 2, GGML_BF16: 2}


def pack_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def pack_value(vtype, value):
    if vtype == STRING:
        return pack_string(value)
    if vtype == ARRAY:
        elem_type, items = value
        out = struct.pack("<IQ", elem_type, len(items))
        return out + b"".join(pack_value(elem_type, v) for v in items)
    return struct.pack("<" + _SCALAR_FMT[vtype], value)


def pack_tensor_info(name, ne, ggml_type, offset):
    return pack_string(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne) + \
        struct.pack("<IQ", ggml_type, offset)


def align(n, a):
    return n + (-n) % a


class GGUFWriter:
    """Collects metadata and tensors in insertion order; to_bytes() lays the file out."""

    def __init__(self, alignment=32, write_alignment_key=False):
        self.alignment = alignment
        self.kv = []
        self.tensors = []  # (name, torch tensor already in the stored dtype, ggml type)
        if write_alignment_key:
            self.add("general.alignment", U32, alignment)

    def add(self, key, vtype, value):
        self.kv.append((key, vtype, value))

    def add_array(self, key, elem_type, items):
        self.add(key, ARRAY, (elem_type, list(items)))

    def add_tensor(self, name, t, ggml_type):
        """t in PyTorch order (out, in); stored in the dtype ggml_type names."""
        self.tensors.append((name, t.detach().to(_GGML_TORCH[ggml_type]).contiguous(), ggml_type))

    def to_bytes(self):
        head = b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv))
        head += b"".join(pack_string(k) + struct.pack("<I", vt) + pack_value(vt, v) for k, vt, v in self.kv)
        infos, blobs, offset = [], [], 0
        for name, t, ty in self.tensors:
            ne = list(reversed(t.shape))  # GGUF order: innermost first
            infos.append(pack_tensor_info(name, ne, ty, offset))
            b = tensor_bytes(t)
            pad = (-len(b)) % self.alignment
            blobs.append(b + b"\0" * pad)
            offset += len(b) + pad
        head += b"".join(infos)
        head += b"\0" * ((-len(head)) % self.alignment)
        return head + b"".join(blobs)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())


class _Cursor:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take("Q")
        s = self.buf[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, vtype):
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            et, n = self.take("I"), self.take("Q")
            return [self.value(et) for _ in range(n)]
        return self.take(_SCALAR_FMT[vtype])


def read_gguf(buf):
    """(version, {key: (vtype, value)}, {name: torch tensor in PyTorch order}) for self-checks."""
    c = _Cursor(buf)
    if buf[:4] != b"GGUF":
        raise ValueError("bad magic")
    c.pos = 4
    version, n_tensors, n_kv = c.take("I"), c.take("Q"), c.take("Q")
    kv = {}
    for _ in range(n_kv):
        key = c.string()
        vt = c.take("I")
        kv[key] = (vt, c.value(vt))
    alignment = kv.get("general.alignment", (U32, 32))[1]
    infos = []
    for _ in range(n_tensors):
        name = c.string()
        nd = c.take("I")
        ne = [c.take("Q") for _ in range(nd)]
        ty, off = c.take("I"), c.take("Q")
        infos.append((name, ne, ty, off))
    data_start = align(c.pos, alignment)
    tensors = {}
    for name, ne, ty, off in infos:
        assert off % alignment == 0, f"{name}: misaligned offset {off}"
        shape = list(reversed(ne))
        n = int(np.prod(shape, dtype=np.int64)) * _GGML_SIZE[ty]
        raw = buf[data_start + off:data_start + off + n]
        if ty == GGML_BF16:
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype={GGML_F32: np.float32, GGML_F16: np.float16}[ty]).copy())
        tensors[name] = t.reshape(shape)
    return version, kv, tensors
