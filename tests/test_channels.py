"""Channels as plug-ins: the registry is the one place that names a channel, and everything reads it.

The naming rule (issue 15): no string literal in bot/ holds a channel's name
("twitter", "facebook", "mastodon", "bluesky"; any case, also inside a longer
string or an f-string) outside the channel's own package bot/channels/<name>/
and the registry bot/channels/__init__.py. Docstrings are documentation and
may name channels (e.g. "the X and Facebook publishers share…"); comments are
not literals. Attribute names are not checked (``settings.render.tweet_teaser_chars``).
"""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.channels import CHANNELS, REGISTRY, build_publisher, channel_spec
from bot.channels.dryrun import DryRunPublisher
from bot.channels.spec import Channel, Measure
from bot.errors import ConfigError, RenderError
from bot.records import Post, Summary
from bot.render import Renderer
from bot.render.templates import template_dirs
from bot.settings import Env, Settings, example_toml, iter_settings, load_settings, secret_fields, with_overrides

BOT = Path(__file__).resolve().parent.parent / "bot"
NAMES = re.compile("twitter|facebook|mastodon|bluesky", re.IGNORECASE)
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def channel_literals(source: str) -> list[tuple[int, str]]:
    """(line, literal) of every string literal naming a channel, docstrings left out."""
    tree = ast.parse(source)
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and NAMES.search(node.value)
    ]


def may_name_channels(path: Path) -> bool:
    """A channel's own package and the registry; the shared modules beside them (base, dryrun, …) may not."""
    parts = path.relative_to(BOT).parts
    return parts[0] == "channels" and (len(parts) > 2 or parts[1] == "__init__.py")


def test_the_rule_finds_literals_and_spares_docstrings() -> None:
    source = '''"""Posts on Twitter."""
def f(channel):
    """Facebook too."""
    if channel == "twitter":
        return f"posted on Mastodon {channel}"
    return {"x": "BlueSky.jsonl"}
'''
    assert sorted(line for line, _ in channel_literals(source)) == [4, 5, 6]


def test_no_module_outside_the_channels_names_a_channel() -> None:
    found = [
        f"{path.relative_to(BOT.parent)}:{line}: {value[:60]!r}"
        for path in sorted(BOT.rglob("*.py"))
        if not may_name_channels(path)
        for line, value in channel_literals(path.read_text(encoding="utf-8"))
    ]
    assert not found, "channel names belong in bot/channels/<name>/ or the registry:\n" + "\n".join(found)


def test_every_registered_channel_is_complete() -> None:
    assert CHANNELS == tuple(REGISTRY) and CHANNELS[:2] == ("twitter", "facebook")
    dirs = template_dirs()
    for name, spec in REGISTRY.items():
        assert isinstance(spec, Channel) and spec.name == name
        assert (BOT / "channels" / name / "__init__.py").is_file(), "a channel is a package under bot/channels/"
        assert spec.templates and all(any((d / t).is_file() for d in dirs) for t in spec.templates)
        assert set(spec.live_needs) <= {v.name for v in spec.env}
        assert spec.outbox == f"{name}.jsonl"


def test_settings_sections_variables_and_secrets_come_from_the_registry() -> None:
    toml = example_toml()
    names = {name for name, _ in iter_settings()}
    s = Settings()
    for name, spec in REGISTRY.items():
        assert f"[channels.{name}]" in toml
        assert type(s.channel(name)) is spec.settings and getattr(s, name) is s.channel(name)
        for var in spec.env:
            assert var.name in names
            assert getattr(s.env, var.field) == var.default
            assert (var.field in secret_fields()) == var.secret
    # A variable of a channel is set like any other, and a secret one is redacted.
    secret = next(v for spec in REGISTRY.values() for v in spec.env if v.secret)
    loaded = load_settings({secret.name: "marker-SECRET-value"}, config_path=None, load_dotenv=False)
    assert getattr(loaded.env, secret.field) == "marker-SECRET-value"
    assert "marker-SECRET-value" in loaded.secrets()


def test_a_channel_section_is_read_from_the_file_and_unknown_ones_refused(tmp_path: Path) -> None:
    name = CHANNELS[0]
    cfg = tmp_path / "bot.toml"
    cfg.write_text(f"[channels.{name}]\ndaily_cap = 7\n")
    assert load_settings({}, config_path=cfg, load_dotenv=False).channel(name).daily_cap == 7
    assert with_overrides(Settings(), f"channels.{name}", daily_cap=3).channel(name).daily_cap == 3
    cfg.write_text("[channels.myspace]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r"unknown section \[channels\.myspace\]"):
        load_settings({}, config_path=cfg, load_dotenv=False)
    with pytest.raises(ConfigError, match="unknown channel 'myspace'"):
        Settings().channel("myspace")
    with pytest.raises(TypeError, match="myspace"):
        Settings(myspace=None)
    with pytest.raises(TypeError, match="myspace_token"):
        Env(myspace_token="x")


def test_rendering_dispatches_to_each_channel_and_refuses_others(tmp_path: Path) -> None:
    summary = Summary(
        guid="g1",
        title="Group Normalization",
        author="decodyng",
        text="GN divides channels into groups.",
        link="https://www.shortscience.org/paper?bibtexKey=gn#d",
        edited_at=NOW,
    )
    renderer = Renderer(Settings())
    for name in CHANNELS:
        post = renderer.post(name, summary)
        assert post.channel == name and post.link == summary.link
    with pytest.raises(RenderError, match="no post template for channel 'myspace'"):
        renderer.post("myspace", summary)


def test_without_credentials_each_channel_writes_its_outbox(tmp_path: Path) -> None:
    s = Settings(env=Env(bot_data_dir=str(tmp_path)))
    for name in CHANNELS:
        pub = build_publisher(s, name, now=lambda: NOW)
        assert isinstance(pub, DryRunPublisher) and pub.path == tmp_path / "outbox" / channel_spec(name).outbox
    with pytest.raises(ConfigError, match="unknown channel"):
        channel_spec("myspace")


def test_preview_measure_reads_as_before() -> None:
    post = Post(channel="c", summary_guid="g", text="abcd", link="https://l", replies=("ef", "g"))
    weighted = Measure(count=len, limit=280, unit="weighted")
    assert weighted.describe(post) == "4/280 weighted, thread of 3"
    sized = Measure(count=len, limit=63_206, unit="characters", show_limit=False, show_link=True)
    assert (
        sized.describe(Post(channel="c", summary_guid="g", text="abcd", link="https://l"))
        == "4 characters; link field: https://l"
    )
