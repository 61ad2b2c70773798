"""Source kinds are a registry: the config validates against it, sources build hooks and plans from it,
the provider info lists its connection forms; a kind is registered once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from market_ingest import kinds, sources
from market_ingest.config import SourceConfig
from market_ingest.extract import Answer, SharedExtract
from market_ingest.intervals import Window
from market_ingest.vendors import ConnectionForm, SourceKind, number_field
from tests.conftest import RECORDINGS, ROOT

BASE = {
    "pool": "p",
    "pool_slots": 1,
    "batch_size": 5,
    "universes": ["u"],
    "description": "d",
    "intervals": {"1d": {"schedule": "@daily"}},
}


def test_an_unregistered_kind_is_refused_naming_the_registered_ones():
    with pytest.raises(
        ValueError, match=r"unknown source kind 'stooq'; registered kinds: alpha_vantage, ccxt, ibkr, twelvedata, yahoo"
    ):
        SourceConfig(kind="stooq", **BASE)


# A toy vendor defined as a vendor module defines one (``market_ingest/vendors/<kind>.py``): its body
# parsing, request planning and lookback as functions, its hook, and one KIND naming them all.
# Its "API" is the recorded Binance klines body: [open ms, open, high, low, close, volume, ...] rows.
TOY_BODY = RECORDINGS / "binance" / "binance_spot_klines_BTCUSDT_1m_2021-10-22.json"
TOY_CLOCK = datetime(2021, 10, 22, 23, 12, 30, tzinfo=timezone.utc)  # the recording's requested_at


def toy_bars(body: list, *, source: str, symbol: str, ingested_at: datetime):
    """The toy vendor's body parsing: kline rows as canonical 1m bars."""
    from market_ingest.vendors.ccxt import candles_to_bars

    candles = [[int(r[0]), *map(float, r[1:6])] for r in body]
    return candles_to_bars(candles, source=source, symbol=symbol, interval="1m", currency="USDT", ingested_at=ingested_at)


def toy_planned_requests(src, interval: str, window: Window, now: datetime) -> int:
    return 2  # per symbol, whatever the window


def toy_oldest_servable(src, interval: str, now: datetime) -> datetime | None:
    return now - timedelta(days=7)


class ToyHook(SharedExtract):
    """The toy vendor's hook: builds itself for a configured source, answers from the recorded body."""

    def __init__(self, source: str, conn_id: str) -> None:
        self.source, self.conn_id = source, conn_id

    @classmethod
    def for_source(cls, name: str, src, *, timescale_conn_id: str) -> ToyHook:
        return cls(name, src.connection_id(name))

    def answer(self, symbol: str, interval: str, window: Window, ingested_at: datetime) -> Answer:
        body = json.loads(TOY_BODY.read_text())
        return Answer(toy_bars(body, source=self.source, symbol=symbol, ingested_at=ingested_at), now=TOY_CLOCK, continuous=True)


TOY = SourceKind(
    "toy",
    r"[A-Z0-9]{2,10}/[A-Z]{3,4}",
    hook=f"{__name__}.ToyHook",
    planned_requests=toy_planned_requests,
    oldest_servable=toy_oldest_servable,
    conn_type="toy_vendor",
    default_conn_id="market_toy",
    form=ConnectionForm(
        hook_name="Toy vendor",
        integration="Toy",
        doc_url="https://toy.invalid/docs",
        fields={"depth": number_field("Depth", "How deep the toy digs.", 3, "integer")},
        behaviour={"hidden-fields": ["schema", "port"]},
    ),
)


@pytest.fixture
def toy():
    """:data:`TOY` registered the one way a kind is (:func:`market_ingest.kinds.register`), and unregistered after."""
    kinds.register(TOY)
    yield TOY
    del kinds.KINDS["toy"]


