"""Every examples/*.py runs; the README tutorial's code is the examples' code; its pictures exist."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TUTORIAL = "## Tutorial: from a scalar to GPT-2's gradients"


def tutorial_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert TUTORIAL in text, "README has no tutorial section"
    section = text.split(TUTORIAL, 1)[1]
    return re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]  # up to the next top-level section


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.M | re.S)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # in a scratch directory, to see what an example writes there
    res = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=180)
    assert res.returncode == 0, f"{path.name} failed:\n{res.stdout}\n{res.stderr}"
    assert res.stdout.strip(), f"{path.name} printed nothing"
    # finding 10: nothing is dropped in the current directory; pictures go under out/examples (git-ignored)
    assert {p.name for p in tmp_path.iterdir()} <= {"out"}, sorted(p.name for p in tmp_path.iterdir())
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.parent == tmp_path / "out" / "examples" for p in written), written
    for p in written:  # and each one is named in the output
        assert str(p.relative_to(tmp_path)) in res.stdout, (p, res.stdout)


def test_finding_10_examples_write_their_pictures_to_the_folder_given_as_argument(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "01_scalar.py"), str(tmp_path / "pics")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["pics"]
    (picture,) = (tmp_path / "pics").iterdir()
    assert picture.stem == "01_scalar" and f"wrote {picture}" in res.stdout


def test_tutorial_steps_are_numbered_examples():
    steps = [p.name for p in EXAMPLES if re.match(r"\d\d_", p.name)]
    assert steps[0].startswith("01_") and len(steps) >= 6
    assert [int(s[:2]) for s in steps] == list(range(1, len(steps) + 1))


def test_every_tutorial_code_block_is_an_example_file_or_runs(tmp_path):
    blocks = python_blocks(tutorial_section())
    sources = {p.read_text(encoding="utf-8").strip(): p.name for p in EXAMPLES}
    shown = []
    for code in blocks:
        if code.strip() in sources:
            shown.append(sources[code.strip()])
            continue  # identical to an example file, which test_example_runs runs
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert res.returncode == 0, f"README snippet failed:\n{code}\n{res.stderr}"
    steps = [p.name for p in EXAMPLES if re.match(r"\d\d_", p.name)]
    assert shown == steps  # every numbered step is in the README, in order


def test_tutorial_pictures_exist_and_include_a_transformer_block():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", tutorial_section())
    assert images
    for rel in images:
        assert (ROOT / rel).is_file(), f"README shows {rel}, which does not exist"
    assert "docs/05_block.png" in images
    svg = (ROOT / "docs/05_block.svg").read_text(encoding="utf-8")
    for name in ("transformer.h.0.ln_1.weight", "transformer.h.0.attn.c_attn.weight", "scaled_dot_product_attention",
                 "transformer.h.0.mlp.c_proj.bias", "gelu"):
        assert name in svg, name
