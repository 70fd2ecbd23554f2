"""Tests for the OpenAI-compatible provider, against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from runtime.errors import LLMError, LLMRateLimited, LLMStreamBroken, LLMTimeout
from runtime.llm.base import (
    Capabilities,
    ChatMessage,
    LLMRequest,
    ModelToolCall,
    OutputSchema,
    ToolSpec,
    Usage,
)
from runtime.llm.openai import OpenAIProvider

API_KEY = "sk-test-secret-0123456789"
PROMPT = (
    ChatMessage(role="system", content="You are terse."),
    ChatMessage(role="user", content="Say hello."),
)
SCHEMA = OutputSchema(
    name="perception",
    schema={
        "type": "object",
        "properties": {"intent": {"type": "string"}},
        "required": ["intent"],
        "additionalProperties": False,
    },
)
WEATHER = ToolSpec(
    name="weather",
    description="The weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
CLOCK = ToolSpec(
    name="clock",
    description="The time in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


@dataclass
class Reply:
    """One scripted answer of the fake endpoint."""

    status: int = 200
    json_body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[str] | None = None
    """SSE data payloads, sent as a chunked text/event-stream; None means a plain body."""
    cut: bool = False
    """Close the connection after the events without finishing the body."""
    delay: float = 0.0
    event_delay: float = 0.0
    """Seconds to wait before each event, for a slow stream."""
    hangup: bool = False
    """Close the connection without answering at all."""


@dataclass
class Seen:
    """One request the fake endpoint received."""

    path: str
    headers: dict[str, str]
    body: Any


class _Server(ThreadingHTTPServer):
    # Track handler threads so server_close() can join them: no thread outlives its test.
    daemon_threads = False
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out hang up on purpose; their broken pipes are not test failures.
        pass


class FakeEndpoint:
    """An OpenAI-style chat-completions server whose answers the test scripts."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        self._replies: deque[Reply] = deque()
        self._fallback: Reply | None = None
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The endpoint's base URL, as LLM_BASE_URL would hold it."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def reply(self, *replies: Reply) -> None:
        """Queue answers for the next requests, in order."""
        with self._lock:
            self._replies.extend(replies)

    def always(self, reply: Reply) -> None:
        """Answer every request after the queued ones with `reply`."""
        with self._lock:
            self._fallback = reply

    def start(self) -> None:
        """Start serving in a background thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving and wait for every server thread to end."""
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _take(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            if self._replies:
                return self._replies.popleft()
            if self._fallback is not None:
                return self._fallback
        return Reply(status=500, json_body={"error": {"message": "no scripted reply left"}})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; Nagle would hold each reply ~40 ms.
            disable_nagle_algorithm = True
            timeout = 5  # bounds a stuck connection, so joining handler threads cannot hang

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                headers = {name.lower(): value for name, value in self.headers.items()}
                reply = endpoint._take(Seen(path=self.path, headers=headers, body=body))
                if reply.delay and endpoint.stopping.wait(reply.delay):
                    self.close_connection = True
                    return
                if reply.hangup:
                    self.close_connection = True
                    return
                try:
                    if reply.events is None:
                        self._send_body(reply)
                    else:
                        self._send_events(reply)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _send_body(self, reply: Reply) -> None:
                data = reply.raw if reply.raw is not None else json.dumps(reply.json_body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _send_events(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._chunk(b": keep-alive\n\n")
                for payload in reply.events or []:
                    if reply.event_delay and endpoint.stopping.wait(reply.event_delay):
                        self.close_connection = True
                        return
                    self._chunk(f"data: {payload}\n\n".encode())
                if reply.cut:
                    self.close_connection = True
                    return
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        return Handler


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a proxy in the environment from intercepting loopback requests."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def endpoint():
    """A running fake endpoint, shut down with all its threads after the test."""
    server = FakeEndpoint()
    server.start()
    try:
        yield server
    finally:
        server.close()


def provider_for(endpoint: FakeEndpoint, **overrides: Any) -> OpenAIProvider:
    """A provider aimed at `endpoint` with fast retries."""
    options: dict[str, Any] = {
        "base_url": endpoint.base_url,
        "api_key": API_KEY,
        "model": "default-model",
        "timeout": 5.0,
        "connect_timeout": 2.0,
        "max_retries": 2,
        "backoff": 0.01,
    }
    options.update(overrides)
    return OpenAIProvider(**options)


def completion_body(
    text: str | None,
    *,
    model: str = "served-model",
    usage: tuple[int, int] = (11, 7),
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str = "stop",
):
    """A non-streamed chat-completion response body."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


def chunk(content: str | None = None, *, finish: str | None = None, role: bool = False) -> str:
    """One streamed chat-completion chunk as SSE data."""
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "served-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def tool_chunk(
    index: int, *, call_id: str = "", name: str = "", arguments: str | None = None
) -> str:
    """One streamed fragment of a native tool call as SSE data: id and name come once, with
    the call's first fragment; the arguments come in pieces."""
    call: dict[str, Any] = {"index": index}
    if call_id:
        call.update(id=call_id, type="function")
    function: dict[str, Any] = {}
    if name:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    call["function"] = function
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "served-model",
            "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}],
        }
    )


def usage_chunk(prompt: int, completion: int) -> str:
    """The final usage-only chunk that `stream_options.include_usage` asks for."""
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "served-model",
            "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }
    )


