"""`make run` checks its port before the set-up; `make setup` leaves static files for DEBUG off;
the real-model lane (`make llm-local`, `make test-real`, `make run LLM=local`) hands the site
the variables, capability profile included, that `deploy/llm-local.sh` prints for the model."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _environment(**extra: str) -> dict[str, str]:
    """The caller's environment without a parent make's flags or this site's settings."""
    skip = ("MAKE", "MFLAGS", "DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "LLM_",
            "STATIC_MANIFEST", "AGENTSITE_", "ALLOWED_HOSTS", "SECURE_", "PORT")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(skip)}, **extra}


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=_environment(),
                          capture_output=True, text=True, timeout=60)


def test_a_taken_port_stops_make_run_before_the_setup():
    """On a taken port `make run` fails at once, says which port to try, and sets nothing up."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = make("run", f"PORT={port}")
    assert result.returncode != 0
    assert f"make run: port {port} is in use; try make run PORT=" in result.stderr
    assert result.stdout == ""  # no set-up command ran (make echoes each one)


def test_port_must_be_a_port_number():
    """A PORT that is not a port number is refused by name."""
    result = make("run", "PORT=eighty")
    assert result.returncode != 0
    assert "PORT must be a number from 1 to 65535, got 'eighty'" in result.stderr


def test_run_serves_on_the_given_port_after_checking_it():
    """`make run PORT=N` checks N first, then sets up, then serves daphne on N."""
    lines = make("-n", "run", "PORT=8123").stdout.splitlines()
    check = next(i for i, line in enumerate(lines) if "deploy/port_free.py '8123'" in line)
    migrate = next(i for i, line in enumerate(lines) if "manage.py migrate" in line)
    assert check < migrate
    assert lines[-1] == ".venv/bin/daphne -b 127.0.0.1 -p 8123 agentsite.asgi:application"
    assert "http://127.0.0.1:8123/" in "\n".join(lines)


RENDER = """
import django, json
django.setup()
from django.test import Client
client = Client()
pages = {}
for url in ("/", "/login/", "/admin/login/"):
    response = client.get(url, secure=True)
    pages[url] = [response.status_code, response.content.decode()]
