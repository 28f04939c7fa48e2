"""Checkpoints of every earlier version load and resume (issue 20, item 12): the fixtures in
tests/fixtures/checkpoints were written by the project's own earlier commits (make_fixtures.py there);
a field added since takes its default; a newer version is refused by name; and what a checkpoint holds
cannot change without a new VERSION."""
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import gpt.checkpoint as ck
from gpt.cli import main
from gpt.config import GPTConfig
from gpt.data import TextData
from gpt.train import TrainConfig, evaluate, load_run, train

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
TEXT = FIXTURES / "input.txt"
RUNS = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


def test_there_is_a_fixture_of_every_earlier_version():
    assert {int(name[1:].split("-")[0]) for name in RUNS} == set(range(ck.VERSION))


@pytest.mark.parametrize("name", RUNS)
def test_issue20_item12_a_checkpoint_of_each_earlier_version_loads_as_it_was_saved(name):
    ckpt = load_run(FIXTURES / name)
    assert ckpt.version == int(name[1:].split("-")[0]) and ckpt.state["iter"] == 4
    cfg = TrainConfig.from_dict(ckpt.state["config"])
    assert cfg.model == ckpt.config and ckpt.config.qkv_bias is None and ckpt.config.dropout == 0.1
    assert (cfg.grad_accum, cfg.dtype, cfg.workers) == (1, "float32", None)  # fields added since: defaults
    # the loaded model gives the validation loss the old code measured at that iteration, on the same batches
    data = TextData.from_text(TEXT.read_text(), ckpt.state["tokenizer"], cfg.val_fraction)
    now = evaluate(ckpt.model(), data, cfg.batch_size, cfg.model.block_size, cfg.eval_iters, cfg.seed)
    then = ckpt.state["evals"][-1]
    assert then["iter"] == 4 and now["val_loss"] == pytest.approx(then["val_loss"], rel=1e-5)
    assert now["train_loss"] == pytest.approx(then["train_loss"], rel=1e-5)


@pytest.mark.parametrize("name", RUNS)
def test_issue20_item12_a_run_of_each_earlier_version_resumes_and_samples(name, tmp_path, capsys):
    run, text = tmp_path / name, tmp_path / "input.txt"
    shutil.copytree(FIXTURES / name, run)
    shutil.copy(TEXT, text)  # the run's text, at another path than it was trained from (which it records alone)
    before = load_run(run)
    assert main(["sample", "--ckpt", str(run), "--max-new-tokens", "5", "--seed", "1", "--no-progress"]) == 0
    resume = ["train", "--resume", "--out", str(run), "--data", str(text), "--max-iters", "6", "--no-progress"]
    capsys.readouterr()
    if before.version < 2:  # the run records its text's path only: another path is another text, unless allowed
        assert main(resume) == 2 and "records its path only" in capsys.readouterr().err
        resume.append("--allow-data-change")
    code = main(resume)
    err = capsys.readouterr().err
    assert code == 0 and "resuming from iter 4" in err, err
    assert ("as --allow-data-change asks" in err) == (before.version < 2), err  # since 2: the text's sha256
    after = load_run(run)
    assert after.version == ck.VERSION and after.state["iter"] == 6
    assert after.state["losses"][:4] == before.state["losses"] and np.isfinite(after.state["losses"]).all()
    assert after.config == before.config


def test_issue20_item12_a_newer_version_is_refused_by_name(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / RUNS[-1], run)
    folder = load_run(run).path
    manifest = json.loads((folder / "manifest.json").read_text())
    newer = f"tinygrad_lite-gpt/{ck.VERSION + 1}"
    (folder / "manifest.json").write_text(json.dumps(dict(manifest, format=newer)))
    with pytest.raises(ck.CheckpointError, match=f"manifest.json says {newer}: written by a newer version of "
                                                 f"this project, which this one \\(reading up to {ck.FORMAT}\\) "
                                                 "cannot load"):
        ck.load(run)


# What a checkpoint of the current VERSION holds. A change here is a new version: bump VERSION in
# gpt/checkpoint.py (and its table), add a fixture written by the commit before the change
# (tests/fixtures/checkpoints/make_fixtures.py), and teach loading the older one (a default, _SINCE).
WRITTEN = {
    "gpt_config": ["bias", "block_size", "dropout", "layer_norm_eps", "n_embd", "n_head", "n_inner", "n_layer",
                   "qkv_bias", "tie_weights", "vocab_size"],
    "train_config": ["allow_data_change", "batch_size", "beta1", "beta2", "data", "dtype", "eval_interval",
                     "eval_iters", "final_eval_iters", "grad_accum", "grad_clip", "init_from", "lr", "lr_decay_iters",
                     "max_iters", "min_lr", "model", "out", "overwrite", "progress", "recompute_blocks", "resume",
                     "save_best", "seed", "tokenizer", "val_fraction", "warmup_iters", "weight_decay", "workers"],
    "state": ["best", "config", "data", "evals", "iter", "losses", "ranks", "rng", "seconds", "tokenizer"],
}


def test_what_a_checkpoint_holds_changes_only_with_its_version(tmp_path):
    cfg = TrainConfig(data=str(TEXT), out=str(tmp_path / "run"), batch_size=2, max_iters=1, eval_iters=1,
                      progress=False, workers=1, model=GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8))
    train(cfg)
    folder = load_run(tmp_path / "run").path
    state = json.loads((folder / "state.json").read_text())
    written = {"gpt_config": sorted(json.loads((folder / "gpt_config.json").read_text())),
               "train_config": sorted(state["config"]), "state": sorted(state)}
    assert written == WRITTEN, f"checkpoints of version {ck.VERSION} hold something new: see WRITTEN above"
    since = {f.name for f in dataclasses.fields(GPTConfig)} - set(WRITTEN["gpt_config"])
    assert not since and all(v <= ck.VERSION for v in ck._SINCE.values())
