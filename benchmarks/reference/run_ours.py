"""One run of this project's scGen, the counterpart of run_reference.py.

usage: run_ours.py CELL_TYPE MAX_EPOCHS SEED OUT_DIR DATA_PATH [PRESET [KEYS_JSON]]
"""
import json
import resource
import sys
import time
from pathlib import Path

started = time.perf_counter()

import numpy as np  # noqa: E402

import scgen_ablation as sa  # noqa: E402


def main(cell_type, max_epochs, seed, out_dir, data_path, preset_name="paper", keys="{}"):
    keys = json.loads(keys)
    config = sa.preset(preset_name, held_out_cell_type=cell_type, epochs=max_epochs, seed=seed,
                       **keys)
    adata = sa.load(data_path, **keys)
    split = sa.split_held_out(adata, config)
    tic = time.perf_counter()
    model = sa.train(split.train, config, progress=False)
    train_seconds = time.perf_counter() - tic
    predicted = sa.predict(model, split.train, split.ctrl_target, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "prediction.npy", np.asarray(predicted.X, dtype=np.float32))
    epochs = len(model.history)
    (out / "timing.json").write_text(json.dumps({
        "epochs": epochs, "train_seconds": train_seconds, "s_per_epoch": train_seconds / epochs,
        "wall_seconds": time.perf_counter() - started,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "obs_names": [n.removesuffix("-predicted") for n in predicted.obs_names],
    }))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5],
         *(sys.argv[6:8]))
