"""Runs the README's blocks marked ``<!-- runs in tests/test_readme.py -->``
(``; needs FEATURE`` when they need a module feature still landing), each
as a program of its own against the test server (``$REDIS_URL``), on a
flushed database. A marked block that fails, or fewer marked blocks than
expected, fails the test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = re.compile(r"^<!-- runs in tests/test_readme\.py(?:; needs ([\w, -]+))? -->$")


def marked_blocks():
    lines = README.read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        m = MARK.match(line)
        if not m:
            continue
        assert lines[i + 1] == "```python", f"README.md:{i + 1}: the mark must sit right above a ```python block"
        end = lines.index("```", i + 2)
        needs = [f.strip() for f in (m.group(1) or "").split(",") if f.strip()]
        marks = [pytest.mark.needs(*needs)] if needs else []
        blocks.append(pytest.param(i + 3, "\n".join(lines[i + 2 : end]) + "\n", id=f"README.md:{i + 3}", marks=marks))
    return blocks


BLOCKS = marked_blocks()
# checked at collection: a README that lost its marks fails to collect
if len(BLOCKS) < 5:
    raise RuntimeError(f"README.md has {len(BLOCKS)} blocks marked to run, expected at least 5")


@pytest.mark.parametrize("line, code", BLOCKS)
def test_readme_block_runs(r, server, tmp_path, line, code):
    src = tmp_path / f"readme_{line}.py"
    src.write_text(code)
    env = dict(os.environ, REDIS_URL=server.url)
    done = subprocess.run([sys.executable, str(src)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"README.md:{line} failed:\n{done.stdout}\n{done.stderr}"
