"""``nlpforge`` command line: a thin map from subcommand to a typed function.

Errors a user can cause (``NlpforgeError``) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import socket
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from nlpforge.cli_options import flag_name, given, options, register
from nlpforge.cli_qa import cqa_app, kbqa_app, qa_app
from nlpforge.cli_tokenizer import tokenizer_app
from nlpforge.data.options import DataOptions
from nlpforge.errors import ConfigError, InputDataError, NlpforgeError
from nlpforge.generation import GenerationOptions, GenerationSettingError
from nlpforge.locate import require_file, resolve_directory
from nlpforge.recipes.configs import CompressArgs, FewshotArgs, FinetuneArgs, MetaTrainArgs, PretrainArgs
from nlpforge.wordvec import Word2VecArgs

app = typer.Typer(
    name="nlpforge",
    help="Pretrain, adapt, compress, export and serve transformer NLP models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain click help: wraps at the terminal width (80 columns when piped)
)
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(qa_app, name="qa")
app.add_typer(kbqa_app, name="kbqa")
app.add_typer(cqa_app, name="cqa")


class TargetFormat(str, Enum):
    hf = "hf"
    nlpforge = "nlpforge"


class Pooling(str, Enum):
    mean = "mean"
    cls = "cls"


@app.command()
def info(checkpoint: Annotated[str, typer.Argument(help="Artifact directory (checkpoint, ONNX, INT8) or hub name.")]
         ) -> None:
    """Print a JSON summary of any artifact: kind, precision, task, labels, shape, parameters, bytes, metrics."""
    resolve_directory(checkpoint)
    from nlpforge.artifacts import load_artifact

    typer.echo(json.dumps(load_artifact(checkpoint).describe(), indent=2, ensure_ascii=False))


@app.command()
def convert(
    source: Annotated[str, typer.Argument(help="Checkpoint directory (HF layout, safetensors or .bin) or hub name.")],
    out: Annotated[Path, typer.Argument(help="Directory to write (replaced atomically if it exists).")],
    to: Annotated[TargetFormat, typer.Option(help="hf: plain Hugging Face directory; nlpforge: adds nlpforge.json.")]
    = TargetFormat.nlpforge,
) -> None:
    """Convert a checkpoint through nlpforge's models into a safetensors checkpoint directory."""
    resolve_directory(source)
    from nlpforge.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(source)
    meta = None
    if to is TargetFormat.nlpforge:
        meta = {**loaded.meta, "stage": "convert", "source": str(source)}
    save_checkpoint(out, loaded.model, loaded.config, loaded.tokenizer, loaded.head, meta)
    typer.echo(f"wrote {out} ({to.value} layout, {loaded.config.model_type}, head {loaded.head})")


@app.command()
def embed(
    checkpoint: Annotated[str, typer.Argument(help="Encoder checkpoint directory or hub name.")],
    input: Annotated[Path, typer.Option("--input", help="UTF-8 text file, one text per line.")],
    output: Annotated[Path, typer.Option("--output", help="Where to write the (N, H) float32 .npy array.")],
    pooling: Annotated[Pooling, typer.Option(help="mean over tokens, or the first token.")] = Pooling.mean,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_length: Annotated[int, typer.Option(min=2, help="Tokens per text; longer texts are truncated.")] = 256,
    encoding: Annotated[str, typer.Option(help="Encoding of the input file, e.g. gb18030.")] = "utf-8",
    threads: Annotated[int, typer.Option(min=0, help="Torch CPU threads (0: torch's default).")] = 0,
) -> None:
    """Write one vector per input line (length-sorted batches inside, original order out)."""
    resolve_directory(checkpoint)
    require_file(input, "--input")
    import numpy as np
    import torch

    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.data.text import read_lines
    from nlpforge.embed import embed_texts

    if threads:
        torch.set_num_threads(threads)
    texts = read_lines(input, encoding)
    loaded = load_checkpoint(checkpoint, head="base")  # a decoder has no "base" head: a clear error
    if loaded.tokenizer is None:
        raise InputDataError(f"{checkpoint}: has no tokenizer files; embed needs the checkpoint's tokenizer")
    vectors = embed_texts(loaded.model, loaded.tokenizer, texts, pooling.value, batch_size, max_length)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:  # np.save on a handle keeps the exact file name
        np.save(handle, vectors)
    os.replace(tmp, output)
    typer.echo(f"wrote {output}: {vectors.shape[0]} x {vectors.shape[1]} ({pooling.value} pooling)")




