"""The HTTP adapter in-process: same answers as the Predictor, 4xx for every bad request, 401, 503, 504."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import ready_client, tiny_hf_model, tiny_tokenizer
from nlpforge.predictor import Predictor
from nlpforge.serve.app import ServeSettings, create_app

HF_CLASSES = {"classify": "BertForSequenceClassification", "tag": "BertForTokenClassification",
              "span_qa": "BertForQuestionAnswering", "encoder": "BertModel"}


def tiny_checkpoint(tmp_path: Path, vocab: Path, kind: str) -> Path:
    out = tmp_path / kind
    tiny_hf_model(HF_CLASSES[kind]).save_pretrained(out)
    tiny_tokenizer(vocab).save_pretrained(out)
    return out


@pytest.fixture
def classifier(tmp_path: Path, tiny_vocab: Path) -> Predictor:
    return Predictor.load(tiny_checkpoint(tmp_path, tiny_vocab, "classify"))


@pytest.fixture
def client(classifier: Predictor):
    client = ready_client(create_app(classifier))
    yield client
    client.__exit__(None, None, None)


def test_predict_equals_the_predictor(client: TestClient, classifier: Predictor) -> None:
    inputs = ["a b c", {"text": "d e", "text_pair": "f g"}, "h"]
    response = client.post("/v1/predict", json={"inputs": inputs})
    assert response.status_code == 200
    body = response.json()
    expected = classifier.predict(inputs)
    assert [o["label"] for o in body["outputs"]] == [e["label"] for e in expected]
    for got, want in zip(body["outputs"], expected, strict=True):
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-6)
    assert body["latency_ms"] > 0


def test_embed_equals_the_predictor(client: TestClient, classifier: Predictor) -> None:
    response = client.post("/v1/embed", json={"inputs": ["a b", "c d e"]})
    assert response.status_code == 200
    vectors = np.array(response.json()["embeddings"])
    np.testing.assert_allclose(vectors, classifier.embed(["a b", "c d e"]), atol=1e-5)
    assert response.json()["dimension"] == 32


def test_tag_and_span_qa_shapes(tmp_path: Path, tiny_vocab: Path) -> None:
    tagger = Predictor.load(tiny_checkpoint(tmp_path, tiny_vocab, "tag"))
    reader = Predictor.load(tiny_checkpoint(tmp_path, tiny_vocab, "span_qa"))
    with ready_client(create_app(tagger)) as client:
        text = "a b c d"
        entities = client.post("/v1/predict", json={"inputs": [text]}).json()["outputs"][0]["entities"]
        assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)
        wrong = client.post("/v1/predict", json={"inputs": [{"question": "a", "context": "b"}]})
        assert wrong.status_code == 422 and wrong.json()["field"] == "inputs[0]"
    with ready_client(create_app(reader)) as client:
        context = "a b c d e f"
        answer = client.post("/v1/predict", json={"inputs": [{"question": "a", "context": context}]}).json()
        answer = answer["outputs"][0]
        assert context[answer["start"]:answer["end"]] == answer["answer"] and "score" in answer
        bare = client.post("/v1/predict", json={"inputs": ["just text"]})
        assert bare.status_code == 422 and "question" in bare.json()["error"]


def test_bare_encoder_embeds_but_does_not_predict(tmp_path: Path, tiny_vocab: Path) -> None:
    encoder = Predictor.load(tiny_checkpoint(tmp_path, tiny_vocab, "encoder"))
    with ready_client(create_app(encoder)) as client:
        assert client.post("/v1/embed", json={"inputs": ["a"]}).status_code == 200
        response = client.post("/v1/predict", json={"inputs": ["a"]})
        assert response.status_code == 400 and "/v1/embed" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{", 400, None),
        (b"", 400, None),
        (b"\xff\xfe", 400, None),
        (b"[1, 2]", 422, None),
        (b"null", 422, None),
        (b'{"texts": ["a"]}', 422, "texts"),
        (b'{"inputs": null}', 422, "inputs"),
        (b'{"inputs": 3}', 422, "inputs"),
        (b'{"inputs": []}', 422, "inputs"),
        (b'{"inputs": [null]}', 422, "inputs[0]"),
        (b'{"inputs": ["a", ""]}', 422, "inputs[1]"),
        (b'{"inputs": ["a", "   "]}', 422, "inputs[1]"),
        (b'{"inputs": [42]}', 422, "inputs[0]"),
        (b'{"inputs": [["a"]]}', 422, "inputs[0]"),
        (b'{"inputs": [{"text": 1}]}', 422, "inputs[0].text"),
        (b'{"inputs": [{"text": "a", "text_pair": ""}]}', 422, "inputs[0].text_pair"),
        (b'{"inputs": [{"question": "a", "context": "b"}]}', 422, "inputs[0]"),
        # nested past the JSON decoder's recursion limit
        (b"[" * 5000 + b"]" * 5000, 400, None),
        (b'{"inputs": ["a", ' + b"[" * 5000 + b"]" * 5000 + b"]}", 400, "inputs[1]"),
        # lone surrogates (JSON escapes that are not Unicode text), in a text, a pair, a name, a key
        (b'{"inputs": ["\\ud800"]}', 422, "inputs[0]"),
        (b'{"inputs": ["a", {"text": "b", "text_pair": "c\\udfff"}]}', 422, "inputs[1].text_pair"),
        (b'{"inputs": [{"\\udc00": "a"}]}', 422, "inputs[0]"),
        (b'{"\\ud800": ["a"]}', 422, "\ud800"),
        (b'{"inputs": ["\xed\xa0\x80"]}', 400, None),  # a surrogate as UTF-8 bytes: not UTF-8
        (b'{"inputs": ["a"], "n": NaN}', 400, None),
    ],
)
def test_bad_requests_get_4xx_naming_the_field(client: TestClient, body: bytes, status: int, field: str | None) -> None:
    response = client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["field"] == field and response.json()["error"]


def test_embed_refuses_lone_surrogates(client: TestClient) -> None:
    response = client.post("/v1/embed", content=b'{"inputs": ["a", "b\\ud83d"]}')
    assert response.status_code == 422 and response.json()["field"] == "inputs[1]"
    assert client.post("/v1/embed", json={"inputs": ["a \U0001f600"]}).status_code == 200  # a pair is fine


def test_client_gone_mid_body_is_not_a_server_error(client: TestClient) -> None:
    messages = iter([{"type": "http.request", "body": b'{"inputs": [', "more_body": True},
                     {"type": "http.disconnect"}])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1), "server": ("t", 80)}
    asyncio.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 499
    assert 'nlpforge_requests_total{route="/v1/predict",status="499"} 1.0' in client.get("/metrics").text


def test_size_limits(classifier: Predictor) -> None:
    settings = ServeSettings(max_inputs=4, max_chars=50, max_body_bytes=2048)
    with ready_client(create_app(classifier, settings)) as client:
        assert client.post("/v1/predict", json={"inputs": ["a"] * 5}).status_code == 413
        too_long = client.post("/v1/predict", json={"inputs": ["a", "b " * 30]})
        assert too_long.status_code == 413 and too_long.json()["field"] == "inputs[1]"
        big = client.post("/v1/predict", content=b'{"inputs": ["' + b"a" * 4000 + b'"]}')
        assert big.status_code == 413 and "limit" in big.json()["error"]
        assert client.post("/v1/predict", json={"inputs": ["a b"] * 4}).status_code == 200


def test_api_key(classifier: Predictor) -> None:
    with ready_client(create_app(classifier, ServeSettings(api_key="s3cret"))) as client:
        body = {"inputs": ["a"]}
        missing = client.post("/v1/predict", json=body)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = client.post("/v1/predict", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.get("/metrics").status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert client.post("/v1/predict", json=body, headers=good).status_code == 200
        assert client.get("/metrics", headers=good).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/ready").json()["auth"] is True


def test_metrics_count_statuses_and_batches(client: TestClient) -> None:
    client.post("/v1/predict", json={"inputs": ["a", "b", "c"]})
    client.post("/v1/predict", json={"inputs": [""]})
    text = client.get("/metrics").text
    assert 'nlpforge_requests_total{route="/v1/predict",status="200"} 1.0' in text
    assert 'nlpforge_requests_total{route="/v1/predict",status="422"} 1.0' in text
    assert 'nlpforge_batch_size_bucket{le="4.0"} 1.0' in text  # the 3-input request, one model call
    assert "nlpforge_queue_depth 0.0" in text and "nlpforge_ready 1.0" in text
    assert 'nlpforge_request_seconds_count{route="/v1/predict"} 2.0' in text


def test_docs_playground_and_unknown_routes(client: TestClient) -> None:
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    assert "nlpforge playground" in client.get("/").text
    missing = client.get("/v2/predict")
    assert missing.status_code == 404 and missing.json()["error"]
    assert client.get("/v1/predict").status_code == 405


class BlockingPredictor:
    """Wraps a Predictor; model calls wait until ``release`` is set (to fill the queue on purpose)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor, self.release, self.calls = predictor, threading.Event(), []

    def __getattr__(self, name: str):
        return getattr(self.predictor, name)

    def predict_parsed(self, inputs, adapter=None):
        self.calls.append(len(inputs))
        if len(self.calls) > 1:  # the warm-up call passes
            self.release.wait(10)
        return self.predictor.predict_parsed(inputs, adapter)


