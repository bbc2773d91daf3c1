"""``nlpforge tokenizer ...``: the tokenizer command group (added to the main app in cli.py).

Only light modules are imported here; ``tokenizers`` and ``transformers`` load inside the commands.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from nlpforge.cli_options import command_group

tokenizer_app = command_group("tokenizer", "Train tokenizers on raw text corpora (Hugging Face layout).")


class TokenizerKind(str, Enum):
    wordpiece = "wordpiece"
    bpe = "bpe"
    unigram = "unigram"


@tokenizer_app.command("train")
def train(
    corpus: Annotated[list[str], typer.Option(
        "--corpus", metavar="<path>",
        help="Corpus file (plain text: blank lines separate documents; JSON lines; WikiExtractor <doc> output), "
             "directory (its *.txt, *.jsonl, *.json files) or glob pattern; repeat for several. All of each "
             "file's text is used.")],
    kind: Annotated[TokenizerKind, typer.Option(
        help="wordpiece: BERT (Chinese split into single characters, ## continuations); bpe: GPT-2 byte-level "
             "BPE; unigram: SentencePiece-style Unigram (XLM-R specials).")],
    vocab_size: Annotated[int, typer.Option(
        min=1, help="Tokens in the vocabulary, special tokens included (wordpiece keeps every character seen, "
                    "so it may end above this; unigram needs more than the corpus's distinct characters).")],
    out: Annotated[Path, typer.Option(
        help="Directory to write (tokenizer.json + tokenizer_config.json); a tokenizer directory there is "
             "replaced.")],
    min_frequency: Annotated[int, typer.Option(
        min=1, help="Merges/pieces must occur at least this often (wordpiece, bpe; unigram ignores it).")] = 2,
    lowercase: Annotated[bool, typer.Option(
        help="Lowercase the text before tokenizing (wordpiece also strips accents, as uncased BERT).")] = False,
    encoding: Annotated[str | None, typer.Option(
        help="Encoding of the corpus files (default: UTF-8, or GB18030 when a file reads as GB-encoded "
             "Chinese).")] = None,
    text_field: Annotated[str, typer.Option(help="Field that holds the text in JSON-lines files.")] = "text",
) -> None:
    """Train a tokenizer on corpus files; prints a JSON summary (kind, vocab size, files, seconds)."""
    from nlpforge.tokenizer_training import train_tokenizer

    summary = train_tokenizer(corpus, kind.value, vocab_size, out, min_frequency=min_frequency, encoding=encoding,
                              lowercase=lowercase, text_field=text_field, show_progress=sys.stderr.isatty())
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