@app.command("lora-merge")
def lora_merge(
    adapter: Annotated[Path, typer.Argument(help="LoRA adapter directory (nlpforge train --lora-r).")],
    out: Annotated[Path, typer.Argument(help="Checkpoint directory to write (replaced atomically if it exists).")],
    base: Annotated[str | None, typer.Option(help="The base checkpoint, when it moved since training "
                                                   "(default: the adapter's nlpforge.json base_model).")] = None,
) -> None:
    """Merge a LoRA adapter into its base weights (W + alpha/r * B A): a full checkpoint that compresses,
    exports and serves like any other."""
    resolve_directory(str(adapter))
    from nlpforge.adapt.lora import is_adapter_directory, merge_adapter_directory

    if not is_adapter_directory(adapter):
        raise ConfigError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json, or it is a full "
                          "checkpoint already)")
    merge_adapter_directory(adapter, out, base)
    typer.echo(f"wrote {out} (adapter {adapter} merged into its base)")


CONFIG = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
    Path | None, typer.Option(help="YAML file with any of these options (data options under 'data:'); flags "
                                   "override it.")])


def train(config: Path | None = None, **flags: object) -> None:
    """Fine-tune a checkpoint on a labelled file; the best checkpoint goes to --out."""
    values: dict[str, object] = _read_yaml(config) if config is not None else {}
    data = {**(values.pop("data", None) or {}), **given(DataOptions, flags)}
    values.update(given(FinetuneArgs, {k: v for k, v in flags.items() if k != "data"}))
    missing = [name for name in ("task", "model", "train", "out") if not values.get(name)]
    if missing:
        raise ConfigError(f"missing {', '.join('--' + m for m in missing)} (as flags or in --config)")
    resolve_directory(str(values["model"]))
    for flag in ("train", "eval"):
        if values.get(flag):
            require_file(str(values[flag]), f"--{flag}")
    from nlpforge.recipes.finetune import finetune

    try:
        args = FinetuneArgs(**values, data=data)
    except TypeError as error:
        raise ConfigError(f"{config}: {error}") from None
    typer.echo(json.dumps(finetune(args), indent=2))


register(app, "train", train, [CONFIG], [*options(FinetuneArgs, skip=("data",), required_note="here or in --config"),
                                         *options(DataOptions)], train.__doc__ or "")


def _read_yaml(path: Path) -> dict[str, object]:
    import yaml

    from nlpforge.data.text import read_text

    try:
        values = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return {k.replace("-", "_"): v for k, v in values.items()}


def evaluate(checkpoint: str, data: str, batch_size: int, max_length: int | None, **flags: object) -> None:
    """Evaluate a fine-tuned model (any artifact) on a labelled file; prints JSON metrics."""
    resolve_directory(checkpoint)
    require_file(data, "--data")
    from nlpforge.evaluate import evaluate as evaluate_file

    metrics = evaluate_file(checkpoint, data, batch_size, max_length, **given(DataOptions, flags))
    typer.echo(json.dumps(metrics, indent=2, ensure_ascii=False))


register(app, "eval", evaluate, [
    inspect.Parameter("checkpoint", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
        str, typer.Argument(help="Fine-tuned checkpoint, ONNX or INT8 directory.")]),
    inspect.Parameter("data", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
        str, typer.Option("--data", help="Labelled file in the training file's format.")]),
    inspect.Parameter("batch_size", inspect.Parameter.KEYWORD_ONLY, default=64, annotation=Annotated[
        int, typer.Option(min=1, help="Examples per batch.")]),
    inspect.Parameter("max_length", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        int | None, typer.Option(help="Tokens per example (default: the length the model was trained with).")])],
    options(DataOptions), evaluate.__doc__ or "")


NullThresholdOption = Annotated[float | None, typer.Option(
    help="span_qa: answer \"\" when the no-answer score beats the best span's by more than this (e.g. the "
         "best_f1_threshold `nlpforge eval` reports on SQuAD 2.0-style data); default: the one learnt in training.")]


