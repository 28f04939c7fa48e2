"""`tinygrad_lite.graph` moved to `tinygrad_lite.tools.graph`; this name keeps working."""
from .tools.graph import *  # noqa: F401,F403
from .tools.graph import render, retain_grads, to_dot  # noqa: F401
