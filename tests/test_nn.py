"""Modules: naming, state dicts, modes, hooks, and end-to-end training with AdamW and SGD."""
import numpy as np
import pytest

import tinygrad_lite.functional as F
import tinygrad_lite.nn as nn
import tinygrad_lite.optim as optim
from tinygrad_lite import Tensor


class Classifier(nn.Module):
    """Embedding + Linear features -> LayerNorm -> 2-layer GELU MLP -> class logits."""

    def __init__(self, n_ids=10, n_feat=8, d=32, n_cls=3, seed=0):
        rng = np.random.default_rng(seed)
        self.emb = nn.Embedding(n_ids, d, rng=rng)
        self.proj = nn.Linear(n_feat, d, rng=rng)
        self.ln = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d, rng=rng), nn.GELU(), nn.Linear(4 * d, n_cls, rng=rng))

    def forward(self, ids, feats):
        return self.mlp(self.ln(self.emb(ids) + self.proj(feats)))


def synthetic_problem(n=96, n_ids=10, n_feat=8, n_cls=3, seed=1):
    """Labels depend on both the id and the features, so both paths must learn."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_ids, n)
    feats = rng.standard_normal((n, n_feat)).astype(np.float32)
    w = rng.standard_normal((n_feat, n_cls))
    labels = np.argmax(feats @ w + 2.0 * np.eye(n_cls)[ids % n_cls], axis=1)
    return ids, Tensor(feats), labels


def train(model, opt, steps):
    ids, feats, labels = synthetic_problem()
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(ids, feats), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_adamw_fits_synthetic_problem():
    model = Classifier()
    losses = train(model, optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01), 150)
    assert losses[0] > 0.7  # starts near chance (ln 3 = 1.10)
    assert losses[-1] < 0.05


def test_sgd_fits_synthetic_problem():
    model = Classifier()
    losses = train(model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9), 200)
    assert losses[0] > 0.7
    assert losses[-1] < 0.1


def test_named_parameters_dotted_and_shared_once():
    model = Classifier()
    names = [n for n, _ in model.named_parameters()]
    assert names[:4] == ["emb.weight", "proj.weight", "proj.bias", "ln.weight"]
    assert "mlp.0.weight" in names and "mlp.2.bias" in names
    model.mlp[2].weight = model.mlp[0].weight  # tie two modules' weights
    params = model.parameters()
    assert len(params) == len(names) - 1
    assert len({id(p) for p in params}) == len(params)
    assert model.num_parameters() == sum(p.size for p in params)


def test_state_dict_round_trip_and_errors():
    a, b = Classifier(seed=0), Classifier(seed=1)
    ids, feats, _ = synthetic_problem()
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(a(ids, feats).data, b(ids, feats).data)

    sd = {k: v.copy() for k, v in a.state_dict().items()}
    del sd["proj.bias"]
    with pytest.raises(RuntimeError, match="missing keys: proj.bias"):
        b.load_state_dict(sd)
    assert b.load_state_dict(sd, strict=False) == (["proj.bias"], [])

    sd = {k: v.copy() for k, v in a.state_dict().items()}
    sd["proj.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(RuntimeError, match=r"proj.weight: checkpoint \(3, 3\) vs model \(8, 32\)"):
        b.load_state_dict(sd)

    sd = {k: v.copy() for k, v in a.state_dict().items()}
    sd["extra.weight"] = np.zeros(2)
    with pytest.raises(RuntimeError, match="unexpected keys: extra.weight"):
        b.load_state_dict(sd)


def test_train_eval_switches_dropout():
    drop = nn.Sequential(nn.Dropout(0.5, rng=np.random.default_rng(0)))
    x = Tensor(np.ones((200,), np.float32))
    assert drop.training and drop[0].training
    y = drop(x).data
    assert set(np.unique(y)) == {0.0, 2.0}
    drop.eval()
    assert not drop[0].training
    assert drop(x).data is x.data or np.array_equal(drop(x).data, x.data)


def test_forward_hook_replaces_output_and_can_be_removed():
    lin = nn.Linear(3, 2, rng=np.random.default_rng(0))
    seen = []
    handle = lin.register_forward_hook(lambda m, inputs, out: seen.append(out.shape) or out * 2.0)
    x = Tensor(np.ones((4, 3), np.float32))
    plain = F.linear(x, lin.weight, lin.bias).data
    np.testing.assert_allclose(lin(x).data, 2 * plain)
    handle.remove()
    np.testing.assert_allclose(lin(x).data, plain)
    assert seen == [(4, 2)]


def test_to_float64_and_zero_grad():
    model = Classifier().to(np.float64)
    assert all(p.dtype == np.float64 for p in model.parameters())
    ids, feats, labels = synthetic_problem()
    F.cross_entropy(model(ids, Tensor(feats.data, dtype=np.float64)), labels).backward()
    assert all(p.grad is not None and p.grad.dtype == np.float64 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_modulelist_rejects_non_modules_and_bad_index():
    with pytest.raises(TypeError, match="Modules"):
        nn.ModuleList([1])
    with pytest.raises(IndexError):
        nn.ModuleList([nn.GELU()])[3]
