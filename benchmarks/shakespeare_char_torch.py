"""The Shakespeare reference run in PyTorch, mirroring `python -m gpt train` step for step.

    python benchmarks/shakespeare_char_torch.py --data ../shared/data/tinyshakespeare.txt [--seed 1337]

Same initial weights (our GPT's init with the seed, copied into a PyTorch GPT-2 of the same shapes),
same batches (gpt.data with the same NumPy generator), same schedule (TrainConfig.lr_at), AdamW with
decay on the matrices only, betas (0.9, 0.99), gradient clipping at 1.0, and the same evaluation
batches. So the two runs differ only in the engine: their final losses should agree to float32 noise,
and the wall times compare the engines on a whole training run. `shakespeare_char.sh` runs both.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from bench_step import torch_model  # noqa: E402
from gpt.data import TextData  # noqa: E402
from gpt.model import GPT  # noqa: E402
from gpt.train import TrainConfig  # noqa: E402


def main() -> None:
    import torch
    import torch.nn.functional as TF

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="shakespeare", help="shakespeare (the shipped text, the default) or a path")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--max-iters", type=int, default=2000)
    ap.add_argument("--final-eval-iters", type=int, default=200)
    args = ap.parse_args()
    cfg = TrainConfig(data=args.data, seed=args.seed, max_iters=args.max_iters)  # the defaults are the reference run
    data = TextData.from_file(cfg.data, cfg.tokenizer or "char", cfg.val_fraction)
    mcfg = dataclasses.replace(cfg.model, vocab_size=data.vocab_size)  # the model gpt.train builds
    T = mcfg.block_size
    weights = {k: v.copy() for k, v in GPT(mcfg, seed=cfg.seed, dtype=np.float32).state_dict().items()
               if k != "lm_head.weight"}  # tied: the head is wte
    model = torch_model(weights, mcfg)
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))

    def loss_of(x, y):
        logits = model(torch.from_numpy(x))
        return TF.cross_entropy(logits.view(-1, logits.shape[-1]), torch.from_numpy(y).view(-1))

    @torch.no_grad()
    def evaluate(iters: int) -> dict[str, float]:
        rng = np.random.default_rng([cfg.seed, 2])  # gpt.train.evaluate's batches
        return {f"{split}_loss": float(np.mean([loss_of(*data.get_batch(split, cfg.batch_size, T, rng)).item()
                                                for _ in range(iters)])) for split in ("train", "val")}

    rng = np.random.default_rng(cfg.seed)  # gpt.train's batch generator
    t0 = time.perf_counter()
    print(f"iter 0: {evaluate(cfg.eval_iters)}", file=sys.stderr)  # gpt.train evaluates at initialisation too
    for it in range(cfg.max_iters):
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(it)
        loss = loss_of(*data.get_batch("train", cfg.batch_size, T, rng))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if (it + 1) % cfg.eval_interval == 0 and it + 1 < cfg.max_iters:
            print(f"iter {it + 1}: {evaluate(cfg.eval_iters)}", file=sys.stderr)
    train_seconds = time.perf_counter() - t0  # the steps and the evaluations between them
    final = evaluate(args.final_eval_iters)
    print(json.dumps({"iters": cfg.max_iters, **final, "seconds": time.perf_counter() - t0,
                      "train_seconds": train_seconds, "last_train_batch_loss": loss.item()}))


if __name__ == "__main__":
    main()
