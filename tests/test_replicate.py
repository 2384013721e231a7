"""The Replicate adapter against a scripted fake of its HTTP API (no network).

Each test asserts what reached the fake server: how many creates (a paid
prediction is never bought twice), polls, downloads and cancels.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import httpx
import pytest

from imagen_tui.backends import registry
from imagen_tui.backends.base import Request
from imagen_tui.backends.http import HttpError, MaybeStarted
from imagen_tui.backends.replicate import ReplicateBackend
from imagen_tui.backends.replicate.models import PRICES_TAKEN, parse_ref
from imagen_tui.backends.replicate.sizes import closest_aspect_ratio, pixel_size
from imagen_tui.errors import ConfigError, GenerationError, InputError
from tests.cloudfakes import Clock, Server, png, reply
from tests.helpers import fractions_into

TOKEN = "r8_Sup3rS3cretTok3nValue"
TOKEN_ENV = "IMAGEN_TEST_REPLICATE_TOKEN"
BASE = "https://api.replicate.test/v1"
SCHNELL = "black-forest-labs/flux-schnell"
VERSION = "a" * 64
OUT_URL = "https://replicate.delivery/xezq/out-0.png"
CREATE = f"POST /v1/models/{SCHNELL}/predictions"
POLL = "GET /v1/predictions/p1"
CANCEL = "POST /v1/predictions/p1/cancel"
DOWNLOAD = "GET /xezq/out-0.png"
IMAGE = png(1344, 768)


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def prediction(status: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "p1",
        "model": SCHNELL,
        "status": status,
        "urls": {"get": f"{BASE}/predictions/p1", "cancel": f"{BASE}/predictions/p1/cancel"},
    }
    if status == "succeeded":
        body.setdefault("output", [OUT_URL])
        body["metrics"] = {"predict_time": 1.25}
    body.update(fields)
    return body


def backend(server: Server, clock: Clock | None = None, **options: Any) -> ReplicateBackend:
    block = registry.validate_block(
        "flux", {"type": "replicate", "token_env": TOKEN_ENV, "base_url": BASE, **options}
    )
    clock = clock or Clock()
    return ReplicateBackend(
        "flux",
        block,
        transport=server.transport,
        sleep=clock.sleep,
        clock=clock,
        resolve=public_dns,
    )


async def public_dns(host: str, _port: int) -> list[str]:
    """Every test host resolves to a public address, except *.internal.test."""
    return ["10.0.0.7"] if host.endswith("internal.test") else ["93.184.215.14"]


def generate(b: ReplicateBackend, request: Request | None = None, **kwargs: Any) -> Any:
    async def go() -> Any:
        try:
            return await b.generate(
                request or Request("a red fox", width=1920, height=1080, seed=7)
            )
        finally:
            await b.aclose()

    return asyncio.run(go())


def happy(server: Server) -> Server:
    return server.on(DOWNLOAD, reply(200, IMAGE))


# --------------------------------------------------------------------------- happy paths


def test_official_model_sync_wait_completed():
    server = happy(Server().on(CREATE, reply(201, prediction("succeeded"))))
    result = generate(
        backend(server), Request("a red fox", width=1920, height=1080, seed=7, steps=20)
    )
    [create] = server.calls(CREATE)
    assert create.headers["prefer"] == "wait=60"
    assert create.headers["cancel-after"] == "60s"
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert create.json == {
        "input": {
            "prompt": "a red fox",
            "aspect_ratio": "16:9",
            "num_inference_steps": 4,  # schnell takes 1..4 steps
            "seed": 7,
            "output_format": "png",
            "num_outputs": 1,
        }
    }
    assert server.calls(POLL) == []  # the sync wait finished it
    [download] = server.calls(DOWNLOAD)
    assert "authorization" not in download.headers  # the token goes to the API host only
    assert result.image == IMAGE
    assert (result.mime_type, result.model, result.seed, result.steps) == (
        "image/png",
        SCHNELL,
        7,
        4,
    )
    assert (result.width, result.height) == (1344, 768)  # the real size, not 1920x1080
    assert result.cost_usd == Decimal("0.003")
    assert result.extra["prices_taken"] == PRICES_TAKEN
    assert result.extra["aspect_ratio"] == "16:9"
    assert TOKEN not in repr(result.extra)  # never in metadata


def test_pinned_version_uses_the_generic_endpoint():
    server = happy(Server().on("POST /v1/predictions", reply(201, prediction("succeeded"))))
    b = backend(server, model=f"someone/sdxl-ish:{VERSION}", timeout_s=90)
    result = generate(b, Request("a boat", "rough sea", width=1024, height=1024, seed=3, steps=30))
    [create] = server.calls("POST /v1/predictions")
    assert create.json["version"] == VERSION
    # An unknown model gets only what nearly every image model takes.
    assert create.json["input"] == {
        "prompt": "a boat",
        "aspect_ratio": "1:1",
        "negative_prompt": "rough sea",
        "num_inference_steps": 30,  # passed as asked
        "seed": 3,
    }
    assert create.headers["prefer"] == "wait=60"
    assert create.headers["cancel-after"] == "90s"
    assert result.model == f"someone/sdxl-ish:{VERSION}"
    assert result.cost_usd is None  # not in the price table


def test_a_pinned_version_of_a_known_model_keeps_its_price_steps_and_timeout():
    """`owner/name:version` of a model in the table is still that model: only the
    endpoint changes, never the step limits, the timeout or the price."""
    server = happy(Server().on("POST /v1/predictions", reply(201, prediction("succeeded"))))
    b = backend(server, model=f"{SCHNELL}:{VERSION}")
    assert b.timeout_s == 60.0  # schnell's, not the unknown model's 120
    result = generate(b, Request("a red fox", width=1920, height=1080, seed=7, steps=20))
    [create] = server.calls("POST /v1/predictions")
    assert create.json["version"] == VERSION
    assert create.json["input"] == {  # a known model's full input
        "prompt": "a red fox",
        "aspect_ratio": "16:9",
        "num_inference_steps": 4,  # schnell takes 1..4 steps
        "seed": 7,
        "output_format": "png",
        "num_outputs": 1,
    }
    assert create.headers["cancel-after"] == "60s"
    assert result.steps == 4
    assert result.cost_usd == Decimal("0.003")  # schnell's price


def test_unknown_model_may_take_width_and_height():
    server = happy(Server().on("POST /v1/predictions", reply(201, prediction("succeeded"))))
    b = backend(server, model=f"someone/sdxl-ish:{VERSION}", size_input="width_height")
    generate(b, Request("a boat", width=1152, height=896, seed=3, options={"guidance": 7}))
    [create] = server.calls("POST /v1/predictions")
    assert create.json["input"] == {
        "prompt": "a boat",
        "width": 1152,
        "height": 896,
        "seed": 3,
        "guidance": 7,  # the request's options go through
    }


def test_incomplete_sync_wait_is_polled_every_half_second_with_progress():
    clock = Clock()
    server = happy(
        Server()
        .on(CREATE.replace("schnell", "dev"), reply(201, prediction("starting")))
        .on(
            POLL,
            reply(200, prediction("processing", logs="  25%|##  | 1/4")),
            reply(200, prediction("processing", logs="  50%|##  | 2/4\n  75%|###  | 3/4")),
            reply(200, prediction("succeeded")),
        )
    )
    seen: list[float] = []
    b = backend(server, clock, model="black-forest-labs/flux-dev")
    result = asyncio.run(_generate_with_progress(b, seen))
    assert len(server.calls(CREATE.replace("schnell", "dev"))) == 1
    assert len(server.calls(POLL)) == 3
    assert clock.waits == [0.5, 0.5, 0.5]
    assert seen == [0.25, 0.75, 1.0]
    assert result.steps == 28  # flux-dev's default, recorded
    assert result.cost_usd == Decimal("0.025")


async def _generate_with_progress(b: ReplicateBackend, seen: list[float]) -> Any:
    try:
        return await b.generate(
            Request("a fox", width=1024, height=1024, seed=1), fractions_into(seen)
        )
    finally:
        await b.aclose()


def test_single_uri_output_is_downloaded():
    server = happy(Server().on(CREATE, reply(201, prediction("succeeded", output=OUT_URL))))
    assert generate(backend(server)).image == IMAGE


def test_output_on_another_host_gets_no_token():
    other = "https://cdn.example.test/o.png"
    server = (
        Server()
        .on(CREATE, reply(201, prediction("succeeded", output=[other])))
        .on("GET /o.png", reply(200, IMAGE))
    )
    generate(backend(server))
    [download] = server.calls("GET /o.png")
    assert "authorization" not in download.headers


# --------------------------------------------------------------------------- output URL policy


def output_at(server: Server, url: str) -> Server:
    return server.on(CREATE, reply(201, prediction("succeeded", output=[url])))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://replicate.delivery/xezq/out-0.png", "is not https"),
        ("https://169.254.169.254/latest/meta-data", "is an IP address"),
        ("https://[::1]/o.png", "is an IP address"),
        ("https://10.0.0.1/o.png", "is an IP address"),
        ("https://files.internal.test/o.png", r"resolves to a non-public address \(10\.0\.0\.7\)"),
    ],
)
def test_an_output_url_the_operator_did_not_name_must_be_public_https(url: str, why: str):
    server = output_at(Server(), url)
    with pytest.raises(GenerationError, match=f"the output URL .*{why}.*; refused") as caught:
        generate(backend(server))
    assert caught.value.transient is False
    assert [s.method for s in server.seen] == ["POST"]  # nothing was fetched
    assert TOKEN not in str(caught.value)


def test_an_output_on_the_api_origin_is_fetched_with_the_token():
    url = f"{BASE}/files/abc/download"
    server = output_at(Server(), url).on("GET /v1/files/abc/download", reply(200, IMAGE))
    generate(backend(server))
    [download] = server.calls("GET /v1/files/abc/download")
    assert download.headers["authorization"] == f"Bearer {TOKEN}"


def test_a_loopback_base_url_may_serve_its_own_outputs():
    server = output_at(Server(), "http://127.0.0.1:8765/files/o.png").on(
        "GET /files/o.png", reply(200, IMAGE)
    )
    server.on(
        "POST /v1/models/black-forest-labs/flux-schnell/predictions", server.routes[CREATE][0]
    )
    b = backend(server, base_url="http://127.0.0.1:8765/v1")
    assert generate(b).image == IMAGE
    [download] = server.calls("GET /files/o.png")
    assert download.headers["authorization"] == f"Bearer {TOKEN}"  # the operator's own origin


def test_one_redirect_to_public_https_is_followed_without_the_token():
    moved = reply(302, b"", location="https://cdn.example.test/real.png")
    server = output_at(Server(), OUT_URL).on(DOWNLOAD, moved).on("GET /real.png", reply(200, IMAGE))
    assert generate(backend(server)).image == IMAGE
    [final] = server.calls("GET /real.png")
    assert "authorization" not in final.headers


def test_a_redirect_from_the_api_origin_drops_the_token():
    url = f"{BASE}/files/abc/download"
    moved = reply(307, b"", location="https://cdn.example.test/real.png")
    server = (
        output_at(Server(), url)
        .on("GET /v1/files/abc/download", moved)
        .on("GET /real.png", reply(200, IMAGE))
    )
    generate(backend(server))
    [final] = server.calls("GET /real.png")
    assert "authorization" not in final.headers


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("http://cdn.example.test/real.png", "is not https"),
        ("https://169.254.169.254/x", "is an IP address"),
        ("https://files.internal.test/x", "non-public address"),
    ],
)
def test_a_redirect_must_pass_the_same_policy(location: str, why: str):
    server = output_at(Server(), OUT_URL).on(DOWNLOAD, reply(302, b"", location=location))
    with pytest.raises(GenerationError, match=f"the output's redirect .*{why}"):
        generate(backend(server))
    assert len(server.seen) == 2  # the create and the first download only


def test_a_second_redirect_is_refused():
    server = (
        output_at(Server(), OUT_URL)
        .on(DOWNLOAD, reply(302, b"", location="https://cdn.example.test/a.png"))
        .on("GET /a.png", reply(302, b"", location="https://cdn.example.test/b.png"))
    )
    with pytest.raises(GenerationError, match="redirects more than once"):
        generate(backend(server))
    assert server.calls("GET /b.png") == []


# --------------------------------------------------------------------------- the HTTP policy


def test_401_names_the_variable_and_never_the_token(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    server = Server().on(CREATE, reply(401, {"detail": f"Invalid token {TOKEN}"}))
    with pytest.raises(HttpError) as caught:
        generate(backend(server))
    assert f"${TOKEN_ENV}" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in caplog.text
    assert caught.value.transient is False
    assert len(server.calls(CREATE)) == 1


def test_429_with_retry_after_is_waited_out_and_the_create_resent():
    clock = Clock()
    throttled = reply(429, {"detail": "Request was throttled."}, Retry_After="7")
    server = happy(Server().on(CREATE, throttled, reply(201, prediction("succeeded"))))
    generate(backend(server, clock))
    assert clock.waits == [7.0]
    assert len(server.calls(CREATE)) == 2  # refused, so nothing was bought


def test_429_without_retry_after_backs_off_then_gives_up():
    clock = Clock()
    server = Server().on(CREATE, reply(429, {"detail": "Request was throttled."}))
    with pytest.raises(HttpError) as caught:
        generate(backend(server, clock))
    assert len(server.calls(CREATE)) == 4  # 1 + 3 retries
    assert len(clock.waits) == 3
    assert clock.waits[0] < clock.waits[1] < clock.waits[2]  # exponential
    assert caught.value.transient is True


def test_5xx_on_a_poll_is_retried_once():
    clock = Clock()
    server = happy(
        Server()
        .on(CREATE, reply(201, prediction("starting")))
        .on(POLL, reply(502, {"detail": "bad gateway"}), reply(200, prediction("succeeded")))
    )
    generate(backend(server, clock))
    assert len(server.calls(POLL)) == 2


def test_5xx_on_a_poll_twice_gives_up_transient_and_cancels():
    server = (
        Server()
        .on(CREATE, reply(201, prediction("starting")))
        .on(POLL, reply(503))
        .on(CANCEL, reply(200, prediction("canceled")))
    )
    with pytest.raises(HttpError) as caught:
        generate(backend(server))
    assert len(server.calls(POLL)) == 2
    assert caught.value.transient is True
    assert len(server.calls(CANCEL)) == 1  # the job's retry must not pay for two


def echo_of_the_create(server: Server, status: str, **fields: Any) -> Any:
    """The account's listing: the prediction our create started, its input echoed."""

    def listing(_request: httpx.Request) -> httpx.Response:
        sent = server.calls(CREATE)[0].json["input"]
        return reply(200, {"results": [{**prediction(status, **fields), "input": sent}]})

    return listing


