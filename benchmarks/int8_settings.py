"""onnxruntime dynamic INT8 settings side by side on the compressed SST-2 student, on a VNNI CPU and
(for accuracy) on an emulated AVX2-only CPU.

Why: onnxruntime multiplies uint8 activations by int8 weights with VPMADDUBSW on x86 CPUs without
VNNI (AVX2, AVX-512 before Cascade Lake); it adds each pair of products into a *saturating* 16-bit
sum, and 2 * 255 * 127 = 64,770 does not fit in 32,767. VNNI CPUs sum in 32 bits and never
saturate, so the same INT8 file can be right on one CPU and wrong on another. The candidates:

    s8 per-channel           int8 weights per output channel (nlpforge's setting before issue 12)
    s8 per-channel 7-bit     the same with reduce_range (weights in [-64, 64]: 2 * 255 * 64 fits)
    s8 per-channel 7-bit asymmetric    7-bit weights from each channel's min to max (a zero point each)
    u8 per-channel           uint8 weights: the u8 x u8 kernels widen to 16 bits first, never saturate
    s8 / s8 7-bit / u8 per-tensor      one scale per weight matrix
    optimum avx2             optimum's ``AutoQuantizationConfig.avx2(is_static=False)`` preset
                             (uint8 symmetric weights per channel, every op type onnxruntime quantizes)

Each is made in this run from the one fp32 ``student-onnx`` that ``nlpforge compress`` wrote (the
chosen one by ``nlpforge.compress.quantize.quantize_onnx_dynamic`` itself). Every artifact is then
measured in a fresh process (one onnxruntime thread pool at a time), in rotating order,
``--repeats`` times: accuracy on SST-2 dev (872 sentences, max length 64) and how many predictions
differ from the fp32 export's; examples/s at batch 32 (length-sorted batches, best of 3 passes) and
p50 latency at batch 1 (first 100 dev sentences, best p50 of 3 passes), both in wall-clock time
with onnxruntime's default threads and in CPU time of one thread (robust to the other processes of
a shared machine); the JSON gives the medians. 872 sentences decide little between settings a few
predictions apart, so each setting is also compared with fp32 on ``--heldout`` SST-2 train
sentences the student never saw. The measuring child uses onnxruntime, the tokenizer and numpy only
(the session options of ``OnnxModel.load``), so it also runs under emulation.

``--qemu-cpu Haswell`` then evaluates the listed settings (``--qemu-settings``) on the whole dev set
under ``qemu-x86_64 -cpu Haswell`` (AVX2 + FMA, no AVX-512, no VNNI: onnxruntime takes its AVX2
kernels there), and compares the logits with the native ones. Set-up:

    apt-get install -y qemu-user
    python3 -m venv /tmp/optimum-venv      # optimum-onnx pins transformers < 4.58
    /tmp/optimum-venv/bin/pip install torch==2.13.0
    /tmp/optimum-venv/bin/pip install "optimum-onnx[onnxruntime]==0.1.0" optimum==2.1.0 \\
        transformers==4.57.6 onnxruntime==1.32.0 onnx==1.23.2
    python benchmarks/int8_settings.py --optimum-python /tmp/optimum-venv/bin/python --qemu-cpu Haswell

The student: ``python benchmarks/compress_sst2.py --train-size 4000 --work benchmarks/work/compress
--skip-textbrewer`` (E5 teacher fine-tuned on 4,000 train sentences, 4-layer student distilled on
the same 4,000 for 2 epochs) leaves it in ``benchmarks/work/compress/compressed``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"
COMPRESSED = ROOT / "benchmarks" / "work" / "compress" / "compressed"
MAX_LENGTH = 64
THROUGHPUT_PASSES = 3
HELDOUT_SKIP = 5000  # compress_sst2.py --train-size 4000: its teacher slice, then 1,000 selection examples
OPS = ["MatMul", "Gather"]
CHOSEN = "s8 per-channel 7-bit asymmetric"
STUDENT = ("python benchmarks/compress_sst2.py --train-size 4000 --work benchmarks/work/compress --skip-textbrewer: "
           "../shared/models/multilingual-e5-small-zhen fine-tuned on 4,000 SST-2 train sentences (seeded slice, "
           "1 epoch, lr 5e-5, max length 64; dev 84.63), then nlpforge compress: 4-layer student from teacher "
           "layers [3, 6, 9, 12], KD (T=2, alpha=0.9) on the same 4,000 for 2 epochs, best epoch on 1,000 held-out "
           "train sentences (dev 75.34); its fp32 ONNX export (student-onnx) is the reference here")
# name -> quantize_dynamic keyword arguments (None: made by nlpforge's quantize_onnx_dynamic).
CANDIDATES: dict[str, dict | None] = {
    "s8 per-channel": dict(weight_type="QInt8", per_channel=True, reduce_range=False),
    "s8 per-channel 7-bit": dict(weight_type="QInt8", per_channel=True, reduce_range=True),
    CHOSEN: None,
    "u8 per-channel": dict(weight_type="QUInt8", per_channel=True, reduce_range=False),
    "s8 per-tensor": dict(weight_type="QInt8", per_channel=False, reduce_range=False),
    "s8 per-tensor 7-bit": dict(weight_type="QInt8", per_channel=False, reduce_range=True),
    "u8 per-tensor": dict(weight_type="QUInt8", per_channel=False, reduce_range=False),
}

# Runs in the optimum environment: argv = fp32 ONNX dir, output dir.
OPTIMUM_QUANTIZE = """
import sys
from optimum.onnxruntime import ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig
config = AutoQuantizationConfig.avx2(is_static=False)
print(config)
ORTQuantizer.from_pretrained(sys.argv[1], file_name="model.onnx").quantize(save_dir=sys.argv[2],
                                                                         quantization_config=config)
