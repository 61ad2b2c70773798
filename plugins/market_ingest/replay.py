"""Replay of recorded vendor responses, so the real hook code runs offline.

A *recording library* is a folder of vcrpy cassettes (YAML), one or more per recorded response,
for example ``include/recordings/yahoo/``. Every cassette in the folder is loaded; adding a
recording means dropping a file there. While replay is active, every HTTP request made through
``requests``/``urllib3`` is answered from the library, and a request no recording answers raises
:class:`ReplayMissError` instead of reaching the network.

Matching rules (see :func:`window_matcher`): scheme, host and path must be equal; query
parameters must be equal except

* time-window parameters: ``period1``/``period2`` (Yahoo chart, epoch seconds), ``startTime``/
  ``endTime`` (Binance, epoch ms), ``startAt``/``endAt`` (KuCoin, epoch seconds) and
  ``start``/``end`` (Coinbase Advanced Trade epoch seconds, Coinbase Exchange ISO 8601). The recorded window must *contain* the requested
  one; a request giving only a start must start inside it. Bars outside the requested window are
  dropped downstream, as they would be if the vendor had returned them live (Yahoo does: see the
  AAPL 1m recording). ccxt keeps only candles at or after its ``since`` and at most ``limit`` of
  them, so a page asked of a longer recording comes out as the exchange would have sent it;
* a request carrying ``range`` instead of a window (yfinance's timezone probe) matches any
  recording of the same path: yfinance reads only ``meta.exchangeTimezoneName`` from it;
* session and presentation parameters (``crumb``, ``events``, ``includePrePost``, ``lang``,
  ``useYfid``, ``apikey``) and the page size ``limit`` are ignored.

Replay is switched on by the ``MARKET_INGEST_REPLAY_DIR`` environment variable (the demo and the
tests set it) or explicitly with :func:`replay`.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    import vcr.request

REPLAY_ENV = "MARKET_INGEST_REPLAY_DIR"

#: (start, end) query parameters of a time window, per vendor.
WINDOW_PAIRS = (("period1", "period2"), ("startTime", "endTime"), ("startAt", "endAt"), ("start", "end"))
WINDOW_PARAMS = frozenset(p for pair in WINDOW_PAIRS for p in pair)
IGNORED_PARAMS = frozenset({"crumb", "events", "includePrePost", "lang", "useYfid", "apikey", "limit"})


class ReplayMissError(RuntimeError):
    """A request reached the replay layer that no recording answers.

    The message names the request (with secrets removed) and the folder searched, so the fix is
    obvious: record that response and drop the cassette into the folder.
    """


def replay_dir() -> Path | None:
    """Return the recordings root from ``MARKET_INGEST_REPLAY_DIR``, or ``None`` when live."""
    value = os.environ.get(REPLAY_ENV, "").strip()
    return Path(value) if value else None


def _query(uri: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(uri).query, keep_blank_values=True))


def _path_key(uri: str) -> tuple[str, str, str]:
    parts = urlsplit(uri)
    return parts.scheme, parts.netloc.lower(), parts.path.rstrip("/")


def _instant(value: str) -> float:
    """A window bound as a number: epoch digits as given (each vendor's unit), ISO 8601 as epoch seconds."""
    if value.lstrip("-").isdigit():
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def window_matcher(live: vcr.request.Request, recorded: vcr.request.Request) -> None:
    """vcrpy matcher implementing the rules in the module docstring.

    :raises AssertionError: when ``recorded`` cannot answer ``live`` (vcrpy's matcher protocol).
    """
    assert _path_key(live.uri) == _path_key(recorded.uri), "path differs"
    lq, rq = _query(live.uri), _query(recorded.uri)
    if "range" in lq and not any(p in lq for p in WINDOW_PARAMS):
        return  # timezone probe: any recording of this symbol carries the exchange timezone
    for name in set(lq) | set(rq):
        if name in IGNORED_PARAMS or name in WINDOW_PARAMS:
            continue
        assert lq.get(name) == rq.get(name), f"query parameter {name} differs"
    for start, end in WINDOW_PAIRS:
        if start not in lq and end not in lq:
            continue
        assert start in rq and end in rq, "recording has no window"
        if start in lq:
            assert _instant(rq[start]) <= _instant(lq[start]) <= _instant(rq[end]), "window starts outside the recording"
        if end in lq:
            assert _instant(lq[end]) <= _instant(rq[end]), "window ends after the recording"


@dataclass(frozen=True)
class Recording:
    """One recorded request/response pair, as stored in a cassette."""

    path: Path
    uri: str
    status: int
    recorded_at: datetime | None

    def answers(self, uri: str) -> bool:
        """True when this recording would answer a GET of ``uri`` under :func:`window_matcher`."""
        from vcr.request import Request

        try:
            window_matcher(Request("GET", uri, None, {}), Request("GET", self.uri, None, {}))
        except AssertionError:
            return False
        return True


class RecordingLibrary:
    """All cassettes under one folder (recursively).

    :param root: folder of ``*.yaml`` vcrpy cassettes.
    :raises FileNotFoundError: when ``root`` does not exist.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"replay folder {self.root} does not exist")

    def cassette_files(self) -> list[Path]:
        """Cassette files in a stable order (``*.meta.yaml`` are the stand-in's sidecars, not cassettes)."""
        return sorted(p for p in self.root.rglob("*.yaml") if not p.name.endswith(".meta.yaml"))

    @cached_property
    def recordings(self) -> list[Recording]:
        """Every interaction in the library, with the ``Date`` header parsed as UTC."""
        import yaml

        found: list[Recording] = []
        for path in self.cassette_files():
            data = yaml.safe_load(path.read_text()) or {}
            for item in data.get("interactions", []):
                headers = {k.lower(): v for k, v in item["response"].get("headers", {}).items()}
                date = (headers.get("date") or [None])[0]
                when = email.utils.parsedate_to_datetime(date).astimezone(timezone.utc) if date else None
                found.append(Recording(path, item["request"]["uri"], item["response"]["status"]["code"], when))
        return found

    def recorded_at(self, uri: str) -> datetime | None:
        """When the recording that answers ``uri`` was made: the vendor's "now" for that request.

        :return: UTC time of the first answering recording, or ``None`` when none answers.
        """
        for rec in self.recordings:
            if rec.answers(uri):
                return rec.recorded_at
        return None


class _FolderPersister:
    """vcrpy persister that loads every cassette of a folder and never writes."""

    @classmethod
    def load_cassette(cls, cassette_path, serializer):
        from vcr.serialize import deserialize
        from vcr.serializers import yamlserializer

        requests, responses = [], []
        for path in RecordingLibrary(cassette_path).cassette_files():
            reqs, resps = deserialize(path.read_text(), yamlserializer)
            requests += reqs
            responses += resps
        return requests, responses

    @staticmethod
    def save_cassette(cassette_path, cassette_dict, serializer):
        raise RuntimeError("replay never records; add a cassette file by hand instead")


@contextlib.contextmanager
def replay(folder: Path | str) -> Iterator[RecordingLibrary]:
    """Serve every ``requests``/``urllib3`` HTTP request from the cassettes in ``folder``.

    :param folder: a source's recordings folder, e.g. ``include/recordings/yahoo``.
    :return: a context manager yielding the :class:`RecordingLibrary`.
    :raises ReplayMissError: inside the block, for any request no recording answers.
    """
    import vcr
    from vcr.errors import CannotOverwriteExistingCassetteException

    library = RecordingLibrary(folder)
    # vcrpy logs every cassette body at INFO: megabytes per task log, and never useful here.
    logging.getLogger("vcr").setLevel(logging.WARNING)
    player = vcr.VCR(record_mode="none", match_on=["window"])
    player.register_matcher("window", window_matcher)
    player.register_persister(_FolderPersister)
    try:
        with player.use_cassette(str(library.root), allow_playback_repeats=True):
            yield library
    except CannotOverwriteExistingCassetteException as exc:
        request = getattr(exc, "failed_request", None)
        uri = _redact_uri(request.uri) if request is not None else "unknown request"
        raise ReplayMissError(f"no recording in {library.root} answers GET {uri}; record it and add the cassette there") from None


def _redact_uri(uri: str) -> str:
    parts = urlsplit(uri)
    query = "&".join(f"{k}={'***' if k.lower() in ('apikey', 'crumb') else v}" for k, v in parse_qsl(parts.query))
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")


class ReplayMixin:
    """For hooks with ``replay_dir`` (recordings folder or ``None``) and ``now`` (datetime or ``None``).

    Gives them the vendor's clock and the replay context in one place.
    """

    replay_dir: str | None
    now: datetime | None

    def _vendor_now(self) -> datetime:
        """The vendor's "now": explicit, else (replay) the newest recording's date, else the wall clock."""
        if self.now is None and self.replay_dir:
            dates = [r.recorded_at for r in RecordingLibrary(self.replay_dir).recordings if r.recorded_at]
            self.now = max(dates) if dates else None
        return self.now or datetime.now(timezone.utc)

    def _replaying(self) -> contextlib.AbstractContextManager:
        """:func:`replay` of ``replay_dir`` around a fetch when it is set; otherwise nothing."""
        return replay(self.replay_dir) if self.replay_dir else contextlib.nullcontext()
