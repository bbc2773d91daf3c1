"""The HTTP adapter: FastAPI routes over ``Predictor`` objects, through the dynamic batcher.

Routes: ``POST /v1/predict``, ``POST /v1/embed``, ``POST /v1/qa`` (with a QA index), ``GET /v1/model``,
``GET /health`` (alive), ``GET /ready`` (loaded and warmed), ``GET /metrics`` (Prometheus), ``GET /`` (playground page),
``GET /docs`` (OpenAPI). A decoder (language model) serves ``POST /v1/generate`` instead of
predict and embed (those answer 400 naming the route to use; the OpenAPI schema lists the routes
that work): JSON ``{"completion", "tokens", "finish_reason"}``, or with ``"stream": true``
server-sent events ``data: {"text": ...}`` as the text is produced, then ``data: [DONE]``
(serve/generation.py). Every error is JSON ``{"error": message, "field": name-or-null}``: 4xx for
anything a client sends (the message names the field), 503 + Retry-After when the queue is full
or the server is draining, 504 when a request outlives ``request_timeout_s`` (a generation: when
it waits that long for a model). No body a client can
send gets a 500: bodies are decoded as strict JSON (no NaN), nested at most ``MAX_JSON_DEPTH`` deep,
and every text must be valid Unicode before it is queued, because a batch that fails fails for
every request in it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from json.decoder import scanstring
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from nlpforge.errors import ConfigError, NlpforgeError
from nlpforge.generation import DEFAULTS as GENERATION_DEFAULTS
from nlpforge.generation import MAX_PENALTY as MAX_REPETITION_PENALTY
from nlpforge.generation import (
    MAX_SEED,
    MAX_STOP_CHARS,
    MAX_STOP_STRINGS,
    MAX_TEMPERATURE,
    MIN_PENALTY,
    MIN_TEMPERATURE,
    GenerationOptions,
    GenerationSettingError,
    GenerationStep,
    collect,
    encode_prompt,
)
from nlpforge.predictor import Predictor
from nlpforge.serve.batcher import DynamicBatcher, QueueFullError, ShuttingDownError
from nlpforge.serve.generation import GenerationPool
from nlpforge.serve.metrics import MetricsMiddleware, ServerMetrics
from nlpforge.serve.workers import ThreadWorker, warm_up
from nlpforge.settings import HELP
from nlpforge.tasks.base import json_type

API_VERSION = "v1"
# A request needs three levels (body, inputs, one input). The JSON decoder recurses once per level
# and dies with RecursionError near the interpreter's limit (~1,000), so deeper bodies are refused
# before decoding.
MAX_JSON_DEPTH = 32
# Paired surrogates in a JSON string decode to one code point, so any surrogate left in a decoded
# string is a lone one: not Unicode text, cannot be encoded as UTF-8, and the tokenizer raises on it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_STRUCTURE = re.compile(r'[\[\]{}",:]')
GENERATE_FIELDS = ("prompt", *(field.name for field in dataclasses.fields(GenerationOptions)), "stream")
logger = logging.getLogger("nlpforge.serve")


@dataclass
class ServeSettings:
    """Batching, limits and auth of one server (the ``nlpforge serve`` flags)."""

    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256  # inputs waiting for the model; beyond it requests get 503
    request_timeout_s: float = 30.0
    max_body_bytes: int = 1 << 20
    max_inputs: int = 64  # per request
    max_chars: int = 20_000  # per input (all its strings together); per prompt
    max_new_tokens: int = 512  # per generation request
    api_key: str | None = None
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise NlpforgeError(f"max new tokens per request must be >= 1, got {self.max_new_tokens}")
        if self.max_inputs > self.max_queue:
            raise NlpforgeError(f"max inputs per request ({self.max_inputs}) exceeds the queue bound "
                                f"({self.max_queue}); raise --max-queue or lower the inputs limit")


class ClientError(Exception):
    """A request the server refuses; becomes ``{"error", "field"}`` with ``status``."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    try:
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # an error echoing a lone surrogate it was sent: \u escapes are valid JSON
        content = json.dumps(body).encode("ascii")
    return Response(content, status, headers, media_type="application/json")


