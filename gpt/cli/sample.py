"""`python -m gpt sample`: generate text from a training run, a checkpoint, or GPT-2's weights.

    python -m gpt sample --ckpt out/shakespeare --prompt "ROMEO:" --max-new-tokens 300 \\
        --temperature 0.8 --top-k 200 --seed 1337
    python -m gpt sample --model gpt2 --prompt "The meaning of life is" --stop-at-eos

--ckpt takes a training run folder (train --out: its latest checkpoint), one checkpoint folder of a
run (RUN/ckpt-...), or a folder in the Hugging Face GPT-2 layout (config.json + model.safetensors).
--model takes a Hugging Face hub name (gpt2, gpt2-medium, gpt2-large, gpt2-xl; fetched once through
huggingface_hub: pip install -e ".[hub]") or such a local folder. The tokenizer is the one the run
was trained with; a Hugging Face model with GPT-2's 50257-token vocabulary uses GPT-2's.

The prompt is printed, then each token as it is made (stdout); only the model's context is held, so
any --max-new-tokens streams (1e20: until Ctrl-C). When stdout is not a terminal (say,
redirected to a file) but stderr is, a progress bar there shows how far sampling is (--no-progress:
none). A checkpoint whose weights are not finite (a diverged run) or whose files do not match their
recorded sha256 is refused; a damaged optimizer.safetensors, which sampling does not read, is a warning.
"""
from __future__ import annotations

import argparse
import codecs
import os
import sys
from pathlib import Path

PROGRESS_DELAY = 1.0  # seconds before the progress bar appears: short samples get none


def register(subparsers) -> None:
    from . import integer
    p = subparsers.add_parser("sample", help="generate text from a trained checkpoint or GPT-2's weights",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", metavar="DIR",
                     help="training run folder (its latest checkpoint), checkpoint folder, or Hugging Face folder")
    src.add_argument("--model", metavar="NAME_OR_DIR",
                     help="Hugging Face GPT-2: a hub name (gpt2, gpt2-medium, gpt2-large, gpt2-xl) or a local folder")
    p.add_argument("--best", dest="which", action="store_const", const="best", default="latest",
                   help="with a run folder: its best checkpoint (train --save-best) instead of its latest")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=integer, default=200, metavar="N", help="tokens to generate (default: 200)")
    p.add_argument("--temperature", type=float, default=0.8, metavar="T",
                   help="softmax temperature; 0 = greedy (default: 0.8)")
    p.add_argument("--top-k", type=integer, default=None, metavar="K",
                   help="sample only from the K most likely tokens (0 or omitted: no top-k filtering)")
    p.add_argument("--top-p", type=float, default=None, metavar="P",
                   help="sample only from the smallest set of tokens whose probability reaches P (nucleus)")
    p.add_argument("--seed", type=integer, default=None, metavar="S",
                   help="random seed, an int >= 0 (default: fresh randomness)")
    p.add_argument("--num-samples", type=integer, default=1, metavar="N",
                   help="independent samples, printed one after another (default: 1)")
    p.add_argument("--stop-at-eos", action="store_true",
                   help="end a sample at the end-of-text token (GPT-2's <|endoftext|>, id 50256)")
    p.add_argument("--no-cache", dest="use_cache", action="store_false",
                   help="recompute the whole context at every step instead of using the KV cache")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar on stderr")
    p.set_defaults(func=run)


# ------------------------------------------------------------------ loading a model and its tokenizer
def _is_hf_folder(path: Path) -> bool:
    """A Hugging Face GPT-2 folder (config.json), not one of our training runs or checkpoints."""
    from ..checkpoint import is_run
    return (path / "config.json").is_file() and not is_run(path) and not (path / "manifest.json").exists()


def _from_pretrained(name: str, flag: str):
    """GPT.from_pretrained(name), its errors as one UsageError naming the flag."""
    from safetensors import SafetensorError

    from ..errors import UsageError
    from ..model import GPT
    try:
        return GPT.from_pretrained(name)
    except (OSError, ValueError, KeyError, TypeError) as e:  # UsageError; a missing file, bad JSON, bad keys
        raise UsageError(f"{flag} {name}: {e}") from None
    except SafetensorError as e:  # a truncated or damaged model.safetensors
        raise UsageError(f"{flag} {name}: {Path(name) / 'model.safetensors'} is damaged: {e}") from None


