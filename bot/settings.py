"""Every setting of the bot, declared once: name, default, type and one line of help.

Non-secret settings come from ``config/bot.toml`` (or ``$BOT_CONFIG``);
deployment values and secrets from the environment (``.env`` loaded if
present). Both are validated here, once, into one frozen ``Settings`` object;
a bad value raises ``ConfigError`` naming the setting, the value and what was
expected. Nothing else in the bot reads the environment or the settings file.

The declarations live apart: the file's sections in bot/sections.py, the variables in bot/env.py;
both are re-exported here, so the rest of the bot imports every settings name from this module.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_origin, get_type_hints
from urllib.parse import unquote, urlsplit

from bot.env import CORE_SECRET_FIELDS as CORE_SECRET_FIELDS
from bot.env import Env, _env_declarations, _registry, channel_env_vars, secret_fields
from bot.errors import ConfigError
from bot.sections import (
    _SECTIONS,
    ArxivSettings,
    ChannelSettings,
    DatabaseSettings,
    DigestSettings,
    DispatchSettings,
    FeedSettings,
    LogSettings,
    RenderSettings,
    SourceSettings,
    WebSettings,
)
from bot.sections import DEFAULT_HASHTAGS as DEFAULT_HASHTAGS
from bot.sections import _s as _s


@dataclass(frozen=True, init=False)
class Settings:
    """All settings: the file's sections and the environment."""

    source: SourceSettings = field(default_factory=SourceSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    arxiv: ArxivSettings = field(default_factory=ArxivSettings)
    feeds: FeedSettings = field(default_factory=FeedSettings)
    digest: DigestSettings = field(default_factory=DigestSettings)
    web: WebSettings = field(default_factory=WebSettings)
    log: LogSettings = field(default_factory=LogSettings)
    env: Env = field(default_factory=Env)
    #: each channel's [channels.<name>] section, in the registry's order; also read as ``settings.<name>``
    channels: Mapping[str, ChannelSettings] = field(default_factory=dict)

    def __init__(self, **sections: Any) -> None:
        """Sections by name (source=…, env=…); a channel's section by the channel's name (<channel>=…)."""
        registry = _registry()
        own = {f.name for f in fields(Settings)}
        chan = dict(sections.pop("channels", {}))
        for name in [n for n in sections if n not in own]:
            if name not in registry:
                raise TypeError(f"Settings() got an unexpected keyword argument {name!r}")
            chan[name] = sections.pop(name)
        for f in fields(Settings):
            if f.name != "channels":
                factory: Any = f.default_factory
                object.__setattr__(self, f.name, sections[f.name] if f.name in sections else factory())
        full: dict[str, ChannelSettings] = {}
        for name, spec in registry.items():
            value = chan.pop(name, None) or spec.settings()
            if not isinstance(value, spec.settings):
                raise TypeError(
                    f"settings of channel {name!r} must be a {spec.settings.__name__}, not {type(value).__name__}"
                )
            full[name] = value
        if chan:
            raise TypeError(f"unknown channel {next(iter(chan))!r}; expected one of {', '.join(registry)}")
        object.__setattr__(self, "channels", MappingProxyType(full))

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: a channel's section, typed by its package.
        try:
            return self.__dict__["channels"][name]
        except KeyError:
            raise AttributeError(f"Settings has no section {name!r}") from None

    # ---- derived values (one place, so every command agrees) ----

    @property
    def data_dir(self) -> Path:
        return Path(self.env.bot_data_dir)

    @property
    def database_url(self) -> str:
        url = self.env.database_url
        if not url:
            return f"sqlite:///{(self.data_dir / 'bot.sqlite3').resolve()}"
        # Hosts hand out postgres:// (Heroku) which SQLAlchemy no longer accepts.
        if url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url[len("postgres://") :]
        elif url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url

    @property
    def outbox_dir(self) -> Path:
        return Path(self.env.bot_outbox_dir) if self.env.bot_outbox_dir else self.data_dir / "outbox"

    @property
    def public_dir(self) -> Path:
        return Path(self.env.bot_public_dir) if self.env.bot_public_dir else self.data_dir / "public"

    @property
    def feed_url(self) -> str:
        return self.env.shortscience_feed_url or str(sample_feed_path())

    @property
    def polls_bundled_sample(self) -> bool:
        """Whether the source is the bundled sample feed (its paper details are bundled too: no arXiv)."""
        url = self.env.shortscience_feed_url.removeprefix("file://")
        return not url or Path(url).resolve() == sample_feed_path().resolve()

    def channel(self, name: str) -> ChannelSettings:
        try:
            return self.channels[name]
        except KeyError:
            raise ConfigError(f"unknown channel {name!r}; expected one of {', '.join(self.channels)}") from None

    def secrets(self) -> tuple[str, ...]:
        """Every secret value that is set, so logs and messages can redact them."""
        values = [getattr(self.env, name) for name in secret_fields()]
        for url in (self.env.smtp_url, self.env.database_url):
            password = urlsplit(url).password if url else None
            if password:
                # As written in the URL and as the server gets it ("p%40ss" and "p@ss").
                values += [password, unquote(password)]
        return tuple(v for v in values if v and len(v) >= 4)


def sections() -> dict[str, type]:
    """The settings-file sections and the dataclass of each; channels' from the registry, after [database]."""
    out: dict[str, type] = {}
    for name, cls in _SECTIONS.items():
        out[name] = cls
        if name == "database":
            out.update({spec.section: spec.settings for spec in _registry().values()})
    return out


def _section_attr(section: str) -> str:
    """The Settings attribute of a section: [channels.<name>] is settings.channels[<name>] (also settings.<name>)."""
    return section.removeprefix("channels.")


def __getattr__(name: str) -> tuple[str, ...]:
    # The names other modules imported when channels were fixed: now read from the registry.
    if name == "CHANNELS":
        return tuple(_registry())
    if name == "SECRET_FIELDS":
        return secret_fields()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sample_feed_path() -> Path:
    """The bundled sample feed: 15 real summaries in the site's rss-full.xml format."""
    return Path(__file__).parent / "data" / "sample-feed.xml"


def iter_settings() -> list[tuple[str, dataclasses.Field[Any]]]:
    """Every setting as (dotted name, field): file settings, then variables."""
    out: list[tuple[str, dataclasses.Field[Any]]] = []
    for section, cls in sections().items():
        for f in fields(cls):
            out.append((f"{section}.{f.name}", f))
    for name, (f, _) in _env_declarations().items():
        out.append((name.upper(), f))
    return out


def _convert(where: str, f: dataclasses.Field[Any], hint: Any, raw: Any, *, from_env: bool) -> Any:
    """Check and convert one raw value; raise ConfigError naming `where`."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"setting {where} = {raw!r} is invalid: expected {expected}")

    origin = get_origin(hint)
    if hint is bool:
        if isinstance(raw, bool):
            value: Any = raw
        elif (
            from_env
            and isinstance(raw, str)
            and raw.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off", "")
        ):
            value = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            raise bad("true or false" + (" (1 or 0)" if from_env else ""))
    elif hint is int:
        if isinstance(raw, bool):
            raise bad("an integer")
        if isinstance(raw, int):
            value = raw
        elif from_env and isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError:
                raise bad("an integer") from None
        else:
            raise bad("an integer")
    elif hint is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise bad("a number")
        try:
            value = float(raw)
        except ValueError:
            raise bad("a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("a finite number")
    elif hint is str:
        if not isinstance(raw, str):
            raise bad("a string")
        value = raw
    elif origin is tuple:
        if not isinstance(raw, (list, tuple)) or not all(isinstance(x, str) for x in raw):
            raise bad("a list of strings")
        value = tuple(raw)
    elif origin is Mapping or hint is Mapping:
        if not isinstance(raw, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
            raise bad("a table of string values")
        value = dict(raw)
    else:  # pragma: no cover - a declaration error, caught by the tests
        raise TypeError(f"unsupported setting type {hint!r} for {where}")
    minimum = f.metadata.get("minimum")
    if minimum is not None and value < minimum:
        raise bad(f"a value >= {minimum:g}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise bad("one of " + ", ".join(repr(c) for c in choices))
    return value


def _build(cls: type, section: str, raw: Mapping[str, Any], *, from_env: bool = False) -> Any:
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown setting {section}.{key}; expected one of: {', '.join(sorted(known))}")
    values = {}
    for name, value in raw.items():
        values[name] = _convert(
            f"{section}.{name}" if not from_env else name.upper(), known[name], hints[name], value, from_env=from_env
        )
    return cls(**values)


def _check_semantics(s: Settings) -> None:
    """Checks that need more than one value or a parser."""
    from bot.webguard import trusted_proxies

    trusted_proxies(s.env.forwarded_allow_ips)  # ConfigError naming a bad entry, at start-up
    urls = ["public_base_url", *(v.field for v in channel_env_vars() if v.url)]
    for name in (*urls, "smtp_url", "database_url"):
        try:
            _ = urlsplit(getattr(s.env, name)).port  # parses host and port: "[::1" or ":notaport" raise here
        except ValueError:
            # No value in the message: SMTP_URL and DATABASE_URL may carry a password.
            raise ConfigError(f"setting {name.upper()} is invalid: bad host or port") from None
    for name in urls:
        value = getattr(s.env, name)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"setting {name.upper()} = {value!r} is invalid: expected an absolute http(s) URL")
    if s.env.smtp_url:
        parts = urlsplit(s.env.smtp_url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            # Never echo the URL: it may carry a password.
            raise ConfigError("setting SMTP_URL is invalid: expected smtp://[user:pass@]host[:port] or smtps://…")
    if s.env.operator_password_hash and not s.env.operator_password_hash.startswith("$argon2"):
        # Never echo it: a password pasted by mistake must not reach the logs.
        raise ConfigError(
            "setting OPERATOR_PASSWORD_HASH is invalid: expected an Argon2 hash "
            "(make one with `python -m bot operator hash-password`)"
        )
    url = s.env.database_url
    if url and not (url.startswith(("sqlite:", "postgres://", "postgresql:", "postgresql+psycopg:"))):
        raise ConfigError("setting DATABASE_URL is invalid: expected sqlite:///path or postgresql://…")
    folder = _sqlite_folder(url)
    if folder is not None and not folder.is_dir():
        # Refused rather than created: a typo in the path would otherwise start an empty database.
        raise ConfigError(
            f"setting DATABASE_URL is invalid: the folder {str(folder)!r} of its SQLite file does not exist "
            "(create it first)"
        )
    hh, _, mm = s.digest.time.partition(":")
    if not (hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
        raise ConfigError(f"setting digest.time = {s.digest.time!r} is invalid: expected HH:MM")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(s.digest.timezone)
    except Exception:
        raise ConfigError(
            f"setting digest.timezone = {s.digest.timezone!r} is invalid: expected an IANA time zone such as "
            "'UTC' or 'Europe/Berlin'"
        ) from None
    for category, tag in s.render.hashtags.items():
        if not tag.startswith("#") or len(tag) < 2 or any(c.isspace() for c in tag):
            raise ConfigError(
                f"setting render.hashtags.{category} = {tag!r} is invalid: expected a hashtag like '#MachineLearning'"
            )
    for tag in s.render.fixed_hashtags:
        if not tag.startswith("#") or len(tag) < 2 or any(c.isspace() for c in tag):
            raise ConfigError(
                f"setting render.fixed_hashtags = {tag!r} is invalid: expected hashtags like '#ShortScience'"
            )


def _sqlite_folder(url: str) -> Path | None:
    """The folder an explicit sqlite:///path URL puts its file in (None: not SQLite, in memory, or a file: URI)."""
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path).parent


