"""`tinygrad_lite.profile` moved to `tinygrad_lite.tools.profile`; this name keeps working."""
from .tools.profile import profile  # noqa: F401
