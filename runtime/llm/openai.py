"""An LLM provider for any OpenAI-compatible chat-completions endpoint."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import httpx

from runtime.errors import LLMError, LLMRateLimited, LLMStreamBroken, LLMTimeout
from runtime.llm.base import (
    Capabilities,
    Completion,
    DeltaCallback,
    LLMRequest,
    ModelToolCall,
    Usage,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# 429 and the gateway-style 5xx are usually transient; other statuses will not change on retry.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# How servers refuse a request they cannot parse or do not support.
REFUSAL_STATUSES = frozenset({400, 422})
# Words showing that a refusal is about structured output or native tools, which can be
# dropped, rather than about the prompt, which a second try would not change.
FORMAT_WORDS = ("response_format", "json_schema", "json_object")
TOOL_WORDS = ("tool", "function")
# How much of a refusal's body is searched for those words.
REFUSAL_SCAN_CHARS = 4000
STRUCTURED_MODES = ("json_schema", "json_object", "off")
# A server asking for a longer pause than this is effectively down; don't stall the user on it.
MAX_RETRY_AFTER = 30.0
# Enough of an unexpected body to say what went wrong without flooding logs.
SNIPPET_CHARS = 200


class _Retryable(Exception):
    """A failed attempt worth another try; `error` is what to raise when none are left."""

    def __init__(self, error: LLMError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _Refused(Exception):
    """A 400/422: `error` is raised unless `detail` blames a feature the request can drop."""

    def __init__(self, error: LLMError, detail: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.detail = detail


class _OutOfTime(Exception):
    """The request's deadline passed while waiting for the endpoint."""


class _BorrowedTransport(httpx.AsyncBaseTransport):
    """A transport the caller owns: the per-call client must not close it on exit."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Pass the request to the caller's transport."""
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Leave the caller's transport open; its owner closes it."""


@dataclass(frozen=True)
class _Ask:
    """What one attempt asks of the endpoint beyond plain chat."""

    structured: str = ""
    """`json_schema`, `json_object`, `off`, or empty when no structure is asked."""
    tools: bool = False
    """Whether the request's tools are sent."""
    downgraded: bool = False
    """Whether `structured` came down from `json_schema` after a refusal."""


@dataclass(frozen=True)
class _Budget:
    """The time limits of one attempt: the configured ones, cut short by the deadline."""

    timeout: httpx.Timeout
    read_cut: bool = False
    """The read limit is what was left before the deadline, not `timeout`."""
    connect_cut: bool = False
    """The connect limit is what was left before the deadline, not `connect_timeout`."""


@dataclass
class _ToolCallParts:
    """A streamed native tool call, put together from its fragments."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _StreamState:
    """What a streamed answer has delivered so far."""

    pieces: list[str] = field(default_factory=list)
    model: str = ""
    usage: Usage | None = None
    finished: bool = False
    done: bool = False
    finish_reason: str = ""
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)

    @property
    def chars(self) -> int:
        """Characters delivered to the caller so far."""
        return sum(len(piece) for piece in self.pieces)

    def calls(self) -> tuple[ModelToolCall, ...]:
        """The native tool calls received, in the endpoint's order."""
        return tuple(
            ModelToolCall(
                name=parts.name, arguments=_arguments_text("".join(parts.arguments)), id=parts.id
            )
            for _, parts in sorted(self.tool_calls.items())
        )


