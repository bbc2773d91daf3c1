"""nlpforge: from a pretrained transformer and a small labelled dataset to a small, fast model in production."""

__version__ = "0.1.0"

__all__ = ["Predictor", "__version__", "evaluate"]


def __getattr__(name: str) -> object:
    # Lazy, so that `import nlpforge` (and the CLI's start-up) does not pay for torch and transformers.
    if name == "Predictor":
        from nlpforge.predictor import Predictor

        return Predictor
    if name == "evaluate":
        from nlpforge.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'nlpforge' has no attribute {name!r}")