print(json.dumps(pages))
"""


def test_setup_leaves_static_files_that_work_with_debug_off(tmp_path):
    """After `make setup`'s collectstatic (run with DEBUG on, as `make run` does), pages
    render with DEBUG off: the manifest is there and they link the cache-busted names."""
    collect = next(line for line in make("-n", "setup").stdout.splitlines()
                   if "manage.py collectstatic" in line)
    site = _environment(AGENTSITE_VAR_DIR=str(tmp_path),
                        DATABASE_URL=f"sqlite:///{tmp_path / 'agentsite.sqlite3'}")
    subprocess.run(collect, shell=True, cwd=ROOT, env=site, check=True, timeout=300)
    assert (tmp_path / "staticfiles" / "staticfiles.json").is_file()
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT,
                   env=site, check=True, timeout=300)
    production = {**site, "DJANGO_SETTINGS_MODULE": "agentsite.settings", "DEBUG": "false",
                  "SECRET_KEY": "test-only-" + "x1y2z3" * 10, "AGENTSITE_ALLOW_ANONYMOUS": "true"}
    done = subprocess.run([sys.executable, "-c", RENDER], cwd=ROOT, env=production,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    pages = json.loads(done.stdout.strip().splitlines()[-1])
    for url, (status, body) in pages.items():
        assert status == 200, (url, body[-2000:])
    assert "/static/agentsite/chat." in pages["/"][1]
    assert "/static/agentsite/chat.css" not in pages["/"][1]  # the hashed name instead
    assert "/static/agentsite/chat.css" not in pages["/login/"][1]


# --- the real-model lane: nothing here downloads, builds or serves a model --------------------

ALIASES = {"0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m", "1.5b": "qwen2.5-coder-1.5b-instruct-q4_k_m"}
DUMP_ENV = ("python3 -c 'import json, os; "
            "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(\"LLM_\")"
            " or k.startswith(\"AGENTSITE_\")}))'")


def printed_vars(*args: str) -> dict[str, str]:
    """What `make llm-local` prints for the site, read as a shell reads the lines."""
    result = make("-s", "llm-local", "LLM_ARGS=--print-vars", *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [
        "LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL", "LLM_MODEL_CAPABILITIES",
        "AGENTSITE_QUERY_CANDIDATES", "AGENTSITE_MESSAGE_DEADLINE_S"]
    return dict(shlex.split(line)[0].split("=", 1) for line in lines)


def environment_of(line: str, command: str) -> dict[str, str]:
    """The LLM_* variables `command` gets in a recipe line of `make -n` (run for real, with
    the command swapped for one that prints them)."""
    assert line.endswith(command), line
    done = subprocess.run(line[:-len(command)] + DUMP_ENV, shell=True, cwd=ROOT,
                          env=_environment(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def recipe_line(lines: list[str], needle: str) -> int:
    return next(i for i, line in enumerate(lines) if needle in line)


RUNTESTS = ".venv/bin/python manage.py runtests  --repeat 1 --user test-real --fail-under 0"
DAPHNE = ".venv/bin/daphne -b 127.0.0.1 -p 8123 agentsite.asgi:application"


@pytest.mark.parametrize("model", [None, "0.5b", "1.5b"])
def test_test_real_runs_the_variables_llm_local_prints(model):
    """`make llm-local` prints LLM_MODEL_CAPABILITIES beside the endpoint, and `make test-real`
    hands runtests exactly those variables: one profile, kept by deploy/llm-local.sh."""
    args = [f"MODEL={model}"] if model else []
    printed = printed_vars(*args)
    alias = ALIASES[model or "0.5b"]
    assert printed["LLM_BASE_URL"] == "http://127.0.0.1:8090/v1"
    assert printed["LLM_MODEL"] == alias
    profile = json.loads(printed["LLM_MODEL_CAPABILITIES"])
    assert list(profile) == [alias] and isinstance(profile[alias]["tools"], bool)
    lines = make("-n", "test-real", *args).stdout.splitlines()
    assert environment_of(lines[recipe_line(lines, "runtests")], RUNTESTS) == printed


def test_the_0_5b_keeps_json_and_llm_tools_overrides_the_profile():
    """The 0.5B's profile stays JSON instead of native tools; LLM_TOOLS=true measures it with
    tools, in the printed line and in test-real alike."""
    assert json.loads(printed_vars()["LLM_MODEL_CAPABILITIES"]) == {ALIASES["0.5b"]: {"tools": False}}
    printed = printed_vars("LLM_TOOLS=true", "MODEL=0.5b")
    assert json.loads(printed["LLM_MODEL_CAPABILITIES"]) == {ALIASES["0.5b"]: {"tools": True}}
    lines = make("-n", "test-real", "LLM_TOOLS=true").stdout.splitlines()
    assert environment_of(lines[recipe_line(lines, "runtests")], RUNTESTS) == printed


def test_the_profile_sets_candidate_queries_and_the_deadline_per_model():
    """The 0.5B votes over three candidate queries in 60 s; the 1.5B, three times slower,
    writes one in 120 s; LLM_CANDIDATES overrides the count, in test-real too."""
    small, large = printed_vars(), printed_vars("MODEL=1.5b")
    assert (small["AGENTSITE_QUERY_CANDIDATES"], small["AGENTSITE_MESSAGE_DEADLINE_S"]) == (
        "3", "60")
    assert (large["AGENTSITE_QUERY_CANDIDATES"], large["AGENTSITE_MESSAGE_DEADLINE_S"]) == (
        "1", "120")
    one = printed_vars("LLM_CANDIDATES=1")
    assert one["AGENTSITE_QUERY_CANDIDATES"] == "1"
    lines = make("-n", "test-real", "LLM_CANDIDATES=1").stdout.splitlines()
    assert environment_of(lines[recipe_line(lines, "runtests")], RUNTESTS) == one
    refused = make("-s", "llm-local", "LLM_ARGS=--print-vars", "LLM_CANDIDATES=9")
    assert refused.returncode != 0 and "LLM_CANDIDATES must be 1 to 5" in refused.stderr


def test_model_1_5b_is_served_and_measured_as_the_1_5b():
    """MODEL=1.5b reaches the script in every step: served under its own alias and port."""
    printed = printed_vars("MODEL=1.5b", "LLM_PORT=8093")
    assert printed["LLM_MODEL"] == "qwen2.5-coder-1.5b-instruct-q4_k_m"
    assert printed["LLM_BASE_URL"] == "http://127.0.0.1:8093/v1"
    lines = make("-n", "test-real", "MODEL=1.5b").stdout.splitlines()
    start = recipe_line(lines, "llm-local.sh --background")
    assert "LLM_LOCAL_MODEL='1.5b'" in lines[start]
    assert start < recipe_line(lines, "manage.py migrate") < recipe_line(lines, "runtests")


@pytest.mark.parametrize("target", [["llm-local", "LLM_ARGS=--print-vars"], ["llm-local"],
                                    ["test-real"]])
def test_an_unknown_model_is_refused_by_name(target):
    """An unknown MODEL fails at once, naming the models there are, before any set-up."""
    result = make(*target, "MODEL=7b")
    assert result.returncode != 0
    assert "unknown model '7b'" in result.stderr and "0.5b 1.5b" in result.stderr
    assert "manage.py migrate" not in result.stdout


def test_run_llm_local_starts_the_model_then_daphne_with_its_variables():
    """`make run LLM=local`: the port check, the model in the background, the set-up, then
    daphne with the variables `make llm-local` prints (MODEL picks the model)."""
    for args, model in (([], "0.5b"), (["MODEL=1.5b"], "1.5b")):
        lines = make("-n", "run", "LLM=local", "PORT=8123", *args).stdout.splitlines()
        check = recipe_line(lines, "deploy/port_free.py '8123'")
        start = recipe_line(lines, "llm-local.sh --background")
        assert f"LLM_LOCAL_MODEL='{model}'" in lines[start]
        assert check < start < recipe_line(lines, "manage.py migrate") < len(lines) - 1
        assert environment_of(lines[-1], DAPHNE) == printed_vars(*args)


def test_plain_run_starts_no_model():
    """Without LLM=local, `make run` is the builtin model's: no model, no variables."""
    lines = make("-n", "run", "PORT=8123").stdout.splitlines()
    assert not any("llm-local" in line for line in lines)
    assert lines[-1] == DAPHNE


def test_run_refuses_an_unknown_llm():
    result = make("run", "LLM=remote")
    assert result.returncode != 0
    assert "LLM must be local" in result.stderr and "'remote'" in result.stderr
    assert result.stdout == ""