def error_body(message: str, code: str = "error") -> dict[str, Any]:
    """An OpenAI-style error response body."""
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


def run_stream(provider: OpenAIProvider, request: LLMRequest) -> tuple[Any, list[str]]:
    """Stream `request`; return the completion (or the exception raised) and the deltas."""
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)

    async def go() -> Any:
        try:
            return await provider.stream(request, on_delta)
        except LLMError as exc:
            return exc

    return asyncio.run(go()), deltas


def test_complete_parses_text_model_and_usage(endpoint: FakeEndpoint) -> None:
    """complete() returns the answer's text, the model the server names, and its token usage."""
    endpoint.reply(Reply(json_body=completion_body("Hello there.", usage=(11, 7))))

    completion = asyncio.run(provider_for(endpoint).complete(LLMRequest(messages=PROMPT)))

    assert completion.text == "Hello there."
    assert completion.provider == "openai"
    assert completion.model == "served-model"
    assert completion.usage == Usage(prompt_tokens=11, completion_tokens=7)
    assert completion.ms > 0
    assert completion.finish_reason == "stop"
    assert completion.tool_calls == ()
    assert completion.attempts == 1
    assert completion.structured == ""


def test_complete_sends_bearer_key_messages_and_temperature(endpoint: FakeEndpoint) -> None:
    """complete() POSTs to /chat/completions with the key, prompt, temperature and default model."""
    endpoint.reply(Reply(json_body=completion_body("ok")))

    asyncio.run(provider_for(endpoint).complete(LLMRequest(messages=PROMPT, temperature=0.7)))

    (seen,) = endpoint.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    assert seen.body["model"] == "default-model"
    assert seen.body["temperature"] == 0.7
    assert seen.body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello."},
    ]
    assert "response_format" not in seen.body
    assert "max_tokens" not in seen.body
    assert "stream" not in seen.body
    assert "tools" not in seen.body and "tool_choice" not in seen.body


def test_complete_json_mode_sends_response_format(endpoint: FakeEndpoint) -> None:
    """JSON mode asks for a json_object; the request's own model and max_tokens are sent."""
    endpoint.reply(Reply(json_body=completion_body('{"a": 1}')))
    request = LLMRequest(messages=PROMPT, model="other-model", json_output=True, max_tokens=64)

    completion = asyncio.run(provider_for(endpoint).complete(request))

    assert completion.text == '{"a": 1}'
    assert completion.structured == "json_object"
    (seen,) = endpoint.requests
    assert seen.body["response_format"] == {"type": "json_object"}
    assert seen.body["model"] == "other-model"
    assert seen.body["max_tokens"] == 64


def test_no_authorization_without_key_and_trailing_slash_base_url(endpoint: FakeEndpoint) -> None:
    """Without an API key no Authorization header is sent; a trailing slash in base_url is fine."""
    endpoint.reply(Reply(json_body=completion_body("ok")))
    provider = provider_for(endpoint, api_key="", base_url=endpoint.base_url + "/")

    asyncio.run(provider.complete(LLMRequest(messages=PROMPT)))

    (seen,) = endpoint.requests
    assert seen.path == "/v1/chat/completions"
    assert "authorization" not in seen.headers


