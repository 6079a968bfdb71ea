"""Training speed of both presets against what the hardware must do (a benchmark, not a test).

    python benchmarks/speed.py [--epochs 5] [--batch-size 32] [--threads N] [--device cuda]
                               [--dataset kang]

Trains the ``paper`` and the ``kang_picks`` preset, in the same run, on every
cell of a dataset (by default kang_pbmc_scgen.h5ad, 1,975 x 6,998; no validation
split, no early stopping) and prints seconds per epoch (median of epochs 2 on), next to the
*floor*, measured in the same process on the same device:

- the linear layers' matrix products, run bare (three per layer and batch:
  the forward product, the gradient of the input, the gradient of the weights);
- the optimizer's memory traffic: one bare Adam step per batch on the same
  parameters (it reads every weight, gradient and both moments and writes
  three of them back: at batch 32 this is as large as the products).

Everything else in the loop (activations, batch norm, the loss, Python) is
what the ratio measures.  On a GPU the loop and the floor are both timed with
the device synchronised at the ends only.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batches_of(n_cells: int, batch_size: int) -> list[int]:
    return [b for b in (min(batch_size, n_cells - s) for s in range(0, n_cells, batch_size)) if b >= 2]


def matmul_floor(sizes, n_cells, batch_size, device, repeats=3) -> float:
    """Seconds per epoch of just the linear layers' forward + backward products."""
    batches = batches_of(n_cells, batch_size)
    weights = [torch.randn(n_in, n_out, device=device) for n_in, n_out in sizes]
    inputs = {b: [torch.randn(b, n_in, device=device) for n_in, _ in sizes] for b in set(batches)}
    grads = {b: [torch.randn(b, n_out, device=device) for _, n_out in sizes] for b in set(batches)}
    timings = []
    for _ in range(repeats + 1):
        synchronize(device)
        tic = time.perf_counter()
        for b in batches:
            for W, x, g in zip(weights, inputs[b], grads[b]):
                torch.mm(x, W)          # forward
                torch.mm(g, W.t())      # gradient of the input
                torch.mm(x.t(), g)      # gradient of the weights
        synchronize(device)
        timings.append(time.perf_counter() - tic)
    return float(np.median(timings[1:]))  # the first warms up


def optimizer_floor(module, n_cells, batch_size, config, device, repeats=3) -> float:
    """Seconds per epoch of bare optimizer steps (gradients already there) on ``module``."""
    from scgen_ablation.training import make_optimizer

    for p in module.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = make_optimizer(module, config)
    steps = len(batches_of(n_cells, batch_size))
    timings = []
    for _ in range(repeats + 1):
        synchronize(device)
        tic = time.perf_counter()
        for _ in range(steps):
            optimizer.step()
        synchronize(device)
        timings.append(time.perf_counter() - tic)
    return float(np.median(timings[1:]))


def measure(adata, preset_name: str, args, fields: dict) -> dict:
    import scgen_ablation as sa
    from scgen_ablation.model import ScGenModule, pick_device

    config = sa.preset(preset_name, **fields, epochs=args.epochs, batch_size=args.batch_size,
                       validation_fraction=0.0, early_stopping_patience=None, device=args.device)
    model = sa.train(adata, config, progress=False)
    seconds = [h["seconds"] for h in model.history]
    per_epoch = float(np.median(seconds[1:] if len(seconds) > 1 else seconds))
    last = float(np.median(seconds[-10:]))  # where denormals would have built up
    device = pick_device(args.device)
    module = ScGenModule(adata.n_vars, config).to(device)
    sizes = [(m.in_features, m.out_features) for m in module.modules()
             if isinstance(m, torch.nn.Linear)]
    products = matmul_floor(sizes, adata.n_obs, args.batch_size, device)
    steps = optimizer_floor(module, adata.n_obs, args.batch_size, config, device)
    return {"preset": preset_name, "device": device.type, "s_per_epoch": per_epoch, "last": last,
            "matmul_floor": products, "optimizer_floor": steps, "floor": products + steps,
            "ratio": per_epoch / (products + steps), "ratio_matmul_only": per_epoch / products}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="kang", help="a data.DATASETS name or an .h5ad path")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--presets", nargs="*", default=["paper", "kang_picks"])
    parser.add_argument("--no-flush", action="store_true",
                        help="train without flushing denormals (what training did before)")
    args = parser.parse_args(argv)
    if args.no_flush:
        torch.set_flush_denormal = lambda mode: False  # training's call becomes a no-op
    if args.threads:
        torch.set_num_threads(args.threads)

    import scgen_ablation as sa

    from scgen_ablation import data

    fields = {"dataset": args.dataset, **data.dataset_fields(args.dataset)}  # keys, preprocessing
    adata = data.load_for(sa.preset("paper", **fields))
    rows = [measure(adata, name, args, fields) for name in args.presets]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    name = torch.cuda.get_device_name() if rows[0]["device"] == "cuda" else "CPU"
    print(f"data     {Path(adata.uns['source_file']).name}, {adata.n_obs} cells x {adata.n_vars} genes")
    print(f"device   {name}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size}, median of epochs 2-{args.epochs}")
    print(f"{'preset':<12} {'s/epoch':>8} {'matmuls':>8} {'adam':>8} {'floor':>8} {'ratio':>6} "
          f"{'(matmuls only)':>15} {'last 10 epochs':>15}")
    for r in rows:
        print(f"{r['preset']:<12} {r['s_per_epoch']:8.3f} {r['matmul_floor']:8.3f} "
              f"{r['optimizer_floor']:8.3f} {r['floor']:8.3f} {r['ratio']:5.2f}x "
              f"{r['ratio_matmul_only']:14.2f}x {r['last']:14.3f}s")
    if args.no_flush:
        print("denormals NOT flushed (--no-flush)")
    print(f"peak memory {peak_mib:.0f} MiB (process RSS)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