@app.command()
def predict(
    checkpoint: Annotated[str, typer.Argument(help="Fine-tuned checkpoint or ONNX export directory.")],
    input: Annotated[str, typer.Option("--input", help="One input per line (text, or a JSON object); - = stdin.")],
    output: Annotated[Path | None, typer.Option(help="JSONL file to write (default: stdout).")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    encoding: Annotated[str, typer.Option(help="Input encoding.")] = "utf-8",
    null_threshold: NullThresholdOption = None,
) -> None:
    """Predict: classify -> label + scores; tag -> entities with offsets; span_qa -> answer + score.

    Lines that start with '{' are JSON objects: {"text", "text_pair"} (classify), {"text"} (tag),
    {"question", "context"} (span_qa); other lines are plain text.
    """
    resolve_directory(checkpoint)
    require_file(input, "--input")
    from nlpforge.data.text import input_records, read_lines
    from nlpforge.predictor import Predictor

    predictor = Predictor.load(checkpoint, batch_size=batch_size).with_null_threshold(null_threshold)
    if predictor.task is None:
        raise ConfigError(f"{checkpoint}: is not a fine-tuned task model; train one with `nlpforge train` "
                          "(or use `nlpforge embed` for a bare encoder)")
    if input == "-":
        lines = [line for line in sys.stdin.read().splitlines() if line.strip()]
        source = "<stdin>"
        if not lines:
            raise InputDataError("<stdin>: no input lines")
    else:
        lines, source = read_lines(input, encoding), input
    inputs = [predictor.parse(record, where) for record, where in input_records(lines, source)]
    predictions = predictor.predict_parsed(inputs)
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
    if output is None:
        sys.stdout.write(text)
        return
    _write_text_atomic(output, text)


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)



def generate(checkpoint: str, prompt: str | None, input: str | None, batch_size: int, encoding: str,
             **flags: object) -> None:
    """Continue text with a language model (a decoder checkpoint, e.g. from `nlpforge pretrain --objective clm`).

    With --prompt the new text goes to stdout as it is generated. With --input every line is a
    prompt; they run in batches and each completion is printed as one JSON line
    {"prompt": ..., "completion": ...}.
    """
    if prompt is not None and input is not None:
        raise ConfigError("pass --prompt or --input, not both")
    if prompt is None and input is None:
        raise ConfigError("pass --prompt TEXT (streamed to stdout) or --input FILE (one prompt per line; - = stdin)")
    if prompt is not None and not prompt.strip():
        raise InputDataError("--prompt is empty; give some text to continue")
    try:  # bad sampling values fail before the model loads
        options = GenerationOptions(**given(GenerationOptions, flags))
    except GenerationSettingError as error:
        raise ConfigError(f"{flag_name(error.field.split('[')[0])}: {str(error).split(': ', 1)[1]}") from None
    resolve_directory(checkpoint)
    if input is not None:
        require_file(input, "--input")
    from nlpforge.generation import encode_prompt
    from nlpforge.predictor import Predictor

    predictor = Predictor.load(checkpoint)
    if not predictor.generates:
        kind = f"a {predictor.task} model" if predictor.task else "an encoder"
        raise ConfigError(f"{checkpoint}: is {kind}, not a language model; generate needs a decoder checkpoint "
                          "(GPT-2 family), such as `nlpforge pretrain --objective clm` writes")
    if prompt is not None:
        steps = predictor.stream(prompt, options)  # checks the prompt before the first token
        try:
            for step in steps:
                if step.texts[0]:
                    sys.stdout.write(step.texts[0])
                    sys.stdout.flush()
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            sys.exit(130)
        sys.stdout.write("\n")
        return
    if input == "-":
        lines, source = [line for line in sys.stdin.read().splitlines() if line.strip()], "<stdin>"
        if not lines:
            raise InputDataError("<stdin>: no prompts")
    else:
        from nlpforge.data.text import read_lines

        lines, source = read_lines(input, encoding), str(input)
    positions = predictor.model.config.max_positions
    for number, line in enumerate(lines, start=1):  # every prompt is checked before any is run
        encode_prompt(predictor.tokenizer, line, positions, f"{source}:{number}")
    for start in range(0, len(lines), batch_size):
        batch = lines[start: start + batch_size]
        completions = predictor.generate(batch, options)
        sys.stdout.write("".join(json.dumps({"prompt": text, "completion": completion.text}, ensure_ascii=False) + "\n"
                                 for text, completion in zip(batch, completions, strict=True)))
        sys.stdout.flush()


