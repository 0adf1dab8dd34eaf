#!/usr/bin/env python3
"""Compares a rectangle of two PNG screenshots; standard library only.

Usage: pngdiff.py A.png B.png X0 Y0 X1 Y1
Prints the share of pixels in [X0,X1) x [Y0,Y1) that differ, and how many
distinct colors A has there (a blank or broken image has almost none).
Decodes 8-bit gray/RGB/RGBA non-interlaced PNGs, which is what Chromium writes.
"""
import struct
import sys
import zlib


def decode(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, color, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 6: 4, 4: 2}.get(color)
    if depth != 8 or channels is None or interlace:
        sys.exit(f"{path}: unsupported PNG (depth {depth}, color {color}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        ftype, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 0xFF
            elif ftype == 2:
                line[x] = (line[x] + b) & 0xFF
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


def main():
    a_path, b_path = sys.argv[1], sys.argv[2]
    x0, y0, x1, y1 = map(int, sys.argv[3:7])
    wa, ha, ca, a = decode(a_path)
    wb, hb, cb, b = decode(b_path)
    if (wa, ha, ca) != (wb, hb, cb):
        sys.exit("screenshots differ in size or format")
    x1, y1 = min(x1, wa), min(y1, ha)
    differ, total, colors = 0, 0, set()
    for y in range(y0, y1):
        for x in range(x0, x1):
            pa = a[y][x * ca:(x + 1) * ca]
            pb = b[y][x * ca:(x + 1) * ca]
            total += 1
            differ += pa != pb
            colors.add(pa)
    print(f"{differ / max(total, 1):.4f} {len(colors)}")


if __name__ == "__main__":
    main()
