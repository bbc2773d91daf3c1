"""INT8 and half-precision copies of a model, and one loader for every artifact kind.

Artifacts (each a directory with config.json, tokenizer files and ``nlpforge.json`` ``precision``):

    checkpoint         model.safetensors in fp32 / fp16 / bf16       load_checkpoint -> torch model
    int8-torch-dynamic the fp32 checkpoint; loading re-quantizes     torch model with dynamic int8 Linear
    ONNX fp32          model.onnx from export_onnx                   OnnxModel
    ONNX int8-dynamic  int8 weights, activations quantized per call  OnnxModel
    ONNX int8-static   int8 weights and calibrated activations (QDQ) OnnxModel

ONNX choices, measured on all-MiniLM-L6-v2 (sentence-embedding cosine to fp32 over 128 SST-2
sentences; model 90 MB in fp32) and on tiny random models:

- Dynamic: ``quantize_dynamic`` with int8 weights **per output channel** (per-tensor scales drop
  the mean cosine from 0.992 to 0.957) over MatMul (constant B only: the attention score products
  stay float) and Gather (the embeddings); activations are uint8, quantized per call. No
  ``reduce_range`` (7-bit weights, meant for CPUs without VNNI): it cost accuracy here.
  MiniLM: 22.9 MB, cosine mean 0.992 / min 0.985.
- Static: QDQ format, int8 per-channel weights, **uint8 asymmetric activations** (the U8S8 kernels
  are the fast path on x86; int8 activations ran no faster than fp32 there), **Percentile**
  calibration (99.999th: MinMax lets rare outliers stretch the scales). Quantizing every MatMul's
  input fails on one place: the input of each FFN output projection (``ffn.down``, after GELU) has
  a range no single scale covers (mean cosine 0.93 with it, 0.989 without); those MatMuls get int8
  weights with per-call activation quantization instead (a dynamic pass over just them).
  MiniLM: 22.9 MB, cosine mean 0.985 / min 0.973.
- ``quant_pre_process`` (symbolic shape inference + graph clean-up), as onnxruntime recommends,
  runs before static quantization only. Before dynamic quantization it cost speed and bought
  nothing: the same int8 weights ran at 693 instead of 820 examples/s at batch 32 (4-layer E5
  student, SST-2 dev, 2 cores, median of 4 runs each), because onnxruntime fuses less of the
  pre-processed graph at load time.

Torch: ``torch.ao.quantization.quantize_dynamic`` over ``nn.Linear`` with int8 weights **per output
channel** (``per_channel_dynamic_qconfig``; the per-tensor default gives cosine 0.934 on MiniLM, per
channel 0.972; torch's kernels quantize activations to 7 bits, hence below onnxruntime's 0.992).
Embeddings stay fp32. Its packed modules have no safetensors form, so the artifact stores the fp32
checkpoint and loading quantizes it again (the same int8 weights when saved from the fp32 model).

Speed (one informal run on 2 cores; benchmarks/ owns the numbers): int8-dynamic ran about 1.8x
faster than onnxruntime fp32 and int8-static about 1.2x, so prefer int8-dynamic on CPUs; the static
QDQ graph is for runtimes that want calibrated QDQ graphs (TensorRT, NPU execution providers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    directory_size,
    load_checkpoint,
    load_tokenizer,
    nlpforge_state_dict,
    read_meta,
    save_hf_weights,
    write_directory_atomically,
)
from nlpforge.compress.export import (
    ONNX_FILE,
    OnnxModel,
    is_torch_quantized,
    label_names,
    meta_record,
    model_config,
    model_head,
    onnx_precision,
)
from nlpforge.convert import nlpforge_to_hf
from nlpforge.convert.hf_config import config_from_hf, config_to_hf, head_from_hf, read_hf_config
from nlpforge.errors import CheckpointError, ConfigError
from nlpforge.models.bert import BertModel

TORCH_INT8 = "int8-torch-dynamic"
TORCH_INT8_FILE = "model.int8.safetensors"
# What a torch int8 artifact holds, recorded in its nlpforge.json.
TORCH_INT8_SETTINGS = {
    "method": "torch.ao.quantization.quantize_dynamic", "modules": ["Linear"],
    "weights": "int8 symmetric, per output channel (per_channel_dynamic_qconfig)",
    "activations": "quantized per call to 7 bits (reduce_range: no 16-bit overflow on AVX2)",
    "embeddings": "fp32", "file": TORCH_INT8_FILE,
}
HALF_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}
# Static quantization leaves these MatMuls' activations to per-call (dynamic) quantization.
STATIC_EXCLUDED = ("/ffn/down/",)
# onnxruntime INT8 weights (module doc: why, and what each alternative measured): int8 per output
# channel in 7 bits, so that uint8 x int8 products never overflow the 16-bit sums of the x86
# kernels used on CPUs without VNNI (2 * 255 * 64 = 32,640 <= 32,767). Recorded in nlpforge.json.
ONNX_WEIGHTS = {"weight_type": "int8", "per_channel": True, "reduce_range": True}


# ----------------------------------------------------------------------------------------- ONNX


def _require_fp32_onnx(src_dir: Path) -> None:
    precision = onnx_precision(src_dir)
    if precision != "fp32":
        raise ConfigError(f"{src_dir}: is already quantized ({precision}); quantizing an already-quantized "
                          "model compounds the error: quantize the fp32 export instead")


def _copy_side_files(src_dir: Path, tmp: Path, precision: str, **fields: Any) -> None:
    """config.json and tokenizer files as they are; nlpforge.json with the new precision."""
    for path in src_dir.iterdir():
        if path.is_file() and path.name not in (ONNX_FILE, META_FILE) and not path.name.startswith("."):
            shutil.copy2(path, tmp / path.name)
    meta = {**read_meta(src_dir), "precision": precision, **fields}
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization prints calibration progress and logs advice we already follow."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _preprocess(src: Path, dst: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _quiet():
        quant_pre_process(str(src), str(dst))


def _settings(**fields: Any) -> dict[str, Any]:
    """The ``quantization`` record of nlpforge.json: the weight settings, ``fields``, the onnxruntime version."""
    import onnxruntime

    return {**ONNX_WEIGHTS, **fields, "onnxruntime": onnxruntime.__version__}


def quantize_onnx_dynamic(src_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """An ``int8-dynamic`` copy of an fp32 ONNX directory (7-bit int8 per-channel weights; see the module doc).

    nlpforge.json records the settings under ``quantization``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src_dir = Path(src_dir)
    _require_fp32_onnx(src_dir)
    op_types = ["MatMul", "Gather"]

    def write(tmp: Path) -> None:
        with _quiet():
            quantize_dynamic(str(src_dir / ONNX_FILE), str(tmp / ONNX_FILE), weight_type=QuantType.QInt8,
                             per_channel=ONNX_WEIGHTS["per_channel"], reduce_range=ONNX_WEIGHTS["reduce_range"],
                             op_types_to_quantize=op_types)
        _copy_side_files(src_dir, tmp, "int8-dynamic",
                         quantization=_settings(activations="uint8, quantized per call", op_types=op_types))

    return write_directory_atomically(Path(out_dir), write)


