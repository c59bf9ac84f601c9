# Runs llama.cpp's convert_hf_to_gguf.py on Debian 12's python3-torch (1.13), which predates the
# float8 dtypes the converter names at import time. Not a converter: it patches and hands over.
# Usage: PYTHONPATH=bench/pyshim:LLAMA_SRC/gguf-py python3 convert_compat.py LLAMA_SRC/convert_hf_to_gguf.py ARGS...
import os
import runpy
import sys

import torch

for _name in ("float8_e4m3fn", "float8_e5m2"):
    if not hasattr(torch, _name):  # placeholder only: the models we convert hold no float8 tensors
        setattr(torch, _name, torch.uint8)

_script = os.path.abspath(sys.argv[1])
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(_script))
runpy.run_path(_script, run_name="__main__")
