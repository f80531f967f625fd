"""docs/backends.md, "Writing a backend": the example backend runs as written, through both modes."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "backends.md"


def test_writing_a_backend_example_runs(capsys) -> None:
    section = DOC.read_text(encoding="utf-8").split("## Writing a backend", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    exec(compile(code, str(DOC), "exec"), ns)  # noqa: S102 - the documented example, verbatim
    assert capsys.readouterr().out.strip() == "[1, 0]"
    rr = ns["ReasoningReranker"]("any", backend="overlap", mode="reasoning", label_scale=(0, 1))
    got = rr.rank("what is bm25", ["cats and dogs", "bm25 is a ranking function"])
    assert [r.index for r in got] == [1, 0] and all(r.parse_ok for r in got)
    assert got[0].explanation == "Word overlap decides." and got[0].label == 1
