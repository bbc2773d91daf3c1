"""INT8 and half-precision copies of a model (the artifact kinds and their loader: artifacts/).

    int8-torch-dynamic int8 Linear weights + scales (artifacts/torch_int8.py)
    ONNX int8-dynamic  7-bit int8 weights, activations quantized per call
    ONNX int8-static   7-bit int8 weights and calibrated activations (QDQ)
    fp16 / bf16        a checkpoint with half-precision weights

INT8 that is right on every x86 CPU. onnxruntime multiplies uint8 activations by int8 weights.
CPUs with VNNI (AVX512-VNNI, AVX-VNNI, AMX) sum the products in 32 bits; CPUs without it (AVX2
only, and AVX-512 before Cascade Lake) use VPMADDUBSW, which adds each pair of products into a
*saturating* 16-bit sum, and 2 * 255 * 127 = 64,770 does not fit in 32,767. With full 8-bit weights
the same INT8 file was right on a VNNI CPU and wrong on an AVX2 one (qemu ``-cpu Haswell``, which
onnxruntime takes for an AVX2 CPU: max |int8 - fp32| of the random tiny tagger of the tests 0.51
of the logits' std instead of 0.046; the SST-2 student below: 5 of 872 dev predictions changed,
logits moved by up to 0.29). Weights in 7 bits (``reduce_range``) keep every pair at most
2 * 255 * 64 = 32,640, so every x86 kernel computes the same exact integer sums: the tiny models
give the same errors on both CPUs, and the student the same dev predictions (logits within 0.047:
the fp32 parts run on other kernels there). A model quantized on one machine is often
served on another, so the setting is one that is right everywhere, not one picked from the CPU
that quantizes. Measured by benchmarks/int8_settings.py on a 4-layer E5 student (SST-2 dev, fp32
ONNX 75.34; changed = predictions that differ from fp32 on dev / on 5,000 held-out train
sentences; speed in CPU time of one thread on an AVX512-VNNI EPYC, which other processes on a
shared machine do not skew; fp32 ONNX 193 examples/s and 6.2 ms):

    weights                     right on AVX2   dev    changed   examples/s b32   p50 b1
    s8 per-channel (before)     no              75.00   5 / 71       479           2.5 ms
    s8 per-tensor               no              74.89  22 / 116      486           2.5 ms
    s8 per-channel 7-bit        yes             74.77  17 / 97       480           2.3 ms
    s8 per-channel 7-bit asym   yes             74.89  16 / 77       489           2.4 ms   <- chosen
    u8 per-channel              yes             74.89   6 / 86       276           3.7 ms
    optimum avx2 (u8, all ops)  yes             75.34  12 / 98       258           4.4 ms

- uint8 weights never saturate either (the u8 x u8 kernels widen to 16 bits before multiplying)
  and keep 8 bits, but onnxruntime has no VNNI or AMX kernel for them: they ran at 0.56x the speed
  of int8 weights (+54% latency), not far above fp32. 7-bit int8 weights keep the fast kernels on
  every CPU (VNNI, AMX, and VPMADDUBSW on AVX2).
- Asymmetric 7-bit weights (each channel's min..max, a zero point per channel) changed 77 instead
  of 97 of the 5,000 held-out predictions at the same speed. Accuracy retained: 99.40% of dev (one
  sentence short of 99.5%; 872 sentences tell settings a few predictions apart poorly: the 8-bit
  settings scored 74.89-75.34 with 5-12 changes), 99.73% of the held-out sentences. Keeping the
  FFN output projections in fp32 retained 100% of dev but cost 30% of the speed (a side run: 328
  examples/s).
- onnxruntime's ``session.x64quantprecision`` option converts int8 weights to uint8 when it loads
  a model on a CPU without VNNI: it makes full 8-bit files right there too (measured), but only in
  sessions that set it; an INT8 file from here must be right in any runtime.

Other ONNX choices, measured on all-MiniLM-L6-v2 (sentence-embedding cosine to fp32 over 128 SST-2
sentences; model 90 MB in fp32) and on tiny random models:

- Dynamic: ``quantize_dynamic`` with int8 weights **per output channel** (per-tensor scales drop
  the mean cosine from 0.992 to 0.957, and on the student above changed 22 dev predictions instead
  of 5) over MatMul (constant B only: the attention score products stay float) and Gather (the
  embeddings, stored as uint8, which no MatMul multiplies); activations are uint8, quantized per call.
- Static: QDQ format, 7-bit symmetric int8 per-channel weights (as above: the tiny tagger measured
  0.43 on the AVX2 CPU with 8-bit weights, 0.097 on both with 7), **uint8 asymmetric activations**
  (the U8S8 kernels are the fast path on x86; int8 activations ran no faster than fp32 there),
  **Percentile** calibration (99.999th: MinMax lets rare outliers stretch the scales). Quantizing
  every MatMul's input fails on one place: the input of each FFN output projection (``ffn.down``,
  after GELU) has a range no single scale covers (mean cosine 0.93 with it, 0.989 without); those
  MatMuls get int8 weights with per-call activation quantization instead (a dynamic pass over just
  them). MiniLM (8-bit weights): 22.9 MB, cosine mean 0.985 / min 0.973.
- ``quant_pre_process`` (symbolic shape inference + graph clean-up), as onnxruntime recommends,
  runs before static quantization only. Before dynamic quantization it cost speed and bought
  nothing: the same int8 weights ran at 693 instead of 820 examples/s at batch 32 (4-layer E5
  student, SST-2 dev, 2 cores, median of 4 runs each), because onnxruntime fuses less of the
  pre-processed graph at load time.

Torch: ``torch.ao.quantization.quantize_dynamic`` over ``nn.Linear`` with int8 weights **per output
channel** (``per_channel_dynamic_qconfig``; the per-tensor default gives cosine 0.934 on MiniLM, per
channel 0.972). Its kernels quantize activations to 7 bits (``reduce_range``), the same overflow
guard from the other side: its test bounds hold under qemu ``-cpu Haswell`` too. Embeddings stay
fp32. The artifact stores the int8 values, scales and zero points of each Linear (torch's packed
modules have no safetensors form) and loading rebuilds the modules from them, bit for bit the
model that was saved; transformers cannot load it (artifacts/torch_int8.py).

Speed (one informal run on 2 cores; benchmarks/ owns the numbers): int8-dynamic ran about 1.8x
faster than onnxruntime fp32 and int8-static about 1.2x, so prefer int8-dynamic on CPUs; the static
QDQ graph is for runtimes that want calibrated QDQ graphs (TensorRT, NPU execution providers).
"""

