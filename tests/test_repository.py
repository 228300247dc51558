"""The repository keeps its own promises about itself: every section of the specification the
code cites exists, and the shipped code speaks of the algorithm, not of how it was made."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("itermix_kdiff", "extensions")
TAG = re.compile(r"\b([AB]\d{1,2})\b")


def shipped_files():
    for folder in SHIPPED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md", ".txt", ".ini") and "__pycache__" not in path.parts:
                yield path


def test_every_cited_section_is_a_heading_of_the_specification():
    headings = set(re.findall(r"^## ([AB]\d{1,2})\. ", (ROOT / "docs" / "algorithm.md").read_text(), re.M))
    assert {"A1", "A10", "B1", "B7"} <= headings
    cited = {}
    for path in shipped_files():
        for tag in TAG.findall(path.read_text()):
            cited.setdefault(tag, path.relative_to(ROOT).as_posix())
    assert len(cited) >= 10, "the code cites the specification by section"
    missing = {tag: where for tag, where in cited.items() if tag not in headings}
    assert not missing, f"sections cited but not in docs/algorithm.md: {missing}"


def test_the_specification_is_cited_by_its_path_in_the_repository():
    for path in shipped_files():
        text = path.read_text()
        assert "ALGORITHM.md" not in text and "WEBUI-API.md" not in text, path
        assert "shared/docs" not in text, path


def test_no_shipped_file_names_issues_or_process():
    words = re.compile(r"\b(issues?|seed-README|audit)\b", re.I)
    found = [f"{path.relative_to(ROOT)}:{n}" for path in shipped_files()
             for n, line in enumerate(path.read_text().splitlines(), 1) if words.search(line)]
    assert not found, found
