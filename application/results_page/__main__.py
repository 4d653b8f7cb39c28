"""Write docs/results.md and docs/results.json, the CPU reproduction's headline, from the records.

`make report` runs this on the committed records in docs/records/ (`make bench` copies them there
from runs/ with `make records`, then runs it):
- anf: the pretrained ViT (tested as is) against ERM, ANF, the random-noise control and Gaussian
  noise finetuning;
- safer: from the overfit stage 1 (safer_stage1), continued PGD-AT against SAFER, the stage-1
  weights without stage 2, early stopping, SAFER's ablations and oracle, and PGD-AT with ANF noise;
- safer_rollback and anf_nullspace: the tests of SAFER's and ANF's premises.

Each headline row puts the paper's claim (``claims.yaml``), with the comparison the paper made,
beside our comparison: the difference paired per example and seed with its 95% interval, p-value
and Holm-corrected p (seed means only where the records hold no per-example files), at the radius
where the sweep's reference arm keeps 20-60% robust accuracy. The diagnostics say whether the runs
exercised what each method targets (ANF's reach rate, stage 1's robust overfitting, SAFER's
re-selections) and which step every arm was tested at. Plots in docs/results/ that the page no
longer links are removed.

    python -m application.results_page --runs docs/records --out docs/results.md
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
    parser.add_argument("--runs", type=Path, default=Path("docs/records"))
    parser.add_argument("--out", type=Path, default=Path("docs/results.md"))
    ns = parser.parse_args()
    plots = ns.out.parent / "results"
    before = set(plots.glob("*.png"))
    page, result = build(ns.runs, ns.out.parent)
    for stale in before - {p for p in plots.glob("*.png") if p.name in page}:
        stale.unlink()  # a plot this build did not link: no longer generated
    write_text_atomic(ns.out, page)
    write_text_atomic(ns.out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    print(page)


if __name__ == "__main__":
    main()
