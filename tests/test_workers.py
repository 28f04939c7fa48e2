"""tinygrad_lite.parallel.DataParallel: a batch split over worker processes gives the gradients and the loss of
one process, sees every optimizer step, survives bad input and a dead worker; gpt train --workers."""
import os
import signal

import numpy as np
import pytest

import tinygrad_lite.functional as F
from gpt.cli import main
from gpt.config import GPTConfig
from gpt.model import GPT
from gpt.errors import UsageError
from gpt.distributed import worker_count
from gpt.train import TrainConfig, train
from tinygrad_lite import Tensor, no_grad, optim
from tinygrad_lite.parallel import DataParallel, WorkerError

pytestmark = pytest.mark.skipif(os.name != "posix", reason="DataParallel needs POSIX")

CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


def _model(seed=0, dropout=0.0):
    return GPT(GPTConfig(**{**CFG.to_dict(), "dropout": dropout}), seed=seed, dtype=np.float64)


def _batch(B, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 11, (B, 8)), rng.integers(0, 11, (B, 8))


def _plain_grads(model, x, y):
    for p in model.parameters():
        p.grad = None
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    grads = [p.grad.copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    return loss.item(), grads


def failing_loss(model, x, y):  # module level: workers import it by name
    raise ValueError("no loss for you")


def weighted_sum_loss(model, x, y):  # a loss that is a mean over rows, not cross-entropy
    return (model(x) * Tensor(np.linspace(-1, 1, 11), dtype=np.float64)).mean()


@pytest.mark.parametrize("B,workers", [(6, 2), (5, 2), (7, 3), (1, 2)])  # even, uneven, 3 parts, fewer rows
def test_gradients_and_loss_equal_one_process(B, workers):
    model = _model()
    x, y = _batch(B)
    loss, want = _plain_grads(model, x, y)
    with DataParallel(model, workers=workers) as par:
        got_loss = par.backward(x, y)
        got = [p.grad for p in model.parameters()]
        with no_grad():
            assert par.loss(x, y) == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-13, abs=0)
    assert got_loss == pytest.approx(loss, rel=1e-13, abs=0)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-14)


def test_scale_accumulates_into_grad_like_backward():
    model = _model()
    x, y = _batch(4)
    _, want = _plain_grads(model, x, y)
    before = [np.random.default_rng(i).standard_normal(p.shape) for i, p in enumerate(model.parameters())]
    for p, b in zip(model.parameters(), before):
        p.grad = b.copy()
    with DataParallel(model, workers=2) as par:
        par.backward(x, y, scale=0.25)  # as (0.25 * loss).backward(): adds into .grad
    for p, b, w in zip(model.parameters(), before, want):
        np.testing.assert_allclose(p.grad, b + 0.25 * w, rtol=1e-11, atol=1e-14)


def test_custom_loss_fn():
    model = _model()
    x, y = _batch(6)
    for p in model.parameters():
        p.grad = None
    weighted_sum_loss(model, x, y).backward()
    want = [p.grad.copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    with DataParallel(model, weighted_sum_loss, workers=2) as par:
        par.backward(x, y)
    for p, w in zip(model.parameters(), want):
        np.testing.assert_allclose(p.grad, w, rtol=1e-10, atol=1e-15)


def test_training_steps_equal_one_process():
    """Workers read the parameters the parent's optimizer updates in place: 5 AdamW steps as in one process."""
    ref, model = _model(), _model()
    ref_opt = optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    with DataParallel(model, workers=2) as par:
        for step in range(5):
            x, y = _batch(6, seed=step)
            _, grads = _plain_grads(ref, x, y)
            for p, g in zip(ref.parameters(), grads):
                p.grad = g
            ref_opt.step()
            ref_opt.zero_grad()
            par.backward(x, y)
            opt.step()
            opt.zero_grad()
        state = model.state_dict()
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(state[k], v, rtol=1e-10, atol=1e-13, err_msg=k)


def test_replaced_parameter_data_is_picked_up():
    model, other = _model(seed=0), _model(seed=5)
    x, y = _batch(4)
    with DataParallel(model, workers=2) as par:
        par.backward(x, y)
        for p, q in zip(model.parameters(), other.parameters()):
            p.data = q.data.copy()  # a new array, not written in place
            p.grad = None
        par.backward(x, y)
        got = [p.grad.copy() for p in model.parameters()]
    _, want = _plain_grads(other, x, y)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-14)


