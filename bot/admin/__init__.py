"""The operator console (/admin): the bot at a glance, and the few actions that need a person.

Off unless OPERATOR_PASSWORD_HASH is set (then every /admin URL answers 404).
``auth`` (password, session, CSRF, lockout), ``views`` (what each page shows,
from ``bot.status`` and ``bot.digest``), ``pages`` (the routes).
"""

from __future__ import annotations

from bot.admin.pages import routes

__all__ = ["routes"]
