"""One LaTeX formula as plain Unicode text that keeps its meaning: grouping, fractions, scripts.

``\\frac{1}{Z}p(x)`` → ``(1/Z)·p(x)``, ``x^2`` → ``x²``, ``\\mathbb{R}^{d_{model}}`` →
``ℝ^(d_model)``: whatever is more than one symbol is put in parentheses where the
plain text would otherwise read as different maths. Symbols (``\\alpha``,
``\\mathbb{R}``, accents) come from pylatexenc, one macro at a time. Macros that
only style, link or number (``\\href``, ``\\style``, ``\\label``, ``\\tag``…) keep
their readable argument or vanish. Pure; raises ``MathTextError`` past its
nesting bound, and the caller falls back to stripping the markup.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from pylatexenc.latex2text import LatexNodes2Text

#: deepest group/argument nesting converted; deeper formulas lose their markup instead
MAX_DEPTH = 60

_TOKEN = re.compile(r"\\[A-Za-z]+\*?|\\.|[{}^_&]|\s+|[^\\{}^_&\s]", re.S)

_SUP = dict(
    zip(
        "0123456789+-−=()abcdefghijklmnoprstuvwxyzABDEGHIJKLMNOPRTUVWβγδθφχ",
        "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᴬᴮᴰᴱᴳᴴᴵᴶᴷᴸᴹᴺᴼᴾᴿᵀᵁⱽᵂᵝᵞᵟᶿᵠᵡ",
        strict=True,
    )
)
_SUB = dict(zip("0123456789+-−=()aehijklmnoprstuvxβγρφχ", "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓᵦᵧᵨᵩᵪ", strict=True))
#: one symbol: a word or number (with accents and Unicode scripts), or one character
_SCRIPTS = "[" + "".join(_SUP.values()) + "".join(_SUB.values()) + "]*"
_ATOM = r"(?:[^\W\d_]+|[0-9]+(?:\.[0-9]+)?|[^\s(){}\[\]^_])[\u0300-\u036f\u20d0-\u20ff]*"
# ...then scripts (which bind tighter than "/") and at most one argument list: "Δ_K", "q(xⱼ)", "x²".
_SIMPLE = re.compile(
    _ATOM + _SCRIPTS + r"(?:[_^](?:" + _ATOM + r"|\((?:[^()]|\([^()]*\))*\)))*(?:\([^()]*\))?" + _SCRIPTS
)
_TRAILING_SCRIPTS = re.compile(_SCRIPTS + "$")
_SCRIPT_CHARS = set(_SUP.values()) | set(_SUB.values())
_BARE = re.compile(r"(?:[^\W\d_]+|[0-9]+(?:\.[0-9]+)?|[^\s(){}\[\]])[\u0300-\u036f\u20d0-\u20ff]*")
_OPEN, _CLOSE = "([{⟨", ")]}⟩"
_OPERATORS = set("+-−=<>,;:/·×÷±∓*!|‖⌊⌋⌈⌉") | set(_OPEN) | set(_CLOSE)
#: math symbols that stand for a term, not between two ("½∑ᵢ" would hide the fraction)
_TERMS = set("∑∏∐∫∬∭∮⋃⋂⨁⨂⨀√∛∜∇∂∞∅")

# Two-argument macros whose second argument is what a reader sees (MathJax/KaTeX extensions).
_KEEP_SECOND = {
    "href",
    "style",
    "class",
    "cssId",
    "htmlClass",
    "htmlId",
    "htmlStyle",
    "htmlData",
    "texttip",
    "mathtip",
    "toggle",
}
# Housekeeping: numbering, labels, loading; nothing of them is maths.
_DROP_WITH_ARG = {
    "label",
    "tag",
    "require",
    "hspace",
    "vspace",
    "phantom",
    "hphantom",
    "vphantom",
    "color",
    "pagecolor",
}
_DROP = {"nonumber", "notag", "left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl",
         "biggr", "Biggl", "Biggr", "middle", "displaystyle", "textstyle", "scriptstyle", "scriptscriptstyle", "limits",
         "nolimits"}  # fmt: skip
_TEXT = {"text", "textrm", "textbf", "textit", "textsf", "texttt", "textnormal", "mbox", "hbox", "mathrm", "mathit",
         "mathsf", "mathtt", "operatorname", "mathop", "emph", "html", "boxed", "mathbin", "mathrel", "mathord",
         "underline"}  # fmt: skip
# Fonts and accents pylatexenc turns into Unicode (ℝ, 𝐱, ŷ) when the argument is a plain symbol.
_STYLED = {"mathbb", "mathcal", "mathfrak", "mathscr", "mathbf", "boldsymbol", "bm", "hat", "widehat", "tilde",
           "widetilde", "bar", "overline", "vec", "dot", "ddot", "acute", "grave", "breve", "check",
           "mathring"}  # fmt: skip
# A matrix's brackets, by the environment's first letter (pmatrix, bmatrix, Bmatrix, vmatrix, cases).
_MATRIX_BRACKETS = {
    "begin": {"p": "(", "b": "[", "B": "{", "v": "|", "c": "{"},
    "end": {"p": ")", "b": "]", "B": "}", "v": "|", "c": ""},
}
_FRACTIONS = {"frac", "dfrac", "tfrac", "cfrac"}
_CITES = {"cite", "citep", "citet", "citealp", "citealt", "citeauthor", "citeyear", "parencite", "textcite", "autocite"}


class MathTextError(Exception):
    """The formula is nested deeper than MAX_DEPTH."""


@dataclass
class _Piece:
    """A run of output: `kind` says how it joins its neighbours."""

    text: str
    #: "atom" (one symbol), "op", "space", "group" (several symbols), "frac", "root"
    kind: str
    #: the scripts already on it ("^", "_"): a second one of a kind needs parentheses
    scripts: str = ""


@functools.cache
def _latex() -> LatexNodes2Text:
    return LatexNodes2Text(math_mode="text", strict_latex_spaces="based-on-source", keep_comments=False)


@functools.lru_cache(maxsize=4096)
def _pylatexenc(source: str) -> str:
    try:
        out = _latex().latex_to_text(source)
    except Exception:
        return ""
    return out.replace("%s", "").replace("\\", "")


def cite_text(keys: str) -> str:
    """``[BengioSF94]`` for ``journals/tnn/BengioSF94``: a citation as ShortScience's BibTeX key names it."""
    names = [k.strip().rsplit("/", 1)[-1] for k in keys.split(",")]
    names = [n for n in names if n]
    return "[" + ", ".join(names) + "]" if names else "[ref]"