class _FeatureBatches:
    """An onnxruntime CalibrationDataReader over feature batches, padded to one common length.

    The Percentile calibrator stacks each tensor's values over all batches, so the batches must
    share their shapes; padding (mask 0, pad id) adds only positions the model already masks out.
    """

    def __init__(self, batches: Sequence[dict[str, np.ndarray]], input_names: list[str], pad_id: int) -> None:
        length = max(np.asarray(batch["input_ids"]).shape[1] for batch in batches)
        self.batches = []
        for batch in batches:
            feed = {}
            for name in input_names:
                if name not in batch and name == "token_type_ids":
                    value = np.zeros_like(np.asarray(batch["input_ids"]))
                elif name not in batch:
                    raise ConfigError(f"calibration batch without {name!r}; each batch needs {input_names}")
                else:
                    value = np.asarray(batch[name])
                fill = pad_id if name == "input_ids" else 0
                feed[name] = np.pad(value.astype(np.int64), ((0, 0), (0, length - value.shape[1])),
                                    constant_values=fill)
            self.batches.append(feed)
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position == len(self.batches):
            return None
        self.position += 1
        return self.batches[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


def quantize_onnx_static(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    calibration: list[dict[str, np.ndarray]],
) -> Path:
    """An ``int8-static`` copy of an fp32 ONNX directory, calibrated on ``calibration``.

    ``calibration``: feature batches as the model takes them (``input_ids``, ``attention_mask``,
    optionally ``token_type_ids``; (B, T) integer arrays, any T); a few hundred in-domain examples
    suffice. QDQ, int8 per-channel weights, uint8 activations, Percentile calibration; FFN output
    projections keep per-call activation quantization (see the module doc for why and the accuracy).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    src_dir = Path(src_dir)
    if not calibration:
        raise ConfigError("static quantization: calibration data missing; pass a list of feature batches "
                          "({'input_ids': ..., 'attention_mask': ...}) from in-domain text")
    _require_fp32_onnx(src_dir)
    pad_id = int(read_hf_config(src_dir).get("pad_token_id") or 0)

    class Reader(_FeatureBatches, CalibrationDataReader):
        pass

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory() as work:
            prepared, static = Path(work) / "prepared.onnx", Path(work) / "static.onnx"
            _preprocess(src_dir / ONNX_FILE, prepared)
            graph = onnx.load(str(prepared), load_external_data=False).graph
            input_names = [i.name for i in graph.input]
            matmuls = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")]
            excluded = [name for name in matmuls if any(part in name for part in STATIC_EXCLUDED)]
            with _quiet():
                quantize_static(
                    str(prepared), str(static), Reader(calibration, input_names, pad_id),
                    quant_format=QuantFormat.QDQ, per_channel=ONNX_WEIGHTS["per_channel"],
                    reduce_range=ONNX_WEIGHTS["reduce_range"],
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.Percentile,
                    op_types_to_quantize=["MatMul", "Gemm", "Gather"], nodes_to_exclude=excluded,
                    extra_options={"MatMulConstBOnly": True},
                )
                if excluded:
                    quantize_dynamic(str(static), str(tmp / ONNX_FILE), weight_type=QuantType.QInt8,
                                     per_channel=ONNX_WEIGHTS["per_channel"],
                                     reduce_range=ONNX_WEIGHTS["reduce_range"], nodes_to_quantize=excluded,
                                     op_types_to_quantize=["MatMul"])
                else:
                    shutil.copy2(static, tmp / ONNX_FILE)
        _copy_side_files(src_dir, tmp, "int8-static", calibration_batches=len(calibration),
                         quantization=_settings(activations="uint8, calibrated (Percentile 99.999); "
                                                "FFN output projections quantized per call",
                                                format="QDQ", op_types=["MatMul", "Gemm", "Gather"]))

    return write_directory_atomically(Path(out_dir), write)


# ---------------------------------------------------------------------------------------- torch


def quantize_torch_dynamic(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by a dynamic int8 one (CPU inference only).

    Weights are int8 per output channel; activations are quantized on each call.
    """
    if is_torch_quantized(model):
        raise ConfigError("quantizing an already-quantized model: this model's Linear layers are int8 already; "
                          "quantize the fp32 model instead")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise ConfigError("torch dynamic quantization needs an fp32 model; call model.float() first")
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig  # int8 weights, one scale per output row
    with warnings.catch_warnings():  # torch announces the move of quantized tensors to torchao
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8).eval()