def test_close_leaves_a_private_usable_model_and_stops_the_workers():
    model = _model()
    x, y = _batch(4)
    par = DataParallel(model, workers=2)
    procs = list(par._procs)
    par.backward(x, y)
    par.close()
    assert all(p.poll() is not None for p in procs)
    assert all(p.data.flags.writeable and p.data.base is None for p in model.parameters())
    loss, _ = _plain_grads(model, x, y)  # the model works on its own again
    assert np.isfinite(loss)
    with pytest.raises(RuntimeError, match="closed"):
        par.backward(x, y)
    par.close()  # twice is fine


def test_dropout_is_refused_while_training_and_allowed_in_eval():
    model = _model(dropout=0.1)
    x, y = _batch(4)
    with DataParallel(model, workers=2) as par:
        with pytest.raises(ValueError, match="dropout"):
            par.backward(x, y)
        model.eval()
        assert np.isfinite(par.loss(x, y))


def test_bad_input_is_named():
    model = _model()
    with pytest.raises(TypeError, match="loss_fn must be a module-level function"):
        DataParallel(model, lambda m, x, y: F.cross_entropy(m(x), y), workers=2)
    main_loss = type(failing_loss)(failing_loss.__code__, {"__name__": "__main__"}, "script_loss")
    with pytest.raises(TypeError, match="script_loss is defined in __main__"):
        DataParallel(model, main_loss, workers=2)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="workers must be a positive int"):
            DataParallel(model, workers=bad)
    x, y = _batch(4)
    with DataParallel(model, workers=2) as par:
        with pytest.raises(ValueError, match="same nonzero length along axis 0"):
            par.backward(x, y[:3])
        with pytest.raises(ValueError, match="same nonzero length"):
            par.backward(x[:0], y[:0])
        with pytest.raises(ValueError, match="needs a batch"):
            par.backward()


def test_a_failing_loss_names_the_worker_and_its_error_and_the_workers_go_on():
    model = _model()
    x, y = _batch(4)
    with DataParallel(model, failing_loss, workers=2) as par:
        with pytest.raises(WorkerError, match="worker 0 failed.*no loss for you"):
            par.backward(x, y)
        with pytest.raises(WorkerError, match="no loss for you"):
            par.loss(x, y)


def test_a_dead_worker_is_named_and_closes_the_rest():
    model = _model()
    x, y = _batch(4)
    par = DataParallel(model, workers=2)
    par._procs[1].send_signal(signal.SIGKILL)
    par._procs[1].wait()
    with pytest.raises(WorkerError, match="worker 1 .* died"):
        par.backward(x, y)
    with pytest.raises(RuntimeError, match="closed"):
        par.backward(x, y)
    assert all(p.data.base is None for p in model.parameters())  # the parameters were copied back out


def test_gpt_train_with_workers_takes_the_steps_of_one_process(tmp_path):
    text = tmp_path / "in.txt"
    text.write_text("To be, or not to be, that is the question:\n" * 40, encoding="utf-8")

    def run(workers, grad_accum=1):
        cfg = TrainConfig(data=str(text), out=str(tmp_path / f"w{workers}-k{grad_accum}"), batch_size=5, max_iters=6,
                          warmup_iters=1, eval_interval=3, eval_iters=2, seed=3, progress=False, dtype="float64",
                          workers=workers, grad_accum=grad_accum,
                          model=GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, dropout=0.0))
        return train(cfg)

    for k in (1, 2):  # and with gradients accumulated over 2 micro-batches
        one, two = run(1, k), run(2, k)
        np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-11)
        assert [e["val_loss"] for e in two["evals"]] == pytest.approx([e["val_loss"] for e in one["evals"]], rel=1e-11)
        assert two["workers"] == 2


