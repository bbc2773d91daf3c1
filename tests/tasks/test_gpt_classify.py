"""Classification on a decoder (GPT-2): logits equal transformers' GPT2ForSequenceClassification on
right-padded batches, the loss with GPT's auxiliary LM term equals CE + lambda * GPT2LMHeadModel's loss,
fine-tuning learns and saves a checkpoint transformers loads, and encoders refuse --lm-loss-weight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from torch.testing import assert_close

from conftest import HF_TINY, LETTERS, tiny_hf_model, write_classification
from nlpforge.checkpoint import load_checkpoint
from nlpforge.errors import ConfigError
from nlpforge.evaluate import evaluate
from nlpforge.predictor import Predictor
from nlpforge.recipes.finetune import FinetuneArgs, finetune
from nlpforge.tasks import get_task, with_lm_loss
from nlpforge.tasks.base import sequence_logits
from nlpforge.tasks.classify import DecoderSequenceClassifier

PAD = 98  # the tiny GPT-2's pad (= eos) id


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


def hf_classifier(num_labels: int = 3) -> transformers.GPT2ForSequenceClassification:
    """A random tiny GPT2ForSequenceClassification (hidden 32, 2 layers, vocab 99, pad id 98)."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(**HF_TINY["GPT2LMHeadModel"][1], num_labels=num_labels)
    config._attn_implementation = "eager"
    return transformers.GPT2ForSequenceClassification(config).eval()


def right_padded(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) random ids below the pad id, right-padded with it, and their attention mask."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), PAD)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(0, PAD, (length,), generator=generator)
        mask[row, :length] = 1
    return ids, mask


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[transformers.GPT2ForSequenceClassification,
                                                            DecoderSequenceClassifier]:
    """transformers' classifier and ours, loaded from its saved directory (the users' conversion path)."""
    hf = hf_classifier()
    directory = tmp_path_factory.mktemp("gpt-classify")
    hf.save_pretrained(directory)
    ours = load_checkpoint(directory)
    assert ours.head == "classify" and isinstance(ours.model, DecoderSequenceClassifier)
    return hf, ours.model


def test_logits_equal_transformers_on_right_padded_batches(pair: tuple) -> None:
    hf, ours = pair
    ids, mask = right_padded([7, 3, 5, 1])
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits
        assert_close(ours(ids, mask).logits, expected, atol=1e-5, rtol=1e-5)
    # The eval / predict path: length-sorted right-padded batches, packed=True.
    features = [{"input_ids": row[m.bool()].tolist(), "attention_mask": m[m.bool()].tolist()}
                for row, m in zip(ids, mask, strict=True)]
    assert_close(torch.from_numpy(sequence_logits(ours, features, 2, PAD)), expected, atol=1e-5, rtol=1e-5)


def test_loss_is_task_cross_entropy_plus_lambda_times_the_lm_loss(pair: tuple) -> None:
    hf, ours = pair
    task = get_task("classify")
    ids, mask = right_padded([6, 2, 4], seed=1)
    labels = torch.tensor([2, 0, 1])
    features = [{"input_ids": row[m.bool()].tolist(), "attention_mask": m[m.bool()].tolist(), "labels": int(label)}
                for row, m, label in zip(ids, mask, labels, strict=True)]
    batch = task.collate(features, PAD)
    assert with_lm_loss(task, ours, 0.0) is task
    objective = with_lm_loss(task, ours, 0.5)
    loss = objective.loss(ours(**objective.model_inputs(batch)), batch, None)

    lm = transformers.GPT2LMHeadModel(hf.config).eval()  # the same body, its LM head tied to wte
    lm.transformer.load_state_dict(hf.transformer.state_dict())
    with torch.no_grad():
        task_loss = F.cross_entropy(hf(input_ids=ids, attention_mask=mask).logits, labels)
        lm_loss = lm(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
    assert_close(loss.detach(), task_loss + 0.5 * lm_loss, atol=1e-5, rtol=1e-5)


def save_tiny_decoder(directory: Path) -> Path:
    """The tiny random GPT2LMHeadModel with a one-token-per-letter tokenizer that, like GPT-2's, has
    no pad token and no token_type_ids."""
    vocab = {"<|endoftext|>": 0, "<unk>": 1, **{letter: 2 + i for i, letter in enumerate(LETTERS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|endoftext|>", unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"])
    tiny_hf_model("GPT2LMHeadModel").save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_finetuned_decoder_learns_and_transformers_loads_it(tmp_path: Path) -> None:
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    write_classification(train, 96, seed=0)
    write_classification(dev, 40, seed=1)
    args = FinetuneArgs(task="classify", model=str(save_tiny_decoder(tmp_path / "gpt")), train=str(train),
                        eval=str(dev), out=str(tmp_path / "run"), epochs=10, batch_size=16, learning_rate=3e-3,
                        warmup_ratio=0.0, max_length=16, log_every=1, progress=False, seed=3, lm_loss_weight=0.5)
    summary = finetune(args)
    assert summary["best"] >= 90.0
    out = Path(summary["out"])
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses[-1] < losses[0]

    ours = load_checkpoint(out)
    assert ours.head == "classify" and isinstance(ours.model, DecoderSequenceClassifier)
    assert ours.tokenizer.pad_token_id == ours.config.pad_token_id == 0  # eos pads, as transformers finds it
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert type(theirs).__name__ == "GPT2ForSequenceClassification" and theirs.config.id2label == {0: "0", 1: "1"}
    batch = ours.tokenizer(["a b z c", "d e f", "g"], padding=True, return_tensors="pt")
    assert batch["attention_mask"][:, -1].tolist() == [1, 0, 0]  # right padding
    with torch.no_grad():
        assert_close(ours.model(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=1e-5)

    assert evaluate(out, dev)["accuracy"] == summary["best"]  # nlpforge eval's path
    predictor = Predictor.load(out)
    assert predictor.describe()["embed"] is False
    assert [p["label"] for p in predictor.predict(["a b z c", "d e f"])] == ["1", "0"]


def test_lm_loss_weight_needs_a_decoder(tiny_bert_dir: Path, tmp_path: Path) -> None:
    write_classification(tmp_path / "train.tsv", 8, seed=0)
    args = FinetuneArgs(task="classify", model=str(tiny_bert_dir), train=str(tmp_path / "train.tsv"),
                        out=str(tmp_path / "run"), progress=False, lm_loss_weight=0.5)
    with pytest.raises(ConfigError, match="--lm-loss-weight"):
        finetune(args)
    with pytest.raises(ConfigError, match="--lm-loss-weight must be >= 0"):
        FinetuneArgs(task="classify", model="m", train="t", out="o", lm_loss_weight=-1.0)
