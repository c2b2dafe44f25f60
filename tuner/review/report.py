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

from kernelevolve.tuner.review import plots
from kernelevolve.tuner.records.tracking import _value, candidate_records, resolve_uri

# A progress bar per downloaded plot would drown the one line `kernelevolve report` prints.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

PLOT_ORDER = ("convergence.png", "param_importance.png", "latency_by_status.png", "roofline.png")
# `dispatched`: which implementation won (what the tuned table runs: "vendor" is torch's cuBLAS
# path of a GEMM study); the triton_* columns: the fastest Triton kernel, beside it, never in its place
BEST_COLUMNS = ["study", "timing", "dispatched", "retimed_ms", "speedup_vs_torch", "tflops", "candidates",
                "config", "triton_ms", "triton_config", "run_id"]
# What the latency columns hold, printed under every table that shows them.
RETIMED_NOTE = ("retimed_ms: the winner re-timed at the end of its study, interleaved with the other "
                "top-k and the torch peer (median); '(sweep)' where that failed: the candidate's "
                "own sweep measurement, latency_ms of its child run. dispatched: the winner's "
                "implementation (triton, or vendor: torch's cuBLAS path of a GEMM, timed in the same "
                "harness); triton_ms and triton_config: the fastest Triton kernel, the same as the "
                "winner where Triton won")
SHORT_ID = 12  # characters of a run id shown in tables; every command taking a run id takes them


class UnknownExperiment(Exception):
    """The named experiment is not in the store: a user error (exit 2)."""


class NoStore(UnknownExperiment):
    """No MLflow store where the URI points (nothing swept there yet), or one that cannot be
    reached: a user error (exit 2). Read-only commands never create one."""


def short_id(run_id: str) -> str:
    return run_id[:SHORT_ID]


def config_value(text):
    """A config value as the kernel saw it (MLflow keeps params as strings): 512, True, 'ieee'."""
    return _value(text) if isinstance(text, str) else text


def open_store(uri: str) -> MlflowClient:
    """A client over an existing store. A SQLite (or local folder) store that does not exist is
    NoStore, not created empty; a server that does not answer is NoStore too, in one line."""
    uri = resolve_uri(uri)
    local = None
    if uri.startswith("sqlite:///"):
        local = uri[len("sqlite:///"):]
    elif uri.startswith("file:"):
        local = uri[len("file:"):].removeprefix("//")
    elif "://" not in uri:
        local = uri
    if local is not None and not os.path.exists(local):
        raise NoStore(f"no MLflow store at {uri}: nothing has been swept here (run `kernelevolve run "
                      "EXP.yaml` in this folder first, or pass --uri, or name the experiment's YAML)")
    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:  # a server away, a file that is not a store: say it in one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise NoStore(f"cannot read the MLflow store at {uri}: {first}") from None
    return client


def fmt(v, digits=4) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}g}" if isinstance(v, (int, float)) else str(v)


def open_experiment(uri: str, name: str) -> tuple[MlflowClient, str]:
    """(client, experiment id), or UnknownExperiment naming the experiments the store has."""
    uri = resolve_uri(uri)
    client = open_store(uri)
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


def resolve_run_id(client: MlflowClient, run_id: str, uri: str) -> str:
    """The full id of the run that `run_id` names: the id itself, or any unique prefix of one (the
    12 characters tables show). UnknownExperiment (exit 2) when none or several runs match."""
    run_id = run_id.strip().lower()
    if not run_id or not all(c in "0123456789abcdef" for c in run_id):
        raise UnknownExperiment(f"'{run_id}' is not a run id (hexadecimal, as `kernelevolve best` shows)")
    if len(run_id) == 32:
        return run_id
    from mlflow.entities import ViewType

    found = []
    for exp in client.search_experiments(view_type=ViewType.ALL):
        token = None
        while True:
            page = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL,
                                      max_results=50000, page_token=token)
            found += [r.info.run_id for r in page if r.info.run_id.startswith(run_id)]
            token = page.token
            if not token:
                break
    if not found:
        raise UnknownExperiment(f"no run '{run_id}' in {uri}")
    if len(found) > 1:
        raise UnknownExperiment(f"run id prefix '{run_id}' is ambiguous in {uri}: "
                                f"{', '.join(sorted(found)[:5])}{' ...' if len(found) > 5 else ''}; "
                                "give more characters")
    return found[0]


def best_config(run) -> dict:
    """The best config of a study run, typed as the kernel saw it (512, not "512")."""
    return {k[5:]: config_value(v) for k, v in run.data.params.items() if k.startswith("best.")}


def best_triton_config(run) -> dict:
    """The fastest Triton config of a study run (the same as best_config where Triton won)."""
    pre = "best_triton."
    return {k[len(pre):]: config_value(v) for k, v in run.data.params.items() if k.startswith(pre)}


def dispatched_impl(run) -> str:
    return run.data.tags.get("best_impl") or ("triton" if best_config(run) else "")


def _number(v):
    return v if isinstance(v, (int, float)) and v == v else None  # NaN -> None (JSON null)


def best_rows(runs: dict) -> list[dict]:
    """One row per study, values typed (numbers as numbers, the config as a mapping, the full run
    id): what `kernelevolve best --json` prints; `display_best` formats them for a table."""
    rows = []
    for key, r in runs.items():
        best, m = best_config(r), r.data.metrics
        impl = dispatched_impl(r)
        # runs logged before the best Triton kernel was logged beside the winner: a winner that
        # is Triton is its own best Triton kernel
        own = impl == "triton" and "best_triton_latency_ms" not in m
        rows.append({"study": key, "timing": r.data.tags.get("timing", ""),
                     "retimed_ms": _number(m.get("best_latency_ms")),
                     "latency_measured_by": r.data.tags.get("best_measured_by") or None,
                     "speedup_vs_torch": _number(m.get("best_speedup")),
                     "tflops": _number(m.get("best_tflops")),
                     "candidates": int(m.get("candidates", 0)),
                     "config": best or None,
                     "dispatched": impl or None,
                     "triton_ms": _number(m.get("best_latency_ms" if own else "best_triton_latency_ms")),
                     "triton_measured_by": r.data.tags.get("best_measured_by" if own else
                                                           "best_triton_measured_by") or None,
                     "triton_config": (best if own else best_triton_config(r)) or None,
                     "run_id": r.info.run_id})
    return rows


