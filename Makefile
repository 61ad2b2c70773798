# Two commands matter: `make demo` (the main job on embedded services and recorded data) and
# `make test` (`make test-fast` for the quick loop). All create .venv on first use; nothing else
# needs to be installed but Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock requirements.txt requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-fast bench-faults test-3.12 install-3.12 test-mwaa-versions mwaa lint format up psql lake coverage down bench bench-soak bench-stream bench-kinesis bench-query bench-load bench-ledger bench-rebase bench-lake bench-reconcile install lock recordings record standin universes pools clean

# EXECUTOR=celery: the CeleryExecutor with two workers, two schedulers and Redis (Debian's redis-server) instead of airflow standalone.
EXECUTOR ?= local

demo: $(STAMP)  ## runs and a backfill under the real scheduler into PostgreSQL, S3 and Kinesis (LIVE=1: live APIs; EXECUTOR=celery)
	$(PY) demo/run_demo.py --executor $(EXECUTOR) $(if $(LIVE),--live,)

up: $(STAMP)  ## leave PostgreSQL, moto and Airflow running; UI on http://localhost:8080 (EXECUTOR=celery)
	$(PY) demo/up.py up --executor $(EXECUTOR) $(if $(LIVE),--live,)

psql: $(STAMP)  ## psql on `make up`'s warehouse (ARGS='-c "SELECT ..."')
	$(PY) demo/up.py psql $(ARGS)

lake: $(STAMP)  ## list `make up`'s lake objects with their rows (ARGS="--prefix bars/source=yahoo/interval=1d": the bars table's files)
	$(PY) demo/up.py lake $(ARGS)

coverage: $(STAMP)  ## the coverage ledger of `make up`'s warehouse: days per state, then the latest incomplete days (ARGS="--source yahoo --interval 1d")
	$(PY) demo/coverage.py $(ARGS)

down:  ## stop what `make up` started
	$(PY) demo/up.py down

bench: $(STAMP)  ## pool = vendor rate limit, under the scheduler (BENCH_ARGS="--executor celery": two Celery workers); appends to bench/RESULTS.md
	$(PY) bench/pool_rate.py $(BENCH_ARGS)

bench-faults: $(STAMP)  ## a Celery worker killed during an extract and a load, the broker restarted, a scheduler killed: figures per case; appends to bench/RESULTS.md
	$(PY) bench/faults.py $(BENCH_ARGS)

bench-soak: $(STAMP)  ## every universe under the scheduler, 20 scheduled runs per DAG, with vendor faults (about an hour); appends to bench/RESULTS.md
	$(PY) bench/soak.py $(BENCH_ARGS)

bench-load: $(STAMP)  ## 1,000,000 bars: the load against COPY (server-side CSV and client-side binary), on PostgreSQL and TimescaleDB; appends to bench/RESULTS.md
	$(PY) bench/load.py $(BENCH_ARGS)

bench-ledger: $(STAMP)  ## the coverage ledger and anomaly flags of a 280-symbol, 5-year daily run (BENCH_ARGS="--warehouse timescaledb"); appends to bench/RESULTS.md
	$(PY) bench/ledger.py $(BENCH_ARGS)

bench-rebase: $(STAMP)  ## 1,000,000 bars stored before the price basis re-based to as traded (BENCH_ARGS="--warehouse timescaledb --columnstore"); appends to bench/RESULTS.md
	$(PY) bench/rebase.py $(BENCH_ARGS)

bench-reconcile: $(STAMP)  ## the cross-source reconciliation of a 280-instrument, 3-source, 5-year daily backfill and consensus reads (BENCH_ARGS="--warehouse timescaledb"); appends to bench/RESULTS.md
	$(PY) bench/reconcile.py $(BENCH_ARGS)

bench-lake: $(STAMP)  ## the bars Delta table: 24 hourly 1m runs of 5,000 series into one day, a 100 x 1,000 daily backfill against one Parquet write, a rerun (BENCH_ARGS="--s3"); appends to bench/RESULTS.md
	$(PY) bench/lake.py $(BENCH_ARGS)

