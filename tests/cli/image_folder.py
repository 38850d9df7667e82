#!/usr/bin/env python3
"""Writes PNG fixtures for the CLI tests with the standard library only (zlib), so no imaging
package is needed.

  image_folder.py png FILE W H [CHANNELS [BITS [SEED]]]   one PNG of random pixels
  image_folder.py folder DIR CLASS[,CLASS...] PER_CLASS [W H]   DIR/<class>/<i>.png

Class names are taken as bytes from the command line (os.fsencode), so a test can pass names that
are not UTF-8 or that hold a newline (use --classes-file FILE: one name per NUL-terminated record).
"""
import os
import random
import struct
import sys
import zlib

COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # grey, grey+alpha, RGB, RGBA


def png_bytes(width, height, channels=3, bits=8, seed=0):
    rnd = random.Random(seed)
    row_bytes = width * channels * bits // 8
    raw = b"".join(b"\x00" + bytes(rnd.randrange(256) for _ in range(row_bytes)) for _ in range(height))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bits, COLOUR_TYPE[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def write_folder(root, classes, per_class, width=80, height=60):
    seed = 0
    for name in classes:
        d = os.path.join(os.fsencode(root), name)
        os.makedirs(d, exist_ok=True)
        for i in range(per_class):
            seed += 1
            with open(os.path.join(d, b"%d.png" % i), "wb") as f:
                f.write(png_bytes(width, height, 3, 8, seed))


def main(argv):
    if argv[1] == "png":
        w, h = int(argv[3]), int(argv[4])
        channels = int(argv[5]) if len(argv) > 5 else 3
        bits = int(argv[6]) if len(argv) > 6 else 8
        seed = int(argv[7]) if len(argv) > 7 else 0
        with open(argv[2], "wb") as f:
            f.write(png_bytes(w, h, channels, bits, seed))
    elif argv[1] == "folder":
        if argv[3].startswith("--classes-file="):
            with open(argv[3].split("=", 1)[1], "rb") as f:
                classes = [c for c in f.read().split(b"\0") if c]
        else:
            classes = [os.fsencode(c) for c in argv[3].split(",")]
        size = (int(argv[5]), int(argv[6])) if len(argv) > 6 else (80, 60)
        write_folder(argv[2], classes, int(argv[4]), *size)
    else:
        sys.exit("usage: image_folder.py png|folder ...")


if __name__ == "__main__":
    main(sys.argv)
