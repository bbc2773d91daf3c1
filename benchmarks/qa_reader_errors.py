"""Why a span_qa reader's exact match trails its F1: the wrong predictions classified by how they miss.

    python benchmarks/qa_reader_errors.py --dataset cmrc --train-limit 1500 --eval-limit 400
    python benchmarks/qa_reader_errors.py --dataset squad --reader out/squad-reader --eval-limit 500

Trains a reader on the first --train-limit training questions (or takes --reader), predicts the
first --eval-limit report questions, and sorts every wrong prediction (no gold answer matches
after the official normalisation) into one kind, judged against the nearest gold answer:

- ``longer``: the prediction holds the gold answer and more (``extra_leading`` / ``extra_trailing``
  chars counted, and whether the extra is punctuation or whitespace only);
- ``shorter``: the prediction lies inside the gold answer;
- ``overlap``: they share characters, neither holds the other;
- ``elsewhere``: no shared character span (a different place in the context).

It also reports how many gold answers the tokenizer cannot represent (a boundary inside a token),
and the same logits decoded under several maximum answer lengths, so a decoding fix shows as a
change in EM with nothing retrained. Writes benchmarks/results/qa_reader_errors_<dataset>.json
with 100 wrong predictions as examples.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
E5 = str(ROOT.parent / "shared" / "models" / "multilingual-e5-small-zhen")
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
DATASETS = {
    "cmrc": dict(model=E5, train="cmrc2018/cmrc2018_train.json", eval="cmrc2018/cmrc2018_dev.json",
                 train_data={}, eval_data={}, max_length=256),
    "squad": dict(model=MINILM, train="squad_v1.1/dev-v1.1.json", eval="squad_v1.1/dev-v1.1.json",
                  train_data={"articles": (0, 38)}, eval_data={"articles": (38, 48)}, max_length=256),
}


def is_filler(text: str) -> bool:
    """Only punctuation and whitespace (what the metrics' normalisation may or may not drop)."""
    return all(unicodedata.category(char)[0] in "PZ" or char.isspace() for char in text)


def classify_miss(prediction: str, start: int | None, golds: list[tuple[str, int]]) -> dict:
    """How a wrong prediction (text, context start) relates to its nearest gold span."""
    if start is None or not prediction:
        return {"kind": "empty"}
    end = start + len(prediction)

    def overlap(gold: tuple[str, int]) -> int:
        return max(0, min(end, gold[1] + len(gold[0])) - max(start, gold[1]))

    spans = [g for g in golds if g[1] >= 0]
    if not spans:
        return {"kind": "elsewhere"}
    text, gold_start = max(spans, key=overlap)
    gold_end = gold_start + len(text)
    if overlap((text, gold_start)) == 0:
        return {"kind": "elsewhere"}
    if start <= gold_start and end >= gold_end:
        leading, trailing = prediction[: gold_start - start], prediction[len(prediction) - (end - gold_end):]
        return {"kind": "longer", "extra_leading": len(leading), "extra_trailing": end - gold_end,
                "filler_only": is_filler(leading + (trailing if end > gold_end else ""))}
    if start >= gold_start and end <= gold_end:
        return {"kind": "shorter", "missing": (gold_end - gold_start) - len(prediction)}
    return {"kind": "overlap"}


def unrepresentable(tokenizer, examples) -> int:
    """Questions none of whose gold spans starts and ends on token boundaries of the context."""
    count = 0
    for example in examples:
        offsets = tokenizer(example.context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        starts, ends = {s for s, _ in offsets}, {e for _, e in offsets}
        if not any(a.start >= 0 and a.start in starts and a.start + len(a.text) in ends for a in example.answers):
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=tuple(DATASETS), default="cmrc")
    parser.add_argument("--reader", help="a trained span_qa checkpoint (default: train one)")
    parser.add_argument("--train-limit", type=int, default=1500)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--eval-limit", type=int, default=400)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record
    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.inference import forward_batches
    from nlpforge.recipes.finetune import FinetuneArgs, finetune
    from nlpforge.tasks import DataOptions
    from nlpforge.tasks.span_qa import cmrc_em_f1, decode_answers, doc_stride, prepare_features, squad_em_f1

    spec = DATASETS[args.dataset]
    score = cmrc_em_f1 if args.dataset == "cmrc" else squad_em_f1
    record: dict = {"benchmark": "qa_reader_errors", "dataset": args.dataset, "command": "python " + " ".join(sys.argv)}
    with tempfile.TemporaryDirectory() as tmp:
        reader = args.reader
        if reader is None:
            reader = str(Path(tmp) / "reader")
            settings = dict(epochs=args.epochs, batch_size=16, learning_rate=args.learning_rate,
                            max_length=spec["max_length"], max_train_examples=args.train_limit)
            start = time.perf_counter()
            finetune(FinetuneArgs(task="span_qa", model=spec["model"], train=str(DATA / spec["train"]), out=reader,
                                  progress=False, save_every=10**9, log_every=100, data=spec["train_data"],
                                  **settings))
            record["training"] = {"model": spec["model"], **settings, "seconds": round(time.perf_counter() - start, 1)}
        loaded = load_checkpoint(reader)
        from nlpforge.tasks import get_task

        task = get_task("span_qa")
        examples = task.read(DATA / spec["eval"], DataOptions(**spec["eval_data"]))[: args.eval_limit]
        max_length = int(loaded.meta.get("max_length", spec["max_length"]))
        features = prepare_features(loaded.tokenizer, [e.question for e in examples], [e.context for e in examples],
                                    max_length, doc_stride(DataOptions(), max_length))
        starts, ends = [None] * len(features), [None] * len(features)
        import torch

        with torch.inference_mode():
            for rows, output in forward_batches(loaded.model, features, 64, loaded.tokenizer.pad_token_id):
                for i, row in enumerate(rows):
                    length = len(features[row]["input_ids"])
                    starts[row] = output.start_logits[i, :length].float().numpy()
                    ends[row] = output.end_logits[i, :length].float().numpy()
        references = [[a.text for a in e.answers] for e in examples]
        contexts = [e.context for e in examples]
        by_length = {}
        for max_answer in (10, 20, 30, 50, 100):
            decoded = decode_answers(features, starts, ends, contexts, 20, max_answer)
            scored = score([d["answer"] for d in decoded], references)
            by_length[max_answer] = {k: round(scored[k], 2) for k in ("exact_match", "f1")}
        default_length = 100 if args.dataset == "cmrc" else 30
        decoded = decode_answers(features, starts, ends, contexts, 20, default_length)
        kinds: Counter = Counter()
        leading, trailing, filler = [], [], 0
        samples = []
        for example, answer in zip(examples, decoded, strict=True):
            golds = [(a.text, a.start) for a in example.answers]
            if score([answer["answer"]], [[g for g, _ in golds]])["exact_match"] == 100.0:
                continue
            miss = classify_miss(answer["answer"], answer["start"], golds)
            kinds[miss["kind"]] += 1
            if miss["kind"] == "longer":
                leading.append(miss["extra_leading"])
                trailing.append(miss["extra_trailing"])
                filler += miss["filler_only"]
            if len(samples) < 100:
                samples.append({"question": example.question, "gold": [g for g, _ in golds],
                                "predicted": answer["answer"], **miss})
        wrong = sum(kinds.values())
        record.update({
            "reader": reader if args.reader else "trained here", "questions": len(examples),
            "metrics": by_length[default_length], "by_max_answer_length": by_length,
            "wrong": wrong, "kinds": dict(kinds.most_common()),
            "longer": {"count": len(leading), "median_extra_leading": float(np.median(leading)) if leading else 0,
                       "median_extra_trailing": float(np.median(trailing)) if trailing else 0,
                       "extra_is_punctuation_only": filler},
            "gold_not_on_token_boundaries": unrepresentable(loaded.tokenizer, examples),
            "mean_predicted_chars": round(float(np.mean([len(d["answer"]) for d in decoded])), 2),
            "mean_gold_chars": round(float(np.mean([len(e.answers[0].text) for e in examples])), 2),
            "samples": samples, "machine": machine_record()})
    out = args.out or ROOT / "benchmarks" / "results" / f"qa_reader_errors_{args.dataset}.json"
    out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in record.items() if k not in ("samples", "machine")}, ensure_ascii=False))


if __name__ == "__main__":
    main()
