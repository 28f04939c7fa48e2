"""Modules: containers of Parameters with a forward(), named like PyTorch's."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterator

import numpy as np

from . import functional as F
from .observe import RemovableHandle
from .state import get_default_dtype
from .tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires_grad by default)."""

    def __init__(self, data, requires_grad: bool = True, dtype=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class. Sub-modules and Parameters assigned as attributes are found automatically."""

    training: bool = True

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in list(self.__dict__.get("_forward_hooks", ())):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def register_forward_hook(self, fn: Callable) -> RemovableHandle:
        """`fn(module, inputs, output)` runs after forward; returning a value replaces the output."""
        hooks = self.__dict__.setdefault("_forward_hooks", [])
        hooks.append(fn)
        return RemovableHandle(hooks, fn)

    # ------------------------------------------------------------ traversal
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Dotted names; a Parameter shared by two modules (tied weights) appears once, first name wins."""
        seen = set()
        for mod_name, module in self.named_modules():
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{mod_name}.{name}" if mod_name else name), value

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------ state
    def train(self, mode: bool = True) -> "Module":
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, dtype) -> "Module":
        """Cast every floating Parameter to `dtype` (e.g. np.float64 for gradient checks)."""
        for p in self.parameters():
            p.data, p.grad = p.data.astype(dtype), None
        return self

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """name -> array (the live arrays, not copies), every name of a shared Parameter included."""
        out = OrderedDict()
        for mod_name, module in self.named_modules():
            for name, value in vars(module).items():
                if isinstance(value, Parameter):
                    out[f"{mod_name}.{name}" if mod_name else name] = value.data
        return out

    def load_state_dict(self, state: dict, strict: bool = True) -> tuple[list, list]:
        """Copy arrays into the Parameters in place. Mis-shaped keys always raise; with strict,
        missing and unexpected keys raise too. Returns (missing, unexpected)."""
        own = {}
        for mod_name, module in self.named_modules():
            for name, value in vars(module).items():
                if isinstance(value, Parameter):
                    own[f"{mod_name}.{name}" if mod_name else name] = value
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        misshaped = [f"{k}: checkpoint {tuple(np.shape(state[k]))} vs model {own[k].shape}"
                     for k in own if k in state and tuple(np.shape(state[k])) != own[k].shape]
        problems = []
        if misshaped:
            problems.append("mis-shaped keys: " + "; ".join(misshaped))
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise RuntimeError("load_state_dict failed: " + " | ".join(problems))
        for k, p in own.items():
            if k in state:
                np.copyto(p.data, np.asarray(state[k]), casting="same_kind")
        return missing, unexpected

    def __repr__(self) -> str:
        lines = [f"  ({n}): " + repr(c).replace("\n", "\n  ") for n, c in self.named_children()]
        return f"{type(self).__name__}(" + ("\n" + "\n".join(lines) + "\n" if lines else "") + ")"


class Linear(Module):
    """y = x @ W + b with W stored (in, out), like GPT-2's Conv1D.  x (..., in) -> (..., out)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, dtype=None, rng=None,
                 init: bool = True):
        """init=False leaves the weight zero, for a caller that initialises it itself (GPT-2's init)."""
        dtype = np.dtype(dtype or get_default_dtype())
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.zeros((in_features, out_features), dtype), dtype=dtype)
        if init:
            rng = rng if rng is not None else np.random.default_rng()
            bound = 1.0 / np.sqrt(in_features)  # PyTorch's default U(-1/sqrt(in), 1/sqrt(in))
            self.weight.data[...] = rng.uniform(-bound, bound, self.weight.shape)
        self.bias = Parameter(np.zeros(out_features), dtype=dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class Embedding(Module):
    """Lookup table: integer ids (...) -> rows (..., embedding_dim)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, *, dtype=None, rng=None, init: bool = True):
        """init=False leaves the table zero, for a caller that initialises it itself."""
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        dtype = np.dtype(dtype or get_default_dtype())
        shape = (num_embeddings, embedding_dim)
        if init:  # PyTorch's default N(0, 1)
            rng = rng if rng is not None else np.random.default_rng()
            self.weight = Parameter(rng.standard_normal(shape, dtype=dtype), dtype=dtype)
        else:
            self.weight = Parameter(np.zeros(shape, dtype), dtype=dtype)

    def forward(self, idx) -> Tensor:
        return F.embedding(idx, self.weight)

    def __repr__(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"


class LayerNorm(Module):
    """Normalise over the last axis, then scale and shift.  (..., C) -> (..., C)."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True, *, dtype=None):
        self.dim, self.eps = dim, eps
        self.weight = Parameter(np.ones(dim), dtype=dtype)
        self.bias = Parameter(np.zeros(dim), dtype=dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight, self.bias, self.eps)

    def __repr__(self) -> str:
        return f"LayerNorm({self.dim}, eps={self.eps})"


class Dropout(Module):
    """Zero elements with probability p in training mode, scaling the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.5, *, rng=None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.rng = p, rng

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, rng=self.rng)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class GELU(Module):
    def __init__(self, approximate: str = "tanh"):
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)

    def __repr__(self) -> str:
        return f"GELU(approximate={self.approximate!r})"


class ModuleList(Module):
    """A list of modules, registered as children named "0", "1", ..."""

    def __init__(self, modules=()):
        self._n = 0
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds Modules, got {type(module).__name__}")
        setattr(self, str(self._n), module)
        self._n += 1

    def __getitem__(self, i: int) -> Module:
        if not -self._n <= i < self._n:
            raise IndexError(f"index {i} out of range for a ModuleList of {self._n}")
        return getattr(self, str(i % self._n))

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[Module]:
        return (getattr(self, str(i)) for i in range(self._n))


class Sequential(ModuleList):
    """Apply modules in order: Sequential(a, b)(x) == b(a(x))."""

    def __init__(self, *modules: Module):
        super().__init__(modules)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x
