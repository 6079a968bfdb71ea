"""One-off migration (run once, committed for the record): the ``scoring_key`` of the rows
made in the hour before the column existed.

The record's rows name what made them: the training (``training_key``), the prediction
code (``prediction_version``) and, since the commit that added this script, the
prediction and evaluation fields they were scored with (``scoring_key``). Haber's and
kang_counts' rows were rescored on prediction version 2 by ``benchmarks/dataset_study.sh``'s
commands while that column was being added, by the code of the commit before it, whose
plan gives every one of those rows the same training key and the same prediction and
evaluation fields as today's. This fills their ``scoring_key`` from today's plan (the
same commands), only where the row is on today's prediction version and its training
key is the planned one; every other row keeps no scoring key, so it stays stale.

    .venv/bin/python benchmarks/migrate_record_scoring_key.py
"""
from scgen_ablation.ablation_record import KEY, RECORD, wanted
from scgen_ablation.prediction import PREDICTION_VERSION
from scgen_ablation.record import Record, versioned

# benchmarks/dataset_study.sh's commands: (stages, extra parameters)
COMMANDS = [
    (["05_scgen"], {}),
    (["06_small_data"], {"training_levers": []}),
    (["07_beyond"], {}),
    (["03_kl_weighting"], {"variants": ["kl_weight=5e-05"]}),
    (["05_scgen", "07_beyond"], {"preset_name": "recommended"}),
    (["05_scgen", "07_beyond"], {"preset_name": "kang_picks"}),
    (["01_autoencoder", "02_vae"], {}),
]


def main() -> int:
    record = Record(RECORD)
    done = versioned(record.read())
    planned = {}
    for dataset in ("haber", "kang_counts"):
        for stages, parameters in COMMANDS:
            for item in wanted("full", stages, parameters={"dataset": dataset, **parameters}):
                planned[tuple(item[k] for k in KEY)] = item
    filled = []
    for row in done.to_dict("records"):
        item = planned.get(tuple(row[k] for k in KEY))
        if (item is not None and row["prediction_version"] == PREDICTION_VERSION
                and row["training_key"] == item["training_key"]
                and str(row.get("scoring_key", "nan")) == "nan"):
            filled.append({**row, "scoring_key": item["scoring_key"]})
    record.append(filled)  # each replaces its row (same key), under the record's lock
    print(f"scoring_key filled on {len(filled)} rows of {len(done)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
