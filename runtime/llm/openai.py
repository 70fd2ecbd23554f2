"""An LLM provider for any OpenAI-compatible chat-completions endpoint."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from runtime.errors import LLMError, LLMRateLimited, LLMStreamBroken, LLMTimeout
from runtime.llm.base import Completion, DeltaCallback, LLMRequest, Usage

logger = logging.getLogger(__name__)

T = TypeVar("T")

# 429 and the gateway-style 5xx are usually transient; other statuses will not change on retry.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
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


class _BorrowedTransport(httpx.AsyncBaseTransport):
    """A transport the caller owns: the per-call client must not close it on exit."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Pass the request to the caller's transport."""
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Leave the caller's transport open; its owner closes it."""


@dataclass
class _StreamState:
    """What a streamed answer has delivered so far."""

    pieces: list[str] = field(default_factory=list)
    model: str = ""
    usage: Usage | None = None
    finished: bool = False
    done: bool = False

    @property
    def chars(self) -> int:
        """Characters delivered to the caller so far."""
        return sum(len(piece) for piece in self.pieces)


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
        )

    async def complete(self, request: LLMRequest) -> Completion:
        """Return the whole answer to `request`."""
        started = time.perf_counter()
        body = self._body(request, stream=False)
        async with self._client() as client:
            data = await self._retrying(lambda: self._complete_once(client, body))
        return self._completion_from_json(data, request, started)

    async def stream(self, request: LLMRequest, on_delta: DeltaCallback) -> Completion:
        """Call `on_delta` with each piece of the answer; return the whole answer."""
        started = time.perf_counter()
        body = self._body(request, stream=True)
        async with self._client() as client:
            return await self._retrying(
                lambda: self._stream_once(client, body, request, on_delta, started)
            )

    def _client(self) -> httpx.AsyncClient:
        headers = {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        transport = _BorrowedTransport(self._transport) if self._transport else None
        return httpx.AsyncClient(
            # `timeout` bounds every wait for the server (headers, each body chunk), not the
            # whole answer, so a long but steady stream is not cut off.
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            headers=headers,
            transport=transport,
        )

    def _body(self, request: LLMRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": request.temperature,
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.json_output:
            body["response_format"] = {"type": "json_object"}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        for tries in range(self.max_retries + 1):
            try:
                return await attempt()
            except _Retryable as failure:
                if tries >= self.max_retries:
                    error = failure.error
                    if self.max_retries:
                        retries = "retry" if self.max_retries == 1 else "retries"
                        error.args = (f"{error} (after {self.max_retries} {retries})",)
                    raise error from failure.__cause__
                delay = failure.retry_after
                if delay is None:
                    delay = self.backoff * 2**tries
                logger.warning(
                    "LLM call to %s failed (%s); retry %d of %d in %.2f s",
                    self.url,
                    failure.error,
                    tries + 1,
                    self.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _complete_once(self, client: httpx.AsyncClient, body: dict[str, Any]) -> Any:
        try:
            response = await client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise self._transport_failure(exc) from exc
        except httpx.InvalidURL as exc:
            raise LLMError(f"LLM base URL {self.base_url!r} is not a valid URL: {exc}") from exc
        self._check_status(response)
        return self._json(response)

    async def _stream_once(
        self,
        client: httpx.AsyncClient,
        body: dict[str, Any],
        request: LLMRequest,
        on_delta: DeltaCallback,
        started: float,
    ) -> Completion:
        try:
            response = await client.send(
                client.build_request("POST", self.url, json=body), stream=True
            )
        except httpx.HTTPError as exc:
            raise self._transport_failure(exc) from exc
        except httpx.InvalidURL as exc:
            raise LLMError(f"LLM base URL {self.base_url!r} is not a valid URL: {exc}") from exc
        try:
            if not response.is_success:
                await self._read_quietly(response)
                self._check_status(response)
            if response.headers.get("content-type", "").startswith("application/json"):
                # Some servers ignore `stream` and answer in one piece; pass it on as one delta.
                try:
                    await response.aread()
                except httpx.HTTPError as exc:
                    raise self._transport_failure(exc) from exc
                completion = self._completion_from_json(self._json(response), request, started)
                if completion.text:
                    await on_delta(completion.text)
                return completion
            return await self._read_stream(response, request, on_delta, started)
        finally:
            await response.aclose()

    async def _read_stream(
        self,
        response: httpx.Response,
        request: LLMRequest,
        on_delta: DeltaCallback,
        started: float,
    ) -> Completion:
        state = _StreamState()
        events = _sse_data(response.aiter_lines()).__aiter__()
        broken: httpx.HTTPError | None = None
        while True:
            # Only the read is guarded: an error raised by `on_delta` is the caller's own.
            try:
                data = await events.__anext__()
            except StopAsyncIteration:
                break
            except httpx.HTTPError as exc:
                broken = exc
                break
            if data.strip() == "[DONE]":
                state.done = True
                break
            piece = self._take_chunk(data, state)
            if piece:
                state.pieces.append(piece)
                await on_delta(piece)

        if not (state.done or state.finished):
            raise self._broken(state, broken)
        if broken is not None:
            logger.warning("LLM stream from %s ended with %r after it finished", self.url, broken)
        return Completion(
            text="".join(state.pieces),
            provider=self.name,
            model=state.model or request.model or self.model,
            usage=state.usage or Usage(),
            ms=(time.perf_counter() - started) * 1000,
        )

    def _take_chunk(self, data: str, state: _StreamState) -> str:
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
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) else ""

    def _stream_failure(self, state: _StreamState, message: str) -> LLMError:
        message = self._redact(message)
        if state.chars:
            return LLMStreamBroken(f"{message} (after {state.chars} characters had arrived)")
        return LLMError(message)

    def _broken(self, state: _StreamState, cause: httpx.HTTPError | None) -> Exception:
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
            return _Retryable(self._timeout_error(cause))
        return _Retryable(error)

    def _transport_failure(self, exc: httpx.HTTPError) -> Exception:
        if isinstance(exc, httpx.TimeoutException):
            return _Retryable(self._timeout_error(exc))
        message = self._redact(f"LLM endpoint {self.url} unreachable: {type(exc).__name__}: {exc}")
        if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
            return _Retryable(LLMError(message))
        return LLMError(message)

    def _timeout_error(self, exc: httpx.TimeoutException) -> LLMTimeout:
        if isinstance(exc, httpx.ConnectTimeout):
            return LLMTimeout(
                f"LLM endpoint {self.url} could not be reached within {self.connect_timeout:g} s"
            )
        return LLMTimeout(f"LLM endpoint {self.url} did not answer within {self.timeout:g} s")

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
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        if not isinstance(message, dict):
            raise LLMError("LLM endpoint answered with a choice that has no message")
        content = message.get("content")
        if content is None:
            # A model may legitimately answer with nothing (e.g. a refusal in another field).
            content = ""
        if not isinstance(content, str):
            raise LLMError("LLM endpoint answered with message content that is not text")
        model = data.get("model")
        usage = data.get("usage")
        return Completion(
            text=content,
            provider=self.name,
            model=model if isinstance(model, str) and model else request.model or self.model,
            usage=_usage(usage) if isinstance(usage, dict) else Usage(),
            ms=(time.perf_counter() - started) * 1000,
        )

    def _redact(self, message: str) -> str:
        # Some servers echo the key they rejected; it must never reach logs or users.
        if self.api_key:
            message = message.replace(self.api_key, "***")
        return message

    @staticmethod
    async def _read_quietly(response: httpx.Response) -> None:
        try:
            await response.aread()
        except httpx.HTTPError:
            # The status alone still says what went wrong; the body was only for detail.
            pass


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
