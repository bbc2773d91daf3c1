"""Question answering systems over users' data: documents (retrieve, then read), FAQs (find the similar
question), knowledge bases.

``load_qa_system(directory, reader)`` opens what a QA directory holds, for the server and the CLI:
every system has ``ask_many(questions) -> [answer dict]``, ``check_question(question, where)`` and
``describe()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nlpforge.errors import CheckpointError, ConfigError


def load_qa_system(directory: str | Path, reader: Any | None = None, top_k: int = 5) -> Any:
    """The QA system in ``directory``: a document index (read by ``reader``, a span_qa ``Predictor``), an
    FAQ index (re-ranked by ``reader`` when it is a pair classifier) or a knowledge base."""
    from nlpforge.qa.index import INDEX_FILE, QAIndex
    from nlpforge.qa.kbqa import KBQA, KBQA_FILE

    directory = Path(directory)
    if (directory / INDEX_FILE).is_file():
        from nlpforge.qa.answer import DocumentQA

        index = QAIndex.load(directory)
        if index.kind == "faq":  # the served model re-ranks when it is a pair classifier
            from nlpforge.qa.cqa import CommunityQA

            return CommunityQA(index, reader if reader is not None and reader.task == "classify" else None)
        if reader is None:
            raise ConfigError(f"{directory}: a document index needs a span_qa reader to answer from it; serve one "
                              "(`nlpforge serve READER --qa INDEX`)")
        return DocumentQA(index, reader, top_k)
    if (directory / KBQA_FILE).is_file():
        return KBQA.load(directory)
    raise CheckpointError(f"{directory}: holds no QA index ({INDEX_FILE}) or KBQA model ({KBQA_FILE}); build one with "
                          "`nlpforge qa index` or `nlpforge kbqa train`")