def test_stream_delivers_deltas_in_order_with_usage(endpoint: FakeEndpoint) -> None:
    """stream() hands each piece to on_delta in order, returns them joined, and reads usage."""
    endpoint.reply(
        Reply(
            events=[
                chunk("", role=True),
                chunk("Hel"),
                chunk("lo, "),
                chunk("world."),
                chunk(finish="stop"),
                usage_chunk(5, 3),
                "[DONE]",
            ]
        )
    )

    completion, deltas = run_stream(provider_for(endpoint), LLMRequest(messages=PROMPT))

    assert deltas == ["Hel", "lo, ", "world."]
    assert completion.text == "".join(deltas) == "Hello, world."
    assert completion.model == "served-model"
    assert completion.usage == Usage(prompt_tokens=5, completion_tokens=3)
    (seen,) = endpoint.requests
    assert seen.body["stream"] is True
    assert seen.body["stream_options"] == {"include_usage": True}


def test_stream_broken_midway_raises_and_is_not_retried(endpoint: FakeEndpoint) -> None:
    """A stream cut off after some deltas raises LLMStreamBroken and is never retried."""
    endpoint.reply(Reply(events=[chunk("", role=True), chunk("Hello"), chunk(", wor")], cut=True))
    endpoint.always(Reply(events=[chunk("Retried!"), chunk(finish="stop"), "[DONE]"]))

    result, deltas = run_stream(provider_for(endpoint), LLMRequest(messages=PROMPT))

    assert isinstance(result, LLMStreamBroken)
    assert "10 characters" in str(result)
    assert deltas == ["Hello", ", wor"]
    assert len(endpoint.requests) == 1


def test_stream_broken_before_any_delta_is_retried(endpoint: FakeEndpoint) -> None:
    """A stream cut off before any text arrived is retried like a failed complete()."""
    endpoint.reply(Reply(events=[chunk("", role=True)], cut=True))
    endpoint.reply(Reply(events=[chunk("Hi"), chunk(finish="stop"), "[DONE]"]))

    completion, deltas = run_stream(provider_for(endpoint), LLMRequest(messages=PROMPT))

    assert completion.text == "Hi"
    assert deltas == ["Hi"]
    assert len(endpoint.requests) == 2