class OpenAIProvider:
    """An `LLMProvider` for any OpenAI-compatible chat-completions endpoint."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str = "",
        model: str,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        structured: str = "json_schema",
        native_tools: bool = True,
        model_capabilities: dict[str, dict[str, Any]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("OpenAIProvider needs a base_url.")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.api_key = api_key
        self.model = model
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff = backoff
        self.structured = structured
        self.native_tools = bool(native_tools)
        self.model_capabilities = dict(model_capabilities or {})
        for mode in [structured, *(c.get("structured") for c in self.model_capabilities.values())]:
            if mode is not None and mode not in STRUCTURED_MODES:
                raise ValueError(
                    f"OpenAIProvider structured output must be one of {', '.join(STRUCTURED_MODES)}"
                    f", got {mode!r}."
                )
        self._transport = transport

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self.base_url!r}, model={self.model!r})"

    @classmethod
    def from_settings(cls, settings: Any) -> OpenAIProvider:
        """Build a provider from the LLM_* settings of `settings`."""
        return cls(
            base_url=settings.LLM_BASE_URL,
            api_key=settings.LLM_API_KEY,
            model=settings.LLM_MODEL,
            timeout=float(settings.LLM_TIMEOUT),
            connect_timeout=float(settings.LLM_CONNECT_TIMEOUT),
            max_retries=int(settings.LLM_MAX_RETRIES),
            backoff=float(settings.LLM_RETRY_BACKOFF),
            structured=settings.LLM_STRUCTURED_OUTPUT,
            native_tools=bool(settings.LLM_NATIVE_TOOLS),
            model_capabilities=settings.LLM_MODEL_CAPABILITIES,
        )

    def capabilities(self, model: str = "") -> Capabilities:
        """What the endpoint can do for `model` (empty: the configured default)."""
        entry = self.model_capabilities.get(model or self.model) or {}
        return Capabilities(
            structured=entry.get("structured", self.structured),
            tools=bool(entry.get("tools", self.native_tools)),
        )

    async def complete(self, request: LLMRequest) -> Completion:
        """Return the whole answer to `request`."""
        started = time.perf_counter()
        async with self._client() as client:
            return await self._call(
                request,
                lambda body, budget: self._complete_once(client, body, budget, request, started),
                stream=False,
            )

    async def stream(self, request: LLMRequest, on_delta: DeltaCallback) -> Completion:
        """Call `on_delta` with each piece of the answer; return the whole answer."""
        started = time.perf_counter()
        async with self._client() as client:
            return await self._call(
                request,
                lambda body, budget: self._stream_once(
                    client, body, budget, request, on_delta, started
                ),
                stream=True,
            )

    def _client(self) -> httpx.AsyncClient:
        headers = {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        transport = _BorrowedTransport(self._transport) if self._transport else None
        return httpx.AsyncClient(
            # `timeout` bounds every wait for the server (headers, each body chunk), not the
            # whole answer, so a long but steady stream is not cut off; only the deadline is.
            # Each attempt passes its own limits (see `_budget`); these are the defaults.
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            headers=headers,
            transport=transport,
        )

    def _ask(self, request: LLMRequest) -> _Ask:
        """What the first attempt asks for, given what the endpoint can do for the model."""
        capabilities = self.capabilities(request.model)
        if request.schema is not None:
            structured = capabilities.structured
        elif request.json_output:
            structured = "off" if capabilities.structured == "off" else "json_object"
        else:
            structured = ""
        return _Ask(structured=structured, tools=bool(request.tools) and capabilities.tools)

    def _body(self, request: LLMRequest, ask: _Ask, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": request.temperature,
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if ask.structured == "json_schema" and request.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema.name,
                    "schema": request.schema.schema,
                    "strict": True,
                },
            }
        elif ask.structured == "json_object":
            body["response_format"] = {"type": "json_object"}
        if ask.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                }
                for tool in request.tools
            ]
            body["tool_choice"] = request.tool_choice
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def _call(
        self,
        request: LLMRequest,
        attempt: Callable[[dict[str, Any], _Budget], Awaitable[Completion]],
        *,
        stream: bool,
    ) -> Completion:
        """Run `attempt` until it succeeds, retrying what may pass and dropping refused features."""
        ask = self._ask(request)
        attempts = retries = 0
        while True:
            budget = self._budget(request, again=attempts > 0)
            attempts += 1
            try:
                completion = await attempt(self._body(request, ask, stream=stream), budget)
            except _Refused as refusal:
                fallback = _fallback(ask, refusal.detail)
                if fallback is None:
                    raise refusal.error from None
                ask, change = fallback
                logger.warning(
                    "LLM endpoint %s refused the request (%s); asking again %s",
                    self.url,
                    refusal.error,
                    change,
                )
                continue
            except _Retryable as failure:
                delay = failure.retry_after
                if delay is None:
                    delay = self.backoff * 2**retries
                if retries >= self.max_retries:
                    raise _noted(failure.error, retries, False) from failure.__cause__
                remaining = request.remaining()
                if remaining is not None and delay >= remaining:
                    # A retry that could only start after the deadline would be refused anyway;
                    # the error the user can act on is the one that happened.
                    raise _noted(failure.error, retries, True) from failure.__cause__
                retries += 1
                logger.warning(
                    "LLM call to %s failed (%s); retry %d of %d in %.2f s",
                    self.url,
                    failure.error,
                    retries,
                    self.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            return replace(completion, attempts=attempts, structured=ask.structured)

    def _budget(self, request: LLMRequest, *, again: bool) -> _Budget:
        """The limits of the next attempt; LLMTimeout if the deadline has already passed."""
        remaining = request.remaining()
        if remaining is None:
            return _Budget(httpx.Timeout(self.timeout, connect=self.connect_timeout))
        if remaining <= 0:
            what = (
                "the LLM endpoint could be asked again" if again else "the LLM endpoint was asked"
            )
            raise LLMTimeout(f"the message's time ran out before {what}")
        read = min(self.timeout, remaining)
        connect = min(self.connect_timeout, remaining)
        return _Budget(
            httpx.Timeout(read, connect=connect),
            read_cut=read < self.timeout,
            connect_cut=connect < self.connect_timeout,
        )

    async def _within(self, request: LLMRequest, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, giving up with `_OutOfTime` when the request's deadline passes."""
        remaining = request.remaining()
        if remaining is None:
            return await awaitable
        # httpx bounds each wait, not a whole answer trickling in; this bounds the total.
        limit = asyncio.timeout(remaining)
        try:
            async with limit:
                return await awaitable
        except TimeoutError:
            if limit.expired():
                raise _OutOfTime() from None
            raise

    async def _complete_once(
        self,
        client: httpx.AsyncClient,
        body: dict[str, Any],
        budget: _Budget,
        request: LLMRequest,
        started: float,
    ) -> Completion:
        try:
            response = await self._within(
                request, client.post(self.url, json=body, timeout=budget.timeout)
            )
        except _OutOfTime:
            raise self._out_of_time(0) from None
        except httpx.HTTPError as exc:
            raise self._transport_failure(exc, budget) from exc
        except httpx.InvalidURL as exc:
            raise LLMError(f"LLM base URL {self.base_url!r} is not a valid URL: {exc}") from exc
        self._check_status(response)
        return self._completion_from_json(self._json(response), request, started)

    async def _stream_once(
        self,
        client: httpx.AsyncClient,
        body: dict[str, Any],
        budget: _Budget,
        request: LLMRequest,
        on_delta: DeltaCallback,
        started: float,
    ) -> Completion:
        try:
            response = await self._within(
                request,
                client.send(
                    client.build_request("POST", self.url, json=body, timeout=budget.timeout),
                    stream=True,
                ),
            )
        except _OutOfTime:
            raise self._out_of_time(0) from None
        except httpx.HTTPError as exc:
            raise self._transport_failure(exc, budget) from exc
        except httpx.InvalidURL as exc:
            raise LLMError(f"LLM base URL {self.base_url!r} is not a valid URL: {exc}") from exc
        try:
            if not response.is_success:
                await self._read_quietly(response, request)
                self._check_status(response)
            if response.headers.get("content-type", "").startswith("application/json"):
                # Some servers ignore `stream` and answer in one piece; pass it on as one delta.
                try:
                    await self._within(request, response.aread())
                except _OutOfTime:
                    raise self._out_of_time(0) from None
                except httpx.HTTPError as exc:
                    raise self._transport_failure(exc, budget) from exc
                completion = self._completion_from_json(self._json(response), request, started)
                if completion.text:
                    await on_delta(completion.text)
                return completion
            return await self._read_stream(response, budget, request, on_delta, started)
        finally:
            await response.aclose()

    async def _read_stream(
        self,
        response: httpx.Response,
        budget: _Budget,
        request: LLMRequest,
        on_delta: DeltaCallback,
        started: float,
    ) -> Completion:
        state = _StreamState()
        events = _sse_data(response.aiter_lines()).__aiter__()
        broken: httpx.HTTPError | None = None
        while True:
            # Only the read is guarded and bounded by the deadline: an error raised by
            # `on_delta` is the caller's own, and the caller's work is never cut in half.
            try:
                data = await self._within(request, events.__anext__())
            except StopAsyncIteration:
                break
            except httpx.HTTPError as exc:
                broken = exc
                break
            except _OutOfTime:
                raise self._out_of_time(state.chars) from None
            if data.strip() == "[DONE]":
                state.done = True
                break
            piece = self._take_chunk(data, state)
            if piece:
                state.pieces.append(piece)
                await on_delta(piece)

        if not (state.done or state.finished):
            raise self._broken(state, broken, budget)
        if broken is not None:
            logger.warning("LLM stream from %s ended with %r after it finished", self.url, broken)
        return Completion(
            text="".join(state.pieces),
            provider=self.name,
            model=state.model or request.model or self.model,
            usage=state.usage or Usage(),
            ms=(time.perf_counter() - started) * 1000,
            tool_calls=state.calls(),
            finish_reason=state.finish_reason,
        )

    def _take_chunk(self, data: str, state: _StreamState) -> str:
        """Record one stream chunk in `state`; return its text for the caller, if any."""
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            raise self._stream_failure(
                state, f"LLM endpoint sent a malformed stream chunk: {_snippet(data)!r}"
            )
        if chunk.get("error"):
            # OpenRouter and others report failures mid-stream as an `error` chunk.
            raise self._stream_failure(
                state, f"LLM endpoint reported an error mid-stream: {_error_message(chunk)}"
            )
        if isinstance(chunk.get("model"), str) and chunk["model"] and not state.model:
            state.model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            state.usage = _usage(chunk["usage"])
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return ""
        choice = choices[0]
        if choice.get("finish_reason"):
            state.finished = True
            if isinstance(choice["finish_reason"], str):
                state.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return ""
        if isinstance(delta.get("tool_calls"), list):
            # Tool calls are for the caller's logic, not its reader: never passed to on_delta.
            _take_tool_fragments(delta["tool_calls"], state.tool_calls)
        content = delta.get("content")
        return content if isinstance(content, str) else ""

    def _stream_failure(self, state: _StreamState, message: str) -> LLMError:
        message = self._redact(message)
        if state.chars:
            return LLMStreamBroken(f"{message} (after {state.chars} characters had arrived)")
        return LLMError(message)

    def _broken(
        self, state: _StreamState, cause: httpx.HTTPError | None, budget: _Budget
    ) -> Exception:
        if isinstance(cause, httpx.TimeoutException) and budget.read_cut:
            # The wait was cut short by the deadline, not by the configured timeout.
            return self._out_of_time(state.chars)
        how = (
            f"{type(cause).__name__}: {cause}"
            if cause is not None
            else "the connection closed before [DONE]"
        )
        error = LLMStreamBroken(
            self._redact(f"LLM stream broke off after {state.chars} characters had arrived ({how})")
        )
        if state.chars:
            # The caller has shown these characters already; a retry would repeat or contradict them.
            return error
        if isinstance(cause, httpx.TimeoutException):
            return self._transport_failure(cause, budget)
        return _Retryable(error)

    def _transport_failure(self, exc: httpx.HTTPError, budget: _Budget) -> Exception:
        if isinstance(exc, httpx.TimeoutException):
            error = self._timeout_error(exc, budget)
            # No answer within the timeout means a slow model, which would be as slow again;
            # only failing to connect (or send) is worth another try.
            return error if isinstance(exc, httpx.ReadTimeout) else _Retryable(error)
        message = self._redact(f"LLM endpoint {self.url} unreachable: {type(exc).__name__}: {exc}")
        if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
            return _Retryable(LLMError(message))
        return LLMError(message)

    def _timeout_error(self, exc: httpx.TimeoutException, budget: _Budget) -> LLMTimeout:
        if isinstance(exc, httpx.ConnectTimeout):
            if budget.connect_cut:
                return self._out_of_time(0)
            return LLMTimeout(
                f"LLM endpoint {self.url} could not be reached within {self.connect_timeout:g} s"
            )
        if budget.read_cut:
            return self._out_of_time(0)
        return LLMTimeout(f"LLM endpoint {self.url} did not answer within {self.timeout:g} s")

    def _out_of_time(self, chars: int) -> LLMTimeout:
        """The error for a deadline that passed during an attempt, `chars` into the answer."""
        if chars:
            # The caller keeps what it has shown; the message says how much that was.
            return LLMTimeout(
                f"the message's time ran out while the answer from LLM endpoint {self.url} "
                f"was still arriving (after {chars} characters had arrived)"
            )
        return LLMTimeout(f"the message's time ran out while waiting for LLM endpoint {self.url}")

    def _check_status(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        status = response.status_code
        reason = response.reason_phrase or httpx.codes.get_reason_phrase(status)
        message = f"LLM endpoint answered {status} {reason}".rstrip()
        detail = _body_message(response)
        if detail:
            message = f"{message}: {detail}"
        message = self._redact(message)
        if status == 429:
            raise _Retryable(LLMRateLimited(message), _retry_after(response))
        if status in RETRY_STATUSES:
            raise _Retryable(LLMError(message), _retry_after(response))
        if status in REFUSAL_STATUSES:
            raise _Refused(LLMError(message), _body_text(response))
        raise LLMError(message)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise LLMError(
                self._redact(
                    f"LLM endpoint answered {response.status_code} with a body that is not JSON: "
                    f"{_snippet(response.text)!r}"
                )
            ) from exc

    def _completion_from_json(self, data: Any, request: LLMRequest, started: float) -> Completion:
        if not isinstance(data, dict):
            raise LLMError("LLM endpoint answered with JSON that is not an object")
        if data.get("error"):
            raise LLMError(self._redact(f"LLM endpoint reported an error: {_error_message(data)}"))
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise LLMError("LLM endpoint answered without any choices")
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message")
        if not isinstance(message, dict):
            raise LLMError("LLM endpoint answered with a choice that has no message")
        content = message.get("content")
        if content is None:
            # A model may legitimately answer with nothing (e.g. only tool calls, or a refusal
            # in another field).
            content = ""
        if not isinstance(content, str):
            raise LLMError("LLM endpoint answered with message content that is not text")
        model = data.get("model")
        usage = data.get("usage")
        finish_reason = choice.get("finish_reason")
        return Completion(
            text=content,
            provider=self.name,
            model=model if isinstance(model, str) and model else request.model or self.model,
            usage=_usage(usage) if isinstance(usage, dict) else Usage(),
            ms=(time.perf_counter() - started) * 1000,
            tool_calls=_tool_calls(message.get("tool_calls")),
            finish_reason=finish_reason if isinstance(finish_reason, str) else "",
        )

    def _redact(self, message: str) -> str:
        # Some servers echo the key they rejected; it must never reach logs or users.
        if self.api_key:
            message = message.replace(self.api_key, "***")
        return message

    async def _read_quietly(self, response: httpx.Response, request: LLMRequest) -> None:
        try:
            await self._within(request, response.aread())
        except (httpx.HTTPError, _OutOfTime):
            # The status alone still says what went wrong; the body was only for detail.
            pass


def _fallback(ask: _Ask, detail: str) -> tuple[_Ask, str] | None:
    """What to ask instead after a refusal explained by `detail`, and how to say so; None if
    the refusal is not about a feature that can be dropped."""
    text = detail.lower()
    about_format = any(word in text for word in FORMAT_WORDS)
    about_tools = ask.tools and any(word in text for word in TOOL_WORDS)
    lowerable = ask.structured == "json_schema" or (
        ask.structured == "json_object" and ask.downgraded
    )
    # A bad tool ("Invalid schema for function 'x'") also says "schema"; the tools are to
    # blame for it, not the response format.
    if lowerable and (about_format or ("schema" in text and not about_tools)):
        if ask.structured == "json_schema":
            return replace(ask, structured="json_object", downgraded=True), (
                "with response_format json_object instead of json_schema"
            )
        return replace(ask, structured="off"), "without response_format"
    if about_tools:
        return replace(ask, tools=False), "without native tools"
    return None


def _noted(error: LLMError, retries: int, out_of_time: bool) -> LLMError:
    """`error`, its message saying how many retries came before it and why no more."""
    times = f"{retries} {'retry' if retries == 1 else 'retries'}"
    if out_of_time:
        note = f"after {times}; no time left for another" if retries else "no time left to retry"
    elif retries:
        note = f"after {times}"
    else:
        return error
    error.args = (f"{error} ({note})",)
    return error


def _tool_calls(raw: Any) -> tuple[ModelToolCall, ...]:
    """The native tool calls of a non-streamed message (`message.tool_calls`)."""
    if not isinstance(raw, list):
        return ()
    calls = []
    for item in raw:
        if not isinstance(item, dict) or item.get("type", "function") != "function":
            continue
        function = item.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        call_id = item.get("id")
        calls.append(
            ModelToolCall(
                name=function["name"],
                arguments=_arguments_text(function.get("arguments")),
                id=call_id if isinstance(call_id, str) else "",
            )
        )
    return tuple(calls)


def _take_tool_fragments(fragments: list[Any], calls: dict[int, _ToolCallParts]) -> None:
    """Add streamed `delta.tool_calls` fragments to `calls`, keyed by their index."""
    for fragment in fragments:
        if not isinstance(fragment, dict):
            continue
        call_id = fragment.get("id") if isinstance(fragment.get("id"), str) else ""
        index = fragment.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            # Servers that leave out the index send one call after another: a new id starts
            # the next call, anything else continues the last one.
            index = max(calls, default=0)
            if call_id and calls.get(index, _ToolCallParts()).id not in ("", call_id):
                index += 1
        parts = calls.setdefault(index, _ToolCallParts())
        if call_id and not parts.id:
            parts.id = call_id
        function = fragment.get("function")
        if not isinstance(function, dict):
            continue
        name = function.get("name")
        if isinstance(name, str) and name and not parts.name:
            parts.name = name  # sent once, with the call's first fragment
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            parts.arguments.append(arguments)
        elif arguments is not None:
            parts.arguments.append(json.dumps(arguments))


def _arguments_text(raw: Any) -> str:
    """A tool call's arguments as JSON text, whatever shape the server sent them in."""
    if isinstance(raw, str) and raw:
        return raw
    if raw is None or raw == "":
        # Some servers send nothing for a tool without parameters: that is an empty object.
        return "{}"
    # Some servers send an object rather than a string of JSON.
    return json.dumps(raw)


def _body_text(response: httpx.Response) -> str:
    """The start of a failed response's body as text, or empty if it could not be read."""
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return ""
    return content[:REFUSAL_SCAN_CHARS].decode("utf-8", "replace")


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Yield the data of each complete server-sent event read from `lines`."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment, which servers also use as a keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    # An event without its closing blank line may be cut short, so it is dropped as SSE says.


def _usage(raw: dict[str, Any]) -> Usage:
    """Token counts from an OpenAI-style `usage` object, tolerating gaps."""

    def count(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return Usage(prompt_tokens=count("prompt_tokens"), completion_tokens=count("completion_tokens"))


def _error_message(data: dict[str, Any]) -> str:
    """The human message in an error body, in the shapes OpenAI-compatible servers use."""
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    for key in ("message", "detail"):
        if isinstance(data.get(key), str):
            return data[key]
    return ""


def _body_message(response: httpx.Response) -> str:
    """The endpoint's own explanation of a failed response, if it gave one."""
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return ""  # the body could not be read; the status has to speak for itself
    try:
        data = json.loads(content)
    except ValueError:
        text = content.decode("utf-8", "replace").strip()
        # Proxies answer with HTML pages, which say nothing useful in one line.
        return _snippet(text) if text and not text.startswith("<") else ""
    return _snippet(_error_message(data)) if isinstance(data, dict) else ""


def _retry_after(response: httpx.Response) -> float | None:
    """The pause a numeric Retry-After header asks for, capped; None when absent or a date."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _snippet(text: str) -> str:
    """The start of `text`, short enough for one line of a message."""
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "..."
