"""Construct Yahoo's answer to a whole-history events request for TSLA, NVDA, AAPL and MSFT.

The product asks Yahoo's chart API once per symbol and day for every split and dividend
(``period1=0``, ``interval=1mo``, ``events=div,splits,capitalGains``;
``market_ingest.vendors.yahoo.EVENTS_PARAMS``). No such answer was ever recorded, so this script
builds one per symbol from the company's documented split and dividend history, as Yahoo states
it on the day of that symbol's genuine recordings (their ``requested_at``):

* each event's ``date`` is the ex-date's regular-session open (09:30 New York), as in the
  recorded events (``yahoo_chart_NVDA_1d_..._split``: 4:1 at 1626787800, 2021-07-20 13:30 UTC);
* dividend ``amount``\\ s are split-adjusted as of the answer, like Yahoo's (the amount paid per
  share divided by every split after the ex-date, up to the answer's date), rounded to 6
  decimals (Yahoo's web page and CSV precision; exact for every dividend since 2014-05-08);
* ``meta`` is that of the symbol's genuine recording of the same clock, with ``dataGranularity``
  ``1mo`` and without ``chartPreviousClose`` (a price of that recording's window);
* no bars: the request only needs the events, and no price is invented.

Each body gets a sidecar with ``holds: events`` (the stand-in serves it for events requests only,
never for bars). Facts and sources are in the tables below and in
``include/recordings/PROVENANCE.md`` ("Constructed recordings"). Run from the repository root::

    python tools/construct_yahoo_events.py

The output is committed; run it again only when a table below changes.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from math import prod
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "include" / "recordings" / "yahoo"
NEW_YORK = ZoneInfo("America/New_York")
WINDOW_START = "1980-01-01T00:00:00Z"


def _quarterly(amount: float, *days: str) -> list[tuple[str, float]]:
    return [(d, amount) for d in days]


#: symbol -> the genuine recording whose meta and clock the answer takes, the splits
#: ``(ex-date, numerator, denominator)``, the dividends ``(ex-date, amount paid per share as
#: traded, USD)``, and the first ex-date from which the dividends are complete.
SYMBOLS: dict[str, dict] = {
    "TSLA": {
        "meta_of": "yahoo_chart_TSLA_1d_full_2010-06-29_2023-08-11",
        "splits": [("2020-08-31", 5, 1), ("2022-08-25", 3, 1)],
        "dividends": [],  # Tesla has never paid a dividend
        "dividends_from": None,
    },
    "NVDA": {
        "meta_of": "yahoo_chart_NVDA_1d_2021-02-01_2022-01-28_split",
        # 2:1 in 2000 (not 3:2): one IPO share is 480 shares today (2 x 2 x 2 x 1.5 x 4 x 10)
        "splits": [
            ("2000-06-27", 2, 1),
            ("2001-09-17", 2, 1),
            ("2006-04-07", 2, 1),
            ("2007-09-11", 3, 2),
            ("2021-07-20", 4, 1),
            ("2024-06-10", 10, 1),
        ],
        "dividends": [
            *_quarterly(0.16, "2018-11-29", "2019-02-28", "2019-05-30", "2019-08-28", "2019-11-27"),
            *_quarterly(0.16, "2020-02-27", "2020-06-04", "2020-09-01", "2020-12-03", "2021-03-09", "2021-06-09"),
            *_quarterly(0.04, "2021-08-31", "2021-12-01", "2022-03-02", "2022-06-08", "2022-09-07", "2022-11-30"),
            *_quarterly(0.04, "2023-03-07", "2023-06-07", "2023-09-06", "2023-12-05", "2024-03-05"),
            *_quarterly(0.01, "2024-06-11", "2024-09-12", "2024-12-05"),
        ],
        "dividends_from": "2018-11-29",  # 2012-11-20 .. 2018-08-29 left out (not sourced here)
    },
    "AAPL": {
        "meta_of": "yahoo_chart_AAPL_1d_2020-08-31_2020-11-06_split_div",
        "splits": [("1987-06-16", 2, 1), ("2000-06-21", 2, 1), ("2005-02-28", 2, 1), ("2014-06-09", 7, 1), ("2020-08-31", 4, 1)],
        "dividends": [
            *_quarterly(2.65, "2012-08-09", "2012-11-07", "2013-02-07"),
            *_quarterly(3.05, "2013-05-09", "2013-08-08", "2013-11-06", "2014-02-06"),
            *_quarterly(3.29, "2014-05-08"),
            *_quarterly(0.47, "2014-08-07", "2014-11-06", "2015-02-05"),
            *_quarterly(0.52, "2015-05-07", "2015-08-06", "2015-11-05", "2016-02-04"),
            *_quarterly(0.57, "2016-05-05", "2016-08-04", "2016-11-03", "2017-02-09"),
            *_quarterly(0.63, "2017-05-11", "2017-08-10", "2017-11-10", "2018-02-09"),
            *_quarterly(0.73, "2018-05-11", "2018-08-10", "2018-11-08", "2019-02-08"),
            *_quarterly(0.77, "2019-05-10", "2019-08-09", "2019-11-07", "2020-02-07"),
            *_quarterly(0.82, "2020-05-08", "2020-08-07"),
            *_quarterly(0.205, "2020-11-06", "2021-02-05"),
            *_quarterly(0.22, "2021-05-07", "2021-08-06", "2021-11-05", "2022-02-04"),
            *_quarterly(0.23, "2022-05-06", "2022-08-05", "2022-11-04", "2023-02-10"),
            *_quarterly(0.24, "2023-05-12", "2023-08-11", "2023-11-10", "2024-02-09"),
            *_quarterly(0.25, "2024-05-10", "2024-08-12", "2024-11-08", "2025-02-10"),
        ],
        "dividends_from": "2012-08-09",  # resumed then; the 1987-1995 dividends are left out
    },
    "MSFT": {
        "meta_of": "yahoo_chart_MSFT_1d_2021-02-01_2022-01-28_dividends",
        "splits": [
            ("1987-09-21", 2, 1),
            ("1990-04-16", 2, 1),
            ("1991-06-27", 3, 2),
            ("1992-06-15", 3, 2),
            ("1994-05-23", 2, 1),
            ("1996-12-09", 2, 1),
            ("1998-02-23", 2, 1),
            ("1999-03-29", 2, 1),
            ("2003-02-18", 2, 1),
        ],
        "dividends": [
            *_quarterly(0.28, "2014-02-18", "2014-05-13", "2014-08-19"),
            *_quarterly(0.31, "2014-11-18", "2015-02-17", "2015-05-19", "2015-08-18"),
            *_quarterly(0.36, "2015-11-17", "2016-02-16", "2016-05-17", "2016-08-16"),
            *_quarterly(0.39, "2016-11-15", "2017-02-14", "2017-05-16", "2017-08-15"),
            *_quarterly(0.42, "2017-11-15", "2018-02-14", "2018-05-16", "2018-08-15"),
            *_quarterly(0.46, "2018-11-14", "2019-02-20", "2019-05-15", "2019-08-14"),
            *_quarterly(0.51, "2019-11-20", "2020-02-19", "2020-05-20", "2020-08-19"),
            *_quarterly(0.56, "2020-11-18", "2021-02-17", "2021-05-19", "2021-08-18"),
            *_quarterly(0.62, "2021-11-17", "2022-02-16", "2022-05-18", "2022-08-17"),
            *_quarterly(0.68, "2022-11-16", "2023-02-15", "2023-05-17", "2023-08-16"),
            *_quarterly(0.75, "2023-11-15", "2024-02-14", "2024-05-15", "2024-08-15"),
            *_quarterly(0.83, "2024-11-21", "2025-02-20"),
        ],
        "dividends_from": "2014-02-18",  # 2003-02-19 .. 2013-11-19 left out (not sourced here)
    },
}


def session_open(day: str) -> int:
    """Epoch seconds of 09:30 New York on ``day`` (ISO date): Yahoo's ``date`` of a US event."""
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, 9, 30, tzinfo=NEW_YORK).timestamp())


