"""Fixtures for every test."""
import pytest

from tinygrad_lite import fast, observe


@pytest.fixture(autouse=True)
def no_observer_left_behind():
    """A test that fails inside `with detect_anomaly():` or `with profile():` must not leave it watching the
    next tests: restore the engine's observer, and fail the test that left one installed."""
    before = observe.current
    yield
    left, observe.current = observe.current, before
    assert left is before, f"the test left {type(left).__name__} installed as observe.current"


@pytest.fixture(autouse=True)
def math_engine_after_each_test():
    """Every test starts on the math-first engine, the default: one that turns fast mode on (a command line
    run in-process calls fast.enable()) must not leave it on for the next tests."""
    assert not fast.is_enabled(), "fast mode was on when a test started"
    yield
    fast.disable()


@pytest.fixture(scope="session")
def solutions(tmp_path_factory):
    """The exercises: a workbook of the engine's own backward passes, and its grades (the GPT task's included),
    graded once; a test that plants code into it works on a copy."""
    from tinygrad_lite.exercises import check, start
    folder = tmp_path_factory.mktemp("solutions") / "wb"
    start(folder, with_solutions=True)
    return folder, {g.task.name: g for g in check(folder)}
