#!/usr/bin/env python3
"""PyTorch yardstick for kiln's AlexNet training step: torchvision's AlexNet layout, random data already
on the device, SGD (lr 0.01, momentum 0.9), same batch, float32 (TF32 off unless --tf32).
Prints one JSON line: {"device", "batch", "step_ms", "images_per_s", "threads"}."""
import argparse, json, time

import torch
import torch.nn as nn


def alexnet(in_ch, classes):
    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(in_ch, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2)),
        nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(),
        nn.Sequential(nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                      nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, classes)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tf32", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cudnn.benchmark = True
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = alexnet(3, a.classes).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(a.batch_size, 3, a.image_size, a.image_size, device=dev)
    y = torch.randint(0, a.classes, (a.batch_size,), device=dev)
    lossf = nn.CrossEntropyLoss()

    def step():
        loss = lossf(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) * 1000 / a.steps
    print(json.dumps({"device": a.device, "batch": a.batch_size, "step_ms": ms,
                      "images_per_s": a.batch_size * 1000 / ms, "threads": torch.get_num_threads(),
                      "tf32": a.tf32}), flush=True)


if __name__ == "__main__":
    main()