register(app, "generate", generate, [
    inspect.Parameter("checkpoint", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
        str, typer.Argument(help="Language-model checkpoint directory (GPT-2 family decoder).")]),
    inspect.Parameter("prompt", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        str | None, typer.Option("--prompt", help="Text to continue; the new text streams to stdout as it is "
                                                  "generated.")]),
    inspect.Parameter("input", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        str | None, typer.Option("--input", help="File with one prompt per line (- = stdin); prints one JSON "
                                                 "line per prompt.")]),
    inspect.Parameter("batch_size", inspect.Parameter.KEYWORD_ONLY, default=8, annotation=Annotated[
        int, typer.Option(min=1, help="Prompts per batch with --input (left-padded).")]),
    inspect.Parameter("encoding", inspect.Parameter.KEYWORD_ONLY, default="utf-8", annotation=Annotated[
        str, typer.Option(help="Encoding of the --input file, e.g. gb18030.")])],
    options(GenerationOptions), generate.__doc__ or "")

@app.command()
def quickstart(
    out: Annotated[Path, typer.Option(help="Where to write the fine-tuned model.")] = Path("quickstart-model"),
    epochs: Annotated[float, typer.Option(help="Epochs over the 4,000-sentence sample.")] = 2.0,
    threads: Annotated[int, typer.Option(help="Torch CPU threads (0: default).")] = 0,
) -> None:
    """Fine-tune the packaged all-MiniLM-L6-v2 on an SST-2 sentiment sample and evaluate it (offline)."""
    import time
    from importlib.resources import files

    from nlpforge.recipes.finetune import FinetuneArgs, finetune

    data_dir = files("nlpforge") / "quickstart_data"
    train_file, dev_file = str(data_dir / "sst2_train_4k.tsv"), str(data_dir / "sst2_dev.tsv")
    typer.echo("Fine-tuning all-MiniLM-L6-v2 on 4,000 SST-2 sentences, evaluating on SST-2 dev (872)...")
    start = time.perf_counter()
    summary = finetune(FinetuneArgs(
        task="classify", model="sentence-transformers/all-MiniLM-L6-v2", train=train_file, eval=dev_file,
        out=str(out), epochs=epochs, batch_size=32, learning_rate=1e-4, max_length=64, warmup_ratio=0.1,
        threads=threads, save_every=10_000))
    minutes = (time.perf_counter() - start) / 60
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    evals = [r for r in records if "eval" in r]
    typer.echo("\n  step  epoch  accuracy  macro-F1")
    for record in evals:
        typer.echo(f"  {record['step']:>4}  {record['epoch']:>5}  {record['eval']['accuracy']:>8.2f}"
                   f"  {record['eval']['macro_f1']:>8.2f}")
    typer.echo(f"\nBest accuracy {summary['best']:.2f} at step {summary['best_step']} "
               f"({minutes:.1f} min). Model: {out}\n")
    typer.echo("Next:")
    typer.echo(f"  echo 'a gorgeous, witty film' | nlpforge predict {out} --input -")
    typer.echo(f"  nlpforge eval {out} --data {dev_file}")
    typer.echo(f"  nlpforge info {out}")
    typer.echo("  nlpforge train --task classify --model sentence-transformers/all-MiniLM-L6-v2 "
               "--train YOUR.tsv --eval YOUR_DEV.tsv --out my-model")


def compress(**flags: object) -> None:
    """Distil, prune, quantize and export a fine-tuned teacher; measure every stage side by side."""
    values = given(CompressArgs, {k: v for k, v in flags.items() if k != "data"})
    resolve_directory(str(values["teacher"]))
    for name in ("train", "eval", "select_eval"):
        if values.get(name):
            require_file(str(values[name]), flag_name(name))
    from nlpforge.recipes.compress import compress as run_compress

    out = Path(str(values["out"]))
    report = run_compress(CompressArgs(**values, data=given(DataOptions, flags)))
    typer.echo((out / "report.md").read_text(encoding="utf-8"))
    typer.echo(f"report: {out / 'report.json'}, {out / 'report.png'} ({len(report['stages'])} stages)")