def events_of(spec: dict, clock: datetime) -> dict:
    """Yahoo's ``events`` object of one symbol as of ``clock``: dividends split-adjusted as of then."""
    splits = [(d, n, m) for d, n, m in spec["splits"] if session_open(d) <= clock.timestamp()]
    dividends = {}
    for day, paid in spec["dividends"]:
        t = session_open(day)
        assert t <= clock.timestamp(), f"{day} is after the answer's clock"
        later = prod(n / m for d, n, m in splits if date.fromisoformat(d) > date.fromisoformat(day))
        dividends[str(t)] = {"amount": round(paid / later, 6), "date": t}
    split_events = {
        str(session_open(d)): {"date": session_open(d), "numerator": n, "denominator": m, "splitRatio": f"{n}:{m}"}
        for d, n, m in splits
    }
    events = {}
    if dividends:
        events["dividends"] = dividends
    if split_events:
        events["splits"] = split_events
    return events


def build() -> list[Path]:
    """Write each symbol's body and sidecar into ``include/recordings/yahoo``; return the bodies."""
    written = []
    for symbol, spec in SYMBOLS.items():
        source = yaml.safe_load((OUT / f"{spec['meta_of']}.meta.yaml").read_text())
        clock = datetime.fromisoformat(str(source["requested_at"]).replace("Z", "+00:00")).astimezone(timezone.utc)
        meta = json.loads((OUT / f"{spec['meta_of']}.json").read_text())["chart"]["result"][0]["meta"]
        meta = {k: v for k, v in meta.items() if k != "chartPreviousClose"} | {"dataGranularity": "1mo"}
        body = {"chart": {"result": [{"meta": meta, "events": events_of(spec, clock)}], "error": None}}
        stem = f"yahoo_chart_{symbol}_1mo_events_constructed_{clock.date().isoformat()}"
        (OUT / f"{stem}.json").write_text(json.dumps(body, separators=(",", ":")))
        period2 = int(clock.timestamp()) + 86_400
        complete = f"dividends complete from {spec['dividends_from']}" if spec["dividends_from"] else "no dividends paid"
        sidecar = {
            "vendor": "yahoo",
            "endpoint": "chart",
            "symbol": symbol,
            "interval": "1mo",
            "holds": "events",
            "window": [WINDOW_START, clock.strftime("%Y-%m-%dT%H:%M:%SZ")],
            "requested_at": clock.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "request": (
                f"GET https://query2.finance.yahoo.com/v8/finance/chart/{symbol}?period1=0&period2={period2}"
                "&interval=1mo&events=div%2Csplits%2CcapitalGains&includePrePost=false (never sent: constructed)"
            ),
            "provenance": (
                f"CONSTRUCTED, not recorded, by tools/construct_yahoo_events.py from {symbol}'s documented split and "
                f"dividend history (every split; {complete}); meta from {spec['meta_of']}. "
                "Sources: include/recordings/PROVENANCE.md, section Constructed recordings."
            ),
        }
        (OUT / f"{stem}.meta.yaml").write_text(yaml.safe_dump(sidecar, sort_keys=False, width=1 << 20))
        written.append(OUT / f"{stem}.json")
    return written


if __name__ == "__main__":
    for path in build():
        print(path.relative_to(ROOT))