def test_rate_limited_then_ok_retries_once(
    endpoint: FakeEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """A 429 followed by a 200 succeeds after one retry, logged at WARNING without the key."""
    endpoint.reply(
        Reply(status=429, json_body=error_body("Slow down", "rate_limit_exceeded")),
        Reply(json_body=completion_body("Finally.")),
    )

    with caplog.at_level(logging.WARNING, logger="runtime.llm.openai"):
        completion = asyncio.run(provider_for(endpoint).complete(LLMRequest(messages=PROMPT)))

    assert completion.text == "Finally."
    assert completion.attempts == 2
    assert len(endpoint.requests) == 2
    retries = [r for r in caplog.records if r.name == "runtime.llm.openai"]
    assert len(retries) == 1 and retries[0].levelno == logging.WARNING
    assert API_KEY not in caplog.text


def test_rate_limited_every_time_raises_after_max_retries(endpoint: FakeEndpoint) -> None:
    """A 429 on every attempt raises LLMRateLimited after max_retries + 1 requests."""
    endpoint.always(Reply(status=429, json_body=error_body("Slow down", "rate_limit_exceeded")))

    with pytest.raises(LLMRateLimited, match="429"):
        asyncio.run(provider_for(endpoint, max_retries=2).complete(LLMRequest(messages=PROMPT)))

    assert len(endpoint.requests) == 3


def test_retry_after_header_is_honoured(endpoint: FakeEndpoint) -> None:
    """A numeric Retry-After on a 429 sets the pause before the retry instead of the backoff."""
    endpoint.reply(
        Reply(status=429, json_body=error_body("Slow down"), headers={"Retry-After": "0.3"}),
        Reply(json_body=completion_body("ok")),
    )

    started = time.perf_counter()
    asyncio.run(provider_for(endpoint).complete(LLMRequest(messages=PROMPT)))

    assert time.perf_counter() - started >= 0.3
    assert len(endpoint.requests) == 2


def test_server_error_then_ok_retries(endpoint: FakeEndpoint) -> None:
    """A 500 followed by a 200 succeeds after one retry."""
    endpoint.reply(
        Reply(status=500, json_body=error_body("The server had an error")),
        Reply(json_body=completion_body("Recovered.")),
    )

    completion = asyncio.run(provider_for(endpoint).complete(LLMRequest(messages=PROMPT)))

    assert completion.text == "Recovered."
    assert len(endpoint.requests) == 2


def test_server_error_every_time_raises_llm_error(endpoint: FakeEndpoint) -> None:
    """A 500 on every attempt raises a plain LLMError naming the status, after all retries."""
    endpoint.always(Reply(status=500, json_body=error_body("The server had an error")))

    with pytest.raises(LLMError) as excinfo:
        asyncio.run(provider_for(endpoint, max_retries=2).complete(LLMRequest(messages=PROMPT)))

    assert type(excinfo.value) is LLMError
    assert "500" in str(excinfo.value)
    assert "The server had an error" in str(excinfo.value)
    assert len(endpoint.requests) == 3


def test_unauthorized_is_not_retried_and_hides_the_key(endpoint: FakeEndpoint) -> None:
    """A 401 raises LLMError with the endpoint's message at once, never echoing the API key."""
    endpoint.always(
        Reply(
            status=401,
            json_body=error_body(f"Incorrect API key provided: {API_KEY}", "invalid_api_key"),
        )
    )

    with pytest.raises(LLMError) as excinfo:
        asyncio.run(provider_for(endpoint).complete(LLMRequest(messages=PROMPT)))

    message = str(excinfo.value)
    assert type(excinfo.value) is LLMError
    assert message.startswith("LLM endpoint answered 401 Unauthorized: Incorrect API key")
    assert API_KEY not in message
    assert len(endpoint.requests) == 1


def test_slow_response_times_out_and_is_not_retried(endpoint: FakeEndpoint) -> None:
    """A server slower than the timeout raises LLMTimeout at once: a model that produced
    nothing in time would be as slow again, so retries are left unused."""
    endpoint.always(Reply(json_body=completion_body("too late"), delay=1.0))
    provider = provider_for(endpoint, timeout=0.3, max_retries=2)

    started = time.perf_counter()
    with pytest.raises(LLMTimeout, match="0.3 s"):
        asyncio.run(provider.complete(LLMRequest(messages=PROMPT)))

    assert time.perf_counter() - started < 0.9
    assert len(endpoint.requests) == 1


def test_malformed_json_body_raises(endpoint: FakeEndpoint) -> None:
    """A 200 whose body is not JSON raises LLMError saying so."""
    endpoint.always(Reply(raw=b'{"choices": [ oops'))

    with pytest.raises(LLMError, match="not JSON"):
        asyncio.run(provider_for(endpoint).complete(LLMRequest(messages=PROMPT)))

    assert len(endpoint.requests) == 1


def test_response_without_choices_raises(endpoint: FakeEndpoint) -> None:
    """A 200 whose JSON carries no choices raises LLMError saying so."""
    endpoint.always(Reply(json_body={"id": "chatcmpl-1", "choices": []}))

    with pytest.raises(LLMError, match="choices"):
        asyncio.run(provider_for(endpoint).complete(LLMRequest(messages=PROMPT)))


def test_from_settings_reads_llm_settings() -> None:
    """from_settings() takes the endpoint, key, model, timeouts and retry policy from settings."""
    settings = SimpleNamespace(
        LLM_BASE_URL="http://llm.example/v1/",
        LLM_API_KEY="k",
        LLM_MODEL="m",
        LLM_TIMEOUT=12.0,
        LLM_CONNECT_TIMEOUT=3.0,
        LLM_MAX_RETRIES=4,
        LLM_RETRY_BACKOFF=0.25,
        LLM_STRUCTURED_OUTPUT="json_object",
        LLM_NATIVE_TOOLS=False,
        LLM_MODEL_CAPABILITIES={"big": {"structured": "json_schema", "tools": True}},
    )

    provider = OpenAIProvider.from_settings(settings)

    assert provider.url == "http://llm.example/v1/chat/completions"
    assert (provider.api_key, provider.model) == ("k", "m")
    assert (provider.timeout, provider.connect_timeout) == (12.0, 3.0)
    assert (provider.max_retries, provider.backoff) == (4, 0.25)
    assert provider.capabilities() == Capabilities(structured="json_object", tools=False)
    assert provider.capabilities("big") == Capabilities(structured="json_schema", tools=True)
    assert "k'" not in repr(provider)


def run_complete(provider: OpenAIProvider, request: LLMRequest) -> Any:
    """Complete `request`; return the completion or the LLMError raised."""

    async def go() -> Any:
        try:
            return await provider.complete(request)
        except LLMError as exc:
            return exc

    return asyncio.run(go())


def in_seconds(seconds: float) -> float:
    """A deadline `seconds` from now, as LLMRequest.deadline holds it."""
    return time.monotonic() + seconds


# --- structured output ------------------------------------------------------


def test_schema_is_sent_as_strict_json_schema(endpoint: FakeEndpoint) -> None:
    """With the default capability a schema goes out as strict structured output."""
    endpoint.reply(Reply(json_body=completion_body('{"intent": "greet"}')))

    completion = asyncio.run(
        provider_for(endpoint).complete(LLMRequest(messages=PROMPT, schema=SCHEMA))
    )

    (seen,) = endpoint.requests
    assert seen.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "perception", "schema": SCHEMA.schema, "strict": True},
    }
    assert completion.structured == "json_schema"
    assert completion.attempts == 1