register(app, "compress", compress, [
    inspect.Parameter("teacher", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
        str, typer.Argument(help="Fine-tuned teacher checkpoint (nlpforge train).")])],
    [*options(CompressArgs, skip=("teacher", "data")), *options(DataOptions)], compress.__doc__ or "")


def pretrain(**flags: object) -> None:
    """Pre-train from scratch (--config) or continue pre-training (--model) on unlabelled text.

    Held-out loss, perplexity and accuracy go to OUT/metrics.jsonl at every evaluation, where the
    model is saved too (transformers loads it as AutoModelForMaskedLM / AutoModelForCausalLM);
    `nlpforge train --model OUT` fine-tunes it.
    """
    values = given(PretrainArgs, flags)
    for name in ("model", "tokenizer"):
        if values.get(name):
            resolve_directory(str(values[name]))
    args = PretrainArgs(**values)
    from nlpforge.recipes.pretrain import pretrain as run_pretrain

    typer.echo(json.dumps(run_pretrain(args), indent=2))


register(app, "pretrain", pretrain, [], options(PretrainArgs), pretrain.__doc__ or "")


def fewshot(**flags: object) -> None:
    """The K-shot protocol: sample K examples per class (or N in total) from --train with fixed seeds,
    learn from them with --method, evaluate on --eval; writes OUT/results.json (runs, mean and std of
    accuracy) and the best run's model to OUT/model, and prints a table.
    """
    data = given(DataOptions, flags)
    values = given(FewshotArgs, {k: v for k, v in flags.items() if k != "data"})
    resolve_directory(str(values["model"]))
    for flag in ("train", "eval"):
        require_file(str(values[flag]), f"--{flag}")
    args = FewshotArgs(**values, data=data)
    from nlpforge.recipes.fewshot import fewshot as run_fewshot
    from nlpforge.recipes.fewshot import table

    typer.echo(table(run_fewshot(args)))
    typer.echo(f"wrote {Path(args.out) / 'results.json'}")


register(app, "fewshot", fewshot, [], [*options(FewshotArgs, skip=("data",)), *options(DataOptions)],
         fewshot.__doc__ or "")


def fewshot_meta_train(**flags: object) -> None:
    """Meta-train a prompt generator for --method generator: N-way K-shot episodes from several tasks'
    labelled files, a frozen --model (also written `nlpforge fewshot meta-train ...`)."""
    data = given(DataOptions, flags)
    values = given(MetaTrainArgs, {k: v for k, v in flags.items() if k != "data"})
    resolve_directory(str(values["model"]))
    for path in values.get("tasks") or []:
        require_file(str(path), "--tasks")
    args = MetaTrainArgs(**values, data=data)
    from nlpforge.recipes.fewshot import meta_train

    typer.echo(json.dumps(meta_train(args), indent=2))


register(app, "fewshot-meta-train", fewshot_meta_train, [],
         [*options(MetaTrainArgs, skip=("data",)), *options(DataOptions)], fewshot_meta_train.__doc__ or "")


def word2vec(corpus: list[Path], **flags: object) -> None:
    """Train static word vectors (gensim word2vec) on plain-text files; prints a JSON summary.

    Writes --out/vectors.bin (word2vec binary format: gensim's KeyedVectors.load_word2vec_format
    and the original word2vec tools load it) and --out/wordvec.json. Progress goes to stderr.
    """
    from nlpforge.wordvec import train_word2vec

    args = Word2VecArgs(corpus=[str(path) for path in corpus], **given(Word2VecArgs, flags))
    summary = train_word2vec(args, progress=lambda line: typer.echo(line, err=True))
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))


register(app, "word2vec", word2vec, [
    inspect.Parameter("corpus", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
        list[Path], typer.Option("--corpus", metavar="<path>", help=(
            "Plain-text corpus file, one sentence or paragraph per line (repeat for several files; <doc> tag "
            "lines are skipped)."))])],
    options(Word2VecArgs, skip=("corpus",)), word2vec.__doc__ or "")


