"""What the MPI tests need (the `mpi` extra: mpi4py, and mpiexec from the mpich wheel): skipped cleanly when absent,
except in CI (TINYGRAD_LITE_CROSSCHECK=1, set by .ci/run, which installs the extra), where a missing MPI fails.

    @mpi_test                     # pytest -m mpi selects it; skipped here without MPI, with the reason
    def test_...(): subprocess.run([MPIEXEC, "-n", "2", ...])
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))


def missing() -> str | None:
    """Why the MPI tests cannot run here, or None."""
    if os.environ.get("TINYGRAD_LITE_CROSSCHECK") == "1":
        return None  # CI installs the extra: a missing MPI must fail, not skip
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return 'mpi4py is not installed (pip install -e ".[mpi]")'
    return None if MPIEXEC else "no mpiexec on PATH (pip install mpich)"


def mpi_test(fn):
    """Mark a test as an MPI test (pytest -m mpi), skipped with the reason when MPI is missing."""
    return pytest.mark.mpi(pytest.mark.skipif(missing() is not None, reason=str(missing()))(fn))