"""


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def side_files(src: Path, out: Path, fields: dict) -> None:
    """config.json, tokenizer files and nlpforge.json (with the INT8 fields) beside ``out/model.onnx``."""
    for path in src.iterdir():
        if path.is_file() and path.name not in ("model.onnx", "nlpforge.json"):
            shutil.copy2(path, out / path.name)
    meta = json.loads((src / "nlpforge.json").read_text(encoding="utf-8"))
    (out / "nlpforge.json").write_text(json.dumps({**meta, "precision": "int8-dynamic", **fields}, indent=2) + "\n",
                                       encoding="utf-8")


def make_candidate(kwargs: dict | None, fp32: Path, out: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from nlpforge.compress.quantize import _quiet, quantize_onnx_dynamic

    if kwargs is None:
        return quantize_onnx_dynamic(fp32, out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    weight_type = getattr(QuantType, kwargs["weight_type"])
    with _quiet():
        quantize_dynamic(str(fp32 / "model.onnx"), str(out / "model.onnx"), weight_type=weight_type,
                         per_channel=kwargs["per_channel"], reduce_range=kwargs["reduce_range"],
                         op_types_to_quantize=OPS, extra_options=kwargs.get("extra_options"))
    side_files(fp32, out, {"quantization": {**kwargs, "op_types": OPS}})
    return out


def make_optimum(python: str, fp32: Path, out: Path) -> tuple[Path, str]:
    if out.exists():
        shutil.rmtree(out)
    raw = out.with_name(out.name + "-raw")
    child = subprocess.run([python, "-c", OPTIMUM_QUANTIZE, str(fp32), str(raw)], check=True, capture_output=True,
                           text=True)
    out.mkdir(parents=True)
    shutil.move(raw / "model_quantized.onnx", out / "model.onnx")
    shutil.rmtree(raw)
    config = child.stdout.strip().splitlines()[0]
    side_files(fp32, out, {"quantization": {"optimum": config}})
    return out, config


# ------------------------------------------------------------------------------- child process


def read_tsv(path: Path, labels: list[str]) -> tuple[list[str], np.ndarray]:
    rows = path.read_text(encoding="utf-8").splitlines()[1:]
    texts, gold = [], []
    for row in rows:
        text, label = row.rsplit("\t", 1)
        texts.append(text)
        gold.append(labels.index(label.strip()))
    return texts, np.array(gold)


def measure_one(artifact: Path, data: Path, accuracy_only: bool, logits_file: Path | None) -> dict:
    """Accuracy on ``data`` and speed of one ONNX artifact, with the session options of OnnxModel.load.

    Wall-clock speed uses onnxruntime's default threads (one per core, as served). On a shared
    machine other processes slow wall-clock time down unevenly, so speed is also measured as CPU
    time of one thread (a session with one intra-op thread runs on the calling thread): that
    compares the kernels themselves.
    """
    import onnxruntime as ort
    from transformers import AutoTokenizer

    def session(threads: int | None) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        return ort.InferenceSession(str(artifact / "model.onnx"), options, providers=["CPUExecutionProvider"])

    served, single = session(None), (None if accuracy_only else session(1))
    names = [i.name for i in served.get_inputs()]
    tokenizer = AutoTokenizer.from_pretrained(str(artifact))
    meta = json.loads((artifact / "nlpforge.json").read_text(encoding="utf-8"))
    texts, gold = read_tsv(data, meta["labels"])
    ids = [tokenizer(text, truncation=True, max_length=MAX_LENGTH)["input_ids"] for text in texts]

    def run(rows: list[list[int]], on: ort.InferenceSession = served) -> np.ndarray:
        length = max(len(row) for row in rows)
        input_ids = np.full((len(rows), length), tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)], mask[i, : len(row)] = row, 1
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        return on.run(["logits"], {name: feed[name] for name in names})[0]

    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # (B=32, T) batches of similar length
    batches = [order[i : i + 32] for i in range(0, len(order), 32)]
    logits = np.zeros((len(ids), len(meta["labels"])), dtype=np.float32)
    for batch in batches:
        logits[batch] = run([ids[i] for i in batch])
    record = {"accuracy": round(100 * float((logits.argmax(-1) == gold).mean()), 2), "examples": len(ids)}
    if logits_file is not None:
        np.save(logits_file, logits)
    if accuracy_only:
        return record
    for clock, on, key in ((time.perf_counter, served, "wall"), (time.thread_time, single, "cpu1")):
        best = float("inf")
        for _ in range(THROUGHPUT_PASSES):  # best pass: on a shared machine noise only slows a pass down
            start = clock()
            for batch in batches:
                run([ids[i] for i in batch], on)
            best = min(best, clock() - start)
        record[f"throughput_batch32_{key}"] = round(len(ids) / best, 1)
        p50s = []
        for _ in range(3):
            for row in ids[:5]:
                run([row], on)
            times = []
            for row in ids[:100]:
                start = clock()
                run([row], on)
                times.append(1000 * (clock() - start))
            p50s.append(statistics.median(times))
        record[f"latency_p50_ms_batch1_{key}"] = round(min(p50s), 3)
    record["size_mb"] = round((artifact / "model.onnx").stat().st_size / 2**20, 2)
    return record


def write_heldout(path: Path, count: int) -> None:
    """SST-2 train sentences the student never saw: after the teacher's slice (4,000) and the selection
    set (1,000) in compress_sst2.py's seeded order."""
    import random

    rows = (SST2 / "train.tsv").read_text(encoding="utf-8").splitlines()
    body = rows[1:]
    random.Random(0).shuffle(body)
    path.write_text("\n".join([rows[0], *body[HELDOUT_SKIP : HELDOUT_SKIP + count]]) + "\n", encoding="utf-8")


