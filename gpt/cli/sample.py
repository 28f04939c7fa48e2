"""`python -m gpt sample`: generate text from a checkpoint folder (ours, or a Hugging Face GPT-2 one).

    python -m gpt sample --ckpt out-shakespeare --prompt "ROMEO:" --max-new-tokens 300 \\
        --temperature 0.8 --top-k 200 --seed 1337

The tokenizer is the one the run was trained with (tokenizer_spec.json in the folder); a folder
without it (e.g. downloaded GPT-2 weights) uses the GPT-2 tokenizer when the vocabulary has GPT-2's
50257 tokens. The prompt and its continuation are printed to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="generate text from a trained checkpoint", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, metavar="DIR", help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=200, metavar="N", help="tokens to generate (default: 200)")
    p.add_argument("--temperature", type=float, default=0.8, metavar="T",
                   help="softmax temperature; 0 = greedy (default: 0.8)")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="sample only from the K most likely tokens")
    p.add_argument("--top-p", type=float, default=None, metavar="P",
                   help="sample only from the smallest set of tokens whose probability reaches P (nucleus)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed (default: fresh randomness)")
    p.add_argument("--num-samples", type=int, default=1, metavar="N", help="independent samples (default: 1)")
    p.add_argument("--no-cache", dest="use_cache", action="store_false",
                   help="recompute the whole context at every step instead of using the KV cache")
    p.set_defaults(func=run)


def load_tokenizer(ckpt: str, vocab_size: int):
    """The checkpoint's tokenizer: its tokenizer_spec.json, else GPT-2's for a 50257-token vocabulary."""
    from ..tokenizer import get_tokenizer, tokenizer_from_spec
    from ..train import TOKENIZER_FILE

    path = os.path.join(ckpt, TOKENIZER_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            tok = tokenizer_from_spec(json.load(f))
    elif vocab_size == 50257:
        tok = get_tokenizer("gpt2")
    else:
        raise FileNotFoundError(f"{path} not found, and a vocabulary of {vocab_size} tokens is not GPT-2's: "
                                "cannot tell which tokenizer the model was trained with")
    if tok.n_vocab != vocab_size:
        raise ValueError(f"tokenizer has {tok.n_vocab} tokens but the model's vocabulary has {vocab_size}")
    return tok


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..model import GPT

    try:
        if not os.path.isdir(args.ckpt):
            raise FileNotFoundError(f"checkpoint folder {args.ckpt!r} does not exist")
        if args.num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
        model = GPT.from_pretrained(args.ckpt)
        tok = load_tokenizer(args.ckpt, model.config.vocab_size)
        if not args.prompt:
            raise ValueError("--prompt is empty; give at least one character to continue")
        ids = tok.encode(args.prompt)
        prompt = np.tile(np.array(ids, dtype=np.int64), (args.num_samples, 1))  # (N, T)
        out = model.generate(prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                             top_p=args.top_p, seed=args.seed, use_cache=args.use_cache)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for i, row in enumerate(out):
        if i:
            print("-" * 40)
        print(tok.decode(row.tolist()))
    return 0
