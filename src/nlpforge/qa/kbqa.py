"""Knowledge-base QA: entity linking, relation-path prediction, a generated SPARQL query, answer ranking.

The classic pipeline over a knowledge base of (subject, relation, object) triples held in
``rdflib``:

1. Question understanding: the topic entity is linked by string match (the longest run of
   question words equal to an entity's name, underscores read as spaces, case ignored), falling
   back to the closest name by similarity (``difflib`` ratio >= 0.85).
2. Relation prediction over paths of 1 to ``max_hops`` hops: one classifier for the path's length
   and one per hop for its relation (TF-IDF of word 1-2-grams of the question with its topic
   mention masked, then multinomial logistic regression, trained on the training questions' gold
   paths). A path scores log P(length) + the sum of log P(relation at hop i), so a path never seen
   whole in training still scores by its parts. Only paths that exist from the topic entity in the
   knowledge base compete; the best one wins.
3. The path becomes a SPARQL query (``SELECT DISTINCT ?x3 WHERE { <e> <r1> ?x1 . ?x1 <r2> ?x2 ...}``)
   run by rdflib; answers reached by more paths rank first, then by name.

Every answer comes with its topic entity, path, SPARQL and score. The KBQA directory holds the
knowledge base as N-Triples (``kb.nt``), the classifiers (``length.*`` and ``hop<i>.*``:
safetensors + JSON, no pickle) and ``kbqa.json``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from nlpforge.data.text import read_text
from nlpforge.errors import CheckpointError, ConfigError, InputDataError

ENTITY_NS, RELATION_NS = "urn:nlpforge:entity:", "urn:nlpforge:relation:"
KBQA_FILE, KB_FILE = "kbqa.json", "kb.nt"
UNSEEN = -30.0  # log-probability of a relation (or length) no training question had at that hop
RDF_FORMATS = {".nt": "nt", ".ttl": "turtle", ".n3": "n3", ".rdf": "xml", ".xml": "xml"}
MASK = "ENTITY"
_WORD = re.compile(r"[^\s]+")


# --------------------------------------------------------------------------------------------- data


def entity_uri(name: str):
    from rdflib import URIRef

    return URIRef(ENTITY_NS + quote(name, safe=""))


def relation_uri(name: str):
    from rdflib import URIRef

    return URIRef(RELATION_NS + quote(name, safe=""))


def local_name(node: Any) -> str:
    """The name of an entity or relation node (or a literal's text)."""
    text = str(node)
    for namespace in (ENTITY_NS, RELATION_NS):
        if text.startswith(namespace):
            return unquote(text[len(namespace):])
    return text


def _triple_lines(path: Path, encoding: str) -> Iterator[tuple[int, str, str, str]]:
    for number, line in enumerate(read_text(path, encoding).splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(" ||| ")] if " ||| " in line else \
            [f.strip() for f in line.split("\t") if f.strip()]
        if len(fields) != 3:
            raise InputDataError(f"{path}:{number}: {len(fields)} column(s); a knowledge-base line is "
                                 "subject<TAB>relation<TAB>object (or subject ||| relation ||| object)")
        yield number, fields[0], fields[1], fields[2]


def load_kb(path: str | Path, encoding: str = "utf-8"):
    """An rdflib Graph of ``path``: N-Triples / Turtle / RDF-XML by suffix, else TSV or ``|||`` lines."""
    import rdflib

    path = Path(path)
    graph = rdflib.Graph()
    if path.suffix.lower() in RDF_FORMATS:
        try:
            graph.parse(str(path), format=RDF_FORMATS[path.suffix.lower()])
        except Exception as error:  # rdflib raises parser-specific exceptions
            raise InputDataError(f"{path}: not valid {RDF_FORMATS[path.suffix.lower()]} ({error})") from None
    else:
        for _, subject, relation, obj in _triple_lines(path, encoding):
            graph.add((entity_uri(subject), relation_uri(relation), entity_uri(obj)))
    if len(graph) == 0:
        raise InputDataError(f"{path}: holds no triples; a knowledge-base line is subject<TAB>relation<TAB>object")
    return graph


@dataclass
class KBQuestion:
    """A question with its answers; PathQuestion lines also give the topic entity and relation path."""

    question: str
    answers: list[str]
    topic: str | None = None
    path: tuple[str, ...] | None = None


def read_kb_questions(path: str | Path, encoding: str = "utf-8") -> list[KBQuestion]:
    """``question<TAB>answer`` lines (alternatives separated by ``|``) or PathQuestion lines
    (``question<TAB>answer(alt1/alt2/)<TAB>topic#r1#e1#r2#...``)."""
    path = Path(path)
    questions = []
    for number, line in enumerate(read_text(path, encoding).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) == 2:
            answers = [a.strip() for a in fields[1].split("|") if a.strip()]
            questions.append(KBQuestion(fields[0].strip(), answers))
        elif len(fields) == 3:
            answers = pathquestion_answers(fields[1].strip())
            hops = fields[2].strip().split("#<end>#")[0].split("#")
            if len(hops) < 3 or len(hops) % 2 == 0:
                raise InputDataError(f"{path}:{number}: the path {fields[2]!r} is not topic#relation#entity#...")
            questions.append(KBQuestion(fields[0].strip(), answers, hops[0], tuple(hops[1::2])))
        else:
            raise InputDataError(f"{path}:{number}: {len(fields)} column(s); a question line is question<TAB>answer "
                                 "(alternatives separated by |) or PathQuestion's question<TAB>answer<TAB>path")
        if not questions[-1].question or not questions[-1].answers:
            raise InputDataError(f"{path}:{number}: needs a question and at least one answer")
    if not questions:
        raise InputDataError(f"{path}: holds no questions")
    return questions


def pathquestion_answers(field: str) -> list[str]:
    """``answer(alt1/alt2/)`` -> [answer, alt1, alt2] without repeats (names may hold parentheses)."""
    for at in (i for i, char in enumerate(field) if char == "(" and field.endswith(")")):
        answer, alternatives = field[:at], [a for a in field[at + 1:-1].split("/") if a]
        if answer in alternatives:
            return list(dict.fromkeys([answer, *alternatives]))
    return [field]


# --------------------------------------------------------------------------------------------- linking


def _normal(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").split())


class EntityLinker:
    """Topic entities of a question by name: exact runs of words first, then the most similar name."""

    def __init__(self, names: Sequence[str], max_words: int = 12) -> None:
        self.by_name: dict[str, list[str]] = {}  # normalised name -> entities (names differing in case)
        for name in sorted(names):
            self.by_name.setdefault(_normal(name), []).append(name)
        self.max_words = max_words

    @staticmethod
    def _pick(entities: list[str], mention: str) -> str:
        """The entity written as the mention (underscores for spaces), else the first."""
        written = mention.replace(" ", "_")
        return next((e for e in entities if e in (written, mention)), entities[0])

    def mentions(self, question: str) -> list[tuple[str, str]]:
        """(entity, mention) pairs, longest mentions first; similar names only when nothing matches exactly."""
        words = _WORD.findall(question)
        found: list[tuple[str, str]] = []
        for size in range(min(self.max_words, len(words)), 0, -1):
            for first in range(len(words) - size + 1):
                mention = " ".join(words[first:first + size])
                entities = self.by_name.get(_normal(mention))
                if entities is not None:
                    entity = self._pick(entities, mention)
                    if all(entity != e for e, _ in found):
                        found.append((entity, mention))
        if found:
            return found
        # entities are written as single tokens (with underscores) or runs; compare every run to the names
        names = list(self.by_name)
        for size in range(min(4, len(words)), 0, -1):
            for first in range(len(words) - size + 1):
                mention = " ".join(words[first:first + size])
                close = difflib.get_close_matches(_normal(mention), names, n=1, cutoff=0.85)
                if close:
                    found.append((self._pick(self.by_name[close[0]], mention), mention))
        return found


def masked(question: str, mention: str | None) -> str:
    """The question with its topic mention replaced by a placeholder, lower-cased (the classifier's input)."""
    if mention:
        question = question.replace(mention, f" {MASK} ", 1)
    return " ".join(question.lower().split())


# --------------------------------------------------------------------------------------------- paths


class TextClassifier:
    """TF-IDF word 1-2-grams -> multinomial logistic regression over string labels, saved without pickle."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                 classes: list[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"[^\s]+", vocabulary=vocabulary,
                                          sublinear_tf=True)
        self.vectorizer.idf_ = idf
        self.coef, self.intercept, self.classes = coef, intercept, classes
        self.index = {label: i for i, label in enumerate(classes)}

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[str], c: float = 20.0) -> TextClassifier:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vectorizer = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"[^\s]+", sublinear_tf=True)
        features = vectorizer.fit_transform(texts)
        classes = sorted(set(labels))
        if len(classes) == 1:  # one label: nothing to choose
            return cls(vectorizer.vocabulary_, vectorizer.idf_, np.zeros((1, features.shape[1])), np.zeros(1), classes)
        model = LogisticRegression(C=c, max_iter=2000).fit(features, labels)
        coef, intercept = model.coef_, model.intercept_
        if len(classes) == 2:  # sklearn keeps one row for two classes: log-odds of the second
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        return cls(vectorizer.vocabulary_, vectorizer.idf_, coef, intercept, list(model.classes_))

    def log_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C) log-probabilities of the labels."""
        logits = self.vectorizer.transform(texts) @ self.coef.T + self.intercept  # (N, C)
        logits = np.asarray(logits)
        return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)

    def log_probability(self, log_probabilities: np.ndarray, label: str) -> float:
        """One label's entry of a ``log_probabilities`` row; ``UNSEEN`` for a label never trained on."""
        return float(log_probabilities[self.index[label]]) if label in self.index else UNSEEN

    def save(self, directory: Path, name: str) -> None:
        from safetensors.numpy import save_file

        # C order: safetensors writes the raw buffer, and sklearn's coef_ may be Fortran-ordered
        arrays = {"idf": self.vectorizer.idf_, "coef": self.coef, "intercept": self.intercept}
        save_file({key: np.ascontiguousarray(array, dtype=np.float64) for key, array in arrays.items()},
                  str(directory / f"{name}.safetensors"))
        record = {"classes": self.classes, "vocabulary": {k: int(v) for k, v in self.vectorizer.vocabulary_.items()}}
        (directory / f"{name}.json").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, name: str) -> TextClassifier:
        from safetensors.numpy import load_file

        arrays = load_file(str(directory / f"{name}.safetensors"))
        record = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
        return cls(record["vocabulary"], arrays["idf"], arrays["coef"], arrays["intercept"], record["classes"])


