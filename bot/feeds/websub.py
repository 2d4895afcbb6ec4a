"""Tell a WebSub hub that feeds changed (hub.mode=publish); never raises."""

from __future__ import annotations

from collections.abc import Sequence

import httpx


def ping_websub(hub: str, feed_urls: Sequence[str], client: httpx.Client) -> list[str]:
    """POST hub.mode=publish, hub.url=<feed> for each feed; return one problem line per failure.

    A ping is a courtesy: hubs also poll, so a failure is reported, not raised.
    """
    problems: list[str] = []
    if not hub:
        return problems
    for url in feed_urls:
        try:
            response = client.post(hub, data={"hub.mode": "publish", "hub.url": url})
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            problems.append(f"WebSub ping for {url}: {type(exc).__name__}: {exc}")
            continue
        if not 200 <= response.status_code < 300:
            problems.append(f"WebSub ping for {url}: hub answered HTTP {response.status_code}")
    return problems
