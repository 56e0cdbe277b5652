"""The daily operation over many days: ``soilcast daily`` once per delivered day, as a scheduler runs it.

Run in a project tree after ``make demo`` with the gateway serving (``soilcast serve &``):

    .venv/bin/python benchmarks/daily_loop.py --days 60 --first 2020-01-01 [--promote]

It writes one delivery folder per day (``soilcast demo-delivery --per-day``, not timed as part
of a cycle: it stands for the data feed), then for each day runs ``soilcast daily`` (and with
``--promote`` ``soilcast promote --auto`` after it) as separate processes, exactly as cron or
systemd would, and prints one JSON object: each cycle's wall seconds and its steps' seconds
(from the logfmt lines), the exit codes, what the archive and the verification table hold
afterwards (forecasts per label, leads verified, duplicates), the realised skill per label
and lead over the whole run, and the promotion decisions. The reference, in the same run:
one ``soilcast forecast`` of the first day (one label, products written, not archived), so
a cycle is also reported as a multiple of a single forecast call on this machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
STEP = re.compile(r"^soilcast-daily step=(\S+) status=(\S+) code=(\d+) seconds=([\d.]+)")


def run(*args: str) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    done = subprocess.run([str(BIN / "soilcast"), *args], capture_output=True, text=True)
    return time.perf_counter() - t0, done.returncode, done.stdout + done.stderr


def cycles(days: list[dt.date], feed: Path, server: str, params: str, promote: bool) -> tuple[list, list]:
    out, decisions = [], []
    for day in days:
        seconds, code, text = run("daily", "--server", server, "--delivery", str(feed / str(day)), "-p", params)
        steps = {m[1]: {"status": m[2], "code": int(m[3]), "seconds": float(m[4])}
                 for m in (STEP.match(line) for line in text.splitlines()) if m}
        out.append({"day": str(day), "seconds": round(seconds, 2), "exit": code, "steps": steps})
        if code:
            print(text, file=sys.stderr)
        if promote:
            p_seconds, p_code, p_text = run("promote", "--auto", "-p", params)
            decisions.append({"day": str(day), "exit": p_code, "seconds": round(p_seconds, 2),
                              "decision": p_text.strip().splitlines()[0] if p_text.strip() else ""})
    return out, decisions


def records(params: str) -> dict:
    """What the archive and the verification table hold (read with the package's own readers)."""
    from soilcast.config import load_config
    from soilcast.layout import Layout
    from soilcast.operations.archive import open_archive
    from soilcast.operations.table import read_table, summary

    ops = Layout.from_config(load_config(params)).operations
    archive, table = open_archive(ops.archive), read_table(ops.verification)
    whole = table[table["basin"] == "all"]
    labels = [str(v) for v in archive["label"].values] if archive is not None else []
    per_lead = summary(table).round(4).to_dict(orient="records") if len(table) else []
    log = [json.loads(line) for line in ops.promotion_log.read_text().splitlines()] if ops.promotion_log.exists() else []
    return {"archived": {label: labels.count(label) for label in sorted(set(labels))},
            "verified_leads": int(len(whole)), "duplicated_rows": int(table.duplicated(["forecast", "lead", "basin"]).sum()),
            "realised_by_label_and_lead": per_lead,
            "promotions": {"decisions": len(log), "promoted": sum(e["promoted"] for e in log),
                           "last": log[-1]["reason"] if log else None}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--first", default="2020-01-01", help="first delivered day (the store's last day + 1)")
    ap.add_argument("--server", default="127.0.0.1:8500")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--feed", default="data/incoming/daily", help="folder of the per-day deliveries")
    ap.add_argument("--promote", action="store_true", help="run `soilcast promote --auto` after each day")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    first = dt.date.fromisoformat(a.first)
    days = [first + dt.timedelta(days=i) for i in range(a.days)]
    feed = Path(a.feed)
    gen_seconds, code, text = run("demo-delivery", str(feed), "--first", str(days[0]), "--last", str(days[-1]),
                                  "--per-day", "-p", a.params)
    if code:
        sys.exit(text)
    ref_seconds, code, text = run("forecast", "--server", a.server, "--date", "latest", "--no-archive",
                                  "--out", str(feed / "reference.csv"), "-p", a.params)
    if code:
        sys.exit(text)
    done, decisions = cycles(days, feed, a.server, a.params, a.promote)
    wall = [c["seconds"] for c in done]
    names = sorted({s for c in done for s in c["steps"]})
    result = {
        "days": a.days, "first": str(days[0]), "last": str(days[-1]), "delivery_generation_seconds": round(gen_seconds, 1),
        "cycle_seconds": {"min": min(wall), "median": statistics.median(wall), "max": max(wall),
                          "over_20_s": sum(w > 20 for w in wall)},
        "step_median_seconds": {n: statistics.median(c["steps"][n]["seconds"] for c in done if n in c["steps"])
                                for n in names},
        "reference_forecast_seconds": round(ref_seconds, 2),
        "cycle_over_reference": round(statistics.median(wall) / ref_seconds, 2),
        "exit_codes": {str(k): sum(c["exit"] == k for c in done) for k in sorted({c["exit"] for c in done})},
        **records(a.params),
        "promote_auto": {"runs": len(decisions), "promoted_on": [d["day"] for d in decisions if "PROMOTED" in d["decision"]],
                         "last": decisions[-1]["decision"] if decisions else None},
        "cycles": done,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