from __future__ import annotations

import contextlib
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
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.artifacts.onnx import ONNX_FILE, onnx_precision
from nlpforge.artifacts.torch_int8 import is_torch_quantized, write_torch_int8
from nlpforge.checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    nlpforge_state_dict,
    read_meta,
    save_hf_weights,
    task_hf_config,
    write_directory_atomically,
)
from nlpforge.compress.export import meta_record, model_config, model_head
from nlpforge.convert import nlpforge_to_hf
from nlpforge.convert.hf_config import read_hf_config
from nlpforge.errors import ConfigError

HALF_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}
# Static quantization leaves these MatMuls' activations to per-call (dynamic) quantization.
STATIC_EXCLUDED = ("/ffn/down/",)
# onnxruntime INT8 weights (module doc: why, and what each alternative measured): int8 per output
# channel in 7 bits, so that uint8 x int8 products never overflow the 16-bit sums of the x86
# kernels used on CPUs without VNNI (2 * 255 * 64 = 32,640 <= 32,767); dynamic quantization spans
# each channel's min..max (a zero point per channel), static keeps symmetric weights (QDQ
# consumers expect them). Recorded in nlpforge.json.
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
    """An ``int8-dynamic`` copy of an fp32 ONNX directory (7-bit int8 weights per channel; see the module doc).

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
                             op_types_to_quantize=op_types, extra_options={"WeightSymmetric": False})
        _copy_side_files(src_dir, tmp, "int8-dynamic",
                         quantization=_settings(weight_symmetric=False, activations="uint8, quantized per call",
                                                op_types=op_types))

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
                         quantization=_settings(weight_symmetric=True,
                                                activations="uint8, calibrated (Percentile 99.999); "
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


def save_torch_quantized(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: str | os.PathLike[str],
    meta: dict[str, Any] | None = None,
) -> Path:
    """An ``int8-torch-dynamic`` artifact of ``model`` (fp32: quantized here with
    ``quantize_torch_dynamic``; or an int8 model from it): the int8 weights themselves, loaded
    without re-quantizing (artifacts/torch_int8.py holds the format)."""
    quantized = model if is_torch_quantized(model) else quantize_torch_dynamic(model)
    return write_torch_int8(quantized, tokenizer, out_dir, meta)


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
    precision = "fp16" if dtype == torch.float16 else "bf16"

    def write(tmp: Path) -> None:
        hf_config = {**task_hf_config(config, head, meta), "torch_dtype": HALF_DTYPES[dtype],
                     "dtype": HALF_DTYPES[dtype]}
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        save_hf_weights(hf_weights, tmp / WEIGHTS_FILE)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        (tmp / META_FILE).write_text(meta_record(config, meta, precision=precision), encoding="utf-8")

    return write_directory_atomically(Path(out_dir), write)