def test_5xx_on_create_is_looked_up_never_resent():
    server = Server()
    server = happy(
        server.on(CREATE, reply(500, {"detail": "internal"}))
        .on("GET /v1/predictions", echo_of_the_create(server, "processing"))
        .on(POLL, reply(200, prediction("succeeded")))
    )
    result = generate(backend(server))
    assert len(server.calls(CREATE)) == 1
    assert len(server.calls("GET /v1/predictions")) == 1
    assert result.image == IMAGE


def test_5xx_on_create_not_found_is_reported_not_resent():
    other = {"results": [{**prediction("processing"), "input": {"prompt": "a cat", "seed": 7}}]}
    server = (
        Server()
        .on(CREATE, reply(500, {"detail": "internal"}))
        .on("GET /v1/predictions", reply(200, other))
    )
    with pytest.raises(MaybeStarted):
        generate(backend(server))
    assert len(server.calls(CREATE)) == 1


def test_read_timeout_on_create_is_looked_up_never_resent():
    server = Server()
    server = happy(
        server.on(CREATE, httpx.ReadTimeout("timed out")).on(
            "GET /v1/predictions", echo_of_the_create(server, "succeeded")
        )
    )
    assert generate(backend(server)).image == IMAGE
    assert len(server.calls(CREATE)) == 1


