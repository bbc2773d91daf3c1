"""The document QA index directory: passages + a BM25 and/or dense index, written atomically.

``INDEX/`` holds ``index.json`` (retriever, encoder, passage size, counts), ``passages.jsonl``
(one ``Passage`` a line: id, document, title, start, end, text), ``bm25/`` (bm25s) and/or
``dense.faiss``. The encoder of a dense index is recorded by path and loaded again at search time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from nlpforge.backbone_inputs import e5_prefixes
from nlpforge.checkpoint import write_directory_atomically
from nlpforge.errors import CheckpointError, ConfigError, InputDataError
from nlpforge.qa.documents import Passage, read_documents, split_passages
from nlpforge.qa.retrieval import (
    BM25Index,
    DenseIndex,
    Hit,
    check_retriever,
    reciprocal_rank_fusion,
)

INDEX_FILE, PASSAGES_FILE = "index.json", "passages.jsonl"
CANDIDATES = 100  # passages each retriever ranks before fusion


@dataclass
class QAIndex:
    """Passages and the retrievers over them."""

    directory: Path
    passages: list[Passage]
    record: dict[str, Any]
    bm25: BM25Index | None = None
    dense: DenseIndex | None = None

    @property
    def retriever(self) -> str:
        return self.record["retriever"]

    @property
    def kind(self) -> str:
        """What the passages are: "documents" (nlpforge qa index) or "faq" questions (nlpforge cqa index)."""
        return self.record.get("kind", "documents")

    def search(self, question: str, k: int = 5, retriever: str | None = None) -> list[tuple[Passage, float]]:
        """The ``k`` best passages for ``question`` with their scores (BM25, cosine, or fused rank score)."""
        retriever = check_retriever(retriever or self.retriever)
        if retriever != self.retriever and self.retriever != "hybrid":
            raise ConfigError(f"{self.directory}: was built for {self.retriever} retrieval; rebuild it with "
                              f"--retriever {retriever} (or hybrid, which holds both)")
        if retriever == "bm25":
            hits = self.bm25.search(question, k)
        elif retriever == "dense":
            hits = self.dense.search(question, k)
        else:
            pool = max(k, CANDIDATES)
            hits = reciprocal_rank_fusion([self.bm25.search(question, pool), self.dense.search(question, pool)], k)
        return [(self.passages[hit.passage], hit.score) for hit in hits]

    @classmethod
    def load(cls, directory: str | Path) -> QAIndex:
        directory = Path(directory)
        if not (directory / INDEX_FILE).is_file():
            raise CheckpointError(f"{directory}: is not a QA index (no {INDEX_FILE}); build one with "
                                  "`nlpforge qa index DOCS... --out DIR`")
        record = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
        passages = [Passage(**json.loads(line)) for line in
                    (directory / PASSAGES_FILE).read_text(encoding="utf-8").splitlines() if line]
        index = cls(directory, passages, record)
        if record["retriever"] in ("bm25", "hybrid"):
            index.bm25 = BM25Index.load(directory)
        if record["retriever"] in ("dense", "hybrid"):
            from nlpforge.checkpoint import load_checkpoint
            from nlpforge.tasks import encoder_of

            try:
                encoder = load_checkpoint(record["encoder"])
            except CheckpointError as error:
                raise CheckpointError(f"{directory}: cannot load its encoder {record['encoder']} ({error})") from None
            index.dense = DenseIndex.load(directory, encoder_of(encoder.model).eval(), encoder.tokenizer,
                                          record["query_prefix"], record["max_length"])
        return index


def build_index(sources: Sequence[str | Path], out: str | Path, retriever: str = "bm25", encoder: str | None = None,
                passage_chars: int = 600, max_length: int = 256, encoding: str = "utf-8",
                progress: bool = True) -> QAIndex:
    """Read ``sources``, cut them into passages, index them for ``retriever`` and write ``out``."""
    check_retriever(retriever)
    passages: list[Passage] = []
    for document in tqdm(read_documents(sources, encoding), desc="read", unit="doc", disable=not progress):
        passages += split_passages(document, passage_chars, len(passages))
    if not passages:
        raise InputDataError(f"{', '.join(map(str, sources))}: no text to index (every document is empty)")
    record = {"kind": "documents", "passage_chars": passage_chars, "sources": [str(s) for s in sources]}
    return index_passages(passages, out, retriever, encoder, max_length, record, progress=progress)


def index_passages(passages: list[Passage], out: str | Path, retriever: str, encoder: str | None, max_length: int,
                   record: dict[str, Any], write_more: Callable[[Path], None] | None = None,
                   progress: bool = True) -> QAIndex:
    """Index ``passages`` for ``retriever`` and write the directory atomically (``write_more(tmp)``
    adds files of the caller's: a FAQ's answers)."""
    check_retriever(retriever)
    if retriever != "bm25" and not encoder:
        raise ConfigError(f"--retriever {retriever} embeds passages: give --encoder CKPT (a sentence-embedding "
                          "checkpoint such as multilingual-e5-small)")
    texts = [passage.text for passage in passages]
    bm25 = BM25Index.build(texts) if retriever in ("bm25", "hybrid") else None
    dense = None
    record = {**record, "retriever": retriever, "passages": len(passages),
              "documents": len({p.document for p in passages})}
    if retriever in ("dense", "hybrid"):
        from nlpforge.checkpoint import load_checkpoint
        from nlpforge.tasks import encoder_of

        loaded = load_checkpoint(encoder)
        if loaded.tokenizer is None:
            raise ConfigError(f"{encoder}: has no tokenizer files; the encoder needs its tokenizer")
        prefixes = e5_prefixes(str(loaded.path))
        dense = DenseIndex.build(texts, encoder_of(loaded.model).eval(), loaded.tokenizer, prefixes, max_length,
                                 progress)
        record.update({"encoder": str(Path(loaded.path).resolve()), "query_prefix": prefixes[0],
                       "passage_prefix": prefixes[1], "max_length": max_length})

    def write(tmp: Path) -> None:
        with (tmp / PASSAGES_FILE).open("w", encoding="utf-8") as file:
            for passage in passages:
                file.write(json.dumps(passage.to_json(), ensure_ascii=False) + "\n")
        if bm25 is not None:
            bm25.save(tmp)
        if dense is not None:
            dense.save(tmp)
        if write_more is not None:
            write_more(tmp)
        (tmp / INDEX_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    directory = write_directory_atomically(Path(out), write, last=INDEX_FILE)
    return QAIndex(directory, passages, record, bm25, dense)


__all__ = ["Hit", "QAIndex", "build_index", "index_passages"]
