"""POST /v1/generate on a served language model: JSON and server-sent events equal the library,
4xx for every bad body, the decoder's routes, instances freed by clients that leave, and a fuzz
of the decoder app's OpenAPI schema (no 5xx)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from starlette.requests import ClientDisconnect
from test_fuzz import fuzz_settings, headers, json_values, queries, raw_bodies

from conftest import tiny_hf_model, tiny_tokenizer
from nlpforge.generation import GenerationStep, generate_text
from nlpforge.predictor import Predictor
from nlpforge.serve.app import ServeSettings, build_app, create_app
from test_generate import save_tiny_decoder

MAX_NEW = 8  # the fuzzed server's limit per request: keeps every generation short


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_decoder(tmp_path_factory.mktemp("decoder"))


def ready(client: TestClient) -> TestClient:
    deadline = time.monotonic() + 30
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "server never became ready"
        time.sleep(0.02)
    return client


@pytest.fixture(scope="module")
def client(decoder_dir: Path) -> Iterator[TestClient]:
    # build_app: the path `nlpforge serve CHECKPOINT` takes (it sets torch's thread count: one, as one_thread).
    app = build_app(decoder_dir, ServeSettings(max_new_tokens=64, request_timeout_s=5), threads=1)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield ready(client)


def events(response: Any) -> list[Any]:
    """The data of each server-sent event ([DONE] as the string)."""
    data = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    return [item if item == "[DONE]" else json.loads(item) for item in data]


def test_json_completion_equals_the_library(client: TestClient, decoder_dir: Path) -> None:
    predictor = Predictor.load(decoder_dir)
    body = {"prompt": "the cat", "max_new_tokens": 12, "temperature": 0, "stop": ["zz"]}
    response = client.post("/v1/generate", json=body)
    assert response.status_code == 200, response.text
    expected = generate_text(predictor.model, predictor.tokenizer, "the cat", max_new_tokens=12, temperature=0,
                             stop=["zz"])[0]
    answer = response.json()
    assert (answer["completion"], answer["tokens"], answer["finish_reason"]) == \
        (expected.text, expected.tokens, expected.finish_reason)
    seeded = {"prompt": "猫坐", "max_new_tokens": 10, "temperature": 1.0, "top_k": 30, "top_p": 0.9,
              "repetition_penalty": 1.3, "seed": 3}
    assert client.post("/v1/generate", json=seeded).json()["completion"] == \
        client.post("/v1/generate", json=seeded).json()["completion"]


def test_streamed_events_join_to_the_json_completion(client: TestClient) -> None:
    body = {"prompt": "héllo wörld", "max_new_tokens": 15, "temperature": 0}
    whole = client.post("/v1/generate", json=body).json()
    with client.stream("POST", "/v1/generate", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        data = events(response)
    assert data[-1] == "[DONE]"
    *pieces, last = data[:-1]
    assert all(set(piece) == {"text"} and piece["text"] for piece in pieces)
    assert last["tokens"] == whole["tokens"] and last["finish_reason"] == whole["finish_reason"]
    assert "".join(piece["text"] for piece in data[:-1]) == whole["completion"]
    assert len(pieces) > 1  # the text came in pieces


def test_a_stop_string_ends_the_stream(client: TestClient) -> None:
    free = client.post("/v1/generate", json={"prompt": "a", "max_new_tokens": 20, "temperature": 0}).json()
    stop = free["completion"][6:9]
    cut = client.post("/v1/generate", json={"prompt": "a", "max_new_tokens": 20, "temperature": 0, "stop": stop})
    assert cut.json()["completion"] == free["completion"][: free["completion"].index(stop)]
    assert cut.json()["finish_reason"] == "stop"


@pytest.mark.parametrize(("body", "status", "field"), [
    (b"{", 400, None),
    (b"", 400, None),
    (b'["a"]', 422, None),
    (b'{"inputs": ["a"]}', 422, "inputs"),
    (b"{}", 422, "prompt"),
    (b'{"prompt": 3}', 422, "prompt"),
    (b'{"prompt": "  "}', 422, "prompt"),
    (b'{"prompt": "\\ud800"}', 422, "prompt"),
    (b'{"prompt": "a", "max_new_tokens": 0}', 422, "max_new_tokens"),
    (b'{"prompt": "a", "max_new_tokens": 65}', 422, "max_new_tokens"),
    (b'{"prompt": "a", "max_new_tokens": true}', 422, "max_new_tokens"),
    (b'{"prompt": "a", "max_new_tokens": 2.5}', 422, "max_new_tokens"),
    (b'{"prompt": "a", "temperature": -1}', 422, "temperature"),
    (b'{"prompt": "a", "temperature": 1e999}', 422, "temperature"),
    (b'{"prompt": "a", "temperature": "hot"}', 422, "temperature"),
    (b'{"prompt": "a", "top_k": -2}', 422, "top_k"),
    (b'{"prompt": "a", "top_p": 0}', 422, "top_p"),
    (b'{"prompt": "a", "repetition_penalty": 0}', 422, "repetition_penalty"),
    (b'{"prompt": "a", "stop": [1]}', 422, "stop[0]"),
    (b'{"prompt": "a", "stop": ["a", ""]}', 422, "stop[1]"),
    (b'{"prompt": "a", "stop": {"a": 1}}', 422, "stop"),
    (b'{"prompt": "a", "stop": ["\\udc00"]}', 422, "stop[0]"),
    (b'{"prompt": "a", "seed": -1}', 422, "seed"),
    (b'{"prompt": "a", "seed": "x"}', 422, "seed"),
    (b'{"prompt": "a", "stream": "yes"}', 422, "stream"),
    (b'{"prompt": "' + b"the cat " * 40 + b'"}', 422, "prompt"),  # more tokens than the model's 64 positions
])
def test_bad_bodies_get_4xx_naming_the_field(client: TestClient, body: bytes, status: int, field: str | None) -> None:
    response = client.post("/v1/generate", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["field"] == field and response.json()["error"]


def test_decoder_routes_and_an_encoder_without_generate(client: TestClient, tmp_path: Path, tiny_vocab: Path) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/generate" in paths and "/v1/predict" not in paths and "/v1/embed" not in paths
    for route in ("/v1/predict", "/v1/embed"):
        response = client.post(route, json={"inputs": ["a"]})
        assert response.status_code == 400 and "/v1/generate" in response.json()["error"]
    assert client.get("/v1/model").json()["generate"] is True and client.get("/ready").json()["generate"] is True
    tiny_hf_model("BertForSequenceClassification").save_pretrained(tmp_path / "classifier")
    tiny_tokenizer(tiny_vocab).save_pretrained(tmp_path / "classifier")
    with TestClient(create_app(Predictor.load(tmp_path / "classifier"))) as classifier:
        ready(classifier)
        assert "/v1/generate" not in classifier.get("/openapi.json").json()["paths"]
        response = classifier.post("/v1/generate", json={"prompt": "a"})
        assert response.status_code == 400 and "not a language model" in response.json()["error"]


@pytest.mark.parametrize("spec_version", ["2.4", "2.0"])  # a send that fails, or an http.disconnect message
def test_a_client_leaving_mid_stream_stops_the_generation_and_frees_the_model(decoder_dir: Path,
                                                                              spec_version: str) -> None:
    predictor = Predictor.load(decoder_dir)
    original, closed = predictor.stream, threading.Event()

    def endless() -> Iterator[GenerationStep]:
        try:
            while True:
                time.sleep(0.005)
                yield GenerationStep(["x"], [1], [None])
        finally:
            closed.set()

    predictor.stream = lambda prompt, options: endless() if not closed.is_set() else original(prompt, options)
    body = json.dumps({"prompt": "a", "stream": True}).encode()

    async def leave_after_the_first_event() -> list[dict]:
        sent: list[dict] = []
        first = asyncio.Event()
        requested = False

        async def receive() -> dict:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": body, "more_body": False}
            await first.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and message.get("body"):
                first.set()
                if spec_version == "2.4":
                    raise OSError("connection reset by peer")

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/generate", "raw_path": b"/v1/generate",
                 "query_string": b"", "root_path": "", "headers": [(b"content-type", b"application/json")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        with contextlib.suppress(ClientDisconnect):
            await app(scope, receive, send)
        return sent

    # One instance and a 2 s timeout: had the endless generation kept the model, the next request would get 504.
    app = create_app(predictor, ServeSettings(request_timeout_s=2, max_queue=1, max_inputs=1))
    with TestClient(app) as client:
        ready(client)
        sent = client.portal.call(leave_after_the_first_event)
        assert sent[0]["status"] == 200 and b'"text": "x"' in sent[1]["body"]
        assert closed.wait(5), "the generation went on after its client left"
        answer = client.post("/v1/generate", json={"prompt": "a", "max_new_tokens": 2})
        assert answer.status_code == 200, answer.text
        metrics = client.get("/metrics").text
        assert 'nlpforge_requests_total{route="/v1/generate",status="200"} 2.0' in metrics
        assert re.search(r"nlpforge_generated_tokens_total [1-9]", metrics)


# ---------------------------------------------------------------------------- fuzz


@pytest.fixture(scope="module")
def fuzz_client(decoder_dir: Path) -> Iterator[TestClient]:
    app = create_app(Predictor.load(decoder_dir), ServeSettings(max_new_tokens=MAX_NEW, max_chars=200))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield ready(client)


def check(response: Any, path: str) -> None:
    """2xx, 4xx or 503; JSON errors ``{"error", "field"}``; a stream is events ending in [DONE]."""
    status, kind = response.status_code, response.headers.get("content-type", "")
    context = f"{response.request.method} {path} -> {status}: {response.text[:300]!r}"
    assert 200 <= status < 300 or 400 <= status < 500 or status == 503, context
    if status < 300 and path in ("/", "/metrics"):
        return
    if status < 300 and kind.startswith("text/event-stream"):
        data = events(response)
        assert data[-1] == "[DONE]" and "finish_reason" in data[-2], context
        return
    assert kind.startswith("application/json"), context
    if status >= 400:
        assert set(response.json()) == {"error", "field"}, context


def test_fuzz_the_decoder_apps_openapi_schema(fuzz_client: TestClient) -> None:
    schema = fuzz_client.get("/openapi.json").json()
    operations = [(path, method.upper(), spec) for path, item in schema["paths"].items()
                  for method, spec in item.items()]
    assert ("/v1/generate", "POST") in {(path, method) for path, method, _ in operations}
    generate_schema = schema["paths"]["/v1/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    seen: dict[int, int] = {}

    def request_for(operation: tuple[str, str, dict]) -> st.SearchStrategy[dict]:
        path, method, _ = operation
        bodies = st.just(None) | json_values
        if path == "/v1/generate":
            bodies = from_schema(generate_schema) | bodies
        return st.fixed_dictionaries({"path": st.just(path), "method": st.just(method), "json": bodies,
                                      "headers": st.just({}) | headers, "params": st.just({}) | queries})

    @fuzz_settings(120)
    @given(st.sampled_from(operations).flatmap(request_for))
    def requests(request: dict) -> None:
        body = request["json"]
        response = fuzz_client.request(request["method"], request["path"],
                                       content=None if body is None else json.dumps(body).encode(),
                                       headers=request["headers"], params=request["params"])
        check(response, request["path"])
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    requests()

    @fuzz_settings(150)
    @given(raw_bodies)
    def raw(body: bytes) -> None:
        response = fuzz_client.post("/v1/generate", content=body, headers={"Content-Type": "application/json"})
        check(response, "/v1/generate")
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    raw()
    assert seen.get(200, 0) > 10 and seen.get(422, 0) > 10 and seen.get(400, 0) > 10, seen
    answer = fuzz_client.post("/v1/generate", json={"prompt": "a", "max_new_tokens": 2})
    assert answer.status_code == 200 and answer.json()["tokens"] >= 1
    assert not re.search(r'status="5(?!03")\d\d"', fuzz_client.get("/metrics").text)
