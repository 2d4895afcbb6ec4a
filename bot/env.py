"""The environment's variables: deployment values and secrets, the core ones and each channel's.

``Env`` holds them once read; which of them are secret, and what the channels declare, are asked here.
Reading the environment is bot/settings.py's; import these from there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, get_type_hints

from bot.sections import _s

if TYPE_CHECKING:
    from bot.channels.spec import Channel, EnvVar


@dataclass(frozen=True, init=False)
class Env:
    """Deployment values and secrets, from the environment (the names are a contract: see docs/architecture.md).

    Field names are the lower-cased variable names.
    """

    bot_config: str = _s("config/bot.toml", "Settings file.")
    database_url: str = _s(
        "", "SQLAlchemy URL, sqlite:///… or postgresql://… (default: SQLite file under BOT_DATA_DIR)."
    )
    bot_data_dir: str = _s("./var", "Local state: database, outbox, public feeds.")
    shortscience_feed_url: str = _s(
        "", "The feed to poll (http(s):// URL or file path; default: the bundled sample feed)."
    )
    bot_dry_run: bool = _s(False, "1: every channel writes to the outbox dir instead of its network.")
    bot_outbox_dir: str = _s("", "Where dry-run posts and e-mails go (default: $BOT_DATA_DIR/outbox).")
    bot_public_dir: str = _s("", "Where feeds are written (default: $BOT_DATA_DIR/public).")
    public_base_url: str = _s(
        "http://localhost:8000", "Absolute base URL of the web process (feed self links, unsubscribe links)."
    )
    secret_key: str = _s(
        "", "Signs subscription tokens; required by web, digest and subscriber commands (unless BOT_DEV=1)."
    )
    bot_dev: bool = _s(
        False, "1: development mode: without SECRET_KEY, tokens use a public development key (never in production)."
    )
    port: int = _s(8000, "Web process port.", minimum=1)
    host: str = _s("0.0.0.0", "Address the web process binds (127.0.0.1: only this machine).")
    forwarded_allow_ips: str = _s(
        "",
        "Proxies whose X-Forwarded-For is believed: IPs/CIDRs, comma-separated, or * (every peer is the "
        "router, as on Heroku); none: the socket's peer is the client.",
    )
    smtp_url: str = _s(
        "", "smtp://user:pass@host:port (smtps:// for TLS, ?starttls=1); unset: e-mails go to the outbox."
    )
    digest_from: str = _s("", "Digest sender address.")
    operator_password_hash: str = _s(
        "", "Argon2 hash of the operator console's password (`python -m bot operator hash-password`); unset: no /admin."
    )
    #: the channels' own variables (declared by each channel: bot/channels/), by field name
    #: (the variable's name lower-cased); read as attributes: ``env.<channel>_api_key``
    channel_vars: Mapping[str, str] = field(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        """Core values by field name; a channel's variables by theirs (unset ones at their defaults)."""
        declared = {v.field: v for v in channel_env_vars()}
        own = {f.name for f in fields(Env)}
        chan = dict(values.pop("channel_vars", {}))
        for name in [n for n in values if n not in own]:
            if name not in declared:
                raise TypeError(f"Env() got an unexpected keyword argument {name!r}")
            chan[name] = values.pop(name)
        for f in fields(Env):
            if f.name == "channel_vars":
                continue
            if f.name in values:
                value = values[f.name]
            else:
                factory: Any = f.default_factory
                value = f.default if factory is dataclasses.MISSING else factory()
            object.__setattr__(self, f.name, value)
        full = {name: chan.get(name, var.default) for name, var in declared.items()}
        object.__setattr__(self, "channel_vars", MappingProxyType(full))

    def __getattr__(self, name: str) -> str:
        # Only called for names that are not fields: a channel's variable.
        try:
            return self.__dict__["channel_vars"][name]
        except KeyError:
            raise AttributeError(f"Env has no variable {name!r}") from None


#: core variables whose values never appear in logs, status or errors (channels declare theirs)
CORE_SECRET_FIELDS = ("secret_key", "operator_password_hash")


def _registry() -> Mapping[str, Channel]:
    """The channel registry (bot/channels/), imported on first use: its packages import this module."""
    from bot.channels import REGISTRY

    return REGISTRY


def channel_env_vars() -> list[EnvVar]:
    """Every channel's environment variables (EnvVar), in the registry's order."""
    return [var for spec in _registry().values() for var in spec.env]


def secret_fields() -> tuple[str, ...]:
    """The fields of Env whose values never appear in logs, status or errors."""
    return (*CORE_SECRET_FIELDS, *(v.field for v in channel_env_vars() if v.secret))


def _env_declarations() -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """Every variable as field name → (its declaration, its type): Env's own, then the channels'."""
    hints = get_type_hints(Env)
    out = {f.name: (f, hints[f.name]) for f in fields(Env) if f.name != "channel_vars"}
    for var in channel_env_vars():
        out[var.field] = (_s(var.default, var.help), str)
    return out