def lost_create(server: Server, listing: Any) -> Server:
    return server.on(CREATE, reply(500, {"detail": "internal"})).on("GET /v1/predictions", listing)


def test_the_lookup_never_adopts_a_prediction_with_other_inputs():
    server = Server()

    def listing(_request: httpx.Request) -> httpx.Response:
        sent = server.calls(CREATE)[0].json["input"]
        # Another job's: the same prompt and seed, another size and count.
        other = {**sent, "aspect_ratio": "1:1", "num_outputs": 4}
        return reply(200, {"results": [{**prediction("processing"), "input": other}]})

    with pytest.raises(MaybeStarted):
        generate(backend(lost_create(server, listing)))
    assert server.calls(POLL) == [] and server.calls(CANCEL) == []


def test_an_unseeded_job_tags_its_prediction_with_a_seed_of_its_own():
    server = Server()

    def listing(_request: httpx.Request) -> httpx.Response:
        sent = server.calls(CREATE)[0].json["input"]
        # Another unseeded job with the same prompt drew another seed.
        other = {**sent, "seed": sent["seed"] + 1}
        return reply(200, {"results": [{**prediction("processing"), "input": other}]})

    with pytest.raises(MaybeStarted):
        generate(backend(lost_create(server, listing)), Request("a red fox", seed=None))
    assert isinstance(server.calls(CREATE)[0].json["input"]["seed"], int)
    assert server.calls(POLL) == []


