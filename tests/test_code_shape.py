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
SHORT_FUNCTIONS = ["."]  # every module of bot/
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
        (
            bot.mail,
            ("NotSent", "InvalidToken", "RecipientRefused", "AddressNotSupported", "MaybeDelivered", "SenderRefused"),
        ),
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


def _calls(name: str) -> list[str]:
    """Where `name(...)` or `x.name(...)` is called in bot/."""
    return [
        f"{path.relative_to(BOT.parent)}:{node.lineno}"
        for path in _modules(".")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")) == name
    ]


def test_one_jinja_environment_factory() -> None:
    """Posts, feeds, e-mail, pages and the console all get templates from bot.render.templates.make_environment."""
    environments = _calls("Environment")
    assert len(environments) == 1 and environments[0].startswith("bot/render/templates.py:"), environments
    assert not [c for c in _calls("FileSystemLoader") if not c.startswith("bot/render/templates.py:")]


def _records() -> list[tuple[str, frozenset[str]]]:
    """Every class in bot/ with five or more annotated fields (the typed records), with its field names."""
    found = []
    for path in _modules("."):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                fields = frozenset(
                    s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                )
                if len(fields) >= 5:
                    found.append((f"{path.relative_to(BOT.parent)}:{node.name}", fields))
    return found


def test_one_record_type_per_shape() -> None:
    """No record repeats another's fields (FeedEntry and a cleaned entry, the channels' post fields): one type each."""
    records = _records()
    copies = [
        (a, b)
        for i, (a, fields_a) in enumerate(records)
        for b, fields_b in records[i + 1 :]
        if fields_a <= fields_b or fields_b <= fields_a
    ]
    assert not copies, copies


def test_one_image_fetcher() -> None:
    """Mastodon and Bluesky fetch a post's image through the one bot.channels.images.image_fetcher."""
    defined = _defined("image_fetcher") + _defined("_image_fetcher")
    assert len(defined) == 1 and defined[0].startswith("bot/channels/images.py:"), defined


def test_one_character_reference_decoder() -> None:
    """Titles from the feed and text renderings decode HTML references through one unescape_refs."""
    assert len(_defined("unescape_refs")) == 1, _defined("unescape_refs")
    pattern = "[A-Za-z][A-Za-z0-9]{1,31});"
    holders = [str(p.relative_to(BOT.parent)) for p in _modules(".") if pattern in p.read_text(encoding="utf-8")]
    assert holders == ["bot/render/markdown.py"], holders


def test_test_helpers_import_without_path_hacks() -> None:
    """The helpers in tests/ are importable through pytest's `pythonpath`, not by editing sys.path."""
    import subprocess
    import sys

    tests = BOT.parent / "tests"
    assert "sys.path" not in (tests / "conftest.py").read_text(encoding="utf-8")
    # importlib mode puts nothing on sys.path by itself: only the ini option can make these import.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            "tests/test_pipeline.py",
            "tests/test_digest.py",
        ],
        cwd=BOT.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
