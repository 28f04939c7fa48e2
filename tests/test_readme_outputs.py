"""The outputs the README shows are what the commands print (issue 20, item 19): step 4's, with NumPy's warning,
step 5's (each picture reported once, with or without Graphviz), and the gradcheck table.

`python tests/test_readme_outputs.py` rewrites the README's gradcheck table from a fresh run (its numbers are
rounding noise of this machine's BLAS: the test holds every other column exactly and the errors to a factor 2)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GRADCHECK = "python -m gpt gradcheck --preset tiny"
SHOWN_ROWS = 4  # the README shows the header, the first rows, "...", and the summary


def _run(*argv: str, env: dict | None = None) -> str:
    env = dict(os.environ if env is None else env, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
               OPENBLAS_NUM_THREADS="1")
    res = subprocess.run(argv, capture_output=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stdout
    return res.stdout


def _block_after(marker: str) -> str:
    """The first ```text block after `marker` in the README."""
    text = README.read_text(encoding="utf-8")
    assert marker in text, marker
    return re.search(r"```text\n(.*?)```", text.split(marker, 1)[1], flags=re.S).group(1)


def gradcheck_block() -> str:
    """The README's gradcheck block, from a run of the command."""
    lines = _run(sys.executable, "-m", "gpt", "gradcheck", "--preset", "tiny", "--no-progress").splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("parameter"))
    rows = lines[header:header + 1 + SHOWN_ROWS] + ["..."] + [lines[-1]]
    return "\n".join(rows) + "\n"


def _cells(line: str) -> tuple[str, list[float]]:
    """A gradcheck row as (its text with the two error numbers masked, the two numbers)."""
    numbers = re.findall(r"\d\.\d\de[-+]\d\d", line)
    return re.sub(r"\d\.\d\de[-+]\d\d", "X", line), [float(n) for n in numbers]


def test_issue20_19_the_gradcheck_table_is_what_the_command_prints():
    shown, fresh = _block_after(f"\n{GRADCHECK}\n").splitlines(), gradcheck_block().splitlines()
    assert len(shown) == len(fresh), (shown, fresh)
    for mine, theirs in zip(shown, fresh):
        (text_a, numbers_a), (text_b, numbers_b) = _cells(mine), _cells(theirs)
        if text_a.startswith("all "):  # the summary: the count exactly, not the seconds
            assert re.sub(r"\(.* s\)", "", text_a) == re.sub(r"\(.* s\)", "", text_b)
            continue
        assert text_a == text_b
        for a, b in zip(numbers_a, numbers_b):
            assert b / 2 <= a <= 2 * b, (f"README shows {mine!r}, the command prints {theirs!r}: regenerate with "
                                         f"python tests/test_readme_outputs.py")


def test_issue20_19_step_4_shows_what_it_prints_numpys_warning_included():
    shown = _block_after("### 4. Anomaly mode")
    printed = _run(sys.executable, "examples/04_anomaly.py").replace(f"{ROOT}{os.sep}", "")
    line_numbers = re.compile(r"(tinygrad_lite/[\w/]+\.py):\d+:")  # the engine's lines move as it changes
    assert line_numbers.sub(r"\1:N:", shown) == line_numbers.sub(r"\1:N:", printed)


def test_issue20_19_step_5_reports_each_picture_once(tmp_path):
    """Without Graphviz both pictures would be the one .dot file: it is written, and reported, once."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # no `dot` on it
    printed = _run(sys.executable, str(ROOT / "examples" / "05_block.py"), str(tmp_path), env=env)
    wrote = [line for line in printed.splitlines() if line.startswith("wrote ")]
    assert wrote == [f"wrote {tmp_path / '05_block.dot'}"], printed


if __name__ == "__main__":  # rewrite the README's gradcheck block
    text = README.read_text(encoding="utf-8")
    before, after = text.split(f"\n{GRADCHECK}\n", 1)
    old = re.search(r"```text\n(.*?)```", after, flags=re.S).group(1)
    README.write_text(before + f"\n{GRADCHECK}\n" + after.replace(old, gradcheck_block(), 1), encoding="utf-8")
    print(f"rewrote the block after `{GRADCHECK}` in {README}")
