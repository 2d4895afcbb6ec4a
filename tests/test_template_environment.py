"""The one Jinja environment factory: what every caller gets, and what each says for itself."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2
import pytest

from bot.render.templates import make_environment


def _operator_dir(tmp_path: Path) -> str:
    (tmp_path / "t.html.j2").write_text("<p>{{ x }}</p>\n", encoding="utf-8")
    (tmp_path / "t.txt.j2").write_text("{% if x %}\n{{ x }}\n{% endif %}\n", encoding="utf-8")
    (tmp_path / "f.txt.j2").write_text("{{ x | shout }}", encoding="utf-8")
    (tmp_path / "nl.txt.j2").write_text("{{ x }}\n", encoding="utf-8")
    return str(tmp_path)


def test_html_escapes_and_text_does_not(tmp_path: Path) -> None:
    env = make_environment(_operator_dir(tmp_path))
    assert env.get_template("t.html.j2").render(x="<b>") == "<p>&lt;b&gt;</p>"
    assert env.get_template("t.txt.j2").render(x="<b>") == "<b>\n"


def test_undefined_variables_fail(tmp_path: Path) -> None:
    with pytest.raises(jinja2.UndefinedError):
        make_environment(_operator_dir(tmp_path)).get_template("t.txt.j2").render()


def test_operator_templates_come_before_ours(tmp_path: Path) -> None:
    (tmp_path / "index.html.j2").write_text("mine", encoding="utf-8")
    assert make_environment(str(tmp_path)).get_template("index.html.j2").render() == "mine"
    # ours are still there for every name the operator did not override
    assert make_environment(str(tmp_path)).get_template("digest.txt.j2").filename != str(tmp_path / "digest.txt.j2")


def test_whitespace_options_are_the_callers(tmp_path: Path) -> None:
    operator = _operator_dir(tmp_path)
    assert make_environment(operator).get_template("nl.txt.j2").render(x="a") == "a"
    assert make_environment(operator, keep_trailing_newline=True).get_template("nl.txt.j2").render(x="a") == "a\n"
    # block tags leave no lines behind, but pages keep theirs as written
    assert make_environment(operator).get_template("t.txt.j2").render(x="a") == "a\n"
    assert make_environment(operator, trim_blocks=False).get_template("t.txt.j2").render(x="a") == "\na\n"


def test_filters_are_added(tmp_path: Path) -> None:
    env = make_environment(_operator_dir(tmp_path), filters={"shout": str.upper})
    assert env.get_template("f.txt.j2").render(x="hi") == "HI"


def test_reload_is_the_callers(tmp_path: Path) -> None:
    """Pages and e-mail see an edited template at once; posts and feeds read theirs once."""
    page = tmp_path / "p.txt.j2"
    page.write_text("old", encoding="utf-8")
    live, once = make_environment(str(tmp_path), auto_reload=True), make_environment(str(tmp_path))
    assert live.get_template("p.txt.j2").render() == once.get_template("p.txt.j2").render() == "old"
    page.write_text("new", encoding="utf-8")
    os.utime(page, (1_000_000_000, 1_000_000_000))  # a different mtime, whatever the file system's resolution
    assert live.get_template("p.txt.j2").render() == "new"
    assert once.get_template("p.txt.j2").render() == "old"