def _event(body: dict[str, Any]) -> bytes:
    """One server-sent event; JSON escapes newlines, so the data is one line."""
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


class EventStream(StreamingResponse):
    """Server-sent events whose generator is always closed, freeing its model instance, even when the client
    goes away mid-stream (Starlette then stops iterating it without closing it)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


def served_task(model: Predictor) -> str:
    """What the server does with the model, in words (the startup line, the OpenAPI description)."""
    return "text generation" if model.generates else model.task or "embeddings only"


def build_app(artifact: str | os.PathLike[str] | None, settings: ServeSettings | None = None, instances: int = 1,
              backend: str | None = None, threads: int = 0,
              adapters: dict[str, str] | None = None, qa: str | None = None,
              null_threshold: float | None = None) -> FastAPI:
    """An app serving ``artifact`` (any checkpoint, ONNX or INT8 directory) with ``instances`` model
    copies, each running its own batches on ``threads // instances`` threads (0: all cores).
    ``adapters`` (name -> LoRA adapter directory trained on ``artifact``): a request picks one with
    ``"adapter": name`` (default: the first). ``qa``: a QA directory (``nlpforge qa index``) answered
    on ``POST /v1/qa``, read by the served span_qa model. With no ``artifact``, only ``/v1/qa``
    answers: a knowledge base (``nlpforge kbqa train``) or an FAQ index needs no model.
    ``null_threshold``: a span_qa model's no-answer threshold, instead of the one it was saved with.

    What ``nlpforge serve`` runs; pass the result to any ASGI server (``uvicorn.run(app)``).
    """
    import torch

    settings = settings or ServeSettings()
    if instances < 1:
        raise NlpforgeError(f"instances must be >= 1, got {instances}")
    per_instance = max(1, (threads or os.cpu_count() or 1) // instances)
    torch.set_num_threads(per_instance)
    if artifact is None:
        if qa is None:
            raise ConfigError("nothing to serve: give a model directory (ARTIFACT), a QA directory (--qa), or both")
        if adapters:
            raise ConfigError("--adapter: adapters need their base model; give it as ARTIFACT")
        from nlpforge.qa import load_qa_system

        system = load_qa_system(qa)
        return create_app(None, settings, [ThreadWorker(None, system)], system)
    models = [Predictor.load(artifact, backend, per_instance, settings.max_batch_size, adapters)
              .with_null_threshold(null_threshold) for _ in range(instances)]
    systems: list[Any] = [None] * instances
    if qa is not None:
        from nlpforge.qa import load_qa_system

        systems = [load_qa_system(qa, model) for model in models]
    return create_app(models[0], settings, [ThreadWorker(model, system) for model, system in zip(models, systems,
                                                                                                strict=True)],
                      systems[0])


def create_app(model: Predictor | None, settings: ServeSettings | None = None,
               workers: Sequence[Any] | None = None, qa: Any | None = None) -> FastAPI:
    """An app serving ``model``: it checks requests against ``model`` and runs the batches on
    ``workers`` (one per model instance: serve/workers.py; default: one thread over ``model``).
    Workers with a ``close`` method are closed after the queue has drained at shutdown. ``qa``: the
    QA system (nlpforge.qa) that ``POST /v1/qa`` answers from (the workers hold one each). With no
    ``model`` (a QA system that needs none) only ``/v1/qa`` answers; the model routes say so (400)."""
    settings = settings or ServeSettings()
    workers = list(workers) if workers is not None else [ThreadWorker(model, qa)]
    state: dict[str, Any] = {"ready": False}
    metrics: ServerMetrics
    no_model = f"no model is served, only question answering: use /{API_VERSION}/qa"
    batcher = DynamicBatcher(workers, settings.max_batch_size, settings.max_wait_ms, settings.max_queue,
                             on_batch=lambda size, wait: metrics.on_batch(size, wait))
    # A language model generates on the workers' model instances, one request at a time on each.
    pool = GenerationPool([getattr(worker, "predictor", model) for worker in workers], settings.max_queue) \
        if model is not None and model.generates else None
    metrics = ServerMetrics(lambda: batcher.queue_depth + (pool.waiting if pool else 0),
                            lambda: batcher.in_flight + (pool.waiting + pool.running if pool else 0))

    async def warm_up_all() -> None:
        loop = asyncio.get_running_loop()
        try:
            for worker in workers:
                if model is not None:
                    await loop.run_in_executor(None, warm_up, model, worker)
                if qa is not None:  # retrieval's lazy parts too (jieba's dictionary, the first faiss search)
                    await loop.run_in_executor(None, worker, "qa", ["warm up"])
        except Exception as error:  # the model cannot answer: say so on /ready instead of warming forever
            logger.exception("warm-up failed; the server stays unready")
            state["error"] = f"warm-up failed ({type(error).__name__}: {error}); see the server log"
            return
        state["ready"] = True
        metrics.ready.set(1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        warming = asyncio.create_task(warm_up_all())
        yield
        warming.cancel()
        await batcher.stop()  # uvicorn has stopped accepting; finish what is queued
        if pool is not None:
            await pool.close()
        for worker in workers:
            close = getattr(worker, "close", None)
            if close is not None:
                close()

    app = FastAPI(title="nlpforge", version=API_VERSION, lifespan=lifespan,
                  description=f"Model: {model.path} (task: {served_task(model)}, backend: {model.backend})"
                  if model is not None else f"Question answering: {qa.describe()['kind']} ({no_model})")
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, error: ClientError) -> Response:
        return _json({"error": error.message, "field": error.field}, error.status, error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        return _json({"error": str(error.detail), "field": None}, error.status_code, error.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> Response:
        return _json({"error": f"internal error ({type(error).__name__}); see the server log", "field": None}, 500)

    async def authorized(request: Request) -> None:
        if settings.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {settings.api_key}".encode()):
            raise ClientError(401, "missing or wrong API key; send the header 'Authorization: Bearer <key>'",
                              "Authorization", {"WWW-Authenticate": "Bearer"})

    async def run(kind: str, inputs: list[Any]) -> list[Any]:
        if "error" in state:
            raise ClientError(503, f"the model cannot serve: {state['error']}")
        if not state["ready"]:
            raise ClientError(503, "the model is still warming up; retry shortly", None,
                              {"Retry-After": str(settings.retry_after_s)})
        try:
            return await batcher.submit(kind, inputs, settings.request_timeout_s)
        except QueueFullError:
            raise ClientError(503, f"server busy: {batcher.queue_depth} inputs queued (limit {settings.max_queue});"
                              " retry later", None, {"Retry-After": str(settings.retry_after_s)}) from None
        except ShuttingDownError:
            raise ClientError(503, "server is shutting down; retry on another replica", None,
                              {"Retry-After": str(settings.retry_after_s)}) from None
        except TimeoutError:
            raise ClientError(504, f"no result within {settings.request_timeout_s:g} s; the server is overloaded",
                              None) from None

    def body_doc(item_schema: dict[str, Any], example: Any, adapters: Sequence[str] = ()) -> dict[str, Any]:
        """The OpenAPI request body: ``{"inputs": [item, ...]}``, items as the task's input schema says
        (and ``"adapter"``, one of ``adapters``, when the model serves several)."""
        properties: dict[str, Any] = {"inputs": {"type": "array", "minItems": 1, "maxItems": settings.max_inputs,
                                                 "items": item_schema}}
        if adapters:
            properties["adapter"] = {"type": "string", "enum": list(adapters), "default": adapters[0]}
        schema = {"type": "object", "required": ["inputs"], "additionalProperties": False,
                  "properties": properties, "example": {"inputs": [example]}}
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}

    task = model.task_spec if model is not None else None
    predict_doc = body_doc(task.input_schema, task.warmup_input, list(model.adapters)) if model and task \
        else body_doc({"type": "string"}, "text")
    embed_doc = body_doc({"type": "string"}, "a gorgeous, witty film")

    @app.post(f"/{API_VERSION}/predict", dependencies=[Depends(authorized)], openapi_extra=predict_doc,
              include_in_schema=model is not None and pool is None,
              summary="Predict: labels + scores, entities with offsets, or answer + score + offsets")
    async def predict(request: Request) -> Response:
        if model is None:
            raise ClientError(400, no_model)
        if pool is not None:
            raise ClientError(400, f"{model.path} is a language model; use /{API_VERSION}/generate")
        if model.task is None:
            raise ClientError(400, f"{model.path} is an encoder without a task head; use /{API_VERSION}/embed")
        payload = await _read_json(request, settings.max_body_bytes)
        raw = _inputs_of(payload, settings, ("adapter",))
        adapter = _adapter_of(payload, model)
        parsed = [_parse(model, record, i, adapter) for i, record in enumerate(raw)]
        start = time.perf_counter()
        # A batch holds one kind, so the batcher never mixes two adapters' inputs in one model call.
        outputs = await run(f"predict:{adapter}" if adapter is not None else "predict", parsed)
        return _json({"outputs": outputs, "latency_ms": round(1000 * (time.perf_counter() - start), 2)})

    @app.post(f"/{API_VERSION}/embed", dependencies=[Depends(authorized)], openapi_extra=embed_doc,
              include_in_schema=model is not None and pool is None,
              summary="Sentence embeddings (mean pooling of the encoder's last hidden states)")
    async def embed(request: Request) -> Response:
        if model is None:
            raise ClientError(400, no_model)
        if pool is not None:
            raise ClientError(400, f"{model.path} is a language model; use /{API_VERSION}/generate")
        if model.encoder is None:
            raise ClientError(400, f"{model.path}: an ONNX {model.task} model has no hidden-state output; "
                              "serve its torch checkpoint to embed")
        raw = _inputs_of(await _read_json(request, settings.max_body_bytes), settings)
        for i, text in enumerate(raw):
            if not isinstance(text, str) or not text.strip():
                raise ClientError(422, f"inputs[{i}]: must be a non-empty string", f"inputs[{i}]")
        start = time.perf_counter()
        vectors = await run("embed", raw)
        return _json({"embeddings": vectors, "dimension": len(vectors[0]),
                      "latency_ms": round(1000 * (time.perf_counter() - start), 2)})

    async def generation_instance() -> int:
        """A free model instance for one generation (503 while warming up or when too many wait, 504 after
        the request timeout)."""
        assert pool is not None
        if not state["ready"]:
            raise ClientError(503, "the model is still warming up; retry shortly", None,
                              {"Retry-After": str(settings.retry_after_s)})
        try:
            return await pool.acquire(settings.request_timeout_s)
        except QueueFullError:
            raise ClientError(503, f"server busy: {pool.waiting} requests wait for the model (limit "
                              f"{settings.max_queue}); retry later", None,
                              {"Retry-After": str(settings.retry_after_s)}) from None
        except ShuttingDownError:
            raise ClientError(503, "server is shutting down; retry on another replica", None,
                              {"Retry-After": str(settings.retry_after_s)}) from None
        except TimeoutError:
            raise ClientError(504, f"no model free within {settings.request_timeout_s:g} s; the server is "
                              "overloaded", None) from None

    @app.post(f"/{API_VERSION}/generate", dependencies=[Depends(authorized)], openapi_extra=generate_doc(settings),
              include_in_schema=pool is not None,
              summary="Continue a prompt (language models): the completion, or its text streamed as server-sent "
                      "events")
    async def generate(request: Request) -> Response:
        if model is None:
            raise ClientError(400, no_model)
        if pool is None:
            raise ClientError(400, f"{model.path} is not a language model; /{API_VERSION}/generate needs a decoder "
                              "checkpoint (GPT-2 family, e.g. from `nlpforge pretrain --objective clm`)")
        prompt, options, stream = _generate_request(await _read_json(request, settings.max_body_bytes), settings)
        try:
            encode_prompt(model.tokenizer, prompt, model.model.config.max_positions, "prompt")
        except NlpforgeError as error:
            raise ClientError(422, str(error), "prompt") from None
        index = await generation_instance()
        try:
            steps = pool.predictors[index].stream(prompt, options)
        except BaseException:
            pool.release(index)
            raise
        if stream:
            return EventStream(_events(pool, index, steps), media_type="text/event-stream",
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        start = time.perf_counter()
        try:
            completion = (await pool.run(index, collect, steps, 1))[0]
        finally:
            pool.finish(index, steps)
        metrics.generated_tokens.inc(completion.tokens)
        return _json({"completion": completion.text, "tokens": completion.tokens,
                      "finish_reason": completion.finish_reason,
                      "latency_ms": round(1000 * (time.perf_counter() - start), 2)})

    async def _events(pool: GenerationPool, index: int, steps: Iterator[GenerationStep]) -> AsyncIterator[bytes]:
        """``data: {"text": ...}`` per piece of text; the last event adds ``tokens`` and ``finish_reason``; then
        ``data: [DONE]``. A failure after the status line went out ends the stream with ``data: {"error": ...}``."""
        try:
            while (step := await pool.run(index, next, steps, None)) is not None:
                if step.done:
                    metrics.generated_tokens.inc(step.tokens[0])
                    yield _event({"text": step.texts[0], "tokens": step.tokens[0],
                                  "finish_reason": step.finish_reasons[0]})
                elif step.texts[0]:
                    yield _event({"text": step.texts[0]})
            yield b"data: [DONE]\n\n"
        except Exception as error:
            logger.exception("generation failed after its stream started")
            yield _event({"error": f"generation failed ({type(error).__name__}); see the server log"})
        finally:
            pool.finish(index, steps)

    qa_doc = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["question"], "additionalProperties": False,
        "properties": {"question": {"type": "string", "minLength": 1, "maxLength": settings.max_chars}},
        "example": {"question": "When was the company founded?"}}}}}}

    @app.post(f"/{API_VERSION}/qa", dependencies=[Depends(authorized)], openapi_extra=qa_doc,
              include_in_schema=qa is not None,
              summary="Answer a question from the served QA index: answer, score, evidence")
    async def answer(request: Request) -> Response:
        if qa is None:
            raise ClientError(400, "no QA index is served; start the server with --qa INDEX (a directory written "
                                   "by `nlpforge qa index`)")
        question = _question_of(await _read_json(request, settings.max_body_bytes), settings, qa)
        start = time.perf_counter()
        [result] = await run("qa", [question])
        return _json({**result, "latency_ms": round(1000 * (time.perf_counter() - start), 2)})

    @app.get(f"/{API_VERSION}/model", dependencies=[Depends(authorized)], summary="What is being served")
    async def describe() -> Response:
        return _json({**(model.describe() if model is not None else {}),
                      **({"qa": qa.describe()} if qa is not None else {})})

    @app.get("/health", summary="Alive (the process answers)")
    async def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/ready", summary="Ready: the model is loaded and warmed up")
    async def ready() -> Response:
        body = {"ready": state["ready"], "task": model.task if model else None,
                "labels": model.labels if model else None,
                "input_schema": task.input_schema if task else {"type": "string"},
                "generate": pool is not None, "qa": qa is not None, "auth": settings.api_key is not None,
                "queue_depth": batcher.queue_depth + (pool.waiting if pool else 0),
                **({"error": state["error"]} if "error" in state else {})}
        return _json(body, 200 if state["ready"] else 503)

    @app.get("/metrics", dependencies=[Depends(authorized)], summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=ServerMetrics.content_type)

    playground = (files("nlpforge") / "serve" / "playground.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, summary="Web playground")
    async def page() -> HTMLResponse:
        return HTMLResponse(playground)

    app.state.batcher, app.state.metrics, app.state.settings, app.state.model = batcher, metrics, settings, model
    return app


async def _read_json(request: Request, limit: int) -> Any:
    """The request body parsed as JSON, refused (413) past ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:  # isdigit alone takes '²'
        raise ClientError(413, f"body of {declared} bytes exceeds the limit of {limit}; send fewer inputs")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ClientError(413, f"body exceeds the limit of {limit} bytes; send fewer inputs")
    except ClientDisconnect:
        # Nobody reads the answer; 499 (nginx's "client closed request") keeps it out of the 5xx count.
        raise ClientError(499, "client disconnected before sending the whole body") from None
    if not body:
        raise ClientError(400, 'empty body; send JSON like {"inputs": ["some text"]}')
    try:
        # json.loads(bytes) would decode with 'surrogatepass', letting UTF-8-encoded surrogates through.
        text = bytes(body).decode(json.detect_encoding(body))
    except UnicodeDecodeError as error:
        raise ClientError(400, f"body is not valid UTF-8 (byte {error.start}: {error.reason}); "
                          "send JSON text encoded as UTF-8") from None
    too_deep, field = _nested_too_deep(text, MAX_JSON_DEPTH)
    if too_deep:
        raise ClientError(400, f"{field or 'body'}: arrays/objects nested more than {MAX_JSON_DEPTH} deep; "
                          'send JSON like {"inputs": ["some text"]}', field)
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError as error:
        raise ClientError(400, f"body is not valid JSON ({error})") from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _nested_too_deep(text: str, limit: int) -> tuple[bool, str | None]:
    """Whether the JSON ``text`` nests arrays/objects more than ``limit`` deep, and where: the top-level
    key (``inputs``), with ``[i]`` inside that key's array; None for the body itself.

    Linear in the brackets, strings and separators (string contents are skipped by the decoder's own
    C scanner). Malformed text may answer False: json.loads then fails on it before getting deep."""
    if text.count("[") + text.count("{") <= limit:
        return False, None
    stack: list[str] = []
    string: str | None = None
    key: str | None = None
    index = 0
    position = 0
    while (match := _STRUCTURE.search(text, position)) is not None:
        char, position = match.group(), match.end()
        if char == '"':
            try:
                string, position = scanstring(text, position)
            except ValueError:
                return False, None
        elif char == ":":
            if len(stack) == 1:
                key, index = string, 0
        elif char == ",":
            if len(stack) == 2:
                index += 1
        elif char in "[{":
            stack.append(char)
            if len(stack) > limit:
                if stack[0] == "[" or key is None:
                    return True, None
                return True, f"{key}[{index}]" if stack[1] == "[" else key
        elif stack:  # ] or }
            stack.pop()
    return False, None


