# A stand-in for the `safetensors` Python package (which Debian does not ship): just `safe_open`
# with keys / get_tensor / get_slice, enough for llama.cpp's convert_hf_to_gguf.py. Not the real
# package: read-only, framework "pt" only, little-endian hosts. Put this folder on PYTHONPATH.
"""safetensors layout: u64 little-endian N | N bytes of JSON header | data; header entries are
{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} relative to the end of the header."""

import json
import struct

import numpy as np
import torch

_NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.int16, "I64": np.int64,
       "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


class _Slice:
    def __init__(self, f, name):
        self._f, self._name = f, name

    def get_dtype(self):
        return self._f._header[self._name]["dtype"]

    def get_shape(self):
        return list(self._f._header[self._name]["shape"])

    def __getitem__(self, index):
        return self._f.get_tensor(self._name)[index]


class safe_open:  # noqa: N801 (the real package's name)
    def __init__(self, path, framework="pt", device="cpu"):
        if framework not in ("pt", "torch"):
            raise ValueError(f"safetensors shim: framework {framework!r} is not supported")
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            self._header = json.loads(f.read(n))
        self._meta = self._header.pop("__metadata__", None)
        self._map = np.memmap(path, dtype=np.uint8, mode="r")
        self._base = 8 + n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def metadata(self):
        return self._meta

    def keys(self):
        return list(self._header.keys())

    def get_tensor(self, name):
        e = self._header[name]
        b, end = e["data_offsets"]
        raw = self._map[self._base + b:self._base + end]
        a = np.frombuffer(raw, dtype=_NP[e["dtype"]]).reshape(e["shape"])
        t = torch.from_numpy(a.copy())
        return t.view(torch.bfloat16) if e["dtype"] == "BF16" else t

    def get_slice(self, name):
        return _Slice(self, name)