# long: the file, the environment and .env read in turn, each error naming where it came from
def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    config_path: str | Path | None = None,
    load_dotenv: bool = True,
) -> Settings:
    """Read the settings file and the environment into one Settings object.

    `environ` defaults to ``os.environ`` (with ``.env`` merged in, without
    overriding what is already set); tests pass their own mapping.
    """
    if environ is None:
        if load_dotenv:
            from dotenv import dotenv_values

            # .env fills in what the real environment leaves unset.
            merged = {k: v for k, v in dotenv_values(".env").items() if v is not None}
            merged.update(os.environ)
            environ = merged
        else:
            environ = dict(os.environ)

    declared = _env_declarations()
    env_raw = {f.lower(): v for f, v in environ.items() if f.lower() in declared and f.isupper() and v != ""}
    env = Env(**{name: _convert(name.upper(), *declared[name], raw, from_env=True) for name, raw in env_raw.items()})

    path = Path(config_path or env.bot_config)
    file_raw: dict[str, Any] = {}
    if path.exists():
        try:
            file_raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"settings file {path}: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"settings file {path} cannot be read: {exc}") from None
    elif config_path is not None:
        # Name what the operator typed: the command's option, not the variable it overrides.
        raise ConfigError(f"option --config {str(path)!r} is invalid: no such file")
    elif "BOT_CONFIG" in environ:
        raise ConfigError(f"setting BOT_CONFIG = {str(path)!r} is invalid: no such file")

    known = sections()
    values: dict[str, Any] = {}
    channels = file_raw.pop("channels", {})
    if not isinstance(channels, dict):
        raise ConfigError(f"settings file {path}: [channels] must be a table of channel tables")
    for name, table in channels.items():
        file_raw[f"channels.{name}"] = table
    for key, table in file_raw.items():
        if key not in known:
            raise ConfigError(
                f"settings file {path}: unknown section [{key}]; expected one of: "
                f"{', '.join('[' + s + ']' for s in known)}"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"settings file {path}: [{key}] must be a table")
        values[_section_attr(key)] = _build(known[key], key, table)

    settings = Settings(env=env, **values)
    _check_semantics(settings)
    return settings


