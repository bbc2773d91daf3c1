"""Passage retrieval: BM25 (``bm25s``), dense (encoder embeddings + ``faiss``) and their fusion.

BM25 terms: Chinese runs are segmented into words with jieba, other text is lower-cased and split
into letters-and-digits words. Dense: the mean-pooled embedding of an nlpforge encoder checkpoint,
L2-normalised, searched by inner product (cosine) in a flat ``faiss`` index; e5-family encoders
get their ``"query: "`` / ``"passage: "`` prefixes. Hybrid: reciprocal rank fusion (Cormack et al.
2009) of the two rankings, ``sum 1 / (60 + rank)``, which needs no score calibration.
Both indexes are saved without pickle (bm25s's numpy arrays + JSON; faiss's own format).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlpforge.errors import ConfigError

RETRIEVERS = ("bm25", "dense", "hybrid")
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al.)
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"\w+")
BM25_DIR, DENSE_FILE = "bm25", "dense.faiss"


def bm25_terms(text: str) -> list[str]:
    """The BM25 terms of ``text``: jieba words for Chinese runs, lower-cased words elsewhere."""
    terms: list[str] = []
    position = 0
    for match in _CJK_RUN.finditer(text):
        terms += _WORD.findall(text[position:match.start()].lower())
        terms += [word for word in _jieba().lcut(match.group()) if word.strip()]
        position = match.end()
    terms += _WORD.findall(text[position:].lower())
    return terms


def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # not its "Building prefix dict ..." lines on stderr
    return jieba


@dataclass
class Hit:
    """One retrieved passage: its index in the passage list and its retrieval score."""

    passage: int
    score: float


class BM25Index:
    """``bm25s`` over the passages' terms."""

    def __init__(self, retriever) -> None:
        self.retriever = retriever

    @classmethod
    def build(cls, texts: Sequence[str]) -> BM25Index:
        import bm25s

        retriever = bm25s.BM25()
        # an empty passage still takes its place, so indices stay aligned with the passage list
        retriever.index([bm25_terms(text) or [""] for text in texts], show_progress=False)
        return cls(retriever)

    def search(self, query: str, k: int) -> list[Hit]:
        vocabulary = self.retriever.vocab_dict
        terms = [term for term in bm25_terms(query) if term in vocabulary]
        if not terms:
            return []
        k = min(k, self.retriever.scores["num_docs"])
        ids, scores = self.retriever.retrieve([terms], k=k, show_progress=False)
        return [Hit(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]

    def save(self, directory: Path) -> None:
        self.retriever.save(str(directory / BM25_DIR), show_progress=False)

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        import bm25s

        return cls(bm25s.BM25.load(str(directory / BM25_DIR), show_progress=False))


class DenseIndex:
    """A flat inner-product ``faiss`` index of L2-normalised passage embeddings."""

    def __init__(self, index, encoder, tokenizer, query_prefix: str = "", max_length: int = 256) -> None:
        self.index, self.encoder, self.tokenizer = index, encoder, tokenizer
        self.query_prefix, self.max_length = query_prefix, max_length

    @staticmethod
    def embed(encoder, tokenizer, texts: Sequence[str], max_length: int, progress: bool = False) -> np.ndarray:
        """(N, H) float32 unit vectors: mean-pooled embeddings of ``texts``."""
        from nlpforge.embed import embed_texts

        vectors = embed_texts(encoder, tokenizer, texts, "mean", 32, max_length, progress=progress)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    @classmethod
    def build(cls, texts: Sequence[str], encoder, tokenizer, prefixes: tuple[str, str], max_length: int = 256,
              progress: bool = True) -> DenseIndex:
        import faiss

        vectors = cls.embed(encoder, tokenizer, [prefixes[1] + text for text in texts], max_length, progress)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(index, encoder, tokenizer, prefixes[0], max_length)

    def search(self, query: str, k: int) -> list[Hit]:
        vector = self.embed(self.encoder, self.tokenizer, [self.query_prefix + query], self.max_length)
        scores, ids = self.index.search(vector, min(k, self.index.ntotal))
        return [Hit(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def save(self, directory: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(directory / DENSE_FILE))

    @classmethod
    def load(cls, directory: Path, encoder, tokenizer, query_prefix: str, max_length: int) -> DenseIndex:
        import faiss

        return cls(faiss.read_index(str(directory / DENSE_FILE)), encoder, tokenizer, query_prefix, max_length)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """The top ``k`` passages by ``sum over rankings of 1 / (RRF_K + rank)`` (ranks from 1)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            fused[hit.passage] = fused.get(hit.passage, 0.0) + 1.0 / (RRF_K + rank)
    return [Hit(p, s) for p, s in sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]]


def check_retriever(retriever: str) -> str:
    if retriever not in RETRIEVERS:
        raise ConfigError(f"--retriever {retriever!r}: choose one of {', '.join(RETRIEVERS)}")
    return retriever
