"""latex2mathml's tokens and symbol elements, for bot.render.fastmath.

The tokens are the library's own (its token pattern, and what its tokenizer does with each
match), read without its generator; a symbol's element is what its converter's _convert_symbol
writes, from its own tables. What these do not take raises _Unsupported, and fastmath declines.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Mapping

from latex2mathml import commands as cmd
from latex2mathml.converter import MOVABLE_LIMIT_TEXTS, NUMBER_PATTERN, OPERATORS
from latex2mathml.symbols_parser import SYMBOLS
from latex2mathml.tokenizer import PATTERN, UNITS

# The same as bot.render.html's (a test checks): latex2mathml's numeric references are decoded
# per text node, then the text is escaped as ElementTree escapes it.
_NUMERIC_REF = re.compile(r"&#(x[0-9A-Fa-f]{1,6}|[0-9]{1,7});")

_Font = Mapping[str, "str | None"] | None


class _Unsupported(Exception):
    """Outside the subset: the caller falls back to latex2mathml."""


def _commands_of_library() -> set[str]:
    """Every command latex2mathml knows by name: all may be handled specially by its walker or converter."""
    names: set[str] = set()
    for value in vars(cmd).values():
        if isinstance(value, str):
            names.add(value)
        elif isinstance(value, (dict, tuple)):
            names.update(v for v in value if isinstance(v, str))
    return {n for n in names if n.startswith("\\")}


# Commands latex2mathml turns into one element on their own, through _convert_symbol only.
_PLAIN_COMMANDS = {cmd.SUMMATION, cmd.PRODUCT, cmd.INTEGRAL, cmd.PRIME, cmd.DPRIME, cmd.TRPRIME, cmd.QPRIME,
                   cmd.NOBREAKSPACE, cmd.SPACE, cmd.LBRACE, *MOVABLE_LIMIT_TEXTS, *cmd.FUNCTIONS}  # fmt: skip
_SPECIAL = _commands_of_library() - _PLAIN_COMMANDS
_NBSP_TOKENS = (r"\ ", "~", cmd.NOBREAKSPACE, cmd.SPACE)
_FENCES = {"(", ")", "[", "]", "|", r"\|", r"\{", r"\}", r"\surd"}
#: commands the walker reads by their start (fonts, environments, operator names, verbatim)
_NOT_LEAF_PREFIXES = (cmd.MATH, cmd.BEGIN, cmd.END, cmd.OPERATORNAME, cmd.VERB)
# Characters the walker gives a meaning (groups, scripts, alignment) or we do not take as a symbol.
_NOT_LEAF = {"{", "}", "^", "_", "'", "&", "%"}

_SPACES = {c: cmd.CONVERSION_MAP[c] for c in (cmd.COLON, cmd.COMMA, cmd.DOUBLEBACKSLASH, cmd.ENSPACE,
           cmd.EXCLAMATION, cmd.GREATERTHAN, cmd.NEGTHINSPACE, cmd.NEGMEDSPACE, cmd.NEGTHICKSPACE,
           cmd.THICKSPACE, cmd.THINSPACE, cmd.QQUAD, cmd.QUAD, cmd.SEMICOLON, cmd.SPACEUPPER)}  # fmt: skip
_TEXT_COMMANDS = {cmd.TEXT, cmd.TEXTBF, cmd.TEXTIT, cmd.TEXTMD, cmd.TEXTNORMAL, cmd.TEXTRM, cmd.TEXTSF, cmd.TEXTTT,
                  cmd.TEXTUP, cmd.EMPH}  # fmt: skip
#: what the tokenizer reads with its argument as one token: text commands, and boxes of text
_TEXT_TOKENS = {*_TEXT_COMMANDS, cmd.MBOX, cmd.HBOX}
_ACCENTS = {
    c: (cmd.CONVERSION_MAP[c], cmd.DIACRITICS[c])
    for c in cmd.DIACRITICS
    if c in cmd.COMMANDS_WITH_ONE_PARAMETER and c not in (cmd.UNDERBAR, cmd.MATHRING)
}
_FONTS = {
    c: f
    for c, f in cmd.LOCAL_FONTS.items()
    if c not in cmd.CONVERSION_MAP
    and (c in cmd.COMMANDS_WITH_ONE_PARAMETER or (c.startswith(cmd.MATH) and c not in cmd.MATH_NON_FONT_COMMANDS))
}
#: two-argument commands: (element, its attributes, the wrapping mstyle's attributes or None, arguments swapped)
_TWO_ARGUMENTS = {
    cmd.FRAC: ("mfrac", {}, None, False),
    cmd.DFRAC: ("mfrac", {}, {"displaystyle": "true", "scriptlevel": "0"}, False),
    cmd.TFRAC: ("mfrac", {}, {"displaystyle": "false", "scriptlevel": "0"}, False),
    cmd.BINOM: ("mfrac", {"linethickness": "0"}, None, False),
    cmd.DBINOM: ("mfrac", {"linethickness": "0"}, {"displaystyle": "true", "scriptlevel": "0"}, False),
    cmd.TBINOM: ("mfrac", {"linethickness": "0"}, {"displaystyle": "false", "scriptlevel": "0"}, False),
    cmd.OVERSET: ("mover", {}, None, True),
    cmd.UNDERSET: ("munder", {}, None, True),
    cmd.STACKREL: ("mover", {}, None, True),
}
_BINOMS = (cmd.BINOM, cmd.DBINOM, cmd.TBINOM)
#: \displaystyle and the like, \large and the like: an mstyle around the rest of the group
_STYLES = {**cmd.STYLES, **cmd.MSTYLE_SIZES}
#: \big( and the like
_BIGS = {**cmd.BIG, **cmd.BIG_OPEN_CLOSE}
#: the environments handled, by their \begin token: (name, column alignments, fences before and after)
_TABLES = {
    rf"{cmd.BEGIN}{{{name}}}": (name, align, fences)
    for name, align, fences in (
        ("align*", "rl", None),
        ("cases", "l", None),
        ("matrix", "", None),
        ("pmatrix", "", (r"\lparen", r"\rparen")),
        ("bmatrix", "", (r"\lbrack", r"\rbrack")),
        ("Bmatrix", "", (r"\lbrace", r"\rbrace")),
        ("vmatrix", "", (r"\vert", r"\vert")),
        ("Vmatrix", "", (r"\Vert", r"\Vert")),
    )
}
_TABLE_TOKENS = {*_TABLES, *(rf"{cmd.END}{{{name}}}" for name, _, _ in _TABLES.values())}
_OPERATORNAMES = (cmd.OPERATORNAMEWITHLIMITS, cmd.OPERATORNAMESTAR, cmd.OPERATORNAME)


def escape_text(text: str) -> str:
    """What ElementTree's writer escapes in a text node, in the same order (the MathML writers share it)."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _text(raw: str) -> str:
    if "&#" in raw:
        raw = _NUMERIC_REF.sub(lambda m: htmllib.unescape(m.group(0)), raw)
    return escape_text(raw)


