"""README.md and the guides: size, links, wording, the test command, and the README's Python example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))
TEST_COMMAND = ('python3 -m venv .venv && CSAE_TF_PACKAGE=tensorflow-cpu .venv/bin/pip install -e ".[test]" '
                "&& .venv/bin/ruff check . && .venv/bin/python -m pytest -q tests")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
EXAMPLE_TIMEOUT = 240  # seconds; the example itself takes about 25 s on 2 idle cores


def _docs() -> list[Path]:
    return [README, *GUIDES]


def _anchors(doc: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (fenced code blocks left out)."""
    text = re.sub(r"(?ms)^```.*?^```", "", doc.read_text())
    anchors = set()
    for title in re.findall(r"(?m)^#+ +(.+?) *$", text):
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def _without_code(text: str) -> str:
    """Markdown text with fenced code blocks and inline code removed (links there are not links)."""
    text = re.sub(r"(?ms)^```.*?^```", "", text)
    return re.sub(r"`[^`\n]*`", "", text)


def test_readme_is_an_entry_page_of_at_most_200_lines():
    assert len(README.read_text().splitlines()) <= 200


def test_every_guide_exists():
    names = {p.name for p in GUIDES}
    assert {"training.md", "distributed.md", "tuning.md", "monitoring.md", "serving.md", "reproduction.md",
            "comparison.md", "performance.md"} <= names


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_an_existing_file(doc):
    """Files and, in Markdown files, their #anchors."""
    broken = []
    for target in LINK.findall(_without_code(doc.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s):, mailto:, in-page anchors
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve()
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_load_averages_or_issue_targets(doc):
    text = doc.read_text().lower()
    for phrase in ("load average", "the issue's target"):
        assert phrase not in text, f"{doc.relative_to(ROOT)} mentions {phrase!r}"


def test_the_link_check_sees_the_readme_links():
    assert len(LINK.findall(_without_code(README.read_text()))) >= 8


def test_readme_holds_the_test_command_ci_runs():
    assert TEST_COMMAND in README.read_text()


def readme_python_example() -> str:
    """The first ```python block under the first heading that contains "Python"."""
    text = README.read_text()
    heading = re.search(r"(?m)^#+ .*Python.*$", text)
    assert heading, "README.md has no heading containing 'Python'"
    block = re.search(r"(?ms)^```python\n(.*?)^```", text[heading.end():])
    assert block, "no ```python block after the README's Python heading"
    return block.group(1)


def test_readme_python_example_runs_as_written(tfds_dir):
    """README example: the ```python block of README.md runs from the repository root and exits 0."""
    code = readme_python_example()
    assert len(code.strip().splitlines()) <= 15, "keep the README example short"
    env = {**os.environ, "TFDS_DATA_DIR": str(tfds_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=EXAMPLE_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "accuracy" in result.stdout
