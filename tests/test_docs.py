"""The docs hold together: every relative link and anchor in README.md and docs/*.md resolves inside
the repository, and nothing in the repository points at files outside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

#: folders that are not the project's own text (tools, caches, run output)
SKIP_DIRS = {
    ".git",
    ".venv",
    "var",
    "__pycache__",
    "artifacts",
    "build",
    "dist",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
}
TEXT_SUFFIXES = {
    ".py",
    ".md",
    ".toml",
    ".txt",
    ".j2",
    ".css",
    ".html",
    ".json",
    ".cfg",
    ".ini",
    ".yml",
    ".yaml",
    ".csv",
    ".xml",
    ".sh",
}
#: places a clone does not have (written in pieces so this file does not match itself)
OUTSIDE = re.compile("|".join((r"\.\./+shared\b", r"/work/" + "shared", r"\bDESIGN" + r"\.md\b", r"/work/" + "main")))

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`+[^`\n]*`+")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text without code blocks and code spans, where link syntax is not a link."""
    return _CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its words
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _level, heading in _HEADING.findall(_FENCE.sub("", path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    """Every relative link of `path` that does not resolve inside `root`, with why."""
    problems = []
    for target in _LINK.findall(_prose(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # http(s):, mailto: …: not a file of ours
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(root)}")
    return problems


def repository_text_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or rel.as_posix() in {"Procfile", ".ci/run", ".gitignore"}):
            files.append(path)
    return files


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_nothing_refers_to_files_outside_the_repository() -> None:
    found = []
    for path in repository_text_files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert found == []


def test_the_readme_is_short_and_docs_hold_the_rest() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) < 8500, "the README is a newcomer's three screens: move detail into docs/"
    for name in ("architecture", "operations", "digest", "settings", "channels", "benchmarks"):
        assert (REPO / "docs" / f"{name}.md").is_file()
        assert f"](docs/{name}.md" in readme, f"the README does not link docs/{name}.md"


def test_the_checker_catches_what_it_is_for(tmp_path: Path) -> None:
    # The checks above pass on good docs; these prove they would fail on bad ones.
    (tmp_path / "other.md").write_text("# Other\n\n## A `code` heading, with commas\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-code-heading-with-commas) [self](#page) [web](https://example.org/x)\n"
        "`[not a link](missing.md)`\n\n```\n[nor this](missing.md)\n```\n"
        "[gone](missing.md) [bad anchor](other.md#nope) [no anchor](#nowhere)\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "missing.md: no such file",
        "other.md#nope: no heading #nope in other.md",
        "#nowhere: no heading #nowhere in page.md",
    ]
    page.write_text("[up](../elsewhere.md)\n")
    assert broken_links(page, root=tmp_path) == ["../elsewhere.md: outside the repository"]
    assert OUTSIDE.search("see ../" + "shared/DESIGN" + ".md") and OUTSIDE.search("/work/" + "shared/STYLE.md")
    assert not OUTSIDE.search("docs/architecture.md")
