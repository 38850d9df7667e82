#!/usr/bin/env python3
"""PyTorch yardstick for kiln's MLP epoch: same model (784-512-256-10, Kaiming-normal init), batch,
optimizer (SGD, momentum 0.9, lr 0.01), per-epoch shuffling, with the whole dataset preloaded as
normalised float tensors (PyTorch's best case: no data loading in the loop).

Prints one JSON line per epoch: {"epoch", "epoch_s", "train_loss", "test_acc"}.
"""
import argparse, gzip, json, os, struct, time

import numpy as np
import torch
import torch.nn as nn


def read_idx(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            data = (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
            ndim = data[3]
            dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
            return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    raise SystemExit(f"missing {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave default)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    norm = lambda x: ((torch.from_numpy(x.copy()).float() / 255 - 0.1307) / 0.3081).reshape(len(x), -1).to(dev)
    xtr = norm(read_idx(f"{a.data}/train-images-idx3-ubyte"))
    ytr = torch.from_numpy(read_idx(f"{a.data}/train-labels-idx1-ubyte").astype(np.int64)).to(dev)
    xte = norm(read_idx(f"{a.data}/t10k-images-idx3-ubyte"))
    yte = torch.from_numpy(read_idx(f"{a.data}/t10k-labels-idx1-ubyte").astype(np.int64)).to(dev)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)).to(dev)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    lossf = nn.CrossEntropyLoss()
    n = len(xtr)
    for epoch in range(1, a.epochs + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=dev)
        total = torch.zeros((), device=dev)
        for i in range(0, n, a.batch_size):
            idx = perm[i:i + a.batch_size]
            out = model(xtr[idx])
            loss = lossf(out, ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(json.dumps({"epoch": epoch, "epoch_s": dt, "train_loss": total.item() / n, "test_acc": acc,
                          "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
