"""Choosing the cloze template and verbalizer of ``fewshot_compare.py --methods cloze`` on the train split only.

    python benchmarks/fewshot_cloze_select.py --dataset tnews

The train split is shuffled (seed 0) and its first --holdout rows are scored, exactly the rows that
``fewshot_compare.py --holdout`` evaluates on. Per candidate (a template and a verbalizer, as
``fewshot --template/--verbalizer`` take them) the untrained masked-LM backbone (benchmarks/
pretrain_continued.py's e5-zh-wwm) fills the mask and every text gets the label whose word scores
highest: the zero-shot accuracy of the prompt, the prior that PET's few-shot training starts from. The
best pair goes into fewshot_compare.py's CLOZE, so the report split is never read while choosing.
Writes benchmarks/results/fewshot_<dataset>_cloze_select.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {  # (templates, verbalizer); None: fewshot_compare.TNEWS_NAMES as the words
    "chnsenticorp": [(["{text}总之很{mask}。"], "1=好,0=差"), (["{text}这家很{mask}。"], "1=好,0=差"),
                     (["{mask}评：{text}"], "1=好,0=差"), (["{text}总之很{mask}。"], "1=棒,0=烂")],
    "tnews": [(["这是一条{mask}新闻：{text}"], None), (["{mask}新闻：{text}"], None), (["{text}（{mask}）"], None),
              (["【{mask}】{text}"], None)],
}


def main() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fewshot_compare import (
        CLOZE_MODEL,
        TNEWS_NAMES,
        held_out_setting,
        holdout_rows,
        selection_arguments,
        write_selection_report,
    )

    parser = selection_arguments(__doc__, CANDIDATES)
    parser.add_argument("--model", type=Path, help="masked-LM backbone (default: fewshot_compare.py's --cloze-model)")
    args = parser.parse_args()
    import torch

    from nlpforge.adapt.cloze import ensemble_scores, parse_verbalizer, verbalizer_token_ids
    from nlpforge.recipes.fewshot import masked_lm

    torch.set_num_threads(args.threads)
    holdout = holdout_rows(args.dataset, args.holdout)
    # its rows only
    _, _, evaluation, labels = held_out_setting(args.dataset, holdout, "contrastive", 0, 50, args.max_length)
    model = str(args.model or CLOZE_MODEL)
    loaded = masked_lm(model)
    texts = [(e.text, e.text_pair) for e in evaluation]
    gold = np.array([labels.index(e.label) for e in evaluation])
    start = time.perf_counter()
    rows = []
    for templates, verbalizer in CANDIDATES[args.dataset]:
        verbalizer = verbalizer or ",".join(f"{label}={TNEWS_NAMES[label]}" for label in labels)
        label_ids = verbalizer_token_ids(loaded.tokenizer, parse_verbalizer(verbalizer), labels)
        scores = ensemble_scores(loaded.model, loaded.tokenizer, templates, label_ids, texts, args.max_length, 64)
        row = {"template": templates, "verbalizer": verbalizer,
               "zero_shot": round(float((scores.argmax(axis=1) == gold).mean() * 100), 2)}
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    best = max(rows, key=lambda row: row["zero_shot"])
    write_selection_report("fewshot_cloze_select", args.dataset, {
        "backbone": model, "split": f"train (a hold-out of {holdout} rows, seed 0)", "candidates": rows,
        "best": {"template": best["template"], "verbalizer": best["verbalizer"]},
        "majority_class": round(float(np.bincount(gold).max() / len(gold) * 100), 2)}, start, args.out)


if __name__ == "__main__":
    main()
