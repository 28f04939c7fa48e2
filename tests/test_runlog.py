"""gpt.runlog: the run's evaluation log, written before its checkpoint, cut back on resume, read by the plots."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from gpt import GPT, GPTConfig
from gpt.errors import UsageError
from gpt.runlog import LOG_FILE, RunLog, layer_grad_norms, layer_of, read_log
from tinygrad_lite.optim import clip_grad_norm_


def small_model_with_grads(seed=0):
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=8), seed=0)
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    return model


def result(it, train=2.0, val=2.5):
    return {"iter": it, "train_loss": train, "val_loss": val}


def test_layer_of_names_the_embeddings_each_block_and_ln_f():
    assert layer_of("transformer.h.3.attn.c_attn.weight") == "h.3"
    assert layer_of("transformer.h.11.ln_1.bias") == "h.11"
    assert layer_of("transformer.wte.weight") == "wte" and layer_of("transformer.wpe.weight") == "wpe"
    assert layer_of("transformer.ln_f.weight") == "ln_f" and layer_of("lm_head.weight") == "lm_head"


def test_layer_grad_norms_split_the_whole_gradient_norm():
    model = small_model_with_grads()
    norms = layer_grad_norms(model)
    assert list(norms) == ["wte", "wpe", "h.0", "h.1", "ln_f"]  # the tied head counted once, with wte
    whole = math.sqrt(sum(float(np.square(p.grad, dtype=np.float64).sum()) for p in model.parameters()))
    assert math.isclose(math.sqrt(sum(v * v for v in norms.values())), whole, rel_tol=1e-12)
    h0 = [p.grad for name, p in model.named_parameters() if name.startswith("transformer.h.0.")]
    assert math.isclose(norms["h.0"], math.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for g in h0)),
                        rel_tol=1e-12)


def test_lines_wait_for_flush_and_hold_the_last_steps_numbers(tmp_path):
    model = small_model_with_grads()
    log = RunLog(tmp_path, resume_iter=None)
    first = log.evaluation(result(0, 4.2, 4.3), model)  # before any step: nothing to say about steps
    assert first == {"iter": 0, "train_loss": 4.2, "val_loss": 4.3, "lr": None, "grad_norm": None,
                     "tokens_per_second": None, "layer_grad_norms": None}
    before = layer_grad_norms(model)
    norm = clip_grad_norm_(model.parameters(), 0.5)  # as the loop does: the grads are now clipped in place
    assert norm > 5.0
    log.step(1e-3, 7.0, 0.5, 100)
    log.step(2e-3, norm, 1.5, 100)  # the last step before the evaluation is the one that counts
    line = log.evaluation(result(2), model)
    assert line["lr"] == 2e-3 and line["grad_norm"] == norm and line["tokens_per_second"] == 200 / 2.0
    for layer, value in before.items():  # scaled back to before clipping
        assert math.isclose(line["layer_grad_norms"][layer], value, rel_tol=1e-5), layer
    assert not (tmp_path / LOG_FILE).exists()  # not written before its checkpoint is about to be
    log.flush()
    assert read_log(tmp_path) == [first, json.loads(json.dumps(line))]
    log.evaluation(result(4), model)  # no step since: the step numbers do not carry over
    log.flush()
    assert read_log(tmp_path)[-1]["grad_norm"] is None and len(read_log(tmp_path)) == 3


def test_a_new_run_starts_a_new_log_and_a_resumed_one_keeps_lines_up_to_its_checkpoint(tmp_path):
    model = small_model_with_grads()
    log = RunLog(tmp_path, resume_iter=None)
    for it in (0, 5, 10, 15):
        log.evaluation(result(it), model)
    log.flush()
    with open(tmp_path / LOG_FILE, "a") as f:
        f.write('{"iter": 20, "train_lo')  # a crash inside a write
    RunLog(tmp_path, resume_iter=10)  # the checkpoint is at 10: the lines of 15 (and the torn one) go
    assert [line["iter"] for line in read_log(tmp_path)] == [0, 5, 10]
    assert (tmp_path / LOG_FILE).read_text().endswith("}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOG_FILE]  # rewritten in place, no temp file left
    RunLog(tmp_path, resume_iter=None)  # --overwrite: a new run, no lines of the old one
    assert not (tmp_path / LOG_FILE).exists()
    RunLog(tmp_path / "nothing", resume_iter=3)  # a run from before the log: nothing to cut


def test_a_log_for_no_folder_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = RunLog(None, resume_iter=None)  # the other ranks of an MPI run
    log.step(1e-3, 1.0, 0.1, 10)
    log.evaluation(result(1), small_model_with_grads())
    log.flush()
    assert list(tmp_path.iterdir()) == []


def test_read_log_skips_a_torn_last_line_and_names_a_bad_one(tmp_path):
    good = json.dumps({"iter": 0, "train_loss": 4.0, "val_loss": 4.1, "lr": None, "grad_norm": None,
                       "tokens_per_second": None, "layer_grad_norms": None})
    path = tmp_path / LOG_FILE
    path.write_text(good + "\n" + good.replace('"iter": 0', '"iter": 5')[:30])
    assert read_log(tmp_path) == [json.loads(good)]
    assert read_log(path) == [json.loads(good)]  # the file itself works too
    path.write_text(good + "\nnot json\n" + good + "\n")
    with pytest.raises(UsageError, match=rf"{LOG_FILE}, line 2: expected a JSON object with the keys iter, "):
        read_log(tmp_path)
    path.write_text('{"iter": 0}\n')
    with pytest.raises(UsageError, match="line 1"):
        read_log(tmp_path)
    with pytest.raises(UsageError, match=r"nowhere does not exist; expected a training run folder holding log.jsonl"):
        read_log(tmp_path / "nowhere")
    (tmp_path / "run").mkdir()
    with pytest.raises(UsageError, match=r"run/log.jsonl does not exist"):
        read_log(tmp_path / "run")


# ------------------------------------------------------------------ the training loop writes it


TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 8


def train_cfg(tmp_path, out, **kw):
    from gpt.train import TrainConfig
    data = tmp_path / "input.txt"
    data.write_text(TEXT, encoding="utf-8")
    base = dict(data=str(data), out=str(out), batch_size=4, workers=1, max_iters=20, lr=3e-3, min_lr=3e-4,
                warmup_iters=3, eval_interval=5, eval_iters=2, seed=7, progress=False, grad_clip=0.5,
                model=GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16))
    return TrainConfig(**{**base, **kw})


def without_speed(log):
    return [{k: v for k, v in line.items() if k != "tokens_per_second"} for line in log]


def test_a_training_run_logs_each_evaluation_with_its_last_steps_numbers(tmp_path):
    from gpt.train import train
    cfg = train_cfg(tmp_path, tmp_path / "run")
    metrics = train(cfg)
    log = read_log(cfg.out)
    assert [line["iter"] for line in log] == [e["iter"] for e in metrics["evals"]] == [0, 5, 10, 15, 20]
    assert [(line["train_loss"], line["val_loss"]) for line in log] == [(e["train_loss"], e["val_loss"])
                                                                          for e in metrics["evals"]]
    assert log[0]["lr"] is None and log[0]["grad_norm"] is None and log[0]["layer_grad_norms"] is None
    for line in log[1:]:
        assert line["lr"] == cfg.lr_at(line["iter"] - 1)  # the step that led to this iteration
        assert line["tokens_per_second"] > 0
        assert line["grad_norm"] > cfg.grad_clip  # clipped, and the layer norms are from before clipping:
        assert math.isclose(math.hypot(*line["layer_grad_norms"].values()), line["grad_norm"], rel_tol=1e-5)
        assert list(line["layer_grad_norms"]) == ["wte", "wpe", "h.0", "h.1", "ln_f"]


def test_each_line_is_on_disk_before_the_checkpoint_of_its_iteration(tmp_path, monkeypatch):
    import gpt.checkpoint as ck
    from gpt.train import train
    save, seen = ck.save, []

    def spy(run, model, optimizer, state, best=False):
        seen.append((state["iter"], [line["iter"] for line in read_log(run)]))
        return save(run, model, optimizer, state, best)

    monkeypatch.setattr(ck, "save", spy)
    train(train_cfg(tmp_path, tmp_path / "run", max_iters=10))
    assert seen == [(5, [0, 5]), (10, [0, 5, 10])]


def test_a_run_resumed_after_a_crash_between_log_and_checkpoint_logs_what_a_straight_run_does(tmp_path, monkeypatch):
    import gpt.checkpoint as ck
    from gpt.train import train
    straight = tmp_path / "straight"
    train(train_cfg(tmp_path, straight))

    crashed, save = tmp_path / "crashed", ck.save

    def crash_at_15(run, model, optimizer, state, best=False):
        if state["iter"] == 15:  # the log has its line for 15; the checkpoint of 15 never lands
            with open(Path(run) / LOG_FILE, "a") as f:
                f.write('{"iter": 15, "tr')  # and a write of the log cut short, for good measure
            raise KeyError("killed")
        return save(run, model, optimizer, state, best)

    monkeypatch.setattr(ck, "save", crash_at_15)
    with pytest.raises(KeyError):
        train(train_cfg(tmp_path, crashed))
    assert [line["iter"] for line in read_log(crashed)] == [0, 5, 10, 15]
    monkeypatch.setattr(ck, "save", save)
    train(train_cfg(tmp_path, crashed, resume=True))  # from the checkpoint of 10
    assert without_speed(read_log(crashed)) == without_speed(read_log(straight))  # 15 once, none lost

    train(train_cfg(tmp_path, crashed, overwrite=True, max_iters=5))  # a new run in its place: its lines only
    assert [line["iter"] for line in read_log(crashed)] == [0, 5]


def test_a_run_resumed_for_more_iterations_continues_the_log(tmp_path):
    from gpt.train import train
    out = tmp_path / "run"
    train(train_cfg(tmp_path, out, max_iters=10, lr_decay_iters=20))
    train(train_cfg(tmp_path, out, max_iters=20, lr_decay_iters=20, resume=True))
    train(train_cfg(tmp_path, tmp_path / "straight", max_iters=20, lr_decay_iters=20))
    assert without_speed(read_log(out)) == without_speed(read_log(tmp_path / "straight"))
