# agentsite: `make run` to chat, `make test` to check everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run run-scaled test lint bench setup migrate clean browser-test
SERVICES := . deploy/services.sh && ensure_postgres && ensure_redis

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/python manage.py migrate --no-input -v 0
	$(BIN)/python manage.py loadgraphs
	$(BIN)/python manage.py make_eras
	$(BIN)/python manage.py demodata
	$(BIN)/python manage.py collectstatic --noinput -v 0

run: setup
	@echo ""
	@echo "  agentsite is at http://127.0.0.1:8000/"
	@echo "  admin: http://127.0.0.1:8000/admin/  (user: admin, password: admin; local development only)"
	@echo "  or chat in the terminal: $(BIN)/python manage.py chat"
	@echo ""
	$(BIN)/daphne -b 127.0.0.1 -p 8000 agentsite.asgi:application

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

bench: setup
	$(BIN)/python manage.py bench
	$(SERVICES) && $(BIN)/python manage.py bench --scaled --database-url "$$AGENTSITE_POSTGRES_URL"

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