def describe_settings() -> str:
    """Every setting with default and help, as Markdown table rows (for docs/settings.md and --help)."""
    lines = []
    for name, f in iter_settings():
        default: Any = f.default
        factory: Any = f.default_factory
        if default is dataclasses.MISSING and factory is not dataclasses.MISSING:
            default = factory()
        if isinstance(default, Mapping):
            default = ", ".join(f"{k} = {v}" for k, v in default.items())
        elif isinstance(default, tuple):
            default = ", ".join(default) or "(none)"
        lines.append(f"| `{name}` | {default!s} | {f.metadata['help']} |")
    return "\n".join(lines)


def with_overrides(settings: Settings, section: str, **values: Any) -> Settings:
    """A copy of `settings` with some values of one section replaced (tests, CLI flags)."""
    attr = _section_attr(section)
    if attr in settings.channels:
        changed = dataclasses.replace(settings.channels[attr], **values)
        return dataclasses.replace(settings, channels={**settings.channels, attr: changed})
    current = getattr(settings, attr)
    return dataclasses.replace(settings, **{attr: dataclasses.replace(current, **values)})


def example_toml() -> str:
    """A settings file with every setting commented out at its default (config/bot.toml is made from it)."""
    import json

    out = [
        "# ShortScience feed bot settings. Every setting is listed at its default, commented out;",
        "# uncomment and change what you need. Secrets and deployment values are environment",
        "# variables (see README.md), never this file.",
    ]
    for section, cls in sections().items():
        out.append("")
        out.append(f"[{section}]")
        for f in fields(cls):
            default: Any = f.default
            factory: Any = f.default_factory
            if default is dataclasses.MISSING and factory is not dataclasses.MISSING:
                default = factory()
            out.append(f"# {f.metadata['help']}")
            if isinstance(default, Mapping):
                inline = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in default.items())
                out.append(f"# {f.name} = {{ {inline} }}")
            elif isinstance(default, bool):
                out.append(f"# {f.name} = {'true' if default else 'false'}")
            elif isinstance(default, tuple):
                out.append(f"# {f.name} = {json.dumps(list(default))}")
            else:
                out.append(f"# {f.name} = {json.dumps(default)}")
    return "\n".join(out) + "\n"
