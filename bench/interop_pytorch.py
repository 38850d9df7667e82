#!/usr/bin/env python3
"""Weight interoperability between kiln and PyTorch, both ways, for the MLP and AlexNet.

    /usr/bin/python3 bench/interop_pytorch.py --kiln build/kiln [--data data/mnist] [--keep DIR]

Checks (each prints one row of the summary; the script exits 1 if any fails):
  1. MLP kiln -> PyTorch     kiln trains 1 epoch on MNIST; its model.safetensors loads strict into
                             nn.Sequential(Linear(784,512), ReLU, Linear(512,256), ReLU, Linear(256,10));
                             PyTorch's test accuracy (and mean loss) equals what `kiln eval` prints, and
                             PyTorch's softmax on 28x28 digit PNGs equals `kiln predict --json` within 1e-5.
  2. MLP PyTorch -> kiln     a PyTorch MLP (seed 0, 100 SGD steps) saved weights-only; `kiln eval`
                             accuracy/loss equal PyTorch's; `kiln predict --json` on 28x28 PNGs of
                             MNIST test digits (no resize: kiln's area average at scale 1 is the identity)
                             gives PyTorch's softmax within 1e-5.
  3. AlexNet PyTorch -> kiln torchvision AlexNet(num_classes=10), seed 0, eval mode, saved weights-only;
                             `kiln predict --json` on 256x256 RGB PNGs. kiln's evaluation transform for a
                             224 model is "shorter side to 224*8/7 = 256, centre crop 224": at 256x256 the
                             resize is the identity and the crop is img[:, 16:240, 16:240], exactly.
  4. AlexNet kiln -> PyTorch kiln trains AlexNet 1 epoch at --image-size 64 on a generated 3-class
                             image folder; model.safetensors loads strict into torchvision
                             AlexNet(num_classes=3). Inputs: 512x512 PNGs. kiln's transform for a 64 model
                             is "shorter side to 64*8/7, centre crop 64", i.e. scale 512/(64*8/7) = 7
                             exactly (also in double precision): the crop is [32:480] and every output
                             pixel is the area average of one 7x7 block. The images are made of 7x7
                             constant blocks over that region (a 64x64 image upscaled by 7, nearest,
                             padded with noise), so kiln's input is exactly the 64x64 base image, which
                             PyTorch gets directly. `kiln predict` and `kiln eval --dataset imagefolder`
                             are both compared.
  3 also runs `kiln eval --dataset imagefolder` on its PNGs, and repeats everything with the last layer
  scaled x300 (a peaked softmax).

Probabilities are also compared as centred log-probabilities (= centred logits): with random
initialisation AlexNet's softmax is almost uniform, so |dp| alone says little; the logit comparison
shows the agreement relative to the logits' actual spread.

No `safetensors` package is needed: a small reader/writer for the format is defined below.
"""
import argparse
import gzip
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

try:
    from torchvision.models import AlexNet as _TVAlexNet

    def alexnet(num_classes):
        return _TVAlexNet(num_classes=num_classes)

    ALEXNET_SOURCE = "torchvision.models.AlexNet"
except ImportError:  # torchvision's layout, by hand (same module names, so the same state_dict keys)

    class _AlexNet(nn.Module):
        def __init__(self, num_classes=1000, dropout=0.5):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2))
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
                nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                nn.Linear(4096, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def alexnet(num_classes):
        return _AlexNet(num_classes=num_classes)

    ALEXNET_SOURCE = "hand-written torchvision layout"

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

# ---- safetensors, pure Python --------------------------------------------------------------------

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64, "U8": np.uint8}
_NP_TO_ST = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


