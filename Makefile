# ProjectDeployer: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv system-deps images test unit lint demo bench clean lock upgrade

# Debian packages the tests use for real (nginx validates and serves generated configs; git
# serves test repositories over smart HTTP; zsh and fish run the docs' completion lines). Installed only when missing.
SYSTEM_TOOLS := nginx:nginx-light git:git zsh:zsh fish:fish
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  tool=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The venv installs the exact versions (and hashes) of requirements.lock, so the suite passes or
# fails by our code, not by the day's releases. pyproject.toml keeps the ranges users install.
# A changed lock or pyproject rebuilds the venv from scratch (nothing left over from before).
LOCK := requirements.lock
$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## make images: the offline image bed (pd-test/* from Debian packages), cached by content hash
images: system-deps
	bash tests/images/build.sh

## make test: everything this machine can run (unit now; docker/e2e as they land)
test: $(STAMP) system-deps images
	$(PY) -m pytest -q -p no:cacheprovider --durations=25

## make lock: recompile requirements.lock from pyproject.toml's ranges, keeping current pins
## where they still fit (after adding or changing a dependency)
## make upgrade: move every pin to its newest release, rebuild the venv and run the whole suite
## on it: an upgrade is a deliberate step, committed only with a green suite
LOCK_CMD = $(PY) -m uv pip compile pyproject.toml --extra test --extra lint --universal --python-version 3.11 --generate-hashes --quiet -o $(LOCK)
lock: $(STAMP)
	$(PY) -m pip install --quiet uv
	$(LOCK_CMD)
	@echo "requirements.lock written; 'make test' rebuilds the venv from it"
upgrade: $(STAMP)
	$(PY) -m pip install --quiet uv
	$(LOCK_CMD) --upgrade
	git --no-pager diff --stat -- $(LOCK) || true
	$(MAKE) --no-print-directory test

unit: $(STAMP)
	$(PY) -m pytest -q -m unit

## make lint: ruff (lint and format check) on src, tests and bench; import-linter's contracts;
## mypy (strict) on the package. .ci/run runs it before the tests. All configured in pyproject.toml.
## No finding is waived per file, per module or per import edge (the ratchet that issue 13 worked
## down is gone): a finding is fixed, or carries a noqa with its reason on its line.
LINT_PATHS := src tests bench
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

## make demo: deploys examples/fullstack to this machine's Docker engine and prints its URLs
DEMO := $(VENV)/bin/projectdeployer -f examples/fullstack/projectdeployer.toml
demo: $(STAMP) images
	$(DEMO) deploy --env dev
	@echo
	$(DEMO) status --env dev
	@echo
	@echo "The API, through the sidecar, with data it read from PostgreSQL:"
	curl -sS --max-time 10 -H 'Host: api.fullstack.localhost' http://127.0.0.1:8080/
	@echo
	@echo "Open http://www.fullstack.localhost:8080/ and http://api.fullstack.localhost:8080/ (*.localhost resolves to this machine)."

## make bench: every bench in bench/ (see bench/README.md), after the image bed is built;
## startup (its paired reference) and compose_compare need Debian's docker-compose (installed here
## when missing; `make test` does not need it)
bench: $(STAMP) images
	@$(MAKE) --no-print-directory system-deps SYSTEM_TOOLS=docker-compose:docker-compose
	$(PY) bench/startup.py
	$(PY) bench/rebuild.py
	$(PY) bench/zero_downtime.py
	$(PY) bench/long_connections.py
	$(PY) bench/compose_compare.py
	$(PY) bench/many_services.py
	$(PY) bench/fleet.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .mypy_cache .ruff_cache .import_linter_cache
