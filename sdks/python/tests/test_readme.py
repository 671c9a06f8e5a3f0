"""The README's quick start runs as written."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

from opensandbox import Sandbox


def test_quick_start_runs_as_written():
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", quick, re.S).group(1)
    assert len(code.strip().splitlines()) == 5
    before = {s.sandbox_id for s in Sandbox.list()}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue() == "2\n\n"  # print() of stdout "2\n"
    assert {s.sandbox_id for s in Sandbox.list()} == before  # the with block killed it