def _inputs_of(payload: Any, settings: ServeSettings, optional: tuple[str, ...] = ()) -> list[Any]:
    """The ``inputs`` list of a request body, checked for shape and size (one input may be given bare);
    ``optional``: the other fields the route takes."""
    if not isinstance(payload, dict):
        raise ClientError(422, f'body must be a JSON object like {{"inputs": [...]}}, not {json_type(payload)}')
    unknown = sorted(set(payload) - {"inputs", *optional})
    if unknown:
        takes = " and ".join(repr(name) for name in ("inputs", *optional))
        raise ClientError(422, f"unknown field {unknown[0]!r}; the body takes only {takes}", unknown[0])
    if "inputs" not in payload or payload["inputs"] is None:
        raise ClientError(422, "field 'inputs' is required: a list of inputs", "inputs")
    inputs = payload["inputs"]
    if isinstance(inputs, (str, dict)):
        inputs = [inputs]
    if not isinstance(inputs, list):
        raise ClientError(422, f"field 'inputs' must be a list, not {json_type(inputs)}", "inputs")
    if not inputs:
        raise ClientError(422, "field 'inputs' is empty; send at least one input", "inputs")
    if len(inputs) > settings.max_inputs:
        raise ClientError(413, f"{len(inputs)} inputs exceed the limit of {settings.max_inputs} per request; "
                          "split the request", "inputs")
    for i, record in enumerate(inputs):
        strings = record.values() if isinstance(record, dict) else [record]
        chars = sum(len(s) for s in strings if isinstance(s, str))
        if chars > settings.max_chars:
            raise ClientError(413, f"inputs[{i}]: {chars} characters exceed the limit of {settings.max_chars}",
                              f"inputs[{i}]")
        where = _lone_surrogate(record, f"inputs[{i}]")
        if where is not None:
            raise ClientError(422, f"{where}: holds a lone surrogate (a \\ud800-\\udfff escape without its "
                              "pair), which is not Unicode text; send valid UTF-8", where)
    return inputs


