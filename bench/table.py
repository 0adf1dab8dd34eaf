#!/usr/bin/env python3
"""Turns bench/run.sh's results.jsonl into a Markdown table, with each
server's efficiency as a ratio to the `limit` server's in the same cell."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
eff = {}
for r in rows:
    eff[(r["server"], r["res"], r["cell_clients"])] = r["result"].get("frames_per_server_cpu_s")

print("| server | res | clients | failed | per-client fps min / median | agg fps | "
      "frames per server CPU-s | × limit | latency p50 / p99 ms | TTFF max ms | RSS MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    x = r["result"]
    fpc = x.get("frames_per_server_cpu_s")
    base = eff.get(("limit", r["res"], r["cell_clients"]))
    ratio = f"{fpc / base:.2f}" if fpc and base else "–"
    rss = x.get("server_rss_peak_kb")
    fmt = lambda v: "–" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    print(f"| {r['server']} | {r['res']} | {r['cell_clients']} | {x['clients_failed']} | "
          f"{x['fps_per_client_min']:.1f} / {x['fps_per_client_median']:.1f} | {x['fps_aggregate']:,.0f} | "
          f"{fmt(fpc)} | {ratio} | {fmt(x.get('latency_ms_p50'))} / {fmt(x.get('latency_ms_p99'))} | "
          f"{fmt(x.get('ttff_ms_max'))} | {fmt(rss / 1024 if rss else None)} |")
