"""Reviewing an experiment from the MLflow store: the best-configs rows, targets side by side, and
one self-contained HTML report.

Everything here reads the store only (never the journal): what a reviewer sees is what MLflow
holds. The report embeds its plots as base64 data URIs and its style inline, so the one file can
be mailed, attached to a PR or opened offline, and loads nothing from anywhere.
"""
from __future__ import annotations

import base64
import html
import json
import os
import tempfile
import time

from mlflow.tracking import MlflowClient

from tuner.review import plots
from tuner.records.tracking import candidate_records, resolve_uri

# A progress bar per downloaded plot would drown the one line `kernelevolve report` prints.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

PLOT_ORDER = ("convergence.png", "param_importance.png", "latency_by_status.png", "roofline.png")
BEST_COLUMNS = ["study", "timing", "latency_ms", "speedup_vs_torch", "tflops", "candidates", "config",
                "run_id"]


class UnknownExperiment(Exception):
    """The named experiment is not in the store: a user error (exit 2)."""


def fmt(v, digits=4) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}g}" if isinstance(v, (int, float)) else str(v)


def open_experiment(uri: str, name: str) -> tuple[MlflowClient, str]:
    """(client, experiment id), or UnknownExperiment naming the experiments the store has."""
    uri = resolve_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise UnknownExperiment(f"no experiment '{name}' in {uri} "
                                f"(experiments there: {', '.join(names) or 'none'})")
    return client, exp.experiment_id


def study_runs(client: MlflowClient, experiment_id: str) -> dict:
    """The newest parent run of each study, by study key (sorted)."""
    runs = client.search_runs([experiment_id], filter_string="tags.`kernelevolve.role` = 'study'",
                              order_by=["attributes.start_time DESC"], max_results=50000)
    latest = {}
    for r in runs:
        latest.setdefault(r.data.tags.get("kernelevolve.study"), r)
    return dict(sorted(latest.items()))


def best_config(run) -> dict:
    return {k[5:]: v for k, v in run.data.params.items() if k.startswith("best.")}


def best_rows(runs: dict) -> list[dict]:
    """One row per study: what `kernelevolve best` prints and the report's table shows."""
    rows = []
    for key, r in runs.items():
        best, m = best_config(r), r.data.metrics
        rows.append({"study": key, "timing": r.data.tags.get("timing", ""),
                     "latency_ms": fmt(m.get("best_latency_ms")),
                     "speedup_vs_torch": fmt(m.get("best_speedup"), 3),
                     "tflops": fmt(m.get("best_tflops"), 4),
                     "candidates": int(m.get("candidates", 0)),
                     "config": json.dumps(best) if best else "(no correct candidate)",
                     "run_id": r.info.run_id[:12]})
    return rows


def compare_rows(runs: dict) -> tuple[list[dict], list[str]]:
    """Targets side by side: one row per kernel/problem, three columns per target."""
    targets, groups = [], {}
    for key, r in runs.items():
        target = r.data.tags.get("target") or key.rsplit("/", 1)[-1]
        if target not in targets:
            targets.append(target)
        groups.setdefault(key[: -len(target) - 1] if key.endswith("/" + target) else key, {})[target] = r
    rows = []
    for problem, by_target in sorted(groups.items()):
        row = {"kernel/problem": problem}
        for t in targets:
            r = by_target.get(t)
            if r is None:
                row.update({f"{t} ms": "(not run)", f"{t} speedup": "", f"{t} config": ""})
                continue
            ms = fmt(r.data.metrics.get("best_latency_ms"))
            if r.data.tags.get("timing") == "interpreter" and ms != "-":
                ms += " (interpreter)"
            best = best_config(r)
            row.update({f"{t} ms": ms, f"{t} speedup": fmt(r.data.metrics.get("best_speedup"), 3),
                        f"{t} config": json.dumps(best) if best else "(no correct candidate)"})
        rows.append(row)
    cols = ["kernel/problem"] + [f"{t} {c}" for t in targets for c in ("ms", "speedup", "config")]
    return rows, cols