@dataclass
class PathScorer:
    """log P(path length) + sum over hops of log P(relation at that hop), each from the masked question."""

    lengths: TextClassifier
    hops: list[TextClassifier]  # hop i's relation classifier (questions whose paths have more than i hops)

    @classmethod
    def fit(cls, texts: Sequence[str], paths: Sequence[tuple[str, ...]]) -> PathScorer:
        hops = []
        for hop in range(max(len(path) for path in paths)):
            kept = [i for i, path in enumerate(paths) if len(path) > hop]
            hops.append(TextClassifier.fit([texts[i] for i in kept], [paths[i][hop] for i in kept]))
        return cls(TextClassifier.fit(texts, [str(len(path)) for path in paths]), hops)

    def scores(self, text: str, paths: Sequence[tuple[str, ...]]) -> list[float]:
        """The score of each path (relations) for one masked question."""
        length = self.lengths.log_probabilities([text])[0]
        per_hop = [hop.log_probabilities([text])[0] for hop in self.hops]
        return [self.lengths.log_probability(length, str(len(path)))
                + sum(self.hops[i].log_probability(per_hop[i], relation) if i < len(self.hops) else UNSEEN
                      for i, relation in enumerate(path))
                for path in paths]

    @property
    def relations(self) -> int:
        return len({label for hop in self.hops for label in hop.classes})

    def save(self, directory: Path) -> None:
        self.lengths.save(directory, "length")
        for i, hop in enumerate(self.hops):
            hop.save(directory, f"hop{i}")

    @classmethod
    def load(cls, directory: Path, hops: int) -> PathScorer:
        return cls(TextClassifier.load(directory, "length"), [TextClassifier.load(directory, f"hop{i}")
                                                              for i in range(hops)])


