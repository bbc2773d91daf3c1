"""multiple_choice: parity with transformers' *ForMultipleChoice, C3 and JSONL reading, padded option
counts, training on a rule, prediction through the Predictor, and the errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import transformers
from torch.testing import assert_close

from conftest import HF_TINY, LETTERS, TINY_ALBERT, save_tiny_checkpoint, tiny_tokenizer
from nlpforge.checkpoint import load_checkpoint, save_checkpoint
from nlpforge.errors import InputDataError
from nlpforge.predictor import Predictor
from nlpforge.recipes.configs import FinetuneArgs
from nlpforge.recipes.finetune import finetune
from nlpforge.tasks import get_task
from nlpforge.tasks.multiple_choice import ChoiceExample, collate_choices, encode_choices, read_choices

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = {"Bert": HF_TINY["BertModel"], "XLMRoberta": HF_TINY["XLMRobertaModel"],
            "DistilBert": HF_TINY["DistilBertModel"], "Albert": (transformers.AlbertConfig, TINY_ALBERT)}


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_equal_transformers_multiple_choice(family: str, tmp_path: Path, tiny_vocab: Path) -> None:
    config_cls, kwargs = FAMILIES[family]
    torch.manual_seed(0)
    reference = getattr(transformers, f"{family}ForMultipleChoice")(config_cls(**kwargs)).eval()
    reference.save_pretrained(tmp_path / "hf")
    tiny_tokenizer(tiny_vocab).save_pretrained(tmp_path / "hf")
    loaded = load_checkpoint(tmp_path / "hf")
    assert loaded.head == "multiple_choice" and loaded.task.name == "multiple_choice"
    ids = torch.randint(5, 90, (2, 3, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :, 5:] = 0
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask).logits
        got = loaded.model(ids, mask).logits
    assert_close(got, want, atol=1e-5, rtol=1e-5)
    if family == "Bert":  # and back: transformers loads what we write
        save_checkpoint(tmp_path / "ours", loaded.model, loaded.config, loaded.tokenizer, loaded.head,
                        {"task": "multiple_choice"})
        again = transformers.AutoModelForMultipleChoice.from_pretrained(tmp_path / "ours").eval()
        with torch.no_grad():
            assert_close(again(input_ids=ids, attention_mask=mask).logits, want, atol=1e-5, rtol=1e-5)


def test_reads_c3_and_jsonl_and_names_bad_entries(tmp_path: Path) -> None:
    c3 = [[["男：你好。", "女：你好！"], [{"question": "女的说了什么？", "choice": ["你好", "再见", "谢谢"],
                                          "answer": "你好"}], "d-1"]]
    (tmp_path / "c3.json").write_text(json.dumps(c3, ensure_ascii=False), encoding="utf-8")
    [example] = read_choices(tmp_path / "c3.json")
    assert example.context == "男：你好。\n女：你好！" and example.answer == 0 and len(example.choices) == 3
    lines = [{"context": "a b", "question": "c", "choices": ["d", "e"], "answer": 1},
             {"context": "a b", "question": "c", "choices": ["d", "e"], "answer": "d"}]
    (tmp_path / "mc.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    assert [e.answer for e in read_choices(tmp_path / "mc.jsonl")] == [1, 0]
    (tmp_path / "bad.jsonl").write_text(json.dumps({**lines[0], "answer": "z"}), encoding="utf-8")
    with pytest.raises(InputDataError, match=r"bad.jsonl:1: the answer 'z' is not one of the choices"):
        read_choices(tmp_path / "bad.jsonl")
    (tmp_path / "one.jsonl").write_text(json.dumps({**lines[0], "choices": ["d"], "answer": 0}), encoding="utf-8")
    with pytest.raises(InputDataError, match=r"one.jsonl:1: choices must be a list of at least two"):
        read_choices(tmp_path / "one.jsonl")


def test_padded_options_do_not_change_scores(tmp_path: Path, tiny_vocab: Path) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "hf", "BertModel", tiny_vocab)
    base = load_checkpoint(checkpoint, head="base")
    from nlpforge.tasks import task_model_from_encoder

    task = get_task("multiple_choice")
    model = task_model_from_encoder(base.model, task, 2).eval()
    two = ChoiceExample("a b c", "d", ["e", "f"], 0)
    three = ChoiceExample("g h", "i", ["j", "k", "l"], 2)
    alone = task.choice_logits(model, base.tokenizer, [two], 16, 8)[0]
    together = task.choice_logits(model, base.tokenizer, [two, three], 16, 8)
    assert together[0].shape == (2,) and together[1].shape == (3,)
    assert_close(torch.from_numpy(together[0]), torch.from_numpy(alone), atol=1e-5, rtol=1e-5)
    # batches run shortest first; every example still gets its own scores back, in input order
    one_by_one = task.choice_logits(model, base.tokenizer, [two, three], 16, 1)
    assert [len(s) for s in one_by_one] == [2, 3]
    for single, joint in zip(one_by_one, together, strict=True):
        assert_close(torch.from_numpy(single), torch.from_numpy(joint), atol=1e-5, rtol=1e-5)
    batch = collate_choices(encode_choices(base.tokenizer, [two, three], 16), 0)
    assert batch["choice_mask"].tolist() == [[True, True, False], [True, True, True]]


def write_rule_data(path: Path, count: int, seed: int) -> None:
    """The right option is the one ending in "y" (ay, ey, ...), wherever the options put it."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        right = rng.choice(["ay", "ey", "by", "cy", "dy"])
        choices = [right, *rng.sample(["aa", "ee", "ba", "ca", "da", "fa", "ga"], rng.choice([1, 2]))]
        rng.shuffle(choices)
        rows.append({"context": " ".join(rng.sample(LETTERS[:20], 4)), "question": "z", "choices": choices,
                     "answer": right})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_learns_a_rule_and_predicts_through_the_predictor(tmp_path: Path, tiny_bert_dir: Path) -> None:
    write_rule_data(tmp_path / "train.jsonl", 240, seed=0)
    write_rule_data(tmp_path / "dev.jsonl", 60, seed=1)
    summary = finetune(FinetuneArgs(
        task="multiple_choice", model=str(tiny_bert_dir), train=str(tmp_path / "train.jsonl"),
        eval=str(tmp_path / "dev.jsonl"), out=str(tmp_path / "mc"), epochs=12, batch_size=16, learning_rate=3e-3,
        warmup_ratio=0.0, max_length=16, progress=False, seed=0))
    assert summary["best"] >= 90.0  # chance: 42% (two or three options)
    predictor = Predictor.load(tmp_path / "mc")
    [answer] = predictor.predict([{"context": "a b c d", "question": "z", "choices": ["fa", "cy", "ga"]}])
    assert answer["answer"] == "cy" and len(answer["scores"]) == 3
    assert answer["scores"][answer["index"]] == pytest.approx(answer["score"])
    with pytest.raises(InputDataError, match=r"inputs\[0\]: choices must be a list"):
        predictor.predict([{"context": "a", "question": "z", "choices": "b"}])


