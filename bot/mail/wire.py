"""A digest's bytes: its two bodies quoted-printable encoded once, and its message and SMTP DATA as a layout.

The wire-encoding half of ``bot.mail.message`` (which renders the digest and
fills in each recipient): the bodies encoded with holes for the links
(``_EncodedBody``), the message split around its bodies (``_Skeleton``), and
the shared bytes with numbered holes, as the message and as SMTP DATA with its
dots stuffed once (``_Layout``), and what a recipient's holes take (a link's
encoding, the Date header). Pure: bytes in, bytes out.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from bot.errors import RenderError
from bot.mail.base import crlf_only, dot_stuffed, flatten


def _crlf(text: str) -> str:
    """Every line end as CRLF, and a final one (SMTP's line ends, so QP keeps them as hard breaks)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    return text.replace("\n", "\r\n")


def _qp(text: str) -> bytes:
    """Quoted-printable bytes with CRLF line ends (binascii, in C).

    istext=True keeps line ends as hard breaks; '=' and non-ASCII become =XX,
    so nothing in a body can ever look like a MIME boundary (they start with '=').
    """
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    # binascii takes the line end style from the first line end it meets; a piece
    # without one gets its soft breaks as bare LF.
    if b"\n" in encoded and b"\r\n" not in encoded:
        encoded = encoded.replace(b"\n", b"\r\n")
    return encoded


_SOFT_BREAK = b"=\r\n"


@dataclass(frozen=True, slots=True)
class _EncodedBody:
    """A part's body encoded once (quoted-printable), with holes where each recipient's links go.

    Each link goes on lines of its own, joined to its neighbours by soft line
    breaks (invisible once decoded), so the encoded text around it never
    changes and no recipient's message needs encoding beyond their links.
    """

    #: encoded pieces; between pieces[i] and pieces[i + 1] goes the link holes[i]
    pieces: tuple[bytes, ...]
    #: which link each hole takes: 0 unsubscribe, 1 preferences
    holes: tuple[int, ...]

    @classmethod
    def encode(cls, text: str, marks: tuple[str, str]) -> _EncodedBody:
        pattern = re.compile("|".join(re.escape(m) for m in marks))
        pieces: list[bytes] = []
        holes: list[int] = []
        pos = 0
        for found in pattern.finditer(text):
            pieces.append(_qp(text[pos : found.start()]) + _SOFT_BREAK)
            holes.append(marks.index(found.group()))
            pos = found.end()
        last = _qp(text[pos:])
        # The text ends with CRLF; the skeleton has that one.
        pieces.append(last[:-2] if last.endswith(b"\r\n") else last)
        return cls(tuple(pieces), tuple(holes))

    def segments(self, names: tuple[int, int]) -> list[bytes | int]:
        """The body as layout segments: its pieces, and in each hole the number `names` gives its link."""
        out: list[bytes | int] = [self.pieces[0]]
        for hole, piece in zip(self.holes, self.pieces[1:], strict=True):
            out.append(names[hole])
            out.append(piece)
        return out


def _boundary(subject: str, text: str, html_body: str, marks: tuple[str, str]) -> str:
    """A MIME boundary from the content (not the random placeholders), the same in every process.

    It starts with '=', which quoted-printable bodies never hold unescaped, so
    it cannot occur in them.
    """
    content = "\0".join((subject, text, html_body))
    for i, mark in enumerate(marks):
        content = content.replace(mark, f"\0{i}\0")
    return "=_" + hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()[:40]


@functools.lru_cache(maxsize=8)
def _date_header(now: datetime) -> str:
    # A digest dates every copy with its build time: formatted once, not per recipient.
    return format_datetime(now)


_NEEDS_ESCAPE = re.compile("[&<>\"']")


def _link(url: str) -> bytes:
    return _qp(url) + _SOFT_BREAK


@dataclass(frozen=True, slots=True)
class _Skeleton:
    """A message's bytes around the parts that differ per recipient."""

    #: the From line (first, as mail clients list it)
    first: bytes
    #: the shared headers after the per-recipient ones, and the first part's headers
    head: bytes
    #: between the text part's body and the HTML part's body
    middle: bytes
    #: after the HTML part's body (the closing boundary)
    tail: bytes

    @classmethod
    def build(cls, message: EmailMessage, text_mark: str, html_mark: str) -> _Skeleton:
        raw = flatten(message)
        headers, sep, body = raw.partition(b"\r\n\r\n")
        lines = headers.split(b"\r\n")
        if not lines[0].startswith(b"From:") or any(line[:1] in (b" ", b"\t") for line in lines[1:2]):
            raise RenderError("digest skeleton: unexpected header layout")  # pragma: no cover - our own message
        before_text, _, rest = body.partition(text_mark.encode())
        between, _, after_html = rest.partition(html_mark.encode())
        if not rest or not after_html:
            raise RenderError("digest skeleton: body placeholders not found")  # pragma: no cover
        return cls(
            first=lines[0] + b"\r\n",
            head=b"\r\n".join(lines[1:]) + sep + before_text,
            middle=between,
            tail=after_html,
        )


#: the numbers of a layout's holes: what each recipient's message fills in
_PERSONAL, _TEXT_UNSUBSCRIBE, _TEXT_PREFERENCES, _HTML_UNSUBSCRIBE, _HTML_PREFERENCES = range(5)


@dataclass(frozen=True, slots=True)
class _Layout:
    """A digest message as shared bytes and numbered holes for what differs per recipient, twice:
    as the message, and as SMTP DATA (dots stuffed, the final dot line added).

    The DATA form is made once here, so no recipient's 20-odd kilobytes are
    scanned for line ends and dots again at sending time. Every hole starts a
    line and every value put in one is CRLF-clean and ends with CRLF (the
    personal headers, from values checked to be one line; a link, quoted-
    printable ending with a soft break): that is what lets the shared bytes be
    stuffed without knowing the values.
    """

    #: the message's segments, with b"" where the holes are
    plain: tuple[bytes, ...]
    #: the same as SMTP DATA (one segment more: the final dot); None if a shared piece has
    #: a bare CR or LF (then the mailer prepares the message)
    wire: tuple[bytes, ...] | None
    #: (segment index, hole number: _PERSONAL, _TEXT_UNSUBSCRIBE, ...) for each hole
    holes: tuple[tuple[int, int], ...]

    @classmethod
    def build(cls, segments: list[bytes | int]) -> _Layout:
        plain = tuple(b"" if isinstance(x, int) else x for x in segments)
        holes = tuple((at, x) for at, x in enumerate(segments) if isinstance(x, int))
        wire: list[bytes] = []
        line_start = True
        for segment in segments:
            if isinstance(segment, int):
                if not line_start:
                    raise RenderError("digest layout: a recipient's part does not start a line")  # pragma: no cover
                wire.append(b"")
                continue
            if not crlf_only(segment):
                return cls(plain, None, holes)
            wire.append(dot_stuffed(segment, line_start=line_start))
            line_start = segment.endswith(b"\n") if segment else line_start
        wire.append(b".\r\n" if line_start else b"\r\n.\r\n")
        return cls(plain, tuple(wire), holes)

    def fill(self, values: tuple[bytes, ...]) -> tuple[bytes, bytes | None]:
        """(the message, its SMTP DATA or None) with `values[n]` in the holes numbered n."""
        parts = list(self.plain)
        for at, hole in self.holes:
            parts[at] = values[hole]
        data = b"".join(parts)
        if self.wire is None:
            return data, None
        parts = list(self.wire)
        for at, hole in self.holes:
            parts[at] = dot_stuffed(values[hole], line_start=True)
        return data, b"".join(parts)
