# safetensors writer and reader in plain Python (struct + json + numpy), written from the format description.
# Not a general library: no mmap or lazy loading; dtypes F32, F16, BF16 only; little-endian hosts only.
"""safetensors layout (https://github.com/huggingface/safetensors, README "Format"):

    u64 little-endian N | N bytes of UTF-8 JSON header | tensor data
    header = {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}

offsets are relative to the first byte after the header; HF's writer pads the header with spaces (0x20) so
the data starts at a multiple of 8, and lays tensors out contiguously. We sort tensors by name (one dtype
per file here, so this equals HF's dtype-then-name order).
"""

import json
import struct
import sys

import numpy as np
import torch

assert sys.byteorder == "little", "fixtures are written for little-endian hosts"

DTYPE_NAME = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
NAME_DTYPE = {v: k for k, v in DTYPE_NAME.items()}
ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2}


def tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the 16-bit patterns
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def tensor_from_bytes(buf, dtype_name, shape):
    if dtype_name == "BF16":
        a = np.frombuffer(buf, dtype=np.int16).copy()
        return torch.from_numpy(a).view(torch.bfloat16).reshape(shape)
    np_dtype = {"F32": np.float32, "F16": np.float16}[dtype_name]
    return torch.from_numpy(np.frombuffer(buf, dtype=np_dtype).copy()).reshape(shape)


def serialize(tensors, metadata=None):
    """bytes of a safetensors file holding `tensors` ({name: torch tensor})."""
    header = {"__metadata__": dict(metadata if metadata is not None else {"format": "pt"})}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPE_NAME[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    return pack(header, b"".join(blobs))


def pack(header, data):
    """header dict + raw data -> file bytes, padding the JSON with spaces to a multiple of 8."""
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def save_file(tensors, path, metadata=None):
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata))


def load_bytes(buf):
    """(metadata, {name: tensor}) from file bytes, validating every field a loader must validate."""
    if len(buf) < 8:
        raise ValueError("file shorter than the 8-byte header length")
    (n,) = struct.unpack_from("<Q", buf, 0)
    if n > len(buf) - 8:
        raise ValueError(f"header length {n} exceeds file size {len(buf)}")
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = buf[8 + n:]
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        nbytes = ITEMSIZE[e["dtype"]] * int(np.prod(e["shape"], dtype=np.int64))
        if not (0 <= begin <= end <= len(data)) or end - begin != nbytes:
            raise ValueError(f"{name}: bad data_offsets {e['data_offsets']}")
        out[name] = tensor_from_bytes(data[begin:end], e["dtype"], e["shape"])
    return meta, out


def load_file(path):
    with open(path, "rb") as f:
        return load_bytes(f.read())
