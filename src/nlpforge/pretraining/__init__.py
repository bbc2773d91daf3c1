"""Pre-training objectives, one file each, and the registry: the one place that maps an
``--objective`` name to its objective. ``pretraining/objective.py`` defines what one provides.
"""

from __future__ import annotations

from collections.abc import Callable

from nlpforge.errors import ConfigError
from nlpforge.pretraining.clm import CausalLMObjective
from nlpforge.pretraining.mlm import MaskedLMObjective
from nlpforge.pretraining.objective import Objective
from nlpforge.pretraining.sentence_pairs import SentenceOrderObjective, SentencePairObjective
from nlpforge.pretraining.span import SpanObjective

OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "mlm": MaskedLMObjective,
    "wwm": lambda **settings: MaskedLMObjective(whole_words=True, **settings),
    "span": SpanObjective,
    "mlm+nsp": SentencePairObjective,
    "mlm+sop": SentenceOrderObjective,
    "clm": CausalLMObjective,
}


def get_objective(name: str, **settings: object) -> Objective:
    """The objective called ``name`` (``settings``: rate, static, seed for the masked ones)."""
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; the objectives are: {', '.join(OBJECTIVES)}")
    if name == "clm":
        return CausalLMObjective()
    return OBJECTIVES[name](**settings)


__all__ = ["OBJECTIVES", "Objective", "get_objective"]
