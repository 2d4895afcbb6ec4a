"""TeX → MathML for the common subset of summary formulas, byte for byte what latex2mathml gives.

``tex_to_mathml`` spent most of a build in latex2mathml (a tokenizer generator, a walker of
named tuples, a converter that deep-copies its tables per command, an ElementTree). For the
formulas summaries mostly hold (letters, numbers, operators, scripts, braces, greek letters and
symbols, ``\\frac``, ``\\sqrt``, fonts, ``\\text``, ``\\left…\\right``, accents, functions) this
module writes the same string directly, in one pass over the same tokens (latex2mathml's own
token pattern and symbol tables, so symbols cannot drift from the library's).

It mirrors latex2mathml's walker and converter for that subset only, quirks included (``{x}``
is an ``<mrow>``; only ``\\sum``/``\\prod`` at the top of a display formula take their scripts
above and below; ``\\mathbb{R}`` is one symbol but ``\\mathbb{RR}`` a font). Whatever it does not
know, or whatever would make latex2mathml raise, it answers None for, and the caller takes the
library's path: correctness first, coverage second. tests/test_fastmath.py compares the two on
every formula of the sample feed and on thousands of generated and hostile ones.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Mapping

from latex2mathml import commands as cmd
from latex2mathml.converter import MOVABLE_LIMIT_TEXTS, NUMBER_PATTERN, OPERATORS
from latex2mathml.symbols_parser import SYMBOLS
from latex2mathml.tokenizer import PATTERN, UNITS

#: deepest nesting of groups and arguments handled here; deeper formulas take the library's path
MAX_DEPTH = 40

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
#: backslash tokens written as one symbol element
_LEAF_COMMANDS = {
    t
    for t in (*SYMBOLS, *_PLAIN_COMMANDS, *OPERATORS, r"\ ")
    if t.startswith("\\") and t not in _SPECIAL and not t.startswith(cmd.MATH) and t != cmd.NOT
}
_NBSP_TOKENS = (r"\ ", "~", cmd.NOBREAKSPACE, cmd.SPACE)
_FENCES = {"(", ")", "[", "]", "|", r"\|", r"\{", r"\}", r"\surd"}
# Characters the walker gives a meaning (groups, scripts, alignment) or we do not take as a symbol.
_NOT_LEAF = {"{", "}", "^", "_", "'", "&", "%"}

_SPACES = {c: cmd.CONVERSION_MAP[c] for c in (cmd.COLON, cmd.COMMA, cmd.DOUBLEBACKSLASH, cmd.ENSPACE,
           cmd.EXCLAMATION, cmd.GREATERTHAN, cmd.NEGTHINSPACE, cmd.NEGMEDSPACE, cmd.NEGTHICKSPACE,
           cmd.THICKSPACE, cmd.THINSPACE, cmd.QQUAD, cmd.QUAD, cmd.SEMICOLON, cmd.SPACEUPPER)}  # fmt: skip
_TEXT_COMMANDS = {cmd.TEXT, cmd.TEXTBF, cmd.TEXTIT, cmd.TEXTMD, cmd.TEXTNORMAL, cmd.TEXTRM, cmd.TEXTSF, cmd.TEXTTT,
                  cmd.TEXTUP, cmd.EMPH}  # fmt: skip
_ACCENTS = {
    c: (cmd.CONVERSION_MAP[c], cmd.DIACRITICS[c])
    for c in cmd.DIACRITICS
    if c in cmd.COMMANDS_WITH_ONE_PARAMETER and c not in (cmd.OVERBRACE, cmd.UNDERBRACE, cmd.UNDERBAR, cmd.MATHRING)
}
_FONTS = {
    c: f
    for c, f in cmd.LOCAL_FONTS.items()
    if c not in cmd.CONVERSION_MAP
    and (c in cmd.COMMANDS_WITH_ONE_PARAMETER or (c.startswith(cmd.MATH) and c not in cmd.MATH_NON_FONT_COMMANDS))
}
_FRACTIONS = {cmd.FRAC: cmd.CONVERSION_MAP[cmd.FRAC]}
_DELIMITERS = {"(", ")", "[", "]", "|", ".", "/", r"\{", r"\}", r"\|", r"\langle", r"\rangle", r"\lfloor",
               r"\rfloor", r"\lceil", r"\rceil", r"\lvert", r"\rvert", r"\lVert", r"\rVert", r"\vert", r"\Vert"}  # fmt: skip
_ALIGN_BEGIN, _ALIGN_END = rf"{cmd.BEGIN}{{align*}}", rf"{cmd.END}{{align*}}"
_ALIGN_TOKENS = (_ALIGN_BEGIN, _ALIGN_END)
_ALIGN_TABLE = cmd.CONVERSION_MAP[cmd.ALIGNSTAR]
_OPERATORNAMES = (cmd.OPERATORNAMEWITHLIMITS, cmd.OPERATORNAMESTAR, cmd.OPERATORNAME)


def _text(raw: str) -> str:
    if "&#" in raw:
        raw = _NUMERIC_REF.sub(lambda m: htmllib.unescape(m.group(0)), raw)
    if "&" in raw:
        raw = raw.replace("&", "&amp;")
    if "<" in raw:
        raw = raw.replace("<", "&lt;")
    if ">" in raw:
        raw = raw.replace(">", "&gt;")
    return raw


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
    if (backslash and tok not in _LEAF_COMMANDS) or (not backslash and tok in _NOT_LEAF):
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
        raise _Unsupported(tok)
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
            elif tok.startswith((cmd.VERB, cmd.BEGIN, cmd.END, cmd.OPERATORNAME)) or tok in _TEXT_COMMANDS:
                raise _Unsupported(tok)
            else:
                append(tok)
        elif i == 4:  # a script and one digit
            append(m.group(3))
            append(m.group(4))
        elif i == 1:  # a comment
            continue
        elif i == 12:  # \text{...} and the like
            if m.group(11) not in _TEXT_COMMANDS:
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
        elif i == 9 and m.group(9).replace(" ", "") in _ALIGN_TOKENS:  # \begin{align*}, \end{align*}
            append(m.group(9).replace(" ", ""))
        else:  # dimensions, other environments, \verb
            raise _Unsupported(m.group(0))
    return out


class _Node:
    """One node of the walker's tree, as far as a later script or prime needs to see it."""

    __slots__ = ("kind", "token", "parts", "modifier", "prime")

    def __init__(self, kind: str, token: str, parts: tuple[str, ...], modifier: str | None = None) -> None:
        #: "" for a finished element, "^", "_" or "_^" for a script node (parts: base, then scripts)
        self.kind = kind
        #: the token that made it (the walker tests it: \sum, \gcd)
        self.token = token
        self.parts = parts
        self.modifier = modifier
        #: a superscript made by "'": another "^" joins it instead of raising
        self.prime = False

    def xml(self) -> str:
        kind = self.kind
        if not kind:
            return self.parts[0]
        modifier = self.modifier
        if kind == "^":
            tag = "mover" if modifier in (cmd.LIMITS, cmd.OVERBRACE) else "msup"
        elif kind == "_":
            tag = "munder" if modifier in (cmd.LIMITS, cmd.UNDERBRACE) else "msub"
        elif self.token == cmd.GCD or modifier in (cmd.LIMITS, cmd.OVERBRACE, cmd.UNDERBRACE):
            tag = "munderover"
        else:
            tag = "msubsup"
        return f"<{tag}>{''.join(self.parts)}</{tag}>"


