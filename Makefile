# insitu: `make up` starts the platform on this machine with the demo archive;
# `make test` sets everything up and runs the tests. Both work on a fresh Debian
# machine with Python 3.11.
SHELL := /bin/bash
# The system's Python first: users' servers, kernels and Dask workers run from this venv as
# their own unix accounts, so its interpreter must be one they can run (pyenv's lives in
# root's private home).
PYTHON ?= $(shell for p in /usr/bin/python3.11 /usr/bin/python3 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: bench-catalog bench-full bench-pages bench-workflows bench-zarr-view help install up down demo test test-unit test-integration lint fmt typecheck check bench bench-compute bench-formats bench-hub bench-ingest bench-service bench-small services clean

help:
	@echo "make up      set up and start the platform (JupyterHub, data service, Dask-Gateway)"
	@echo "             with the demo archive; prints the URL and the first admin's password"
	@echo "make down    stop what make up started"
	@echo "make test    set up and run the test suite (starts PostgreSQL on loopback)"
	@echo "make check   lint, type-check and test: what CI runs"
	@echo "make bench   the headline benchmarks (under 30 min) and every target met or not;"
	@echo "             make bench-full runs every benchmark at full size (BENCHMARKS.md)"

# The C extension's source, wherever the package keeps it.
$(STAMP): pyproject.toml setup.py $(wildcard src/insitu/*/_shuffle.c src/insitu/*/*/_shuffle.c)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "insitu needs Python 3.11 or newer; found $$($(PYTHON) --version)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	scripts/compiler.sh $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	scripts/proxy.sh $(VENV)
	scripts/mpi.sh $(VENV)
	@touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/insitu up --detach

down:
	-$(BIN)/insitu down
	-$(BIN)/insitu serve --stop
	-$(BIN)/insitu cluster down

demo: up

services: install
	@mkdir -p .cache
	scripts/tools.sh
	scripts/postgres.sh start > .cache/postgres-url
	@echo "PostgreSQL for tests: $$(tail -n1 .cache/postgres-url)"
	scripts/slurm.sh start > .cache/slurm-partition
	@command -v sudo >/dev/null || scripts/apt-install.sh sudo
	@echo "SLURM partition for tests: $$(tail -n1 .cache/slurm-partition)"
	scripts/sge.sh start > .cache/sge-queue
	@echo "Grid Engine queue for tests: $$(tail -n1 .cache/sge-queue)"
	scripts/gateway.sh start > .cache/gateway-address
	@echo "Dask-Gateway for tests: $$(tail -n1 .cache/gateway-address)"
	scripts/browser.sh > .cache/chromium
	@echo "Chromium for browser tests: $$(tail -n1 .cache/chromium)"
	scripts/podman.sh start > .cache/podman-engine
	@echo "podman for container tests: $$(tail -n2 .cache/podman-engine | head -n1), image $$(tail -n1 .cache/podman-engine)"

test: install services
	INSITU_TEST_POSTGRES_URI=$$(tail -n1 .cache/postgres-url) \
	INSITU_TEST_SLURM_PARTITION=$$(tail -n1 .cache/slurm-partition) \
	INSITU_TEST_SGE_QUEUE=$$(tail -n1 .cache/sge-queue) \
	INSITU_TEST_GATEWAY_ADDRESS=$$(tail -n1 .cache/gateway-address) \
	INSITU_TEST_CHROMIUM=$$(tail -n1 .cache/chromium) \
	INSITU_TEST_PODMAN_URL=$$(tail -n2 .cache/podman-engine | head -n1) \
	INSITU_TEST_PODMAN_IMAGE=$$(tail -n1 .cache/podman-engine) INSITU_TEST_REQUIRE_SERVICES=1 \
		$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

fmt: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

# `make bench`: the headline figure of every area at sizes that fit in 30 minutes on 2 cores
# once bench/data holds the generated archives (the first run builds them), then one table of
# every target, met or not. `make bench-full`: every benchmark at its full size (hours).
# The per-area targets run the full-size steps of their area; all of them keep each step's
# result in bench/data/results/ and end with the same table (bench/summary.py).
BENCH_RUN := $(BIN)/python bench/run_all.py
bench: install
	scripts/tools.sh
	$(BENCH_RUN) --suite headline

bench-full: install
	scripts/tools.sh
	scripts/postgres.sh start > .cache/postgres-url
	$(BENCH_RUN) --suite full --postgres "$$(tail -n1 .cache/postgres-url)"
	$(MAKE) bench-zarr-view

bench-catalog: install
	$(BENCH_RUN) --suite full --only parse,scan,rescan,search,open,open_long

bench-service: install
	scripts/tools.sh
	$(BENCH_RUN) --suite full --only 'service*'

bench-compute: install
	scripts/tools.sh
	$(BENCH_RUN) --suite full --only compute_1gb,compute_5gb

# Many small datasets: the demo's 42 and 1,000 synthetic ones, insitu against a cdo loop.
bench-small: install
	scripts/tools.sh
	$(BENCH_RUN) --suite full --only 'small_*'

bench-hub: install
	$(BENCH_RUN) --suite full --only hub

bench-formats: install
	$(BENCH_RUN) --suite full --only formats

bench-ingest: install
	scripts/postgres.sh start > .cache/postgres-url
	$(BENCH_RUN) --suite full --only 'ingest_*,shot_search' --postgres "$$(tail -n1 .cache/postgres-url)"

bench-workflows: install
	$(BENCH_RUN) --suite full --only 'workflow_*'

bench-pages: install
	$(BENCH_RUN) --suite full --only pages

# The Zarr view against the code before the formats layer (23841c3), alternately; the base
# checkout's C unshuffle is built as bench/zarr_view_pairs.sh's header says.
ZV_BASE := .cache/zv-base
bench-zarr-view: install
	test -d $(ZV_BASE) || git worktree add --detach $(ZV_BASE) 23841c3
	test -n "$$(ls $(ZV_BASE)/src/insitu/catalog/_shuffle.*.so 2>/dev/null)" || gcc -O3 -shared -fPIC \
	  -I"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
	  -I"$$($(BIN)/python -c 'import numpy; print(numpy.get_include())')" \
	  $(ZV_BASE)/src/insitu/catalog/_shuffle.c -o $(ZV_BASE)/src/insitu/catalog/_shuffle$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
	bench/zarr_view_pairs.sh $(CURDIR)/$(ZV_BASE)/src 40 3
	bench/zarr_view_pairs.sh $(CURDIR)/$(ZV_BASE)/src 1000 5 big1000

clean:
	-scripts/postgres.sh stop
	-scripts/sge.sh stop
	-scripts/slurm.sh stop
	-scripts/gateway.sh stop
	-scripts/podman.sh stop
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