def _tokenizer_of(state: dict, vocab_size: int, where: str):
    """The tokenizer a training state records (its spec), else GPT-2's for a 50257-token vocabulary."""
    from ..errors import UsageError
    from ..tokenizer import get_tokenizer, tokenizer_from_spec
    spec = state.get("tokenizer_spec", state.get("tokenizer"))
    if isinstance(spec, str):
        spec = {"kind": spec} if spec == "gpt2" else None
    if isinstance(spec, dict):
        try:
            tok = tokenizer_from_spec(spec)
        except (ValueError, TypeError) as e:
            raise UsageError(f"{where}: the recorded tokenizer cannot be rebuilt: {e}") from None
    elif vocab_size == 50257:
        tok = get_tokenizer("gpt2")
    else:
        raise UsageError(f"{where} records no tokenizer, and a vocabulary of {vocab_size} tokens is not GPT-2's: "
                         "cannot tell which tokenizer the model was trained with")
    if tok.n_vocab != vocab_size:
        raise UsageError(f"{where}: the tokenizer has {tok.n_vocab} tokens but the model's vocabulary has {vocab_size}")
    return tok


def load_model(ckpt: str | None = None, model: str | None = None, need_tokenizer: bool = True,
               which: str = "latest"):
    """(model, tokenizer or None, description, weights file, training state or {}) for --ckpt DIR or --model
    NAME_OR_DIR (the state of a training checkpoint: its config, data and tokenizer; {} for Hugging Face's).

    Raises UsageError (gpt.checkpoint.CheckpointError for a missing or damaged training checkpoint)
    naming the flag and the file.
    """
    import json

    from ..checkpoint import load
    from ..errors import UsageError

    if which != "latest" and (model is not None or _is_hf_folder(Path(ckpt))):
        raise UsageError(f"--{which} picks a checkpoint of a training run; {model or ckpt} is a Hugging Face model")
    if model is not None:
        m = _from_pretrained(model, "--model")
        where = Path(model) / "model.safetensors" if os.path.isdir(model) else model
        spec_file = Path(model) / "tokenizer_spec.json"
        what = f"--model {model}"
    else:
        path = Path(ckpt)
        if not path.exists():
            raise UsageError(f"--ckpt {ckpt}: no such folder (expected a training run folder, a checkpoint folder "
                             "or a Hugging Face GPT-2 folder)")
        if not path.is_dir():
            raise UsageError(f"--ckpt {ckpt}: not a folder (expected a training run folder, a checkpoint folder "
                             "or a Hugging Face GPT-2 folder)")
        what = f"--ckpt {ckpt}"
        if _is_hf_folder(path):
            m, where, spec_file = _from_pretrained(ckpt, "--ckpt"), path / "model.safetensors", path / "tokenizer_spec.json"
        else:
            c = load(path, which, optimizer=False)  # CheckpointError names the missing or damaged file
            for warning in c.warnings:  # a damaged optimizer.safetensors: sampling does not need it
                print(f"warning: {warning}", file=sys.stderr)
            if c.note:  # latest.json lost: the newest complete checkpoint
                print(f"note: {c.note}", file=sys.stderr)
            m = c.model()
            where = Path(c.path) / "model.safetensors"
            tok = _tokenizer_of(c.state, m.config.vocab_size, f"--ckpt {c.path}") if need_tokenizer else None
            return m, tok, f"checkpoint {c.path}", where, c.state
    tok = None
    if need_tokenizer:
        state = {}
        if spec_file.is_file():  # a folder written by an older `train` (tokenizer_spec.json beside the model)
            try:
                state = {"tokenizer_spec": json.loads(spec_file.read_text(encoding="utf-8"))}
            except (OSError, ValueError) as e:
                raise UsageError(f"{spec_file}: not a readable tokenizer spec: {e}") from None
        tok = _tokenizer_of(state, m.config.vocab_size, what)
    name = model if model is not None else ckpt
    return m, tok, f"Hugging Face {'folder' if os.path.isdir(name) else 'model'} {name}", where, {}