@pytest.mark.parametrize(
    ("structured", "response_format"),
    [("json_object", {"type": "json_object"}), ("off", None)],
)
def test_schema_with_weaker_capability(
    endpoint: FakeEndpoint, structured: str, response_format: Any
) -> None:
    """A json_object endpoint gets JSON mode for a schema; an `off` one gets no response_format."""
    endpoint.reply(Reply(json_body=completion_body('{"intent": "greet"}')))
    provider = provider_for(endpoint, structured=structured)

    completion = asyncio.run(provider.complete(LLMRequest(messages=PROMPT, schema=SCHEMA)))

    (seen,) = endpoint.requests
    assert seen.body.get("response_format") == response_format
    assert completion.structured == structured


def test_json_output_with_structured_off_sends_no_response_format(endpoint: FakeEndpoint) -> None:
    """JSON mode without a schema is not sent to an endpoint whose structured output is off."""
    endpoint.reply(Reply(json_body=completion_body('{"a": 1}')))
    provider = provider_for(endpoint, structured="off")

    completion = asyncio.run(provider.complete(LLMRequest(messages=PROMPT, json_output=True)))

    assert "response_format" not in endpoint.requests[0].body
    assert completion.structured == "off"


def test_per_model_capabilities_override_the_defaults(endpoint: FakeEndpoint) -> None:
    """A model's own entry wins over the defaults, key by key; other models keep the defaults."""
    provider = provider_for(
        endpoint,
        model_capabilities={
            "small-model": {"structured": "json_object", "tools": False},
            "default-model": {"tools": False},
        },
    )
    endpoint.always(Reply(json_body=completion_body('{"intent": "greet"}')))

    assert provider.capabilities() == Capabilities(structured="json_schema", tools=False)
    assert provider.capabilities("small-model") == Capabilities("json_object", tools=False)
    assert provider.capabilities("big-model") == Capabilities("json_schema", tools=True)

    request = LLMRequest(messages=PROMPT, model="small-model", schema=SCHEMA, tools=(WEATHER,))
    completion = asyncio.run(provider.complete(request))

    (seen,) = endpoint.requests
    assert seen.body["response_format"] == {"type": "json_object"}
    assert "tools" not in seen.body and "tool_choice" not in seen.body
    assert completion.structured == "json_object"


def test_unknown_structured_mode_is_refused(endpoint: FakeEndpoint) -> None:
    """A structured-output mode the provider does not know is a configuration error."""
    with pytest.raises(ValueError, match="strict"):
        provider_for(endpoint, structured="strict")
    with pytest.raises(ValueError, match="maybe"):
        provider_for(endpoint, model_capabilities={"m": {"structured": "maybe"}})


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            400,
            error_body(
                "Invalid parameter: 'response_format' of type 'json_schema' is not "
                "supported with this model."
            ),
        ),
        (422, {"detail": [{"loc": ["body", "response_format", "type"], "msg": "bad value"}]}),
    ],
)
def test_json_schema_refusal_downgrades_to_json_object(
    endpoint: FakeEndpoint, caplog: pytest.LogCaptureFixture, status: int, body: Any
) -> None:
    """A 400/422 about response_format is asked again once, with JSON mode, and logged."""
    endpoint.reply(
        Reply(status=status, json_body=body),
        Reply(json_body=completion_body('{"intent": "greet"}')),
    )

    with caplog.at_level(logging.WARNING, logger="runtime.llm.openai"):
        completion = asyncio.run(
            provider_for(endpoint).complete(LLMRequest(messages=PROMPT, schema=SCHEMA))
        )

    first, second = endpoint.requests
    assert first.body["response_format"]["type"] == "json_schema"
    assert second.body["response_format"] == {"type": "json_object"}
    assert completion.text == '{"intent": "greet"}'
    assert completion.structured == "json_object"
    assert completion.attempts == 2
    (warning,) = [r for r in caplog.records if r.name == "runtime.llm.openai"]
    assert warning.levelno == logging.WARNING
    assert str(status) in warning.getMessage()
    assert "json_object" in warning.getMessage()


