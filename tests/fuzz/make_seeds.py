#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (tests/fuzz/seeds/<fuzzer>/) and dictionaries (<fuzzer>.dict)
with the standard library only. The files are committed; rerun this after changing it:

  python3 tests/fuzz/make_seeds.py

A seed is a small valid input (and a few near misses) from which libFuzzer's mutations start, so
that the first seconds are spent past the magic numbers. JPEG seeds cannot be written without an
encoder: seeds/image/jpeg-* were made once with libjpeg-turbo's cjpeg (baseline, -progressive,
-grayscale, -restart 1 -optimize) from a 12x9 gradient, and are kept as they are.
"""
import gzip
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from image_folder import png_bytes  # noqa: E402  (tests/cli/image_folder.py)


def write(fuzzer, name, data):
    folder = os.path.join(HERE, "seeds", fuzzer)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def idx_bytes(dims, fill=7):
    n = 1
    for d in dims:
        n *= d
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes([fill]) * n


def idx_seeds():
    # fuzz_idx: the first byte is the mode (even: the file as is, odd: gzip-compressed by the fuzzer).
    write("idx", "labels-plain", b"\x00" + idx_bytes([5]))
    write("idx", "images-plain", b"\x00" + idx_bytes([2, 3, 4]))
    write("idx", "images-compress", b"\x01" + idx_bytes([3, 2, 2]))
    write("idx", "empty-dim", b"\x00" + idx_bytes([0, 28, 28]))
    write("idx", "labels-gz", b"\x00" + gzip.compress(idx_bytes([6]), mtime=0))
    write("idx", "images-gz", b"\x00" + gzip.compress(idx_bytes([2, 5, 5]), mtime=0))
    write("idx", "two-gz-members", b"\x00" + gzip.compress(idx_bytes([4])[:6], mtime=0)
          + gzip.compress(idx_bytes([4])[6:], mtime=0))
    write("idx", "float-type", b"\x00" + bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + b"\0\0\0\0")


def safetensors_bytes(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    f32 = struct.pack("<6f", *range(6))
    write("safetensors", "one-f32", safetensors_bytes({"w": ("F32", [2, 3], f32)}))
    write("safetensors", "checkpoint-like", safetensors_bytes(
        {"fc1.weight": ("F32", [2, 2], f32[:16]), "fc1.bias": ("F32", [2], f32[:8]),
         "step": ("I64", [], struct.pack("<q", 3)), "order": ("I32", [2], struct.pack("<2i", 1, 0))},
        {"format": "kiln", "kiln.config": json.dumps({"arch": "mlp", "hidden": [2]}), "epoch": "1"}))
    write("safetensors", "all-dtypes", safetensors_bytes(
        {"a": ("U8", [3], b"\1\2\3"), "b": ("F16", [1], b"\0\x3c"), "c": ("BF16", [1], b"\x80\x3f"),
         "d": ("I64", [1], struct.pack("<q", -1)), "e": ("I32", [0], b"")}))
    write("safetensors", "metadata-only", safetensors_bytes({}, {"note": "nothing else"}))
    write("safetensors", "bad-offsets", safetensors_bytes({"w": ("F32", [2], f32[:8])})[:-4])


def bmp_bytes(width, height):
    row = (width * 3 + 3) & ~3
    pixels = b"".join(bytes((x * 40 + y * 7) & 255 for x in range(width * 3)) + b"\0" * (row - width * 3)
                      for y in range(height))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info)) + info + pixels


def pgm_bytes(width, height):
    return b"P5\n%d %d\n255\n" % (width, height) + bytes((i * 13) & 255 for i in range(width * height))


# The smallest GIF (one transparent pixel), well known for its 43 bytes.
GIF_1X1 = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
           b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def image_seeds():
    # fuzz_image: the first byte picks channels, transform and output size; the rest is the file.
    for i, (w, h, c, bits) in enumerate([(9, 7, 3, 8), (5, 11, 1, 8), (6, 6, 4, 8), (4, 3, 2, 16)]):
        write("image", "png-%dx%dx%d-%d" % (w, h, c, bits), bytes([i * 5]) + png_bytes(w, h, c, bits, seed=i))
    write("image", "bmp-7x5", b"\x03" + bmp_bytes(7, 5))
    write("image", "pgm-6x4", b"\x02" + pgm_bytes(6, 4))
    write("image", "gif-1x1", b"\x01" + GIF_1X1)


CLI_LINES = [
    ["train", "mnist", "--epochs", "1"],
    ["train", "--model", "mlp", "--hidden", "256,128", "--lr", "0.1", "--batch-size", "64", "--out", "runs/x"],
    ["train", "--dataset", "imagefolder", "--data", "d", "--image-size", "64", "--channels", "1", "--workers", "2"],
    ["train", "--model", "alexnet", "--optimizer", "sgd", "--momentum", "0.9", "--nesterov", "--schedule", "step",
     "--step-epochs", "2", "--gamma", "0.5", "--warmup-epochs", "1", "--weight-decay", "5e-4"],
    ["train", "--resume", "--out", "runs/x", "--epochs", "3"],
    ["bench", "--model", "mlp", "--steps", "5", "--warmup", "1", "--batch-size", "32"],
    ["bench", "--image-size", "32", "--channels", "3", "--classes", "10", "--device", "cpu"],
    ["bench", "--loader-only", "folder", "--workers", "4"],
    ["bench", "--kernels", "--elements", "65536", "--repeat", "2", "--filter", "relu", "--markdown"],
    ["eval", "--checkpoint", "m.safetensors", "--dataset", "fashion-mnist", "--batch-size", "100"],
    ["predict", "--checkpoint", "m.safetensors", "a.png", "b.jpg", "--top-k", "3", "--json"],
    ["info"],
    ["--help"],
]


def cli_seeds():
    for i, line in enumerate(CLI_LINES):
        write("cli", "%02d-%s" % (i, line[0].lstrip("-")), b"\0".join(a.encode() for a in line))


def dictionaries():
    tokens = {
        "safetensors": ['"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', '"F32"', '"F16"', '"BF16"', '"I32"',
                        '"I64"', '"U8"', '"F64"', '[]', '[0,0]', '{}', '"kiln.config"', '-1', '18446744073709551615'],
        "idx": ["\\x00\\x00\\x08\\x01", "\\x00\\x00\\x08\\x03", "\\x1f\\x8b\\x08\\x00", "\\xff\\xff\\xff\\xff"],
        "image": ["\\x89PNG\\x0d\\x0a\\x1a\\x0a", "IHDR", "IDAT", "IEND", "PLTE", "tRNS", "\\xff\\xd8\\xff", "\\xff\\xc0",
                  "\\xff\\xc2", "\\xff\\xc4", "\\xff\\xda", "\\xff\\xdb", "\\xff\\xd9", "BM", "GIF89a", "P5", "P6", "8BPS"],
        "cli": ["train", "bench", "eval", "predict", "info", "--help", "mlp", "alexnet", "mnist", "fashion-mnist",
                "imagefolder", "cpu", "cuda", "cuda:1", "auto", "sgd", "adam", "adamw", "cosine", "step", "none",
                "resize", "center-crop", "nan", "inf", "-1", "0", "1e30", "2147483648", "9223372036854775808"]
        + ["--" + f for f in ("batch-size channels checkpoint classes data dataset device elements epochs filter gamma "
                              "groups hidden image-size json kernels loader-only lr markdown min-fraction model "
                              "momentum nesterov optimizer out profile quiet repeat resize resume schedule seed "
                              "step-epochs steps strict top-k val-data warmup warmup-epochs weight-decay workers").split()],
    }
    for name, words in tokens.items():
        with open(os.path.join(HERE, name + ".dict"), "w") as f:
            f.write("# libFuzzer dictionary of fuzz_%s (written by make_seeds.py)\n" % name)
            for w in words:
                f.write('"%s"\n' % w.replace('"', '\\"') if not w.startswith("\\") else '"%s"\n' % w)


if __name__ == "__main__":
    idx_seeds()
    safetensors_seeds()
    image_seeds()
    cli_seeds()
    dictionaries()
