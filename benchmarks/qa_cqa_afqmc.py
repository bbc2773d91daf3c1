"""Community QA on AFQMC: find the FAQ question that asks the same thing, answer with its answer.

    python benchmarks/qa_cqa_afqmc.py --keep benchmarks/work/afqmc_heldout  # trains the classifier first
    python benchmarks/qa_cqa_afqmc.py --reranker benchmarks/work/afqmc_heldout  # a classifier trained before

The FAQ is built from AFQMC dev (../shared/data/afqmc): the second question of every pair is an
FAQ entry, answered by its pair's id; the first question of every positive pair is asked, and the
right match is its own pair's second question (compared as text, so a duplicate entry counts too).
Every other entry is a distractor, among them the second questions of the negative pairs, which
AFQMC drew to look like their first. Reported: P@1 and recall@N of BM25, dense (e5-small-zhen,
mean-pooled) and hybrid retrieval alone; P@1 once a pair classifier re-ranks the hybrid top N
(``nlpforge cqa ask --reranker``: log P(same) - rank_weight x retrieval rank) at the rank weight
chosen on train, and beside it at every weight of the grid; the classifier's accuracy on the dev
pairs (``nlpforge cqa eval``); questions per second.

The rank weight is chosen on AFQMC train (``--select-on-train N``): an FAQ built the same way from the
first N train pairs once shuffled (seed 0), their positive pairs' first questions asked, the grid's
best P@1 wins (ties: the larger weight). Without --reranker the classifier is trained first on the
rest of AFQMC train (``--reranker-epochs`` 2, lr 5e-5, batch 32, max length 64: the spec of
benchmarks/finetune_tasks.py), so the selection pairs are as new to it as the dev pairs. A --reranker
that was trained on all of train has seen the selection pairs: it is surer of them than of new ones and
the choice leans toward the classifier alone (``qa_cqa_afqmc_fused.json``: weight 0 chosen on train,
where the classifier alone led retrieval by 4.4 points; on dev it does not lead at all).
Writes benchmarks/results/qa_cqa_afqmc.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AFQMC = ROOT.parent / "shared" / "data" / "afqmc"
E5 = str(ROOT.parent / "shared" / "models" / "multilingual-e5-small-zhen")
RANK_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


def reranked_p_at_1(community, found: list, asked: list[tuple[str, str]], weights=RANK_WEIGHTS) -> dict[str, float]:
    """P@1 (percent) of the fused ranking at every rank weight, from one pass of ``candidates_of``."""
    curve = {}
    for weight in weights:
        right = sum(community.answer_from(entries, weight)["matched_question"] == b
                    for entries, (_, b) in zip(found, asked, strict=True))
        curve[str(weight)] = round(100.0 * right / len(asked), 2)
    return curve


def faq_of(pairs: list[tuple[str, str, str]], directory: Path, encoder: str) -> list[tuple[str, str]]:
    """Index the second questions of ``pairs`` as an FAQ (hybrid) in ``directory`` (the FAQ file beside
    it); returns the asked (question, right match) of the positive pairs."""
    from nlpforge.qa.cqa import build_faq_index

    faq = directory.parent / f"{directory.name}.tsv"
    faq.write_text("".join(f"{b}\tpair {i}\n" for i, (_, b, _) in enumerate(pairs)), encoding="utf-8")
    build_faq_index(faq, directory, "hybrid", encoder, progress=False)
    return [(a, b) for a, b, label in pairs if label == "1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reranker", help="a classify checkpoint trained on AFQMC train (default: train one on "
                        "train less the selection pairs)")
    parser.add_argument("--reranker-epochs", type=float, default=2.0)
    parser.add_argument("--keep", type=Path, help="where the trained classifier is kept (default: a temp dir)")
    parser.add_argument("--encoder", default=E5)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions asked (0: all)")
    parser.add_argument("--select-on-train", type=int, default=4316,
                        help="choose the rank weight on an FAQ of N AFQMC train pairs (0: use --rank-weight)")
    parser.add_argument("--rank-weight", type=float, default=None, help="with --select-on-train 0 (default: "
                        "nlpforge's RANK_WEIGHT)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "qa_cqa_afqmc.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record
    from nlpforge.predictor import Predictor
    from nlpforge.qa.cqa import RANK_WEIGHT, CommunityQA, evaluate_pairs, read_pairs
    from nlpforge.qa.index import QAIndex
    from nlpforge.recipes.configs import FinetuneArgs
    from nlpforge.recipes.finetune import finetune
    from nlpforge.tasks import DataOptions

    pairs = read_pairs(AFQMC / "dev.txt")
    asked = [(a, b) for a, b, label in pairs if label == "1"][: args.limit or None]
    record: dict = {"benchmark": "qa_cqa_afqmc", "faq_entries": len(pairs), "questions": len(asked),
                    "encoder": args.encoder, "candidates": args.candidates, "command": "python " + " ".join(sys.argv)}
    train = read_pairs(AFQMC / "train.txt")
    random.Random(0).shuffle(train)
    selection, rest = train[: args.select_on_train], train[args.select_on_train:]
    with tempfile.TemporaryDirectory() as tmp:
        reranker = args.reranker
        if reranker is None:
            reranker = str(args.keep or Path(tmp) / "afqmc")
            rest_file = Path(tmp) / "train_rest.txt"
            rest_file.write_text("".join(f"{a}\t{b}\t{label}\n" for a, b, label in rest), encoding="utf-8")
            settings = dict(epochs=args.reranker_epochs, batch_size=32, learning_rate=5e-5, max_length=64,
                            group_by_length=True)
            start = time.perf_counter()
            finetune(FinetuneArgs(task="classify", model=args.encoder, train=str(rest_file), out=reranker,
                                  progress=False, save_every=10**9, log_every=200,
                                  data=DataOptions(text_column=0, text_pair_column=1, label_column=2), **settings))
            record["reranker_training"] = {**settings, "train": f"afqmc/train.txt less the {len(selection)} "
                                           "selection pairs", "pairs": len(rest),
                                           "seconds": round(time.perf_counter() - start, 1)}
        record["reranker"] = reranker
        start = time.perf_counter()
        faq_of(pairs, Path(tmp) / "index", args.encoder)
        record["index_seconds"] = round(time.perf_counter() - start, 1)
        index = QAIndex.load(Path(tmp) / "index")
        record["retrieval"] = {}
        for retriever in ("bm25", "dense", "hybrid"):
            start = time.perf_counter()
            hits = [[p.text for p, _ in index.search(a, args.candidates, retriever)] for a, _ in asked]
            seconds = time.perf_counter() - start
            found = [(h, b) for h, (_, b) in zip(hits, asked, strict=True)]
            record["retrieval"][retriever] = {
                "p@1": round(100.0 * sum(bool(h) and h[0] == b for h, b in found) / len(asked), 2),
                f"recall@{args.candidates}": round(100.0 * sum(b in h for h, b in found) / len(asked), 2),
                "questions_per_s": round(len(asked) / seconds, 1)}
            print(json.dumps({retriever: record["retrieval"][retriever]}), flush=True)
        classifier = Predictor.load(reranker)
        rank_weight = RANK_WEIGHT if args.rank_weight is None else args.rank_weight
        if args.select_on_train:
            train_asked = faq_of(selection, Path(tmp) / "train_index", args.encoder)
            train_qa = CommunityQA(QAIndex.load(Path(tmp) / "train_index"), classifier, args.candidates)
            curve = reranked_p_at_1(train_qa, train_qa.candidates_of([a for a, _ in train_asked]), train_asked)
            rank_weight = float(max(curve, key=lambda w: (curve[w], float(w))))
            record["selection"] = {"faq_entries": args.select_on_train, "questions": len(train_asked),
                                   "p@1_by_rank_weight": curve, "chosen_rank_weight": rank_weight}
            print(json.dumps({"selection": record["selection"]}), flush=True)
        community = CommunityQA(index, classifier, args.candidates, rank_weight)
        start = time.perf_counter()
        found = community.candidates_of([a for a, _ in asked])
        answers = [community.answer_from(entries) for entries in found]
        seconds = time.perf_counter() - start
        right = sum(r["matched_question"] == b for r, (_, b) in zip(answers, asked, strict=True))
        record["reranked"] = {"rank_weight": rank_weight, "p@1": round(100.0 * right / len(asked), 2),
                              "questions_per_s": round(len(asked) / seconds, 1),
                              "p@1_by_rank_weight": reranked_p_at_1(community, found, asked)}
        record["pairs"] = evaluate_pairs(classifier, pairs)
    record["machine"] = machine_record()
    args.out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
