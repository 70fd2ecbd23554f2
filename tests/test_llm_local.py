"""`deploy/llm-local.sh` against a stand-in for llama-server on a free port: a server of its
model is taken as it is (the site's variables printed, nothing started), one of the other
model or anything else is refused by name. Nothing is downloaded, built or served: the
script stops at its port check, and LLM_DIR points into tmp."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "llm-local.sh"
ALIAS_05 = "qwen2.5-coder-0.5b-instruct-q4_k_m"
ALIAS_15 = "qwen2.5-coder-1.5b-instruct-q4_k_m"

# Without curl the script would install it with apt-get.
pytestmark = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None,
                                reason="needs bash and curl")


class _Models(BaseHTTPRequestHandler):
    """/v1/models as llama-server answers it, for the models in `server.ids`."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path != "/v1/models" or self.server.ids is None:
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"object": "list", "data": [
            {"id": name, "object": "model", "owned_by": "llamacpp"} for name in self.server.ids]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def serving():
    """A stand-in server; set `.ids` to the models it serves (None: not llama-server)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    server.ids = None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def llm_local(server, tmp_path, *args: str, model: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "MAKE", "MFLAGS"))}
    env.update(LLM_PORT=str(server.server_address[1]), LLM_DIR=str(tmp_path / "llm"))
    if model:
        env["LLM_LOCAL_MODEL"] = model
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=60)


def as_shell_reads(stdout: str) -> dict[str, str]:
    return dict(shlex.split(line)[0].split("=", 1) for line in stdout.splitlines())


@pytest.mark.parametrize("args", [["--background"], []])
@pytest.mark.parametrize(("model", "alias"), [(None, ALIAS_05), ("1.5b", ALIAS_15)])
def test_a_server_of_the_model_is_used_as_it_is(serving, tmp_path, args, model, alias):
    """Its model already on the port: the variables are printed as --print-vars prints them,
    the capability profile included, and nothing is set up or started."""
    serving.ids = [alias]
    result = llm_local(serving, tmp_path, *args, model=model)
    assert result.returncode == 0, result.stderr
    assert f"already serves {alias}; nothing to start" in result.stderr
    printed = llm_local(serving, tmp_path, "--print-vars", model=model).stdout
    assert result.stdout == printed
    variables = as_shell_reads(printed)
    assert variables["LLM_BASE_URL"] == f"http://127.0.0.1:{serving.server_address[1]}/v1"
    assert variables["LLM_MODEL"] == alias
    assert list(json.loads(variables["LLM_MODEL_CAPABILITIES"])) == [alias]
    assert not (tmp_path / "llm").exists()


@pytest.mark.parametrize(("model", "other"), [("1.5b", ALIAS_05), (None, ALIAS_15)])
def test_a_server_of_the_other_model_is_refused_by_name(serving, tmp_path, model, other):
    """The other model on the port: a clear error naming both, and how to get out of it."""
    serving.ids = [other]
    result = llm_local(serving, tmp_path, "--background", model=model)
    assert result.returncode != 0
    port = serving.server_address[1]
    assert f"port {port} on 127.0.0.1 already serves {other} (another llama-server), not " in result.stderr
    assert f"LLM_PORT={port} LLM_ARGS=--stop" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "llm").exists()


def test_something_else_on_the_port_is_refused(serving, tmp_path):
    result = llm_local(serving, tmp_path, "--background")
    assert result.returncode != 0
    assert "is busy with something other than llama-server serving" in result.stderr


@pytest.mark.parametrize("option", ["--print-vars", "--background", "--setup-only", "--stop"])
def test_an_unknown_model_is_refused_before_anything(serving, tmp_path, option):
    result = llm_local(serving, tmp_path, option, model="0.5B-typo")
    assert result.returncode != 0
    assert ("unknown model '0.5B-typo': LLM_LOCAL_MODEL (make: MODEL=) must be one of: 0.5b 1.5b"
            in result.stderr)
    assert result.stdout == ""
    assert not (tmp_path / "llm").exists()


def test_llm_tools_must_be_a_json_boolean():
    """LLM_TOOLS goes into the printed JSON as it is: true or false, nothing else."""
    result = subprocess.run(["bash", str(SCRIPT), "--print-vars"], capture_output=True, text=True,
                            env={**os.environ, "LLM_TOOLS": "yes"}, timeout=60)
    assert result.returncode != 0
    assert "LLM_TOOLS must be true or false (unset: the model's profile" in result.stderr
    assert result.stdout == ""
