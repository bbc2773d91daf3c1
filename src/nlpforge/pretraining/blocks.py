"""Pre-training examples on disk: fixed-length blocks written once, read as memory maps.

Tokenizing a corpus (and segmenting Chinese words with jieba) costs more than an epoch of a
small model, so the blocks an objective makes are written once per run to
``OUT/blocks/<part>/<field>.bin`` (one raw array per field, ``(N, width)`` row-major: width
``block_size`` for per-token fields, 1 for a per-block label) with a ``blocks.json`` naming
fields, dtypes, widths and N. Writing streams (memory stays flat whatever the
corpus size); the directory is renamed into place when complete, so a killed run never leaves a
half-written store that a resume would trust. Reading maps the files: rows are fetched by index
for shuffled batches.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from nlpforge.errors import InputDataError

INDEX_FILE = "blocks.json"


def write_blocks(directory: Path, rows: Iterable[dict[str, Sequence[int] | int]],
                 fields: dict[str, tuple[str, int]], block_size: int, source: dict) -> int:
    """Stream ``rows`` into ``directory``; ``fields`` maps a name to (numpy dtype, width); returns N."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    handles = {name: open(tmp / f"{name}.bin", "wb") for name in fields}  # noqa: SIM115 - closed below
    count = 0
    try:
        for row in rows:
            for name, (dtype, width) in fields.items():
                values = np.asarray(row[name], dtype=dtype).reshape(-1)
                if values.shape != (width,):
                    raise ValueError(f"block field {name} has shape {values.shape}, expected ({width},)")
                handles[name].write(values.tobytes())
            count += 1
    finally:
        for handle in handles.values():
            handle.close()
    (tmp / INDEX_FILE).write_text(json.dumps({"rows": count, "block_size": block_size, "fields": fields,
                                              "source": source}, indent=1), encoding="utf-8")
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return count


class Blocks:
    """A written store: ``len(blocks)`` rows; ``blocks.rows(indices)`` -> field -> (len, width) array."""

    def __init__(self, directory: Path) -> None:
        index_path = directory / INDEX_FILE
        if not index_path.is_file():
            raise InputDataError(f"{directory}: no {INDEX_FILE}; the block store is incomplete, delete the folder "
                                 "to rebuild it")
        index = json.loads(index_path.read_text(encoding="utf-8"))
        self.index = index
        self.block_size = int(index["block_size"])
        self.count = int(index["rows"])
        self.fields = {name: np.memmap(directory / f"{name}.bin", dtype=dtype, mode="r",
                                       shape=(self.count, width)) if self.count else
                       np.zeros((0, width), dtype=dtype)
                       for name, (dtype, width) in index["fields"].items()}

    def __len__(self) -> int:
        return self.count

    def rows(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        chosen = np.asarray(indices, dtype=np.int64)
        return {name: np.asarray(array[chosen]) for name, array in self.fields.items()}
