"""TeX → MathML for the common subset of summary formulas, byte for byte what latex2mathml gives.

latex2mathml took about a third of a feeds build's CPU (a tokenizer generator, a walker of named
tuples, a converter that deep-copies its tables per command, an ElementTree). For the formulas
summaries mostly hold (letters, numbers, operators, scripts, braces, greek letters and symbols,
``\\frac``, ``\\sqrt``, fonts, ``\\text``, ``\\left…\\right``, accents, functions, ``align*``,
``cases`` and matrices) this module writes the same string directly, in one pass over the same
tokens (latex2mathml's own token pattern and symbol tables, so symbols cannot drift from the
library's; bot/render/mathtokens.py).

It mirrors latex2mathml's walker and converter for that subset only, quirks included (``{x}``
is an ``<mrow>``; only ``\\sum``/``\\prod`` at the top level of a display formula take their
scripts above and below; ``\\mathbb{R}`` is one symbol but ``\\mathbb{RR}`` a font). Whatever it
does not know, or whatever would make latex2mathml raise, it answers None for, and the caller
takes the library's path: correctness first, coverage second. tests/test_fastmath.py compares the
two on every formula of the sample feed and on thousands of generated and hostile ones.
"""

from __future__ import annotations

from latex2mathml import commands as cmd
from latex2mathml.symbols_parser import SYMBOLS

from bot.render.mathtokens import (
    _ACCENTS,
    _ASCII_LEAVES,
    _BIGS,
    _BINOMS,
    _FONTS,
    _OPERATORNAMES,
    _SPACES,
    _STYLES,
    _TABLES,
    _TEXT_COMMANDS,
    _TWO_ARGUMENTS,
    _attributes,
    _element,
    _Font,
    _leaf,
    _symbol,
    _text,
    _Unsupported,
    escape_text,
    tokens,
)

#: the superscript of one, two, three, four primes (past that the walker counts them)
_PRIMES = ("", cmd.PRIME, cmd.DPRIME, cmd.TRPRIME, cmd.QPRIME)
_PRIME_CHAR = "\u2032"
_COLUMNS = {"r": "right", "l": "left", "c": "center"}

#: deepest nesting of groups and arguments handled here; deeper formulas take the library's path
MAX_DEPTH = 40


