# ProjectDeployer: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv system-deps images test unit demo bench clean

# Debian packages the tests use for real (nginx validates and serves generated configs; git
# serves test repositories over smart HTTP). Installed only when missing.
SYSTEM_TOOLS := nginx:nginx-light git:git
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  tool=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## make images: the offline image bed (pd-test/* from Debian packages), cached by content hash
images: system-deps
	bash tests/images/build.sh

## make test: everything this machine can run (unit now; docker/e2e as they land)
test: $(STAMP) system-deps images
	$(PY) -m pytest -q -p no:cacheprovider

unit: $(STAMP)
	$(PY) -m pytest -q -m unit

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
## compose_compare also needs Debian's docker-compose (installed here when missing)
bench: $(STAMP) images
	@$(MAKE) --no-print-directory system-deps SYSTEM_TOOLS=docker-compose:docker-compose
	$(PY) bench/startup.py
	$(PY) bench/rebuild.py
	$(PY) bench/zero_downtime.py
	$(PY) bench/compose_compare.py
	$(PY) bench/fleet.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