@app.command("word2vec-eval")
def word2vec_eval(
    vectors: Annotated[Path, typer.Argument(help="Word-vector directory written by `nlpforge word2vec`.")],
    analogies: Annotated[Path | None, typer.Option(help="Analogy questions in the Google format "
                                                        "(questions-words.txt).")] = None,
    similarity: Annotated[list[Path] | None, typer.Option(metavar="<path>", help=(
        "Word-pair similarity file (WordSim-353, SimLex-999, ...); repeat for several."))] = None,
    restrict_vocab: Annotated[int, typer.Option(min=1, help="Use only the N most frequent words.")] = 300_000,
) -> None:
    """Evaluate word vectors: analogy accuracy (%) and per-file Spearman with the OOV ratio, as JSON."""
    from nlpforge.wordvec import evaluate_vectors

    result = evaluate_vectors(vectors, analogies, similarity or [], restrict_vocab)
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))


class Backend(str, Enum):
    torch = "torch"
    onnxruntime = "onnxruntime"


def _named_directories(values: list[str], option: str) -> dict[str, str]:
    """``NAME=DIR`` options as {name: directory}, each directory checked to exist."""
    named: dict[str, str] = {}
    for value in values:
        name, sep, directory = (part.strip() for part in value.partition("="))
        if not sep or not name or not directory:
            raise ConfigError(f"{option} {value!r}: write NAME=DIRECTORY (e.g. {option} sentiment=out/sst2-lora)")
        if name in named:
            raise ConfigError(f"{option}: the name {name!r} is given twice; each needs its own name")
        named[name] = str(resolve_directory(directory))
    return named


@app.command()
def serve(
    artifact: Annotated[str | None, typer.Argument(help="Checkpoint directory (fine-tuned, a bare encoder for "
                                                        "/v1/embed, or a language model for /v1/generate) or exported "
                                                        "ONNX directory (fp32 or INT8); leave it out to serve only "
                                                        "--qa (a knowledge base or an FAQ index).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes the server to the network.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    backend: Annotated[Backend | None, typer.Option(help="Default: the artifact's own (ONNX -> onnxruntime). "
                                                         "onnxruntime on a checkpoint exports it first.")] = None,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Inputs per model call.")] = 32,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="How long the oldest queued input waits for its "
                                                           "batch to fill up.")] = 5.0,
    max_queue: Annotated[int, typer.Option(min=1, help="Inputs allowed to wait; beyond it: 503 + Retry-After.")]
    = 256,
    instances: Annotated[int, typer.Option(min=1, help="Model copies, each running its own batches.")] = 1,
    api_key: Annotated[str | None, typer.Option(envvar="NLPFORGE_API_KEY",
                                                help="Require 'Authorization: Bearer KEY' on /v1 and /metrics.")]
    = None,
    request_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds before a queued request gets 504.")]
    = 30.0,
    max_inputs: Annotated[int, typer.Option(min=1, help="Inputs per request.")] = 64,
    max_chars: Annotated[int, typer.Option(min=1, help="Characters per input.")] = 20_000,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Request body size limit.")] = 1 << 20,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens a /v1/generate request may ask for at most "
                                                           "(language models).")] = 512,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads for the model(s) (0: all cores, split "
                                                     "between instances).")] = 0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    adapter: Annotated[list[str] | None, typer.Option(
        help="NAME=DIR: a LoRA adapter trained on ARTIFACT (the base checkpoint), repeatable; a request picks "
             "one with \"adapter\": NAME (default: the first). All share one copy of the base.")] = None,
    qa: Annotated[str | None, typer.Option(
        help="A QA index (`nlpforge qa index`) to answer on POST /v1/qa; ARTIFACT (a span_qa model) reads "
             "its passages.")] = None,
    null_threshold: NullThresholdOption = None,
) -> None:
    """Serve a model over HTTP: /v1/predict, /v1/embed (or /v1/generate for a language model), /health, /ready,
    /metrics, /docs, and a playground at /."""
    adapters = _named_directories(adapter or [], "--adapter")
    # The address is taken first and handed to uvicorn: a busy port is a one-line error at once, not
    # after seconds of imports and loading, and no other process can take it while the model loads.
    with _listen_socket(host, port) as listener:
        if artifact is not None:
            resolve_directory(artifact)
        import contextlib

        import torch
        import uvicorn

        from nlpforge.serve.app import ServeSettings, build_app, served_task

        port = listener.getsockname()[1]  # the one the system chose for --port 0
        settings = ServeSettings(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
                                 request_timeout_s=request_timeout, max_body_bytes=max_body_bytes,
                                 max_inputs=min(max_inputs, max_queue), max_chars=max_chars, api_key=api_key,
                                 max_new_tokens=max_new_tokens)
        app = build_app(artifact, settings, instances, backend.value if backend else None, threads, adapters,
                        str(resolve_directory(qa)) if qa else None, null_threshold)
        served = (f"{artifact} (task: {served_task(app.state.model)}, backend: {app.state.model.backend}, "
                  f"{instances} instance(s) x {torch.get_num_threads()} thread(s))" if artifact is not None
                  else f"{qa} (question answering only, POST /v1/qa)")
        typer.echo(f"serving {served} on http://{host}:{port}  playground: /  docs: /docs", err=True)
        # SIGTERM/SIGINT: uvicorn stops accepting, lets in-flight requests finish (up to 30 s), then the
        # app's shutdown drains the batcher.
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                timeout_graceful_shutdown=30, access_log=False)
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C during the graceful shutdown
            server.run(sockets=[listener])
    if not server.started:
        sys.exit(3)  # uvicorn's status for a failed startup (the app's own startup raised; uvicorn logged why)


