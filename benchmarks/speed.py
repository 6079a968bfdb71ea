"""Training speed against the matrix-product floor (a benchmark, not a test).

    python benchmarks/speed.py [--epochs 5] [--batch-size 32] [--threads N]

Trains scGen's paper configuration on every cell of kang_pbmc_scgen.h5ad
(1,975 x 6,998; no validation split, no early stopping) and prints seconds per
epoch, cells per second and peak memory, next to the *floor*: the same
forward and backward matrix products (three per linear layer and batch: the
forward product, the gradient of the input, the gradient of the weights) run
bare with torch.mm, measured in the same process.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch


def matmul_floor(sizes: list[tuple[int, int]], n_cells: int, batch_size: int, repeats: int) -> float:
    """Seconds per epoch of just the linear layers' forward + backward products."""
    batches = [min(batch_size, n_cells - s) for s in range(0, n_cells, batch_size)]
    weights = [torch.randn(n_in, n_out) for n_in, n_out in sizes]
    inputs = {b: [torch.randn(b, n_in) for n_in, _ in sizes] for b in set(batches)}
    grads = {b: [torch.randn(b, n_out) for _, n_out in sizes] for b in set(batches)}
    timings = []
    for _ in range(repeats):
        tic = time.perf_counter()
        for b in batches:
            for W, x, g in zip(weights, inputs[b], grads[b]):
                torch.mm(x, W)          # forward
                torch.mm(g, W.t())      # gradient of the input
                torch.mm(x.t(), g)      # gradient of the weights
        timings.append(time.perf_counter() - tic)
    return float(np.median(timings))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import scgen_ablation as sa
    from scgen_ablation.model import ScGenModule

    adata = sa.load("kang")
    config = sa.preset("paper", epochs=args.epochs, batch_size=args.batch_size,
                       validation_fraction=0.0, early_stopping_patience=10 ** 6)
    model = sa.train(adata, config, progress=False)
    seconds = [h["seconds"] for h in model.history]
    per_epoch = float(np.median(seconds[1:] if len(seconds) > 1 else seconds))  # epoch 1 warms up

    module = ScGenModule(adata.n_vars, config)
    sizes = [(m.in_features, m.out_features) for m in module.modules()
             if isinstance(m, torch.nn.Linear)]
    floor = matmul_floor(sizes, adata.n_obs, args.batch_size, repeats=3)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"data            kang_pbmc_scgen.h5ad, {adata.n_obs} cells x {adata.n_vars} genes")
    print(f"torch           {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"training        {per_epoch:.2f} s/epoch  ({adata.n_obs / per_epoch:.0f} cells/s; "
          f"median of epochs 2-{args.epochs})")
    print(f"matmul floor    {floor:.2f} s/epoch")
    print(f"ratio           {per_epoch / floor:.2f}x the floor")
    print(f"peak memory     {peak_mib:.0f} MiB (process RSS)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
