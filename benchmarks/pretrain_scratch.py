"""A small GPT trained from scratch on ../shared/data/corpus_zh: held-out perplexity curve and samples.

    python benchmarks/pretrain_scratch.py --out benchmarks/results/pretrain_scratch.json

1. A byte-level BPE vocabulary (8,000 tokens) trained on the training part of corpus_zh only
   (the first 95% of each file; the held-out 5% never reaches the tokenizer).
2. ``nlpforge pretrain --objective clm --config gpt-6l-h256`` (6 layers, hidden 256, 4 heads),
   blocks of 256 tokens, batch 16, lr 1e-3 with 5% warm-up, held-out perplexity every 150 steps;
   450 steps (``--max-steps``) take about 12 minutes on 2 cores.
3. Samples from a few prompts (top-k 40, temperature 0.8, fixed seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "corpus_zh"
WORK = ROOT / "benchmarks" / "work" / "pretrain"
PROMPTS = ["孙悟空", "曹操", "话说天下大势", "中华人民共和国"]


def write_train_part(path: Path) -> None:
    """The training part of every corpus_zh file as one plain-text file (documents blank-line separated)."""
    from nlpforge.data.corpus import corpus_files, iter_documents

    with open(path, "w", encoding="utf-8") as handle:
        for document in iter_documents(corpus_files([CORPUS]), part="train"):
            handle.write("\n".join(document) + "\n\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pretrain_scratch.json")
    parser.add_argument("--max-steps", type=int, default=450, help="about 12 minutes on 2 cores")
    parser.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record
    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.recipes.configs import PretrainArgs
    from nlpforge.recipes.pretrain import pretrain
    from nlpforge.tokenizer_training import train_tokenizer

    WORK.mkdir(parents=True, exist_ok=True)
    train_text, tokenizer_dir, model_dir = WORK / "corpus_zh_train.txt", WORK / "bpe-zh-8k", WORK / "gpt-zh"
    write_train_part(train_text)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        tokenizer_summary = train_tokenizer([train_text], "bpe", args.vocab_size, tokenizer_dir)
    else:
        tokenizer_summary = {"reused": str(tokenizer_dir)}
    settings = dict(objective="clm", config="gpt-6l-h256", tokenizer=str(tokenizer_dir), corpus=[str(CORPUS)],
                    out=str(model_dir), max_steps=args.max_steps, block_size=256, batch_size=16,
                    learning_rate=1e-3, warmup_ratio=0.05, weight_decay=0.1, eval_every=150, eval_blocks=0,
                    save_every=150, progress=False, seed=42, resume=True)
    start = time.perf_counter()
    summary = pretrain(PretrainArgs(**settings))
    seconds = time.perf_counter() - start
    lines = (model_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    curve = [{"step": r["step"], "eval_perplexity": round(r["eval_perplexity"], 2),
              "eval_accuracy": round(r["eval_accuracy"], 2)} for r in map(json.loads, lines) if "eval_perplexity" in r]

    loaded = load_checkpoint(model_dir)
    samples = []
    generator = torch.Generator().manual_seed(0)
    for prompt in PROMPTS:
        ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
        out = loaded.model.generate(ids, max_new_tokens=60, temperature=0.8, top_k=40, generator=generator)
        samples.append({"prompt": prompt, "text": loaded.tokenizer.decode(out[0], skip_special_tokens=True)})
        print(samples[-1]["text"], flush=True)
    report = {"benchmark": "pretrain_scratch", "tokenizer": tokenizer_summary,
              "settings": {k: v for k, v in settings.items() if k not in ("progress", "resume")},
              "seconds_including_block_writing": round(seconds, 1), "summary": summary, "heldout_curve": curve,
              "samples": samples, "model_dir": str(model_dir.relative_to(ROOT)), "machine": machine_record(),
              "command": "python " + " ".join(sys.argv)}
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({"final": curve[-1], "seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
