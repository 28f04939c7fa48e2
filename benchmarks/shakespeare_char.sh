#!/usr/bin/env bash
# nanoGPT's CPU reference run: character-level Tiny Shakespeare, 4 layers, 4 heads, n_embd 128,
# context 64, batch 12, 2000 iterations, lr 1e-3 -> 1e-4 (cosine, 100 warmup), AdamW betas
# (0.9, 0.99), weight decay 0.1, grad clip 1.0, dropout 0, seed 1337. nanoGPT (PyTorch, 2-core CPU)
# reports val loss 1.886 in 127 s (a 20-batch estimate); the target here is 1.90 +- 0.01, the final val
# loss over 200 batches, which nanoGPT's own loop scores 1.90-1.92 on.
# Measured on a 2-core machine: 1.9039 (seeds 1, 2: 1.9052, 1.8997); the PyTorch run of
# shakespeare_char_torch.py, from the same initial weights and batches, also gives 1.9039. nanoGPT's
# 1.886 is its estimate over 20 batches (--eval_iters=20): for our final model, 20-batch estimates
# scatter with a standard deviation of 0.013 (200-batch: 0.004), and 5 % of them are <= 1.886. An
# earlier session's re-run of nanoGPT's own loop reproduced 1.8857 at step 2000 over 20 batches and
# 1.898 over 200 (seeds 1, 2: 1.893, 1.909): the recipe lands near 1.90 on this metric.
#
#   bash benchmarks/shakespeare_char.sh            # PYTHON, DATA, OUT, SEED and WORKERS may be set in the environment
#
# WORKERS (default: one per core) splits each batch over that many worker processes (--workers), as
# PyTorch spreads each op over its threads; WORKERS=1 runs the plain one-process loop.
#
# Prints the final val loss and the wall time of the whole `python -m gpt train` command. When torch
# is installed (and TORCH_REFERENCE is not 0) it then runs shakespeare_char_torch.py, the same run in
# PyTorch from the same initial weights and batches, and prints its loss and time beside ours.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DATA=${DATA:-shakespeare}  # the text shipped in the package (gpt/assets)
OUT=${OUT:-$(mktemp -d)/shakespeare-char}
SEED=${SEED:-1337}
WORKERS=${WORKERS:-$("$PYTHON" -c "import os; print(os.cpu_count() or 1)")}

start=$(date +%s.%N)
"$PYTHON" -m gpt train --data "$DATA" --tokenizer char \
    --n-layer 4 --n-head 4 --n-embd 128 --block-size 64 --dropout 0.0 \
    --batch-size 12 --max-iters 2000 --lr 1e-3 --min-lr 1e-4 --warmup-iters 100 \
    --beta1 0.9 --beta2 0.99 --weight-decay 0.1 --grad-clip 1.0 \
    --eval-interval 250 --eval-iters 20 --final-eval-iters 200 --seed "$SEED" \
    --workers "$WORKERS" --out "$OUT" --no-progress
end=$(date +%s.%N)

torch_json=""
if [ "${TORCH_REFERENCE:-1}" != 0 ] && "$PYTHON" -c "import torch" 2>/dev/null; then
    t0=$(date +%s.%N)
    torch_json=$("$PYTHON" benchmarks/shakespeare_char_torch.py --data "$DATA" --seed "$SEED" 2>/dev/null)
    t1=$(date +%s.%N)
    torch_json="$torch_json $t0 $t1"
fi

"$PYTHON" - "$OUT/metrics.json" "$start" "$end" "$torch_json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"final val loss {m['val_loss']:.4f} (train {m['train_loss']:.4f}) over 200 batches after {m['iters']} iters")
print(f"wall time {wall:.1f} s (training loop {m['seconds']:.1f} s, {m['tokens_per_second']:,.0f} tokens/s)")
if sys.argv[4]:
    text, t0, t1 = sys.argv[4].rsplit(" ", 2)
    t, t_wall = json.loads(text), float(t1) - float(t0)
    print(f"PyTorch, same weights and batches: val loss {t['val_loss']:.4f} (train {t['train_loss']:.4f}), "
          f"wall time {t_wall:.1f} s; ours/torch wall time {wall / t_wall:.2f}x")
ok = abs(m["val_loss"] - 1.90) <= 0.01  # nanoGPT's recipe over 200 batches lands at 1.90 (its own loop: 1.90-1.92)
print(f"{'PASS' if ok else 'FAIL'}: val loss {m['val_loss']:.4f} {'within' if ok else 'outside'} 1.90 +- 0.01")
PY
