"""market_ingest: market-data ingestion (Yahoo Finance, Alpha Vantage, ccxt exchanges) for Airflow 3.

Importing this package is cheap: modules that need pandas, pyarrow, yfinance or boto3 import
them inside the functions that use them, so DAG parsing never pays for them.
"""
