"""Benchmark time_series.py: the RNN against the naive and linear baselines.

Runs the lesson as a user would (a subprocess, default settings) on the
synthetic waveform and on two real series, and compares, on the same test
windows, the RNN's one-step test MSE with the previous-value baseline and a
least-squares linear model of the window. Goals: on the waveform, RNN MSE
at most a tenth of the naive baseline's, plus the generation RMSE over the
first 50 steps; on the real series, the RNN beats naive. Each real series
runs twice: the plain model, and with --residual (the network predicts the
change from the current value).

    python benchmarks/bench_time_series.py
    python benchmarks/bench_time_series.py --data-dir ../shared/data/time_series

Each finished measurement is appended to --results as one JSON line, so an
interrupted benchmark keeps what it measured; a markdown row is printed per
case, then a summary table.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# name: (file under --data-dir or None for the waveform, column, extra flags)
CASES = {
    "waveform": (None, None, []),
    "sunspots": ("monthly-sunspots.csv", "Sunspots", []),
    "sunspots-residual": ("monthly-sunspots.csv", "Sunspots", ["--residual"]),
    "temperatures": ("daily-min-temperatures.csv", "Temp", []),
    "temperatures-residual": ("daily-min-temperatures.csv", "Temp", ["--residual"]),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        default=str(ROOT / "data" / "time_series"),
        help="folder holding monthly-sunspots.csv and daily-min-temperatures.csv",
    )
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument(
        "--results",
        default=str(ROOT / "output" / "bench_time_series.jsonl"),
        help="JSON lines file that each finished case is appended to",
    )
    parser.add_argument(
        "--work-dir",
        default=str(ROOT / "output" / "bench"),
        help="output and log folders of the benchmark's runs",
    )
    parser.add_argument(
        "--extra", default="", help="flags passed to every run, e.g. '--epochs 5'"
    )
    return parser.parse_args(argv)


def machine():
    gpu = "GPU" if shutil.which("nvidia-smi") else "no GPU"
    return f"{os.cpu_count()}-core {platform.machine()} CPU, {gpu}"


def run_case(name, args):
    """Train and evaluate one series; return the row of figures."""
    cmd = [sys.executable, str(ROOT / "time_series.py")]
    file_name, column, flags = CASES[name]
    if file_name is not None:
        path = Path(args.data_dir) / file_name
        if not path.exists():
            raise SystemExit(f"error: {path} not found; give --data-dir")
        cmd += ["--data", str(path), "--column", column]
    cmd += flags + args.extra.split()
    work = Path(args.work_dir)
    cmd += ["--output-dir", str(work / "output"), "--log-dir", str(work / "logs")]
    load_before = os.getloadavg()[0]
    started = time.time()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - started
    if result.returncode != 0:
        raise SystemExit(f"error: {name} failed:\n{result.stderr[-3000:]}")
    run_dir = None
    for line in result.stdout.splitlines():
        if line.startswith("run folder:"):
            run_dir = Path(line.split(":", 1)[1].strip())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    figures = metrics["results"]
    shown = [c if " " not in c else repr(c) for c in cmd[1:]]
    shown[0] = str(Path(shown[0]).relative_to(ROOT))
    return {
        "case": name,
        "test_mse": figures["test_mse"],
        "naive_mse": figures["naive_mse"],
        "linear_mse": figures["linear_mse"],
        "rnn_over_naive": figures["test_mse"] / figures["naive_mse"],
        "rnn_over_linear": figures["test_mse"] / max(figures["linear_mse"], 1e-300),
        "generation_rmse_50": figures["generation_rmse_50"],
        "linear_generation_rmse_50": figures["linear_generation_rmse_50"],
        "generation_diverged_at": figures["test_seed_diverged_at"],
        "epochs_run": json.loads((run_dir / "state.json").read_text())["epoch"],
        "wall_seconds": round(wall, 1),
        "load_average_at_start": round(load_before, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "machine": machine(),
        "command": "python " + " ".join(shown),
        "run_dir": str(run_dir),
    }


def fmt(value):
    return "diverged" if value is None else f"{value:.4g}"


def row(r):
    return (
        f"| {r['case']} | {fmt(r['test_mse'])} | {fmt(r['naive_mse'])} | "
        f"{fmt(r['linear_mse'])} | {r['rnn_over_naive']:.3f} | "
        f"{fmt(r['generation_rmse_50'])} | {fmt(r['linear_generation_rmse_50'])} | "
        f"{r['epochs_run']} | {r['wall_seconds']:.0f} s | {r['machine']}, "
        f"load {r['load_average_at_start']:.1f} | `{r['command']}` |"
    )


HEADER = (
    "| series | RNN test MSE | naive MSE | linear MSE | RNN / naive | "
    "gen. RMSE 50 (RNN) | gen. RMSE 50 (linear) | epochs | wall | machine | "
    "command |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def main(argv=None):
    args = parse_args(argv)
    results_path = Path(args.results)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    print(HEADER, flush=True)
    for name in args.cases:
        r = run_case(name, args)
        with results_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(r) + "\n")
        rows.append(r)
        print(row(r), flush=True)
    print("\ngoals:")
    for r in rows:
        if r["case"] == "waveform":
            ok = r["test_mse"] <= r["naive_mse"] / 10
            print(
                f"  waveform: RNN MSE <= naive / 10: {ok} ({r['rnn_over_naive']:.3f})"
            )
        else:
            ok = r["test_mse"] < r["naive_mse"]
            print(f"  {r['case']}: RNN beats naive: {ok} ({r['rnn_over_naive']:.3f})")
    print(f"results appended to {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