async def _started(app):
    context = app.router.lifespan_context(app)
    await context.__aenter__()
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://test")
    while (await client.get("/ready")).status_code != 200:
        await asyncio.sleep(0.01)
    return context, client


def test_full_queue_gets_503_with_retry_after_and_nothing_is_lost(classifier: Predictor) -> None:
    blocking = BlockingPredictor(classifier)
    app = create_app(blocking, ServeSettings(max_queue=4, max_inputs=2, max_batch_size=2, max_wait_ms=0))

    async def scenario():
        context, client = await _started(app)
        first = asyncio.create_task(client.post("/v1/predict", json={"inputs": ["a", "b"]}))  # runs, blocked
        await asyncio.sleep(0.2)
        batcher = app.state.batcher

        async def until(condition) -> None:
            for _ in range(1000):
                if condition():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("batcher never reached the expected state")

        def post_pair() -> asyncio.Task:
            return asyncio.create_task(client.post("/v1/predict", json={"inputs": ["c", "d"]}))

        # Two requests of two inputs fill the 4-input queue behind the running batch.
        queued = [post_pair(), post_pair()]
        await until(lambda: batcher.queue_depth == 4)
        refused = await client.post("/v1/predict", json={"inputs": ["e"]})
        blocking.release.set()
        done = await asyncio.gather(first, *queued)
        await context.__aexit__(None, None, None)
        return refused, done

    refused, done = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "busy" in refused.json()["error"]
    assert [r.status_code for r in done] == [200, 200, 200]
    assert all(len(r.json()["outputs"]) == 2 for r in done)


