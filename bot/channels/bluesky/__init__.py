"""The Bluesky channel: posts with facets and a link card on an AT Protocol PDS, exactly once by record key.

``settings`` declares its section and variables, ``post`` renders and fits
a post (pure), ``tid`` chooses the record key, ``publisher`` talks to the PDS
through the atproto SDK, ``vault`` keeps the login session between posts.
Nothing here reads the environment or the store by itself: the registry
wires it.
"""

from __future__ import annotations

CHANNEL = "bluesky"
#: the dry-run outbox file of this channel
OUTBOX_NAME = "bluesky.jsonl"
