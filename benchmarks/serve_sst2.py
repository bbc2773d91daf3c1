"""Serving throughput and overload behaviour on SST-2 dev sentences (loopback only), JSON out.

    python benchmarks/serve_sst2.py --out benchmarks/results/serve_sst2.json

For each artifact (the quickstart model on torch; its INT8 ONNX export on onnxruntime):
1. ceiling: the same model in-process through ``Predictor.predict``, batch 32, inputs in file order
   (and, for reference, all 872 sentences in one call, which sorts them by length globally);
2. ``nlpforge serve`` driven by ``nlpforge bench-serve`` with 32 closed-loop clients, one sentence
   per request: throughput / ceiling (target >= 0.85); steps 1 and 2 alternate ``--repeats`` times
   and the median ratio is reported (single runs on a shared 2-core VM vary by +-15 %);
3. the baseline server (benchmarks/serve_baseline.py: FastAPI + transformers.pipeline once per
   request, torch artifact only), same clients: our throughput / its (target >= 5);
4. overload: open-loop arrivals at 2x the throughput of step 2 for 30 s: responses other than 200
   and 503 (target 0), requests lost (sent minus answered; target 0), p99 latency of the 200s.

The load generator runs in its own process on the same machine as the server, so both compete for
the same cores (the JSON records the machine). The quickstart model is trained first when
``--model`` is not given and benchmarks/work/quickstart does not exist (about 5 minutes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "serve"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(process: subprocess.Popen, url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early: {process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} never became ready")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def bench(url: str, inputs: Path, *flags: str) -> dict:
    out = WORK / f"load-{os.getpid()}.json"
    subprocess.run([str(BIN / "nlpforge"), "bench-serve", url, "--input", str(inputs), "--json", str(out), *flags],
                   check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    out.unlink()
    print(json.dumps(result), file=sys.stderr)
    return result


def ceiling(predictor, sentences: list[str], seconds: float) -> dict:
    """In-process throughput (sentences/s) of the same model: batches of 32 in file order, and one call."""
    rates = {}
    for name, chunk in (("batches_of_32_in_order", 32), ("one_call_length_sorted", len(sentences))):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for i in range(0, len(sentences), chunk):
                predictor.predict(sentences[i: i + chunk])
            done += len(sentences)
        rates[name] = round(done / (time.perf_counter() - start), 1)
    return rates


def serve_and_measure(artifact: Path, sentences: list[str], inputs: Path, args: argparse.Namespace) -> dict:
    """Ceiling and server throughput measured alternately ``--repeats`` times (the server idles while
    the ceiling runs), then the overload run; ratios are taken per repeat and the median reported."""
    from nlpforge.predictor import Predictor

    predictor = Predictor.load(artifact, batch_size=32)
    predictor.predict(sentences[:32])  # warm-up
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(BIN / "nlpforge"), "serve", str(artifact), "--port", str(port),
                               "--log-level", "warning"], stderr=subprocess.PIPE, text=True)
    repeats = []
    try:
        wait_ready(server, url)
        for _ in range(args.repeats):
            rates = ceiling(predictor, sentences, args.ceiling_seconds)
            closed = bench(url, inputs, "--concurrency", str(args.concurrency), "--duration", str(args.duration))
            repeats.append({"ceiling_inputs_per_s": rates, "closed_loop": closed,
                            "vs_in_order": round(closed["inputs_per_s"] / rates["batches_of_32_in_order"], 3),
                            "vs_one_call": round(closed["inputs_per_s"] / rates["one_call_length_sorted"], 3)})
            print(json.dumps(repeats[-1]), file=sys.stderr)
        rate = 2 * statistics.median(r["closed_loop"]["ok_per_s"] for r in repeats)
        overload = bench(url, inputs, "--rate", f"{rate:.1f}", "--duration", str(args.overload_duration),
                         "--max-in-flight", "4096")
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    finally:
        stop(server)
    answered = sum(v for k, v in overload["by_status"].items() if k.isdigit())
    other = {k: v for k, v in overload["by_status"].items() if k not in ("200", "503")}
    values = {line.split()[0]: float(line.split()[-1]) for line in metrics.splitlines()
              if line.startswith(("nlpforge_batch_size_sum", "nlpforge_batch_size_count"))}
    return {
        "artifact": str(artifact),
        "repeats": repeats,
        "server_inputs_per_s_median": statistics.median(r["closed_loop"]["inputs_per_s"] for r in repeats),
        "throughput_vs_ceiling": statistics.median(r["vs_in_order"] for r in repeats),
        "throughput_vs_one_call_ceiling": statistics.median(r["vs_one_call"] for r in repeats),
        "overload": {**overload, "offered_rate": round(rate, 1), "responses_other_than_200_503": other,
                     "lost": overload["requests"] - answered - overload["by_status"].get("dropped_by_client", 0),
                     "p99_ms_of_200": overload["latency_ms_ok"].get("p99")},
        "mean_batch_size_over_run": round(values["nlpforge_batch_size_sum"] / values["nlpforge_batch_size_count"], 2),
    }


def baseline(model: Path, inputs: Path, args: argparse.Namespace) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "serve_baseline.py"), str(model),
                               "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(server, url)
        return bench(url, inputs, "--concurrency", str(args.concurrency), "--duration", str(args.duration))
    finally:
        stop(server)


def int8_onnx(model: Path) -> Path:
    from nlpforge.artifacts import load_artifact
    from nlpforge.compress.export import export_onnx
    from nlpforge.compress.quantize import quantize_onnx_dynamic

    out = WORK / "quickstart-int8-onnx"
    if not (out / "model.onnx").is_file():
        fp32 = WORK / "quickstart-onnx"
        artifact = load_artifact(model)
        torch_model, tokenizer, meta = artifact.model, artifact.tokenizer, artifact.meta
        export_onnx(torch_model, fp32, tokenizer, meta)
        quantize_onnx_dynamic(fp32, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="fine-tuned classifier (default: the quickstart model)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--overload-duration", type=float, default=30.0)
    parser.add_argument("--ceiling-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="alternating ceiling / server measurements")
    parser.add_argument("--skip-onnx", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_sst2.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record

    WORK.mkdir(parents=True, exist_ok=True)
    model = args.model or ROOT / "benchmarks" / "work" / "quickstart"
    if not (model / "config.json").is_file():
        subprocess.run([str(BIN / "nlpforge"), "quickstart", "--out", str(model)], check=True)
    with (files("nlpforge") / "quickstart_data" / "sst2_dev.tsv").open(encoding="utf-8") as handle:
        sentences = [row["text"] for row in csv.DictReader(handle, delimiter="\t")]
    inputs = WORK / "sst2_dev_sentences.txt"
    inputs.write_text("\n".join(sentences) + "\n", encoding="utf-8")

    artifacts = {"fp32 torch": model}
    if not args.skip_onnx:
        artifacts["int8 onnx"] = int8_onnx(model)
    report: dict = {"benchmark": "serve_sst2", "machine": machine_record(), "model": str(model),
                    "inputs": f"SST-2 dev sentences ({len(sentences)}), one per request", "artifacts": {}}
    for name, artifact in artifacts.items():
        report["artifacts"][name] = serve_and_measure(artifact, sentences, inputs, args)
    if not args.skip_baseline:
        base = baseline(model, inputs, args)
        ours = report["artifacts"]["fp32 torch"]["server_inputs_per_s_median"]
        report["baseline_pipeline_per_request"] = {**base, "ours_vs_baseline": round(ours / base["inputs_per_s"], 2)}
    report["targets"] = {"throughput_vs_ceiling": ">= 0.85", "ours_vs_baseline": ">= 5",
                         "overload": "only 200 and 503, none lost"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
