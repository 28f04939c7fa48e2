"""The optional cross-check dependencies (torch, transformers): skipped cleanly when absent, except in CI.

`need("torch")` imports the module or skips the test module with a clear reason. With the environment
variable TINYGRAD_LITE_CROSSCHECK=1 (set by .ci/run, which installs the `crosscheck` extra) a missing
module is an error instead of a skip, so CI cannot silently stop comparing against PyTorch.
"""
from __future__ import annotations

import importlib
import os

import pytest


def need(name: str):
    if os.environ.get("TINYGRAD_LITE_CROSSCHECK") == "1":
        return importlib.import_module(name)  # CI: a missing cross-check dependency fails loudly
    return pytest.importorskip(name, reason=f"{name} is not installed: pip install -e \".[crosscheck]\"")