def save_safetensors(path, tensors, metadata=None):
    """tensors: {name: torch.Tensor}; writes 8-byte LE header length, JSON header (space-padded to a
    multiple of 8), then the raw little-endian data in header order."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        b = a.tobytes()
        header[name] = {"dtype": _NP_TO_ST[np.dtype(a.dtype.name)], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """Returns ({name: torch.Tensor}, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = memoryview(raw)[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = np.dtype(_ST_DTYPES[e["dtype"]]).newbyteorder("<")
        a = np.frombuffer(data[b:end], dtype=dt).reshape(e["shape"])
        out[name] = torch.from_numpy(a.astype(a.dtype.newbyteorder("="), copy=True))
    return out, metadata


# ---- helpers -------------------------------------------------------------------------------------

def read_idx(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            data = (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
            ndim = data[3]
            dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
            return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    raise SystemExit(f"missing {path}")


def run(cmd, timeout=600):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}{p.stderr}")
    return p.stdout, time.time() - t0


def kiln_eval(kiln, ckpt, dataset, data):
    out, _ = run([kiln, "eval", "--checkpoint", ckpt, "--dataset", dataset, "--data", data, "--device", "cpu"])
    m = re.search(r"\((\d+) images\): loss ([-\d.naif]+) accuracy ([\d.]+)%", out)
    if not m:
        raise RuntimeError(f"cannot parse kiln eval output: {out!r}")
    return int(m.group(1)), float(m.group(2)), float(m.group(3))


def kiln_predict(kiln, ckpt, paths):
    """{path: (class_names in file order, probabilities as float64 array, top)}"""
    out, _ = run([kiln, "predict", "--json", "--checkpoint", ckpt, "--device", "cpu", *paths])
    res = {}
    for line in out.splitlines():
        if not line.strip():
            continue
        obj = json.loads(line, object_pairs_hook=lambda kv: dict(kv))
        names = list(obj["probabilities"].keys())
        res[obj["image"]] = (names, np.array([obj["probabilities"][k] for k in names], np.float64), obj["top"])
    if set(res) != set(paths):
        raise RuntimeError(f"kiln predict printed {sorted(res)} for {paths}")
    return res


def compare_probs(kiln_res, paths, torch_logp, class_names):
    """Max |dp| and max |d centred log p| between kiln's JSON and PyTorch's log_softmax rows; also the
    logits' spread (max - min of centred log p) and whether the top classes agree."""
    max_dp = max_dlogit = spread = 0.0
    top_ok = True
    for i, p in enumerate(paths):
        names, kp, top = kiln_res[p]
        if names != class_names:
            raise RuntimeError(f"kiln class names {names} != expected {class_names}")
        tl = torch_logp[i].double().numpy()
        tp = np.exp(tl)
        max_dp = max(max_dp, float(np.abs(kp - tp).max()))
        kl = np.log(np.maximum(kp, 1e-300))
        kc, tc = kl - kl.mean(), tl - tl.mean()
        max_dlogit = max(max_dlogit, float(np.abs(kc - tc).max()))
        spread = max(spread, float(tc.max() - tc.min()))
        top_ok &= top == class_names[int(np.argmax(tp))] or np.sort(tp)[-1] - np.sort(tp)[-2] < 1e-6
    return max_dp, max_dlogit, spread, top_ok


def digit_pngs(a, tmp, count=8):
    """28x28 grey PNGs of the first `count` MNIST test digits (kiln's resize is then the identity)."""
    raw = read_idx(f"{a.data}/t10k-images-idx3-ubyte")[:count]
    paths = []
    for i, img in enumerate(raw):
        p = os.path.join(tmp, f"digit{i}.png")
        if not os.path.exists(p):
            Image.fromarray(img, "L").save(p)
        assert np.array_equal(np.asarray(Image.open(p)), img)
        paths.append(p)
    return raw, paths


def mlp():
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))


def mnist_input(u8):
    return ((torch.from_numpy(np.array(u8)).float() / 255 - MNIST_MEAN) / MNIST_STD).reshape(len(u8), -1)


def imagenet_input(u8_chw):  # uint8 [N, 3, H, W] -> normalised float
    return (torch.from_numpy(np.array(u8_chw)).float() / 255 - IMAGENET_MEAN) / IMAGENET_STD


@torch.no_grad()
def torch_eval(model, x, y, batch=1000):
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch])
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
        loss += float(F.cross_entropy(logits.double(), y[i:i + batch], reduction="sum"))
    return 100.0 * correct / len(x), loss / len(x)


def smooth_rgb(rng, size, cells):
    """A random smooth RGB image (uint8 HxWx3): a cells x cells random grid, bicubic-upscaled."""
    small = Image.fromarray(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8), "RGB")
    return np.asarray(small.resize((size, size), Image.BICUBIC))


