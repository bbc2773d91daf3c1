"""nlpforge: from a pretrained transformer and a small labelled dataset to a small, fast model in production."""

__version__ = "0.1.0"
