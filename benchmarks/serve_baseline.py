"""The server most teams write first: FastAPI + ``transformers.pipeline`` called once per request.

    python benchmarks/serve_baseline.py MODEL_DIR --port 8001

Same request and response shape as ``nlpforge serve``'s ``/v1/predict``, so ``nlpforge bench-serve``
drives both. The endpoint is a plain ``def`` (FastAPI runs it in its thread pool), as in the usual
tutorials; no batching across requests.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from transformers import pipeline


def create_app(model: str) -> FastAPI:
    classifier = pipeline("text-classification", model=model, tokenizer=model, device="cpu")
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict:
        return {"ready": True}

    @app.post("/v1/predict")
    def predict(body: dict) -> dict:
        return {"outputs": classifier(body["inputs"], truncation=True)}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
