"""The one HTTP client every remote adapter uses (ComfyUI, Replicate, OpenAI).

`imagen_tui.retry` says who retries what; this module is its layer 1: it
retries a single HTTP call, and only a call that cannot have been billed.
In plain words, for each failed try of `HttpClient.request`:

- 429 Too Many Requests: the server refused the call, so nothing was bought;
  it is tried again up to 3 times, billable or not. The wait is the server's
  `Retry-After` (seconds or an HTTP date) when it sends one, else an
  exponential backoff with jitter. A server asking for longer than
  `max_wait` is not waited for here: the call gives up at once and the
  worker queues the job again after that time (layer 2).
- 5xx, a lost connection or a timeout: tried again once, and only if the
  call cannot have started a paid generation: a `billable=False` call (a
  lookup, a download, a cancel), or any call that provably never reached the
  server (the connection was refused or timed out before anything was
  sent). A billable call that may have reached the server (a read timeout,
  a 5xx, a connection dropped after sending) is never sent again: it raises
  `MaybeStarted`, so the adapter can look the generation up.
  (Rate limits and failures have separate budgets: at most 3 + 1 retries.)
- 401/403: the token is wrong; the error names the variable that holds it.
- Billing, quota and content-policy refusals: permanent, one line saying so.
  Status codes alone do not identify them, so the adapter may pass a
  `classify` hook; the defaults know 402 (payment required) and a 429 whose
  JSON body says `insufficient_quota` (OpenAI).
- Any other 4xx: permanent, with the status and a short, escaped excerpt of
  the server's message (never the whole body, never the request headers).

Whenever the client gives up it raises `GenerationError` (as `HttpError`):
`transient=True` for rate limits, server errors and lost connections (with
the server's `Retry-After` as `retry_after`), `transient=False` otherwise.
Each retry is logged on one line (INFO for a 429, WARNING otherwise) with
the method, the path (never the query), what went wrong and the wait.
Waits go through the `sleep` the client is given, so tests never wait.

Every body is untrusted: a response is streamed in and refused past
`max_bytes` (on its Content-Length first, else as soon as it grows past
it), and each call, its tries and waits included, ends after `deadline_s`
however slowly the server drips its answer (`limits.MAX_BODY_BYTES` and
`limits.TRANSFER_DEADLINE_S` unless the caller says otherwise). Only a 2xx
is success: a redirect is returned (the client never follows one) and the
caller decides, so nothing is taken for stored or fetched on a 301.

Secrets come only by environment-variable name (`token_env`): the token is
read when a call is made, sent only to the `base_url`'s origin unless the
call asks otherwise, and kept out of every message, log line and `repr`; the
request attached to a returned response no longer carries it either.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal

import httpx

from imagen_tui import __version__
from imagen_tui.errors import GenerationError
from imagen_tui.limits import MAX_BODY_BYTES, TRANSFER_DEADLINE_S
from imagen_tui.retry import backoff_delay
from imagen_tui.text import one_line

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 3  # a 429 is tried again up to this many times
FAILURE_RETRIES = 1  # a 5xx or lost connection: once, and only when nothing can be billed
RETRY_BASE_S = 1.0  # backoff without Retry-After: about 1, 2, 4 s (75-100 % jitter)
RETRY_CAP_S = 16.0
MAX_WAIT_S = 60.0  # a longer Retry-After is handed to the worker instead of waited out here
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
EXCERPT_CHARS = 200  # at most this much of a server's error message goes into an error

# Raised before a single byte of the request was sent: resending cannot bill twice.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# A secret form shorter than this is not masked (it would mask ordinary text).
MIN_MASKED = 4
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space

Sleep = Callable[[float], Awaitable[None]]


class HttpError(GenerationError):
    """A remote call failed; `status` is the HTTP status, None for a lost connection;
    `kind` is what a `classify` hook named the refusal (`Classification.what`), if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message, transient=transient, retry_after=retry_after)
        self.status = status
        self.kind = kind


class TooLarge(HttpError):
    """A response body larger than the caller's cap: refused unread (permanent)."""


class MaybeStarted(HttpError):
    """A billable call failed after it may have reached the server: it may have
    started a (paid) generation, so it was not sent again. Always transient;
    the adapter decides whether to look the generation up."""


@dataclass(frozen=True)
class Classification:
    """What a `classify` hook found in an error response: a permanent refusal.

    `what` names it in a word or two ("billing", "quota", "content policy");
    `message` is one line for the user (the server's own words are fine).
    """

    what: str
    message: str


Classify = Callable[[httpx.Response], Classification | None]
# The token -> more headers that carry it (Supabase's legacy JWT keys go in
# `Authorization: Bearer` as well as in `apikey`); removed after sending, like the main one.
ExtraAuth = Callable[[str], Mapping[str, str]]


