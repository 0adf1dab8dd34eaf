#!/usr/bin/env python3
"""Turns bench/run.sh's results.jsonl into a Markdown table, with each
server's efficiency and latency as ratios to the `limit` server's in the
same cell.

With several rounds of a cell (ROUNDS=N), each figure is the median over
the rounds, and the ratios are taken round by round (against limit's cell
of the same round, minutes apart) and given as median and range."""
import json
import statistics
import sys
from collections import OrderedDict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by_cell = OrderedDict()
for r in rows:
    key = (r["server"], r["res"], r["cell_clients"])
    by_cell.setdefault(key, {})[r.get("round", 1)] = r["result"]


def med(results, field):
    vals = [x.get(field) for x in results if x.get(field) is not None]
    return statistics.median(vals) if vals else None


def ratios(server, res, clients, field):
    """Per round: server's figure / limit's figure in the same round."""
    mine = by_cell[(server, res, clients)]
    base = by_cell.get(("limit", res, clients), {})
    out = []
    for rnd, x in mine.items():
        b = base.get(rnd, {}).get(field)
        v = x.get(field)
        if v is not None and b:
            out.append(v / b)
    return out


def fmt(v):
    return "–" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ratio(rs):
    if not rs:
        return "–"
    if len(rs) == 1:
        return f"{rs[0]:.2f}"
    return f"{statistics.median(rs):.2f} ({min(rs):.2f}–{max(rs):.2f})"


rounds = max(len(v) for v in by_cell.values()) if by_cell else 0
if rounds > 1:
    print(f"Medians over {rounds} rounds; ratios to limit round by round: median (range).\n")
print("| server | res | clients | failed | per-client fps min / median | agg fps | "
      "frames per server CPU-s | × limit | latency p50 / p99 ms | p99 × limit | "
      "p99 from 2 s on | TTFF max ms | RSS MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (server, res, clients), per_round in by_cell.items():
    xs = list(per_round.values())
    rss = med(xs, "server_rss_peak_kb")
    fps_min, fps_med = med(xs, "fps_per_client_min"), med(xs, "fps_per_client_median")
    print(f"| {server} | {res} | {clients} | {max(x['clients_failed'] for x in xs)} | "
          f"{fps_min:.1f} / {fps_med:.1f} | {fmt(med(xs, 'fps_aggregate'))} | "
          f"{fmt(med(xs, 'frames_per_server_cpu_s'))} | "
          f"{fmt_ratio(ratios(server, res, clients, 'frames_per_server_cpu_s'))} | "
          f"{fmt(med(xs, 'latency_ms_p50'))} / {fmt(med(xs, 'latency_ms_p99'))} | "
          f"{fmt_ratio(ratios(server, res, clients, 'latency_ms_p99'))} | "
          f"{fmt(med(xs, 'latency_ms_p99_settled'))} | "
          f"{fmt(med(xs, 'ttff_ms_max'))} | {fmt(rss / 1024 if rss else None)} |")
