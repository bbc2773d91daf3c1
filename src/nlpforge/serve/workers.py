"""How a model instance runs a batch for the server: ``(kind, inputs) -> results``.

``kind`` is "predict" (inputs already checked by ``Predictor.parse``; "predict:NAME" under the LoRA
adapter NAME), "embed" (strings), "qa" (questions for the instance's QA system) or
"generate" ((prompt, GenerationOptions) pairs of a language model, run one after another). The
batcher calls a worker from that instance's own thread; torch and onnxruntime release the GIL
inside their kernels, so the event loop keeps answering while a batch runs.
"""

from __future__ import annotations

from typing import Any

from nlpforge.generation import GenerationOptions
from nlpforge.predictor import Predictor


def run_on(predictor: Predictor | None, kind: str, inputs: list[Any], qa: Any | None = None) -> list[Any]:
    """One batch on ``predictor``: predictions, embeddings as lists of floats (JSON-ready), or answers of ``qa``."""
    if kind == "qa":
        return qa.ask_many(inputs)
    if kind == "embed":
        return [vector.tolist() for vector in predictor.embed(inputs)]
    if kind == "generate":
        return [predictor.generate(prompt, options)[0] for prompt, options in inputs]
    kind, _, adapter = kind.partition(":")
    return predictor.predict_parsed(inputs, adapter or None)


def warm_up(predictor: Predictor, run: Any) -> None:
    """One small call through ``run`` so the first request does not pay for lazy initialisation."""
    if predictor.generates:
        run("generate", [("warm up", GenerationOptions(max_new_tokens=2, temperature=0.0))])
    elif predictor.task_spec is None:
        run("embed", ["warm up"])
    else:
        run("predict", [predictor.parse(predictor.task_spec.warmup_input, "warm-up")])


class ThreadWorker:
    """Runs batches on a predictor in the calling thread (the batcher's worker thread)."""

    def __init__(self, predictor: Predictor | None, qa: Any | None = None) -> None:
        # qa: a QA system over this predictor (nlpforge.qa); no predictor: a QA system that needs none
        self.predictor, self.qa = predictor, qa

    def __call__(self, kind: str, inputs: list[Any]) -> list[Any]:
        try:
            return run_on(self.predictor, kind, inputs, self.qa)
        except Exception:
            raise
        except BaseException as error:
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            # A Rust panic inside tokenizers arrives as pyo3's PanicException, a BaseException: the
            # batcher's collector would die of it and every later request would wait until its 504.
            # As an Exception it fails this batch's requests only.
            raise RuntimeError(f"{kind} batch of {len(inputs)} input(s) failed: {error}") from error
