"""``nlpforge`` command line: a thin map from subcommand to a typed function.

Errors a user can cause (``NlpforgeError``) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from nlpforge.errors import InputDataError, NlpforgeError

app = typer.Typer(
    name="nlpforge",
    help="Pretrain, adapt, compress, export and serve transformer NLP models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class TargetFormat(str, Enum):
    hf = "hf"
    nlpforge = "nlpforge"


class Pooling(str, Enum):
    mean = "mean"
    cls = "cls"


@app.command()
def info(checkpoint: Annotated[str, typer.Argument(help="Checkpoint directory or hub name.")]) -> None:
    """Print a JSON summary of a checkpoint: family, layers, hidden size, heads, vocab, parameters, bytes."""
    from nlpforge.checkpoint import directory_size, load_checkpoint

    loaded = load_checkpoint(checkpoint)
    config = loaded.config
    summary = {
        "path": str(loaded.path),
        "family": config.family,
        "model_type": config.model_type,
        "head": loaded.head,
        "task": loaded.meta.get("task"),
        "layers": config.num_layers,
        "hidden_size": config.hidden_size,
        "heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "max_positions": config.max_positions,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "bytes_on_disk": directory_size(loaded.path),
        "tokenizer": type(loaded.tokenizer).__name__ if loaded.tokenizer is not None else None,
    }
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def convert(
    source: Annotated[str, typer.Argument(help="Checkpoint directory (HF layout, safetensors or .bin) or hub name.")],
    out: Annotated[Path, typer.Argument(help="Directory to write (replaced atomically if it exists).")],
    to: Annotated[TargetFormat, typer.Option(help="hf: plain Hugging Face directory; nlpforge: adds nlpforge.json.")]
    = TargetFormat.nlpforge,
) -> None:
    """Convert a checkpoint through nlpforge's models into a safetensors checkpoint directory."""
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


def main() -> None:
    try:
        app()
    except NlpforgeError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