def test_json_object_refused_too_drops_response_format(endpoint: FakeEndpoint) -> None:
    """When JSON mode is refused as well, the third ask carries no response_format at all."""
    endpoint.reply(
        Reply(status=400, json_body=error_body("response_format json_schema is unsupported")),
        Reply(status=400, json_body=error_body("response_format json_object is unsupported")),
        Reply(json_body=completion_body('{"intent": "greet"}')),
    )

    completion = asyncio.run(
        provider_for(endpoint).complete(LLMRequest(messages=PROMPT, schema=SCHEMA))
    )

    assert [r.body.get("response_format", {}).get("type") for r in endpoint.requests] == [
        "json_schema",
        "json_object",
        None,
    ]
    assert completion.structured == "off"
    assert completion.attempts == 3


def test_configured_json_object_refusal_is_not_downgraded(endpoint: FakeEndpoint) -> None:
    """Only a json_schema request steps down: JSON mode asked for by configuration stays an error."""
    endpoint.always(Reply(status=400, json_body=error_body("response_format is unsupported")))

    result = run_complete(provider_for(endpoint), LLMRequest(messages=PROMPT, json_output=True))

    assert type(result) is LLMError
    assert len(endpoint.requests) == 1


def test_refusal_not_about_the_feature_stays_an_error(endpoint: FakeEndpoint) -> None:
    """A 400 about something else (the prompt's length) is raised at once, as before."""
    endpoint.always(
        Reply(status=400, json_body=error_body("This model's maximum context length is 8192."))
    )
    request = LLMRequest(messages=PROMPT, schema=SCHEMA, tools=(WEATHER,))

    result = run_complete(provider_for(endpoint), request)

    assert type(result) is LLMError
    assert str(result) == (
        "LLM endpoint answered 400 Bad Request: This model's maximum context length is 8192."
    )
    assert len(endpoint.requests) == 1


def test_streamed_schema_refusal_downgrades_too(endpoint: FakeEndpoint) -> None:
    """The downgrade works the same for a streamed request."""
    endpoint.reply(
        Reply(status=400, json_body=error_body("json_schema is not supported")),
        Reply(events=[chunk('{"intent": '), chunk('"greet"}'), chunk(finish="stop"), "[DONE]"]),
    )

    completion, deltas = run_stream(
        provider_for(endpoint), LLMRequest(messages=PROMPT, schema=SCHEMA)
    )

    assert completion.text == '{"intent": "greet"}' == "".join(deltas)
    assert completion.structured == "json_object"
    assert completion.attempts == 2


# --- native tools -------------------------------------------------------------


def test_tools_are_sent_with_tool_choice(endpoint: FakeEndpoint) -> None:
    """Tools go out as OpenAI function tools, with the request's tool_choice."""
    endpoint.reply(Reply(json_body=completion_body("ok")))
    request = LLMRequest(messages=PROMPT, tools=(WEATHER, CLOCK), tool_choice="required")

    asyncio.run(provider_for(endpoint).complete(request))

    (seen,) = endpoint.requests
    assert seen.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "The weather in a city.",
                "parameters": WEATHER.parameters,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "clock",
                "description": "The time in a city.",
                "parameters": CLOCK.parameters,
            },
        },
    ]
    assert seen.body["tool_choice"] == "required"


def test_tools_are_omitted_when_the_endpoint_lacks_them(endpoint: FakeEndpoint) -> None:
    """With native tools off, neither tools nor tool_choice is sent."""
    endpoint.reply(Reply(json_body=completion_body("ok")))
    request = LLMRequest(messages=PROMPT, tools=(WEATHER,), tool_choice="required")

    asyncio.run(provider_for(endpoint, native_tools=False).complete(request))

    (seen,) = endpoint.requests
    assert "tools" not in seen.body and "tool_choice" not in seen.body


