"""The one Jinja2 environment factory (posts, feed entries, e-mail, pages): where templates come from, how errors read.

Lookup order, file by file: the operator's ``render.templates_dir``, the
repository's ``templates/``, then ``bot/templates/`` (the copy a non-editable
install carries). Every Jinja error becomes a RenderError naming the
template, the line and, for undefined variables, the variable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2

from bot.errors import ConfigError, RenderError

_UNDEFINED_NAME = re.compile(r"'([^']+)' (?:is undefined|has no attribute '([^']+)')")


def template_dirs(operator_dir: str = "") -> list[Path]:
    """The template folders in lookup order; the operator's folder must exist if set."""
    dirs: list[Path] = []
    if operator_dir:
        path = Path(operator_dir).expanduser()
        if not path.is_dir():
            raise ConfigError(f"setting render.templates_dir = {operator_dir!r} is invalid: no such folder")
        dirs.append(path)
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "templates", here.parents[1] / "templates"):
        if candidate.is_dir():
            dirs.append(candidate)
    return dirs


#: the template names that autoescape: HTML and XML; posts and plain-text mail are text
ESCAPED_EXTENSIONS = ("html", "htm", "xml", "html.j2", "xml.j2")


def make_environment(
    operator_dir: str = "",
    *,
    trim_blocks: bool = True,
    keep_trailing_newline: bool = False,
    auto_reload: bool = False,
    filters: Mapping[str, Callable[..., Any]] | None = None,
) -> jinja2.Environment:
    """The one way to get templates: posts, feed entries, e-mail and every web page.

    Always: the operator's folder before ours, autoescape by extension (.html/.xml
    escape, .txt does not), StrictUndefined. What differs is said by the caller:
    `trim_blocks` (with lstrip_blocks) for text whose block tags must leave no
    blank lines, `keep_trailing_newline` for e-mail bodies, `auto_reload` where an
    edited template should show without a restart, and extra `filters`.
    """
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(d)) for d in template_dirs(operator_dir)])
    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=ESCAPED_EXTENSIONS, default=False),
        trim_blocks=trim_blocks,
        lstrip_blocks=trim_blocks,
        keep_trailing_newline=keep_trailing_newline,
        auto_reload=auto_reload,
    )
    env.filters.update(filters or {})
    return env


def _template_line(tb: TracebackType | None, filename: str | None) -> int | None:
    """The template line of a runtime error: Jinja rewrites frames to point into the template."""
    line = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if filename and code.co_filename == filename:
            line = tb.tb_lineno
        elif code.co_filename.endswith((".j2", ".html", ".txt")) or code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class Templates:
    """Loads and renders templates; compiled templates are cached by Jinja."""

    def __init__(self, operator_dir: str = "") -> None:
        self.env = make_environment(operator_dir)

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """Render one template; any template problem is a RenderError saying where."""
        filename: str | None = None
        try:
            template = self.env.get_template(name)
            filename = template.filename
            return template.render(**context)
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or exc.name or name
            raise RenderError(f"template {name} ({where}), line {exc.lineno}: syntax error: {exc.message}") from None
        except jinja2.TemplateNotFound as exc:
            raise RenderError(f"template {name}: not found (looked for {exc.name} in {self._searched()})") from None
        except jinja2.UndefinedError as exc:
            line = _template_line(exc.__traceback__, filename)
            match = _UNDEFINED_NAME.search(str(exc))
            variable = (match.group(2) or match.group(1)) if match else "?"
            raise RenderError(
                f"template {name} ({filename or name}), line {line if line is not None else '?'}: "
                f"undefined variable {variable!r}: {exc}"
            ) from None
        except jinja2.TemplateError as exc:
            line = _template_line(exc.__traceback__, filename)
            raise RenderError(
                f"template {name} ({filename or name}), line {line if line is not None else '?'}: {exc}"
            ) from None
        except (TypeError, ValueError, AttributeError, KeyError, ZeroDivisionError, OverflowError) as exc:
            # An operator template calling a filter wrongly: still "what and where".
            line = _template_line(exc.__traceback__, filename)
            raise RenderError(
                f"template {name} ({filename or name}), line {line if line is not None else '?'}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def _searched(self) -> str:
        loader = self.env.loader
        if isinstance(loader, jinja2.ChoiceLoader):
            paths = [p for sub in loader.loaders if isinstance(sub, jinja2.FileSystemLoader) for p in sub.searchpath]
            return ", ".join(paths) or "(no template folder)"
        return "(unknown)"