def unicode_char(code: str) -> str:
    """MathJax's ``\\unicode{x41}`` (or ``{65}``) as its character, when it is a visible one."""
    code = code.strip()
    try:
        cp = int(code[1:], 16) if code[:1] in ("x", "X") else int(code, 0 if code.startswith("0x") else 10)
        char = chr(cp)
    except (ValueError, OverflowError):
        return ""
    return char if unicodedata.category(char)[0] in "LNPS" else ""


def script(text: str, mark: str) -> str:
    """`text` as a super- (mark "^") or subscript ("_"): Unicode when every character has one, else grouped."""
    table = _SUP if mark == "^" else _SUB
    if text and all(c in table for c in text):
        return "".join(table[c] for c in text)
    # "x^y²" would read as (xʸ)²: only a bare word, number or character goes without parentheses.
    bare = _BARE.fullmatch(text) and not _SCRIPT_CHARS.intersection(text)
    return mark + (text if bare else f"({text})")


def simple(text: str) -> bool:
    """Whether `text` reads as one symbol: a word, a number, one character, or all in one pair of parentheses."""
    if _SIMPLE.fullmatch(text):
        return True
    text = _TRAILING_SCRIPTS.sub("", text)  # "(x+1)²" is one symbol squared
    if len(text) < 2 or text[0] != "(" or text[-1] != ")":
        return False
    depth = 0
    for i, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if depth == 0 and i < len(text) - 1:
            return False
    return depth == 0


def wrap(text: str) -> str:
    return text if not text or simple(text) else f"({text})"


