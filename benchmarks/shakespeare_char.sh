#!/usr/bin/env bash
# nanoGPT's CPU reference run: character-level Tiny Shakespeare, 4 layers, 4 heads, n_embd 128,
# context 64, batch 12, 2000 iterations, lr 1e-3 -> 1e-4 (cosine, 100 warmup), AdamW betas
# (0.9, 0.99), weight decay 0.1, grad clip 1.0, dropout 0, seed 1337. nanoGPT (PyTorch, 2-core CPU)
# reports val loss 1.886 in 127 s; the target here is <= 1.89, the final val loss over 200 batches.
# Note: nanoGPT's 1.886 is its estimate over 20 batches (--eval_iters=20). A PyTorch re-run of
# nanoGPT's loop with its RNG order reproduces 1.8857 at step 2000, and the same model measured over
# 200 batches gives 1.898 (seeds 1, 2: 1.893, 1.909). This script gives 1.904 (seeds 1, 2: 1.905, 1.900).
#
#   bash benchmarks/shakespeare_char.sh            # PYTHON, DATA and OUT may be set in the environment
#
# Prints the final val loss and the wall time of the whole `python -m gpt train` command.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DATA=${DATA:-../shared/data/tinyshakespeare.txt}
OUT=${OUT:-$(mktemp -d)/shakespeare-char}

start=$(date +%s.%N)
"$PYTHON" -m gpt train --data "$DATA" --tokenizer char \
    --n-layer 4 --n-head 4 --n-embd 128 --block-size 64 --dropout 0.0 \
    --batch-size 12 --max-iters 2000 --lr 1e-3 --min-lr 1e-4 --warmup-iters 100 \
    --beta1 0.9 --beta2 0.99 --weight-decay 0.1 --grad-clip 1.0 \
    --eval-interval 250 --eval-iters 20 --final-eval-iters 200 --seed 1337 \
    --out "$OUT" --no-progress
end=$(date +%s.%N)

"$PYTHON" - "$OUT/metrics.json" "$start" "$end" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"final val loss {m['val_loss']:.4f} (train {m['train_loss']:.4f}) over 200 batches after {m['iters']} iters")
print(f"wall time {wall:.1f} s (training loop {m['seconds']:.1f} s, {m['tokens_per_second']:,.0f} tokens/s)")
print("PASS: val loss <= 1.89" if m["val_loss"] <= 1.89 else "FAIL: val loss > 1.89")
PY
