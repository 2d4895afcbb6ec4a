"""Settings: defaults, the environment contract, clear errors for bad values, every setting documented."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.settings import SECRET_FIELDS, describe_settings, example_toml, iter_settings, load_settings

REPO = Path(__file__).resolve().parent.parent


def test_defaults_without_file_or_env(tmp_path: Path) -> None:
    s = load_settings({"BOT_DATA_DIR": str(tmp_path)}, config_path=None)
    assert s.source.backfill == 0
    assert s.env.facebook_graph_version == "v26.0"
    assert s.env.public_base_url == "http://localhost:8000"
    assert s.database_url == f"sqlite:///{(tmp_path / 'bot.sqlite3').resolve()}"
    assert s.outbox_dir == tmp_path / "outbox" and s.public_dir == tmp_path / "public"
    assert s.feed_url.endswith("sample-feed.xml")


def test_environment_names_are_the_contract() -> None:
    names = {name for name, _ in iter_settings() if name.isupper()}
    assert names == {
        "BOT_CONFIG",
        "DATABASE_URL",
        "BOT_DATA_DIR",
        "SHORTSCIENCE_FEED_URL",
        "BOT_DRY_RUN",
        "BOT_OUTBOX_DIR",
        "BOT_PUBLIC_DIR",
        "PUBLIC_BASE_URL",
        "SECRET_KEY",
        "PORT",
        "SMTP_URL",
        "DIGEST_FROM",
        "TWITTER_API_KEY",
        "TWITTER_API_SECRET",
        "TWITTER_ACCESS_TOKEN",
        "TWITTER_ACCESS_TOKEN_SECRET",
        "FACEBOOK_PAGE_ID",
        "FACEBOOK_PAGE_ACCESS_TOKEN",
        "FACEBOOK_GRAPH_VERSION",
        "TWITTER_API_BASE_URL",
        "FACEBOOK_GRAPH_URL",
        "HOST",
        "FORWARDED_ALLOW_IPS",
        "BOT_DEV",
        "OPERATOR_PASSWORD_HASH",
        "MASTODON_API_BASE_URL",
        "MASTODON_ACCESS_TOKEN",
        "BLUESKY_HANDLE",
        "BLUESKY_APP_PASSWORD",
        "BLUESKY_SERVICE_URL",
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_url_forms(url: str, expected: str) -> None:
    assert load_settings({"DATABASE_URL": url}, config_path=None).database_url == expected


def test_file_values_and_channel_tables(tmp_path: Path) -> None:
    cfg = tmp_path / "bot.toml"
    cfg.write_text('[source]\nbackfill = 3\n[channels.twitter]\ndaily_cap = 5\n[render.hashtags]\n"cs.LG" = "#ML"\n')
    s = load_settings({}, config_path=cfg)
    assert s.source.backfill == 3 and s.twitter.daily_cap == 5 and s.render.hashtags == {"cs.LG": "#ML"}


@pytest.mark.parametrize(
    ("toml", "env", "needle"),
    [
        ("[source]\nbackfill = -1\n", {}, "source.backfill = -1 is invalid: expected a value >= 0"),
        ('[source]\nbackfill = "three"\n', {}, "source.backfill = 'three' is invalid: expected an integer"),
        ('[source]\non_edit = "repost"\n', {}, "expected one of 'update', 'republish'"),
        ("[source]\nbackfil = 1\n", {}, "unknown setting source.backfil"),
        ("[sauce]\n", {}, "unknown section [sauce]"),
        ('[digest]\ntime = "25:00"\n', {}, "digest.time = '25:00' is invalid: expected HH:MM"),
        ('[digest]\ntimezone = "Mars/Base"\n', {}, "digest.timezone = 'Mars/Base'"),
        ('[render.hashtags]\n"cs.LG" = "ML"\n', {}, "render.hashtags.cs.LG = 'ML'"),
        ("", {"PORT": "eighty"}, "PORT = 'eighty' is invalid: expected an integer"),
        ("", {"BOT_DRY_RUN": "maybe"}, "BOT_DRY_RUN = 'maybe' is invalid"),
        (
            "",
            {"PUBLIC_BASE_URL": "localhost:8000"},
            "PUBLIC_BASE_URL = 'localhost:8000' is invalid: expected an absolute http(s) URL",
        ),
        ("", {"DATABASE_URL": "mysql://x"}, "DATABASE_URL is invalid"),
        ("this is = not toml [", {}, "bot.toml"),
    ],
)
def test_bad_values_name_setting_value_and_expectation(
    tmp_path: Path, toml: str, env: dict[str, str], needle: str
) -> None:
    cfg = tmp_path / "bot.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(env, config_path=cfg)
    assert needle in str(err.value)


def test_smtp_url_error_never_shows_password() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"SMTP_URL": "http://user:hunter2secret@host"}, config_path=None)
    assert "hunter2secret" not in str(err.value)


def test_secrets_collected_for_redaction() -> None:
    # (shaped like an Argon2 hash: OPERATOR_PASSWORD_HASH must look like one)
    env = {name.upper(): f"$argon2id$marker-{name}" for name in SECRET_FIELDS}
    env["SMTP_URL"] = "smtp://u:smtp-pass-marker@localhost:25"
    secrets = load_settings(env, config_path=None).secrets()
    assert set(secrets) >= {f"$argon2id$marker-{n}" for n in SECRET_FIELDS} | {"smtp-pass-marker"}


def test_dotenv_fills_unset_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("PORT=9123\nBOT_DATA_DIR=from-dotenv\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BOT_DATA_DIR", "from-env")
    monkeypatch.delenv("PORT", raising=False)
    s = load_settings()
    assert s.env.port == 9123 and s.env.bot_data_dir == "from-env"


def test_every_setting_has_help_and_is_documented() -> None:
    doc = (REPO / "docs" / "settings.md").read_text()
    config = (REPO / "config" / "bot.toml").read_text()
    for name, f in iter_settings():
        assert f.metadata.get("help"), f"{name} has no help line"
        assert f"| `{name}` |" in doc, f"{name} is not documented in docs/settings.md"
    assert config == example_toml(), "config/bot.toml is stale: run python scripts/regen_docs.py"
    assert describe_settings() in doc, "docs/settings.md is stale: run python scripts/regen_docs.py"
    assert doc == _regen_docs().settings_doc(), "docs/settings.md is stale: run python scripts/regen_docs.py"


def _regen_docs() -> Any:
    spec = importlib.util.spec_from_file_location("regen_docs", REPO / "scripts" / "regen_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bad_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bot.toml"
    cfg.write_text("[dispatch]\nmax_attempts = 0\n")
    r = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(cfg), "status"], capture_output=True, text=True, cwd=tmp_path
    )
    assert r.returncode == 2
    assert r.stderr.strip() == "error: setting dispatch.max_attempts = 0 is invalid: expected a value >= 1"
