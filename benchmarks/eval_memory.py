"""Peak memory of the evaluation suite as the number of evaluated examples grows 10x.

Not a test. Each size runs `robust-vit test` (PGD-10 at 4/255 and three corruptions x 5
severities) in its own process and reads that process's peak resident set size, so the numbers
include the Python, torch and dataset baseline. Target: the 10x run's peak within 10% of the
small one's (the suite streams batches; nothing is loaded whole).

    PYTHONPATH=$PWD python benchmarks/eval_memory.py --small 200 --threads 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = """trainer:
  inference_mode: false
  callbacks+:
    - class_path: callbacks.AdversarialEval
      init_args:
        num_examples: {n}
        epsilons: [4/255]
        attacks:
          - class_path: robust_vit.attacks.PGD
            init_args: {{eps: 0.0, steps: 10}}
    - class_path: callbacks.CorruptionEval
      init_args:
        num_examples: {n}
        corruptions: [gaussian_noise, contrast, pixelate]
        cache_dir: {cache}
"""


def peak_rss_mib(n: int, threads: int, work: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and wall seconds of a `robust-vit test` of the suite on ``n`` examples."""
    suite = work / f"suite_{n}.yaml"
    suite.write_text(SUITE.format(n=n, cache=work / f"cache_{n}"))
    layers = ("base", "data/fashion_mnist", "model/vit_cpu", "method/erm")
    configs = [a for c in layers for a in ("--config", str(REPO / "experiments" / f"{c}.yaml"))]
    cmd = [
        sys.executable,
        "-c",
        "import resource, sys; from application.cli import main; main(sys.argv[1:]); "
        "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
        "test",
        *configs,
        "--config",
        str(suite),
        "--trainer.enable_progress_bar=false",
        f"--threads={threads}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("PEAK_KIB")]
    return int(line.split()[1]) / 1024, seconds


def main() -> None:
    """Measure both sizes and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(n, *peak_rss_mib(n, ns.threads, Path(tmp))) for n in (ns.small, 10 * ns.small)]
    print("examples  peak RSS MiB  seconds")
    for n, mib, seconds in rows:
        print(f"{n:8d}  {mib:12.1f}  {seconds:7.1f}")
    print(f"peak memory at 10x examples / at 1x: {rows[1][1] / rows[0][1]:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