bench-query: $(STAMP)  ## one-symbol queries over 200 symbols (25 years 1d, a month of 1m) on TimescaleDB, per layout; appends to bench/RESULTS.md
	$(PY) bench/query.py $(BENCH_ARGS)

bench-stream: $(STAMP)  ## a year of 1m bars (525,600) through every sink: time and peak RSS per task; appends to bench/RESULTS.md
	$(PY) bench/stream.py $(BENCH_ARGS)

bench-kinesis: $(STAMP)  ## PutRecords calls, records and bytes per 100,000 bars: packed or not, 10% injected failures, a hot series' shards; appends to bench/RESULTS.md
	$(PY) bench/kinesis.py $(BENCH_ARGS)

TSDB_INSTALL := tools/install_timescaledb.sh
# What make test runs again on TimescaleDB (pytest arguments): every warehouse test. CI leaves out
# tests/e2e there and runs those on TimescaleDB under Python 3.12 instead (.ci/run).
TSDB_TESTS ?= -m warehouse

test: lint  ## lint, then every test on plain PostgreSQL (with python3.12: make mwaa's artefacts in a clean virtualenv too), then the warehouse tests again on TimescaleDB when it is installed
	@if [ -z "$(PYTHON312)" ]; then \
	  if [ -n "$(REQUIRE_PYTHON312)" ]; then echo "python3.12 is required (REQUIRE_PYTHON312) for the MWAA packaging tests but not found"; exit 1; fi; \
	  echo "MWAA packaging tests deselected: no python3.12 (pyenv install 3.12, or PYTHON312=/path/to/python3.12)"; \
	fi
	$(PY) -m pytest $(if $(PYTHON312),--mwaa-python=$(PYTHON312),) $(PYTEST_ARGS)
	@why=$$($(PY) -c 'from demo.services import timescaledb_missing; print(timescaledb_missing() or "")'); \
	if [ -z "$$why" ]; then \
	  echo "== the warehouse tests again, on TimescaleDB"; \
	  $(PY) -m pytest $(TSDB_TESTS) --warehouse timescaledb $(PYTEST_ARGS); \
	elif [ -n "$(REQUIRE_TIMESCALEDB)" ]; then \
	  echo "TimescaleDB is required (REQUIRE_TIMESCALEDB) but $$why"; exit 1; \
	else \
	  echo "TimescaleDB half not run ($$why): sudo $(TSDB_INSTALL) <TimescaleDB 2.28.3 source tarball, a file or URL> installs it (about 5 minutes), then make test runs both"; \
	fi

# The quick loop: every test that needs no server of the session (the services fixture: PostgreSQL
# or TimescaleDB, moto; marker warehouse), no Airflow run (dag.test or the scheduler; e2e), no other
# server (an API server; integration) and no MWAA build: the unit, DAG integrity and stand-in tests
# and the fault tests on recordings. Lint is not in it: `make lint` (mypy alone takes ~20 s).
FAST_TESTS := not warehouse and not e2e and not integration and not mwaa

test-fast: $(STAMP)  ## unit, DAG integrity, stand-in and recorded-fault tests: no database, moto, scheduler or e2e (about 2.5 minutes; PYTEST_ARGS as for make test)
	$(PY) -m pytest -m "$(FAST_TESTS)" $(PYTEST_ARGS)

# Python 3.12 is what MWAA's Airflow 3.3 images run: the same lock in a virtualenv of its own.
# python3.12 on PATH, else pyenv's (its shim fails while another version is selected).
PYTHON312 ?= $(shell for p in python3.12 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null); do $$p -c '' 2>/dev/null && { command -v $$p; break; }; done)
VENV312   := .venv-3.12
STAMP312  := $(VENV312)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

test-3.12: $(STAMP312)  ## the tests again on Python 3.12, plain PostgreSQL (PYTEST_ARGS as for make test; CI: its e2e tests on TimescaleDB)
	$(VENV312)/bin/python -m pytest $(PYTEST_ARGS)

install-3.12: $(STAMP312)  ## only .venv-3.12, what test-3.12 runs in

