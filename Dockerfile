# Astronomer: `astro dev start` (local) and `astro deploy` build this. Astro Runtime's ONBUILD steps
# install packages.txt (apt) and requirements.txt (pip) and copy the project to /usr/local/airflow.
# Runtime 3.3-N carries Airflow 3.3 (the tests run 3.3.2): check with `astro dev run version`, and
# move the tag, not an Airflow pin, to change it. `-python-3.12` pins the Runtime's Python (Astro's
# form `<runtime>-python-<version>`) to one the package supports (pyproject.toml: 3.11 and 3.12).
FROM astrocrpublic.azurecr.io/runtime:3.3-2-python-3.12

# The project as its provider package, editable: one copy of market_ingest (plugins/); the
# connection forms (Alpha Vantage, ccxt exchange, Yahoo Finance) and the plugin (deadline
# reference, coverage view) registered through its entry points.
RUN pip install --no-cache-dir --no-deps -e /usr/local/airflow
