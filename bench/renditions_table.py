#!/usr/bin/env python3
"""Prints the renditions benchmark's table from its results.jsonl."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
cells = {(r["build"], r["cell"]): r for r in rows}


def per_frame_ms(r):
    return 1000.0 * r["server_cpu_s"] / max(r["encoded"], 1)


print("## CPU per variant frame (ms), 1280x720 source at 30 fps\n")
print("| build | variant | server CPU s | frames encoded | ms/frame (net of base) | ffmpeg ms/frame | ratio to ffmpeg |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for build in sorted({r["build"] for r in rows} - {"ffmpeg"}):
    base = cells.get((build, "base"))
    for width in ("640", "320"):
        r = cells.get((build, "w" + width))
        ff = cells.get(("ffmpeg", "w" + width))
        if not (r and base and ff):
            continue
        net = 1000.0 * (r["server_cpu_s"] - base["server_cpu_s"]) / max(r["encoded"], 1)
        ffms = per_frame_ms(ff)
        print(f"| {build} | w{width} | {r['server_cpu_s']:.2f} (base {base['server_cpu_s']:.2f}) "
              f"| {r['encoded']} | {net:.2f} | {ffms:.2f} ({ff['size']}) | {net / ffms:.2f} |")
    # Both variants live: each source frame decoded once for the two.
    r = cells.get((build, "both"))
    ffs = [cells.get(("ffmpeg", w)) for w in ("w640", "w320")]
    if r and base and all(ffs):
        net = 1000.0 * (r["server_cpu_s"] - base["server_cpu_s"]) / max(r["encoded"], 1)
        ffms = 1000.0 * sum(f["server_cpu_s"] for f in ffs) / max(sum(f["encoded"] for f in ffs), 1)
        print(f"| {build} | w640 + w320 ({r.get('decoded', '?')} source decodes) "
              f"| {r['server_cpu_s']:.2f} (base {base['server_cpu_s']:.2f}) "
              f"| {r['encoded']} | {net:.2f} | {ffms:.2f} (two ffmpeg) | {net / ffms:.2f} |")

print("\n## 300 clients: CPU independent of the spread\n")
print("| build | cell | clients | server CPU s | frames encoded | median fps per client |")
print("| --- | --- | --- | --- | --- | --- |")
for build in sorted({r["build"] for r in rows} - {"ffmpeg"}):
    for cell in ("one-300", "lopsided", "spread"):
        r = cells.get((build, cell))
        if r:
            fps = "/".join(f"{x:.1f}" if x is not None else "-" for x in r["fps_per_client_median"])
            print(f"| {build} | {cell} | {r['clients']} | {r['server_cpu_s']:.2f} | {r['encoded']} | {fps} |")
    one, lop, spr = (cells.get((build, c)) for c in ("one-300", "lopsided", "spread"))
    base, w640, w320 = (cells.get((build, c)) for c in ("base", "w640", "w320"))
    if one and lop and spr and base and w640 and w320:
        encodes = (w640["server_cpu_s"] - base["server_cpu_s"]) + (w320["server_cpu_s"] - base["server_cpu_s"])
        print(f"| {build} | spread / lopsided | | {spr['server_cpu_s'] / lop['server_cpu_s']:.2f} | | |")
        print(f"| {build} | 300 on the source + the two encodes (estimate) | | "
              f"{one['server_cpu_s'] + encodes:.2f} | | |")
