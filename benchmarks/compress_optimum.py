"""Our INT8 ONNX student vs optimum's own quantization of the same fp32 ONNX student.

Both INT8 files are made in this run from the one fp32 ``student-onnx`` that ``nlpforge compress``
wrote (``benchmarks/compress_sst2.py --work benchmarks/work/compress`` leaves it in
``benchmarks/work/compress/compressed``): ours with ``quantize_onnx_dynamic`` (what ``compress
--quantize int8`` runs), optimum's with ``ORTQuantizer`` and its
documented dynamic-quantization preset for this CPU (``AutoQuantizationConfig.avx512_vnni`` when
the CPU has VNNI, else ``avx2``), once per-tensor (the documented example) and once per-channel.
Every INT8 model then runs on the same onnxruntime, threads and SST-2 dev texts, each measurement in
a fresh process (one onnxruntime thread pool at a time: idle pools of other sessions spin and skew
the numbers), the artifacts in rotating order ``--repeats`` times. In each process throughput is the
best of 6 passes over dev and latency the best p50 of 3 passes over 100 examples; the JSON reports
the medians over processes (and accuracy and size).

optimum-onnx pins transformers < 4.58, so it gets its own environment:

    python3 -m venv /tmp/optimum-venv
    /tmp/optimum-venv/bin/pip install torch==2.13.0
    /tmp/optimum-venv/bin/pip install "optimum-onnx[onnxruntime]" "transformers<4.58"
    python benchmarks/compress_optimum.py --optimum-python /tmp/optimum-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"
COMPRESSED = ROOT / "benchmarks" / "work" / "compress" / "compressed"
MAX_LENGTH = 64
THROUGHPUT_PASSES = 6

# Runs in the optimum environment: argv = fp32 ONNX dir, output dir, preset, per_channel (0/1).
OPTIMUM_QUANTIZE = """
import sys
from optimum.onnxruntime import ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig
src, out, preset, per_channel = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
config = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=per_channel)
ORTQuantizer.from_pretrained(src, file_name="model.onnx").quantize(save_dir=out, quantization_config=config)
"""


def cpu_preset() -> str:
    flags = Path("/proc/cpuinfo").read_text(encoding="utf-8") if Path("/proc/cpuinfo").exists() else ""
    return "avx512_vnni" if "avx512_vnni" in flags else "avx2"


def optimum_artifact(python: str, src: Path, out: Path, preset: str, per_channel: bool, side_files: Path) -> Path:
    """optimum's INT8 copy of ``src``, with our side files (tokenizer, labels) so nlpforge loads it."""
    if out.exists():
        shutil.rmtree(out)
    raw = out.with_name(out.name + "-raw")
    subprocess.run([python, "-c", OPTIMUM_QUANTIZE, str(src), str(raw), preset, "1" if per_channel else "0"],
                   check=True)
    out.mkdir(parents=True)
    shutil.copy(raw / "model_quantized.onnx", out / "model.onnx")
    for name in ("config.json", "nlpforge.json", "tokenizer.json", "tokenizer_config.json"):
        if (side_files / name).exists():
            shutil.copy(side_files / name, out / name)
    shutil.rmtree(raw)
    return out


def measure_one(artifact: Path) -> dict:
    """Accuracy, latency, throughput and size of one ONNX artifact on SST-2 dev (run in a child process)."""
    from nlpforge.artifacts import load_artifact
    from nlpforge.checkpoint import directory_size
    from nlpforge.compress.measure import latency_ms, measure, throughput
    from nlpforge.tasks import DataOptions, get_task

    task, data = get_task("classify"), DataOptions()
    artifact = load_artifact(artifact)
    model, tokenizer, meta = artifact.model, artifact.tokenizer, artifact.meta
    examples = task.read(SST2 / "dev.tsv", data)
    record = measure(model, tokenizer, task, examples, meta.get("labels"), MAX_LENGTH, data,
                     directory_size(artifact))
    # Best of THROUGHPUT_PASSES passes: on a shared VM, noise only ever slows a pass down.
    features = task.encode(tokenizer, examples, meta.get("labels"), MAX_LENGTH, data)
    record["throughput_batch32"] = throughput(model, features, tokenizer.pad_token_id, repeats=THROUGHPUT_PASSES)
    record["latency_ms_batch1"] = min((latency_ms(model, features, tokenizer.pad_token_id) for _ in range(3)),
                                      key=lambda latency: latency["p50"])
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimum-python", help="python of an environment with optimum-onnx")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child process: one artifact
    parser.add_argument("--compressed", type=Path, default=COMPRESSED, help="nlpforge compress output directory")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compress_optimum.json")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_one(args.measure)))
        return
    if not args.optimum_python:
        sys.exit("error: --optimum-python is required (see the set-up in this script's docstring)")
    fp32 = args.compressed / "student-onnx"
    for path in (fp32, SST2 / "dev.tsv"):
        if not path.exists():
            sys.exit(f"error: {path} not found; run benchmarks/compress_sst2.py --work benchmarks/work/compress first")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record
    from nlpforge.compress.quantize import quantize_onnx_dynamic

    preset = cpu_preset()
    work = args.compressed.parent / "optimum"
    ours = quantize_onnx_dynamic(fp32, work / "nlpforge-int8")
    artifacts = {"nlpforge int8 onnx": ours}
    for per_channel in (False, True):
        name = f"optimum {preset} {'per-channel' if per_channel else 'per-tensor'}"
        artifacts[name] = optimum_artifact(args.optimum_python, fp32, work / name.replace(" ", "-"), preset,
                                           per_channel, ours)

    runs: dict[str, list[dict]] = {name: [] for name in artifacts}
    names = list(artifacts)
    for repeat in range(args.repeats):  # rotate the order, so machine drift hits every artifact alike
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            child = subprocess.run([sys.executable, __file__, "--measure", str(artifacts[name])],
                                   check=True, capture_output=True, text=True)
            runs[name].append(json.loads(child.stdout.splitlines()[-1]))
    summary = {}
    for name, records in runs.items():
        summary[name] = {
            "path": str(artifacts[name]),
            "accuracy": round(records[0]["metric"], 2),
            "throughput_batch32_median": round(statistics.median(r["throughput_batch32"] for r in records), 1),
            "throughput_batch32_runs": [round(r["throughput_batch32"], 1) for r in records],
            "latency_p50_ms_median": round(statistics.median(r["latency_ms_batch1"]["p50"] for r in records), 2),
            "size_mb": records[0]["size_mb"],
        }
    best_optimum = max((s for n, s in summary.items() if n.startswith("optimum")),
                       key=lambda s: s["throughput_batch32_median"])
    ours_summary = summary["nlpforge int8 onnx"]
    result = {
        "benchmark": "compress_optimum", "machine": machine_record(), "eval": "SST-2 dev",
        "max_length": MAX_LENGTH, "repeats": args.repeats, "optimum_preset": preset, "artifacts": summary,
        "ours_vs_fastest_optimum_throughput": round(
            ours_summary["throughput_batch32_median"] / best_optimum["throughput_batch32_median"], 3),
        "ours_vs_fastest_optimum_latency_p50": round(
            best_optimum["latency_p50_ms_median"] / ours_summary["latency_p50_ms_median"], 3),
        "target": "ours no slower (both ratios >= 1, within run-to-run noise)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
