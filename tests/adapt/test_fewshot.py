"""The K-shot protocol: sampling (K per class, N stratified, the errors), SetFit's pair sampling and
loss, the mean-pooling classifier, and ``nlpforge fewshot`` end to end on a tiny model."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest
import torch
import transformers
from torch.testing import assert_close

from conftest import run_cli, write_classification
from nlpforge.adapt.contrastive import contrastive_pairs, cosine_similarity_loss
from nlpforge.adapt.sampling import sample_per_class, sample_stratified
from nlpforge.checkpoint import load_checkpoint, save_checkpoint
from nlpforge.config import ModelConfig
from nlpforge.data.examples import TextExample
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.recipes.configs import FewshotArgs
from nlpforge.tasks.classify import SequenceClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


def examples(counts: dict[str, int]) -> list[TextExample]:
    rows = [(label, i) for label, count in counts.items() for i in range(count)]
    return [TextExample(f"{label} {i}", None, label, line) for line, (label, i) in enumerate(rows, start=2)]


def test_k_per_class_is_exact_seeded_and_names_a_short_class() -> None:
    pool = examples({"a": 30, "b": 12, "c": 9})
    sample = sample_per_class(pool, 8, seed=3, path="train.tsv")
    assert Counter(e.label for e in sample) == {"a": 8, "b": 8, "c": 8}
    assert len({e.text for e in sample}) == 24  # no example twice
    assert [e.text for e in sample] == [e.text for e in sample_per_class(pool, 8, 3, "train.tsv")]
    assert [e.text for e in sample] != [e.text for e in sample_per_class(pool, 8, 4, "train.tsv")]
    with pytest.raises(InputDataError, match=r"train.tsv: --k 10 .*'c' has 9"):
        sample_per_class(pool, 10, 0, "train.tsv")


def test_stratified_sample_keeps_the_class_shares_and_every_class() -> None:
    pool = examples({"a": 700, "b": 254, "c": 46})
    sample = sample_stratified(pool, 50, seed=0, path="t")
    assert len(sample) == 50
    assert Counter(e.label for e in sample) == {"a": 35, "b": 13, "c": 2}  # 35, 12.7, 2.3: largest remainder
    rare = sample_stratified(examples({"a": 990, "b": 10}), 20, seed=1, path="t")
    assert Counter(e.label for e in rare) == {"a": 19, "b": 1}  # at least one of every class
    with pytest.raises(InputDataError, match="fewer than the 3 classes"):
        sample_stratified(pool, 2, 0, "t")
    with pytest.raises(InputDataError, match="more than the 1000"):
        sample_stratified(pool, 1001, 0, "t")


def test_pairs_are_setfit_positives_and_negatives() -> None:
    labels = [0, 0, 1, 1, 1, 2]
    pairs = contrastive_pairs(labels, iterations=4, seed=0)
    positives = [p for p in pairs if p[2] == 1.0]
    negatives = [p for p in pairs if p[2] == 0.0]
    assert all(labels[i] == labels[j] and i != j for i, j, _ in positives)
    assert all(labels[i] != labels[j] for i, j, _ in negatives)
    assert len(negatives) == 4 * len(labels) and len(positives) == 4 * (len(labels) - 1)  # label 2 has no partner
    assert pairs == contrastive_pairs(labels, 4, 0)


def test_cosine_similarity_loss() -> None:
    left = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    right = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    assert cosine_similarity_loss(left, right, torch.tensor([1.0, 0.0])).item() == pytest.approx(0.0)
    assert cosine_similarity_loss(left, right, torch.tensor([0.0, 1.0])).item() == pytest.approx(1.0)


def test_mean_pooling_classifier_ignores_padding_and_round_trips(tmp_path: Path, tiny_vocab: Path) -> None:
    torch.manual_seed(0)
    config = dataclasses.replace(ModelConfig.from_name("tiny-bert"), classifier_pooling="mean", dropout=0.0,
                                 attention_dropout=0.0, has_pooler=False)
    model = SequenceClassifier(config).eval()
    ids = torch.tensor([[2, 7, 8, 3]])
    padded = torch.tensor([[2, 7, 8, 3, 0, 0]])
    with torch.no_grad():
        alone = model(ids, torch.ones_like(ids)).logits
        with_pad = model(padded, torch.tensor([[1, 1, 1, 1, 0, 0]])).logits
    assert_close(alone, with_pad, atol=1e-5, rtol=1e-5)
    words = tiny_vocab.read_text().split()
    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    save_checkpoint(tmp_path / "mean", model, config, tokenizer, "classify", {"task": "classify", "labels": ["x", "y"]})
    assert json.loads((tmp_path / "mean" / "config.json").read_text())["nlpforge_classifier_pooling"] == "mean"
    loaded = load_checkpoint(tmp_path / "mean")
    assert loaded.config.classifier_pooling == "mean"
    with torch.no_grad():
        assert_close(loaded.model(ids, torch.ones_like(ids)).logits, alone)
    with pytest.raises(ConfigError, match="classifier_pooling"):
        dataclasses.replace(config, classifier_pooling="max")


def test_fewshot_args_need_k_or_examples() -> None:
    base = dict(method="finetune", model="m", train="t", eval="e", out="o")
    assert FewshotArgs(**base, k="8, 16").shots == [8, 16]
    with pytest.raises(ConfigError, match="either --k"):
        FewshotArgs(**base)
    with pytest.raises(ConfigError, match="either --k"):
        FewshotArgs(**base, k="8", examples=50)
    with pytest.raises(ConfigError, match="--k '8,x'"):
        FewshotArgs(**base, k="8,x")
    with pytest.raises(ConfigError, match="--method"):
        FewshotArgs(**{**base, "method": "magic"}, k="8")


@pytest.mark.parametrize("method", ["contrastive", "lora", "deep-prompt"])
def test_fewshot_command_writes_results_and_a_serving_model(
        method: str, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    write_classification(tmp_path / "train.tsv", 60, seed=0)
    write_classification(tmp_path / "dev.tsv", 30, seed=1)
    out = tmp_path / "fs"
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "fewshot", "--method", method, "--model", tiny_bert_dir, "--train",
        tmp_path / "train.tsv", "--eval", tmp_path / "dev.tsv", "--k", "4", "--seeds", "2", "--epochs", "2",
        "--pair-iterations", "2", "--head-steps", "20", "--out", out)
    assert code == 0, stderr
    results = json.loads((out / "results.json").read_text())
    for run in results["runs"]:  # each seed is announced on stderr as it finishes
        assert f"seed {run['seed']}: accuracy {run['accuracy']:.2f}" in stderr
    assert results["method"] == method and results["k"] == 4
    assert [run["seed"] for run in results["runs"]] == [0, 1]
    assert all(0 <= run["accuracy"] <= 100 and run["train_examples"] == 8 for run in results["runs"])
    accuracies = [run["accuracy"] for run in results["runs"]]
    assert results["mean_accuracy"] == pytest.approx(sum(accuracies) / 2, abs=0.01)
    assert "mean" in stdout and f"{results['mean_accuracy']:.2f}" in stdout
    best = load_checkpoint(out / "model")  # the best run's model loads and predicts like any checkpoint
    assert best.meta["labels"] == ["0", "1"]
    from nlpforge.predictor import Predictor

    assert Predictor.load(out / "model").predict(["a b z"])[0]["label"] in ("0", "1")
    assert not (out / ".runs").exists()


def test_fewshot_errors_name_the_problem(tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    write_classification(tmp_path / "train.tsv", 10, seed=0)
    (tmp_path / "dev.tsv").write_text("text\tlabel\na b\t0\nc d\t7\n", encoding="utf-8")
    common = ["fewshot", "--method", "finetune", "--model", tiny_bert_dir, "--train", tmp_path / "train.tsv",
              "--out", tmp_path / "o", "--seeds", "1"]
    code, _, stderr = run_cli(monkeypatch, capsys, *common, "--eval", tmp_path / "dev.tsv", "--k", "2")
    assert code == 2 and "dev.tsv:3: label '7' never occurs in the training file" in stderr
    code, _, stderr = run_cli(monkeypatch, capsys, *common, "--eval", tmp_path / "train.tsv", "--k", "6")
    assert code == 2 and "--k 6 is more than some classes have ('0' has 5, '1' has 5)" in stderr


def test_centroid_head_init_is_the_nearest_centroid_classifier() -> None:
    from nlpforge.adapt.contrastive import centroid_head_init
    from nlpforge.tasks.heads import ClassificationHead

    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 32, generator=generator)
    label_ids = torch.arange(3).repeat(4)  # (12,)
    embeddings = centers[label_ids] + 0.8 * torch.randn(12, 32, generator=generator)
    head = ClassificationHead(dataclasses.replace(ModelConfig.from_name("tiny-bert"), num_labels=3)).eval()
    centroid_head_init(head.dense, head.out, embeddings, label_ids)
    query_labels = torch.randint(0, 3, (200,), generator=generator)
    queries = centers[query_labels] + 0.8 * torch.randn(200, 32, generator=generator)  # like the embeddings
    unit = torch.nn.functional.normalize
    centroids = unit(torch.stack([unit(embeddings, dim=-1)[label_ids == c].mean(0) for c in range(3)]), dim=-1)
    expected = (unit(queries, dim=-1) @ centroids.T).argmax(-1)
    with torch.no_grad():
        agreement = (head(queries).argmax(-1) == expected).float().mean().item()
    assert agreement >= 0.98  # tanh's curvature flips only near-ties


def test_cloze_scores_are_the_mlm_logits_of_the_verbalizer_at_the_mask(tiny_mlm_dir: Path) -> None:
    from nlpforge.adapt.cloze import collate_cloze, encode_cloze, label_logits, verbalizer_token_ids

    checkpoint = load_checkpoint(tiny_mlm_dir, head="mlm")
    tokenizer = checkpoint.tokenizer
    label_ids = verbalizer_token_ids(tokenizer, {"pos": ["z", "y"], "neg": ["a"]}, ["neg", "pos"])
    assert label_ids == [[tokenizer.convert_tokens_to_ids("a")],
                         [tokenizer.convert_tokens_to_ids("z"), tokenizer.convert_tokens_to_ids("y")]]
    features = [encode_cloze(tokenizer, "{text} b {mask} c", text, None, 16) for text in ("d e", "f g h i")]
    batch = collate_cloze(features, tokenizer.pad_token_id)
    with torch.no_grad():
        ours = label_logits(checkpoint.model, batch, label_ids)  # (2, 2)
        full = checkpoint.model(batch["input_ids"], batch["attention_mask"]).logits  # (2, T, V)
    for row, feature in enumerate(features):
        assert feature["input_ids"][feature["mask_position"]] == tokenizer.mask_token_id
        at_mask = full[row, feature["mask_position"]]
        assert_close(ours[row], torch.stack([at_mask[label_ids[0]].mean(), at_mask[label_ids[1]].mean()]))
    long = encode_cloze(tokenizer, "{text} b {mask} c", " ".join("abcdefgh" * 4), None, 12)
    assert len(long["input_ids"]) <= 12 and long["input_ids"][long["mask_position"]] == tokenizer.mask_token_id


def test_cloze_errors(tiny_mlm_dir: Path, tiny_bert_dir: Path) -> None:
    from nlpforge.adapt.cloze import check_template, parse_verbalizer, verbalizer_token_ids

    assert parse_verbalizer("1=好|棒, 0=差") == {"1": ["好", "棒"], "0": ["差"]}
    with pytest.raises(ConfigError, match="LABEL=WORD"):
        parse_verbalizer("1:good")
    with pytest.raises(ConfigError, match="exactly one"):
        check_template("{text} {mask} {mask}", pairs=False)
    with pytest.raises(ConfigError, match="text_pair"):
        check_template("{text} {mask}", pairs=True)
    tokenizer = load_checkpoint(tiny_mlm_dir, head="mlm").tokenizer
    with pytest.raises(ConfigError, match=r"the word 'a b' of label '1' is 2 tokens"):
        verbalizer_token_ids(tokenizer, {"1": ["a b"], "0": ["a"]}, ["0", "1"])
    with pytest.raises(ConfigError, match=r"the word 'zzzq' of label '1' is not in the model's vocabulary"):
        verbalizer_token_ids(tokenizer, {"1": ["zzzq"], "0": ["a"]}, ["0", "1"])
    with pytest.raises(ConfigError, match="no word for label"):
        verbalizer_token_ids(tokenizer, {"1": ["z"]}, ["0", "1"])


def test_fewshot_cloze_trains_and_the_model_serves(tiny_mlm_dir: Path, tiny_bert_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    write_classification(tmp_path / "train.tsv", 60, seed=0)
    write_classification(tmp_path / "dev.tsv", 30, seed=1)
    common = ["fewshot", "--method", "cloze", "--train", tmp_path / "train.tsv", "--eval", tmp_path / "dev.tsv",
              "--k", "6", "--seeds", "1", "--epochs", "3", "--template", "{text} b {mask} c", "--template",
              "{mask} : {text}", "--verbalizer", "1=z,0=a", "--no-progress"]
    code, _, stderr = run_cli(monkeypatch, capsys, *common, "--model", tiny_mlm_dir, "--out", tmp_path / "cloze")
    assert code == 0, stderr
    results = json.loads((tmp_path / "cloze" / "results.json").read_text())
    assert results["method"] == "cloze" and len(results["runs"]) == 1
    loaded = load_checkpoint(tmp_path / "cloze" / "model")
    assert loaded.head == "mlm" and loaded.task.name == "cloze"
    assert loaded.task.templates == ["{text} b {mask} c", "{mask} : {text}"]
    assert transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "cloze" / "model") is not None
    from nlpforge.predictor import Predictor

    predicted = Predictor.load(tmp_path / "cloze" / "model").predict(["a b z", {"text": "c d"}])
    assert [p["label"] in ("0", "1") for p in predicted] == [True, True]

    code, _, stderr = run_cli(monkeypatch, capsys, *common, "--model", tiny_mlm_dir, "--out", tmp_path / "lora",
                              "--cloze-tuning", "lora", "--lora-r", "2")
    assert code == 0, stderr
    merged = load_checkpoint(tmp_path / "lora" / "model")  # adapters merged into a plain masked-LM checkpoint
    assert merged.task.name == "cloze" and not any("lora" in k for k in merged.model.state_dict())

    code, _, stderr = run_cli(monkeypatch, capsys, *common, "--model", tiny_bert_dir, "--out", tmp_path / "x")
    assert code == 2 and "needs a checkpoint with a masked-LM head" in stderr
    code, _, stderr = run_cli(monkeypatch, capsys, "train", "--task", "cloze", "--model", tiny_mlm_dir, "--train",
                              tmp_path / "train.tsv", "--out", tmp_path / "y")
    assert code == 2 and "nlpforge fewshot --method cloze" in stderr


def test_self_training_pool_drops_labels_and_pseudo_labels_are_confident_and_balanced() -> None:
    from nlpforge.adapt.self_training import confident_balanced, unlabelled_pool

    train = examples({"a": 10, "b": 10})
    sample = train[:2]
    pool = unlabelled_pool(train, sample, 12, seed=0)
    assert len(pool) == 12 and all(e.label is None for e in pool)
    assert not {(e.text, e.line) for e in pool} & {(e.text, e.line) for e in sample}
    assert unlabelled_pool(train, sample, 12, seed=0) == pool  # seeded
    # P(a) falls with the index: the 3 surest of "a" are the first, of "b" the last (6 = 12 // (2 x 2) each)
    predictions = [{"label": "a" if i < 9 else "b", "scores": {"a": 1 - i / 12, "b": i / 12}} for i in range(12)]
    kept = confident_balanced(pool, predictions, ["a", "b"])
    assert Counter(e.label for e in kept) == {"a": 3, "b": 3}
    assert [e.text for e in kept] == [pool[i].text for i in (0, 1, 2, 11, 10, 9)]
    # a teacher that predicts only "a" still gives "b" its most likely texts, each text once
    one_sided = [{"label": "a", "scores": {"a": 0.9 - i / 100, "b": 0.1 + i / 100}} for i in range(12)]
    kept = confident_balanced(pool, one_sided, ["a", "b"])
    assert [e.text for e in kept] == [pool[i].text for i in (0, 1, 2, 11, 10, 9)]
    assert len({e.text for e in kept}) == 6


def test_fewshot_self_training_reports_the_teacher_and_serves_the_student(
        tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    write_classification(tmp_path / "train.tsv", 60, seed=0)
    write_classification(tmp_path / "dev.tsv", 30, seed=1)
    out = tmp_path / "fs"
    from nlpforge.recipes import fewshot

    grouped = []  # per fine-tuning run: batched by length? (the students are, the K-shot teacher is not)
    real_finetune = fewshot.finetune
    monkeypatch.setattr(fewshot, "finetune", lambda args: grouped.append(args.group_by_length) or real_finetune(args))
    code, _, stderr = run_cli(
        monkeypatch, capsys, "fewshot", "--method", "finetune", "--model", tiny_bert_dir, "--train",
        tmp_path / "train.tsv", "--eval", tmp_path / "dev.tsv", "--k", "4", "--seeds", "1", "--epochs", "2",
        "--self-train", "40", "--self-train-epochs", "1", "--self-train-rounds", "2", "--out", out,
        "--no-progress")
    assert code == 0, stderr
    result = json.loads((out / "results.json").read_text())
    run = result["runs"][0]
    assert 0 <= run["before_self_training"]["accuracy"] <= 100 and 0 <= run["accuracy"] <= 100
    assert run["pseudo_labelled"] == 20  # half the pool of 40, 10 per class
    # the first round's student (the second round's teacher) is reported beside the last
    assert len(run["earlier_rounds"]) == 1 and 0 <= run["earlier_rounds"][0]["accuracy"] <= 100
    assert result["earlier_rounds"][0]["mean_accuracy"] == run["earlier_rounds"][0]["accuracy"]
    assert load_checkpoint(out / "model").meta["labels"] == ["0", "1"]
    assert grouped == [False, True, True]
    code, _, stderr = run_cli(
        monkeypatch, capsys, "fewshot", "--method", "finetune", "--model", tiny_bert_dir, "--train",
        tmp_path / "dev.tsv", "--eval", tmp_path / "dev.tsv", "--examples", "29", "--seeds", "1",
        "--self-train", "10", "--out", tmp_path / "o2", "--no-progress")
    assert code == 2 and "--self-train needs unlabelled texts beyond the sample, but only 1 are there" in stderr


def record_training_files(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Per fine-tuning run of the fewshot recipe, the lines of the file it trains on (filled as runs go)."""
    from nlpforge.recipes import fewshot

    rows: list[list[str]] = []
    real_finetune = fewshot.finetune
    monkeypatch.setattr(fewshot, "finetune", lambda args: rows.append(
        Path(args.train).read_text(encoding="utf-8").splitlines()) or real_finetune(args))
    return rows


