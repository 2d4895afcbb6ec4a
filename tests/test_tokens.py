"""Subscription tokens: signed per purpose, tamper-proof, confirm links expire, unsubscribe links never do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_settings
from itsdangerous import TimestampSigner

from bot.errors import BotError, ConfigError
from bot.mail.tokens import InvalidToken, make_token, max_age, read_token, signed_link, using_dev_key
from bot.settings import Settings

NOW = datetime(2026, 11, 9, 8, 0, tzinfo=UTC)
ADDRESS = "reader@example.org"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path, {"SECRET_KEY": "test-secret-key-0123456789", "PUBLIC_BASE_URL": "https://bot.example.org/"}
    )


@pytest.mark.parametrize("purpose", ["confirm", "unsubscribe", "preferences"])
def test_round_trip(settings: Settings, purpose: str) -> None:
    token = make_token(settings, purpose, ADDRESS, now=NOW)  # type: ignore[arg-type]
    assert ADDRESS not in token  # signed, URL-safe, but not the bare address
    assert read_token(settings, purpose, token, max_age=None, now=NOW) == ADDRESS  # type: ignore[arg-type]


def test_unicode_address_round_trips(settings: Settings) -> None:
    token = make_token(settings, "unsubscribe", "jürgen@exämple.org")
    assert token.isascii()
    assert read_token(settings, "unsubscribe", token, max_age=None) == "jürgen@exämple.org"


def test_wrong_purpose_is_rejected(settings: Settings) -> None:
    token = make_token(settings, "unsubscribe", ADDRESS)
    with pytest.raises(InvalidToken):
        read_token(settings, "confirm", token, max_age=None)
    with pytest.raises(InvalidToken):
        read_token(settings, "preferences", token, max_age=None)


def test_tampered_token_is_rejected(settings: Settings) -> None:
    token = make_token(settings, "unsubscribe", ADDRESS)
    payload, _, rest = token.partition(".")
    other = make_token(settings, "unsubscribe", "victim@example.org")
    forged = other.partition(".")[0] + "." + rest  # another address with this token's signature
    with pytest.raises(InvalidToken) as info:
        read_token(settings, "unsubscribe", forged, max_age=None)
    assert not info.value.expired
    # Not the last character: base64's last one carries spare bits, so some changes decode the same.
    i = len(token) - 5
    flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    for bad in (flipped, "", "garbage", payload):
        with pytest.raises(InvalidToken):
            read_token(settings, "unsubscribe", bad, max_age=None)
    assert isinstance(info.value, BotError)


def test_other_secret_key_is_rejected(settings: Settings, tmp_path: Path) -> None:
    token = make_token(settings, "unsubscribe", ADDRESS)
    other = make_settings(tmp_path, {"SECRET_KEY": "another-secret-key-987654"})
    with pytest.raises(InvalidToken):
        read_token(other, "unsubscribe", token, max_age=None)


def test_confirm_token_expires(settings: Settings) -> None:
    ttl = max_age(settings, "confirm")
    assert ttl == settings.digest.confirm_ttl_hours * 3600
    token = make_token(settings, "confirm", ADDRESS, now=NOW)
    just_in_time = NOW + timedelta(seconds=ttl)
    assert read_token(settings, "confirm", token, max_age=ttl, now=just_in_time) == ADDRESS
    with pytest.raises(InvalidToken) as info:
        read_token(settings, "confirm", token, max_age=ttl, now=just_in_time + timedelta(seconds=2))
    assert info.value.expired
    # A token signed in the past, read with the real clock.
    old = make_token(
        settings, "confirm", ADDRESS, now=datetime.now(UTC) - timedelta(hours=settings.digest.confirm_ttl_hours + 1)
    )
    with pytest.raises(InvalidToken):
        read_token(settings, "confirm", old, max_age=ttl)


def test_unsubscribe_token_never_expires(settings: Settings) -> None:
    assert max_age(settings, "unsubscribe") is None
    token = make_token(settings, "unsubscribe", ADDRESS, now=NOW)
    ten_years = NOW + timedelta(days=3650)
    assert (
        read_token(settings, "unsubscribe", token, max_age=max_age(settings, "unsubscribe"), now=ten_years) == ADDRESS
    )


def test_link_points_at_the_web_process(settings: Settings) -> None:
    url = signed_link(settings, "unsubscribe", ADDRESS, now=NOW)
    prefix = "https://bot.example.org/unsubscribe?token="
    assert url.startswith(prefix)
    assert read_token(settings, "unsubscribe", url[len(prefix) :], max_age=None) == ADDRESS


def test_secret_key_required_when_mail_is_live(tmp_path: Path) -> None:
    live = make_settings(tmp_path, {"SMTP_URL": "smtp://127.0.0.1:2525"})
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        make_token(live, "unsubscribe", ADDRESS)
    # Development mode does not lift it while mail is live: the development key is public.
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        make_token(
            make_settings(tmp_path, {"SMTP_URL": "smtp://127.0.0.1:2525", "BOT_DEV": "1"}), "unsubscribe", ADDRESS
        )


def test_secret_key_required_without_live_mail_too(tmp_path: Path) -> None:
    # No SMTP_URL (or BOT_DRY_RUN=1) used to mean a built-in public key: forgeable links.
    for env in ({}, {"BOT_DRY_RUN": "1"}):
        with pytest.raises(ConfigError, match="SECRET_KEY is required"):
            make_token(make_settings(tmp_path, env), "unsubscribe", ADDRESS)


def test_development_mode_uses_a_key_no_deployment_accepts(tmp_path: Path) -> None:
    dev = make_settings(tmp_path, {"BOT_DEV": "1"})
    assert using_dev_key(dev)
    token = make_token(dev, "unsubscribe", ADDRESS)
    assert read_token(dev, "unsubscribe", token, max_age=None) == ADDRESS
    with pytest.raises(InvalidToken):
        read_token(make_settings(tmp_path, {"SECRET_KEY": "real-key-123456789"}), "unsubscribe", token, max_age=None)
    # A real key wins over development mode.
    assert not using_dev_key(make_settings(tmp_path, {"BOT_DEV": "1", "SECRET_KEY": "real-key-123456789"}))


def test_tokens_are_itsdangerous_default_signatures(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Our faster HMAC must sign exactly as itsdangerous's default does: links already
    # mailed stay valid whichever of the two made or reads them.
    at = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
    stock = TimestampSigner(settings.env.secret_key, salt="shortscience-bot/unsubscribe")
    monkeypatch.setattr(stock, "get_timestamp", lambda: int(at.timestamp()))
    for address in ("reader@example.net", "élise@exämple.org", "a+b.c@x.io"):
        token = make_token(settings, "unsubscribe", address, now=at)
        payload = token.rsplit(".", 2)[0]
        assert stock.sign(payload).decode() == token
        assert stock.unsign(token).decode() == payload
