"""A PNG chart of one `make bench` run: req/s and p99 latency per target.

    .venv/bin/python bench/chart.py bench/results/latest.json [-o chart.png]

Reads the JSON that bench/run.py writes (``summary``: the medians over the rounds;
``machine`` and ``settings`` for the title) and draws two horizontal bar charts side
by side: median req/s (a whisker from the slowest to the fastest round, and the ratio
to nginx's median next to the figure) and median p99 latency in ms. nginx's targets are
grey, wasmgate's blue; the HTTPS targets are hatched. A target missing from the JSON
(a ``--targets`` subset) is left out. bench/run.py calls :func:`chart` after every run
and writes ``bench/results/<UTC timestamp>.png`` and ``bench/results/latest.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to files only

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

# Top to bottom; targets the JSON has but this list lacks come last, in JSON order.
ORDER = (
    "nginx",
    "wasmgate",
    "wasmgate-pure",
    "wasmgate-asyncio",
    "wasmgate-chain",
    "wasmgate-chain-pure",
    "wasmgate-wasm",
    "wasmgate-wasm-go",
    "nginx-https",
    "wasmgate-https",
)
NGINX_COLOUR = "#8c8c8c"
WASMGATE_COLOUR = "#2f6db5"
ERROR_COLOUR = "#c62828"
TIMES = "\N{MULTIPLICATION SIGN}"
STAMP = re.compile(r"\d{8}T\d{6}Z")


def targets(summary: dict[str, Any]) -> list[str]:
    """The targets to draw, in ORDER: those with a usable row; the rest are skipped."""
    names = [n for n in ORDER if n in summary] + [n for n in summary if n not in ORDER]
    usable = []
    for name in names:
        row = summary[name]
        if isinstance(row, dict) and all(
            isinstance(row.get(key), int | float) for key in ("rps_median", "p99_ms_median")
        ):
            usable.append(name)
    return usable


def timestamp(results_json: Path, machine: dict[str, Any]) -> str:
    """The run's UTC time: from a ``<timestamp>.json`` name, else ``machine.date_utc``."""
    if STAMP.fullmatch(results_json.stem):
        when = dt.datetime.strptime(results_json.stem, "%Y%m%dT%H%M%SZ")
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")
    date = machine.get("date_utc")
    if isinstance(date, str) and date:
        try:
            when = dt.datetime.fromisoformat(date).astimezone(dt.UTC)
        except ValueError:
            return date
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return results_json.stem


def _version(text: Any, pattern: str) -> str:
    match = re.search(pattern, text) if isinstance(text, str) else None
    return match.group(1) if match else ""


def machine_line(machine: dict[str, Any]) -> str:
    parts = []
    nproc = machine.get("nproc") or machine.get("cpu_count")
    cpu = " ".join(
        str(x) for x in (f"{nproc} vCPU" if nproc else "", machine.get("cpu_model")) if x
    )
    if cpu:
        parts.append(cpu)
    if machine.get("python"):
        parts.append(f"Python {machine['python']}")
    if nginx := _version(machine.get("nginx"), r"nginx/([\w.]+)"):
        parts.append(f"nginx {nginx}")
    if wrk := _version(machine.get("wrk"), r"(\d+\.\d+(?:\.\d+)?)"):
        parts.append(f"wrk {wrk}")
    if openssl := _version(machine.get("python_openssl"), r"OpenSSL (\S+)"):
        parts.append(f"OpenSSL {openssl}")
    load = machine.get("loadavg_at_end")
    if isinstance(load, list) and load:
        parts.append("load avg at end " + " ".join(f"{x:g}" for x in load))
    if machine.get("wasmgate_git"):
        parts.append(f"git {machine['wasmgate_git']}")
    return " \N{MIDDLE DOT} ".join(parts)


def settings_line(settings: dict[str, Any]) -> str:
    rounds, duration = settings.get("rounds"), settings.get("duration")
    text = "medians over the rounds"
    if rounds and duration:
        text = f"medians over {rounds} rounds of {duration:g} s"
    threads, conns = settings.get("wrk_threads"), settings.get("wrk_connections")
    if threads and conns:
        text += f", wrk -t{threads} -c{conns} keep-alive"
    return text + "; whiskers: slowest to fastest round"


