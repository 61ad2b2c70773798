"""Issue 14 item 5: an unreachable vendor fails the extract's try in seconds, naming the host, the
port and the connection, instead of spending every client's own timeouts and retries per symbol."""

from __future__ import annotations

import json
import socket
import time

import pytest

from market_ingest.errors import VendorUnavailableError
from market_ingest.routing import check_reachable


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_vendor_refusing_connections_fails_at_once_naming_host_port_and_connection(monkeypatch):
    from market_ingest.hooks.yahoo import YahooFinanceHook

    port = _closed_port()
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_YAHOO", json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{port}"}))
    with pytest.raises(VendorUnavailableError) as failed:
        YahooFinanceHook().check_reachable(timeout=5)
    assert str(failed.value).startswith(f"yahoo: cannot reach 127.0.0.1:{port} (connection market_yahoo): ConnectionRefusedError")
    assert failed.value.retryable  # Airflow's retries try again later


def test_any_http_answer_passes():
    """The stand-in answers a HEAD on an unknown path 404 or 501: a server is there."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_reachable(f"http://127.0.0.1:{server.server_port}/query", "alpha_vantage", "market_alpha_vantage")
    finally:
        server.shutdown()


def test_a_vendor_that_takes_the_connection_but_never_answers_fails_within_the_timeout():
    """As seen through a firewall or a broken proxy: the TCP connection is taken, no HTTP answer comes."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        began = time.monotonic()
        with pytest.raises(
            VendorUnavailableError, match=rf"cannot reach 127\.0\.0\.1:{port} \(no connection configured\): Timeout"
        ):
            check_reachable(f"http://127.0.0.1:{port}/api/v3/klines", "binance", None, timeout=1)
        assert time.monotonic() - began < 3


def test_an_unknown_host_fails_naming_it():
    with pytest.raises(
        VendorUnavailableError, match=r"cannot reach query2\.finance\.yahoo\.invalid:443 \(connection market_yahoo\): gaierror"
    ):
        check_reachable("https://query2.finance.yahoo.invalid/v8/finance/chart/", "yahoo", "market_yahoo", timeout=5)


def test_the_proxy_the_environment_names_is_what_is_probed(monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "")
    with pytest.raises(
        VendorUnavailableError, match=rf"cannot reach api\.binance\.com:443 through proxy http://127\.0\.0\.1:{port} "
    ):
        check_reachable("https://api.binance.com/api/v3/klines", "binance", "market_binance")


def test_an_exchange_without_base_url_probes_ccxts_own_api_host():
    from market_ingest.hooks.exchange import ExchangeHook

    url, conn_id = ExchangeHook("binance", exchange_conn_id=None).endpoint()
    assert url.startswith("https://") and ".binance.com/" in url and conn_id is None


def test_a_silent_warehouse_fails_the_connection_in_seconds_naming_it(monkeypatch):
    """The sink side of item 5: libpq waits 130 s by default for a server that takes the TCP
    connection and never answers. The warehouse hook defaults ``connect_timeout`` to 10 s (a
    connection's extra may set another) and names the connection in the error."""
    from market_ingest.errors import SinkUnavailableError
    from market_ingest.hooks.timescale import DEFAULT_CONNECT_TIMEOUT, TimescaleHook

    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "postgres", "schema": "market"}
        monkeypatch.setenv("AIRFLOW_CONN_MARKET_TIMESCALE", json.dumps(conn))
        hook = TimescaleHook()
        assert hook.connection.extra_dejson["connect_timeout"] == DEFAULT_CONNECT_TIMEOUT == 10
        began = time.monotonic()
        with pytest.raises(SinkUnavailableError) as failed:
            hook.get_conn()
        waited = time.monotonic() - began
    assert DEFAULT_CONNECT_TIMEOUT - 1 <= waited < DEFAULT_CONNECT_TIMEOUT + 5
    assert failed.value.retryable
    assert (
        str(failed.value)
        == f"timescale: cannot connect to 127.0.0.1:{port} (connection market_timescale): connection timeout expired"
    )
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_TIMESCALE", json.dumps({**conn, "extra": {"connect_timeout": 3}}))
    assert TimescaleHook().connection.extra_dejson["connect_timeout"] == 3


def test_an_error_answer_names_no_credentials_of_a_gateways_url():
    """A connection's base URL may carry a gateway's basic-auth credentials (``base_url_of`` takes
    ``http://user:password@host``), and requests keeps them in ``response.url``: an error message
    names host, port and path, never them, nor the query (which may hold an API key)."""
    import requests

    from market_ingest.routing import Answered, without_queries

    response = requests.Response()
    response.status_code, response.reason = 503, "Service Unavailable"
    response.url = "http://gw-user:s3cret@gateway.internal:8443/query2.finance.yahoo.com/v8/finance/chart/MSFT?crumb=abc"
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    assert str(Answered.of(response)) == (
        "HTTP 503 Service Unavailable from gateway.internal:8443/query2.finance.yahoo.com/v8/finance/chart/MSFT (text/html)"
    )
    message = without_queries(f"binance GET {response.url} 503 Service Unavailable <html><body>down</body></html>")
    assert message == (
        "binance GET http://gateway.internal:8443/query2.finance.yahoo.com/v8/finance/chart/MSFT 503 Service Unavailable "
        "(an HTML page)"
    )
    assert "s3cret" not in message and "gw-user" not in message