def test_tools_refusal_asks_again_without_tools(
    endpoint: FakeEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """A 400 about tools is asked again once without them; the text answer comes back as is."""
    endpoint.reply(
        Reply(status=400, json_body=error_body("This model does not support tools.")),
        Reply(json_body=completion_body("It is sunny.")),
    )
    request = LLMRequest(messages=PROMPT, tools=(WEATHER,), tool_choice="required")

    with caplog.at_level(logging.WARNING, logger="runtime.llm.openai"):
        completion = asyncio.run(provider_for(endpoint).complete(request))

    first, second = endpoint.requests
    assert first.body["tools"] and first.body["tool_choice"] == "required"
    assert "tools" not in second.body and "tool_choice" not in second.body
    assert completion.text == "It is sunny."
    assert completion.tool_calls == ()
    assert completion.attempts == 2
    assert "does not support tools" in caplog.text


def test_tool_calls_are_parsed_from_a_whole_answer(endpoint: FakeEndpoint) -> None:
    """message.tool_calls become ModelToolCalls; object arguments are kept as JSON text."""
    endpoint.reply(
        Reply(
            json_body=completion_body(
                None,
                finish="tool_calls",
                tool_calls=[
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "clock", "arguments": {"city": "Lima"}},
                    },
                ],
            )
        )
    )
    request = LLMRequest(messages=PROMPT, tools=(WEATHER, CLOCK))

    completion = asyncio.run(provider_for(endpoint).complete(request))

    assert completion.text == ""
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls[0] == ModelToolCall(
        name="weather", arguments='{"city": "Oslo"}', id="call_1"
    )
    second = completion.tool_calls[1]
    assert (second.name, second.id) == ("clock", "call_2")
    assert json.loads(second.arguments) == {"city": "Lima"}
    assert len(completion.tool_calls) == 2


def test_streamed_tool_calls_are_assembled_by_index(endpoint: FakeEndpoint) -> None:
    """Two parallel calls streamed in interleaved pieces are put together by index, and none of
    their text reaches on_delta."""
    endpoint.reply(
        Reply(
            events=[
                chunk("", role=True),
                chunk("Checking."),
                tool_chunk(0, call_id="call_1", name="weather", arguments=""),
                tool_chunk(0, arguments='{"ci'),
                tool_chunk(1, call_id="call_2", name="clock", arguments='{"city": '),
                tool_chunk(0, arguments='ty": "Os'),
                tool_chunk(1, arguments='"Lima"}'),
                tool_chunk(0, arguments='lo"}'),
                chunk(finish="tool_calls"),
                usage_chunk(9, 4),
                "[DONE]",
            ]
        )
    )
    request = LLMRequest(messages=PROMPT, tools=(WEATHER, CLOCK))

    completion, deltas = run_stream(provider_for(endpoint), request)

    assert deltas == ["Checking."]
    assert completion.text == "Checking."
    assert completion.tool_calls == (
        ModelToolCall(name="weather", arguments='{"city": "Oslo"}', id="call_1"),
        ModelToolCall(name="clock", arguments='{"city": "Lima"}', id="call_2"),
    )
    assert completion.finish_reason == "tool_calls"
    assert completion.usage == Usage(prompt_tokens=9, completion_tokens=4)


def test_one_piece_answer_to_a_stream_keeps_its_tool_calls(endpoint: FakeEndpoint) -> None:
    """A server answering a stream request in one JSON piece still yields its tool calls,
    and on_delta is not called for an answer without text."""
    endpoint.reply(
        Reply(
            json_body=completion_body(
                None,
                finish="tool_calls",
                tool_calls=[{"id": "c", "function": {"name": "weather", "arguments": ""}}],
            )
        )
    )

    completion, deltas = run_stream(
        provider_for(endpoint), LLMRequest(messages=PROMPT, tools=(WEATHER,))
    )

    assert deltas == []
    assert completion.tool_calls == (ModelToolCall(name="weather", arguments="{}", id="c"),)
    assert completion.finish_reason == "tool_calls"


def test_stream_records_finish_reason_and_sends_max_tokens(endpoint: FakeEndpoint) -> None:
    """A stream cut by max_tokens says so in finish_reason; max_tokens was sent."""
    endpoint.reply(Reply(events=[chunk("Once upon"), chunk(finish="length"), "[DONE]"]))

    completion, _ = run_stream(provider_for(endpoint), LLMRequest(messages=PROMPT, max_tokens=3))

    assert endpoint.requests[0].body["max_tokens"] == 3
    assert completion.finish_reason == "length"
    assert completion.text == "Once upon"


# --- retries and time ---------------------------------------------------------


