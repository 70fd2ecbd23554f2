"""The whole v3-framed graph over the OpenAI protocol, against a server on loopback.

The server speaks chat completions (JSON and SSE) and answers with the builtin
model's rules, so the pipeline runs exactly as it would against a hosted model:
real HTTP, real streaming, real JSON mode.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runtime.llm.base import ChatMessage, LLMRequest
from runtime.llm.builtin import count_tokens, respond
from runtime.llm.openai import OpenAIProvider
from tests.helpers import Events, send


class BuiltinOverHTTP(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions with the builtin model's rules."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    seen: list[dict] = []

    def log_message(self, format, *args) -> None:  # keep test output clean
        return None

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(body)
        request = LLMRequest(
            messages=tuple(ChatMessage(role=m["role"], content=m["content"])
                           for m in body["messages"]),
            model=body["model"],
            json_output=body.get("response_format", {}).get("type") == "json_object",
        )
        text = respond(request)
        usage = {"prompt_tokens": sum(count_tokens(m.content) for m in request.messages),
                 "completion_tokens": count_tokens(text)}
        if not body.get("stream"):
            payload = json.dumps({"model": body["model"], "usage": usage, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text},
                 "finish_reason": "stop"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        pieces = [text[i:i + 7] for i in range(0, len(text), 7)]
        for piece in pieces:
            chunk = {"model": body["model"], "choices": [{"index": 0, "delta": {"content": piece},
                                                          "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        final = {"model": body["model"], "usage": usage,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
        self.close_connection = True


@pytest.fixture
def endpoint():
    """A loopback chat-completions server; yields its base URL."""
    BuiltinOverHTTP.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), BuiltinOverHTTP)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_v3_runs_over_the_openai_protocol(conversation, endpoint):
    """Every path works through the openai provider: streamed text, JSON nodes, tokens traced."""
    llm = OpenAIProvider(base_url=endpoint, api_key="k", model="remote-model", max_retries=0)
    events = Events()
    result = send(conversation.id, "how many customers are there?", events, llm=llm)
    assert not result.failed, result.answer
    assert result.answer == "There are 120 customers."
    assert events.text() == result.answer
    assert result.trace.total_frames == 5
    thinker = next(r for r in result.trace.frames if r.node == "thinker")
    assert thinker.llm.provider == "openai" and thinker.llm.model == "remote-model"
    assert thinker.llm.prompt_tokens > 0
    json_calls = [b for b in BuiltinOverHTTP.seen if "response_format" in b]
    assert {b["messages"][0]["content"].split(":")[0] for b in json_calls} == {
        "You are the input node of a conversational agent",
        "You are the director of a conversational agent",
        "You are the memorizer of a conversational agent"}
    assert send(conversation.id, "hello", llm=llm).trace.total_frames == 2


def test_unreachable_endpoint_is_a_clear_answer(conversation):
    """With the model unreachable, the user is told so plainly and the trace records it."""
    llm = OpenAIProvider(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0,
                         connect_timeout=1)
    result = send(conversation.id, "hello", llm=llm)
    assert result.failed
    assert "the model could not answer the input step" in result.answer
    assert result.trace.frames[0].error
