"""One reference scGen run, inside the reference environment (.venv-reference).

usage: run_reference.py CELL_TYPE MAX_EPOCHS SEED OUT_DIR DATA_PATH [KEYS_JSON]
KEYS_JSON: the dataset's condition_key, cell_type_key, control_label and
stimulated_label (default: Kang's: condition, cell_type, control, stimulated).
Writes OUT_DIR/prediction.npy (held-out control cells, predicted) and
OUT_DIR/timing.json. Scoring happens in the project's environment, with the
project's metric code, so both implementations are scored identically.
"""
import json
import resource
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
started = time.perf_counter()

import anndata  # noqa: E402
import numpy as np  # noqa: E402
import scgen  # noqa: E402
import scvi  # noqa: E402


KANG = {"condition_key": "condition", "cell_type_key": "cell_type",
        "control_label": "control", "stimulated_label": "stimulated"}


def main(cell_type, max_epochs, seed, out_dir, data_path, keys=KANG):
    keys = {**KANG, **keys}
    condition, label = keys["condition_key"], keys["cell_type_key"]
    scvi.settings.seed = seed
    adata = anndata.read_h5ad(data_path)
    held_out = ((adata.obs[label] == cell_type)
                & (adata.obs[condition] == keys["stimulated_label"]))
    # the same training cells as ours (data.split_held_out): the two conditions only
    studied = adata.obs[condition].isin([keys["control_label"], keys["stimulated_label"]])
    train = adata[(studied & ~held_out).to_numpy()].copy()
    scgen.SCGEN.setup_anndata(train, batch_key=condition, labels_key=label)
    model = scgen.SCGEN(train)  # defaults: 800-800-100, dropout 0.2, kl weight 5e-5
    tic = time.perf_counter()
    model.train(max_epochs=max_epochs, batch_size=32, early_stopping=True,
                early_stopping_patience=25)
    train_seconds = time.perf_counter() - tic
    epochs = len(model.history["elbo_train"])
    predicted = model.predict(ctrl_key=keys["control_label"], stim_key=keys["stimulated_label"],
                              celltype_to_predict=cell_type)
    if isinstance(predicted, tuple):
        predicted = predicted[0]
    X = predicted.X.toarray() if hasattr(predicted.X, "toarray") else np.asarray(predicted.X)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "prediction.npy", X.astype(np.float32))
    (out / "timing.json").write_text(json.dumps({
        "epochs": epochs, "train_seconds": train_seconds, "s_per_epoch": train_seconds / epochs,
        "wall_seconds": time.perf_counter() - started,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "obs_names": list(map(str, predicted.obs_names)),
    }))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5],
         *(json.loads(a) for a in sys.argv[6:7]))
