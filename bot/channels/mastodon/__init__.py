"""The Mastodon channel: statuses fitted to the instance's limit, posted exactly once with Mastodon.py.

``settings`` declares its settings and variables, ``post`` fits a summary
into a status (pure), ``publisher`` sends it. Nothing here registers itself:
the channel registry (bot/channels/__init__.py) does.
"""