def test_stream_with_no_token_in_time_is_not_retried(endpoint: FakeEndpoint) -> None:
    """A stream whose first token does not come within the timeout is one LLMTimeout."""
    endpoint.always(Reply(events=[chunk("late"), chunk(finish="stop"), "[DONE]"], event_delay=1.0))
    provider = provider_for(endpoint, timeout=0.3, max_retries=2)

    result, deltas = run_stream(provider, LLMRequest(messages=PROMPT))

    assert isinstance(result, LLMTimeout)
    assert "0.3 s" in str(result)
    assert deltas == []
    assert len(endpoint.requests) == 1


def test_connection_dropped_before_any_byte_is_retried(endpoint: FakeEndpoint) -> None:
    """A server hanging up without answering is a connection problem, retried as before."""
    endpoint.reply(Reply(hangup=True), Reply(hangup=True))
    endpoint.always(Reply(json_body=completion_body("Back.")))

    completion = asyncio.run(provider_for(endpoint).complete(LLMRequest(messages=PROMPT)))

    assert completion.text == "Back."
    assert completion.attempts == 3
    assert len(endpoint.requests) == 3


@pytest.mark.parametrize("streamed", [False, True])
def test_deadline_already_passed_makes_no_request(endpoint: FakeEndpoint, streamed: bool) -> None:
    """With the message's time already up, LLMTimeout is raised without calling the endpoint."""
    endpoint.always(Reply(json_body=completion_body("never")))
    request = LLMRequest(messages=PROMPT, deadline=in_seconds(-0.1))

    if streamed:
        result, _ = run_stream(provider_for(endpoint), request)
    else:
        result = run_complete(provider_for(endpoint), request)

    assert isinstance(result, LLMTimeout)
    assert str(result).startswith("the message's time ran out before")
    assert endpoint.requests == []


def test_retry_is_not_started_past_the_deadline(endpoint: FakeEndpoint) -> None:
    """A 503 asking for a 5 s pause with 1 s left raises the 503 itself, without a retry."""
    endpoint.always(
        Reply(status=503, json_body=error_body("Overloaded"), headers={"Retry-After": "5"})
    )
    request = LLMRequest(messages=PROMPT, deadline=in_seconds(1.0))

    result = run_complete(provider_for(endpoint, max_retries=3), request)

    # Not an LLMTimeout: the error raised is the endpoint's, not a deadline found after a sleep.
    assert type(result) is LLMError
    assert "503" in str(result) and "Overloaded" in str(result)
    assert "no time left" in str(result)
    assert len(endpoint.requests) == 1


def test_retries_within_the_deadline_still_happen(endpoint: FakeEndpoint) -> None:
    """A short backoff that ends well before the deadline is retried as usual."""
    endpoint.reply(
        Reply(status=502, json_body=error_body("Bad gateway")),
        Reply(json_body=completion_body("Recovered.")),
    )
    request = LLMRequest(messages=PROMPT, deadline=in_seconds(10.0))

    completion = asyncio.run(provider_for(endpoint).complete(request))

    assert completion.text == "Recovered."
    assert completion.attempts == 2


def test_deadline_bounds_a_wait_shorter_than_the_timeout(endpoint: FakeEndpoint) -> None:
    """A slow answer is given up at the deadline even when the timeout is longer, and not
    retried."""
    endpoint.always(Reply(json_body=completion_body("too late"), delay=3.0))
    request = LLMRequest(messages=PROMPT, deadline=in_seconds(0.5))

    started = time.perf_counter()
    result = run_complete(provider_for(endpoint, timeout=5.0), request)

    assert isinstance(result, LLMTimeout)
    assert "the message's time ran out" in str(result)
    assert len(endpoint.requests) == 1
    assert time.perf_counter() - started < 2.5  # generous: well before the server's 3 s


def test_stream_still_running_at_the_deadline_stops(endpoint: FakeEndpoint) -> None:
    """A steady stream that outlasts the deadline is stopped: LLMTimeout says how many
    characters had arrived, and those were delivered to on_delta."""
    words = [f"word{i} " for i in range(30)]
    endpoint.always(
        Reply(
            events=[chunk(word) for word in words] + [chunk(finish="stop"), "[DONE]"],
            event_delay=0.1,
        )
    )
    request = LLMRequest(messages=PROMPT, deadline=in_seconds(1.0))

    result, deltas = run_stream(provider_for(endpoint, timeout=5.0), request)

    assert isinstance(result, LLMTimeout)
    assert deltas and len(deltas) < len(words)
    assert deltas == words[: len(deltas)]
    assert f"after {len(''.join(deltas))} characters had arrived" in str(result)
    assert len(endpoint.requests) == 1