def test_group_by_length_sorts_by_option_tokens_not_option_count(
        tmp_path: Path, tiny_bert_dir: Path, tiny_vocab: Path) -> None:
    task = get_task("multiple_choice")
    tokenizer = tiny_tokenizer(tiny_vocab)
    short = ChoiceExample(context="a", question="z", choices=["a", "b", "c", "d"], answer=0)
    long = ChoiceExample(context="a b c d a b c d a b", question="z", choices=["a", "b"], answer=1)
    short_feature, long_feature = encode_choices(tokenizer, [short, long], 32)
    assert task.padded_length(long_feature) > task.padded_length(short_feature)
    assert task.padded_length(long_feature) == max(len(ids) for ids in long_feature["input_ids"])
    write_rule_data(tmp_path / "train.jsonl", 240, seed=0)
    summary = finetune(FinetuneArgs(
        task="multiple_choice", model=str(tiny_bert_dir), train=str(tmp_path / "train.jsonl"),
        eval=str(tmp_path / "train.jsonl"), out=str(tmp_path / "mc"), epochs=12, batch_size=16,
        learning_rate=3e-3, warmup_ratio=0.0, max_length=16, progress=False, seed=0, group_by_length=True))
    assert summary["best"] >= 90.0


def test_onnx_export_says_it_does_not_take_options(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from nlpforge.compress.export import export_onnx
    from nlpforge.errors import ConfigError
    from nlpforge.tasks import task_model_from_encoder

    base = load_checkpoint(tiny_bert_dir, head="base")
    model = task_model_from_encoder(base.model, get_task("multiple_choice"), 2)
    with pytest.raises(ConfigError, match="multiple_choice model reads"):
        export_onnx(model, tmp_path / "onnx", base.tokenizer, {"task": "multiple_choice"})
    assert not (tmp_path / "onnx").exists()
