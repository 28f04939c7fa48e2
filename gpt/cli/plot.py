"""`python -m gpt plot`: draw a training run's curves from its run folder.

    python -m gpt plot --out out/shakespeare                   # writes out/shakespeare/curves.png
    python -m gpt plot --out out/shakespeare --file curves.svg

Reads the run's log (RUN/log.jsonl: a line per evaluation, written by `python -m gpt train` at each
checkpoint, so a run in progress can be drawn too) and, when the run has finished, the loss of every
step from RUN/metrics.json; draws the train and val loss, the learning rate, the gradient norm before
clipping, tokens/s and the gradient norm of each layer (gpt.plots.training_curves). Needs
matplotlib: pip install -e ".[plot]".
"""
from __future__ import annotations

import argparse

CURVES = "curves.png"


def register(subparsers) -> None:
    p = subparsers.add_parser("plot", help="draw a training run's loss, learning rate and gradient norms",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="RUN", help="the run folder (train's --out)")
    p.add_argument("--file", default=None, metavar="PATH",
                   help=f"the picture to write (.png, .svg or .pdf; default RUN/{CURVES})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..errors import UsageError
    from ..plots import check_path, save, training_curves
    from ..runlog import LOG_FILE, read_log
    from ..train import METRICS_FILE

    run_dir = Path(args.out)
    if not run_dir.is_dir():
        raise UsageError(f"--out {run_dir}: no such folder; expected a training run folder (train's --out)")
    if not (run_dir / LOG_FILE).is_file():
        raise UsageError(f"--out {run_dir} holds no {LOG_FILE}: a training run writes it at its first checkpoint "
                         f"(a run trained before the log existed has none)")
    path = check_path(args.file if args.file is not None else run_dir / CURVES, "--file", "python -m gpt plot")
    log = read_log(run_dir)
    losses = None
    if (run_dir / METRICS_FILE).is_file():  # a finished run: the loss of every step
        try:
            losses = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))["losses"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{run_dir / METRICS_FILE} is not a run's metrics (a JSON object with 'losses'): "
                             f"{type(e).__name__}: {e}") from None
    last = log[-1] if log else None
    title = f"{run_dir}: " + (f"iteration {last['iter']}, train loss {last['train_loss']:.4f}, val loss "
                              f"{last['val_loss']:.4f}" if last else "no evaluation yet")
    try:
        save(training_curves(log, losses, title=title), path)
    except OSError as e:
        raise UsageError(f"--file {path}: cannot write it: {e}") from None
    print(f"wrote {path}")
    return 0
