#!/usr/bin/env python3
"""Merges the chaos scenarios' reports (target/tmp/chaos/*.json, written by each scenario) into
chaos/report.json and the table in chaos/README.md (between the report markers), with the date
and the machine. Exits 1 when no report is found or a scenario is not valid.

usage: report.py [DIR] [--how TEXT]   (TEXT: how the run was made; default `make chaos`, release)"""
import argparse
import datetime
import json
import os
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("dir", nargs="?", default=str(root / "target" / "tmp" / "chaos"))
ap.add_argument("--how", default="`make chaos` (release build)")
args = ap.parse_args()
src = pathlib.Path(args.dir)
reports = [json.loads(p.read_text()) for p in sorted(src.glob("*.json"))]
if not reports:
    sys.exit(f"no scenario reports in {src}: run the scenarios first (make chaos)")

mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
machine = f"{os.cpu_count()} cores (nproc), {mem_gib:.0f} GiB"
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
(root / "chaos" / "report.json").write_text(
    json.dumps({"date": date, "machine": machine, "how": args.how, "scenarios": reports}, indent=2)
    + "\n"
)


def ms(v):
    return "–" if v is None else f"{v / 1000:.1f} s"


cols = [
    "lost", "regressed", "inexact", "unexpected_dlq", "missing_dlq", "unseen_events", "commits_back",
    "duplicate_events",
]
lines = [
    f"Last run: {date} on {machine}; {args.how}.",
    "",
    "| scenario | valid | produced | written | dead-lettered | "
    + " | ".join(c.replace("_", " ") for c in cols)
    + " | RPO | max lag | recovery | failover | other figures |",
    "|" + "---|" * (10 + len(cols)),
]
for r in reports:
    a = r["anomalies"]
    lines.append(
        f"| {r['scenario']} | {'yes' if r['valid'] else '**no**'} | {r['produced']} | "
        f"{int(r['relay_outcomes'].get('written', 0))} | {r['dead_lettered']} | "
        + " | ".join(str(a.get(c, {}).get("count", 0)) for c in cols)
        + f" | {r['rpo']} | {r['max_lag']} | {ms(r['recovery_ms'])} | {ms(r['failover_ms'])} | "
        + ", ".join(f"{k} {v:g}" for k, v in sorted(r.get("figures", {}).items()))
        + " |"
    )
table = "\n".join(lines)

readme = root / "chaos" / "README.md"
text = readme.read_text()
start, end = "<!-- report -->", "<!-- /report -->"
if start not in text or end not in text:
    sys.exit(f"{readme} lacks the {start} … {end} markers")
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")
print(table)
bad = [r["scenario"] for r in reports if not r["valid"]]
if bad:
    sys.exit(f"invalid: {', '.join(bad)}")