class _Converter:
    def __init__(self, tex: str) -> None:
        self.tokens = _TOKEN.findall(tex)
        self.pos = 0
        self.depth = 0

    def next(self) -> str | None:
        if self.pos >= len(self.tokens):
            return None
        self.pos += 1
        return self.tokens[self.pos - 1]

    def peek_nonspace(self) -> str | None:
        while self.pos < len(self.tokens) and self.tokens[self.pos].isspace():
            self.pos += 1
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def sequence(self, closing: bool) -> list[_Piece]:
        """Pieces up to the matching "}" (when `closing`) or the end."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise MathTextError(f"formula nested deeper than {MAX_DEPTH}")
        pieces: list[_Piece] = []
        while (tok := self.next()) is not None:
            if tok == "}":
                if closing:
                    break
                continue
            if tok in ("^", "_"):
                self.attach(pieces, tok)
            else:
                pieces.extend(self.atom(tok))
        self.depth -= 1
        return pieces

    def attach(self, pieces: list[_Piece], mark: str) -> None:
        while pieces and pieces[-1].kind == "space":
            pieces.pop()
        arg = join(self.argument())
        if not pieces:
            pieces.append(_Piece("", "atom"))
        base = pieces[-1]
        if mark in base.scripts or base.kind in ("group", "frac", "root"):
            base.text = f"({base.text})" if base.text else ""
            base.kind, base.scripts = "atom", ""
        base.text += script(arg, mark)
        base.scripts += mark

    def argument(self) -> list[_Piece]:
        tok = self.peek_nonspace()
        if tok is None:
            return []
        self.pos += 1
        if tok == "{":
            return self.sequence(closing=True)
        if tok in ("}", "^", "_"):
            self.pos -= 1
            return []
        return self.atom(tok)

    def raw_argument(self) -> str:
        """The source of a braced argument, unconverted (labels, keys, URLs)."""
        if self.peek_nonspace() != "{":
            return ""
        self.pos += 1
        depth, out = 1, []
        while (tok := self.next()) is not None:
            depth += (tok == "{") - (tok == "}")
            if depth == 0:
                break
            out.append(tok)
        return "".join(out)

    def atom(self, tok: str) -> list[_Piece]:
        if tok == "{":
            return [_group(self.sequence(closing=True))]
        if tok.isspace():
            return [_Piece(" ", "space")]
        if tok == "&":
            return [_Piece(" ", "space")]
        if tok.startswith("\\"):
            return self.macro(tok[1:].rstrip("*") or tok[1:])
        if tok == "-":
            tok = "−"
        return [
            _Piece(
                tok, "op" if tok in _OPERATORS or (unicodedata.category(tok) == "Sm" and tok not in _TERMS) else "atom"
            )
        ]

    def macro(self, name: str) -> list[_Piece]:
        if name in _FRACTIONS:
            num, den = join(self.argument()), join(self.argument())
            return [_Piece(f"{wrap(num)}/{wrap(den)}", "frac")] if num or den else []
        if name == "sqrt":
            index = ""
            if self.peek_nonspace() == "[":
                index = self.bracket_argument()
            radicand = wrap(join(self.argument()))
            root = {"": "√", "2": "√", "3": "∛", "4": "∜"}.get(index)
            if root is None:
                root = script(index, "^").lstrip("^") + "√" if all(c in _SUP for c in index) else f"root{wrap(index)}"
            return [_Piece(root + radicand, "root")]
        if name in ("begin", "end"):
            env = self.raw_argument()
            if env.startswith(("pmatrix", "bmatrix", "Bmatrix", "vmatrix", "cases")):
                return [_Piece(_MATRIX_BRACKETS[name][env[0]], "op")]
            return []
        return self.other_macro(name)

    def other_macro(self, name: str) -> list[_Piece]:
        """Macros that style, link, cite or number, and symbols."""
        if name in _KEEP_SECOND:
            self.raw_argument()
            return [_group(self.argument())]
        if name in _DROP_WITH_ARG:
            self.raw_argument()
            return []
        if name in _DROP:
            return []
        if name == "unicode":
            return [_Piece(unicode_char(self.raw_argument()), "atom")]
        if name in _CITES:
            return [_Piece(cite_text(self.raw_argument()), "atom")]
        if name in _TEXT:
            return [_Piece(join(self.argument()), "atom")]
        if name in _STYLED:
            inner = self.raw_argument() if self.peek_nonspace() == "{" else (self.next() or "")
            if re.fullmatch(r"[A-Za-z0-9]{1,8}|\\[A-Za-z]+", inner):
                return [_Piece(_pylatexenc(f"\\{name}{{{inner}}}"), "atom")]
            return [_group(self.inner(inner))]
        if name == "\\":  # a new row of a matrix, cases or aligned equations
            return [_Piece("; ", "op")]
        if not name.isalpha():
            # \{ \} \, \; \! \% \$ \# \& \_ \|
            return [
                _Piece(
                    {",": " ", ";": " ", ":": " ", "!": "", " ": " ", "|": "‖"}.get(name, name),
                    "atom" if name in "#$%&_" else "op",
                )
            ]
        text = _pylatexenc("\\" + name)
        if not text.strip():
            return [_Piece(" ", "space")] if text else []
        kind = (
            "op"
            if len(text) == 1 and text not in _TERMS and (text in _OPERATORS or unicodedata.category(text) == "Sm")
            else "atom"
        )
        return [_Piece(text, kind)]

    def bracket_argument(self) -> str:
        self.pos += 1  # the "["
        out: list[str] = []
        while (tok := self.next()) is not None and tok != "]":
            out.append(tok)
        return join(self.inner("".join(out)))

    def inner(self, tex: str) -> list[_Piece]:
        """A piece of source converted on its own, at this depth (nesting stays bounded)."""
        converter = _Converter(tex)
        converter.depth = self.depth
        return converter.sequence(closing=False)


def _group(pieces: list[_Piece]) -> _Piece:
    text = join(pieces)
    solid = [p for p in pieces if p.kind != "space"]
    if len(solid) == 1:
        return _Piece(text, solid[0].kind, solid[0].scripts)
    # "10ᵃ" made of "1" and "0ᵃ" still ends in a superscript: a second one needs parentheses.
    return _Piece(text, "atom" if simple(text) else "group", solid[-1].scripts if solid else "")


def _bracket(text: str) -> str:
    """ "Ps" for an opening bracket, "Pe" for a closing one, "" otherwise."""
    category = unicodedata.category(text) if len(text) == 1 else ""
    return category if category in ("Ps", "Pe") else ""


def join(pieces: list[_Piece]) -> str:
    """The pieces as text; a fraction next to a symbol is put in parentheses ("(1/Z)·p", not "1/Zp")."""
    out: list[str] = []
    solid = [p for p in pieces if p.kind != "space"]
    index = {id(p): i for i, p in enumerate(solid)}
    glued = False  # a "·" was just written: the space after it goes
    for piece in pieces:
        text = piece.text
        if glued and piece.kind == "space":
            continue
        glued = False
        if piece.kind == "frac" and text:
            i = index[id(piece)]
            before = solid[i - 1] if i > 0 else None
            after = solid[i + 1] if i + 1 < len(solid) else None
            touches_before = before is not None and (
                before.kind != "op" or before.text in ("/", "·", "×", "÷") or _bracket(before.text) == "Pe"
            )
            touches_after = after is not None and (after.kind != "op" or _bracket(after.text) == "Ps")
            if touches_before or touches_after:
                text = f"({text})" + ("·" if touches_after else "")
                glued = touches_after
        out.append(text)
    return re.sub(r"\s+", " ", "".join(out)).replace(" ;", ";").strip(" ;")


def tex_to_text(tex: str) -> str:
    """One formula as readable Unicode with its grouping kept; MathTextError past MAX_DEPTH."""
    return join(_Converter(tex).sequence(closing=False))


_MACRO = re.compile(r"\\([A-Za-z]+|.)")
_TEX_SPECIALS = re.compile(r"[{}^_]")


def strip_tex(tex: str) -> str:
    """The formula's markup dropped, not converted: linear in its length, for what is too big or deep to convert."""
    out = _MACRO.sub(lambda m: m.group(1) if m.group(1).isalpha() else "", tex)
    return _TEX_SPECIALS.sub("", out)


