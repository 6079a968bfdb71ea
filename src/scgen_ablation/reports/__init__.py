"""The docs' generated blocks and figures, one module per doc, all drawn from the committed
records (no training).

    python -m scgen_ablation.ablation_record --report    # the ablation record's blocks
    python -m scgen_ablation.study_record --report       # docs/small_data.md's

:mod:`.common` holds what they share (the record in stage order, mean ± sd, the
authors' scGen and the baselines on the same runs, the block writer).  The
ablation record's blocks are named ``ablation-*``; the small-data study's
(:mod:`.small_data`) every other, and one markdown file can hold both.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from ..record import check_rows, read_csv
from . import ablation, benchmarks, beyond, datasets, metrics
from .common import ABLATION_BLOCKS, latest, load, write_blocks

DOCS = (ablation, metrics, benchmarks, beyond, datasets)  # the record's docs, README's blocks among them


def write_report(csv: Path, figures: Path, docs=(), dataset: str = "kang") -> int:
    """The docs' blocks and figures of one dataset's rows (Kang's by default; the
    datasets' blocks take every dataset's)."""
    if not Path(csv).exists():
        raise SystemExit(f"{csv} does not exist: run python -m scgen_ablation.ablation_record first")
    try:
        rows = check_rows(read_csv(csv), str(csv))
    except ValueError as error:
        raise SystemExit(f"ablation_record --report: {error}") from None
    if rows.empty:
        raise SystemExit(f"ablation_record --report: {csv} holds no rows yet: make some with "
                         "python -m scgen_ablation.ablation_record first")
    everything = load(csv)
    table = latest(everything[everything["dataset"] == dataset]).reset_index(drop=True)
    if table.empty:
        raise SystemExit(f"ablation_record --report: {csv} holds no rows of dataset {dataset!r}; "
                         f"it has {sorted(everything['dataset'].unique())}")
    blocks = {name: block for doc in DOCS for name, block in doc.blocks(table, everything).items()}
    for name, block in blocks.items():
        print(f"## {name}\n\n{block}\n")
    datasets.rule_verdicts(everything).to_csv(Path(csv).with_name(datasets.VERDICTS.name),
                                              index=False)  # beside the record
    figures.mkdir(parents=True, exist_ok=True)
    for doc in (ablation, metrics):
        for name, figure in doc.figures(table).items():
            figure.savefig(figures / name, dpi=120)
            plt.close(figure)
    for doc in docs:
        write_blocks(Path(doc), blocks, mine=lambda name: name.startswith(ABLATION_BLOCKS))
    return 0
