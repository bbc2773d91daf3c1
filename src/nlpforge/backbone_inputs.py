"""What an encoder expects in front of its input text, beyond its tokens.

E5 encoders (Wang et al. 2022) were trained with ``"query: "`` / ``"passage: "`` in front of every
text; retrieval gives queries and passages their prefix (qa/retrieval.py). Text classification takes
a prefix only when asked (``--text-prefix``, ``DataOptions.text_prefix``): fine-tuning adapts the
encoder to the bare text, and on TNEWS with 50 examples ``"query: "`` left the accuracy where it was.
A checkpoint records its prefix, so that what is trained from it, predict and serve add it too.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from nlpforge.data.options import DataOptions

_E5_NAME = re.compile(r"(?<![a-z0-9])e5(?![a-z0-9])")  # "multilingual-e5-small", not "be5t"


def is_e5(model: str | Path) -> bool:
    """Whether a model directory (or hub name) names an E5 encoder. A hub cache snapshot
    (``models--intfloat--multilingual-e5-small/snapshots/<hash>``) is named by its repository."""
    path = Path(model)
    name = path.parent.parent.name if path.parent.name == "snapshots" else path.name
    return bool(_E5_NAME.search(name.lower()))


def e5_prefixes(encoder: str | Path) -> tuple[str, str]:
    """The (query, passage) prefixes an encoder was trained with: E5's, or none."""
    return ("query: ", "passage: ") if is_e5(encoder) else ("", "")


def with_text_prefix(data: DataOptions, base_meta: dict[str, Any]) -> DataOptions:
    """``data`` with ``text_prefix`` settled before training on a base model: as given, else what the
    base checkpoint was trained with (its nlpforge.json), else none."""
    if data.text_prefix is not None:
        return data
    return dataclasses.replace(data, text_prefix=(base_meta.get("data") or {}).get("text_prefix") or "")