class _Parser:
    """latex2mathml's walker and converter at once, for the subset; raises _Unsupported outside it."""

    def __init__(self, toks: list[str]) -> None:
        self.toks = toks
        self.pos = 0
        self.depth = 0

    def take(self) -> str:
        if self.pos >= len(self.toks):
            raise _Unsupported("missing argument")
        self.pos += 1
        return self.toks[self.pos - 1]

    def sequence(self, end: str | None, block: bool, font: _Font) -> str:
        """The elements up to `end` (taken) or the last token (when `end` is None)."""
        return "".join(node.xml() for node in self.nodes(end, block, font, False))

    def nodes(self, end: str | None, block: bool, font: _Font, table: bool) -> list[_Node]:
        """The walker's group up to `end`; in a `table`, "&" and "\\\\" are separator nodes."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Unsupported("nested too deep")
        nodes: list[_Node] = []
        toks, n = self.toks, len(self.toks)
        while True:
            if self.pos >= n:
                if end is not None:
                    raise _Unsupported("unbalanced")
                break
            tok = toks[self.pos]
            self.pos += 1
            if tok == end:
                break
            if tok == "^" or tok == "_":
                self.script(nodes, tok, block, font)
            elif tok == "'":
                self.prime(nodes, font)
            elif table and (tok == "&" or tok == cmd.DOUBLEBACKSLASH):
                nodes.append(_Node("sep", tok, ()))
            elif tok == _ALIGN_BEGIN and self.depth == 1:
                nodes.append(_Node("", tok, (self.align(block),)))
            else:
                nodes.append(self.node(tok, font))
        self.depth -= 1
        return nodes

    def align(self, block: bool) -> str:
        """An align* environment: latex2mathml's _convert_matrix for it (no lines, no numbers)."""
        nodes = self.nodes(_ALIGN_END, block, None, True)
        if not nodes or nodes[0].token in ("{", "["):  # an alignment spec, or an empty table
            raise _Unsupported("align* spec")
        rows: list[list[tuple[str, list[str]]]] = []
        row: list[tuple[str, list[str]]] = []
        cell: tuple[str, list[str]] = ("right", [])
        rows.append(row)
        row.append(cell)
        col = widest = 1
        for node in nodes:
            if node.token == "&" and node.kind == "sep":
                cell = ("left" if col % 2 else "right", [])
                col += 1
                row.append(cell)
                if col % 2 == 0:
                    cell[1].append("<mi></mi>")
            elif node.kind == "sep":
                widest = max(widest, col)
                row, cell, col = [], ("right", []), 1
                row.append(cell)
                rows.append(row)
            else:
                cell[1].append(node.xml())
        widest = max(widest, col)
        if not cell[1]:
            rows.pop()
        tag, attrs = _ALIGN_TABLE
        spacing = " ".join(("0em", "2em") * (widest // 2))
        out = [f'<{tag}{_attributes(attrs)} columnspacing="{spacing}">']
        for cells in rows:
            out.append("<mtr>")
            out.extend(f'<mtd columnalign="{align}">{"".join(xml)}</mtd>' for align, xml in cells)
            out.append("</mtr>")
        out.append(f"</{tag}>")
        return "".join(out)

    def argument(self, font: _Font) -> _Node:
        """The one node a command or script takes (the walker's limit=1)."""
        tok = self.take()
        if tok in ("^", "_", "'", "}", cmd.RIGHT, cmd.DOUBLEBACKSLASH):
            raise _Unsupported("missing argument")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Unsupported("nested too deep")
        node = self.node(tok, font)
        self.depth -= 1
        return node

    def script(self, nodes: list[_Node], tok: str, block: bool, font: _Font) -> None:
        if not nodes or nodes[-1].kind == "sep":
            raise _Unsupported("script without base")
        prev = nodes.pop()
        if prev.kind == tok and not (tok == "^" and prev.prime):
            raise _Unsupported("double script")
        arg = self.argument(font).xml()
        if tok == "_" and prev.kind == "^":
            node = _Node("_^", prev.token, (prev.parts[0], arg, prev.parts[1]), prev.modifier)
        elif tok == "^" and prev.kind == "_":
            node = _Node("_^", prev.token, (*prev.parts, arg), prev.modifier)
        elif tok == "^" and prev.kind == "^":  # x'^2: the prime and the exponent in one row
            node = _Node("^", prev.token, (prev.parts[0], f"<mrow>{prev.parts[1]}{arg}</mrow>"), prev.modifier)
        else:
            plain_sum = block and not prev.kind and prev.token in (cmd.SUMMATION, cmd.PRODUCT)
            modifier = cmd.LIMITS if plain_sum else None
            node = _Node(tok, prev.token, (prev.xml(), arg), modifier)
            if prev.kind:
                node.token = ""  # the base is a script node: \gcd below it does not count
        nodes.append(node)

    def prime(self, nodes: list[_Node], font: _Font) -> None:
        if not nodes or nodes[-1].kind == "sep":
            raise _Unsupported("prime without base")
        prev = nodes.pop()
        mark = _leaf(cmd.PRIME, font)
        if prev.kind == "^":
            raise _Unsupported("double superscript or prime upgrade")
        if prev.kind == "_":
            nodes.append(_Node("_^", prev.token, (*prev.parts, mark), prev.modifier))
            return
        node = _Node("^", "" if prev.kind else prev.token, (prev.xml(), mark))
        node.prime = True
        nodes.append(node)

    def node(self, tok: str, font: _Font) -> _Node:
        """The node that `tok` starts (its arguments taken)."""
        if tok[0] != "\\":
            if tok == "{":
                return _Node("", tok, (f"<mrow>{self.sequence('}', False, font)}</mrow>",))
            xml = _ASCII_LEAVES.get(tok) if font is None else None
            return _Node("", tok, (xml or _leaf(tok, font),))
        if tok in _FONTS:
            return _Node("", tok, (self.argument(_FONTS[tok]).xml(),))
        if tok in _TEXT_COMMANDS:
            tag, attrs = cmd.CONVERSION_MAP[tok]
            text = _text(self.take().replace(" ", "&#x000A0;"))
            return _Node("", tok, (_element(tag, attrs, text, font, "mtext"),))
        if tok in _FRACTIONS:
            tag, attrs = _FRACTIONS[tok]
            first = self.argument(font).xml()
            second = self.argument(font).xml()
            return _Node("", tok, (f"<{tag}>{first}{second}</{tag}>",))
        if tok == cmd.SQRT:
            if self.pos < len(self.toks) and self.toks[self.pos] == "[":
                raise _Unsupported("root")
            return _Node("", tok, (f"<msqrt>{self.argument(font).xml()}</msqrt>",))
        if tok in _ACCENTS:
            (tag, attrs), (mark, mark_attrs) = _ACCENTS[tok]
            inner = self.argument(font).xml()
            return _Node("", tok, (f"<{tag}{_attributes(attrs)}>{inner}{_element('mo', mark_attrs, _text(mark), None, None)}</{tag}>",))
        if tok == cmd.LEFT:
            return _Node("", tok, (self.fenced(font),))
        if tok in cmd.LIMIT:
            return _Node("", tok, (f"<mo>{tok[1:]}</mo>",))
        if tok in _SPACES:
            tag, attrs = _SPACES[tok]
            return _Node("", tok, (f"<{tag}{_attributes(attrs)}></{tag}>",))
        if tok.startswith(cmd.OPERATORNAME):
            return _Node("", tok, (_operatorname(tok),))
        return _Node("", tok, (_leaf(tok, font),))

    def fenced(self, font: _Font) -> str:
        """\\left…\\right: an mrow of the two stretchy fences and what is between."""
        opening = self.take()
        inner = self.sequence(cmd.RIGHT, False, font)
        closing = self.take()
        parts = ["<mrow>"]
        for delimiter, (tag, attrs), after in (
            (opening, cmd.CONVERSION_MAP[cmd.LEFT], inner),
            (closing, cmd.CONVERSION_MAP[cmd.RIGHT], ""),
        ):
            if delimiter not in _DELIMITERS:
                raise _Unsupported(delimiter)
            symbol = SYMBOLS.get(delimiter)
            raw = "" if delimiter == "." else delimiter if symbol is None else f"&#x{symbol};"
            parts.append(_element(tag, attrs, _text(raw), None, None))
            parts.append(after)
        parts.append("</mrow>")
        return "".join(parts)


def _operatorname(tok: str) -> str:
    for prefix in _OPERATORNAMES:
        if tok.startswith(prefix):
            attrs = {"movablelimits": "true"} if prefix != cmd.OPERATORNAME else {}
            return _element("mo", attrs, _text(tok[len(prefix) + 1 : -1]), None, None)
    raise _Unsupported(tok)  # pragma: no cover - the token pattern starts every one with \operatorname


def fast_mathml(tex: str, source: str, *, display: bool) -> str | None:
    """What tex_to_mathml returns for `source` (the TeX as written) when `tex` is tidy_tex(source),
    or None when `tex` holds anything outside the subset (the caller then asks latex2mathml)."""
    try:
        toks = tokens(tex)
        if not toks:
            return None
        body = _Parser(toks).sequence(None, display, None)
    except Exception:
        # _Unsupported, RecursionError, or a case this module gets wrong: latex2mathml decides.
        return None
    mode = "block" if display else "inline"
    return (
        f'<math xmlns="http://www.w3.org/1998/Math/MathML" display="{mode}"><semantics><mrow>{body}</mrow>'
        f'<annotation encoding="application/x-tex">{_text_plain(source)}</annotation></semantics></math>'
    )


def _text_plain(text: str) -> str:
    # The annotation is our own text node: escaped only, its references kept as written.
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text
