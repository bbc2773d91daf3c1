"""Property-based fuzz of the HTTP API, in-process (ASGI, no socket), on a tiny classifier.

Every operation of the app's own OpenAPI schema gets requests built from that schema (bodies from
its request schema through hypothesis-jsonschema, and off-schema bodies, headers and query strings);
then raw bodies: random bytes, deep nesting, lone surrogates, huge numbers, other encodings, wrong
types. The property: every answer is 2xx, 4xx or 503, JSON (except the HTML playground and the
Prometheus text), errors as ``{"error": message, "field": name-or-null}``; afterwards the server is
alive, still answers correctly, and its metrics count no 5xx but 503.

The examples come from a fixed seed, so a run finds the same cases every time. To explore further,
set NLPFORGE_FUZZ_EXAMPLES (examples per property; random seeds), e.g. NLPFORGE_FUZZ_EXAMPLES=2000.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from conftest import tiny_hf_model, tiny_tokenizer
from nlpforge.predictor import Predictor
from nlpforge.serve.app import MAX_JSON_DEPTH, ServeSettings, _nested_too_deep, create_app

API_KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
NOT_JSON_ROUTES = {"/", "/metrics"}  # the HTML playground and the Prometheus text format
EXPLORE = os.environ.get("NLPFORGE_FUZZ_EXAMPLES")


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=int(EXPLORE) if EXPLORE else examples, derandomize=not EXPLORE, database=None,
                    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                    print_blob=True)


@pytest.fixture
def client(tmp_path: Path, tiny_vocab: Path) -> Iterator[TestClient]:
    out = tmp_path / "classifier"
    tiny_hf_model("BertForSequenceClassification").save_pretrained(out)
    tiny_tokenizer(tiny_vocab).save_pretrained(out)
    # The tiny model has 64 positions; without nlpforge.json the predictor would assume 128.
    (out / "nlpforge.json").write_text(json.dumps({"max_length": 64}))
    app = create_app(Predictor.load(out), ServeSettings(max_inputs=8, max_wait_ms=0, api_key=API_KEY))
    # A 500 must come back as a response (and fail the property), not as an exception in the test.
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 30
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.02)
        yield client


def check_response(response: Any, path: str) -> None:
    """2xx, 4xx or 503, with a JSON body; errors carry ``error`` (a message) and ``field``."""
    status = response.status_code
    context = f"{response.request.method} {path} -> {status}: {response.text[:300]!r}"
    assert 200 <= status < 300 or 400 <= status < 500 or status == 503, context
    if status < 300 and path in NOT_JSON_ROUTES:
        return
    assert response.headers["content-type"].startswith("application/json"), context
    body = response.json()
    if status >= 400:
        assert set(body) == {"error", "field"}, context
        assert isinstance(body["error"], str) and body["error"], context
        assert body["field"] is None or isinstance(body["field"], str), context


def check_alive(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    answer = client.post("/v1/predict", json={"inputs": ["a b c"]}, headers=AUTH)
    assert answer.status_code == 200 and len(answer.json()["outputs"]) == 1
    metrics = client.get("/metrics", headers=AUTH).text
    assert not re.search(r'status="5(?!03")\d\d"', metrics), metrics


# ---------------------------------------------------------------------------- from the OpenAPI schema

texts = st.text(max_size=60)
# Values of any JSON type, a few levels deep (the schema's free-form objects and wrong types).
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                           max_leaves=12)
# Inputs shaped as the tasks take them, so that many requests reach the model.
task_inputs = st.lists(texts | st.fixed_dictionaries({"text": texts}, optional={"text_pair": texts | json_values})
                       | st.fixed_dictionaries({"question": texts, "context": texts}), min_size=1, max_size=10)
headers = st.fixed_dictionaries({}, optional={
    # as bytes: any latin-1 octet, as HTTP carries them (the client would refuse non-ASCII str)
    "Authorization": st.just(AUTH["Authorization"].encode()) | st.binary(max_size=30).map(
        lambda raw: bytes(b for b in raw if b >= 32 and b != 127)),
    "Content-Type": st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]),
})
queries = st.dictionaries(st.text(st.characters(codec="ascii"), min_size=1, max_size=8), texts, max_size=3)


def request_for(operation: tuple[str, str, dict]) -> st.SearchStrategy[dict]:
    """Requests for one operation: a body from its request schema (or none), or off-schema ones."""
    path, method, spec = operation
    schema = spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    bodies = st.just(None) | json_values
    if schema is not None:
        bodies = from_schema(schema) | st.builds(lambda inputs: {"inputs": inputs}, task_inputs) | bodies
    return st.fixed_dictionaries({"path": st.just(path), "method": st.just(method), "json": bodies,
                                  "headers": st.just(AUTH) | headers, "params": st.just({}) | queries})


def test_every_operation_of_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operations = [(path, method.upper(), spec) for path, item in schema["paths"].items()
                  for method, spec in item.items()]
    assert {(path, method) for path, method, _ in operations} >= {
        ("/v1/predict", "POST"), ("/v1/embed", "POST"), ("/v1/model", "GET"), ("/health", "GET"),
        ("/ready", "GET"), ("/metrics", "GET"), ("/", "GET")}
    seen: dict[int, int] = {}

    @fuzz_settings(300)
    @given(st.sampled_from(operations).flatmap(request_for))
    def check(request: dict) -> None:
        body = request["json"]
        content = None if body is None else json.dumps(body).encode()
        response = client.request(request["method"], request["path"], content=content,
                                  headers=request["headers"], params=request["params"])
        check_response(response, request["path"])
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    check()
    check_alive(client)
    assert seen.get(200, 0) > 20 and seen.get(422, 0) > 5, seen  # the model ran, and refusals were exercised


# ---------------------------------------------------------------------------- raw bodies


def nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


lone_surrogates = st.integers(0xD800, 0xDFFF).map(chr)
with_surrogate = st.tuples(texts, lone_surrogates, texts).map("".join)
huge_numbers = st.one_of(
    st.integers(300, 6000).map(lambda n: "9" * n),
    st.integers(300, 6000).map(lambda n: "-0." + "1" * n),
    st.sampled_from(["1e999999", "-1e400", "1e-400", "NaN", "Infinity", "-Infinity", "-0", "0.0e0"]),
)
deep = st.integers(MAX_JSON_DEPTH - 2, 6000)
json_texts = st.one_of(
    # deep nesting, closed or not, at the top or inside inputs / an input
    st.builds(nested, deep),
    deep.map(lambda n: "[" * n),
    deep.map(lambda n: '{"inputs": ' + nested(n, '"a"') + "}"),
    deep.map(lambda n: '{"inputs": [{"text": "a", "text_pair": ' + nested(n) + "}]}"),
    deep.map(lambda n: '{"a":' * n + "1" + "}" * n),
    deep.map(lambda n: '{"inputs": ["' + "[" * n + '"]}'),  # brackets inside a string are text
    # lone surrogates as JSON escapes: in a text, a pair text, a field name, the body's keys
    with_surrogate.map(lambda s: json.dumps({"inputs": [s]})),
    st.tuples(texts, with_surrogate).map(lambda t: json.dumps({"inputs": [{"text": t[0] or "a", "text_pair": t[1]}]})),
    with_surrogate.map(lambda s: json.dumps({"inputs": [{s: "a"}]})),
    with_surrogate.map(lambda s: json.dumps({s: ["a"]})),
    # huge and non-JSON numbers, as the inputs or one of them
    huge_numbers.map(lambda n: '{"inputs": ' + n + "}"),
    huge_numbers.map(lambda n: '{"inputs": ["a", ' + n + "]}"),
    # wrong types anywhere
    json_values.map(json.dumps),
    json_values.map(lambda v: json.dumps({"inputs": v})),
    json_values.map(lambda v: json.dumps({"inputs": ["a", v]})),
    # any text at all, JSON or not
    st.text(max_size=200),
)
raw_bodies = st.one_of(
    st.binary(max_size=300),
    json_texts.map(lambda t: t.encode("utf-8", "surrogatepass")),  # UTF-8 bytes of surrogates too
    st.tuples(json_texts, st.sampled_from(["utf-16", "utf-16-le", "utf-32", "utf-8-sig", "latin-1"])).map(
        lambda t: t[0].encode(t[1], "surrogatepass" if t[1].startswith("utf") else "replace")),
    st.tuples(json_texts, st.integers(0, 200)).map(lambda t: t[0].encode("utf-8", "surrogatepass")[: t[1]]),
)


def test_raw_bodies(client: TestClient) -> None:
    seen: dict[int, int] = {}

    @fuzz_settings(500)
    @given(st.sampled_from(["/v1/predict", "/v1/embed"]), raw_bodies)
    def check(path: str, body: bytes) -> None:
        response = client.post(path, content=body, headers={**AUTH, "Content-Type": "application/json"})
        check_response(response, path)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    check()
    check_alive(client)
    assert seen.get(400, 0) > 20 and seen.get(422, 0) > 20, seen


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (nested(5000).encode(), None),
        (b'{"inputs": ' + nested(5000).encode() + b"}", "inputs[0]"),
        (b'{"inputs": ["a", ' + nested(5000).encode() + b"]}", "inputs[1]"),
        (b'{"inputs": {"text": ' + nested(5000).encode() + b"}}", "inputs"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "a"),
    ],
)
def test_deep_nesting_is_refused_naming_the_field(client: TestClient, body: bytes, field: str | None) -> None:
    response = client.post("/v1/predict", content=body, headers=AUTH)
    assert response.status_code == 400 and response.json()["field"] == field, response.text
    assert f"more than {MAX_JSON_DEPTH} deep" in response.json()["error"]


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


# Chains deep enough to cross the limit, with strings full of brackets and separators on the way.
tricky_texts = st.text(st.sampled_from('[]{}",:\\ a\u00e9'), max_size=8)
chains = st.recursive(st.none() | tricky_texts | st.integers(),
                      lambda inner: st.lists(inner, min_size=1, max_size=3)
                      | st.dictionaries(tricky_texts, inner, min_size=1, max_size=3), max_leaves=60)


@fuzz_settings(200)
@given(chains, st.integers(1, 40), st.booleans())
def test_nesting_scan_agrees_with_the_decoder(value: Any, limit: int, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert _nested_too_deep(text, limit)[0] == (depth_of(value) > limit)
