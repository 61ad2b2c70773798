"""IbkrHook on the recorded and documented answers the stand-in serves as a Client Portal Gateway
(``include/recordings/ibkr``; PROVENANCE says which body is what): contract search, daily and
minute bars, the price basis (IB's split-adjusted prices stored as traded with another source's
splits), each classified error answer through ibind's own error path, pacing, the session check,
and the OAuth connection's secrets kept out of every message."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
import requests

from market_ingest import outcomes
from market_ingest.actions import SPLIT, ActionsAnswer, CorporateAction
from market_ingest.config import SourceConfig, load_config
from market_ingest.errors import (
    ConfigurationError,
    NoDataError,
    RateLimitedError,
    UnexpectedBodyError,
    UnknownSymbolError,
    VendorUnavailableError,
)
from market_ingest.hooks.ibkr import IbkrHook, NotAuthenticatedError
from market_ingest.intervals import Window
from market_ingest.sources import bar_hook
from market_ingest.vendors import ibkr as ib
from standin.server import StandIn
from tests.conftest import RECORDINGS, serving

UTC = timezone.utc
#: Apple's 49 sessions of 2020-08-31 .. 11-06 (the recording: Alpha Vantage's as-traded prices in IB's shape).
WINDOW = Window(datetime(2020, 8, 31, tzinfo=UTC), datetime(2020, 11, 7, tzinfo=UTC))
INGESTED = datetime(2026, 1, 1, tzinfo=UTC)
GATEWAY = "/localhost:5000/v1/api"
#: The stand-in's log names paths without the host.
PREFIX = "/v1/api"


@pytest.fixture
def standin(monkeypatch):
    """The stand-in over the recordings as a logged-in gateway, no pacing limit unless a test sets
    one; every vendor connection reaches it (``market_ibkr`` in gateway mode)."""
    standin = StandIn(RECORDINGS)
    with serving(standin, monkeypatch) as url:
        standin.url = url
        limits(standin, per_second=None)
        yield standin


def limits(standin, **conf) -> None:
    requests.post(f"{standin.url}/_standin/limits", data=json.dumps({"ibkr": conf}), timeout=10).raise_for_status()


def served(standin) -> list[dict]:
    return [e for e in requests.get(f"{standin.url}/_standin/log", timeout=10).json() if e["vendor"] == "ibkr"]


def no_splits(symbol: str) -> ActionsAnswer:
    return ActionsAnswer([], datetime(2023, 11, 11, tzinfo=UTC), "America/New_York")


def test_daily_bars_come_from_the_stock_contract_at_the_session_date_in_shares(standin):
    """A contract search (AAPL's stock listing: conid 265598), then one history request whose
    ``startTime`` (the END of IB's span) is 2020-11-08 00:00 UTC, Nov 7 in New York, so that Nov 6
    is answered; ``v`` in lots of 100 is stored in shares (2,235,057.33 lots on 08-31)."""
    bars, results = IbkrHook(splits=no_splits).fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    assert results[0].status == outcomes.OK and results[0].rows == bars.num_rows == 49
    rows = bars.to_pylist()
    assert rows[0]["time"] == datetime(2020, 8, 31, tzinfo=UTC) and rows[0]["close"] == 129.04
    assert rows[0]["volume"] == 223_505_733
    assert rows[-1]["time"] == datetime(2020, 11, 6, tzinfo=UTC)
    assert {(r["currency"], r["price_basis"], r["source"], r["interval"]) for r in rows} == {("USD", "as_traded", "ibkr", "1d")}
    asked = [(e["path"].removeprefix(PREFIX), e["query"]) for e in served(standin)]
    assert ("/iserver/secdef/search", {"symbol": "AAPL", "secType": "STK"}) in asked
    [history] = [q for p, q in asked if p == "/iserver/marketdata/history"]
    # 50 weekdays (49 sessions and Labor Day) and the startTime date's own: IB answers from 08-28 on, the extract keeps 08-31 on
    assert history == {"conid": "265598", "bar": "1d", "period": "51d", "outsideRth": "False", "startTime": "20201108-00:00:00"}


def test_ibs_split_adjusted_prices_are_stored_as_traded_with_the_other_sources_splits(standin):
    """IB's trade history is split-adjusted as of the request. Had AAPL split 2:1 on 2020-10-01
    (after the recording's first sessions), IB would have sent those sessions halved: the hook says
    so (basis ``split_adjusted``) and the extract step multiplies them back, as traded, with the
    splits the ``splits`` source states; the sessions from the ex-date on are left as sent."""
    seen = datetime(2023, 11, 11, tzinfo=UTC)
    split = CorporateAction("yahoo", "AAPL", datetime(2020, 10, 1).date(), SPLIT, ratio=2.0, first_seen=seen, extracted_at=seen)

    def splits(symbol: str) -> ActionsAnswer:
        assert symbol == "AAPL"
        return ActionsAnswer([split], seen, "America/New_York")

    plain, _ = IbkrHook(splits=no_splits).fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    bars, results = IbkrHook(splits=splits).fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    before = {r["time"]: r for r in plain.to_pylist()}
    for row in bars.to_pylist():
        factor = 2.0 if row["time"] < datetime(2020, 10, 1, tzinfo=UTC) else 1.0
        assert row["close"] == pytest.approx(before[row["time"]]["close"] * factor)
        assert row["volume"] == pytest.approx(before[row["time"]]["volume"] / factor)
    assert "as traded" in results[0].note and "1 splits" in results[0].note


def test_the_configured_source_takes_its_splits_from_yahoo_under_its_own_name(standin):
    """``bar_hook`` wires the ``splits_from`` source (``yahoo`` in the shipped config): AAPL's
    actions come from Yahoo's recorded answer, stated for source ``ibkr`` (the 4:1 split of 2020-08-31 among them)."""
    cfg = load_config()
    hook = bar_hook("ibkr", cfg.sources["ibkr"], timescale_conn_id="unused", splits_from=cfg.splits_from_of("ibkr"))
    answer = hook.corporate_actions("AAPL")
    assert {(a.source, a.symbol) for a in answer.actions} == {("ibkr", "AAPL")}
    assert (datetime(2020, 8, 31).date(), 4.0) in {(a.ex_date, a.ratio) for a in answer.actions if a.kind == SPLIT}


def test_a_source_of_kind_ibkr_must_name_where_its_splits_come_from():
    base = {
        "pool": "ibkr",
        "pool_slots": 1,
        "batch_size": 5,
        "universes": ["ibkr_us"],
        "intervals": {"1d": {"schedule": "@daily"}},
    }
    with pytest.raises(ValueError, match="kind ibkr needs splits_from"):
        SourceConfig(kind="ibkr", **base)
    with pytest.raises(ValueError, match="splits_from applies to kinds whose vendor states no splits"):
        SourceConfig(kind="yahoo", splits_from="alpha_vantage", **base)
    assert SourceConfig(kind="ibkr", splits_from="yahoo", **base).splits_from == "yahoo"


def test_history_requests_end_at_start_time_and_stay_under_1000_bars():
    """Minutes a day per request; daily spans of at most 1,000 days, ``startTime`` a day after the
    span so that IB (sessions before ``startTime``'s New York date) answers its last session."""
    minutes = ib.history_params(265598, "1m", Window(datetime(2024, 10, 1, tzinfo=UTC), datetime(2024, 10, 4, tzinfo=UTC)))
    assert [(p["period"], p["start_time"]) for p in minutes] == [
        ("1d", datetime(2024, 10, 2, tzinfo=UTC)),
        ("1d", datetime(2024, 10, 3, tzinfo=UTC)),
        ("1d", datetime(2024, 10, 4, tzinfo=UTC)),
    ]
    years = ib.history_params(265598, "1d", Window(datetime(2015, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC)))
    assert [p["period"] for p in years] == ["715d", "591d"]  # each span's weekdays and a day: its sessions and a few more
    assert years[-1]["start_time"] == datetime(2020, 1, 2, tzinfo=UTC)
    assert (
        ib.planned_requests(None, "1d", Window(datetime(2015, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC)), INGESTED) == 3
    )


def test_a_minute_window_is_cut_to_the_regular_session_in_utc(standin):
    """The recorded minutes of 2024-10-02 (Yahoo's, in IB's shape): 389 bars opening 13:30 .. 19:59 UTC."""
    window = Window(datetime(2024, 10, 2, tzinfo=UTC), datetime(2024, 10, 3, tzinfo=UTC))
    bars, results = IbkrHook(splits=no_splits).fetch_bars(["AAPL"], "1m", window, INGESTED)
    times = bars.column("time").to_pylist()
    assert results[0].status == outcomes.OK and len(times) == 389
    assert times[0] == datetime(2024, 10, 2, 13, 30, tzinfo=UTC) and times[-1] == datetime(2024, 10, 2, 19, 59, tzinfo=UTC)


def test_a_window_without_bars_and_an_unknown_symbol_are_that_symbols_outcome(standin):
    window = Window(datetime(2020, 12, 25, tzinfo=UTC), datetime(2020, 12, 26, tzinfo=UTC))  # no recording there
    _, results = IbkrHook(splits=no_splits).fetch_bars(["AAPL", "ZZZZ"], "1d", window, INGESTED)
    assert [(r.symbol, r.status) for r in results] == [("AAPL", outcomes.NO_DATA), ("ZZZZ", outcomes.UNKNOWN_SYMBOL)]
    assert "No data" in results[0].reason and "ZZZZ" in results[1].reason


class Recorded(requests.adapters.BaseAdapter):
    """A transport answering every request with one recorded body and status (ibind's session then
    raises as it does on the wire)."""

    def __init__(self, body: bytes, status: int):
        super().__init__()
        self.body, self.status = body, status

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code, response._content, response.url, response.request = self.status, self.body, request.url, request
        response.headers["Content-Type"] = "application/json"
        response.reason = "recorded"
        return response

    def close(self):
        pass


@pytest.mark.parametrize(
    ("recording", "status", "raised"),
    [
        ("ibkr_ERROR_400_no_permission.json", 400, ConfigurationError),
        ("ibkr_ERROR_400_unknown_conid.json", 400, UnknownSymbolError),
        ("ibkr_ERROR_500_no_data.json", 500, NoDataError),
        ("ibkr_ERROR_500_chart_data_unavailable.json", 500, VendorUnavailableError),
        ("ibkr_ERROR_401_not_authenticated.json", 401, VendorUnavailableError),
        ("ibkr_ERROR_400_no_bridge.json", 400, VendorUnavailableError),
        ("ibkr_ERROR_429_too_many_requests.json", 429, RateLimitedError),
    ],
)
def test_every_recorded_error_answer_raises_its_kind_through_ibinds_error(standin, monkeypatch, recording, status, raised):
    """Each body, at its status, through ibind's real ``ExternalBrokerError`` path: the task's
    error says what it is (a 429 only after the pacing waits, cut short here)."""
    monkeypatch.setattr("market_ingest.hooks.ibkr.PACING_WAITS", (0.01,))
    hook = IbkrHook(splits=no_splits)
    hook.client._session.mount("http://", Recorded((RECORDINGS / "ibkr" / recording).read_bytes(), status))
    with pytest.raises(raised) as caught:
        hook.call("history AAPL 1d", "AAPL", "marketdata_history_by_conid", conid="265598", bar="1d", period="5d")
    assert caught.value.symbol == "AAPL" and "history AAPL 1d" in str(caught.value)
    if raised is VendorUnavailableError and status in (400, 401):  # ibind wraps a 400 in its own error again: still read
        assert isinstance(caught.value, NotAuthenticatedError) and "not authenticated" in str(caught.value)


def test_an_unknown_answer_names_its_keys(standin):
    hook = IbkrHook(splits=no_splits)
    hook.client._session.mount("http://", Recorded(b'{"surprise": 1}', 200))
    with pytest.raises(UnexpectedBodyError, match="surprise"):
        hook.call("history AAPL 1d", "AAPL", "marketdata_history_by_conid", conid="265598", bar="1d", period="5d")


def test_a_burst_over_ibs_pacing_is_waited_out(standin, monkeypatch):
    """Two requests a second allowed, the hook spaced at 100: the third answers 429 and is asked again."""
    limits(standin, per_second=2)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MARKET_IBKR",
        json.dumps({"conn_type": "ibkr", "host": f"{standin.url}{GATEWAY}", "extra": {"requests_per_second": 100}}),
    )
    bars, results = IbkrHook(splits=no_splits).fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    assert results[0].status == outcomes.OK and bars.num_rows == 49
    assert 429 in [e["status"] for e in served(standin)]


def test_a_gateway_nobody_logged_into_fails_the_task_saying_so(standin, monkeypatch):
    """Nobody logged the gateway in (401 everywhere): the hook asks it to reauthenticate, checks
    its status until the wait is over, then fails naming the gateway and what to do."""
    limits(standin, per_second=None, logged_in=False)
    monkeypatch.setattr("market_ingest.hooks.ibkr.REAUTH_WAIT", 1.5)
    monkeypatch.setattr("market_ingest.hooks.ibkr.REAUTH_POLL", 0.5)
    with pytest.raises(VendorUnavailableError, match="is not authenticated: log it in"):
        IbkrHook(splits=no_splits).fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    paths = [e["path"].removeprefix(PREFIX) for e in served(standin)]
    assert paths[:2] == ["/tickle", "/iserver/reauthenticate"] and "/iserver/marketdata/history" not in paths


def test_a_brokerage_session_that_ended_is_opened_again_and_the_bars_come(standin, monkeypatch):
    """The login holds but the brokerage session ended (tickle: not authenticated): one
    ``/iserver/reauthenticate``, the status checked, then the symbol's bars."""
    limits(standin, per_second=None, authenticated=False)
    monkeypatch.setattr("market_ingest.hooks.ibkr.REAUTH_POLL", 0.1)
    bars, results = IbkrHook(splits=no_splits).fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    assert results[0].status == outcomes.OK and bars.num_rows == 49
    paths = [e["path"].removeprefix(PREFIX) for e in served(standin)]
    assert paths[:3] == ["/tickle", "/iserver/reauthenticate", "/iserver/auth/status"]


def test_a_401_in_the_middle_of_a_run_reopens_the_session_and_asks_again(standin):
    """A history request answered 401 (the session ended between two requests): the hook tickles,
    and asks the same span once more; the symbol's bars are all there."""
    fault = [{"vendor": "ibkr", "kind": "status", "status": 401, "count": 1, "match": "marketdata/history"}]
    requests.post(f"{standin.url}/_standin/faults", data=json.dumps(fault), timeout=10).raise_for_status()
    bars, results = IbkrHook(splits=no_splits).fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    assert results[0].status == outcomes.OK and bars.num_rows == 49
    statuses = [(e["path"].removeprefix(PREFIX), e["status"]) for e in served(standin)]
    assert [s for p, s in statuses if p == "/iserver/marketdata/history"] == [401, 200]
    assert statuses.count(("/tickle", 200)) == 2


def test_an_answer_cut_at_1000_bars_is_asked_again_in_halves(monkeypatch):
    """IB answers at most 1,000 bars, the newest: a span holding more (three sessions of minutes,
    1,170 bars, asked as one here) is split until every answer is whole; the bars are those of the
    same window asked a day at a time."""
    standin = StandIn(RECORDINGS, synthetic=True, clock=datetime(2026, 11, 20, 18, 0, tzinfo=UTC))
    window = Window(datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 19, tzinfo=UTC))
    with serving(standin, monkeypatch) as url:
        standin.url = url
        limits(standin, per_second=None)
        daily, _ = IbkrHook(splits=no_splits).fetch_bars(["MSFT"], "1m", window, INGESTED)
        monkeypatch.setitem(ib.INTRADAY_CHUNK_DAYS, "1m", 3)
        bars, results = IbkrHook(splits=no_splits).fetch_bars(["MSFT"], "1m", window, INGESTED)
    assert daily.num_rows == 3 * 390
    assert results[0].status == outcomes.OK and bars.column("time").to_pylist() == daily.column("time").to_pylist()


def test_the_session_is_tickled_again_after_a_minute(standin, monkeypatch):
    hook = IbkrHook(splits=no_splits)
    clock = [1000.0]
    monkeypatch.setattr("market_ingest.hooks.ibkr._monotonic", lambda: clock[0])
    hook.keep_alive(force=True)
    hook.keep_alive()
    clock[0] += ib.TICKLE_SECONDS + 1
    hook.keep_alive()
    assert [e["path"].removeprefix(PREFIX) for e in served(standin)] == ["/tickle", "/tickle"]


OAUTH = {
    "oauth": True,
    "consumer_key": "TESTCONS1",
    "access_token": "tok-3f9a1c",
    "encryption_key": "-----BEGIN RSA PRIVATE KEY-----\nENC-SECRET-71\n-----END RSA PRIVATE KEY-----",
    "signature_key": "-----BEGIN RSA PRIVATE KEY-----\nSIG-SECRET-72\n-----END RSA PRIVATE KEY-----",
    "dh_prime": "f51d7ab737a452668fd8b5eec12fcdc3c01a0744d93db2e9b1dc335bd2551ec6",
}


def test_an_oauth_connection_names_what_is_missing_and_no_secret(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_IBKR", json.dumps({"conn_type": "ibkr", "extra": {**OAUTH, "signature_key": None}}))
    with pytest.raises(ConfigurationError) as caught:
        _ = IbkrHook()._settings
    assert "signature_key" in str(caught.value) and "access_token_secret" in str(caught.value)
    text = str(caught.value) + "\n".join(r.getMessage() for r in caplog.records)
    assert "ENC-SECRET-71" not in text and "tok-3f9a1c" not in text


def test_oauth_keys_that_open_no_session_fail_at_once_without_their_secrets(standin, monkeypatch, caplog):
    """Keys that are no RSA keys: ibind cannot sign the live session token request. That is the
    connection's fault, not IB's: a configuration error (no retry), naming what to check, and no
    key, token or secret in its message or the log."""
    caplog.set_level(logging.DEBUG)
    conn = {"conn_type": "ibkr", "host": f"{standin.url}/api.ibkr.com/v1/api", "password": "SECRET-OF-TOKEN-73", "extra": OAUTH}
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_IBKR", json.dumps(conn))
    with pytest.raises(ConfigurationError, match="do not open a session") as caught:
        IbkrHook(splits=no_splits).fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    text = str(caught.value) + "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("SECRET-OF-TOKEN-73", "ENC-SECRET-71", "SIG-SECRET-72"):
        assert secret not in text


#: RFC 2409's 1024-bit MODP prime (group 2), as a DH prime of the test's consumer.
DH_PRIME = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF"
)


def test_an_oauth_consumer_opens_its_session_and_reads_bars_with_no_secret_logged(standin, monkeypatch, caplog):
    """OAuth 1.0a end to end through ibind against the stand-in as ``api.ibkr.com``: the access
    token secret (the prepend, encrypted to the consumer's key) decrypted, the live session token
    agreed by Diffie-Hellman and checked against IB's signature, ssodh/init, then every request
    signed HMAC-SHA256 with it; the day's bars come, and no key, token, secret or live session
    token is in any log line or in the task's outcome."""
    import base64
    import secrets as random

    from Crypto.Cipher import PKCS1_v1_5
    from Crypto.PublicKey import RSA

    caplog.set_level(logging.DEBUG)
    encryption, signature = RSA.generate(2048), RSA.generate(2048)
    prepend = random.token_bytes(32)
    secret = base64.b64encode(PKCS1_v1_5.new(encryption.public_key()).encrypt(prepend)).decode()
    consumer = {"consumer_key": "TESTCONS1", "access_token": "tok-3f9a1c", "prepend": prepend.hex(), "dh_prime": DH_PRIME}
    limits(standin, per_second=None, oauth=consumer)
    extra = {
        "oauth": True,
        "consumer_key": "TESTCONS1",
        "access_token": "tok-3f9a1c",
        "encryption_key": " ".join(encryption.export_key().decode().splitlines()),  # as pasted into the form
        "signature_key": signature.export_key().decode(),
        "dh_prime": DH_PRIME,
    }
    conn = {"conn_type": "ibkr", "host": f"{standin.url}/api.ibkr.com/v1/api", "password": secret, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_IBKR", json.dumps(conn))
    hook = IbkrHook(splits=no_splits)
    bars, results = hook.fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    assert results[0].status == outcomes.OK and bars.num_rows == 49
    paths = [e["path"].removeprefix(PREFIX) for e in served(standin)]
    assert paths[:3] == ["/oauth/live_session_token", "/iserver/auth/ssodh/init", "/tickle"]
    assert "/iserver/marketdata/history" in paths
    token = hook.client.live_session_token
    text = "\n".join(r.getMessage() for r in caplog.records) + str(results)
    for value in (
        secret,
        token,
        prepend.hex(),
        "tok-3f9a1c",
        extra["encryption_key"].split()[4],
        extra["signature_key"].splitlines()[1],
    ):
        assert value not in text


def test_an_oauth_consumer_ibkr_refuses_fails_at_once_naming_the_connection(standin, monkeypatch):
    """A consumer IB does not know (the live session token answered 401): a configuration error, no retry."""
    import base64

    from Crypto.Cipher import PKCS1_v1_5
    from Crypto.PublicKey import RSA

    limits(standin, per_second=None)  # no consumer configured
    rsa = RSA.generate(1024)
    key = rsa.export_key().decode()
    secret = base64.b64encode(PKCS1_v1_5.new(rsa.public_key()).encrypt(b"prepend")).decode()
    extra = {**OAUTH, "encryption_key": key, "signature_key": key, "dh_prime": DH_PRIME}
    conn = {"conn_type": "ibkr", "host": f"{standin.url}/api.ibkr.com/v1/api", "password": secret, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_IBKR", json.dumps(conn))
    with pytest.raises(ConfigurationError, match="IBKR refused the OAuth consumer \\(HTTP 401\\)"):
        IbkrHook(splits=no_splits).fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)


def test_a_pem_key_pasted_into_a_one_line_field_gets_its_line_breaks_back(monkeypatch):
    """The form's fields are one line: a pasted PEM key loses its line breaks, which pycryptodome needs."""
    from Crypto.PublicKey import RSA

    key = RSA.generate(1024).export_key().decode()
    one_line = " ".join(key.splitlines())
    monkeypatch.setenv(
        "AIRFLOW_CONN_MARKET_IBKR",
        json.dumps(
            {"conn_type": "ibkr", "password": " c2VjcmV0 ", "extra": {**OAUTH, "encryption_key": one_line, "signature_key": key}}
        ),
    )
    fields = IbkrHook()._settings["oauth_fields"]
    assert fields["encryption_key"] == fields["signature_key"] == key.strip()
    assert RSA.import_key(fields["encryption_key"]).n == RSA.import_key(key).n
    assert fields["access_token_secret"] == "c2VjcmV0"


def test_a_gateway_is_reached_over_https_or_on_loopback_only(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MARKET_IBKR", json.dumps({"conn_type": "ibkr", "host": "http://gateway.internal:5000/v1/api"})
    )
    with pytest.raises(ConfigurationError, match="must be an https:// URL"):
        _ = IbkrHook()._settings
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_IBKR", json.dumps({"conn_type": "ibkr"}))
    settings = IbkrHook()._settings
    assert settings["url"] == ib.DEFAULT_GATEWAY_URL and settings["per_second"] == ib.GATEWAY_REQUESTS_PER_SECOND
    assert settings["cacert"] is False
    # a URI splits the gateway's URL into host, port and schema: put back together, https
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_IBKR", "ibkr://gateway.internal:5000/v1/api?requests_per_second=4")
    settings = IbkrHook()._settings
    assert (settings["url"], settings["per_second"]) == ("https://gateway.internal:5000/v1/api", 4.0)


def test_each_task_takes_its_share_of_ibs_rate_for_the_session(monkeypatch):
    """IB's 10 requests a second are the gateway session's, which every task of the source shares:
    the configured source (pool of 4 slots) spaces each task's requests at 2.5 a second."""
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_IBKR", json.dumps({"conn_type": "ibkr"}))
    cfg = load_config()
    hook = bar_hook("ibkr", cfg.sources["ibkr"], timescale_conn_id="unused", splits_from=cfg.splits_from_of("ibkr"))
    assert cfg.sources["ibkr"].pool_slots == 4 and hook._settings["per_second"] == ib.GATEWAY_REQUESTS_PER_SECOND / 4


def test_a_splits_source_that_states_no_splits_is_refused_naming_it():
    cfg = load_config()
    broken = cfg.model_copy(
        update={"sources": {**cfg.sources, "ibkr": cfg.sources["ibkr"].model_copy(update={"splits_from": "binance"})}}
    )
    with pytest.raises(ValueError, match="splits_from 'binance' names no configured source whose vendor states splits"):
        broken.splits_from_of("ibkr")
    found = cfg.splits_from_of("ibkr")
    assert found is not None and (found.source, found.symbol_of("AAPL"), found.symbol_of("XYZ")) == ("yahoo", "AAPL", "XYZ")


def test_quotes_are_refused_naming_the_source():
    with pytest.raises(ConfigurationError, match="not served for Interactive Brokers"):
        IbkrHook().fetch_quotes(["AAPL"], INGESTED, INGESTED + timedelta(seconds=1))