# In prose (TeX outside $…$): citations, links and housekeeping written as in a paper.
# PROSE_CITE: a citation, group 1 its comma-separated keys (also used by the HTML renderer).
PROSE_CITE = re.compile(r"\\(?:" + "|".join(sorted(_CITES)) + r")\*?(?:\[[^\]\n]{0,200}\])*\{([^{}\n]{0,500})\}")
_PROSE_KEEP_SECOND = re.compile(
    r"\\(?:" + "|".join(sorted(_KEEP_SECOND)) + r")\{[^{}\n]{0,2000}\}\{([^{}\n]{0,2000})\}"
)
_PROSE_DROP = re.compile(r"\\(?:label|tag|require|unicode)\*?\{[^{}\n]{0,500}\}|\\(?:nonumber|notag)(?![A-Za-z])")


def prose_tex(text: str) -> str:
    """Prose with the TeX a reader must not see resolved: \\cite → [Key], \\href{url}{text} → text, \\label… dropped."""
    if "\\" not in text:
        return text
    text = PROSE_CITE.sub(lambda m: cite_text(m.group(1)), text)
    text = _PROSE_KEEP_SECOND.sub(r"\1", text)
    return _PROSE_DROP.sub("", text)


_MATH_HOUSEKEEPING = re.compile(r"\\(?:label|tag)\*?\s*\{[^{}]{0,500}\}|\\(?:nonumber|notag)(?![A-Za-z])")
_MATH_CITE = re.compile(r"\\(?:" + "|".join(sorted(_CITES)) + r")\*?(?:\[[^\]]{0,200}\])*\s*\{([^{}]{0,500})\}")


def tidy_tex(tex: str) -> str:
    """TeX for a MathML converter: numbering and labels dropped, \\cite{key} made the text "[Key]"."""
    if "\\" not in tex:
        return tex
    tex = _MATH_HOUSEKEEPING.sub("", tex)
    return _MATH_CITE.sub(lambda m: "\\text{" + re.sub(r"[\\{}$]", "", cite_text(m.group(1))) + "}", tex)