def test_an_unseeded_job_records_the_seed_it_sent():
    server = happy(Server().on(CREATE, reply(201, prediction("succeeded"))))
    result = generate(backend(server), Request("a red fox", seed=None))
    assert result.seed == server.calls(CREATE)[0].json["input"]["seed"]


def test_two_predictions_that_fit_are_both_left_alone():
    server = Server()

    def listing(_request: httpx.Request) -> httpx.Response:
        sent = server.calls(CREATE)[0].json["input"]
        twins = [
            {**prediction("processing", id=f"p{n}"), "input": sent} for n in (1, 2)
        ]  # two jobs with the same fixed seed and settings
        return reply(200, {"results": twins})

    with pytest.raises(MaybeStarted):
        generate(backend(lost_create(server, listing)))
    assert server.calls(POLL) == [] and server.calls("POST /v1/predictions/*") == []


def test_a_prediction_created_before_our_call_is_not_ours():
    server = Server()

    def listing(_request: httpx.Request) -> httpx.Response:
        sent = server.calls(CREATE)[0].json["input"]
        old = {**prediction("succeeded"), "input": sent, "created_at": "2020-01-01T00:00:00Z"}
        return reply(200, {"results": [old]})

    with pytest.raises(MaybeStarted):
        generate(backend(lost_create(server, listing)))