def _lone_surrogate(record: Any, where: str) -> str | None:
    """The field of one input whose string holds a lone surrogate (``where`` or ``where.name``), or None."""
    if isinstance(record, str):
        return where if _SURROGATE.search(record) else None
    if isinstance(record, dict):
        for name, value in record.items():
            if _SURROGATE.search(name):
                return where
            if isinstance(value, str) and _SURROGATE.search(value):
                return f"{where}.{name}"
    return None


def _question_of(payload: Any, settings: ServeSettings, qa: Any) -> str:
    """The ``question`` of a /v1/qa body, checked for type, size, Unicode and what the QA system takes."""
    if not isinstance(payload, dict):
        raise ClientError(422, f'body must be a JSON object like {{"question": "..."}}, not {json_type(payload)}')
    unknown = sorted(set(payload) - {"question"})
    if unknown:
        raise ClientError(422, f"unknown field {unknown[0]!r}; the body takes only 'question'", unknown[0])
    question = payload.get("question")
    if not isinstance(question, str):
        raise ClientError(422, f"field 'question' must be a string, not {json_type(question)}", "question")
    if len(question) > settings.max_chars:
        raise ClientError(413, f"question: {len(question)} characters exceed the limit of {settings.max_chars}",
                          "question")
    if _lone_surrogate(question, "question") is not None:
        raise ClientError(422, "question: holds a lone surrogate, which is not Unicode text; send valid UTF-8",
                          "question")
    try:
        qa.check_question(question, "question")
    except NlpforgeError as error:
        raise ClientError(422, str(error), "question") from None
    return question


