"""Every YAML in examples/ parses into the options of the command named on its first line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT
from nlpforge.cli import _read_yaml
from nlpforge.recipes.finetune import FinetuneArgs

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses(path: Path) -> None:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == f"# nlpforge train --config examples/{path.name}"
    values = _read_yaml(path)
    args = FinetuneArgs(**values)
    assert args.task in ("classify", "tag", "span_qa")


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3
