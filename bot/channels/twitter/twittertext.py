"""twitter-text-parser's two entry points we call, each loaded on first use with no more than it needs.

The package's `__init__` imports `parse_tweet`, whose emoji table is built at import
(pkg_resources, a 4,000-line file parsed, a regex of every emoji compiled: about
0.2 s of CPU). Fitting a post needs only the URL extraction (`extract_urls`) as long
as the upper bound of the weight proves it fits; the exact count (`parse_tweet`) is
needed only when it does not. Both loaders share one lock: the URL extraction is
imported under a bare stand-in for the package, which no other import may see.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_loaded: dict[str, Callable[..., Any]] = {}


def url_extractor() -> Callable[[str], list[dict[str, Any]]]:
    """twitter_text's `extract_urls_with_indices`, imported without the package's `__init__` (and its emoji table)."""
    found = _loaded.get("urls")
    if found is None:
        with _lock:
            found = _loaded.get("urls") or _load_urls()
            _loaded["urls"] = found
    return found


def tweet_parser() -> Callable[[str], Any]:
    """twitter_text's `parse_tweet` (the whole package: its emoji table included)."""
    found = _loaded.get("parse")
    if found is None:
        with _lock:
            from twitter_text.parse_tweet import parse_tweet

            found = _loaded["parse"] = parse_tweet
    return found


def _load_urls() -> Callable[[str], list[dict[str, Any]]]:
    if "twitter_text" not in sys.modules:
        spec = importlib.util.find_spec("twitter_text")
        if spec is not None and spec.submodule_search_locations is not None:
            # A bare package module: its submodules import as usual (relative imports
            # included), and the real package, imported later, finds them loaded.
            bare = types.ModuleType("twitter_text")
            bare.__path__ = list(spec.submodule_search_locations)
            sys.modules["twitter_text"] = bare
            try:
                return importlib.import_module("twitter_text.extract_urls").extract_urls_with_indices
            finally:
                if sys.modules.get("twitter_text") is bare:
                    del sys.modules["twitter_text"]
    from twitter_text.extract_urls import extract_urls_with_indices

    return extract_urls_with_indices