def _int8_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of a dynamic-int8 model under its own state-dict names, nothing packed.

    Each quantized Linear ``X`` becomes ``X.weight`` (out, in) int8, ``X.weight_scale`` (out,)
    float64 and ``X.weight_zero_point`` (out,) int64 (0-dim for a per-tensor weight), ``X.bias``
    (out,) fp32; every other parameter and buffer is stored as it is (fp32).
    """
    quantized = {name: module for name, module in model.named_modules()
                 if isinstance(module, torch.ao.nn.quantized.dynamic.Linear)}
    tensors: dict[str, torch.Tensor] = {}
    for name, module in quantized.items():
        weight = module.weight()  # (out, in) qint8
        if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            if weight.q_per_channel_axis() != 0:
                raise ConfigError(f"{name}: int8 weight quantized along axis {weight.q_per_channel_axis()}; "
                                  "only per-output-channel (axis 0) or per-tensor weights can be stored")
            scale, zero_point = weight.q_per_channel_scales(), weight.q_per_channel_zero_points()
        else:
            scale = torch.tensor(weight.q_scale(), dtype=torch.float64)
            zero_point = torch.tensor(weight.q_zero_point(), dtype=torch.int64)
        tensors[f"{name}.weight"] = weight.int_repr()
        tensors[f"{name}.weight_scale"] = scale.to(torch.float64)
        tensors[f"{name}.weight_zero_point"] = zero_point.to(torch.int64)
        if module.bias() is not None:
            tensors[f"{name}.bias"] = module.bias().detach()
    prefixes = tuple(f"{name}." for name in quantized)
    for key, value in model.state_dict().items():
        if not key.startswith(prefixes):  # the packed params of a quantized Linear are stored above
            tensors[key] = value.detach()
    return {key: value.contiguous() for key, value in tensors.items()}


def _int8_weight(tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """The quantized (out, in) weight of Linear ``name`` from its stored int8 values, scales and zero points."""
    values, scale, zero_point = (tensors[f"{name}.{part}"] for part in ("weight", "weight_scale", "weight_zero_point"))
    if scale.dim() == 0:
        return torch._make_per_tensor_quantized_tensor(values, float(scale), int(zero_point))
    return torch._make_per_channel_quantized_tensor(values, scale, zero_point, 0)


def save_torch_quantized(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: str | os.PathLike[str],
    meta: dict[str, Any] | None = None,
) -> Path:
    """An ``int8-torch-dynamic`` artifact: the int8 weights themselves, loaded without re-quantizing.

    ``model``: the fp32 model (quantized here with ``quantize_torch_dynamic``) or an int8 one from
    it. ``model.int8.safetensors`` holds each Linear's int8 values, scales and zero points (see
    ``_int8_tensors``) and the fp32 rest; config.json and the tokenizer as in a checkpoint. There is
    no ``model.safetensors``: transformers cannot load int8 values with separate scales, so it
    refuses the directory instead of reading int8 numbers as weights; ``load_artifact`` loads it.
    """
    head, config = model_head(model), model_config(model)
    quantized = model if is_torch_quantized(model) else quantize_torch_dynamic(model)
    tensors = _int8_tensors(quantized)
    labels = label_names(config, head, meta)
    record = {**(meta or {}), **({"labels": labels} if labels else {})}

    def write(tmp: Path) -> None:
        hf_config = config_to_hf(config, head, labels)
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        save_file(tensors, str(tmp / TORCH_INT8_FILE), metadata={"format": "pt", "precision": TORCH_INT8})
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        (tmp / META_FILE).write_text(meta_record(config, record, precision=TORCH_INT8,
                                                 quantization=TORCH_INT8_SETTINGS), encoding="utf-8")

    return write_directory_atomically(Path(out_dir), write)


def _load_torch_quantized(directory: Path) -> nn.Module:
    """The dynamic-int8 model of an ``int8-torch-dynamic`` artifact, rebuilt from its stored int8 weights."""
    from nlpforge.tasks import HEAD_MODELS

    hf_config = read_hf_config(directory)
    source = str(directory / "config.json")
    try:
        tensors = load_file(directory / TORCH_INT8_FILE)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{directory / TORCH_INT8_FILE}: cannot read the int8 weights ({error})") from None
    head = head_from_hf(hf_config)
    config = config_from_hf(hf_config, source)
    if head in HEAD_MODELS:  # a task model's encoder has no pooler (BERT's is the head's dense layer)
        model = HEAD_MODELS[head](dataclasses.replace(config, has_pooler=False))
    else:
        model = BertModel(dataclasses.replace(config, has_pooler=any(k.startswith("pooler.") for k in tensors)))
    names = sorted(key.removesuffix(".weight_scale") for key in tensors if key.endswith(".weight_scale"))
    weights = {name: _int8_weight(tensors, name) for name in names}
    # Load every tensor through the fp32 model first (strict: an unknown or missing name is an
    # error), the int8 weights de-quantized; then swap each Linear for its int8 module.
    fp32 = {k: v for k, v in tensors.items() if not k.endswith((".weight_scale", ".weight_zero_point"))}
    fp32.update({f"{name}.weight": weight.dequantize() for name, weight in weights.items()})
    try:
        model.load_state_dict(fp32, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{directory / TORCH_INT8_FILE}: does not fit config.json ({error})") from None
    for name, weight in weights.items():
        linear = model.get_submodule(name)
        if not isinstance(linear, nn.Linear):
            raise CheckpointError(f"{directory / TORCH_INT8_FILE}: {name} holds int8 weights but is not a Linear")
        int8 = torch.ao.nn.quantized.dynamic.Linear(linear.in_features, linear.out_features,
                                                    bias_=linear.bias is not None, dtype=torch.qint8)
        int8.set_weight_bias(weight, None if linear.bias is None else linear.bias.detach().clone())
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, int8)
    return model.eval()


def half_precision_copy(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: str | os.PathLike[str],
    dtype: torch.dtype,
    meta: dict[str, Any] | None = None,
) -> Path:
    """A checkpoint with weights stored in float16 or bfloat16 (half the bytes of fp32).

    config.json records ``torch_dtype`` (and ``dtype``, the transformers 5 name); nlpforge.json
    ``precision`` "fp16" / "bf16". ``load_artifact`` computes in fp32 unless asked for a dtype.
    """
    if dtype not in HALF_DTYPES:
        raise ConfigError(f"half_precision_copy: dtype {dtype} is not torch.float16 or torch.bfloat16")
    if is_torch_quantized(model):
        raise ConfigError("half_precision_copy: the model is int8-quantized; pass the fp32 model")
    head = model_head(model)
    config = model_config(model)
    weights = {k: v.to(dtype) for k, v in nlpforge_state_dict(model).items()}
    hf_weights = nlpforge_to_hf(weights, config, head)
    labels = label_names(config, head, meta)
    precision = "fp16" if dtype == torch.float16 else "bf16"

    def write(tmp: Path) -> None:
        hf_config = {**config_to_hf(config, head, labels), "torch_dtype": HALF_DTYPES[dtype],
                     "dtype": HALF_DTYPES[dtype]}
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        save_hf_weights(hf_weights, tmp / WEIGHTS_FILE)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        (tmp / META_FILE).write_text(meta_record(config, meta, precision=precision), encoding="utf-8")

    return write_directory_atomically(Path(out_dir), write)


# ------------------------------------------------------------------------------------ artifacts


def load_artifact(
    path: str | os.PathLike[str], dtype: torch.dtype | None = None, threads: int | None = None
) -> tuple[nn.Module | OnnxModel, PreTrainedTokenizerBase | None, dict[str, Any]]:
    """(model, tokenizer or None, meta) of any artifact directory, ready for inference (eval mode).

    - ONNX directory (fp32 / int8-dynamic / int8-static): an ``OnnxModel`` (``threads``: intra-op
      threads, None = onnxruntime's default of one per physical core).
    - ``int8-torch-dynamic``: the model with dynamic int8 Linear modules rebuilt from the stored
      int8 weights (no re-quantizing); an older artifact holding fp32 weights is quantized on loading.
    - any other checkpoint (fp32, fp16, bf16 weights): the torch model in ``dtype``; None means
      float32, since CPU kernels for fp16 are slow or missing; pass ``torch.bfloat16`` to compute
      in bf16 (fast on CPUs with AVX512-BF16/AMX) or ``torch.float16`` on a GPU.
    """
    directory = Path(path)
    if (directory / ONNX_FILE).is_file():
        model = OnnxModel.load(directory, threads)
        return model, load_tokenizer(directory), model.meta
    if directory.is_dir() and read_meta(directory).get("precision") == TORCH_INT8:
        if (directory / TORCH_INT8_FILE).is_file():
            return _load_torch_quantized(directory), load_tokenizer(directory), read_meta(directory)
        # An artifact written before int8 weights were stored holds the fp32 checkpoint.
        checkpoint = load_checkpoint(directory)
        return quantize_torch_dynamic(checkpoint.model), checkpoint.tokenizer, checkpoint.meta
    checkpoint = load_checkpoint(path, dtype=dtype or torch.float32)  # also a hub name, as everywhere
    return checkpoint.model, checkpoint.tokenizer, checkpoint.meta


def artifact_size(path: str | os.PathLike[str]) -> int:
    """Bytes on disk of an artifact directory (all its files: weights, config, tokenizer)."""
    return directory_size(Path(path))


def record_artifact_metrics(path: str | os.PathLike[str], metrics: dict[str, Any], **fields: Any) -> None:
    """Set ``metrics`` (and ``fields``) in the artifact's nlpforge.json, replacing the file in one rename.

    For a stage measured after it was written: its nlpforge.json then carries its own numbers, not
    those of the model it was made from.
    """
    directory = Path(path)
    record = {**read_meta(directory), "metrics": metrics, **fields}
    tmp = directory / f".{META_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, directory / META_FILE)