def _listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) as uvicorn binds one (SO_REUSEADDR; IPv6 when the host has ':')."""
    from nlpforge.errors import BindError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a restarted server reuse a port whose old connections linger in TIME_WAIT; Linux still
        # refuses a port that another socket is listening on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if isinstance(error, socket.gaierror):
            raise BindError(f"--host {host!r} is not an address or a known host name ({error.strerror}); "
                            "use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
        if error.errno == errno.EADDRINUSE:
            raise BindError(f"port {port} on {host} is in use; stop the process listening there (`ss -ltnp` "
                            "shows it) or pass another --port (--port 0 picks a free one)") from None
        if error.errno == errno.EADDRNOTAVAIL:
            raise BindError(f"--host {host} is not an address of this machine; use 127.0.0.1 (this machine "
                            "only), 0.0.0.0 (every interface) or one of its own addresses") from None
        if error.errno == errno.EACCES:
            raise BindError(f"port {port} on {host} needs privileges to listen on; pass a --port above 1023") from None
        raise BindError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None
    return sock


@app.command("bench-serve")
def bench_serve(
    url: Annotated[str, typer.Argument(help="Server URL (http://host:port, or a full /v1/predict or /v1/embed URL).")],
    input: Annotated[Path, typer.Option("--input", help="One input per line: text, or a JSON object.")],
    concurrency: Annotated[int, typer.Option(min=1, max=4096, help="Closed-loop clients.")] = 32,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds of load.")] = 20.0,
    rate: Annotated[float | None, typer.Option(min=0.1, help="Open loop: requests started per second "
                                                             "(instead of closed-loop clients).")] = None,
    max_in_flight: Annotated[int, typer.Option(min=1, help="Open loop: outstanding requests at most.")] = 1024,
    inputs_per_request: Annotated[int, typer.Option(min=1)] = 1,
    api_key: Annotated[str | None, typer.Option(envvar="NLPFORGE_API_KEY")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the result as JSON here.")] = None,
    encoding: Annotated[str, typer.Option(help="Input file encoding.")] = "utf-8",
) -> None:
    """Load-test a server; print throughput, p50/p95/p99 latency and counts by status."""
    import asyncio
    from urllib.parse import urlparse

    from nlpforge.data.text import input_records, read_lines
    from nlpforge.serve.loadgen import run_load

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"URL {url!r}: expected http://host:port[/v1/predict]")
    if parsed.path in ("", "/"):
        url = url.rstrip("/") + "/v1/predict"
    inputs = [record for record, _ in input_records(read_lines(input, encoding), input)]
    load = run_load(url, inputs, concurrency, duration, rate, max_in_flight, inputs_per_request, api_key)
    try:  # uvloop (installed with uvicorn[standard]) roughly halves the generator's CPU per request
        import uvloop

        result = uvloop.run(load)
    except ImportError:
        result = asyncio.run(load)
    typer.echo(result.summary())
    if json_out is not None:
        _write_text_atomic(json_out, json.dumps(result.as_dict(), indent=2) + "\n")


def main() -> None:
    if sys.argv[1:3] == ["fewshot", "meta-train"]:  # the generator's meta-training, under its protocol's name
        sys.argv[1:3] = ["fewshot-meta-train"]
    try:
        app()
    except NlpforgeError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