def fidelity(logits: np.ndarray, reference: np.ndarray) -> dict:
    """How far INT8 logits (N, 2) are from the fp32 export's: changed predictions and mean |logit diff|."""
    return {"predictions_changed": int((logits.argmax(-1) != reference.argmax(-1)).sum()),
            "mean_abs_logit_diff": round(float(np.abs(logits - reference).mean()), 4)}


# ----------------------------------------------------------------------- tiny models, qemu tests

TINY = {"tagger": ("tag", dict(num_labels=3, hidden_size=128, intermediate_size=512), "logits"),
        "classifier": ("classify", dict(num_labels=3), "logits"),
        "span": ("span_qa", dict(num_labels=3), "start_logits")}
# A serving-side alternative: onnxruntime converts int8 weights to uint8 at load on CPUs without VNNI.
PRECISION_OPTION = "s8 per-channel + session.x64quantprecision"


def tiny_batches() -> list[dict[str, np.ndarray]]:
    """The test batches of tests/compress/test_quantize.py: random ids, row b > 0 padded after T - 2b."""
    import torch

    batches = []
    for seed, (size, length) in enumerate([(4, 12), (6, 25), (2, 7)]):
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(5, 99, (size, length), generator=g)
        mask = torch.ones(size, length, dtype=torch.long)
        for b in range(1, size):
            mask[b, max(1, length - 2 * b):] = 0
        ids[mask == 0] = 0
        batches.append({"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                        "token_type_ids": np.zeros_like(ids.numpy())})
    return batches


def make_tiny(work: Path) -> None:
    """The random tiny models of the tests, exported, their fp32 torch outputs, and each candidate's INT8 copy."""
    import torch

    from nlpforge.compress.export import export_onnx
    from nlpforge.config import ModelConfig
    from nlpforge.tasks import HEAD_MODELS

    for name, (head, sizes, field) in TINY.items():
        torch.manual_seed(0)
        model = HEAD_MODELS[head](ModelConfig.from_name("tiny-bert", **sizes)).eval()
        fp32 = export_onnx(model, work / name / "fp32", meta={"task": head, "labels": ["a", "b", "c"]})
        with torch.no_grad():
            outputs = [getattr(model(**{k: torch.from_numpy(v) for k, v in batch.items()}), field).numpy()
                       for batch in tiny_batches()]
        np.savez(work / name / "reference.npz", *outputs)
        for candidate, kwargs in CANDIDATES.items():
            make_candidate(kwargs, fp32, work / name / candidate.replace(" ", "-"))


def tiny_errors(work: Path) -> dict:
    """max |int8 - fp32 torch| / std(fp32) over real tokens of the test batches, per model and candidate."""
    import onnxruntime as ort

    errors: dict[str, dict] = {}
    for name, (head, _sizes, field) in TINY.items():
        reference = np.load(work / name / "reference.npz")
        for candidate in [*CANDIDATES, PRECISION_OPTION]:
            options = ort.SessionOptions()
            directory = candidate
            if candidate == PRECISION_OPTION:
                options.add_session_config_entry("session.x64quantprecision", "1")
                directory = "s8 per-channel"
            session = ort.InferenceSession(str(work / name / directory.replace(" ", "-") / "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
            inputs = [i.name for i in session.get_inputs()]
            worst = 0.0
            for i, batch in enumerate(tiny_batches()):
                got, expected = session.run([field], {k: batch[k] for k in inputs})[0], reference[f"arr_{i}"]
                keep = batch["attention_mask"].astype(bool) if got.ndim == 3 or head == "span_qa" else slice(None)
                worst = max(worst, float(np.abs(got - expected)[keep].max() / expected[keep].std()))
            errors.setdefault(candidate, {})[name] = round(worst, 4)
    return errors


def qemu_tests(cpu: str) -> dict:
    """tests/compress/test_quantize.py under emulation (benchmarks/int8_avx2_check.sh): its summary line."""
    start = time.perf_counter()
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "int8_avx2_check.sh")], capture_output=True, text=True,
                            env={**os.environ, "QEMU_CPU": cpu})
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return {"command": f"QEMU_CPU={cpu} bash benchmarks/int8_avx2_check.sh", "exit_code": result.returncode,
            "onnxruntime_line": lines[0] if lines else "", "summary": lines[-1] if lines else "",
            "failed": [line for line in lines if line.startswith("FAILED")],
            "seconds": round(time.perf_counter() - start, 1)}


# --------------------------------------------------------------------------------------- main


def qemu_command(cpu: str) -> list[str]:
    """Run this venv's python under qemu user emulation; -0 keeps argv[0], so the venv is found."""
    return ["qemu-x86_64", "-cpu", cpu, "-0", sys.executable, os.path.realpath(sys.executable)]


def child(python: list[str], artifact: Path, *extra: str) -> dict:
    result = subprocess.run([*python, __file__, "--measure", str(artifact), *extra], check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compressed", type=Path, default=COMPRESSED, help="nlpforge compress output directory")
    parser.add_argument("--optimum-python", help="python of an environment with optimum-onnx (see above)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--qemu-cpu", help="also evaluate --qemu-settings under qemu-x86_64 -cpu QEMU_CPU")
    parser.add_argument("--qemu-settings", nargs="*", default=["s8 per-channel", CHOSEN])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8_settings.json")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child process: one artifact
    parser.add_argument("--accuracy-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--heldout", type=int, default=5000,
                        help="also compare with fp32 on this many SST-2 train sentences the student never saw")
    parser.add_argument("--data", type=Path, default=SST2 / "dev.tsv", help=argparse.SUPPRESS)
    parser.add_argument("--logits", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tiny", type=Path, help=argparse.SUPPRESS)  # child process: tiny-model errors
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_one(args.measure, args.data, args.accuracy_only, args.logits)))
        return
    if args.tiny:
        print(json.dumps(tiny_errors(args.tiny)))
        return

    fp32 = args.compressed / "student-onnx"
    for path in (fp32, SST2 / "dev.tsv"):
        if not path.exists():
            sys.exit(f"error: {path} not found; make the student first (see this script's docstring)")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import onnxruntime

    from machine import machine_record

    work = args.compressed.parent / "int8-settings"
    artifacts = {"fp32 onnx": fp32}
    for name, kwargs in CANDIDATES.items():
        artifacts[name] = make_candidate(kwargs, fp32, work / name.replace(" ", "-"))
    optimum_config = None
    if args.optimum_python:
        artifacts["optimum avx2"], optimum_config = make_optimum(args.optimum_python, fp32, work / "optimum-avx2")

    names = list(artifacts)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for repeat in range(args.repeats):  # rotate the order, so machine drift hits every artifact alike
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            logits = work / f"{name.replace(' ', '-')}.native.npy"
            runs[name].append(child([sys.executable], artifacts[name], "--logits", str(logits)))
            print(name, runs[name][-1], file=sys.stderr)
    reference = runs["fp32 onnx"][0]["accuracy"]
    fp32_logits = np.load(work / "fp32-onnx.native.npy")
    heldout = None
    if args.heldout:
        write_heldout(work / "heldout.tsv", args.heldout)
        heldout = {"examples": args.heldout,
                   "what": f"SST-2 train sentences {HELDOUT_SKIP}..{HELDOUT_SKIP + args.heldout} of "
                           "compress_sst2.py's seeded order (never seen by teacher or student)"}
        for name in names:
            logits = work / f"{name.replace(' ', '-')}.heldout.npy"
            record = child([sys.executable], artifacts[name], "--accuracy-only", "--data", str(work / "heldout.tsv"),
                           "--logits", str(logits))
            heldout[name] = {"accuracy": record["accuracy"],
                             **fidelity(np.load(logits), np.load(work / "fp32-onnx.heldout.npy"))}
            print(name, "held-out", heldout[name], file=sys.stderr)
    table = {}
    for name, records in runs.items():
        table[name] = {
            "accuracy": records[0]["accuracy"],
            "accuracy_retained_vs_fp32_onnx": round(records[0]["accuracy"] / reference, 4),
            **fidelity(np.load(work / f"{name.replace(' ', '-')}.native.npy"), fp32_logits),
            "size_mb": records[0]["size_mb"],
        }
        for key in ("throughput_batch32_wall", "latency_p50_ms_batch1_wall", "throughput_batch32_cpu1",
                    "latency_p50_ms_batch1_cpu1"):
            table[name][f"{key}_median"] = round(statistics.median(r[key] for r in records), 3)
            table[name][f"{key}_runs"] = [r[key] for r in records]
        if heldout:
            table[name]["heldout_accuracy_retained_vs_fp32_onnx"] = round(
                heldout[name]["accuracy"] / heldout["fp32 onnx"]["accuracy"], 4)
        if name != "fp32 onnx":
            meta = json.loads((artifacts[name] / "nlpforge.json").read_text(encoding="utf-8"))
            table[name]["settings"] = meta.get("quantization")

    qemu = None
    if args.qemu_cpu:
        qemu = {"cpu": args.qemu_cpu, "command": " ".join(qemu_command(args.qemu_cpu)), "eval": "SST-2 dev (all)",
                "settings": {}}
        for name in args.qemu_settings:
            logits = work / f"{name.replace(' ', '-')}.qemu.npy"
            start = time.perf_counter()
            record = child(qemu_command(args.qemu_cpu), artifacts[name], "--accuracy-only", "--logits", str(logits))
            # (N, 2) logits of the same dev sentences natively and emulated
            native = np.load(work / f"{name.replace(' ', '-')}.native.npy")
            emulated = np.load(logits)
            qemu["settings"][name] = {
                "accuracy": record["accuracy"], "native_accuracy": table[name]["accuracy"],
                "accuracy_retained_vs_fp32_onnx": round(record["accuracy"] / reference, 4),
                "max_abs_logit_diff_vs_native": float(np.abs(native - emulated).max()),
                "predictions_changed_vs_native": int((native.argmax(-1) != emulated.argmax(-1)).sum()),
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(name, qemu["settings"][name], file=sys.stderr)
        make_tiny(work / "tiny")
        native_python = [sys.executable]
        qemu["tiny_models"] = {
            "what": "max |int8 - fp32 torch| / std(fp32 logits) over real tokens of the test batches of "
                    "tests/compress/test_quantize.py (random tiny models)",
            "native": json.loads(subprocess.run([*native_python, __file__, "--tiny", str(work / "tiny")], check=True,
                                                capture_output=True, text=True).stdout.splitlines()[-1]),
            args.qemu_cpu: json.loads(subprocess.run([*qemu_command(args.qemu_cpu), __file__, "--tiny",
                                                      str(work / "tiny")], check=True, capture_output=True,
                                                     text=True).stdout.splitlines()[-1]),
        }
        print(json.dumps(qemu["tiny_models"], indent=1), file=sys.stderr)
        qemu["tests"] = qemu_tests(args.qemu_cpu)
        print(qemu["tests"], file=sys.stderr)

    flags = cpu_flags()
    result = {
        "benchmark": "int8_settings", "machine": machine_record(),
        "cpu_flags": {flag: flag in flags for flag in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni",
                                                       "amx_int8")},
        "onnxruntime": onnxruntime.__version__, "eval": "SST-2 dev", "max_length": MAX_LENGTH,
        "repeats": args.repeats, "student": str(args.compressed), "student_recipe": STUDENT, "chosen": CHOSEN,
        "optimum_preset": optimum_config,
        "speed": "wall: onnxruntime's default threads (one per core), best pass; cpu1: CPU seconds of one "
                 "intra-op thread (robust to other processes on a shared machine); batch-1 latency p50 over "
                 "the first 100 dev sentences, best of 3",
        "artifacts": table, "heldout": heldout, "qemu": qemu,
        "target": "INT8 ONNX accuracy >= 99.5% of the fp32 ONNX export's, on VNNI and AVX2-only CPUs alike",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
