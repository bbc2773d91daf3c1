"""HTTP serving: ``create_app`` (FastAPI adapter over ``Predictor``), the dynamic batcher, metrics
and the closed-loop load generator behind ``nlpforge bench-serve``."""