def non_finite_parameters(model) -> list[str]:
    """Names of the parameters holding a NaN or an infinity."""
    import numpy as np
    return [name for name, p in model.named_parameters() if not np.isfinite(p.data).all()]


# ------------------------------------------------------------------ streaming text
class TextStream:
    """Decode token ids one at a time into text, holding back a split UTF-8 character (GPT-2's byte BPE)."""

    def __init__(self, tok):
        self.tok = tok
        self.bytes = getattr(tok, "decode_single_token_bytes", None)  # tiktoken: bytes per token
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, token: int) -> str:
        if self.bytes is None:
            return self.tok.decode([token])
        return self.utf8.decode(self.bytes(token))

    def flush(self) -> str:
        return self.utf8.decode(b"", final=True)


def _encode(tok, text: str) -> list[int]:
    if hasattr(tok, "decode_single_token_bytes"):  # tiktoken: "<|endoftext|>" in a prompt is the token itself
        return tok.encode(text, allowed_special="all")
    return tok.encode(text)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm
    # on a terminal the streamed text is the progress; the bar is for stdout sent elsewhere, stderr still
    # on a terminal (disable=None: no bar when stderr is not a terminal either)
    show = enabled and not sys.stdout.isatty()
    return tqdm(total=total, unit="tok", file=sys.stderr, disable=None if show else True, delay=PROGRESS_DELAY,
                leave=False)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import UsageError, flag
    from ..generate import BadArgument, check_options, stream

    if args.num_samples < 1:
        raise UsageError(f"--num-samples must be an int >= 1, got {args.num_samples}")
    if not args.prompt:
        raise UsageError("--prompt is empty; give at least one character to continue")
    try:  # the sampling options, checked by generate's own rules before any model is loaded
        check_options(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    except BadArgument as e:
        expected = {"seed": "an int >= 0 (omit --seed for fresh randomness)", "top_p": "a number in (0, 1]",
                    "top_k": "an int >= 0 (0: no top-k filtering)"}.get(e.name, e.expected)
        raise UsageError(f"{flag(e.name)} must be {expected}, got {e.value!r}") from None

    model, tok, what, weights, _ = load_model(args.ckpt, args.model, which=args.which)
    bad = non_finite_parameters(model)
    if bad:
        shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        raise UsageError(f"{weights}: the weights are not finite (NaN or infinity in {shown}): the run that saved "
                         "them diverged; sample from an earlier checkpoint or train again with a lower --lr")
    eos = None
    if args.stop_at_eos:
        eos = getattr(tok, "eot_token", None)
        if eos is None or not 0 <= eos < model.config.vocab_size:
            raise UsageError(f"--stop-at-eos: the tokenizer of {what} ({type(tok).__name__}, "
                             f"{tok.n_vocab} tokens) has no end-of-text token; leave --stop-at-eos out")
    try:
        ids = _encode(tok, args.prompt)
    except ValueError as e:
        raise UsageError(f"--prompt: {e}") from None

    rng = np.random.default_rng(args.seed)  # one stream for all the samples
    with _progress(args.max_new_tokens * args.num_samples, args.progress) as bar:
        for i in range(args.num_samples):
            if i:
                print("-" * 40)
            text = TextStream(tok)
            print(args.prompt, end="", flush=True)
            try:
                for _, col in stream(model, np.array([ids], dtype=np.int64), args.max_new_tokens, args.temperature,
                                     args.top_k, args.top_p, rng, args.use_cache, eos):
                    piece = text(int(col[0]))
                    if piece:
                        print(piece, end="", flush=True)
                    bar.update(1)
            finally:  # Ctrl-C too: end the line, so that "interrupted" starts on its own
                print(text.flush(), flush=True)
    return 0
