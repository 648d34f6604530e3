"""Run the benchmarks: ``python -m benchmarks [name ...] [--quick] [--device cpu|cuda]``.

Prints one line per case and writes all of them, with the machine and versions, to
``benchmarks/results/<timestamp>.json`` (and ``latest.json``) for later comparison.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks import devices

HERE = Path(__file__).parent


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import os

        info["cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return info


def fmt(row: dict) -> str:
    parts = [
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in row.items()
        if k != "case"
    ]
    return f"  {row['case']:<40} " + "  ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        help="only this device's cases, where a benchmark has several (default: the CPU, and "
        "CUDA where available)",
    )
    args = parser.parse_args()
    names = args.names or sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))
    results: dict[str, list[dict]] = {}
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"[{name}]", flush=True)
        start = time.perf_counter()
        takes_device = "devices" in inspect.signature(module.run).parameters
        extra = {"devices": devices(args.device)} if takes_device else {}
        rows = []
        for row in module.run(quick=args.quick, **extra):  # a list, or rows as they are measured
            print(fmt(row), flush=True)
            rows.append(row)
        print(f"  ({time.perf_counter() - start:.1f} s)", flush=True)
        results[name] = rows
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    payload = {"machine": machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in (out / f"{stamp}.json", out / "latest.json"):
        path.write_text(json.dumps(payload, indent=2))
    print(f"results: {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