def _adapter_of(payload: dict[str, Any], model: Predictor) -> str | None:
    """The request's ``adapter`` field, checked against the adapters the model serves (None: not given)."""
    adapter = payload.get("adapter")
    if adapter is None:
        return None
    if not isinstance(adapter, str):
        raise ClientError(422, f"field 'adapter' must be a string, not {json_type(adapter)}", "adapter")
    try:
        model.adapter_meta(adapter)
    except NlpforgeError as error:
        raise ClientError(422, str(error), "adapter") from None
    return adapter


def _parse(model: Predictor, record: Any, index: int, adapter: str | None = None) -> Any:
    where = f"inputs[{index}]"
    try:
        return model.parse(record, where, adapter)
    except NlpforgeError as error:
        message = str(error)
        field = message.split(":", 1)[0] if message.startswith(where) else where
        raise ClientError(422, message, field) from None


def generate_doc(settings: ServeSettings) -> dict[str, Any]:
    """The OpenAPI request body of /v1/generate: the GenerationOptions fields, bounded as they are checked."""
    described = {field.name: {"description": field.metadata.get(HELP, "")}
                 for field in dataclasses.fields(GenerationOptions)}
    defaults = GENERATION_DEFAULTS
    properties = {
        "prompt": {"type": "string", "minLength": 1, "maxLength": settings.max_chars,
                   "description": "The text to continue (the completion does not repeat it)."},
        "max_new_tokens": {"type": "integer", "minimum": 1, "maximum": settings.max_new_tokens,
                           "default": min(defaults.max_new_tokens, settings.max_new_tokens)},
        "temperature": {"type": "number", "anyOf": [{"const": 0}, {"minimum": MIN_TEMPERATURE,
                                                                   "maximum": MAX_TEMPERATURE}],
                        "default": defaults.temperature},
        "top_k": {"type": "integer", "minimum": 0, "default": defaults.top_k},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": defaults.top_p},
        "repetition_penalty": {"type": "number", "minimum": MIN_PENALTY, "maximum": MAX_REPETITION_PENALTY,
                               "default": defaults.repetition_penalty},
        "stop": {"type": "array", "maxItems": MAX_STOP_STRINGS,
                 "items": {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}},
        "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_SEED},
        "stream": {"type": "boolean", "default": False,
                   "description": 'true: answer text/event-stream, data: {"text": ...} per piece, then '
                                  "data: [DONE]"},
    }
    for name, extra in described.items():
        properties[name] = {**extra, **properties[name]}
    schema = {"type": "object", "required": ["prompt"], "additionalProperties": False, "properties": properties,
              "example": {"prompt": "Once upon a time", "max_new_tokens": 20, "temperature": 0.8}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _generate_request(payload: Any, settings: ServeSettings) -> tuple[str, GenerationOptions, bool]:
    """(prompt, options, stream) of a /v1/generate body; a 4xx ClientError naming the field otherwise.
    A null field takes its default."""
    if not isinstance(payload, dict):
        raise ClientError(422, f'body must be a JSON object like {{"prompt": "Once upon a time"}}, not '
                          f"{json_type(payload)}")
    unknown = sorted(set(payload) - set(GENERATE_FIELDS))
    if unknown:
        raise ClientError(422, f"unknown field {unknown[0]!r}; the body takes {', '.join(GENERATE_FIELDS)}",
                          unknown[0])
    prompt = payload.get("prompt")
    if prompt is None:
        raise ClientError(422, "field 'prompt' is required: the text to continue", "prompt")
    if not isinstance(prompt, str):
        raise ClientError(422, f"field 'prompt' must be a string, not {json_type(prompt)}", "prompt")
    if len(prompt) > settings.max_chars:
        raise ClientError(413, f"prompt: {len(prompt)} characters exceed the limit of {settings.max_chars}",
                          "prompt")
    if _SURROGATE.search(prompt):
        raise ClientError(422, "prompt: holds a lone surrogate (a \\ud800-\\udfff escape without its pair), "
                          "which is not Unicode text; send valid UTF-8", "prompt")
    if not prompt.strip():
        raise ClientError(422, "prompt: is empty; send some text to continue", "prompt")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ClientError(422, f"field 'stream' must be true or false, not {json_type(stream)}", "stream")
    values = {name: value for name, value in payload.items() if name not in ("prompt", "stream") and value is not None}
    values.setdefault("max_new_tokens", min(GENERATION_DEFAULTS.max_new_tokens, settings.max_new_tokens))
    if isinstance(values.get("stop"), str):  # one stop string given bare
        values["stop"] = [values["stop"]]
    try:
        options = GenerationOptions(**values)
    except GenerationSettingError as error:
        raise ClientError(422, str(error), error.field) from None
    if options.max_new_tokens > settings.max_new_tokens:
        raise ClientError(422, f"max_new_tokens: at most {settings.max_new_tokens} on this server, got "
                          f"{options.max_new_tokens}", "max_new_tokens")
    return prompt, options, bool(stream)
