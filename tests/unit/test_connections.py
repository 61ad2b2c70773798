"""Connections as users write them: docs/configuration.md's ``AIRFLOW_CONN_*`` URIs and JSON, read back through the hooks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from market_ingest.hooks import as_flag, connection_extra
from market_ingest.hooks.alpha_vantage import AlphaVantageHook
from market_ingest.hooks.exchange import ExchangeHook
from market_ingest.hooks.ibkr import IbkrHook
from market_ingest.hooks.twelve_data import TwelveDataHook
from market_ingest.hooks.yahoo import YahooFinanceHook

README = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def readme_uris() -> dict[str, str]:
    """``{connection id: URI}`` of the README's ``AIRFLOW_CONN_<ID>='<uri>'`` lines (URI form only)."""
    found = re.findall(r"^AIRFLOW_CONN_([A-Z_]+)='([a-z-]+://[^']*)'$", README.read_text(), re.MULTILINE)
    return {conn_id.lower(): uri for conn_id, uri in found}


def readme_json() -> list[tuple[str, str]]:
    """``(connection id, JSON)`` of the README's ``AIRFLOW_CONN_<ID>='{...}'`` lines, in order (one
    connection id may have several: its modes)."""
    found = re.findall(r"^AIRFLOW_CONN_([A-Z_]+)='(\{[^']*\})'$", README.read_text(), re.MULTILINE)
    return [(conn_id.lower(), value) for conn_id, value in found]


@pytest.fixture
def uris(monkeypatch):
    found = readme_uris()
    assert set(found) == {"market_yahoo", "market_alpha_vantage", "market_twelvedata", "market_kucoin", "market_binance"}
    for conn_id, uri in found.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri)
    return found


def test_the_readmes_uris_give_each_hook_its_settings(uris):
    yahoo = YahooFinanceHook()
    assert yahoo.endpoint()[0] == "https://query2.finance.yahoo.com/v8/finance/chart/"  # no base URL
    # The Task SDK keeps a URI's query values as strings; the hook casts each where it applies it.
    assert yahoo.extra == {"requests_per_second": "4", "retries": "3", "symbol_attempts": "3"}

    alpha = AlphaVantageHook()._settings
    assert (alpha["key"], alpha["premium"], alpha["requests_per_second"], alpha["budget"]) == ("YOUR_API_KEY", False, 1.0, 25)
    assert alpha["url"] == "https://www.alphavantage.co/query"

    twelve = TwelveDataHook()._settings
    assert (twelve["key"], twelve["per_minute"], twelve["daily"], twelve["url"]) == (
        "YOUR_API_KEY",
        8,
        800,
        "https://api.twelvedata.com",
    )

    kucoin = ExchangeHook("kucoin", "market_kucoin")._settings
    assert {k: kucoin[k] for k in ("apiKey", "secret", "password", "sandbox", "retry_attempts", "base_url")} == {
        "apiKey": "YOUR_API_KEY",
        "secret": "YOUR_SECRET",
        "password": "YOUR_PASSPHRASE",  # ccxt's name for the API passphrase
        "sandbox": False,
        "retry_attempts": 4,
        "base_url": None,
    }
    binance = ExchangeHook("binance", "market_binance")._settings
    assert "apiKey" not in binance and binance["sandbox"] is False and binance["retry_attempts"] == 4


def test_the_readmes_interactive_brokers_connections_give_the_hook_its_settings(monkeypatch):
    """A gateway's connection (its URL as host, no secret) and an OAuth one, as JSON: a URI cannot
    carry the gateway's URL in its host."""
    found = readme_json()
    assert [conn_id for conn_id, _ in found] == ["market_ibkr", "market_ibkr"]
    (_, gateway), (_, oauth) = found

    monkeypatch.setenv("AIRFLOW_CONN_MARKET_IBKR", gateway)
    settings = IbkrHook()._settings
    assert settings == {"oauth": False, "url": "https://localhost:5000/v1/api", "cacert": False, "per_second": 10.0}

    monkeypatch.setenv("AIRFLOW_CONN_MARKET_IBKR", oauth)
    settings = IbkrHook()._settings
    assert (settings["oauth"], settings["url"], settings["per_second"]) == (True, "https://api.ibkr.com/v1/api", 50.0)
    fields = settings["oauth_fields"]
    assert (fields["consumer_key"], fields["access_token"], fields["access_token_secret"]) == (
        "YOURCONSK",
        "YOUR_ACCESS_TOKEN",
        "YOUR_ACCESS_TOKEN_SECRET",
    )
    assert fields["realm"] == "limited_poa" and fields["dh_prime"] == "YOUR_DH_PRIME_HEX"
    for key in ("encryption_key", "signature_key"):  # PEM text: the JSON's \n are line breaks
        lines = fields[key].splitlines()
        assert (lines[0], lines[-1]) == ("-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----"), key


def test_an_emptied_form_field_or_a_yes_no_string_takes_its_meaning(monkeypatch):
    """The Add Connection form stores an emptied field as null (the hook's default applies), and a
    hand-written extra may say ``"sandbox": "false"`` (not a sandbox)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_MARKET_ALPHA_VANTAGE",
        '{"conn_type": "alpha_vantage", "password": "KEY12345", "extra": {"premium": "false", "requests_per_second": null, "daily_budget": null}}',
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_MARKET_KRAKEN", '{"conn_type": "ccxt", "extra": {"sandbox": "true", "retry_attempts": null}}'
    )
    alpha = AlphaVantageHook()._settings
    assert (alpha["premium"], alpha["requests_per_second"], alpha["budget"]) == (False, 1.0, 25)
    kraken = ExchangeHook("kraken", "market_kraken")._settings
    assert (kraken["sandbox"], kraken["retry_attempts"]) == (True, 4)
    assert [as_flag(v) for v in (True, 1, "TRUE", " yes", "on", False, 0, None, "false", "no", "")] == [True] * 5 + [False] * 6

    class Conn:
        extra_dejson = {"proxy": None, "retries": 0}

    assert connection_extra(Conn()) == {"retries": 0}  # a zero is a setting, not an empty field