def _attributes(attrs: Mapping[str, str]) -> str:
    return "".join(f' {k}="{v}"' for k, v in attrs.items())


def _symbol(symbol: str) -> str:
    # What "&#x{symbol};" becomes once decoded and escaped (for every symbol of the table, chr() is
    # what html.unescape gives: a test checks).
    char = chr(int(symbol, 16))
    return _text(char) if char in "&<>" else char


def _element(tag: str, attrs: dict[str, str] | None, text: str, font: _Font, key: str | None) -> str:
    """One element; `text` already escaped; the font's mathvariant for `key` added last, as _set_font does."""
    if font is not None and key is not None:
        variant = font[key]
        if variant is not None:
            attrs = {**attrs, "mathvariant": variant} if attrs else {"mathvariant": variant}
    if not attrs:
        return f"<{tag}>{text}</{tag}>"
    return f"<{tag}{_attributes(attrs)}>{text}</{tag}>"


def _leaf(tok: str, font: _Font) -> str:
    """What latex2mathml's _convert_symbol writes for a token without children."""
    backslash = tok[0] == "\\"
    if (backslash and (tok in _SPECIAL or tok.startswith(_NOT_LEAF_PREFIXES))) or (not backslash and tok in _NOT_LEAF):
        raise _Unsupported(tok)
    symbol = SYMBOLS.get(tok)
    if NUMBER_PATTERN.match(tok):
        return _element("mn", None, _text(tok), font, "mn")
    if tok in OPERATORS:
        attrs = {}
        if tok == r"\|":
            attrs["fence"] = "false"
        if tok == r"\smallint":
            attrs["largeop"] = "false"
        text = _text(tok) if symbol is None else _symbol(symbol)
        if tok in _FENCES:
            attrs["stretchy"] = "false"
            return _element("mo", attrs, text, font, "fence")
        return _element("mo", attrs, text, font, "mo")
    if symbol and (0x2200 <= int(symbol, 16) <= 0x22FF or 0x2190 <= int(symbol, 16) <= 0x21FF):
        return _element("mo", None, _symbol(symbol), font, "mo")
    if tok in _NBSP_TOKENS:
        return _element("mtext", None, "\xa0", font, "mtext")
    if tok in MOVABLE_LIMIT_TEXTS:
        return _element("mo", {"movablelimits": "true"}, _text(MOVABLE_LIMIT_TEXTS[tok]), font, "mo")
    if backslash:
        if symbol:
            return _element("mi", None, _symbol(symbol), font, "mi")
        if tok in cmd.FUNCTIONS:
            return _element("mi", None, tok[1:], font, "mi")
    # A command the library does not know is shown as written, like any other character.
    return _element("mi", None, _text(tok), font, "mi")