def test_a_prediction_followed_by_another_job_here_is_not_adopted():
    from imagen_tui.backends.replicate import adapter

    server = Server()
    server = lost_create(server, echo_of_the_create(server, "processing"))
    adapter._FOLLOWED.add("p1")
    try:
        with pytest.raises(MaybeStarted):
            generate(backend(server))
    finally:
        adapter._FOLLOWED.discard("p1")
    assert server.calls(POLL) == []


# --------------------------------------------------------------------------- terminal statuses


def test_failed_prediction_is_permanent_with_the_reason():
    server = Server().on(CREATE, reply(201, prediction("failed", error="CUDA out of memory")))
    with pytest.raises(GenerationError) as caught:
        generate(backend(server))
    assert "the prediction failed: CUDA out of memory" in str(caught.value)
    assert caught.value.transient is False


def test_all_nsfw_failure_is_reported_as_content_policy():
    error = (
        "All generated images contained NSFW content. Try running it again with a different prompt."
    )
    server = Server().on(CREATE, reply(201, prediction("failed", error=error)))
    with pytest.raises(GenerationError) as caught:
        generate(backend(server))
    assert "content policy" in str(caught.value)
    assert "NSFW" in str(caught.value)
    assert caught.value.transient is False


def test_succeeded_without_output_is_reported_as_filtered():
    server = Server().on(CREATE, reply(201, prediction("succeeded", output=[])))
    with pytest.raises(GenerationError, match="safety checker removed the image"):
        generate(backend(server))


