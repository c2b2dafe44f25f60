"""`kernelevolve sync`: a sweep's journaled records sent to MLflow after the tracking store was away.

The journal is the driver's source of truth (tuner/records/journal.py); this is how what it holds
reaches MLflow when the sweep's own writes could not. Here, not in the driver
(tuner/execution/sweep.py): it runs without Ray or a sweep, from the journal alone.
"""
from __future__ import annotations


def sync(exp, log=print) -> dict:
    """Send every journaled record of the experiment's latest sweep to MLflow; finish the parent
    runs of studies that ended while MLflow was away. Returns counts of what was written."""
    # the sweep's folders and names are the driver's
    from kernelevolve.tuner.execution.sweep import NothingToResume, slug, state_root
    from kernelevolve.tuner.records.journal import SweepState, unique_by_candidate
    from kernelevolve.tuner.records.tracking import Tracker

    state = SweepState.latest(state_root(exp.name))
    if state is None:
        raise NothingToResume(f"no sweep of '{exp.name}' under {state_root(exp.name)}")
    tracker = Tracker(exp.tracking.uri, exp.name)
    written, finished = 0, 0
    for study in exp.studies():
        st = state.study(study.key)
        if not st.get("parent"):
            continue
        journal = state.journal(slug(study.key))
        tags = {"study": study.key, "target": study.target.name, "kernel": study.kernel_name}
        written += tracker.sync(st["parent"], unique_by_candidate(journal.records()), tags)
        if st.get("done") and not st.get("in_mlflow"):
            tracker.finish_study(st["parent"], st["summary"], st.get("history", []))
            state.update(study.key, in_mlflow=True)
            finished += 1
    log(f"sync {state.sweep_id}: {written} candidate records written, {finished} studies finished")
    return {"written": written, "finished": finished}
