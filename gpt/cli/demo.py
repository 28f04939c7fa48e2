"""`python -m gpt demo`: one forward and backward pass of GPT-2 on two short sentences.

Tokenizes "Every effort moves you" and "Every day holds a", builds the model (GPT-2 124M by default,
random GPT-2 init), prints the token ids, the logits shape, the parameter table, the next-token loss
at init (about ln V: the model knows nothing yet), then runs backward and prints gradient norms.

--config FILE.json takes the model from a JSON object of GPTConfig fields, in our spelling or a
tutorial's (GPTConfig.from_dict), e.g. the "LLMs from scratch" GPT-2:
    {"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12, "n_layers": 12,
     "drop_rate": 0.1, "qkv_bias": false}
"""
from __future__ import annotations

import argparse
import math
import re
import time
from pathlib import Path
from typing import Callable

import numpy as np

TEXTS = ("Every effort moves you", "Every day holds a")


def register(subparsers) -> None:
    from . import integer
    from ..config import PRESETS  # light: no numpy model code
    p = subparsers.add_parser("demo", help="forward + backward of GPT-2 on two sentences, with parameter counts",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=list(PRESETS),
                   help="GPTConfig preset (default gpt2, the 124M model); presets with a vocabulary smaller "
                        "than GPT-2's use a character tokenizer instead")
    p.add_argument("--config", metavar="FILE.json",
                   help="the model as a JSON object of GPTConfig fields, ours or a tutorial's spelling "
                        "(context_length, emb_dim, n_heads, n_layers, drop_rate, qkv_bias; d_model, d_ff, max_len); "
                        "instead of --preset")
    p.add_argument("--seed", type=integer, default=0, help="seed of the weight init, an int >= 0 (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import GPTConfig
    from . import read_model_config
    from ..errors import UsageError
    from ..memory import backward_bytes, require
    if args.seed < 0:
        raise UsageError(f"--seed must be an int >= 0, got {args.seed}")
    if args.config is not None and args.preset is not None:
        raise UsageError("--config and --preset both describe the model: give one of them")
    if args.config is None:
        config, name, source = GPTConfig.from_preset(args.preset or "gpt2"), args.preset or "gpt2", "--preset"
    else:
        config, name, source = read_model_config(args.config)[0], Path(args.config).name, "--config"
    T = min(len(TEXTS[0]), config.block_size)  # at most a token per character
    try:
        require(backward_bytes(config, len(TEXTS), T, np.dtype(np.float32).itemsize), "its model",
                "give a smaller n_layer, n_embd or vocab_size")
        demo(config, seed=args.seed, name=name)
    except UsageError as e:
        raise UsageError(f"{source} {args.config or name}: {e}") from None
    return 0


def tokenize(vocab_size: int) -> tuple[np.ndarray, str]:
    """The two TEXTS as a (2, T) id batch: GPT-2 BPE if the vocabulary fits, else characters."""
    from ..tokenizer import get_tokenizer
    if vocab_size >= 50257:
        tok, kind = get_tokenizer("gpt2"), "GPT-2 BPE (tiktoken)"
    else:
        tok, kind = get_tokenizer("char", text="".join(TEXTS)), "characters"
        if tok.n_vocab > vocab_size:
            from ..errors import UsageError
            raise UsageError(f"vocab_size {vocab_size} is less than the {tok.n_vocab} characters of the demo's "
                             f"sentences {' / '.join(TEXTS)}: give a vocab_size of at least {tok.n_vocab}")
    ids = [tok.encode(t) for t in TEXTS]
    T = min(len(i) for i in ids)  # crop to a common length so they stack into one batch
    return np.array([i[:T] for i in ids], dtype=np.int64), kind


def parameter_table(model) -> list[tuple[str, str, int]]:
    """Rows (name, per-block count or "", total) grouping the blocks' modules by type."""
    per_type: dict[str, list[int]] = {}
    for path, n in model.parameter_breakdown():
        per_type.setdefault(re.sub(r"^transformer\.h\.\d+\.", "transformer.h.*.", path), []).append(n)
    L, c = model.config.n_layer, model.config
    rows = []
    for name, counts in per_type.items():
        if name == "transformer.h.*.attn.c_attn" and c.bias and not c.c_attn_bias:
            rows.append((name + " (no q/k/v bias)", f"{counts[0]:,}", sum(counts)))
        elif name.startswith("transformer.h.*."):
            rows.append((name, f"{counts[0]:,}", sum(counts)))
        elif name == "lm_head" and model.config.tie_weights:
            rows.append(("lm_head (tied to transformer.wte)", "", sum(counts)))
        else:
            rows.append((name, "", sum(counts)))
        if name == "transformer.h.*.mlp.c_proj":  # after the last module of a block: the block total
            block = sum(sum(c) for k, c in per_type.items() if k.startswith("transformer.h.*.")) // L
            rows.append((f"transformer.h.* ({L} blocks)", f"{block:,}", block * L))
    return rows


def _unusual(c) -> str:
    """What sets config `c` apart from GPT-2's layout besides its sizes, as ", ..." (or "")."""
    notes = [] if c.bias else ["no biases" if not c.c_attn_bias else "biases only on q/k/v"]
    if c.bias and not c.c_attn_bias:
        notes.append("no q/k/v bias")
    if c.n_inner is not None and c.n_inner != 4 * c.n_embd:
        notes.append(f"MLP width {c.n_inner}")
    if c.dropout:
        notes.append(f"dropout {c.dropout:g}")
    return "".join(", " + n for n in notes)


def grad_norm(params) -> float:
    """sqrt of the sum of squared gradient entries (in float64)."""
    return math.sqrt(sum(float(np.square(p.grad, dtype=np.float64).sum()) for p in params if p.grad is not None))


def demo(config, seed: int = 0, name: str = "", out: Callable[[str], None] = print) -> dict:
    """Run the demo for `config`; print with `out`; return the numbers (for tests and examples)."""
    import tinygrad_lite.functional as F
    from . import engine
    from ..config import count_parameters
    from ..model import GPT

    t_start = time.perf_counter()
    tokens, kind = tokenize(config.vocab_size)
    idx = tokens[:, :config.block_size]  # the model's context; the token after it is still a target
    out(f"Input ({kind}), batch of {idx.shape[0]}:")
    for text, row in zip(TEXTS, tokens):
        out(f"  {text!r:26} -> {row.tolist()}")
    if idx.shape[1] < tokens.shape[1]:
        out(f"(cut to the model's context, block_size {config.block_size}: the first {idx.shape[1]} of each)")
    out(f"idx: shape {idx.shape}, dtype {idx.dtype}")

    t0 = time.perf_counter()
    model = GPT(config, seed=seed)
    t_build = time.perf_counter() - t0
    c = config
    out(f"\nModel {name or 'GPT'}: {c.n_layer} layers, {c.n_head} heads, n_embd {c.n_embd}, vocab {c.vocab_size}, "
        f"block_size {c.block_size}, {'tied' if c.tie_weights else 'untied'} head{_unusual(c)} (built in "
        f"{t_build:.2f} s, seed {seed})")

    rows = parameter_table(model)
    width = max(len(r[0]) for r in rows) + 2
    out(f"\n{'parameters':{width}}{'per block':>12}{'total':>14}")
    for label, per_block, total in rows:
        out(f"{label:{width}}{per_block:>12}{total:>14,}")
    total, expected = model.num_parameters(), count_parameters(config)["total"]
    out(f"{'total':{width}}{'':>12}{total:>14,}")
    if total != expected:
        from ..errors import RunFailed
        raise RunFailed(f"model has {total:,} parameters but count_parameters(config) says {expected:,}")
    out(f"(agrees with gpt.config.count_parameters; without position embeddings: "
        f"{model.num_parameters(exclude_embeddings=True):,})")
    if c.c_attn_bias != c.bias:  # where this model differs from GPT-2's layout
        n = c.n_layer * 3 * c.n_embd
        out(f"(c_attn {'has no' if c.bias else 'alone has a'} q/k/v bias: {c.n_layer} x {3 * c.n_embd:,} = {n:,} "
            f"parameters {'fewer' if c.bias else 'more'} than with qkv_bias={c.bias})")

    t0 = time.perf_counter()
    logits = model(idx)
    t_fwd = time.perf_counter() - t0
    out(f"\nForward: logits shape {logits.shape}, dtype {logits.dtype} ({t_fwd:.2f} s, {engine.running()})")
    # next-token loss: position t predicts token t+1 (the last position has a target only when the input was cut)
    targets = tokens[:, 1:idx.shape[1] + 1]
    loss = F.cross_entropy(logits[:, :targets.shape[1]], targets)
    ln_v = math.log(config.vocab_size)
    out(f"Loss at init: {loss.item():.4f}   (ln {config.vocab_size} = {ln_v:.4f}, a uniform guess)")

    t0 = time.perf_counter()
    loss.backward()
    t_bwd = time.perf_counter() - t0
    out(f"\nBackward ({t_bwd:.2f} s). Gradient norms:")
    tr = model.transformer
    norms = {"transformer.wte" + (" (embedding + lm_head)" if c.tie_weights else ""): grad_norm([tr.wte.weight]),
             "transformer.wpe": grad_norm([tr.wpe.weight])}
    norms.update({f"transformer.h.{i}": grad_norm(block.parameters()) for i, block in enumerate(tr.h)})
    norms["transformer.ln_f"] = grad_norm(tr.ln_f.parameters())
    if not c.tie_weights:
        norms["lm_head"] = grad_norm([model.lm_head.weight])
    width = max(len(k) for k in norms) + 2
    for k, v in norms.items():
        out(f"  {k:{width}}{v:.4e}")
    t_total = time.perf_counter() - t_start
    out(f"\nWall time: build {t_build:.2f} s, forward {t_fwd:.2f} s, backward {t_bwd:.2f} s, total {t_total:.2f} s")
    return dict(idx=idx, logits_shape=logits.shape, loss=loss.item(), num_parameters=total,
                grad_norms=norms, times=dict(build=t_build, forward=t_fwd, backward=t_bwd, total=t_total))
