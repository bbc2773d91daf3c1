"""Teacher, our student and TextBrewer's student on held-out SST-2 train examples and on SST-2 dev.

SST-2 train is mostly short phrases while dev holds full sentences only, so a student that keeps
its teacher's accuracy on the training distribution can lose more on dev. This scores the three
models that ``benchmarks/compress_sst2.py --work benchmarks/work/compress`` left behind (the
teacher, ``compressed/student`` and TextBrewer's last checkpoint in ``tb-out``) on both: the
``select.tsv`` slice of train that no model trained on, and dev.

    python benchmarks/compress_heldout.py --out benchmarks/results/compress_heldout.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"
WORK = ROOT / "benchmarks" / "work" / "compress"
MAX_LENGTH = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compress_heldout.json")
    args = parser.parse_args()
    checkpoints = sorted((args.work / "tb-out").glob("gs*.pkl"), key=lambda p: int(p.stem[2:]))
    needed = [args.work / "teacher", args.work / "compressed" / "student", args.work / "select.tsv"]
    if not checkpoints or not all(path.exists() for path in needed):
        sys.exit(f"error: {args.work} lacks the teacher, students or select.tsv; run compress_sst2.py --work first")
    import torch
    import transformers

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record
    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.tasks import DataOptions, get_task

    task, data = get_task("classify"), DataOptions()
    teacher = load_checkpoint(args.work / "teacher")
    textbrewer = transformers.AutoModelForSequenceClassification.from_pretrained(args.work / "tb-init")
    textbrewer.load_state_dict(torch.load(checkpoints[-1], weights_only=True))
    models = {"teacher": teacher.model, "nlpforge student": load_checkpoint(args.work / "compressed" / "student").model,
              "textbrewer student": textbrewer.eval()}
    splits = {"heldout_train": args.work / "select.tsv", "dev": SST2 / "dev.tsv"}
    scores: dict[str, dict[str, float]] = {}
    for split, path in splits.items():
        examples = task.read(path, data)
        for name, model in models.items():
            metrics = task.evaluate(model, teacher.tokenizer, examples, teacher.meta["labels"], MAX_LENGTH, 64, data)
            scores.setdefault(name, {})[split] = round(metrics["accuracy"], 2)
    for name in ("nlpforge student", "textbrewer student"):
        for split in splits:
            scores[name][f"{split}_vs_teacher"] = round(scores[name][split] / scores["teacher"][split], 4)
    result = {"benchmark": "compress_heldout", "machine": machine_record(), "work": str(args.work),
              "textbrewer_checkpoint": checkpoints[-1].name,
              "heldout_examples": len(task.read(splits["heldout_train"], data)), "accuracy": scores}
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