def chart(results_json: Path, out_png: Path) -> Path:
    """Draw the chart of the run in ``results_json`` into ``out_png``; return ``out_png``.

    Raises ValueError when the JSON has no target to draw.
    """
    report = json.loads(Path(results_json).read_text())
    summary: dict[str, Any] = report.get("summary") or {}
    machine: dict[str, Any] = report.get("machine") or {}
    settings: dict[str, Any] = report.get("settings") or {}
    names = targets(summary)
    if not names:
        raise ValueError(f"{results_json}: no target with req/s and p99 figures in 'summary'")
    rows = [summary[n] for n in names]
    ys = list(range(len(names)))
    colours = [NGINX_COLOUR if n.startswith("nginx") else WASMGATE_COLOUR for n in names]
    hatches = ["//" if n.endswith("-https") else "" for n in names]

    fig, (ax_rps, ax_p99) = plt.subplots(
        1, 2, figsize=(13, 1.6 + 0.55 * len(names)), sharey=True,
        gridspec_kw={"width_ratios": [1.25, 1]},
    )  # fmt: skip

    # req/s: median bar, min..max whisker, "83,253  1.00x nginx"
    rps = [float(r["rps_median"]) for r in rows]
    low = [min(float(r.get("rps_min", m)), m) for r, m in zip(rows, rps, strict=True)]
    high = [max(float(r.get("rps_max", m)), m) for r, m in zip(rows, rps, strict=True)]
    bars = ax_rps.barh(ys, rps, color=colours, hatch=hatches, edgecolor="white", height=0.7)
    ax_rps.errorbar(
        rps, ys, xerr=[[m - lo for m, lo in zip(rps, low, strict=True)],
                       [hi - m for m, hi in zip(rps, high, strict=True)]],
        fmt="none", ecolor="#333333", elinewidth=1, capsize=3,
    )  # fmt: skip
    right = max(high)
    for bar, row, top in zip(bars, rows, high, strict=True):
        label = f"{bar.get_width():,.0f}"
        ratio = row.get("ratio_vs_nginx")
        if isinstance(ratio, int | float):
            label += f"   {ratio:.2f}{TIMES} nginx"
        errors = row.get("errors") or 0
        if errors:  # wrk saw non-2xx/3xx answers or socket errors: not comparable
            label += f"   !! {errors:,} error{'s' if errors != 1 else ''}"
        ax_rps.text(
            top + right * 0.015, bar.get_y() + bar.get_height() / 2, label,
            va="center", fontsize=9, color=ERROR_COLOUR if errors else "black",
        )  # fmt: skip
    ax_rps.set_xlim(0, right * 1.5)
    ax_rps.set_title("req/s (median; higher is better)", fontsize=11)
    ax_rps.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x / 1000:g}k" if x else "0"))

    # p99 latency in ms
    p99 = [float(r["p99_ms_median"]) for r in rows]
    bars = ax_p99.barh(ys, p99, color=colours, hatch=hatches, edgecolor="white", height=0.7)
    top_ms = max(p99) or 1.0
    for bar, row in zip(bars, rows, strict=True):
        label = f"{bar.get_width():.2f} ms"
        if isinstance(row.get("p50_ms_median"), int | float):
            label += f"   (p50 {row['p50_ms_median']:.2f})"
        ax_p99.text(
            bar.get_width() + top_ms * 0.015, bar.get_y() + bar.get_height() / 2, label,
            va="center", fontsize=9,
        )  # fmt: skip
    ax_p99.set_xlim(0, top_ms * 1.45)
    ax_p99.set_title("p99 latency, ms (median; lower is better)", fontsize=11)

    ax_rps.set_yticks(ys, names, fontsize=10)
    ax_rps.invert_yaxis()  # shared: first target on top in both
    for ax in (ax_rps, ax_p99):
        ax.grid(axis="x", color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(axis="y", length=0)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)

    # header: title, then the machine and the settings, above both charts
    height = fig.get_figheight()
    fig.text(
        0.01, 1 - 0.12 / height, f"wasmgate bench, {timestamp(Path(results_json), machine)}",
        fontsize=13, fontweight="bold", va="top", ha="left",
    )  # fmt: skip
    subtitle = "\n".join(x for x in (machine_line(machine), settings_line(settings)) if x)
    fig.text(0.01, 1 - 0.42 / height, subtitle, fontsize=9, color="#444444", va="top", ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.85 / height))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/chart.py",
        description="Draw req/s and p99 latency per target of a bench/run.py result as a PNG.",
    )
    parser.add_argument("results_json", type=Path, help="e.g. bench/results/latest.json")
    parser.add_argument(
        "-o", "--output", type=Path, help="PNG to write (default: the JSON's name with .png)"
    )
    args = parser.parse_args(argv)
    out = args.output or args.results_json.with_suffix(".png")
    try:
        chart(args.results_json, out)
    except (OSError, ValueError) as exc:
        print(f"chart: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