def default_classify(response: httpx.Response) -> Classification | None:
    """402 is a billing refusal; a 429 whose body says `insufficient_quota` is a quota one."""
    if response.status_code == 402:
        return Classification("billing", server_message(response) or "payment required")
    if response.status_code == 429:
        error = json_object(response).get("error")
        if isinstance(error, Mapping) and "insufficient_quota" in (
            error.get("type"),
            error.get("code"),
        ):
            return Classification("quota", server_message(response) or "insufficient quota")
    return None


def parse_retry_after(headers: httpx.Headers, now: float) -> float | None:
    """Seconds the server asks us to wait, from `Retry-After` (seconds or an HTTP
    date; `now` is the wall clock) or OpenAI's `retry-after-ms`; None if absent
    or unreadable. A date in the past is 0."""
    seconds: float | None = None
    if (millis := headers.get("retry-after-ms")) is not None:
        seconds = _number(millis)
        seconds = None if seconds is None else seconds / 1000
    if seconds is None and (value := headers.get("retry-after")) is not None:
        seconds = _number(value)
        if seconds is None:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:  # "-0000": UTC by RFC 5322
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - now
    return None if seconds is None else max(0.0, seconds)


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def json_object(response: httpx.Response) -> Mapping[str, Any]:
    """The body as a JSON object; {} for anything else (no body, bad JSON, a list)."""
    try:
        body = response.json()
    except ValueError:  # includes JSONDecodeError and undecodable bytes
        return {}
    return body if isinstance(body, Mapping) else {}


def server_message(response: httpx.Response) -> str:
    """The server's own error message: `error.message` (OpenAI), `detail`
    (Replicate, RFC 7807), `message` (Supabase), else the body text. Raw:
    pass it through `excerpt` before showing it."""
    body = json_object(response)
    error = body.get("error")
    if isinstance(error, Mapping):
        error = error.get("message")
    for candidate in (error, body.get("detail"), body.get("message"), body.get("title")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate
    return response.text


def secret_forms(secret: str) -> list[str]:
    """Every form in which `secret` may be quoted back: the value, the value
    without its scheme (`Bearer abc` -> `abc`: a proxy echoing the bare token),
    its repr (str and bytes) and its JSON string; longest first."""
    forms = {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1], json.dumps(secret)[1:-1]}
    scheme, _, bare = secret.partition(" ")
    if scheme and bare.strip():
        forms |= set(secret_forms(bare.strip()))
    return sorted((form for form in forms if len(form) >= MIN_MASKED), key=len, reverse=True)


def mask(text: str, secret: str | None) -> str:
    """`text` with every form of `secret` (see `secret_forms`) replaced by `***`."""
    if secret:
        for form in secret_forms(secret):
            text = text.replace(form, "***")
    return text


def excerpt(text: str, secret: str | None = None) -> str:
    """`text` safe for one line of an error: every form of `secret` masked, control
    characters escaped, at most EXCERPT_CHARS long."""
    return one_line(mask(text, secret), EXCERPT_CHARS)


def read_token(name: str, env: str, *, header_value: bool = False) -> str:
    """The secret in `$env`, checked when read: printable ASCII with no whitespace
    (a `header_value`, such as ComfyUI's `auth_env`, may hold one space after its
    scheme: `Bearer abc`). HttpError naming the variable, never quoting it: a
    token with an inner CR/LF would otherwise be echoed by the HTTP library."""
    value = os.environ.get(env, "").strip()
    if not value:
        raise HttpError(f"{name}: not configured (set {env})")
    parts = value.split(" ", 1) if header_value else [value]
    if not all(part and _TOKEN_RE.fullmatch(part) for part in parts):
        raise HttpError(
            f"{name}: ${env} is not a valid token: it holds whitespace or characters "
            "outside printable ASCII; set it to the token alone, on one line"
        )
    return value


@dataclass(frozen=True)
class _Retryable:
    """A failed try that may be tried again, if its budget allows."""

    kind: Literal["rate limit", "failure"]
    what: str  # "429 Too Many Requests: slow down", "ReadTimeout", for messages and logs
    status: int | None = None
    retry_after: float | None = None  # the server's Retry-After, in seconds


