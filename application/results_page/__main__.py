"""Write docs/results.md and docs/results.json, the CPU reproduction's headline, from the records.

`make report` (and `make bench` after its sweeps) runs this:
- runs/anf: the pretrained ViT (tested as is) against ERM, ANF, the random-noise control and
  Gaussian noise finetuning;
- runs/safer: from the overfit stage 1 (runs/safer_stage1), continued PGD-AT against SAFER, its two
  ablations and the early-stopped stage-1 weights.

Each headline row puts the paper's claim (``claims.yaml``), with the comparison the paper made,
beside our comparison: the difference paired per example and seed with its 95% interval, p-value
and Holm-corrected p (seed means only where the records hold no per-example files), at the radius
where the sweep's reference arm keeps 20-60% robust accuracy. The diagnostics say whether the runs
exercised what each method targets (ANF's reach rate, stage 1's robust overfitting, SAFER's
re-selections) and which step every arm was tested at.

    python -m application.results_page --runs runs --out docs/results.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from application.results_page.render import build
from robust_vit.records import write_text_atomic


def main() -> None:
    """Write the page and the JSON next to it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("docs/results.md"))
    ns = parser.parse_args()
    page, result = build(ns.runs, ns.out.parent)
    write_text_atomic(ns.out, page)
    write_text_atomic(ns.out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    print(page)


if __name__ == "__main__":
    main()