def sparql_for(topic: str, relations: Sequence[str]) -> str:
    """SELECT DISTINCT ?xN WHERE { <topic> <r1> ?x1 . ?x1 <r2> ?x2 . ... }"""
    patterns, subject = [], f"<{entity_uri(topic)}>"
    for hop, relation in enumerate(relations, start=1):
        patterns.append(f"{subject} <{relation_uri(relation)}> ?x{hop} .")
        subject = f"?x{hop}"
    return f"SELECT DISTINCT {subject} WHERE {{ {' '.join(patterns)} }}"


# --------------------------------------------------------------------------------------------- the system


class KBQA:
    """A knowledge base, an entity linker and a path scorer: ``ask(question)`` -> answers with SPARQL."""

    def __init__(self, graph, scorer: PathScorer | None, max_hops: int = 3, directory: Path | None = None) -> None:
        self.graph, self.scorer, self.max_hops, self.directory = graph, scorer, max_hops, directory
        self.trained_on = 0  # training questions the scorer learnt from (train)
        entities = {local_name(node) for node in set(graph.subjects()) | set(graph.objects())}
        self.linker = EntityLinker(sorted(entities))

    def paths_from(self, topic: str) -> dict[tuple[str, ...], Counter]:
        """Every relation path of 1..max_hops hops from ``topic`` -> the answers it reaches (with counts)."""
        found: dict[tuple[str, ...], Counter] = {}
        frontier: dict[tuple[str, ...], Counter] = {(): Counter({entity_uri(topic): 1})}
        for _ in range(self.max_hops):
            following: dict[tuple[str, ...], Counter] = {}
            for path, nodes in frontier.items():
                for node, count in nodes.items():
                    for relation, obj in self.graph.predicate_objects(node):
                        key = (*path, local_name(relation))
                        following.setdefault(key, Counter())[obj] += count
            found.update(following)
            frontier = following
        return found

    def ask(self, question: str) -> dict[str, Any]:
        return self.ask_many([question])[0]

    def ask_many(self, questions: Sequence[str]) -> list[dict[str, Any]]:
        return [self._answer(question) for question in questions]

    def _answer(self, question: str) -> dict[str, Any]:
        best: dict[str, Any] | None = None
        for topic, mention in self.linker.mentions(question)[:3]:
            reachable = list(self.paths_from(topic))
            if not reachable:
                continue
            scores = self.scorer.scores(masked(question, mention), reachable)
            score, path = max(zip(scores, reachable, strict=True))
            if best is None or score > best["score"]:
                best = {"topic": topic, "mention": mention, "path": list(path), "score": score}
        if best is None:
            return {"answer": "", "answers": [], "score": None, "topic_entity": None, "path": None, "sparql": None}
        sparql = sparql_for(best["topic"], best["path"])
        counts = self.paths_from(best["topic"])[tuple(best["path"])]
        answers = sorted({local_name(row[0]) for row in self.graph.query(sparql)},
                         key=lambda name: (-counts[entity_uri(name)], name))
        return {"answer": answers[0] if answers else "", "answers": answers, "score": round(best["score"], 4),
                "topic_entity": best["topic"], "path": best["path"], "sparql": sparql}

    def check_question(self, question: str, where: str) -> None:
        if not question.strip():
            raise InputDataError(f"{where}: is empty; ask a question")

    def describe(self) -> dict[str, Any]:
        return {"kind": "knowledge base", "directory": str(self.directory), "triples": len(self.graph),
                "relations": self.scorer.relations, "max_hops": self.max_hops}

    # ------------------------------------------------------------------ training, saving, loading

    @classmethod
    def train(cls, graph, questions: Sequence[KBQuestion], max_hops: int = 3) -> KBQA:
        """Fit the path scorer on ``questions``: their gold paths, or (plain question/answer pairs) the
        shortest path from the linked topic entity that reaches a gold answer."""
        system = cls(graph, None, max_hops)
        texts: list[str] = []
        paths: list[tuple[str, ...]] = []
        for item in questions:
            mentions = system.linker.mentions(item.question)
            mention = next((m for e, m in mentions if e == item.topic), None) if item.topic else None
            path = item.path
            if path is None:
                path, mention = system._path_to_answers(mentions, item.answers)
            if path is None or not 1 <= len(path) <= max_hops:
                continue
            texts.append(masked(item.question, mention))
            paths.append(tuple(path))
        if not paths:
            raise InputDataError("no training question could be linked to a path of the knowledge base; check that "
                                 "the questions name entities of the knowledge base and that their answers are in it")
        system.scorer = PathScorer.fit(texts, paths)
        system.trained_on = len(paths)
        return system

    def _path_to_answers(self, mentions: list[tuple[str, str]], answers: Sequence[str]
                         ) -> tuple[tuple[str, ...] | None, str | None]:
        gold = {entity_uri(a) for a in answers}
        for topic, mention in mentions:
            reaching = [p for p, nodes in self.paths_from(topic).items() if gold & set(nodes)]
            if reaching:
                return min(reaching, key=len), mention
        return None, None

    def save(self, out: str | Path, record: dict[str, Any]) -> Path:
        from nlpforge.checkpoint import write_directory_atomically

        def write(tmp: Path) -> None:
            self.graph.serialize(str(tmp / KB_FILE), format="nt", encoding="utf-8")
            self.scorer.save(tmp)
            (tmp / KBQA_FILE).write_text(json.dumps({**record, "max_hops": self.max_hops,
                                                     "triples": len(self.graph), "hops": len(self.scorer.hops),
                                                     "relations": self.scorer.relations}, indent=2,
                                                    ensure_ascii=False) + "\n", encoding="utf-8")

        return write_directory_atomically(Path(out), write, last=KBQA_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> KBQA:
        import rdflib

        directory = Path(directory)
        if not (directory / KBQA_FILE).is_file():
            raise CheckpointError(f"{directory}: is not a KBQA directory (no {KBQA_FILE}); train one with "
                                  "`nlpforge kbqa train --kb TRIPLES --train QUESTIONS --out DIR`")
        record = json.loads((directory / KBQA_FILE).read_text(encoding="utf-8"))
        graph = rdflib.Graph()
        graph.parse(str(directory / KB_FILE), format="nt")
        return cls(graph, PathScorer.load(directory, int(record["hops"])), int(record.get("max_hops", 3)), directory)


def hits_at_1(system: KBQA, questions: Sequence[KBQuestion]) -> dict[str, Any]:
    """Answer accuracy of the top answer (percent), and how often the topic entity and path were right."""
    answered = system.ask_many([q.question for q in questions])
    hits = sum(a["answer"] in q.answers for a, q in zip(answered, questions, strict=True))
    with_gold = [(a, q) for a, q in zip(answered, questions, strict=True) if q.path is not None]
    record: dict[str, Any] = {"hits@1": round(100.0 * hits / max(len(questions), 1), 2), "questions": len(questions)}
    if with_gold:
        record["topic_entity_accuracy"] = round(100.0 * sum(a["topic_entity"] == q.topic for a, q in with_gold)
                                                / len(with_gold), 2)
        record["path_accuracy"] = round(100.0 * sum(tuple(a["path"] or ()) == q.path for a, q in with_gold)
                                        / len(with_gold), 2)
    return record


def check_hops(max_hops: int) -> int:
    if not 1 <= max_hops <= 3:
        raise ConfigError(f"--max-hops must be 1, 2 or 3, got {max_hops}")
    return max_hops