def test_self_training_student_sees_the_sample_repeated(
        tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    write_classification(tmp_path / "train.tsv", 40, seed=0)
    rows = record_training_files(monkeypatch)
    code, _, stderr = run_cli(
        monkeypatch, capsys, "fewshot", "--method", "finetune", "--model", tiny_bert_dir, "--train",
        tmp_path / "train.tsv", "--eval", tmp_path / "train.tsv", "--k", "4", "--seeds", "1", "--epochs", "1",
        "--self-train", "20", "--self-train-epochs", "1", "--self-train-sample-repeats", "3", "--out",
        tmp_path / "fs", "--no-progress")
    assert code == 0, stderr
    teacher, student = rows
    assert len(teacher) == 8 and len(student) == 3 * 8 + 10  # the sample three times, half the pool of 20
    assert student[:24] == teacher * 3
    code, _, stderr = run_cli(
        monkeypatch, capsys, "fewshot", "--method", "finetune", "--model", tiny_bert_dir, "--train",
        tmp_path / "train.tsv", "--eval", tmp_path / "train.tsv", "--k", "4", "--self-train", "20",
        "--self-train-sample-repeats", "0", "--out", tmp_path / "o2", "--no-progress")
    assert code == 2 and "--self-train-sample-repeats >= 1" in stderr


def test_fewshot_self_training_labels_the_unlabelled_file(
        tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    write_classification(tmp_path / "train.tsv", 20, seed=0)
    write_classification(tmp_path / "more.tsv", 30, seed=2)
    texts = [line.split("\t")[0] for line in (tmp_path / "more.tsv").read_text().splitlines()[1:]]
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("\n".join(texts[:-1]) + "\n" + json.dumps({"text": texts[-1]}) + "\n")
    out = tmp_path / "fs"
    code, _, stderr = run_cli(
        monkeypatch, capsys, "fewshot", "--method", "finetune", "--model", tiny_bert_dir, "--train",
        tmp_path / "train.tsv", "--eval", tmp_path / "train.tsv", "--k", "4", "--seeds", "1", "--epochs", "1",
        "--self-train", "100", "--self-train-epochs", "1", "--unlabelled", unlabelled, "--out", out, "--no-progress")
    assert code == 0, stderr
    # all 30 texts of the file (not the 12 training rows left outside the sample): half kept, balanced
    assert json.loads((out / "results.json").read_text())["runs"][0]["pseudo_labelled"] == 14
    code, _, stderr = run_cli(
        monkeypatch, capsys, "fewshot", "--method", "finetune", "--model", tiny_bert_dir, "--train",
        tmp_path / "train.tsv", "--eval", tmp_path / "train.tsv", "--k", "4", "--unlabelled", unlabelled,
        "--out", tmp_path / "o2", "--no-progress")
    assert code == 2 and "--unlabelled is read by self-training only" in stderr


def test_label_texts_join_the_sample_of_teacher_and_student(
        tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    write_classification(tmp_path / "train.tsv", 40, seed=0)
    rows = record_training_files(monkeypatch)
    out = tmp_path / "fs"
    code, _, stderr = run_cli(
        monkeypatch, capsys, "fewshot", "--method", "finetune", "--model", tiny_bert_dir, "--train",
        tmp_path / "train.tsv", "--eval", tmp_path / "train.tsv", "--k", "4", "--seeds", "1", "--epochs", "1",
        "--self-train", "20", "--self-train-epochs", "1", "--label-text", "1=has z|z z,0=no z",
        "--label-text-copies", "2", "--out", out, "--no-progress")
    assert code == 0, stderr
    teacher, student = rows
    described = [json.dumps({"text": text, "label": label}) for text, label in
                 [("no z", "0"), ("no z", "0"), ("has z", "1"), ("has z", "1"), ("z z", "1"), ("z z", "1")]]
    assert len(teacher) == 8 + 6 and teacher[8:] == described  # K=4 per class, then each text twice, by label
    assert len(student) == 14 + 10 and student[:14] == teacher  # ... and the student sees them too
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert run["train_examples"] == 8 and run["label_text_examples"] == 6
    common = ["fewshot", "--model", tiny_bert_dir, "--train", tmp_path / "train.tsv", "--eval",
              tmp_path / "train.tsv", "--k", "4", "--seeds", "1", "--out", tmp_path / "o2", "--no-progress"]
    for flags, message in [
            (["--method", "finetune", "--label-text", "1=has z,2=no z"],
             "--label-text '1=has z,2=no z': no label '2' in "),
            (["--method", "finetune", "--label-text", "1=has z"], "no text for '0' (its labels: 0, 1)"),
            (["--method", "finetune", "--label-text", "1 has z"], "expected LABEL=WORD"),
            (["--method", "cloze", "--template", "{text} {mask}", "--verbalizer", "1=a,0=b", "--label-text",
              "1=a,0=b"], "--method cloze reads labels through its --verbalizer instead")]:
        code, _, stderr = run_cli(monkeypatch, capsys, *common, *flags)
        assert code == 2 and message in stderr, stderr
