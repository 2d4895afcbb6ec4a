"""What the X and Facebook publishers share below their client libraries.

A requests transport adapter that sends a library's fixed host to the
configured one with a default timeout, and the redaction of secrets from
every message that leaves a publisher. No publishing logic lives here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.exceptions import NewConnectionError


class HostAdapter(HTTPAdapter):
    """Rewrites ``prefix…`` to ``base…`` and applies a timeout when the caller set none.

    tweepy and facebook-sdk hard-code their hosts and neither takes a
    timeout for every call; mounting this on their ``requests.Session`` fixes
    both without patching the libraries. It also remembers, per thread, the
    last response it carried, so a publisher can read the status and headers
    of an answer the library turned into a bare exception.
    """

    def __init__(self, prefix: str, base: str, *, timeout: float) -> None:
        super().__init__()
        self.prefix = prefix
        self.base = base if base.endswith("/") else base + "/"
        self.timeout = timeout
        self._local = threading.local()
        # The proxy settings of our host, read from the environment once: reading
        # them per request scans the whole environment on every post.
        self._proxies = get_environ_proxies(self.base)

    def rewrite(self, url: str) -> str:
        if url.startswith(self.prefix):
            return self.base + url[len(self.prefix) :]
        return url

    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        self._local.last = None
        url = request.url or ""
        new_url = self.rewrite(url)
        if new_url != url:
            request.url = new_url
            # The session chose proxies for the library's host; ours apply instead.
            proxies = self._proxies
        response = super().send(
            request,
            stream=stream,
            timeout=self.timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )
        self._local.last = response
        return response

    @property
    def last_response(self) -> requests.Response | None:
        """The last response this thread received through the adapter, if the last send got one."""
        return getattr(self._local, "last", None)


def settle_environment(session: requests.Session) -> None:
    """Read what requests takes from the environment once, not on every request.

    With ``trust_env`` requests scans the whole environment (proxies, CA
    bundle) several times per request, a good part of a post's own cost.
    HostAdapter applies our host's proxies; the CA bundle is fixed here; the
    .netrc lookup it also skips is never wanted (every request carries its
    credentials).
    """
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the platform: the connection was never made.

    A connect timeout, a refused connection or a failed DNS lookup means no
    byte of the post left; anything later (a reset, a read timeout) may come
    after the platform took it, and must be reconciled, not blindly retried.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3 wraps it in MaxRetryError
    return isinstance(reason, NewConnectionError)  # NameResolutionError is one too


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by ***, longest first.

    URL-encoded forms count too: facebook-sdk puts the token in query strings,
    and requests' error texts quote the URL.
    """
    forms = set()
    for secret in secrets:
        if secret:
            forms.update({secret, quote(secret, safe=""), quote_plus(secret)})
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text
