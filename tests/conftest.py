"""Fixtures for every test."""
import pytest

from tinygrad_lite import observe


@pytest.fixture(autouse=True)
def no_observer_left_behind():
    """A test that fails inside `with detect_anomaly():` or `with profile():` must not leave it watching the
    next tests: restore the engine's observer, and fail the test that left one installed."""
    before = observe.current
    yield
    left, observe.current = observe.current, before
    assert left is before, f"the test left {type(left).__name__} installed as observe.current"
