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

from runtime.agent.builtin import count_tokens, respond, respond_with_tools
from runtime.llm.base import ChatMessage, LLMRequest, OutputSchema, ToolSpec
from runtime.llm.openai import OpenAIProvider
from tests.helpers import Events, send


class BuiltinOverHTTP(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions with the builtin model's rules."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    seen: list[dict] = []

    def log_message(self, format, *args) -> None:  # keep test output clean
        return None

    # A test may make the "model" misbehave: body -> (status, content, finish_reason) or None.
    misbehave = None

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(body)
        special = type(self).misbehave(body) if type(self).misbehave else None
        if special is not None:
            status, content, finish = special
            payload = json.dumps(
                {"model": body["model"], "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": finish}]} if status == 200
                else {"error": {"message": content}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        response_format = body.get("response_format", {})
        schema = response_format.get("json_schema")
        request = LLMRequest(
            messages=tuple(ChatMessage(role=m["role"], content=m["content"])
                           for m in body["messages"]),
            model=body["model"],
            json_output=bool(response_format),
            schema=OutputSchema(schema["name"], schema["schema"]) if schema else None,
            tools=tuple(ToolSpec(t["function"]["name"], t["function"]["description"],
                                 t["function"]["parameters"]) for t in body.get("tools", [])),
        )
        text, calls = respond_with_tools(request) if request.tools else (respond(request), ())
        usage = {"prompt_tokens": sum(count_tokens(m.content) for m in request.messages),
                 "completion_tokens": count_tokens(text)}
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            if calls:
                message["tool_calls"] = [
                    {"id": f"call_{i}", "type": "function",
                     "function": {"name": c.name, "arguments": c.arguments}}
                    for i, c in enumerate(calls)]
            payload = json.dumps({"model": body["model"], "usage": usage, "choices": [
                {"index": 0, "message": message,
                 "finish_reason": "tool_calls" if calls else "stop"}]}).encode()
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
    BuiltinOverHTTP.misbehave = None
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
    [call] = thinker.llm_calls
    assert call.provider == "openai" and call.model == "remote-model"
    assert call.prompt_tokens > 0 and call.tool_calls[0]["name"] == "query_db"
    json_calls = [b for b in BuiltinOverHTTP.seen if "response_format" in b]
    assert {b["messages"][0]["content"].split(":")[0] for b in json_calls} == {
        "You are the input node of a conversational agent",
        "You are the memorizer of a conversational agent"}
    assert {b["response_format"]["type"] for b in json_calls} == {"json_schema"}
    tool_calls = [b for b in BuiltinOverHTTP.seen if "tools" in b]
    assert [b["messages"][0]["content"].split(":")[0] for b in tool_calls] == [
        "You are the director of a conversational agent",
        "You are the thinker of a conversational agent"]
    assert all("max_tokens" in b for b in BuiltinOverHTTP.seen)
    assert send(conversation.id, "hello", llm=llm).trace.total_frames == 2


def test_unreachable_endpoint_is_a_clear_answer(conversation):
    """With the model unreachable, the user is told so plainly and the trace records it."""
    llm = OpenAIProvider(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0,
                         connect_timeout=1)
    result = send(conversation.id, "hello", llm=llm)
    assert result.failed
    # The deciding nodes took their fallbacks; the thinker had nothing to say instead.
    assert "the model could not answer the thinker step" in result.answer
    assert "127.0.0.1" not in result.answer and "Error" not in result.answer
    first = result.trace.frames[0]
    assert first.llm_calls[0].outcome == "error" and "unreachable" in first.llm_calls[0].error
    assert first.fallback.startswith("careful path")
    assert "unreachable" in result.trace.error


def _role(body: dict) -> str:
    return body["messages"][0]["content"].split(":")[0]


def test_a_misbehaving_model_gets_repairs_then_fallbacks(conversation, endpoint):
    """Over real HTTP: a template echo (input), an endpoint without tools and a runaway
    answer cut at max_tokens (director), duplicate keys (memorizer). Each node repairs once,
    then takes its fallback; the message still succeeds with a plain answer, and the trace
    records every call."""
    from runtime.agent.speech import looks_internal
    from runtime.conversations.models import Conversation

    def misbehave(body):
        role = _role(body)
        if role.startswith("You are the input node"):
            return 200, '{"intent": "greeting|thanks", "route": "reflex|director"}', "stop"
        if role.startswith("You are the director"):
            if "tools" in body:
                return 400, "tools are not supported by this server", ""
            return 200, '{"goal": "' + "la " * 60, "length"
        if role.startswith("You are the memorizer"):
            return 200, '{"user_name": "Ada", "user_name": "hello"}', "stop"
        return None

    BuiltinOverHTTP.misbehave = staticmethod(misbehave)
    llm = OpenAIProvider(base_url=endpoint, api_key="k", model="remote-model", max_retries=0)
    result = send(conversation.id, "tell me something nice", llm=llm)
    assert not result.failed, result.answer
    assert result.answer and looks_internal(result.answer) == ""
    frames = {r.node: r for r in result.trace.frames}
    assert frames["input"].fallback.startswith("careful path (director)")
    assert [c.outcome for c in frames["input"].llm_calls] == ["invalid", "invalid"]
    director = frames["director"]
    assert director.fallback.startswith("answer directly")
    assert [c.attempts for c in director.llm_calls] == [2, 2]  # each: refused tools, then JSON
    assert all(c.finish_reason == "length" for c in director.llm_calls)
    director_bodies = [b for b in BuiltinOverHTTP.seen if _role(b).startswith("You are the dir")]
    assert ["tools" in b for b in director_bodies] == [True, False, True, False]
    memorizer = frames["memorizer"]
    assert memorizer.fallback.startswith("memory unchanged")
    assert "appears twice" in memorizer.llm_calls[0].error
    assert Conversation.objects.get(pk=conversation.id).memory["user_name"] == ""


def test_the_message_deadline_bounds_every_call(conversation, endpoint, settings):
    """A model slower than the message's deadline: the first call is cut at the deadline,
    later calls are not even sent, every node takes its fallback or fails plainly, and the
    user is told the model took too long."""
    import time

    settings.AGENTSITE_MESSAGE_DEADLINE_S = 1.0

    def slow(body):
        time.sleep(2.5)
        return 200, '{"intent": "question", "route": "director"}', "stop"

    BuiltinOverHTTP.misbehave = staticmethod(slow)
    llm = OpenAIProvider(base_url=endpoint, api_key="k", model="remote-model", max_retries=3)
    result = send(conversation.id, "how many customers are there?", llm=llm)
    assert result.failed
    assert "the model took too long" in result.answer
    assert len(BuiltinOverHTTP.seen) == 1  # nothing was sent after the deadline, no retry
    calls = [c for r in result.trace.frames for c in r.llm_calls]
    assert calls and all(c.outcome == "error" and "time ran out" in c.error for c in calls)
    assert result.trace.frames[0].fallback.startswith("careful path")
