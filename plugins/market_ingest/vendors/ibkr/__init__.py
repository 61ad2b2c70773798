"""Interactive Brokers through its Client Portal Web API: not a source kind yet.

What exists: the answers' classification and parsing (:mod:`market_ingest.vendors.ibkr.bodies`:
contract search to a conid, ``/iserver/marketdata/history`` bars in the canonical schema, every
error kind) and the stand-in's route (``standin/ibkr.py``), both tested on the recordings in
``include/recordings/ibkr``. What does not: the ``KIND`` (connection form for a Client Portal
Gateway or OAuth 1.0a through ``ibind``), the hook (session keep-alive, pacing, paging) and the
price basis: IB's historical bars are likely split-adjusted as of the request (the TWS API's
documented behaviour; not verified for the Web API), which the product must convert to as traded
before an IB source can be offered. Until then this package defines no ``KIND``, so no
configuration can name ``kind: ibkr`` (:mod:`market_ingest.kinds` registers only modules that do).
"""
