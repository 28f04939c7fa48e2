"""notebooks/: every tutorial step has its notebook, each runs its example and checks its numbers, and CI runs
them all (the README's notebook command, which executes them; this file only checks their shape)."""
import re
from pathlib import Path

import pytest

from gpt import plots

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
STEPS = sorted(p for p in (ROOT / "examples").glob("*.py") if re.match(r"\d\d_", p.name))
HEADER = """# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---
"""


def cells(text: str) -> list[tuple[str, str]]:
    """(kind, source) of each cell of a percent-format notebook: kind "markdown" or "code"."""
    parts = re.split(r"^# %%(.*)$", text.split("# ---\n", 2)[2], flags=re.M)
    return [("markdown" if "[markdown]" in marker else "code", body.strip()) for marker, body in
            zip(parts[1::2], parts[2::2])]


def test_every_tutorial_step_has_a_notebook_that_shows_and_runs_its_example():
    names = {p.name for p in NOTEBOOKS}
    for step in STEPS:
        assert step.name in names, f"notebooks/{step.name} is missing"
        text = (ROOT / "notebooks" / step.name).read_text(encoding="utf-8")
        assert f'Code(filename="../examples/{step.name}", language="python")' in text, step.name
        assert re.search(rf"^# %run \.\./examples/{step.name}( |$)", text, re.M), step.name
        assert cells(text)[0][1].startswith(f"# # Step {int(step.name[:2])}: "), step.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_each_notebook_explains_in_markdown_and_asserts_its_numbers(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith(HEADER + "\n# %% [markdown]\n")
    kinds = [kind for kind, _ in cells(text)]
    assert kinds.count("markdown") >= 2 and "code" in kinds
    code = "\n".join(body for kind, body in cells(text) if kind == "code")
    assert re.search(r"^assert ", code, re.M)
    for name in re.findall(r"\bplots\.(\w+)\(", code):  # the pictures it draws exist
        assert name in plots.__all__, name
    if re.search(r"\bplots\.\w+\(", code):
        assert "# %matplotlib inline" in code  # without it a Figure shows as text


@pytest.mark.plot
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_each_notebook_is_in_the_form_jupytext_writes(path):
    jupytext = pytest.importorskip("jupytext")  # the `notebooks` extra
    text = path.read_text(encoding="utf-8")
    again = jupytext.writes(jupytext.reads(text, fmt="py:percent"), fmt="py:percent")
    header_lines = re.compile(r"^#\s+(format_version|jupytext_version): .*\n", re.M)  # added by the writer
    assert header_lines.sub("", again) == text  # saving it from JupyterLab changes nothing


def test_the_readme_notebook_command_runs_every_notebook_and_ci_runs_it():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = readme.split("<!-- notebook-command -->\n```\n", 1)[1].split("\n", 1)[0]
    assert 'pip install -e ".[dev,notebooks]"' in command
    assert "python -m pytest -m plot && jupytext --to ipynb notebooks/*.py" in command  # the tests that draw, too
    assert command.endswith("python -m pytest --nbmake notebooks")
    assert "marked notebook-command" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "notebooks/*.ipynb" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
