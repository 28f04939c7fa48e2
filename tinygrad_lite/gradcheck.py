"""`tinygrad_lite.gradcheck` moved to `tinygrad_lite.tools.gradcheck`; this name keeps working."""
from .tools.gradcheck import *  # noqa: F401,F403
from .tools.gradcheck import GradcheckError, analytical_jacobian, gradcheck, numerical_jacobian  # noqa: F401