def test_a_toy_kind_registered_once_is_configured_planned_built_listed_and_extracted(toy, tmp_path):
    """Adding a vendor is one registration: the config, the request plan, the lookback, the hook,
    the Add Connection form and the extract step all read the kind registered with ``kinds.register``."""
    import yaml

    from market_ingest.config import load_config
    from market_ingest.get_provider_info import get_provider_info

    doc = yaml.safe_load((ROOT / "include" / "pipeline.yaml").read_text())
    doc["sources"]["toy"] = {**BASE, "kind": "toy", "universes": ["crypto_majors"]}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    src = load_config(tmp_path / "pipeline.yaml").sources["toy"]

    assert src.symbols_like == toy.symbol_pattern and src.connection_id("toy") == "market_toy"
    window = Window(datetime(2021, 10, 22, 23, 3, tzinfo=timezone.utc), datetime(2021, 10, 22, 23, 13, tzinfo=timezone.utc))
    assert sources.planned_requests(src, "toy", "1m", ["BTC/USDT", "ETH/USDT"], window, TOY_CLOCK) == 4
    assert sources.oldest_servable(src, "1m", TOY_CLOCK) == TOY_CLOCK - timedelta(days=7)
    (form,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "toy_vendor"]
    assert form["hook-class-name"] == f"{__name__}.ToyHook" and form["hook-name"] == "Toy vendor"
    assert list(form["conn-fields"]) == ["depth"]

    hook = sources.bar_hook("toy", src, timescale_conn_id="market_timescale")
    assert isinstance(hook, ToyHook) and hook.conn_id == "market_toy"
    bars, (outcome,) = hook.fetch_bars(["BTC/USDT"], "1m", window, TOY_CLOCK)
    # Expected from the body itself: its minutes 23:03-23:11 (23:12 was still open at the recording's clock).
    recorded = sorted(datetime.fromtimestamp(int(r[0]) / 1000, timezone.utc) for r in json.loads(TOY_BODY.read_text()))
    assert bars["time"].to_pylist() == recorded[:-1] and outcome.status == "ok" and outcome.rows == 9
    assert outcome.dropped == {"open_bar": 1} and set(bars["source"].to_pylist()) == {"toy"}
    with pytest.raises(ValueError, match="extended_hours applies"):
        SourceConfig(kind="toy", **{**BASE, "intervals": {"5m": {"schedule": "@daily", "extended_hours": True}}})


def test_each_vendor_module_is_a_registered_kind():
    """The kinds are the vendor modules' ``KIND``s: a module of ``market_ingest.vendors`` is the registration."""
    import importlib
    import pkgutil

    from market_ingest import vendors

    modules = {m.name: importlib.import_module(f"market_ingest.vendors.{m.name}") for m in pkgutil.iter_modules(vendors.__path__)}
    assert {name: module.KIND for name, module in modules.items()} == {k.name: k for k in kinds.KINDS.values()}


def test_symbols_in_flight_needs_a_kind_whose_hook_is_thread_safe():
    """yfinance is asked from several threads at once; ccxt's synchronous throttle and Alpha
    Vantage's daily quota are not, so the config refuses them more than one symbol in flight."""
    assert SourceConfig(kind="yahoo", symbols_in_flight=4, **BASE).symbols_in_flight == 4
    assert SourceConfig(kind="alpha_vantage", **BASE).symbols_in_flight == 1  # the default
    with pytest.raises(ValueError, match=r"symbols_in_flight above 1 applies to kinds \['yahoo'\]; not ccxt"):
        SourceConfig(kind="ccxt", exchange="binance", symbols_in_flight=2, **BASE)
    with pytest.raises(ValueError, match="symbols_in_flight above 1 applies to kinds"):
        SourceConfig(kind="alpha_vantage", symbols_in_flight=2, **BASE)


def test_each_kind_names_its_hook_s_connection_type_and_default_connection():
    from market_ingest.hooks.alpha_vantage import AlphaVantageHook
    from market_ingest.hooks.exchange import ExchangeHook
    from market_ingest.hooks.ibkr import IbkrHook
    from market_ingest.hooks.twelve_data import TwelveDataHook
    from market_ingest.hooks.yahoo import YahooFinanceHook

    hooks = {
        "yahoo": YahooFinanceHook,
        "alpha_vantage": AlphaVantageHook,
        "ccxt": ExchangeHook,
        "twelvedata": TwelveDataHook,
        "ibkr": IbkrHook,
    }
    assert set(hooks) == set(kinds.KINDS)
    for name, hook in hooks.items():
        assert kinds.kind(name).conn_type == hook.conn_type, name
    assert kinds.kind("yahoo").default_conn_id == YahooFinanceHook.default_conn_name
    assert kinds.kind("alpha_vantage").default_conn_id == AlphaVantageHook.default_conn_name
    assert kinds.kind("twelvedata").default_conn_id == TwelveDataHook.default_conn_name
    assert kinds.kind("ibkr").default_conn_id == IbkrHook.default_conn_name
    assert kinds.kind("ccxt").default_conn_id == "", "one connection per exchange: market_<source>"
