"""`tinygrad_lite.memory` moved to `tinygrad_lite.fast.memory`; this name keeps working."""
from .fast.memory import reuse_freed_memory  # noqa: F401