def test_cli_workers_flag(tmp_path, capsys):
    small = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
             "--max-iters", "2", "--eval-iters", "1", "--no-progress"]
    assert main(["train", *small, "--workers", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--workers must be an integer >= 1 (or unset), got 0" in capsys.readouterr().err
    assert main(["train", *small, "--workers", "2", "--dropout", "0.1", "--out", str(tmp_path / "b")]) == 2
    assert "--workers 2 splits each batch over processes" in capsys.readouterr().err
    assert main(["train", *small, "--workers", "2", "--out", str(tmp_path / "c")]) == 0
    assert "workers: each batch split over 2 processes" in capsys.readouterr().err


def test_an_interrupted_call_stops_the_workers_and_keeps_the_model():
    model = _model()
    x, y = _batch(4)
    par = DataParallel(model, workers=2)
    procs = list(par._procs)

    def interrupted():
        raise KeyboardInterrupt

    par._conns[1].recv = interrupted  # Ctrl-C while waiting for worker 1's answer
    with pytest.raises(KeyboardInterrupt):
        par.backward(x, y)
    assert all(p.poll() is not None for p in procs)  # out of step with us: stopped, not left running
    assert all(p.data.base is None for p in model.parameters())
    with pytest.raises(RuntimeError, match="closed"):
        par.loss(x, y)


def test_not_enough_shared_memory_is_named():
    from tinygrad_lite.parallel.workers import _shared_file
    with pytest.raises(OSError, match=r"needs [\d,]+ MB of shared memory"):
        _shared_file(1 << 62)
    fd = _shared_file(1 << 20)  # an unlinked file with its space reserved
    try:
        assert os.fstat(fd).st_size == 1 << 20 and os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)


def test_default_workers_one_per_core_unless_dropout(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert worker_count(None, 32, 0.0, 1) == 8  # one per core
    assert worker_count(None, 32, 0.0, 2) == 4  # mpiexec -n 2: each rank its share of the cores
    assert worker_count(None, 32, 0.0, 16) == 1
    assert worker_count(None, 12, 0.0, 1) == 3  # at least 4 rows each
    assert worker_count(None, 7, 0.0, 1) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert worker_count(None, 512, 0.0, 1) == 8  # and 8 at most
    assert worker_count(None, 32, 0.1, 1) == 1  # dropout does not split over processes
    assert worker_count(3, 12, 0.0, 1) == 3
    assert worker_count(1, 12, 0.1, 1) == 1
    with pytest.raises(UsageError, match="--workers 2 splits each batch over processes.*--dropout 0"):
        worker_count(2, 12, 0.1, 1)


def test_workers_that_cannot_start_fall_back_to_one_process_unless_asked_for(tmp_path, monkeypatch, capsys):
    import gpt.distributed as distributed

    def no_room(*args, **kwargs):
        raise OSError("DataParallel needs 9 MB of shared memory; none of /dev/shm has that much free")

    monkeypatch.setattr(distributed, "DataParallel", no_room)
    small = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "8",
             "--max-iters", "2", "--eval-iters", "1", "--no-progress"]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # 2 cores: 2 workers by default
    assert main(["train", *small, "--out", str(tmp_path / "auto")]) == 0
    assert "workers: could not start them (DataParallel needs 9 MB" in capsys.readouterr().err
    assert main(["train", *small, "--workers", "2", "--out", str(tmp_path / "asked")]) == 1
    assert "error: --workers 2: the worker processes could not start: DataParallel needs 9 MB" in capsys.readouterr().err


def test_ctrl_c_with_workers_saves_stops_them_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    text = tmp_path / "in.txt"
    text.write_text("Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 30)

    def cfg(out, **kw):
        return TrainConfig(data=str(text), out=str(tmp_path / out), batch_size=4, max_iters=8, warmup_iters=1,
                           eval_interval=4, eval_iters=1, seed=5, progress=False, workers=2,
                           model=GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, dropout=0.0), **kw)

    straight = train(cfg("straight"))
    real_lr_at = TrainConfig.lr_at

    def interrupted_lr_at(self, it):
        if it == 6:
            raise KeyboardInterrupt  # Ctrl-C during iteration 7
        return real_lr_at(self, it)

    monkeypatch.setattr(TrainConfig, "lr_at", interrupted_lr_at)
    with pytest.raises(KeyboardInterrupt):
        train(cfg("stop"))
    monkeypatch.undo()
    assert "interrupted: iteration 6 saved" in capsys.readouterr().err
    import gc
    gc.collect()
    assert not [p for p in _children() if "tinygrad_lite.parallel.workers" in p]  # no worker left running
    resumed = train(cfg("stop", resume=True))
    assert resumed["losses"] == straight["losses"] and resumed["evals"] == straight["evals"]


def _children() -> list[str]:
    """Command lines of this process's children (Linux; empty elsewhere)."""
    out = []
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != os.getpid():
                    continue
            with open(f"/proc/{pid}/cmdline") as f:
                out.append(f.read().replace("\0", " "))
        except (OSError, ValueError, IndexError):
            continue
    return out
