#!/usr/bin/env python3
"""Writes an ImageNet-like image folder for pipeline benchmarks: DIR/<class>/<i>.jpg, 500x375 JPEGs of
smooth random content (quality 90). Usage: make_jpeg_folder.py DIR [classes] [per_class]"""
import os, sys

import numpy as np
from PIL import Image

root = sys.argv[1]
classes = int(sys.argv[2]) if len(sys.argv) > 2 else 4
per = int(sys.argv[3]) if len(sys.argv) > 3 else 64
rng = np.random.default_rng(0)
for c in range(classes):
    os.makedirs(f"{root}/class{c}", exist_ok=True)
    for i in range(per):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
        noise = rng.integers(-20, 20, (375, 500, 3))
        arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(f"{root}/class{c}/{i}.jpg", quality=90)
print(f"wrote {classes * per} images to {root}")