def test_request_timeout_gives_504_and_skips_the_work(classifier: Predictor) -> None:
    blocking = BlockingPredictor(classifier)
    app = create_app(blocking, ServeSettings(request_timeout_s=0.3, max_wait_ms=0, max_batch_size=1))

    async def scenario():
        context, client = await _started(app)
        first = asyncio.create_task(client.post("/v1/predict", json={"inputs": ["a"]}))
        await asyncio.sleep(0.1)
        second = await client.post("/v1/predict", json={"inputs": ["b"]})  # queued behind the blocked call
        blocking.release.set()
        await first
        await asyncio.sleep(0.1)
        await context.__aexit__(None, None, None)
        return second

    second = asyncio.run(scenario())
    assert second.status_code == 504 and json.loads(second.text)["error"]
    assert blocking.calls == [1, 1]  # warm-up and the first request; the timed-out one never ran


class Panic(BaseException):
    """What pyo3 raises for a Rust panic (in tokenizers): a BaseException, not an Exception."""


class PanickingPredictor(BlockingPredictor):
    """Model calls on an input saying 'panic' raise Panic."""

    def predict_parsed(self, inputs, adapter=None):
        if any("panic" in str(x) for x in inputs):
            raise Panic("stride must be strictly less than max_len")
        return self.predictor.predict_parsed(inputs, adapter)


def test_a_panicking_batch_fails_alone_and_the_server_goes_on(classifier: Predictor) -> None:
    app = create_app(PanickingPredictor(classifier), ServeSettings(max_wait_ms=0, request_timeout_s=5))
    with TestClient(app, raise_server_exceptions=False) as client:
        while client.get("/ready").status_code != 200:
            time.sleep(0.02)
        failed = client.post("/v1/predict", json={"inputs": ["panic"]})
        assert failed.status_code == 500 and failed.json()["error"]
        assert client.post("/v1/predict", json={"inputs": ["a b"]}).status_code == 200


def _long_question_reader(tmp_path: Path, vocab: Path) -> Predictor:
    out = tiny_checkpoint(tmp_path, vocab, "span_qa")
    (out / "nlpforge.json").write_text(json.dumps({"max_length": 64}))  # the tiny model's 64 positions
    return Predictor.load(out)


def test_a_question_too_long_for_the_window_is_a_4xx(tmp_path: Path, tiny_vocab: Path) -> None:
    with ready_client(create_app(_long_question_reader(tmp_path, tiny_vocab))) as client:
        response = client.post("/v1/predict", json={"inputs": [{"question": "a " * 40, "context": "b c d " * 30}]})
        assert 400 <= response.status_code < 500 and response.json()["field"].startswith("inputs[0]"), response.text


def test_a_long_input_to_a_model_with_few_positions_is_answered(classifier: Predictor) -> None:
    with ready_client(create_app(classifier)) as client:
        response = client.post("/v1/predict", json={"inputs": ["a " * 100]})
        assert response.status_code == 200, response.text


def test_build_app_serves_an_artifact_with_several_instances(tiny_bert_dir) -> None:
    from fastapi.testclient import TestClient

    from nlpforge.serve import build_app

    app = build_app(tiny_bert_dir, instances=2, threads=2)
    assert len(app.state.batcher.runners) == 2
    with TestClient(app) as client:
        for _ in range(200):
            if client.get("/ready").status_code == 200:
                break
        answer = client.post("/v1/embed", json={"inputs": ["a b", "c"]})
        assert answer.status_code == 200 and answer.json()["dimension"] == 32


class BrokenPredictor(BlockingPredictor):
    """Every model call fails (a model that loads but cannot run)."""

    def predict_parsed(self, inputs, adapter=None):
        raise RuntimeError("the kernel is missing")


def test_a_failed_warm_up_is_reported_on_ready(classifier: Predictor) -> None:
    with TestClient(create_app(BrokenPredictor(classifier)), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 30
        while "error" not in client.get("/ready").json():
            assert time.monotonic() < deadline, "the failed warm-up was never reported"
            time.sleep(0.02)
        response = client.get("/ready")
        assert response.status_code == 503 and "the kernel is missing" in response.json()["error"]
        refused = client.post("/v1/predict", json={"inputs": ["a"]})
        assert refused.status_code == 503 and "the model cannot serve: warm-up failed" in refused.json()["error"]