def _ascii_leaves() -> dict[str, str]:
    leaves = {}
    for code in range(0x21, 0x7F):
        char = chr(code)
        if char != "\\" and char not in _NOT_LEAF:
            leaves[char] = _leaf(char, None)
    return leaves


#: the element of each printable ASCII character outside a font: most tokens of most formulas
_ASCII_LEAVES = _ascii_leaves()


def _text_content(content: str) -> str:
    # latex2mathml's tokenizer treats the argument of \text like any captured token.
    if content.startswith("%"):
        raise _Unsupported("comment in text")
    if content.endswith(UNITS) and content[0:1].isdigit():
        return content.replace(" ", "")
    if content.startswith((cmd.BEGIN, cmd.END, cmd.OPERATORNAME)):
        return content.replace(" ", "")
    return content


def tokens(tex: str) -> list[str]:
    """latex2mathml's tokens for `tex` (its own pattern); _Unsupported for what this module does not take."""
    out: list[str] = []
    append = out.append
    for m in PATTERN.finditer(tex):
        i = m.lastindex
        if i in (2, 6, 7, 8, 24):  # letter, number, dot_decimal, escaped, char
            tok = m.group(i)
            if tok != "%":  # a lone "%" is a comment to the tokenizer
                append(tok)
        elif i == 23:  # command
            tok = m.group(i)
            if tok.startswith(cmd.MATH) and tok not in cmd.MATH_NON_FONT_COMMANDS and tok in SYMBOLS:
                append(f"&#x{SYMBOLS[tok]};")
            elif tok.startswith((cmd.VERB, cmd.BEGIN, cmd.END, cmd.OPERATORNAME)) or tok in _TEXT_TOKENS:
                raise _Unsupported(tok)
            else:
                append(tok)
        elif i == 4:  # a script and one digit
            append(m.group(3))
            append(m.group(4))
        elif i == 1:  # a comment
            continue
        elif i == 12:  # \text{...} and the like
            if m.group(11) not in _TEXT_TOKENS:
                raise _Unsupported(m.group(11))
            append(m.group(11))
            append(_text_content(m.group(12)))
        elif i == 10:  # \operatorname{...}
            append(m.group(10).replace(" ", ""))
        elif i in (14, 15):  # \frac12
            append(m.group(13))
            append(m.group(14))
            if m.group(15) is not None:
                append(m.group(15))
        elif i == 19:  # \mathbb{R}: one symbol when the library has it
            full = m.group(16) + "{" + m.group(18) + "}"
            if m.group(16) not in cmd.MATH_NON_FONT_COMMANDS and full in SYMBOLS:
                append(f"&#x{SYMBOLS[full]};")
            else:
                out.extend((m.group(16), "{", m.group(18), "}"))
        elif i == 9 and m.group(9).replace(" ", "") in _TABLE_TOKENS:  # \begin{pmatrix} and the like
            append(m.group(9).replace(" ", ""))
        else:  # dimensions, other environments, \verb
            raise _Unsupported(m.group(0))
    return out
