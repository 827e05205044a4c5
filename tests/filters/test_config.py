"""``[filters]`` in the config file: what it accepts and the errors it names."""

from __future__ import annotations

import pytest

from txmailhost.config import ConfigError, load_config


def load(tmp_path, text: str):
    path = tmp_path / "txmailhost.toml"
    path.write_text(text)
    return load_config(str(tmp_path), str(path))


def test_filters_section_sets_chain_budget_default_and_settings(tmp_path):
    config = load(
        tmp_path,
        '[filters]\nchain = ["spam", "pkg.mod:Factory"]\ntimeout = 5\non_error = "accept"\n'
        '[filters.settings.spam]\nurl = "http://127.0.0.1:11333"\n',
    )
    filters = config.filters
    assert filters.chain == ("spam", "pkg.mod:Factory")
    assert (filters.timeout, filters.on_error) == (5.0, "accept")
    assert filters.settings == {"spam": {"url": "http://127.0.0.1:11333"}}


def test_no_filters_section_means_greylisting_and_the_spam_filter(tmp_path):
    assert load(tmp_path, "").filters.chain == ("greylist", "spam")


def test_an_empty_chain_means_no_filters(tmp_path):
    assert load(tmp_path, "[filters]\nchain = []\n").filters.chain == ()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('on_error = "maybe"', "filters.on_error"),
        ("chain = 3", "filters.chain"),
        ('chain = [""]', "filters.chain"),
        ("settings = { spam = 1 }", "filters.settings"),
        ('chain = ["spam", "greylist", "spam"]', "filters.chain: 'spam' is named twice"),
        # A typo'd listener made greylisting silently never run.
        (
            'settings = { greylist = { listeners = ["smtp", "smtpp"] } }',
            "filters.settings.greylist.listeners: 'smtpp' is not a listener of [listen]"
            " (did you mean smtp?)",
        ),
        (
            'settings = { greylist = { listeners = "smtp" } }',
            "filters.settings.greylist.listeners: expected an array such as [\"smtp\"], got 'smtp'",
        ),
    ],
)
def test_bad_filters_values_are_errors_naming_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, f"[filters]\n{text}\n")
    assert any(key in problem for problem in error.value.problems)


def test_listeners_naming_listen_keys_are_taken(tmp_path):
    config = load(tmp_path, '[filters.settings.clamd]\nlisteners = ["smtp", "submission", "web"]\n')
    assert config.filters.settings["clamd"]["listeners"] == ["smtp", "submission", "web"]