def study_plots(client: MlflowClient, experiment_id: str, run) -> tuple[dict[str, bytes], dict[str, str]]:
    """The plots logged under the parent run's `plots/`; for a run that has none (an unfinished
    study, or one logged before plots existed) they are drawn from its child runs, and a note says so."""
    names = {os.path.basename(a.path) for a in client.list_artifacts(run.info.run_id, "plots")}
    if not names:
        tags = run.data.tags
        pngs, notes = plots.render_study(candidate_records(client, experiment_id, run.info.run_id),
                                         tags.get("kernelevolve.study", ""), tags.get("hardware", ""),
                                         tags.get("timing", ""), run.data.params.get("problem.dtype"))
        notes["source"] = "no plots logged with this run: drawn now from its child runs"
        return pngs, notes
    pngs, notes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run.info.run_id, "plots", tmp)
        for name in sorted(names):
            with open(os.path.join(local, name), "rb") as fh:
                data = fh.read()
            if name.endswith(".png"):
                pngs[name] = data
            elif name == "notes.json":
                notes = json.loads(data)
    return pngs, notes


def _table_html(rows: list[dict], cols: list[str], css_class: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
section.study { border-top: 2px solid #457b9d; margin-top: 2em; padding-top: 0.5em; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px; }
.plots figure { margin: 0; } .plots img { width: 100%; max-width: 900px; border: 1px solid #ddd; }
.note { color: #8a5300; background: #fff6e5; padding: 4px 8px; margin: 4px 0; }
.interp { color: #8a5300; font-weight: bold; }
"""


def _figure_html(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>")


def _study_html(client, experiment_id: str, key: str, run) -> str:
    tags, params, m = run.data.tags, run.data.params, run.data.metrics
    timing, best = tags.get("timing", ""), best_config(run)
    pngs, notes = study_plots(client, experiment_id, run)
    facts = {"timing": f"timing={timing}", "hardware": tags.get("hardware", ""),
             "sampler": params.get("sampler", ""), "seed": params.get("seed", ""),
             "candidates": fmt(m.get("candidates")), "ok": fmt(m.get("candidates_ok")),
             "statuses": tags.get("status_counts", ""),
             "best latency (ms)": fmt(m.get("best_latency_ms")),
             "speedup vs torch": fmt(m.get("best_speedup"), 3),
             "best config": json.dumps(best) if best else "(no correct candidate)",
             "parent run": run.info.run_id, "run state": run.info.status}
    facts_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                         for k, v in facts.items())
    warn = f'<p class="interp">{html.escape(plots.INTERPRETER_NOTE)}</p>' if timing == "interpreter" else ""
    order = [n for n in PLOT_ORDER if n in pngs] + sorted(set(pngs) - set(PLOT_ORDER))
    figs = "".join(_figure_html(name, pngs[name]) for name in order)
    note_html = "".join(f'<p class="note">{html.escape(k)}: {html.escape(str(v))}</p>'
                        for k, v in notes.items())
    return (f'<section class="study" id="{html.escape(key)}"><h2>{html.escape(key)}</h2>{warn}'
            f'<table class="facts">{facts_rows}</table>{note_html}'
            f'<div class="plots">{figs}</div></section>')


def build_html(uri: str, name: str) -> str:
    """The whole report of an experiment as one HTML string (no external references)."""
    client, experiment_id = open_experiment(uri, name)
    runs = study_runs(client, experiment_id)
    sections = "".join(_study_html(client, experiment_id, key, r) for key, r in runs.items())
    title = f"kernelevolve report: {name}"
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>store {html.escape(resolve_uri(uri))}; {len(runs)} studies (newest run of each); "
            f"generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}</p>"
            f"<h2>Best correct config per study</h2>"
            f"{_table_html(best_rows(runs), BEST_COLUMNS, 'best')}{sections}</body></html>")


def write(uri: str, name: str, path: str) -> str:
    text = build_html(uri, name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return os.path.abspath(path)