# ---- checks --------------------------------------------------------------------------------------

ROWS = []


def row(name, ok, detail, seconds):
    ROWS.append((name, ok, detail, seconds))
    print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail} ({seconds:.1f}s)", flush=True)


def check_mlp_kiln_to_torch(a, tmp, mnist):
    t0 = time.time()
    out = os.path.join(tmp, "mlp-kiln")
    run([a.kiln, "train", "--epochs", "1", "--device", "cpu", "--dataset", "mnist", "--data", a.data,
         "--out", out, "--quiet"])
    path = os.path.join(out, "model.safetensors")
    sd, md = load_safetensors(path)
    model = mlp()
    model.load_state_dict(sd, strict=True)
    model.eval()
    x, y = mnist
    t_acc, t_loss = torch_eval(model, x, y)
    n, k_loss, k_acc = kiln_eval(a.kiln, path, "mnist", a.data)
    raw, paths = digit_pngs(a, tmp)
    with torch.no_grad():
        logp = F.log_softmax(model(mnist_input(raw)).double(), 1)
    dp, dl, spread, top_ok = compare_probs(kiln_predict(a.kiln, path, paths), paths, logp, [str(k) for k in range(10)])
    ok = (n == len(y) and f"{t_acc:.2f}" == f"{k_acc:.2f}" and abs(t_loss - k_loss) <= 1e-4 + 5e-5
          and md.get("arch") == "mlp" and top_ok and dp <= 1e-5)
    row("1. MLP kiln -> PyTorch", ok,
        f"strict load of {sorted(sd)}; test acc kiln {k_acc:.2f}% / torch {t_acc:.2f}%; "
        f"loss kiln {k_loss:.4f} / torch {t_loss:.4f}; predict on {len(paths)} PNGs: max|dp| {dp:.2e} (tol 1e-5), "
        f"max|dlogit| {dl:.2e} (logit spread {spread:.1f})", time.time() - t0)


def check_mlp_torch_to_kiln(a, tmp, mnist, mnist_train):
    t0 = time.time()
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    xtr, ytr = mnist_train
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        idx = torch.randint(0, len(xtr), (64,), generator=g)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    path = os.path.join(tmp, "mlp-torch.safetensors")
    save_safetensors(path, model.state_dict(), {"format": "pt"})
    x, y = mnist
    t_acc, t_loss = torch_eval(model, x, y)
    n, k_loss, k_acc = kiln_eval(a.kiln, path, "mnist", a.data)
    eval_ok = n == len(y) and f"{t_acc:.2f}" == f"{k_acc:.2f}" and abs(t_loss - k_loss) <= 1e-4 + 5e-5

    # predict: 28x28 grey PNGs of the first 8 test digits (no resize, so no ambiguity)
    raw, paths = digit_pngs(a, tmp)
    with torch.no_grad():
        logp = F.log_softmax(model(mnist_input(raw)).double(), 1)
    res = kiln_predict(a.kiln, path, paths)
    dp, dl, spread, top_ok = compare_probs(res, paths, logp, [str(k) for k in range(10)])
    ok = eval_ok and top_ok and dp <= 1e-5
    row("2. MLP PyTorch -> kiln", ok,
        f"test acc kiln {k_acc:.2f}% / torch {t_acc:.2f}%; loss kiln {k_loss:.4f} / torch {t_loss:.4f}; "
        f"predict on {len(paths)} PNGs: max|dp| {dp:.2e} (tol 1e-5), max|dlogit| {dl:.2e} (logit spread {spread:.1f})",
        time.time() - t0)


