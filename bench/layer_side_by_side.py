#!/usr/bin/env python3
"""Per-layer side by side, kiln vs PyTorch: forward and backward time of every conv2d / linear layer of one
training step, on the same model, batch and device.

  /usr/bin/python3 bench/layer_side_by_side.py --kiln build/kiln --model alexnet --device cpu \
      --batch-size 16 --steps 3 [--threads N]
  /usr/bin/python3 bench/layer_side_by_side.py --model mlp --batch-size 128          # 100 steps
  /usr/bin/python3 bench/layer_side_by_side.py --model alexnet --device cuda      # batch 256, 20 steps

kiln side: runs `kiln bench --model M --batch-size B --image-size S --classes C --device D --steps N` and
parses its per-layer table (the rows "features.0 conv2d", "classifier.1 linear", "0 linear", ...; 5 warm-up
steps, then the mean over N steps).

PyTorch side: the same layout (alexnet: torchvision.models.AlexNet(num_classes=C), ReLU in place as
torchvision has it; mlp: Sequential(Linear(784,512), ReLU, Linear(512,256), ReLU, Linear(256,C)) on the
flattened 1x28x28 input), random input already on the device, cross-entropy, SGD (lr 0.01, momentum 0.9),
zero_grad(set_to_none=True), float32 with TF32 off, cudnn.benchmark on. --warmup steps (default 5, as kiln),
then the mean over --steps steps. The row names are "<module path> <class name, lower case>", as kiln's.

How the hooks attribute time (PyTorch side)
  forward:  a forward pre-hook and a forward hook on the Conv2d / Linear module; the region is the module's
            forward call (conv + bias, or addmm).
  backward: in the forward hook the script takes the output's autograd node (ConvolutionBackward0 for a
            conv, AddmmBackward0 for a linear on a 2-D input) and registers a pre-hook on it (fires when the
            gradient wrt the layer's output has arrived and the node is about to run = backward start) and a
            post-hook (fires once the node has produced the gradients wrt input, weight and bias = backward
            end). So a layer's backward is that one node: grad wrt input (skipped by both sides for the first
            layer, whose input needs no gradient), grad wrt weight and the bias gradient (inside
            ConvolutionBackward0; for addmm the reduction of the broadcast bias gradient, which the engine
            does before the post-hook). Not included: the AccumulateGrad nodes that land the gradients in
            .grad (with set_to_none=True they only take the buffer over) and the ReLU / pooling / dropout
            nodes in between; kiln, likewise, times "accumulate_grad", relu, pooling etc. as rows of their
            own, and its conv2d / linear "bwd" rows are the autograd nodes recorded under that layer (the
            layer's matmul / convolution and its bias gradient).
  Why not Module.register_full_backward_hook (+ a tensor hook on the output)? In PyTorch 1.13 it wraps the
  module's output in a BackwardHookFunction view, and torchvision's ReLU(inplace=True) that follows every
  conv / hidden linear then fails ("... is a view and is being modified inplace"); and for the first layer,
  whose input needs no gradient, that hook fires when the gradient wrt the *output* arrives, i.e. at the
  start of the layer's backward, not its end. The node hooks have neither problem. (A linear on an input of
  more than 2 dimensions is several autograd nodes; only the last would be timed. Not the case here.)
  CPU: time.perf_counter() in the hooks. CUDA: torch.cuda.Event(enable_timing=True) recorded in the hooks
  on the current stream (the backward hooks run on the autograd device thread, whose current stream is the
  one the node runs on), read after torch.cuda.synchronize() at the end of every step; that is what kiln
  does too (cudaEvent pairs, read at the end of the step). Event times are GPU time between the two
  record points, so they include any idle gap if the host falls behind the GPU (small layers, small
  batches), on both sides.
  The hooks cost a few microseconds of Python per region, which shows in tiny layers (the mlp's last one).

FLOPs (the same numbers for both sides, from the shapes seen in the forward hooks): conv
2*N*K*P*Q*(C/g)*R*S, linear 2*N*in*out; backward counted as 2x the forward (as kiln does, also for the
first layer, whose input gradient neither side computes). TF/s column = 3*forward FLOPs / (fwd+bwd time).

Threads: --threads N sets torch.set_num_threads(N) and runs kiln with OMP_NUM_THREADS=N and
OPENBLAS_NUM_THREADS=N. Without it each side keeps its own default, which need not agree (the header shows
PyTorch's count; kiln's is the OpenMP/OpenBLAS default of its process).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import torch
import torch.nn as nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One row of kiln's profile table (src/core/profile.cpp table()):
#   "%-34s %9.3f %9.3f %9.3f %6.1f%% %9s %9s"  name, fwd ms, bwd ms, total ms, share, fwd TF/s, bwd TF/s
ROW_RE = re.compile(r"^(?P<name>\S.*?)\s+(?P<fwd>-?\d+\.\d+)\s+(?P<bwd>-?\d+\.\d+)\s+(?P<total>-?\d+\.\d+)\s+"
                    r"(?P<share>-?\d+\.\d+)%\s+(?P<ftf>\S+)\s+(?P<btf>\S+)\s*$")
STEP_RE = re.compile(r"measured step: ([0-9.]+) ms")
TIMED = ("conv2d", "linear")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", default=None, help="kiln binary (default: build/kiln, else build-cpu/kiln)")
    ap.add_argument("--model", choices=("alexnet", "mlp"), default="alexnet")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (both sides)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="default: alexnet 16 on cpu, 256 on cuda; mlp 128")
    ap.add_argument("--image-size", type=int, default=None, help="alexnet input size (default 224); mlp: 28")
    ap.add_argument("--classes", type=int, default=None, help="default: alexnet 1000, mlp 10")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: alexnet 3 on cpu, 20 on cuda; mlp 100)")
    ap.add_argument("--warmup", type=int, default=5, help="PyTorch warm-up steps (kiln always does 5)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for both sides (default: each its own)")
    ap.add_argument("--show-kiln", action="store_true", help="also print kiln's own table")
    ap.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    a = ap.parse_args()
    cuda = a.device.startswith("cuda")
    if a.batch_size is None:
        a.batch_size = 128 if a.model == "mlp" else (256 if cuda else 16)
    if a.steps is None:
        a.steps = 100 if a.model == "mlp" else (20 if cuda else 3)
    if a.image_size is None:
        a.image_size = 28 if a.model == "mlp" else 224
    if a.classes is None:
        a.classes = 10 if a.model == "mlp" else 1000
    if a.model == "mlp" and a.image_size != 28:
        ap.error("the mlp takes 1x28x28 inputs (784 features); leave --image-size out")
    if a.batch_size < 1 or a.steps < 1 or a.warmup < 0 or a.threads < 0:
        ap.error("--batch-size and --steps must be >= 1, --warmup and --threads >= 0")
    if a.kiln is None:
        for c in ("build/kiln", "build-cpu/kiln"):
            if os.access(os.path.join(REPO, c), os.X_OK):
                a.kiln = os.path.join(REPO, c)
                break
        else:
            ap.error("no kiln binary in build/ or build-cpu/ (./kiln.sh build); pass --kiln PATH")
    elif not os.access(a.kiln, os.X_OK):
        ap.error("--kiln %s: not an executable file" % a.kiln)
    return a


# ---------------------------------------------------------------- kiln side

def run_kiln(a):
    cmd = [a.kiln, "bench", "--model", a.model, "--batch-size", str(a.batch_size), "--image-size",
           str(a.image_size), "--classes", str(a.classes), "--device", a.device, "--steps", str(a.steps)]
    env = dict(os.environ)
    if a.threads:
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(a.threads)
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        sys.exit("kiln failed (exit %d): %s" % (p.returncode, " ".join(cmd)))
    rows, step_ms = {}, None
    for line in p.stdout.splitlines():
        m = ROW_RE.match(line)
        if m and m.group("name") != "layer":
            rows[m.group("name")] = {
                "fwd_ms": float(m.group("fwd")), "bwd_ms": float(m.group("bwd")),
                "fwd_tflops": None if m.group("ftf") == "-" else float(m.group("ftf")),
            }
        s = STEP_RE.search(line)
        if s:
            step_ms = float(s.group(1))
    if not rows:
        sys.stderr.write(p.stdout + p.stderr)
        sys.exit("no per-layer table in kiln's output")
    return rows, step_ms, p.stdout, cmd


# ---------------------------------------------------------------- PyTorch side

def build_model(a):
    if a.model == "alexnet":
        import torchvision
        return torchvision.models.AlexNet(num_classes=a.classes)
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, a.classes))


class Timer:
    """Start/stop marks: perf_counter on the CPU, CUDA events (from a pool) on a GPU."""

    def __init__(self, cuda):
        self.cuda = cuda
        self.pool = []

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        e = self.pool.pop() if self.pool else torch.cuda.Event(enable_timing=True)
        e.record()
        return e

    def ms(self, t0, t1):
        if not self.cuda:
            return (t1 - t0) * 1000.0
        v = t0.elapsed_time(t1)
        self.pool += [t0, t1]
        return v


def layer_flops(mod, inp, out):
    if isinstance(mod, nn.Conv2d):
        # 2 * N*K*P*Q * (C/g)*R*S; the weight is [K, C/g, R, S]
        return 2.0 * out.numel() * mod.weight[0].numel()
    return 2.0 * (inp.numel() // mod.in_features) * mod.in_features * mod.out_features


def run_torch(a):
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda and dev.index is not None:
        torch.cuda.set_device(dev)  # so the events below are recorded on the model's device
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model(a).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    shape = (a.batch_size, 784) if a.model == "mlp" else (a.batch_size, 3, a.image_size, a.image_size)
    x = torch.rand(*shape, device=dev)
    y = torch.randint(0, a.classes, (a.batch_size,), device=dev)
    lossf = nn.CrossEntropyLoss()
    timer = Timer(cuda)

    order, flops = [], {}
    marks = []        # (name, phase, start, stop) of the step in flight
    totals = {}       # (name, phase) -> summed ms over the timed steps
    state = {"on": False}

    def attach(name, mod):
        def pre(m, inp):
            if state["on"]:
                m._lsbs_t0 = timer.mark()

        def post(m, inp, out):
            if name not in flops:
                order.append(name)
                flops[name] = layer_flops(m, inp[0], out)
            if not state["on"]:
                return
            marks.append((name, "fwd", m._lsbs_t0, timer.mark()))
            node = out.grad_fn  # taken now: an in-place ReLU later re-points out.grad_fn at ReluBackward0
            box = {}

            def node_pre(grad_outputs):
                box["t0"] = timer.mark()

            def node_post(grad_inputs, grad_outputs):
                marks.append((name, "bwd", box.pop("t0"), timer.mark()))

            node.register_prehook(node_pre)
            node.register_hook(node_post)

        mod.register_forward_pre_hook(pre)
        mod.register_forward_hook(post)

    for path, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            attach("%s %s" % (path, type(mod).__name__.lower()), mod)

    def step():
        loss = lossf(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    state["on"] = True
    step_total = 0.0
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        step_total += (time.perf_counter() - t0) * 1000.0
        for name, phase, s, e in marks:
            totals[(name, phase)] = totals.get((name, phase), 0.0) + timer.ms(s, e)
        marks.clear()
    state["on"] = False
    rows = {n: {"fwd_ms": totals.get((n, "fwd"), 0.0) / a.steps, "bwd_ms": totals.get((n, "bwd"), 0.0) / a.steps,
                "fwd_flops": flops[n]} for n in order}
    return order, rows, step_total / a.steps, torch.get_num_threads()


# ---------------------------------------------------------------- table

def tflops(f, ms):
    return f / (ms * 1e9) if ms > 0 else float("nan")


def main():
    a = parse_args()
    kiln_rows, kiln_step, kiln_out, kiln_cmd = run_kiln(a)
    if a.show_kiln:
        print(kiln_out)
    order, torch_rows, torch_step, torch_threads = run_torch(a)

    missing = [n for n in order if n not in kiln_rows]
    extra = [n for n in kiln_rows if n.endswith(TIMED) and n not in torch_rows]
    inp = "784" if a.model == "mlp" else "3x%dx%d" % (a.image_size, a.image_size)
    print("per-layer side by side: %s, %d classes, device %s, batch %d, input %s; mean of %d steps "
          "(kiln: after 5 warm-up steps, PyTorch %s: after %d)" % (a.model, a.classes, a.device, a.batch_size,
                                                                  inp, a.steps, torch.__version__, a.warmup))
    print("threads: PyTorch %d%s; kiln %s" % (
        torch_threads, "" if a.threads else " (its default)",
        "OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=%d" % a.threads if a.threads else "its OpenMP/OpenBLAS default"))
    w = max([22] + [len(n) for n in order])
    F = "%-" + str(w) + "s" + " %10s" * 7
    R = "%-" + str(w) + "s" + " %10.3f" * 4 + " %10.2f" + " %10.3f" * 2
    hdr = F % ("layer", "kiln fwd", "torch fwd", "kiln bwd", "torch bwd",
                                                   "kiln/torch", "kiln TF/s", "torch TF/s")
    print(hdr)
    print(F % ("", "ms", "ms", "ms", "ms", "fwd+bwd", "fwd+bwd", "fwd+bwd"))
    print("-" * len(hdr))
    tot = {"kf": 0.0, "tf": 0.0, "kb": 0.0, "tb": 0.0, "flops": 0.0}
    out_rows, warnings = [], []
    for n in order:
        t = torch_rows[n]
        k = kiln_rows.get(n)
        f3 = 3.0 * t["fwd_flops"]
        tt = t["fwd_ms"] + t["bwd_ms"]
        if k is None:
            print(F % (n, "-", "%.3f" % t["fwd_ms"], "-", "%.3f" % t["bwd_ms"], "-", "-", "%.3f" % tflops(f3, tt)))
            continue
        kt = k["fwd_ms"] + k["bwd_ms"]
        # kiln's own forward FLOPs for the row should be ours: a check that the two models agree.
        if k["fwd_tflops"] and k["fwd_tflops"] >= 0.01 and k["fwd_ms"] > 0:
            kf = k["fwd_tflops"] * k["fwd_ms"] * 1e9
            if abs(kf / t["fwd_flops"] - 1) > 0.1:
                warnings.append("%s: kiln counts %.3g forward FLOPs, PyTorch's shapes give %.3g" %
                                (n, kf, t["fwd_flops"]))
        print(R % (
            n, k["fwd_ms"], t["fwd_ms"], k["bwd_ms"], t["bwd_ms"], kt / tt if tt > 0 else float("nan"),
            tflops(f3, kt), tflops(f3, tt)))
        tot["kf"] += k["fwd_ms"]; tot["kb"] += k["bwd_ms"]
        tot["tf"] += t["fwd_ms"]; tot["tb"] += t["bwd_ms"]; tot["flops"] += f3
        out_rows.append({"layer": n, "kiln_fwd_ms": k["fwd_ms"], "torch_fwd_ms": t["fwd_ms"],
                         "kiln_bwd_ms": k["bwd_ms"], "torch_bwd_ms": t["bwd_ms"], "fwd_flops": t["fwd_flops"]})
    print("-" * len(hdr))
    kt, tt = tot["kf"] + tot["kb"], tot["tf"] + tot["tb"]
    print(R % (
        "total conv+linear", tot["kf"], tot["tf"], tot["kb"], tot["tb"], kt / tt if tt > 0 else float("nan"),
        tflops(tot["flops"], kt), tflops(tot["flops"], tt)))
    if kiln_step:
        print("whole training step: %.3f ms kiln, %.3f ms PyTorch (with the hooks), ratio %.2f; conv+linear "
              "share of it: kiln %.0f%%, PyTorch %.0f%%" % (kiln_step, torch_step, kiln_step / torch_step,
                                          100 * kt / kiln_step, 100 * tt / torch_step))
    for n in missing:
        warnings.append("%s: no kiln row" % n)
    for n in extra:
        warnings.append("%s: kiln row without a PyTorch layer" % n)
    for w in warnings:
        print("warning: " + w)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "device": a.device, "batch": a.batch_size, "steps": a.steps,
                       "classes": a.classes, "image_size": a.image_size, "torch_threads": torch_threads,
                       "threads": a.threads or None, "kiln_cmd": kiln_cmd, "kiln_step_ms": kiln_step,
                       "torch_step_ms": torch_step, "rows": out_rows}, f, indent=1)


if __name__ == "__main__":
    main()
