"""HTTP serving: ``build_app`` (a served artifact, with its model instances) and ``create_app`` (the
FastAPI adapter over ``Predictor``), the dynamic batcher, metrics and the closed-loop load generator
behind ``nlpforge bench-serve``."""


def __getattr__(name: str) -> object:
    # Lazy, so that importing a submodule (the load generator) does not load FastAPI and torch.
    if name in ("build_app", "create_app", "ServeSettings"):
        from nlpforge.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'nlpforge.serve' has no attribute {name!r}")
