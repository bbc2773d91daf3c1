"""The pre-training loop on tiny models: every objective runs, perplexity falls, transformers loads
the result, a killed run resumes exactly, bad input is a one-line error."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file
from torch.testing import assert_close

import nlpforge.recipes.pretrain as pretrain_module
from conftest import run_cli, tiny_hf_model, tiny_tokenizer
from nlpforge.checkpoint import load_checkpoint
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.recipes.configs import PretrainArgs
from nlpforge.recipes.pretrain import pretrain

WORDS = [f"{a}{b}" for a in "abcdefg" for b in "aeiouyrst"]


def write_corpus(path: Path, documents: int = 60, seed: int = 0) -> Path:
    """Documents of short sentences with a learnable pattern: a word is often followed by its successor."""
    rng = random.Random(seed)
    lines = []
    for _ in range(documents):
        for _ in range(4):
            start = rng.randrange(len(WORDS) - 6)
            lines.append(" ".join(WORDS[start: start + rng.randint(3, 6)]) + " .")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def args(model: Path, corpus: Path, out: Path, **overrides: object) -> PretrainArgs:
    settings = dict(objective="mlm", corpus=[str(corpus)], out=str(out), model=str(model), max_steps=6,
                    block_size=16, batch_size=8, learning_rate=1e-3, eval_every=3, save_every=3, log_every=1,
                    eval_blocks=0, heldout_share=0.1, progress=False, seed=3)
    return PretrainArgs(**{**settings, **overrides})


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("objective", ["mlm", "wwm", "span", "mlm+nsp", "mlm+sop"])
def test_each_encoder_objective_trains_and_logs_perplexity(objective: str, tiny_bert_dir: Path,
                                                          tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt")
    summary = pretrain(args(tiny_bert_dir, corpus, tmp_path / "out", objective=objective, max_steps=3))
    assert summary["steps"] == 3 and summary["train_blocks"] > 8
    evaluations = [r for r in metrics(tmp_path / "out") if "eval_perplexity" in r]
    assert [r["step"] for r in evaluations] == [0, 3]
    assert all(r["eval_perplexity"] > 1 and r["eval_tokens"] > 0 for r in evaluations)


def test_mlm_perplexity_falls_and_transformers_loads_the_model(tiny_bert_dir: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt", documents=120)
    out = tmp_path / "out"
    pretrain(args(tiny_bert_dir, corpus, out, max_steps=60, eval_every=60, learning_rate=3e-3))
    evaluations = [r for r in metrics(out) if "eval_perplexity" in r]
    assert evaluations[-1]["eval_perplexity"] < 0.5 * evaluations[0]["eval_perplexity"], evaluations
    ours = load_checkpoint(out)
    assert ours.head == "mlm" and ours.meta["objective"] == "mlm"
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    batch = ours.tokenizer(["aa ae ai [MASK] ao"], return_tensors="pt")
    with torch.no_grad():
        assert_close(ours.model(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=1e-5)


def test_clm_from_scratch_with_a_trained_tokenizer(tmp_path: Path) -> None:
    from nlpforge.tokenizer_training import train_tokenizer

    corpus = write_corpus(tmp_path / "corpus.txt", documents=120)
    train_tokenizer([corpus], "bpe", 300, tmp_path / "tok")
    out = tmp_path / "gpt"
    pretrain(PretrainArgs(objective="clm", corpus=[str(corpus)], out=str(out), config="tiny-gpt",
                          tokenizer=str(tmp_path / "tok"), max_steps=30, eval_every=30, block_size=32,
                          batch_size=8, learning_rate=3e-3, progress=False, heldout_share=0.1))
    evaluations = [r for r in metrics(out) if "eval_perplexity" in r]
    assert evaluations[-1]["eval_perplexity"] < 0.5 * evaluations[0]["eval_perplexity"], evaluations
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ours = load_checkpoint(out)
    ids = ours.tokenizer(["aa ae ai"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert_close(ours.model(ids).logits, theirs(ids).logits, atol=1e-5, rtol=1e-5)


def test_resume_after_a_crash_ends_with_the_same_weights(tiny_bert_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt")
    pretrain(args(tiny_bert_dir, corpus, tmp_path / "straight", objective="wwm"))
    original = pretrain_module.save_resume

    def crash_after_step_3(directory, model, optimizer, scheduler, state):
        original(directory, model, optimizer, scheduler, state)
        if state.step == 3:
            raise KeyboardInterrupt  # the process dies right after a resume checkpoint

    monkeypatch.setattr(pretrain_module, "save_resume", crash_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        pretrain(args(tiny_bert_dir, corpus, tmp_path / "crashed", objective="wwm"))
    monkeypatch.setattr(pretrain_module, "save_resume", original)
    pretrain(args(tiny_bert_dir, corpus, tmp_path / "crashed", objective="wwm", resume=True))
    straight = load_file(tmp_path / "straight" / "resume" / "model.safetensors")
    resumed = load_file(tmp_path / "crashed" / "resume" / "model.safetensors")
    for key, tensor in straight.items():
        assert torch.equal(tensor, resumed[key]), key


def test_bad_input_is_a_clear_error(tiny_bert_dir: Path, tmp_path: Path, tiny_vocab: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt")
    with pytest.raises(ConfigError, match=r"--block-size 100 is above the model's 64 positions"):
        pretrain(args(tiny_bert_dir, corpus, tmp_path / "a", block_size=100))
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    with pytest.raises(InputDataError, match=r"empty\.txt"):
        pretrain(args(tiny_bert_dir, tmp_path / "empty.txt", tmp_path / "b"))
    (tmp_path / "small.txt").write_text("aa ae\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="too little text"):
        pretrain(args(tiny_bert_dir, tmp_path / "small.txt", tmp_path / "c"))
    big = tmp_path / "big-tokenizer"
    words = [*tiny_vocab.read_text().split(), *(f"w{i}" for i in range(50))]
    transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}).save_pretrained(big)
    with pytest.raises(ConfigError, match="does not match the checkpoint"):
        pretrain(args(tiny_bert_dir, corpus, tmp_path / "d", tokenizer=str(big)))
    gpt = tmp_path / "gpt"
    tiny_hf_model("GPT2LMHeadModel").save_pretrained(gpt)
    tiny_tokenizer(tiny_vocab).save_pretrained(gpt)
    with pytest.raises(ConfigError, match="trains an encoder"):
        pretrain(args(gpt, corpus, tmp_path / "e"))
    with pytest.raises(ConfigError, match=r"exactly one of --model"):
        PretrainArgs(objective="mlm", corpus=[str(corpus)], out="x")


def test_cli_pretrain_and_its_errors(tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt")
    code, out, _ = run_cli(monkeypatch, capsys, "pretrain", "--objective", "mlm", "--model", tiny_bert_dir,
                           "--corpus", corpus, "--corpus", corpus, "--out", tmp_path / "out", "--max-steps", "2",
                           "--block-size", "16", "--batch-size", "4", "--no-progress")
    assert code == 0 and json.loads(out)["steps"] == 2
    code, _, err = run_cli(monkeypatch, capsys, "pretrain", "--objective", "mlm", "--model", tiny_bert_dir,
                           "--corpus", tmp_path / "missing.txt", "--out", tmp_path / "x")
    assert code != 0 and "missing.txt" in err and "Traceback" not in err


def test_albert_from_scratch_with_mlm_plus_sop(tmp_path: Path, tiny_vocab: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    """The albert-6l-h256 preset (embeddings 128 -> hidden 256, one layer shared by 6) pre-trains from
    a tokenizer alone; transformers loads the result as AlbertForMaskedLM."""
    corpus = write_corpus(tmp_path / "corpus.txt")
    tiny_tokenizer(tiny_vocab).save_pretrained(tmp_path / "tok")
    out = tmp_path / "albert"
    code, stdout, _ = run_cli(monkeypatch, capsys, "pretrain", "--objective", "mlm+sop", "--config", "albert-6l-h256",
                              "--tokenizer", tmp_path / "tok", "--corpus", corpus, "--out", out, "--max-steps", "3",
                              "--block-size", "16", "--batch-size", "4", "--eval-every", "3", "--no-progress")
    assert code == 0 and json.loads(stdout)["steps"] == 3
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["embedding_size"], config["hidden_size"], config["num_hidden_layers"],
            config["num_hidden_groups"]) == ("albert", 128, 256, 6, 1)
    ours = load_checkpoint(out)
    assert ours.head == "mlm" and ours.meta["objective"] == "mlm+sop" and len(ours.model.encoder.layers) == 1
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    assert type(theirs).__name__ == "AlbertForMaskedLM"
    batch = ours.tokenizer(["aa ae ai [MASK] ao", "ba be"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert_close(ours.model(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=1e-5)


def test_two_process_ddp_trains_like_one(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Under torchrun each process masks its share of a batch as one process would (a block's mask
    depends on the block and epoch only) and weights its loss by its share of the scored tokens."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    model = tiny_hf_model("BertModel")  # no dropout: its random draws would differ between the runs
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    model.save_pretrained(tmp_path / "nodrop")
    load_checkpoint(tiny_bert_dir).tokenizer.save_pretrained(tmp_path / "nodrop")
    tiny_bert_dir = tmp_path / "nodrop"
    corpus = write_corpus(tmp_path / "corpus.txt", documents=120)
    pretrain(args(tiny_bert_dir, corpus, tmp_path / "single", max_steps=20, eval_every=20, threads=1))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
               "-m", "nlpforge.cli", "pretrain", "--objective", "mlm", "--model", str(tiny_bert_dir),
               "--corpus", str(corpus), "--out", str(tmp_path / "ddp"), "--max-steps", "20", "--eval-every", "20",
               "--block-size", "16", "--batch-size", "8", "--learning-rate", "1e-3", "--eval-blocks", "0",
               "--heldout-share", "0.1", "--seed", "3", "--threads", "1", "--log-every", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    single, ddp = ([r for r in metrics(tmp_path / run) if "eval_perplexity" in r] for run in ("single", "ddp"))
    assert [r["step"] for r in ddp] == [0, 20] and single[0]["eval_perplexity"] == ddp[0]["eval_perplexity"]
    assert ddp[-1]["eval_perplexity"] == pytest.approx(single[-1]["eval_perplexity"], rel=1e-3)
    losses = [[r["loss"] for r in metrics(tmp_path / run) if "loss" in r] for run in ("single", "ddp")]
    assert len(losses[0]) == 20 and losses[0] == pytest.approx(losses[1], abs=1e-3)
    assert ddp[-1]["eval_perplexity"] < 0.8 * ddp[0]["eval_perplexity"]