def test_aborted_is_transient_and_not_billed():
    server = (
        Server()
        .on(CREATE, reply(201, prediction("starting")))
        .on(POLL, reply(200, prediction("aborted")))
    )
    with pytest.raises(GenerationError) as caught:
        generate(backend(server))
    assert "aborted" in str(caught.value)
    assert caught.value.transient is True
    assert server.calls(CANCEL) == []


def test_canceled_on_the_server_is_reported():
    server = Server().on(CREATE, reply(201, prediction("canceled")))
    with pytest.raises(GenerationError, match="canceled on the server"):
        generate(backend(server))


# --------------------------------------------------------------------------- timeouts and cancels


def test_poll_timeout_cancels_on_the_server():
    clock = Clock()
    server = (
        Server()
        .on(CREATE, reply(201, prediction("starting")))
        .on(POLL, reply(200, prediction("processing")))
        .on(CANCEL, reply(200, prediction("canceled")))
    )
    with pytest.raises(GenerationError) as caught:
        generate(backend(server, clock))  # schnell: 60 s
    assert "did not finish within 60 s; canceled on the server" in str(caught.value)
    assert caught.value.transient is True
    assert len(server.calls(CANCEL)) == 1
    assert sum(clock.waits) == pytest.approx(60.0)
    assert len(server.calls(POLL)) == 120  # every 0.5 s until the deadline


def test_model_aware_timeouts():
    server = Server()
    assert backend(server).timeout_s == 60.0
    assert backend(server, model="black-forest-labs/flux-dev").timeout_s == 120.0
    assert backend(server, model=f"a/b:{VERSION}").timeout_s == 120.0
    assert backend(server, timeout_s=30).timeout_s == 30.0
    assert backend(server, timeout_s=30).sync_wait_s == 30


def test_caller_cancel_cancels_the_prediction_on_the_server():
    polled = asyncio.Event()

    async def hang(_request: httpx.Request) -> httpx.Response:
        polled.set()
        await asyncio.Event().wait()  # the poll never answers
        raise AssertionError

    server = (
        Server()
        .on(CREATE, reply(201, prediction("starting")))
        .on(POLL, hang)
        .on(CANCEL, reply(200, prediction("canceled")))
    )

    async def go() -> None:
        b = backend(server)
        task = asyncio.create_task(b.generate(Request("a fox", seed=1)))
        await polled.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await b.aclose()

    asyncio.run(go())
    assert len(server.calls(CANCEL)) == 1


