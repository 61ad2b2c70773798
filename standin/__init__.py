"""Vendor stand-in servers: Yahoo, Alpha Vantage and crypto exchanges on one loopback port.

The way moto stands in for AWS: the pipeline's hooks reach it through their connections' base
URL, exactly as they would reach a proxy or a vendor's sandbox, and it answers in each vendor's
wire format, from recorded responses (:mod:`standin.recordings`) and, in synthetic mode, from a
deterministic synthetic market (:mod:`standin.synthetic`). Test, demo and benchmark
infrastructure: nothing in ``plugins/`` imports it.
"""
