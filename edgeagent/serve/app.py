"""The FastAPI app: `/health`, `/v1/models`, `/v1/chat/completions`.

Auth: with an API key set, every `/v1` route wants `Authorization: Bearer KEY`
(401 otherwise; a dependency, not an HTTP middleware, which would hide client
disconnects from the routes); `/health` stays open. CORS: localhost origins only unless
origins were given (the server runs code). Errors leave in the OpenAI shape,
HTTP errors of the framework (unknown route, wrong method) included.

A chat request is parsed (400), its model resolved (404) and a queue place
reserved (503) before any response starts. Streamed: SSE `data:` chunks — a
role chunk, `reasoning_content` pieces, `content`, a final chunk with
`finish_reason` and the trajectory under `edgeagent`, the usage chunk when
asked, `[DONE]`; a failure after that point is one `data: {"error": …}` event.
Non-streamed: one body with the answer, the joined reasoning and the
trajectory. A client that goes away cancels its run either way.
Not covered: the CLI (`edgeagent.cli.serve`), the engines (`hosts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgeagent.serve import shapes
from edgeagent.serve.admission import Ticket
from edgeagent.serve.errors import APIError
from edgeagent.serve.jobs import Job, Outcome
from edgeagent.serve.request import ChatRequest, parse_chat_request
from edgeagent.serve.service import Service

LOCAL_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="edgeagent", docs_url=None, redoc_url=None, openapi_url=None)
    origins = service.settings.cors_origins
    app.add_middleware(
        CORSMiddleware, allow_origins=origins, allow_origin_regex=None if origins else
        LOCAL_ORIGINS, allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"],
    )

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = APIError(exc.status_code, str(exc.detail))
        return JSONResponse(err.body(), status_code=exc.status_code)

    def check_key(request: Request) -> None:
        key = service.settings.api_key
        if not key:
            return
        given = request.headers.get("authorization", "")
        token = given[7:].strip() if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), key.encode()):
            raise APIError(401, "invalid or missing API key (Authorization: Bearer KEY)",
                           code="invalid_api_key")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return service.health()

    @v1.get("/models")
    async def models() -> dict[str, Any]:
        return shapes.model_list(service.model_names(), service.created)

    @v1.get("/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        service.resolve(model_id)
        entry: dict[str, Any] = shapes.model_list([model_id], service.created)["data"][0]
        return entry

    @v1.post("/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise APIError(400, "the request body is not valid JSON") from None
        req = parse_chat_request(body, max_votes=service.settings.max_votes)
        job = await run_in_threadpool(service.job, req)
        ticket = service.admission.reserve()
        if req.stream:
            return EventSourceResponse(_stream(service, job, ticket, req), sep="\n", ping=15)
        return await _complete(service, job, ticket, req, request)

    app.include_router(v1)
    return app


async def _admit(job: Job, ticket: Ticket) -> None:
    """Wait for a slot, then start the job; the job frees the slot when its thread ends."""
    await ticket.acquire()
    job.on_finish = ticket.release
    job.start(asyncio.get_running_loop())


async def _stream(service: Service, job: Job, ticket: Ticket,
                  req: ChatRequest) -> AsyncIterator[dict[str, str]]:
    cid, created, field = shapes.completion_id(), int(time.time()), \
        service.settings.reasoning_field
    started = False
    try:
        await _admit(job, ticket)
        started = True
        yield _data(shapes.chunk(cid, created, req.model, {"role": "assistant", "content": ""}))
        while True:
            kind, value = await job.queue.get()
            if kind == "reasoning":
                yield _data(shapes.chunk(cid, created, req.model, {field: value}))
            elif kind == "content":
                yield _data(shapes.chunk(cid, created, req.model, {"content": value}))
            elif kind == "error":
                yield _data(value.body())
                return
            else:
                out: Outcome = value
                extra = {"edgeagent": out.trajectory} if out.trajectory is not None else {}
                yield _data(shapes.chunk(cid, created, req.model, {}, out.finish_reason, **extra))
                if req.include_usage:
                    use = shapes.usage(out.prompt_tokens, out.completion_tokens)
                    yield _data(shapes.usage_chunk(cid, created, req.model, use))
                yield {"data": "[DONE]"}
                return
    finally:
        job.cancel()  # a no-op when the run is over; otherwise the client went away
        if not started:
            ticket.release()


async def _complete(service: Service, job: Job, ticket: Ticket, req: ChatRequest,
                    request: Request) -> Response:
    """Run to the end while a watcher polls for the client going away (then: cancel)."""
    main = asyncio.ensure_future(_collect(service, job, ticket, req))
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({main, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if main.done():
            return main.result()
        return Response(status_code=499)  # nobody is listening
    finally:
        for task in (main, watcher):
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        job.cancel()  # a no-op when the run is over


async def _collect(service: Service, job: Job, ticket: Ticket,
                   req: ChatRequest) -> Response:
    reasoning: list[str] = []
    content: list[str] = []
    try:
        await _admit(job, ticket)
    except BaseException:
        ticket.release()
        raise
    while True:
        kind, value = await job.queue.get()
        if kind == "reasoning":
            reasoning.append(value)
        elif kind == "content":
            content.append(value)
        elif kind == "error":
            raise value
        else:
            out: Outcome = value
            extra = {"edgeagent": out.trajectory} if out.trajectory is not None else {}
            body = shapes.completion(
                shapes.completion_id(), int(time.time()), req.model, "".join(content),
                "".join(reasoning), service.settings.reasoning_field, out.finish_reason,
                shapes.usage(out.prompt_tokens, out.completion_tokens), **extra)
            return JSONResponse(body)


async def _disconnected(request: Request, poll_s: float = 0.2) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(poll_s)


def _data(obj: dict[str, Any]) -> dict[str, str]:
    return {"data": json.dumps(obj, ensure_ascii=False)}
