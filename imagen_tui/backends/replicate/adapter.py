"""The Replicate adapter: create a prediction, wait for it, download its image.

    POST models/{owner}/{name}/predictions   (official model), or
    POST predictions {"version": ...}        (owner/name:version, pinned)
        with `Prefer: wait=N` (the server holds the call up to N s) and
        `Cancel-After` (the server cancels it past our timeout even if we vanish)
    GET  predictions/{id}                    every 0.5 s until succeeded, failed,
                                             canceled or aborted
    GET  <output URL>                        at once: Replicate deletes outputs after
                                             an hour; one retry (HttpClient's policy)

An output URL is untrusted (it comes in the prediction's body): on the origin
of the configured `base_url` (the API, a proxy or a loopback fake the
operator named) it is fetched with the token; anywhere else it must be
https, on a host name (no IP literal) whose every address is public (no
private, loopback, link-local or reserved one), and it is fetched without
the token, following at most one redirect, to a URL that passes the same test.
    POST predictions/{id}/cancel             on our timeout, or when the caller
                                             cancels (Ctrl-C, a worker's stop, a lost lease)

Every call goes through `backends.http.HttpClient`: a create call that may
have reached the server is never sent again (`MaybeStarted`); the adapter
looks for the prediction it may have started among the account's newest
predictions instead, and follows it if found.

That lookup must not adopt (or cancel) another job's prediction on the same
account. The only caller data Replicate documents as echoed on a prediction
is its `input` (reference/apis.md §1.3), and an extra input key is refused
or ignored depending on the model, so the claim's tag is an input every
model we know takes: the seed. A job without a seed gets one drawn for this
claim (and recorded), which makes the prediction's input unique to it. A
prediction is adopted only if the echo holds every input we sent with the
same value, it was created after our create call (by the server's clock,
with a margin), it is not followed by another generation of this process,
and it is the only one that fits: two that fit (two jobs with the same
fixed seed and settings) are both left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from imagen_tui.backends.base import Progress, Request, Result, random_seed
from imagen_tui.backends.http import HttpClient, HttpError, MaybeStarted, excerpt
from imagen_tui.backends.imageinfo import output_image_info
from imagen_tui.backends.replicate import models
from imagen_tui.backends.replicate.sizes import closest_aspect_ratio
from imagen_tui.errors import GenerationError
from imagen_tui.limits import MAX_BODY_BYTES, MIN_TRANSFER_S

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.replicate.com/v1"
POLL_INTERVAL_S = 0.5
MAX_SYNC_WAIT_S = 60  # Prefer: wait=N accepts 1..60
MIN_CANCEL_AFTER_S = 5  # Cancel-After's minimum
CLOCK_SKEW_S = 300.0  # a looked-up prediction created this long before our create call is not ours
CLEANUP_TIMEOUT_S = 5.0  # a cancel sent on the way out waits no longer than this
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
# Inputs only ImaGen sets (a request's options never carry them: they decide what
# is billed, recorded and shown): see JOB_OPTIONS in __init__.py for what a job may set.
_OWN_INPUTS = (
    "prompt", "negative_prompt", "aspect_ratio", "width", "height", "num_inference_steps",
    "seed", "num_outputs", "output_format", "disable_safety_checker",
)  # fmt: skip
_PERCENT_RE = re.compile(r"(\d{1,3})%\|")

Sleep = Callable[[float], Awaitable[None]]
# A host name -> the IP addresses it resolves to (the event loop's getaddrinfo).
Resolve = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# Predictions followed by a generation of this process: never another's to adopt.
_FOLLOWED: set[str] = set()


def _timestamp(value: object) -> float | None:
    """An ISO-8601 time (Replicate's `created_at`) as epoch seconds; None if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _same_origin(url: httpx.URL, base: httpx.URL) -> bool:
    return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _progress_from_logs(logs: object) -> float | None:
    """The last `NN%|` of a progress bar in the prediction's logs, as a fraction."""
    if not isinstance(logs, str):
        return None
    found = _PERCENT_RE.findall(logs[-2000:])
    return min(int(found[-1]), 100) / 100 if found else None


class ReplicateBackend:
    """A configured Replicate model (see the module doc)."""

    type_name = "replicate"

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        resolve: Resolve = resolve_host,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._resolve = resolve
        self._wall = wall
        self.ref = models.parse_ref(str(options["model"]), f"backends.{name}.model")
        self.model = str(self.ref)
        self.output_format: str = options.get("output_format") or "png"
        self.size_input: str = options.get("size_input") or "aspect_ratio"
        self.timeout_s = models.timeout_s(self.ref, options.get("timeout_s"))
        self.poll_interval_s = POLL_INTERVAL_S
        self._sleep = sleep
        self._clock = clock
        self.http = HttpClient(
            name=name,
            base_url=options.get("base_url") or DEFAULT_BASE_URL,
            token_env=options.get("api_token_env")
            or options.get("token_env")
            or "REPLICATE_API_TOKEN",
            timeout=httpx.Timeout(30.0, connect=5.0),
            max_bytes=int(options.get("max_download_mb") or MAX_BODY_BYTES // 2**20) * 2**20,
            sleep=sleep,
            transport=transport,
        )

    # ----------------------------------------------------------- the request

    @property
    def sync_wait_s(self) -> int:
        return max(1, min(MAX_SYNC_WAIT_S, math.floor(self.timeout_s)))

    def build_input(self, request: Request) -> tuple[dict[str, Any], str | None, int | None]:
        """The prediction's input, the aspect ratio asked for, and the steps sent.

        A known (FLUX) model gets its full input. A model the table does not
        know gets only what nearly every image model takes: the prompt, the
        size (as `aspect_ratio`, or `width`/`height` with size_input:
        width_height), steps, seed and negative prompt; anything else comes
        from the request's options.
        """
        known = models.info(self.ref)
        # The request's own options (go_fast, guidance, ...: the allowlist in
        # __init__.py, checked when planned) come first, so every input set below
        # is ImaGen's whatever they hold.
        inputs: dict[str, Any] = dict(request.options)
        for own in _OWN_INPUTS:
            inputs.pop(own, None)
        inputs["prompt"] = request.prompt
        aspect_ratio = None
        if known is None and self.size_input == "width_height":
            inputs["width"], inputs["height"] = request.width, request.height
        else:
            aspect_ratio = closest_aspect_ratio(request.width, request.height)
            inputs["aspect_ratio"] = aspect_ratio
        if known is None and request.negative_prompt:  # FLUX has no negative prompt
            inputs["negative_prompt"] = request.negative_prompt
        steps = models.clamp_steps(self.ref, request.steps)
        if steps is not None:
            inputs["num_inference_steps"] = steps
        seed = request.seed
        if seed is None and known is not None:
            seed = random_seed()  # the claim's own: it tags the prediction (see the module doc)
        if seed is not None:
            inputs["seed"] = seed
        if known is not None:
            inputs["output_format"] = self.output_format
            inputs["num_outputs"] = 1
        if steps is None and known is not None:
            steps = known.default_steps
        return inputs, aspect_ratio, steps

    # ----------------------------------------------------------- generate

    async def generate(self, request: Request, progress: Progress | None = None) -> Result:
        inputs, aspect_ratio, steps = self.build_input(request)
        deadline = self._clock() + self.timeout_s
        prediction = await self._create(inputs)
        prediction_id = str(prediction.get("id") or "")
        if not prediction_id:
            raise GenerationError(f"{self.name}: the server returned no prediction id")
        _FOLLOWED.add(prediction_id)
        seed = inputs.get("seed", request.seed)
        try:
            return await self._finish(prediction, deadline, progress, aspect_ratio, steps, seed)
        finally:
            _FOLLOWED.discard(prediction_id)

    async def _finish(
        self,
        prediction: dict[str, Any],
        deadline: float,
        progress: Progress | None,
        aspect_ratio: str | None,
        steps: int | None,
        seed: int | None,
    ) -> Result:
        prediction_id = str(prediction["id"])
        try:
            prediction = await self._until_done(prediction, deadline, progress)
        except asyncio.CancelledError:
            await self._cancel_quietly(prediction_id, "the generation was canceled")
            raise
        except HttpError:
            # We lost sight of it: stop it, or the job's retry would pay for a second one.
            await self._cancel_quietly(prediction_id, "polling it failed")
            raise
        # The download is part of the run: it gets what is left of timeout_s (a
        # server dripping its bytes cannot hold the job for ever), at least MIN_TRANSFER_S.
        image = await self._output(prediction, max(deadline - self._clock(), MIN_TRANSFER_S))
        mime, width, height = output_image_info(self.name, image)
        metrics = prediction.get("metrics")
        extra: dict[str, Any] = {
            "prediction_id": prediction_id,
            "prices_taken": models.PRICES_TAKEN,
        }
        if aspect_ratio is not None:
            extra["aspect_ratio"] = aspect_ratio
        if isinstance(metrics, Mapping) and isinstance(metrics.get("predict_time"), int | float):
            extra["predict_time_s"] = metrics["predict_time"]
        if progress is not None:
            progress(1.0)
        return Result(
            image=image,
            mime_type=mime,
            model=self.model,
            seed=seed,
            steps=steps,
            cost_usd=models.price(self.ref),
            extra=extra,
            width=width,
            height=height,
        )

    async def _create(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"input": dict(inputs)}
        if self.ref.version is not None:
            body["version"] = self.ref.version
        wait = self.sync_wait_s
        headers = {
            "Prefer": f"wait={wait}",
            "Cancel-After": f"{max(MIN_CANCEL_AFTER_S, math.ceil(self.timeout_s))}s",
        }
        since = self._wall()
        creating = asyncio.ensure_future(
            self.http.request(
                "POST",
                self.ref.create_path,
                billable=True,
                json=body,
                headers=headers,
                timeout=httpx.Timeout(wait + 5.0, connect=5.0),
            )
        )
        try:
            response = await creating
        except MaybeStarted:
            found = await self._find(inputs, since)
            if found is None:
                raise
            log.warning(
                "%s: the create call failed after reaching the server; following "
                "prediction %s it started",
                self.name,
                excerpt(str(found.get("id"))),
            )
            return found
        except asyncio.CancelledError:
            # The server may hold a prediction we never heard of: find it and cancel it.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLEANUP_TIMEOUT_S):
                    found = await asyncio.shield(self._find(inputs, since))
                    if found is not None and found.get("id"):
                        await asyncio.shield(self._cancel(str(found["id"])))
            raise
        return self._prediction(response)

    def _prediction(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise GenerationError(f"{self.name}: the server's answer is not a prediction")
        return body

    async def _find(self, inputs: Mapping[str, Any], since: float) -> dict[str, Any] | None:
        """The one prediction among the account's latest that is ours (see the
        module doc): this model, every input we sent echoed with the same value,
        created after `since` (wall clock, less CLOCK_SKEW_S), not followed by
        another generation here. None if there is none, or more than one."""
        try:
            response = await self.http.request("GET", "predictions", billable=False)
            listing = response.json()
        except (HttpError, ValueError):
            return None
        results = listing.get("results") if isinstance(listing, Mapping) else None
        found: list[dict[str, Any]] = []
        for item in results if isinstance(results, list) else []:
            if not isinstance(item, dict) or item.get("model") not in (None, self.ref.model):
                continue
            if str(item.get("id")) in _FOLLOWED:
                continue  # another job's, in this very process
            echoed = item.get("input")
            if not isinstance(echoed, Mapping):
                continue
            if any(key not in echoed or echoed[key] != value for key, value in inputs.items()):
                continue
            created = _timestamp(item.get("created_at"))
            if created is not None and created < since - CLOCK_SKEW_S:
                continue  # older than our call: an earlier job's
            found.append(item)
        if len(found) > 1:
            log.warning(
                "%s: %d predictions fit the lost create call (the same inputs and seed); "
                "adopting none of them",
                self.name,
                len(found),
            )
            return None
        return found[0] if found else None

    async def _until_done(
        self, prediction: dict[str, Any], deadline: float, progress: Progress | None
    ) -> dict[str, Any]:
        prediction_id = str(prediction["id"])
        while prediction.get("status") not in TERMINAL:
            left = deadline - self._clock()
            if left <= 0:
                await self._cancel_quietly(prediction_id, "it timed out")
                raise GenerationError(
                    f"{self.name}: prediction {excerpt(prediction_id)} did not finish within "
                    f"{self.timeout_s:g} s; canceled on the server",
                    transient=True,
                )
            await self._sleep(min(self.poll_interval_s, left))
            response = await self.http.request(
                "GET", f"predictions/{prediction_id}", billable=False
            )
            prediction = self._prediction(response)
            fraction = _progress_from_logs(prediction.get("logs"))
            if progress is not None and fraction is not None:
                progress(min(fraction, 0.99))
        status = prediction["status"]
        if status == "succeeded":
            return prediction
        said = excerpt(str(prediction.get("error") or ""), self.http.secret())
        if status == "failed":
            if "nsfw" in said.lower():
                raise GenerationError(
                    f"{self.name}: content policy: the model's safety checker flagged the "
                    f"image (NSFW) and returned none: {said}"
                )
            raise GenerationError(
                f"{self.name}: the prediction failed: {said or 'no reason given'}"
            )
        if status == "aborted":
            raise GenerationError(
                f"{self.name}: the prediction did not start before its deadline (aborted; "
                "not billed)",
                transient=True,
            )
        raise GenerationError(f"{self.name}: the prediction was canceled on the server")

    async def _output(self, prediction: Mapping[str, Any], deadline_s: float) -> bytes:
        output = prediction.get("output")
        urls = [output] if isinstance(output, str) else output if isinstance(output, list) else []
        urls = [url for url in urls if isinstance(url, str) and url]
        if not urls:
            raise GenerationError(
                f"{self.name}: content policy: the safety checker removed the image (NSFW); "
                "the prediction succeeded with no output"
            )
        base = self.http.base_url
        url = base.join(urls[0])
        await self._check_output_url(url)
        response = await self._download(url, deadline_s, authenticate=_same_origin(url, base))
        if response.is_redirect:
            location = response.headers.get("location", "")
            target = url.join(location)
            await self._check_output_url(target, redirected=True)
            # Never with the token, wherever it points (at most this one redirect).
            response = await self._download(target, deadline_s, authenticate=False)
            if response.is_redirect:
                raise GenerationError(
                    f"{self.name}: the output URL redirects more than once; refused"
                )
        if not response.is_success:
            raise GenerationError(
                f"{self.name}: the output download answered {response.status_code} "
                f"{excerpt(response.reason_phrase)}; no image"
            )
        return response.content

    async def _download(
        self, url: httpx.URL, deadline_s: float, *, authenticate: bool
    ) -> httpx.Response:
        return await self.http.request(
            "GET", str(url), billable=False, authenticate=authenticate, deadline_s=deadline_s
        )

    async def _check_output_url(self, url: httpx.URL, *, redirected: bool = False) -> None:
        """Refuse an output URL the operator did not name (see the module doc)."""
        if _same_origin(url, self.http.base_url):
            return
        what = "the output's redirect" if redirected else "the output URL"
        where = f"{url.scheme}://{excerpt(url.host)}"

        def refuse(why: str) -> GenerationError:
            return GenerationError(f"{self.name}: {what} ({where}) {why}; refused")

        if url.scheme != "https":
            raise refuse("is not https")
        if not url.host or _is_ip_literal(url.host):
            raise refuse("is an IP address, not a host name")
        try:
            addresses = await self._resolve(url.host, url.port or 443)
        except OSError as error:
            raise GenerationError(
                f"{self.name}: {what} ({where}): cannot resolve its host ({excerpt(str(error))})",
                transient=True,
            ) from None
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not ip.is_global:
                raise refuse(f"resolves to a non-public address ({ip})")

    async def _cancel(self, prediction_id: str) -> None:
        await self.http.request("POST", f"predictions/{prediction_id}/cancel", billable=False)

    async def _cancel_quietly(self, prediction_id: str, why: str) -> None:
        """Cancel on the server, waiting at most CLEANUP_TIMEOUT_S; log, never raise."""
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT_S):
                await asyncio.shield(self._cancel(prediction_id))
            log.info("%s: canceled prediction %s: %s", self.name, excerpt(prediction_id), why)
        except (HttpError, TimeoutError, asyncio.CancelledError) as error:
            log.warning(
                "%s: could not cancel prediction %s (%s): %s",
                self.name,
                excerpt(prediction_id),
                why,
                error or type(error).__name__,
            )

    # ----------------------------------------------------------- the rest

    async def check(self) -> str:
        """One cheap authenticated call (the account); its owner's name. Raises HttpError."""
        response = await self.http.request("GET", "account", billable=False)
        body = self._prediction(response)
        return excerpt(str(body.get("username") or "?"))

    async def aclose(self) -> None:
        await self.http.aclose()
