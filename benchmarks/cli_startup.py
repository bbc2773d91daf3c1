"""How fast the CLI answers when no model is needed: `nlpforge --help`, a missing checkpoint, a
missing data file, a bad flag. Target: under 1.5 s each (heavy modules are imported lazily).

    python benchmarks/cli_startup.py [--repeats 7]   ->  benchmarks/results/cli_startup.json

Each command runs as a fresh process (the console script), `--repeats` times; the JSON holds the
median and the worst wall time, the exit code and the first line of stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.5
COMMANDS = {
    "help": ["--help"],
    "train_help": ["train", "--help"],
    "missing_checkpoint": ["info", "/nonexistent/model"],
    "missing_eval_file": ["eval", str(ROOT / "benchmarks"), "--data", "/nonexistent/dev.tsv"],
    "missing_train_model": ["train", "--task", "classify", "--model", "/nonexistent/model", "--train", "t.tsv",
                            "--out", "o"],
    "bad_flag": ["train", "--no-such-flag"],
}


def timed(command: list[str], repeats: int) -> dict:
    times, done = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        times.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(times), 3), "worst_s": round(max(times), 3),
            "exit_code": done.returncode, "stderr": (done.stderr.strip().splitlines() or [""])[-1][:200],
            "under_target": statistics.median(times) < TARGET_S}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cli_startup.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record

    executable = shutil.which("nlpforge") or sys.exit("nlpforge is not on PATH; install the project first")
    results = {name: timed([executable, *command], args.repeats) for name, command in COMMANDS.items()}
    record = {"benchmark": "cli_startup", "target_s": TARGET_S, "machine": machine_record(),
              "command": f"python benchmarks/cli_startup.py --repeats {args.repeats}", "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
