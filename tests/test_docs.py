"""docs/reliability.md names a test for every row; every named test must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_named_in_the_reliability_table_exists():
    text = (ROOT / "docs" / "reliability.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| input")
            and not line.startswith("| situation") and "---" not in line]
    assert len(rows) >= 40
    current_file = None
    for row in rows:
        cell = row.rstrip(" |").rsplit("|", 1)[-1]
        names = re.findall(r"`(?:(test_\w+\.py)::)?(?:::)?(test_\w+)(?:\[[^\]]*\])?`", cell)
        named_files = re.findall(r"`(test_\w+\.py)`", cell)
        assert names or named_files, f"no test named in: {row}"
        for file, function in names:
            current_file = file or current_file
            source = (ROOT / "tests" / current_file).read_text()
            assert f"def {function}(" in source, f"{current_file}::{function} does not exist"