class _Node:
    """One node of the walker's tree, as far as a later script or prime needs to see it."""

    __slots__ = ("kind", "modifier", "parts", "prime", "token")

    def __init__(self, kind: str, token: str, parts: tuple[str, ...], modifier: str | None = None) -> None:
        #: "" for a finished element, "^", "_" or "_^" for a script node (parts: base, then scripts)
        self.kind = kind
        #: the token that made it (the walker tests it: \sum, \gcd)
        self.token = token
        self.parts = parts
        self.modifier = modifier
        #: how many primes a superscript made by "'" holds (another "^" joins one prime instead of raising)
        self.prime = 0

    def xml(self) -> str:
        kind = self.kind
        if not kind:
            return self.parts[0]
        if kind in ("sep", "limits", "style"):  # a marker where the walker would give an element of it
            raise _Unsupported(self.token)
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
        #: the token that ends the group being read: an argument cannot start with it
        self.end: str | None = None

    def take(self) -> str:
        if self.pos >= len(self.toks):
            raise _Unsupported("missing argument")
        self.pos += 1
        return self.toks[self.pos - 1]

    def sequence(self, end: str | None, block: bool, font: _Font) -> str:
        """The elements up to `end` (taken) or the last token (when `end` is None)."""
        return _join(self.nodes(end, block, font, False))

    def nodes(self, end: str | None, block: bool, font: _Font, table: bool) -> list[_Node]:
        """The walker's group up to `end`; in a `table`, "&" and "\\\\" are separator nodes."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Unsupported("nested too deep")
        outer, self.end = self.end, end
        nodes: list[_Node] = []
        toks, n = self.toks, len(self.toks)
        #: displaystyle of the innermost \displaystyle-like mstyle opened in this group: a binom's size
        style = None
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
            elif tok == cmd.LIMITS or tok == cmd.NOLIMITS:
                nodes.append(_Node("limits", tok, ()))
            elif tok in _STYLES and not table:  # in a table cell the mstyle would stay empty
                tag, attrs = _STYLES[tok]
                style = attrs.get("displaystyle")
                nodes.append(_Node("style", tok, (f"<{tag}{_attributes(attrs)}>",)))
            elif tok in _TABLES:
                name = _TABLES[tok][0]
                nodes.append(_Node("", "\\" + name, (self.table(name, block),)))
            elif tok in _BINOMS and style == "false":
                raise _Unsupported("binom in text style")
            else:
                nodes.append(self.node(tok, font))
        self.depth -= 1
        self.end = outer
        return nodes

    def table(self, name: str, block: bool) -> str:
        """An environment: latex2mathml's _convert_matrix for it (no lines, no numbers, no font)."""
        nodes = self.nodes(rf"{cmd.END}{{{name}}}", block, None, True)
        if not nodes or nodes[0].token in ("{", "["):  # an alignment spec, or an empty table
            raise _Unsupported("table spec")
        _, alignment, fences = _TABLES[rf"{cmd.BEGIN}{{{name}}}"]

        def column(col: int) -> tuple[str, int]:
            if not alignment:
                return "<mtd>", col
            return f'<mtd columnalign="{_COLUMNS[alignment[col % len(alignment)]]}">', col + 1

        opening, col = column(0)
        cell: list[str] = [opening]
        row = [cell]
        rows = [row]
        widest = col
        for node in nodes:
            if node.kind == "sep" and node.token == "&":
                opening, col = column(col)
                cell = [opening]
                row.append(cell)
                if name == "align*" and col % 2 == 0:
                    cell.append("<mi></mi>")
            elif node.kind == "sep":
                widest = max(widest, col)
                opening, col = column(0)
                cell = [opening]
                row = [cell]
                rows.append(row)
            else:
                cell.append(node.xml())
        widest = max(widest, col)
        if len(cell) == 1:  # the last cell is empty: its row goes
            rows.pop()
        tag, attrs = cmd.CONVERSION_MAP["\\" + name]
        if name == "align*":
            attrs = {**attrs, "columnspacing": " ".join(("0em", "2em") * (widest // 2))}
        body = "".join(f"<mtr>{''.join(''.join(c) + '</mtd>' for c in cells)}</mtr>" for cells in rows)
        out = f"<{tag}{_attributes(attrs)}>{body}</{tag}>"
        if name == "cases":
            brace = _element("mo", {"stretchy": "true", "fence": "true", "form": "prefix"}, "{", None, None)
            return f"<mrow>{brace}{out}</mrow>"
        if fences is not None:
            before, after = (f"<mo>{_symbol(SYMBOLS[fence])}</mo>" for fence in fences)
            return f"{before}{out}{after}"
        return out

    def argument(self, font: _Font, *, group: bool = True) -> _Node:
        """The one node a command or script takes (the walker's limit=1; `group`: within the group's end)."""
        tok = self.take()
        if tok in ("^", "_", "'", "}", cmd.RIGHT, cmd.DOUBLEBACKSLASH, cmd.LIMITS, cmd.NOLIMITS) or tok in _STYLES:
            raise _Unsupported("missing argument")
        if group and tok == self.end:
            raise _Unsupported("argument cut by the group's end")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Unsupported("nested too deep")
        node = self.node(tok, font)
        self.depth -= 1
        return node

    def script(self, nodes: list[_Node], tok: str, block: bool, font: _Font) -> None:
        if not nodes or nodes[-1].kind in ("sep", "style"):
            raise _Unsupported("script without base")
        prev = nodes.pop()
        modifier = None
        if prev.kind == "limits":  # \sum\limits_a: the operator before it, its scripts above and below
            modifier = prev.token
            if not nodes or nodes[-1].kind or not nodes[-1].token.startswith("\\"):
                raise _Unsupported("limits without operator")
            prev = nodes.pop()
        elif prev.kind == tok and not (tok == "^" and prev.prime == 1):
            raise _Unsupported("double script")
        elif block and not prev.kind and prev.token in (cmd.SUMMATION, cmd.PRODUCT):
            modifier = cmd.LIMITS
        arg = self.argument(font).xml()
        if tok == "_" and prev.kind == "^":
            node = _Node("_^", prev.token, (prev.parts[0], arg, prev.parts[1]), prev.modifier)
        elif tok == "^" and prev.kind == "_":
            node = _Node("_^", prev.token, (*prev.parts, arg), prev.modifier)
        elif tok == "^" and prev.kind == "^":  # x'^2: the prime and the exponent in one row
            node = _Node("^", prev.token, (prev.parts[0], f"<mrow>{prev.parts[1]}{arg}</mrow>"), prev.modifier)
        else:
            if not prev.kind and prev.token in (cmd.OVERBRACE, cmd.UNDERBRACE):
                modifier = prev.token
            # A script node's own token is its base's (\gcd below and above is munderover), a plain base's only.
            node = _Node(tok, "" if prev.kind else prev.token, (prev.xml(), arg), modifier)
        nodes.append(node)

    def prime(self, nodes: list[_Node], font: _Font) -> None:
        if not nodes or nodes[-1].kind in ("sep", "style", "limits"):
            raise _Unsupported("prime without base")
        prev = nodes.pop()
        if prev.kind == "^" and prev.prime:  # x'' is x with \dprime, and so on
            count = prev.prime + 1
            # Past \qprime the walker counts them, and the converter writes them without a font.
            mark = _leaf(_PRIMES[count], font) if count < len(_PRIMES) else f"<mi>{_PRIME_CHAR * count}</mi>"
            node = _Node("^", prev.token, (prev.parts[0], mark))
            node.prime = count
            nodes.append(node)
            return
        if prev.kind == "^":
            raise _Unsupported("double superscript")
        mark = _leaf(cmd.PRIME, font)
        if prev.kind == "_":
            nodes.append(_Node("_^", prev.token, (*prev.parts, mark), prev.modifier))
            return
        node = _Node("^", "" if prev.kind else prev.token, (prev.xml(), mark))
        node.prime = 1
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
        if tok == cmd.MBOX or tok == cmd.HBOX:
            text = self.take()
            # \hbox reads $…$ in its text as maths (and drops backslashes): only plain text here.
            if tok == cmd.HBOX and (not text or "$" in text or "\\" in text):
                raise _Unsupported("hbox with maths")
            box = _element("mtext", None, _text(text.replace(" ", "&#x000A0;")), font, "mtext")
            return _Node("", tok, (f'<mstyle displaystyle="false" scriptlevel="0">{box}</mstyle>',))
        if tok in _TWO_ARGUMENTS:
            return _Node("", tok, (self.two_arguments(tok, font),))
        if tok == cmd.SQRT:
            return _Node("", tok, (self.root(font),))
        if tok in _ACCENTS:
            (tag, attrs), (mark, mark_attrs) = _ACCENTS[tok]
            inner = self.argument(font).xml()
            over = _element("mo", mark_attrs, _text(mark), None, None)
            return _Node("", tok, (f"<{tag}{_attributes(attrs)}>{inner}{over}</{tag}>",))
        if tok == cmd.LEFT:
            return _Node("", tok, (self.fenced(font),))
        if tok in _BIGS:
            delimiter = self.take()  # any token, as the walker takes it
            tag, attrs = _BIGS[tok]
            return _Node("", tok, (_element(tag, attrs, _text(delimiter), font, "mtext"),))
        if tok in cmd.LIMIT:
            return _Node("", tok, (f"<mo>{tok[1:]}</mo>",))
        if tok in _SPACES:
            tag, attrs = _SPACES[tok]
            return _Node("", tok, (f"<{tag}{_attributes(attrs)}></{tag}>",))
        if tok.startswith(cmd.OPERATORNAME):
            return _Node("", tok, (_operatorname(tok),))
        return _Node("", tok, (_leaf(tok, font),))

    def two_arguments(self, tok: str, font: _Font) -> str:
        """\\frac, \\dfrac, \\binom, \\overset and the like."""
        tag, attrs, wrapper, swapped = _TWO_ARGUMENTS[tok]
        first = self.argument(font).xml()
        second = self.argument(font).xml()
        if swapped:
            first, second = second, first
        out = f"<{tag}{_attributes(attrs)}>{first}{second}</{tag}>"
        if tok in _BINOMS:
            # Parentheses as siblings, sized for the mstyle they are in (the caller refuses a text-style one).
            size = "1.2em" if tok == cmd.TBINOM else "2.047em"
            paren = f'<mo minsize="{size}" maxsize="{size}">'
            out = f"{paren}(</mo>{out}{paren})</mo>"
        if wrapper is not None:
            out = f"<mstyle{_attributes(wrapper)}>{out}</mstyle>"
        return out

    def root(self, font: _Font) -> str:
        """\\sqrt{x} and \\sqrt[n]{x}."""
        if self.pos < len(self.toks) and self.toks[self.pos] == "[":
            self.pos += 1
            index = self.nodes("]", False, font, False)
            base = self.argument(font, group=False).xml()
            if not index:
                return f"<msqrt>{base}</msqrt>"
            degree = index[0].xml() if len(index) == 1 else f"<mrow>{_join(index)}</mrow>"
            return f"<mroot>{base}{degree}</mroot>"
        return f"<msqrt>{self.argument(font, group=False).xml()}</msqrt>"

    def fenced(self, font: _Font) -> str:
        """\\left…\\right: an mrow of the two stretchy fences and what is between."""
        opening = self.take()
        inner = self.nodes(cmd.RIGHT, False, font, False)
        closing = self.take()
        fences = []
        for delimiter, (tag, attrs) in (
            (opening, cmd.CONVERSION_MAP[cmd.LEFT]),
            (closing, cmd.CONVERSION_MAP[cmd.RIGHT]),
        ):
            symbol = SYMBOLS.get(delimiter)  # any token, as the walker takes it
            raw = "" if delimiter == "." else delimiter if symbol is None else f"&#x{symbol};"
            fences.append(_element(tag, attrs, _text(raw), None, None))
        # \right is the last child of \left's group: an mstyle opened inside holds it too.
        return f"<mrow>{fences[0]}{_join(inner, fences[1])}</mrow>"


def _join(nodes: list[_Node], last: str = "") -> str:
    """The group's elements (then `last`); a \\displaystyle-like node holds the rest of the group."""
    out = [node.xml() if node.kind != "style" else node.parts[0] for node in nodes]
    out.append(last)
    out.extend("</mstyle>" for node in nodes if node.kind == "style")
    return "".join(out)


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
        f'<annotation encoding="application/x-tex">{escape_text(source)}</annotation></semantics></math>'
    )
