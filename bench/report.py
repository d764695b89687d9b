"""Writes the suite's section of bench/RESULTS.md (between its two markers, at the top); the
other sections, and the hand-written findings below the markers, stay as they are."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.harness import ROOT, fmt

if TYPE_CHECKING:
    from bench.run import Bench

START, END = "<!-- make bench: start -->", "<!-- make bench: end -->"
RESULTS = ROOT / "bench/RESULTS.md"


def ratio(a: dict, b: dict) -> str:
    return f"{a['median'] / b['median']:.2f}" if b["median"] else "–"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def ingest(r: dict) -> list[str]:
    lines = [
        "### 1. Ingest: `POST /api/v1/escalations`, 2 KB context",
        "",
        "Every request carries an `Idempotency-Key` of its own, as an agent that retries safely "
        "sends (the bare endpoint ignores it). Keep-alive connections, one per client thread.",
        "",
        "| concurrency | Handoff cases/s | p50 | p99 | bare Django+DRF cases/s | p50 | p99 "
        "| raw psycopg rows/s | p50 | p99 | Handoff / bare | target (≥ 1.0×, p99 ≤ bare) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c, row in r.items():
        h, b, w = row["handoff"], row["bare"], row["raw"]
        cells = [fmt(x["rate"]) for x in (h,)] + [fmt(h["p50"], " ms"), fmt(h["p99"], " ms")]
        cells += [fmt(b["rate"]), fmt(b["p50"], " ms"), fmt(b["p99"], " ms")]
        cells += [fmt(w["rate"]), fmt(w["p50"], " ms"), fmt(w["p99"], " ms")]
        met = (
            h["rate"]["median"] >= b["rate"]["median"] and h["p99"]["median"] <= b["p99"]["median"]
        )
        target = verdict(met) if int(c) > 1 else "–"
        lines.append(
            f"| {c} | " + " | ".join(cells) + f" | {ratio(h['rate'], b['rate'])} | {target} |"
        )
    errors = {c: {k: v["errors"] for k, v in row.items() if v["errors"]} for c, row in r.items()}
    if any(errors.values()):
        lines += ["", f"Errors: {errors}"]
    return lines


def batch(r: dict, concurrency: int) -> list[str]:
    h, w = r["handoff"], r["raw"]
    share = h["rate"]["median"] / w["rate"]["median"]
    return [
        "### 2. Batch ingest: `POST /api/v1/escalations/batch`, 100 items, "
        f"concurrency {concurrency}",
        "",
        "| Handoff cases/s | p50 per batch | raw psycopg rows/s (100 INSERTs, one COMMIT) | p50 "
        "| Handoff / raw | target (≥ 50%) |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {fmt(h['rate'])} | {fmt(h['p50'], ' ms')} | {fmt(w['rate'])} | {fmt(w['p50'], ' ms')} "
        f"| {share:.0%} | {verdict(share >= 0.5)} |",
    ]


def claims(r: dict, ingest32: dict | None) -> list[str]:
    lines = [
        "### 3. Claim: reviewers pressing Next case "
        "(`transitions.claim_next` + `resolve`: threads in two processes, no HTTP)",
        "",
        "| reviewers | cases decided | claims/s | claim p50 | claim p99 "
        "| double claims (answers + audit) | left unresolved | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n, row in r.items():
        goals = [row["double_claims"] == 0]
        if int(n) == 8:
            goals.append(row["p99"]["median"] <= 50)
            what = "0 double, p99 ≤ 50 ms"
        else:
            rate = ingest32["handoff"]["rate"]["median"] if ingest32 else 0
            goals.append(row["rate"]["median"] >= rate)
            what = f"0 double, ≥ ingest at 32 ({rate:.0f}/s)"
        lines.append(
            f"| {n} | {row.get('cases', 0):,} | {fmt(row['rate'])} | {fmt(row['p50'], ' ms')} "
            f"| {fmt(row['p99'], ' ms')} "
            f"| {row['double_claims']} | {row['unresolved']} | {what}: {verdict(all(goals))} |"
        )
    return lines


def inbox(r: dict) -> list[str]:
    sizes = [k for k in r if k not in ("sweep", "other_team_cases")]
    lines = [
        "### 4. Inbox server time (in-process, one reviewer of three queues)",
        "",
        f"Beside the reviewer's open cases, {r.get('other_team_cases', 0):,} open cases of another "
        "team, all falling due sooner, which no page may read past. The poll is the page's "
        "10-second `?since=` request when nothing changed (204).",
        "",
        "| open cases | first page p50 | p95 | page 11 p50 | p95 | poll p50 | p95 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in sizes:
        f, d = r[size]["first"], r[size]["deep"]
        p = r[size].get("poll") or {"p50": 0.0, "p95": 0.0}
        lines.append(
            f"| {int(size):,} | {f['p50']:.1f} ms | {f['p95']:.1f} ms | {d['p50']:.1f} ms "
            f"| {d['p95']:.1f} ms | {p['p50']:.1f} ms | {p['p95']:.1f} ms |"
        )
    lo, hi = r[sizes[0]], r[sizes[-1]]
    ratios = {k: hi[k]["p95"] / lo[k]["p95"] for k in ("first", "deep")}
    worst = max(hi["first"]["p95"], hi["deep"]["p95"])
    lines.append(
        f"| ratio {int(sizes[-1]):,} / {int(sizes[0]):,} (p95) | | {ratios['first']:.2f} | "
        f"| {ratios['deep']:.2f} | | |"
    )
    lines += [
        "",
        f"Target p95 ≤ 50 ms at the largest size ({worst:.1f} ms): {verdict(worst <= 50)}; "
        f"ratio ≤ 1.5: {verdict(max(ratios.values()) <= 1.5)}.",
        "",
        "### 5. SLA sweep (`sweeps.sweep_breaches`, newly breaching cases among the open ones)",
        "",
        "| open cases | newly breaching recorded | sweeps (500 a run) | first sweep | all sweeps |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size, s in r["sweep"].items():
        lines.append(
            f"| {int(size):,} | {s['recorded']:,} | {s['sweeps']} | {s['first_sweep_s']:.2f} s "
            f"| {s['total_s']:.2f} s |"
        )
    last = list(r["sweep"].values())[-1]
    lines += ["", f"Target ≤ 1 s per sweep: {verdict(last['first_sweep_s'] <= 1)}."]
    return lines


def longpoll(r: dict) -> list[str]:
    kept = r["kept"]["median"]
    return [
        f"### 6. Long-poll: {r['waiters']} agents on `GET …/resolution?wait=30` during ingest "
        "(concurrency 8)",
        "",
        f"Ingest windows of {r.get('seconds', 0):g} s, long enough to include each waiter's "
        "periodic re-check of its case.",
        "",
        "| ingest alone cases/s | with the waiters | kept | wake p50 | wake p99 "
        "| answers 200 / other "
        "| PG connections held while waiting: fewest in use in 10 samples over 1 s (open) "
        "| in use during ingest (max) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {fmt(r['alone'])} | {fmt(r['with_waiters'])} | {kept:.0%} "
        f"| {fmt(r['wake_p50_ms'], ' ms')} | {fmt(r['wake_p99_ms'], ' ms')} "
        f"| {r['answered_200']} / {r['other_answers']} | {r['connections_waiting_in_use_max']} "
        f"({r['connections_waiting_open_max']}) | {r['connections_ingesting_in_use_max']} |",
        "",
        f"Targets: ≥ 80% kept: {verdict(kept >= 0.8)}; wake p99 ≤ 1 s: "
        f"{verdict(r['wake_p99_ms']['median'] <= 1000)}; no connection held while waiting: "
        f"{verdict(r['connections_waiting_in_use_max'] == 0)}.",
    ]


def webhooks(r: dict) -> list[str]:
    one, two, floor = r.get("1") or r[1], r.get("2") or r[2], r["floor"]
    return [
        f"### 7. Webhook delivery: {r['deliveries']:,} deliveries to a local receiver",
        "",
        "| one worker (prefork, concurrency 2) | two workers | two / one "
        "| floor: plain http.client POSTs, 2 threads |",
        "| --- | --- | --- | --- |",
        f"| {fmt(one)}/s | {fmt(two)}/s | {ratio(two, one)} | {fmt(floor)}/s |",
    ]


def section(bench: Bench) -> str:
    m, r = bench.machine, bench.results
    lines = [
        START,
        f"## The suite (`make bench`, {bench.mode} run)",
        "",
        f"{m['date']}; {m['cores']} cores, {m['memory_gib']} GiB; load average at the start "
        f"{m['load_average']} (the machine is shared with other test runs); PostgreSQL and a "
        "redis-server of the run's own; Handoff and the bare baseline each under gunicorn with 2 "
        "uvicorn workers on 127.0.0.1; load from a second process (`bench/load.py`). Each figure "
        f"is the median of {bench.sizes.rounds} rounds (min–max) of {bench.sizes.seconds:g} s, "
        f"beside its baseline from the same rounds. Run time {r.get('run_seconds', 0)} s.",
        "",
    ]
    parts = []
    if "ingest" in r:
        parts.append(ingest(r["ingest"]))
    if "batch" in r:
        parts.append(batch(r["batch"], bench.sizes.batch_concurrency))
    if "claims" in r:
        parts.append(claims(r["claims"], r.get("ingest", {}).get(32)))
    if "inbox" in r:
        parts.append(inbox(r["inbox"]))
    if "longpoll" in r:
        parts.append(longpoll(r["longpoll"]))
    if "webhooks" in r:
        parts.append(webhooks(r["webhooks"]))
    for part in parts:
        lines += [*part, ""]
    return "\n".join([*lines, END])


def write(bench: Bench) -> None:
    text = RESULTS.read_text()
    new = section(bench)
    if START in text:
        before, rest = text.split(START, 1)
        text = before + new + rest.split(END, 1)[1]
    else:  # first run: after the file's introduction, before the first section
        head, tail = text.split("\n## ", 1)
        text = f"{head}\n{new}\n\n## {tail}"
    RESULTS.write_text(text)