$(STAMP312): requirements.lock pyproject.toml $(STAMP)
	@test -n "$(PYTHON312)" || { echo "python3.12 not found (pyenv install 3.12, or PYTHON312=/path/to/python3.12)"; exit 1; }
	$(PYTHON312) -m venv $(VENV312)
	$(VENV)/bin/uv pip install -q --python $(VENV312)/bin/python -r requirements.lock
	$(VENV)/bin/uv pip install -q --python $(VENV312)/bin/python --no-deps -e .
	rm -f $(VENV312)/.installed-* && touch $@

lint: $(STAMP)  ## ruff (ruff.toml), mypy on the product code and the import layers (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy plugins/market_ingest
	PYTHONPATH=plugins $(VENV)/bin/lint-imports

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

install: $(STAMP)

# Then the provider package (pyproject.toml), editable: the connection types' forms and the plugin
# (its entry points), same files as plugins/. An .egg-info a setuptools build left in plugins/ (on
# sys.path) would be a second copy of the distribution, its plugin loaded twice: it goes.
$(STAMP): requirements.lock requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv==0.13.9
	$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.lock
	rm -rf plugins/airflow_provider_market_ingest.egg-info
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

lock:  ## re-resolve requirements.lock from requirements-dev.txt
	$(VENV)/bin/uv pip compile -q --python-version 3.11 requirements-dev.txt -o requirements.lock

recordings: $(STAMP)  ## rebuild include/recordings/ from a folder of recorded vendor answers and its PROVENANCE.md (FIXTURES=<folder>)
	@test -n "$(FIXTURES)" || { echo "FIXTURES=<folder of recorded vendor answers, with its PROVENANCE.md> is required"; exit 1; }
	$(PY) tools/build_recordings.py --fixtures "$(FIXTURES)"

record: $(STAMP)  ## live: capture vendor responses into include/recordings/ (ARGS="--source S --symbols A,B --interval 1d --start .. --end ..")
	$(PY) tools/record.py $(ARGS)

standin: $(STAMP)  ## run the vendor stand-in on loopback (ARGS="--synthetic --port 8790")
	$(PY) -m standin $(ARGS)

# The unit, DAG, fault, integration and stand-in tests on MWAA's versions (Airflow 3.3.1, ccxt 4.5.64,
# pandas 3.0.5, pyarrow 25 ...): .mwaa/ is an AIRFLOW_HOME installed from dist/mwaa as MWAA installs it,
# plus requirements-dev.txt's test tools under MWAA's constraints. The end-to-end tests stay on 3.3.2.
MWAA_TEST_TOOLS = $(shell grep -E '^(moto|pgserver|duckdb|polars|pytest|time-machine)(\[|==)' requirements-dev.txt | cut -d' ' -f1)

test-mwaa-versions: $(STAMP)  ## the tests but e2e on MWAA 3.3.1's versions, Python 3.12 (about 4 minutes)
	@test -n "$(PYTHON312)" || { echo "python3.12 not found (pyenv install 3.12, or PYTHON312=/path/to/python3.12)"; exit 1; }
	$(PY) tools/build_mwaa.py --home .mwaa --python $(PYTHON312)
	$(VENV)/bin/uv pip install -q --python .mwaa/venv/bin/python -c deploy/mwaa/constraints-3.3.1-3.12.txt $(foreach t,$(MWAA_TEST_TOOLS),'$(t)')
	.mwaa/venv/bin/python -m pytest tests/unit tests/dags tests/faults tests/integration tests/standin $(PYTEST_ARGS)

mwaa: $(STAMP)  ## dist/mwaa/: requirements.txt, plugins.zip (the provider and every other wheel MWAA 3.3.1 lacks), startup.sh and dags/ for MWAA's S3 bucket
	$(PY) tools/build_mwaa.py

pools: $(STAMP)  ## rebuild include/pools.json (airflow pools import) from include/pipeline.yaml
	$(PY) tools/build_pools.py

universes: $(STAMP)  ## rebuild include/symbols/ from the index lists in tools/indices/
	$(PY) tools/build_universes.py

clean:
	rm -rf $(VENV) $(VENV312) .mwaa dist .demo .stack .bench