class HttpClient:
    """An `httpx.AsyncClient` with ImaGen's retry and error policy (see the module doc).

    `base_url` is the service root (an adapter's default, or the user's proxy,
    gateway or local fake); `token_env` names the environment variable holding
    the token (None: no authentication), sent as `auth_header: auth_scheme
    <token>` (and in whatever headers `extra_auth` derives from it).
    `classify` may recognise permanent refusals the defaults don't; it is
    asked first. `sleep`, `clock` and `transport` are for tests.
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        token_env: str | None = None,
        auth_header: str = "Authorization",
        auth_scheme: str | None = "Bearer",
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_wait: float = MAX_WAIT_S,
        max_bytes: int = MAX_BODY_BYTES,
        deadline_s: float = TRANSFER_DEADLINE_S,
        classify: Classify | None = None,
        extra_auth: ExtraAuth | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.token_env = token_env
        self._auth_header = auth_header
        self._auth_scheme = auth_scheme
        self._max_wait = max_wait
        self.max_bytes = max_bytes
        self.deadline_s = deadline_s
        self._classify = classify
        self._extra_auth = extra_auth
        self._sleep = sleep
        self._clock = clock
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"imagen-tui/{__version__}"},
        )

    @property
    def base_url(self) -> httpx.URL:
        return self._client.base_url

    def __repr__(self) -> str:
        base_url = str(self.base_url)
        return (
            f"HttpClient(name={self.name!r}, base_url={base_url!r}, token_env={self.token_env!r})"
        )

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        billable: bool,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        authenticate: bool | None = None,
        expect: Collection[int] = (),
        max_bytes: int | None = None,
        deadline_s: float | None = None,
    ) -> httpx.Response:
        """Send one call, trying again as the policy allows; return a response below 400.

        `billable`: the call may start something paid (a generation). `path`
        is relative to `base_url`, or a full URL. `timeout` replaces the
        client's for this call. The token goes to the `base_url`'s origin
        only, unless `authenticate` says otherwise. A status in `expect` (a 400
        whose body the adapter reads, say) is returned, not raised; so is a 3xx
        (never followed). `max_bytes` and `deadline_s` replace the client's cap
        on the body and on the whole call (tries and waits included). Raises
        `HttpError` (`MaybeStarted` for a billable call that may have gone
        through, `TooLarge` for a body past the cap).
        """
        deadline = self.deadline_s if deadline_s is None else deadline_s
        cap = self.max_bytes if max_bytes is None else max_bytes
        try:
            async with asyncio.timeout(deadline):
                return await self._request(
                    method,
                    path,
                    billable=billable,
                    json=json,
                    content=content,
                    params=params,
                    headers=headers,
                    timeout=timeout,
                    authenticate=authenticate,
                    expect=expect,
                    max_bytes=cap,
                )
        except TimeoutError:
            where = f"{method} {one_line(self._client.build_request(method, path).url.path, 120)}"
            what = f"no complete answer within {deadline:g} s"
            if billable:
                raise MaybeStarted(
                    f"{self.name}: {where} failed ({what}) after it may have reached the "
                    "server; it may have started a generation, so it was not sent again",
                    transient=True,
                ) from None
            raise HttpError(
                f"{self.name}: {where} failed ({what}); gave up", transient=True
            ) from None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        billable: bool,
        json: Any,
        content: bytes | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        timeout: httpx.Timeout | None,
        authenticate: bool | None,
        expect: Collection[int],
        max_bytes: int,
    ) -> httpx.Response:
        url = self._client.build_request(method, path).url  # `path` joined to base_url
        if authenticate is None:
            authenticate = _same_origin(url, self.base_url)
        token = self._token() if authenticate and self.token_env else None
        retries: Counter[str] = Counter()
        while True:
            request = self._client.build_request(
                method,
                url,
                json=json,
                content=content,
                params=params,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            secret_headers: list[str] = []
            if token is not None:
                scheme = f"{self._auth_scheme} " if self._auth_scheme else ""
                request.headers[self._auth_header] = scheme + token
                secret_headers.append(self._auth_header)
                if self._extra_auth is not None:
                    for name, value in self._extra_auth(token).items():
                        request.headers[name] = value
                        secret_headers.append(name)
            outcome = await self._try(
                request,
                billable=billable,
                token=token,
                secret=secret_headers,
                expect=expect,
                max_bytes=max_bytes,
            )
            if isinstance(outcome, httpx.Response):
                return outcome
            retries[outcome.kind] += 1
            budget = RATE_LIMIT_RETRIES if outcome.kind == "rate limit" else FAILURE_RETRIES
            tries = sum(retries.values())
            if retries[outcome.kind] > budget:
                raise self._give_up(request, outcome, f"gave up after {tries} tries")
            if outcome.retry_after is not None:
                wait = outcome.retry_after
                if wait > self._max_wait:
                    raise self._give_up(request, outcome, f"the server asks to wait {wait:g} s")
            else:
                wait = backoff_delay(retries[outcome.kind], base=RETRY_BASE_S, cap=RETRY_CAP_S)
            log.log(
                logging.INFO if outcome.kind == "rate limit" else logging.WARNING,
                "%s: %s %s: %s; retry %d of %d in %.1f s",
                self.name,
                request.method,
                _path(request),
                outcome.what,
                retries[outcome.kind],
                budget,
                wait,
            )
            await self._sleep(wait)

    def _token(self) -> str:
        assert self.token_env is not None
        return read_token(self.name, self.token_env, header_value=not self._auth_scheme)

    def secret(self) -> str | None:
        """The token as it is now, for masking what a server says (None: none set)."""
        if not self.token_env:
            return None
        return os.environ.get(self.token_env, "").strip() or None

    async def _try(
        self,
        request: httpx.Request,
        *,
        billable: bool,
        token: str | None,
        secret: list[str] | None = None,
        expect: Collection[int] = (),
        max_bytes: int = MAX_BODY_BYTES,
    ) -> httpx.Response | _Retryable:
        """One try: the response, or a failure worth trying again; raises when it is not."""
        try:
            response = await self._client.send(request, stream=True)
            try:
                await self._read(response, max_bytes)
            finally:
                await response.aclose()
        except _NEVER_SENT as error:
            return _Retryable("failure", _transport_error(error, token))
        except httpx.LocalProtocolError as error:  # refused here, before a byte was sent
            raise HttpError(
                f"{self.name}: {request.method} {_path(request)} was never sent "
                f"({_transport_error(error, token)})"
            ) from None
        except httpx.UnsupportedProtocol as error:
            raise HttpError(
                f"{self.name}: bad URL {_path(request)}: {excerpt(str(error))}"
            ) from None
        except httpx.TransportError as error:
            what = _transport_error(error, token)
            if billable:
                raise self._maybe_started(request, what, None) from None
            return _Retryable("failure", what)
        finally:
            for name in secret or ():  # what we return (response.request) must not carry it
                if name in request.headers:
                    del request.headers[name]
        status = response.status_code
        if status < 400 or status in expect:
            return response
        found = self._classify(response) if self._classify else None
        found = found or default_classify(response)
        if found is not None:
            message = excerpt(found.message, token)
            raise HttpError(
                f"{self.name}: {found.what} ({status}): {message}", status=status, kind=found.what
            )
        said = excerpt(server_message(response), token)
        what = f"{status} {response.reason_phrase}" + (f": {said}" if said else "")
        if status == 429:
            retry_after = parse_retry_after(response.headers, self._clock())
            return _Retryable("rate limit", what, status, retry_after)
        if status >= 500:
            if billable:
                raise self._maybe_started(request, what, status)
            return _Retryable(
                "failure", what, status, parse_retry_after(response.headers, self._clock())
            )
        if status in (401, 403) and token is not None:
            raise HttpError(
                f"{self.name} rejected the token in ${self.token_env} ({what}); check it",
                status=status,
            )
        raise HttpError(
            f"{self.name}: {request.method} {_path(request)} failed ({what})", status=status
        )

    async def _read(self, response: httpx.Response, max_bytes: int) -> None:
        """Read the body, refusing it past `max_bytes` (Content-Length first);
        decoded bytes count, so a compressed body cannot inflate past the cap."""
        request = response.request
        declared = response.headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > max_bytes:
            raise self._too_large(request, f"it announces {int(declared):,} bytes", max_bytes)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise self._too_large(request, "it kept coming", max_bytes)
            chunks.append(chunk)
        response._content = b"".join(chunks)  # what `response.read()` would have set

    def _too_large(self, request: httpx.Request, why: str, max_bytes: int) -> TooLarge:
        return TooLarge(
            f"{self.name}: {request.method} {_path(request)}: the answer is larger than the "
            f"{max_bytes:,}-byte limit ({why}); refused"
        )

    def _maybe_started(self, request: httpx.Request, what: str, status: int | None) -> MaybeStarted:
        return MaybeStarted(
            f"{self.name}: {request.method} {_path(request)} failed ({what}) after it may have "
            "reached the server; it may have started a generation, so it was not sent again",
            status=status,
            transient=True,
        )

    def _give_up(self, request: httpx.Request, outcome: _Retryable, why: str) -> HttpError:
        return HttpError(
            f"{self.name}: {request.method} {_path(request)} failed ({outcome.what}); {why}",
            status=outcome.status,
            transient=True,
            retry_after=outcome.retry_after,
        )


def _same_origin(url: httpx.URL, base: httpx.URL) -> bool:
    return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)


def _path(request: httpx.Request) -> str:
    """The URL path, for messages and logs: never the query (it may hold a signed token)."""
    return one_line(request.url.path, 120)


def _transport_error(error: httpx.TransportError, token: str | None) -> str:
    detail = excerpt(str(error), token)
    return type(error).__name__ + (f": {detail}" if detail else "")
