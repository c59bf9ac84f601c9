# Loads a model folder written by `lmkit train` with the float64 reference decoder (ref_models.py)
# and prints its logits for some token ids as JSON. Not a converter: read-only, tiny models only.
"""Usage: /usr/bin/python3 check_checkpoint.py MODEL_DIR 1,2,3  ->  {"logits": [[...] per position]}"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_models as rm  # noqa: E402
from train_ref import read_state_dict, spec_from_config  # noqa: E402


def main():
    model_dir, ids = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
    c = json.load(open(os.path.join(model_dir, "config.json")))
    sd = {k: v.to(torch.float64) for k, v in read_state_dict(model_dir).items()}
    if c["model_type"] == "gpt2":
        W = rm.from_hf_gpt2(sd, c["n_layer"], c["n_embd"])
    else:
        W = rm.from_hf_llama(sd, c["num_hidden_layers"], c["tie_word_embeddings"])
    with torch.no_grad():
        logits = rm.forward(spec_from_config(c), W, ids)[0]
    json.dump({"logits": logits.tolist()}, sys.stdout)


if __name__ == "__main__":
    main()