def latency_cell(ms, measured_by) -> str:
    """A best latency for a table: the re-timed one, or marked '(sweep)' where re-timing failed."""
    text = fmt(ms)
    return text + " (sweep)" if ms is not None and measured_by == "sweep" else text


def config_cell(config) -> str:
    return json.dumps(config) if config else "(no correct candidate)"


def display_best(rows: list[dict]) -> list[dict]:
    """best_rows as table cells: numbers formatted, config as JSON, run ids SHORT_ID long."""
    return [{**r, "retimed_ms": latency_cell(r["retimed_ms"], r["latency_measured_by"]),
             "speedup_vs_torch": fmt(r["speedup_vs_torch"], 3), "tflops": fmt(r["tflops"], 4),
             "config": config_cell(r["config"]), "dispatched": r.get("dispatched") or "-",
             "triton_ms": latency_cell(r.get("triton_ms"), r.get("triton_measured_by")),
             "triton_config": config_cell(r.get("triton_config")),
             "run_id": short_id(r["run_id"])} for r in rows]


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
                row.update({f"{t} retimed_ms": None, f"{t} speedup": None, f"{t} config": None,
                            f"{t} timing": "(not run)"})
                continue
            row.update({f"{t} retimed_ms": _number(r.data.metrics.get("best_latency_ms")),
                        f"{t} speedup": _number(r.data.metrics.get("best_speedup")),
                        f"{t} config": best_config(r) or None,
                        f"{t} timing": r.data.tags.get("timing", ""),
                        f"{t} measured_by": r.data.tags.get("best_measured_by") or None})
        rows.append(row)
    cols = ["kernel/problem"] + [f"{t} {c}" for t in targets for c in ("retimed_ms", "speedup", "config")]
    return rows, cols


def display_compare(rows: list[dict], cols: list[str]) -> list[dict]:
    """compare_rows as table cells (interpreter latencies say so)."""
    out = []
    for row in rows:
        cells = {"kernel/problem": row["kernel/problem"]}
        for c in cols[1:]:
            t, _, what = c.rpartition(" ")
            if row.get(f"{t} timing") == "(not run)":
                cells[c] = "(not run)" if what == "retimed_ms" else ""
            elif what == "retimed_ms":
                ms = latency_cell(row[c], row.get(f"{t} measured_by"))
                cells[c] = ms + (" (interpreter)" if row.get(f"{t} timing") == "interpreter"
                                 and row[c] is not None else "")
            elif what == "speedup":
                cells[c] = fmt(row[c], 3)
            else:
                cells[c] = config_cell(row[c])
        out.append(cells)
    return out


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


def _sampler_cell(params: dict) -> str:
    """The sampler as the experiment named it, and the one "auto" chose: "auto (learned)"."""
    named, resolved = params.get("sampler", ""), params.get("sampler_resolved")
    return f"{named} ({resolved})" if resolved and resolved != named else named


def _study_html(client, experiment_id: str, key: str, run) -> str:
    tags, params, m = run.data.tags, run.data.params, run.data.metrics
    timing, best = tags.get("timing", ""), best_config(run)
    [triton_row] = best_rows({key: run})  # (the best Triton kernel, with its fallback for older runs)
    pngs, notes = study_plots(client, experiment_id, run)
    facts = {"timing": f"timing={timing}", "hardware": tags.get("hardware", ""),
             "sampler": _sampler_cell(params), "seed": params.get("seed", ""),
             "candidates": fmt(m.get("candidates")), "ok": fmt(m.get("candidates_ok")),
             "statuses": tags.get("status_counts", ""),
             "best latency (ms), re-timed at the end of the study":
                 latency_cell(_number(m.get("best_latency_ms")), tags.get("best_measured_by")),
             "speedup vs torch": fmt(m.get("best_speedup"), 3),
             "best config": config_cell(best),
             "dispatched (the implementation the tuned table runs)": dispatched_impl(run) or "-",
             "best Triton latency (ms)": latency_cell(triton_row["triton_ms"], triton_row["triton_measured_by"]),
             "best Triton config": config_cell(triton_row["triton_config"]),
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
            f'<div class="plots">{figs}</div>{_profile_html(client, run)}</section>')


def _profile_html(client, run) -> str:
    """The study's profiled candidates (`kernelevolve profile`, experiment `profile.top_k`): their
    bottleneck labels, the counters behind them and the counter roofline; nothing if none."""
    from kernelevolve.tuner.review import profile_view

    rows, png = profile_view.for_report(client, run)
    if not rows:
        return ""
    fig = f'<div class="plots">{_figure_html("roofline_counters.png", png)}</div>' if png else ""
    return ("<h3>Profiled candidates: Nsight Compute counters</h3>"
            f"{_table_html(rows, list(profile_view.REPORT_COLUMNS), 'profile')}{fig}")


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
            f"{_table_html(display_best(best_rows(runs)), BEST_COLUMNS, 'best')}"
            f"<p>{html.escape(RETIMED_NOTE)}</p>{sections}</body></html>")


def write(uri: str, name: str, path: str) -> str:
    text = build_html(uri, name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return os.path.abspath(path)