def check_alexnet_torch_to_kiln(a, tmp):
    t0 = time.time()
    torch.manual_seed(0)
    model = alexnet(10).eval()
    path = os.path.join(tmp, "alexnet-torch.safetensors")
    save_safetensors(path, model.state_dict(), {"format": "pt"})
    # A randomly initialised AlexNet's softmax is nearly uniform (logits within ~0.04 of each other), so
    # also a second file, the same weights with the last layer scaled x300: a peaked softmax that makes
    # the |dp| tolerance meaningful.
    sharp = {k: (v * 300 if k.startswith("classifier.6.") else v) for k, v in model.state_dict().items()}
    sharp_model = alexnet(10).eval()
    sharp_model.load_state_dict(sharp, strict=True)
    sharp_path = os.path.join(tmp, "alexnet-torch-sharp.safetensors")
    save_safetensors(sharp_path, sharp, {"format": "pt"})

    rng = np.random.default_rng(3)
    folder = os.path.join(tmp, "smooth-test")
    imgs, labels, paths = [], [], []
    for i in range(6):
        img = smooth_rgb(rng, 256, 4 + 2 * i)  # HxWx3 uint8
        os.makedirs(os.path.join(folder, str(i % 3)), exist_ok=True)
        p = os.path.join(folder, str(i % 3), f"smooth{i}.png")
        Image.fromarray(img, "RGB").save(p)
        imgs.append(img.transpose(2, 0, 1)[:, 16:240, 16:240])  # kiln's centre crop at 256x256
        labels.append(i % 3)
        paths.append(p)
    x = imagenet_input(np.stack(imgs))
    names = [str(k) for k in range(10)]
    details, ok = [], True
    for tag, m, f in (("seed-0 init", model, path), ("last layer x300", sharp_model, sharp_path)):
        with torch.no_grad():
            logits = m(x).double()
        logp = F.log_softmax(logits, 1)
        dp, dl, spread, top_ok = compare_probs(kiln_predict(a.kiln, f, paths), paths, logp, names)
        y = torch.tensor(labels)
        t_acc, t_loss = 100.0 * int((logits.argmax(1) == y).sum()) / len(y), float(F.cross_entropy(logits, y))
        n, k_loss, k_acc = kiln_eval(a.kiln, f, "imagefolder", folder)
        ok &= (top_ok and dp <= 1e-4 and dl <= 1e-3 * max(spread, 1e-3) and n == len(y)
               and f"{t_acc:.2f}" == f"{k_acc:.2f}" and abs(t_loss - k_loss) <= 1e-4 + 5e-5 * max(1.0, abs(t_loss)))
        details.append(f"{tag}: max|dp| {dp:.2e}, max|dlogit| {dl:.2e} (logit spread {spread:.3f}), "
                       f"top-1 agree {top_ok}, eval loss kiln {k_loss:.4f} / torch {t_loss:.4f}")
    row("3. AlexNet PyTorch -> kiln", ok,
        f"predict + eval on {len(paths)} 256x256 PNGs (crop [16:240]), tol |dp| 1e-4, |dlogit| 1e-3 x spread; "
        + "; ".join(details), time.time() - t0)


