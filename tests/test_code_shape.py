"""The code's own rules, checked on its source: one exception tree, short functions."""

from __future__ import annotations

import ast
from pathlib import Path

BOT = Path(__file__).resolve().parent.parent / "bot"

#: exceptions that may live outside bot/errors.py, and why
ALLOWED_ELSEWHERE = {
    # click's own error type for a usage line: it must derive from click.ClickException
    "UsageLine",
    # an internal signal of the TeX reader, always caught by bot.render.text (never leaves bot/render)
    "MathTextError",
}

#: the modules whose functions are held to about 60 lines (the others follow as they are split)
SHORT_FUNCTIONS = ["mail", "dispatcher.py", "decide.py", "render", "sources", "arxiv.py", "subscribe.py", "errors.py", "digest",
                   "store/__init__.py", "store/engine.py", "store/rows.py", "store/statements.py", "store/sending.py",
                   "store/sources.py", "store/summaries.py", "store/papers.py", "store/deliveries.py", "store/jobs.py",
                   "store/subscribers.py", "store/digests.py"]
LONGEST = 60


def _modules(*names: str) -> list[Path]:
    paths: list[Path] = []
    for name in names:
        path = BOT / name
        paths.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return paths


def _is_exception(node: ast.ClassDef) -> bool:
    for base in node.bases:
        name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
        if name.endswith(("Error", "Exception")) or name in ("NotSent", "InvalidToken", "MaybeDelivered"):
            return True
    return False


def test_every_public_exception_is_in_bot_errors() -> None:
    stray = []
    for path in _modules("."):
        if path.name == "errors.py" and path.parent == BOT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and _is_exception(node):
                if not node.name.startswith("_") and node.name not in ALLOWED_ELSEWHERE:
                    stray.append(f"{path.relative_to(BOT.parent)}:{node.lineno} {node.name}")
    assert stray == [], "define these in bot/errors.py (import them where they were): " + ", ".join(stray)


def test_old_homes_still_export_the_moved_exceptions() -> None:
    import bot.arxiv
    import bot.digest
    import bot.errors
    import bot.mail
    import bot.mail.base
    import bot.mail.tokens

    for module, names in [
        (bot.mail.base, ("RecipientRefused", "AddressNotSupported", "MaybeDelivered", "SenderRefused")),
        (bot.mail, ("NotSent", "InvalidToken", "RecipientRefused", "AddressNotSupported", "MaybeDelivered", "SenderRefused")),
        (bot.mail.tokens, ("InvalidToken",)),
        (bot.arxiv, ("ArxivError",)),
        (bot.digest, ("SubscriberError", "AddressTooLong")),
    ]:
        for name in names:
            assert getattr(module, name) is getattr(bot.errors, name), (module.__name__, name)


def test_functions_are_short_or_say_why() -> None:
    """A function over about 60 lines carries a `# long:` comment saying why, on its first lines."""
    long = []
    for path in _modules(*SHORT_FUNCTIONS):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                head = lines[node.lineno - 2 : node.lineno + 3]
                if size > LONGEST and not any("# long:" in line for line in head):
                    long.append(f"{path.relative_to(BOT.parent)}:{node.lineno} {node.name} ({size} lines)")
    assert long == [], "split these or say why they are long: " + ", ".join(long)


def _defined(name: str) -> list[str]:
    return [
        f"{path.relative_to(BOT.parent)}:{node.lineno}"
        for path in _modules(".")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name
    ]


def test_one_of_each_helper() -> None:
    """One one_line (posts and the digest alike) and one clean_categories (the feeds'; the CLI splits)."""
    import bot.mail.message
    import bot.render.posts

    assert bot.mail.message.one_line is bot.render.posts.one_line
    assert len(_defined("one_line")) == 1, _defined("one_line")
    assert len(_defined("clean_categories")) == 1, _defined("clean_categories")


def test_test_helpers_import_without_path_hacks() -> None:
    """The helpers in tests/ are importable through pytest's `pythonpath`, not by editing sys.path."""
    import subprocess
    import sys

    tests = BOT.parent / "tests"
    assert "sys.path" not in (tests / "conftest.py").read_text(encoding="utf-8")
    # importlib mode puts nothing on sys.path by itself: only the ini option can make these import.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
         "tests/test_pipeline.py", "tests/test_digest.py"],
        cwd=BOT.parent, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
