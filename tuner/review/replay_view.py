"""How a replay is shown: one row per (recorded space, sampler), the regret curve at a few
candidate counts, and the curve as a plot file."""
from __future__ import annotations

CHECKPOINTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
COLUMNS = ("space", "sampler", "seeds", "valid", "near_oracle", "to_2pct_median", "to_2pct_p90", "median_pct",
           "p90_pct", "reached", "not_recorded")


NOTE = ("to_2pct: candidates until the first within {pct:g}% of the oracle (the fastest correct latency "
        "recorded), median and p90 over seeds; a seed that never got there counts as budget + 1 "
        "(>budget). near_oracle: recorded configs within the tolerance. median_pct/p90_pct: the same as % of the valid configs searched. reached: seeds "
        "that got there. Latencies are the recording's screening timings, replayed, not re-measured.")


def _count(v: float, budget: int) -> str:
    return f">{budget}" if v > budget else f"{v:g}"


def row(result: dict) -> dict:
    b = result["budget"]
    over = result["median"] > b
    return {"space": result["space"], "sampler": result["sampler"], "seeds": result["seeds"],
            "valid": result["valid_configs"], "near_oracle": result["within_tolerance"],
            "to_2pct_median": _count(result["median"], b),
            "to_2pct_p90": _count(result["p90"], b),
            "median_pct": ">" + f"{100.0 * b / result['valid_configs']:.1f}%" if over
            else f"{result['median_pct']:.1f}%",
            "p90_pct": f"{result['p90_pct']:.1f}%" if result["p90"] <= b else f">{100.0 * b / result['valid_configs']:.1f}%",
            "reached": f"{result['reached']}/{result['seeds']}",
            "not_recorded": result["not_recorded"]}


def regret_line(result: dict) -> str:
    """The median regret (best so far / oracle - 1) after 1, 2, 5, ... candidates."""
    curve = result["regret_median"]
    cells = []
    for n in CHECKPOINTS:
        if n > len(curve):
            break
        v = curve[n - 1]
        cells.append(f"{n}: " + ("none correct" if v is None else f"{100 * v:.1f}%"))
    return f"  {result['space']} / {result['sampler']}: median regret after " + ", ".join(cells)


def plot(results: list[dict], path: str) -> None:
    """Median regret curve per (space, sampler), log-scaled candidates, one file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        ys = [100 * v if v is not None else float("nan") for v in r["regret_median"]]
        ax.plot(range(1, len(ys) + 1), ys, label=f"{r['sampler']} ({r['space'].split('/')[0]})")
    ax.axhline(100 * results[0]["tolerance"], color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("candidates")
    ax.set_ylabel("median regret, % over the oracle")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