def check_alexnet_kiln_to_torch(a, tmp):
    t0 = time.time()
    rng = np.random.default_rng(4)
    tint = {"red": 0, "green": 1, "blue": 2}
    classes = sorted(tint)  # kiln (like torchvision's ImageFolder) numbers class folders in sorted order
    train_dir, test_dir = os.path.join(tmp, "folder-train"), os.path.join(tmp, "folder-test")
    for c, name in enumerate(classes):
        os.makedirs(os.path.join(train_dir, name))
        for i in range(8):  # 80x80: a tinted smooth image per class
            img = smooth_rgb(rng, 80, 5).astype(np.int32) // 2
            img[..., tint[name]] += 120
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(os.path.join(train_dir, name, f"{i}.png"))
    out = os.path.join(tmp, "alexnet-kiln")
    run([a.kiln, "train", "--model", "alexnet", "--dataset", "imagefolder", "--data", train_dir, "--image-size", "64",
         "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--out", out, "--quiet"])
    path = os.path.join(out, "model.safetensors")
    sd, md = load_safetensors(path)
    model = alexnet(3)
    model.load_state_dict(sd, strict=True)
    model.eval()
    names = md.get("class_names", "").split("\n")

    # 512x512 test images: a 64x64 base, nearest-upscaled x7 into [32:480], noise outside (cropped away)
    base, labels, paths = [], [], []
    for c, name in enumerate(classes):
        os.makedirs(os.path.join(test_dir, name))
        for i in range(2):
            small = smooth_rgb(rng, 64, 6).astype(np.int32) // 2
            small[..., tint[name]] += 120
            small = np.clip(small, 0, 255).astype(np.uint8)
            big = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
            big[32:480, 32:480] = small.repeat(7, 0).repeat(7, 1)
            p = os.path.join(test_dir, name, f"{i}.png")
            Image.fromarray(big, "RGB").save(p)
            base.append(small.transpose(2, 0, 1))
            labels.append(c)
            paths.append(p)
    with torch.no_grad():
        logits = model(imagenet_input(np.stack(base))).double()
    logp = F.log_softmax(logits, 1)
    res = kiln_predict(a.kiln, path, paths)
    dp, dl, spread, top_ok = compare_probs(res, paths, logp, classes)
    y = torch.tensor(labels)
    t_acc = 100.0 * int((logits.argmax(1) == y).sum()) / len(y)
    t_loss = float(F.cross_entropy(logits, y))
    n, k_loss, k_acc = kiln_eval(a.kiln, path, "imagefolder", test_dir)
    eval_ok = n == len(y) and f"{t_acc:.2f}" == f"{k_acc:.2f}" and abs(t_loss - k_loss) <= 1e-4 + 5e-5
    ok = (names == classes and md.get("arch") == "alexnet" and md.get("input") == "3,64,64" and top_ok
          and dp <= 1e-4 and dl <= 1e-3 * max(spread, 1e-3) and eval_ok)
    row("4. AlexNet kiln -> PyTorch", ok,
        f"strict load ({len(sd)} tensors, classes {names}); predict on {len(paths)} 512x512 PNGs (7x7 blocks "
        f"-> exact 64x64): max|dp| {dp:.2e} (tol 1e-4), max|dlogit| {dl:.2e} (logit spread {spread:.3f}); "
        f"eval acc kiln {k_acc:.2f}% / torch {t_acc:.2f}%, loss kiln {k_loss:.4f} / torch {t_loss:.4f}",
        time.time() - t0)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", default=os.path.join(here, "..", "build", "kiln"))
    ap.add_argument("--data", default=os.path.join(here, "..", "data", "mnist"))
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder, removed)")
    a = ap.parse_args()
    a.kiln, a.data = os.path.abspath(a.kiln), os.path.abspath(a.data)
    if not os.access(a.kiln, os.X_OK):
        raise SystemExit(f"not an executable: {a.kiln}")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    print(f"kiln {a.kiln}; torch {torch.__version__}; AlexNet from {ALEXNET_SOURCE}", flush=True)

    tmp = a.keep or tempfile.mkdtemp(prefix="kiln-interop-")
    os.makedirs(tmp, exist_ok=True)
    t_start = time.time()
    try:
        x = mnist_input(read_idx(f"{a.data}/t10k-images-idx3-ubyte"))
        y = torch.from_numpy(read_idx(f"{a.data}/t10k-labels-idx1-ubyte").astype(np.int64))
        xtr = mnist_input(read_idx(f"{a.data}/train-images-idx3-ubyte"))
        ytr = torch.from_numpy(read_idx(f"{a.data}/train-labels-idx1-ubyte").astype(np.int64))
        checks = [lambda: check_mlp_kiln_to_torch(a, tmp, (x, y)),
                  lambda: check_mlp_torch_to_kiln(a, tmp, (x, y), (xtr, ytr)),
                  lambda: check_alexnet_torch_to_kiln(a, tmp),
                  lambda: check_alexnet_kiln_to_torch(a, tmp)]
        names = ["1. MLP kiln -> PyTorch", "2. MLP PyTorch -> kiln", "3. AlexNet PyTorch -> kiln",
                 "4. AlexNet kiln -> PyTorch"]
        for name, check in zip(names, checks):
            t0 = time.time()
            try:
                check()
            except Exception as e:  # one broken direction must not hide the others
                row(name, False, f"error: {type(e).__name__}: {e}".replace("\n", " | ")[:600], time.time() - t0)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    w = max(len(r[0]) for r in ROWS)
    print(f"\nsummary ({time.time() - t_start:.0f}s)")
    print(f"{'check':<{w}}  result  seconds  detail")
    for name, ok, detail, sec in ROWS:
        print(f"{name:<{w}}  {'PASS' if ok else 'FAIL':<6}  {sec:7.1f}  {detail}")
    failed = [r for r in ROWS if not r[1]]
    print(f"\n{len(ROWS) - len(failed)}/{len(ROWS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