def test_caller_cancel_during_the_create_finds_and_cancels_the_prediction():
    creating = asyncio.Event()

    async def hang(_request: httpx.Request) -> httpx.Response:
        creating.set()
        await asyncio.Event().wait()
        raise AssertionError

    server = Server()
    server = (
        server.on(CREATE, hang)
        .on("GET /v1/predictions", echo_of_the_create(server, "processing"))
        .on(CANCEL, reply(200, prediction("canceled")))
    )

    async def go() -> None:
        b = backend(server)
        task = asyncio.create_task(b.generate(Request("a fox", seed=1)))
        await creating.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await b.aclose()

    asyncio.run(go())
    assert len(server.calls(CREATE)) == 1
    assert len(server.calls(CANCEL)) == 1


# --------------------------------------------------------------------------- download


def test_download_is_retried_once():
    server = (
        Server()
        .on(CREATE, reply(201, prediction("succeeded")))
        .on(DOWNLOAD, reply(503), reply(200, IMAGE))
    )
    assert generate(backend(server)).image == IMAGE
    assert len(server.calls(DOWNLOAD)) == 2


def test_download_failing_twice_is_transient():
    server = Server().on(CREATE, reply(201, prediction("succeeded"))).on(DOWNLOAD, reply(503))
    with pytest.raises(HttpError) as caught:
        generate(backend(server))
    assert len(server.calls(DOWNLOAD)) == 2
    assert caught.value.transient is True


def test_output_that_is_not_an_image_is_refused():
    server = (
        Server()
        .on(CREATE, reply(201, prediction("succeeded")))
        .on(DOWNLOAD, reply(200, b"<html>gone</html>"))
    )
    with pytest.raises(GenerationError, match="not a usable image"):
        generate(backend(server))


# --------------------------------------------------------------------------- sizes, refs


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ((1024, 1024), "1:1"),
        ((512, 512), "1:1"),
        ((1920, 1080), "16:9"),
        ((1080, 1920), "9:16"),
        ((1024, 768), "4:3"),
        ((768, 1024), "3:4"),
        ((1200, 800), "3:2"),
        ((2048, 800), "21:9"),
        ((640, 1536), "9:21"),
        ((1000, 800), "5:4"),
    ],
)
def test_closest_aspect_ratio(size: tuple[int, int], ratio: str):
    assert closest_aspect_ratio(*size) == ratio


def test_pixel_sizes_of_ratios():
    assert pixel_size("16:9") == (1344, 768)
    assert pixel_size("1:1") == (1024, 1024)


def test_model_refs():
    assert parse_ref(SCHNELL).create_path == f"models/{SCHNELL}/predictions"
    pinned = parse_ref(f"owner/name:{VERSION}")
    assert (pinned.model, pinned.version, pinned.create_path) == (
        "owner/name",
        VERSION,
        "predictions",
    )
    for bad in ("flux", "a/b:notahash", "a/b/c", ""):
        with pytest.raises(ConfigError):
            parse_ref(bad)


def test_bad_model_ref_is_an_input_error_at_plan_time():
    block = registry.validate_block("flux", {"type": "replicate", "model": "flux-schnell"})
    with pytest.raises(InputError) as caught:
        registry.check_request(block, Request("x"))
    assert caught.value.field == "backend"


def test_output_format_must_be_known():
    with pytest.raises(ConfigError, match="not one of png, jpg, webp"):
        registry.validate_block("flux", {"type": "replicate", "output_format": "gif"})


# --------------------------------------------------------------------------- --check


def test_check_reports_a_working_token():
    server = Server().on("GET /v1/account", reply(200, {"type": "user", "username": "ada"}))
    b = backend(server)
    assert asyncio.run(b.check()) == "ada"
    assert server.calls("GET /v1/account")[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_status_without_the_token(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(TOKEN_ENV)
    block = registry.validate_block("flux", {"type": "replicate", "token_env": TOKEN_ENV})
    assert registry.status(block) == f"not configured (set {TOKEN_ENV})"
    check = asyncio.run(registry.check("flux", block))
    assert check is not None
    assert (check.ok, check.summary) == (False, f"not configured (set {TOKEN_ENV})")
