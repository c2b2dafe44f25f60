"""The driver: every (kernel, problem, target) study of a sweep at once, in one Ray Tune run.

Set-up is paid once per sweep: Ray, the MLflow experiment, one GPU lane per GPU of the cluster
(tuner.execution.lanes), one device probe per target, every study's parent run and searcher
(tuner.execution.study_plan).
Then one Tuner runs the candidates of all studies together: SweepSearch hands each suggestion
to the study furthest behind, each trial asks for its own target's resources
(tune.with_resources with a function of the trial's config), and the trial compiles on its own
CPU core while its GPU's lane verifies and times (tuner.execution.trial).

Every candidate is journaled as it ends (fsynced; the driver's source of truth) and written to
MLflow by a background thread through a Ray actor (tuner.records.remote_tracker), so the trial
loop never waits for a database and never shares the driver's GIL with one. When a study's
last candidate ends, its end runs in a thread of its own (tuner.execution.study_end): its top-k
re-timed interleaved with the torch peer on a lane, and its parent run given the winner, the
proposal counts and the review plots.

A built-in GEMM study also evaluates its kernel's vendor config first (torch.mm / torch.addmm,
kernels/gemm_vendor.py), in the same harness, outside the sampler's space and on top of the
budget; it takes part in the re-timing like any correct candidate, and the summary names both the
fastest correct candidate (`best`, what is dispatched) and the fastest Triton one (`best_triton`).

Nothing is lost: a killed driver is resumed with `--resume` (the journal is replayed into fresh
searchers); SIGINT or SIGTERM stop the sweep resumably: unfinished studies stay unfinished,
their parent runs stay open, and the caller exits 130 or 143 with how to resume.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import ray
from ray import tune

from kernelevolve.tuner.execution import cluster, lanes, spawner, study_end, study_plan
from kernelevolve.tuner.measure import check_warmup
from kernelevolve.tuner.execution.cluster import TargetUnavailable, check_target, init_ray  # noqa: F401 - public
from kernelevolve.tuner.execution.counters import maybe_steer
from kernelevolve.tuner.execution.study_plan import Plan, slug  # noqa: F401 - slug: public
from kernelevolve.tuner.execution.trial import StudyResources, run_candidates
from kernelevolve.tuner.execution.tune_hooks import (_ON_RESULT, RecordCallback, StopOnSignal, callbacks_not_tagged,
                                                     trainable_looked_up_once)
from kernelevolve.tuner.records.journal import SweepState
from kernelevolve.tuner.records.recorder import WRITERS, Writer
from kernelevolve.tuner.records.remote_tracker import RemoteTracker
from kernelevolve.tuner.records.store_opening import StoreOpening
from kernelevolve.tuner.records.schema import record_of
from kernelevolve.tuner.records.sqlite_store import checkpoint
from kernelevolve.tuner.records.tracking import Tracker
from kernelevolve.tuner.review.plotter import PLOTTERS, Plotters
from kernelevolve.tuner.review.progress import Progress
from kernelevolve.tuner.search import prior as prior_mod
from kernelevolve.tuner.search.constrained import ValidSet
from kernelevolve.tuner.search.protocol import BATCH_PARAM, batch_size, decode_batch, replies_of
from kernelevolve.tuner.search.sweep_search import STUDY_PARAM, SweepSearch
from kernelevolve.tuner.search.valid_sets import Enumerations


class NothingToResume(Exception):
    """--resume with no unfinished sweep of this experiment: a user error (exit 2)."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped the sweep; it can be resumed. `signum` says which."""

    def __init__(self, signum: int, sweep_id: str):
        self.signum, self.sweep_id = signum, sweep_id
        super().__init__(f"sweep {sweep_id} stopped by {signal.Signals(signum).name}")


def state_root(exp_name: str) -> str:
    return os.path.abspath(os.path.join(".kernelevolve", exp_name))


class Sweep:
    def __init__(self, exp, state: SweepState, tracker: Tracker, progress, log,
                 enumerations: Enumerations | None = None, writers: int = 1):
        self.exp, self.state, self.tracker, self.progress, self.log = exp, state, tracker, progress, log
        self.enumerations = enumerations  # every study's valid set, on its way (valid_sets)
        self.writer = Writer(writers)  # as many threads as the tracker has writers
        self.plans: dict[str, Plan] = {}
        self.lanes: dict = {}
        self.plotters: Plotters | None = None  # the studies' plots' actors (plotter_pool)
        self.out: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.devices: dict[str, dict] = {}
        self.lane_warm: dict = {}
        self.self_checks: list = []  # each lane's first verification, run ahead (lanes.SELF_CHECK)
        self.prepares: list = []  # lanes.prepare's requests, in flight until the lanes answer
        self.stopper = StopOnSignal()
        self.fatal: Exception | None = None
        self.plans_seen = False
        self.tuner_started = 0.0  # when run() began (the first result's log line counts from it)
        # search.prior: every recorded space it names, read once; each study learns from those of
        # its own kernel (study_plan.prior_of)
        self.recorded = prior_mod.load(exp.search.prior) if exp.search.prior else None

    # -- set-up, once per sweep ------------------------------------------------------------
    def device(self, target) -> dict:
        """The device a target's candidates run on, checked against the chip it names (once).
        For GPU targets this waits for the lanes' start, which overlaps the Tuner's: the first
        candidates compile on their own cores meanwhile. A mismatch stops the sweep."""
        if target.name in self.devices:
            return self.devices[target.name]
        if target.profile.interpreter:
            info = cluster.remote_request(check_target(target), cluster.target_env(target),
                                          {"op": "probe"}, timeout_s=300)
            self.devices[target.name] = cluster.check_device(target, info)
            return self.devices[target.name]
        from kernelevolve.tuner.experiment import hardware

        infos = dict(zip(self.lanes, ray.get(list(self.lane_warm.values()))))
        for info in infos.values():
            if info.get("status") == "ok" and hardware.matches(target.profile, info):
                self.devices[target.name] = info
                return info
        found = ", ".join(sorted({str(i.get("gpu_name") or i.get("error")) for i in infos.values()}))
        self.fatal = TargetUnavailable(f"target '{target.name}' names {target.profile.name}, but the "
                                       f"cluster's GPU lanes found: {found or 'no GPU'}")
        self.stopper.failed = True
        raise self.fatal

    def setup(self, studies: list) -> None:
        t0 = time.time()
        cwd = os.getcwd()
        # Every study's valid configs are enumerated in processes forked as the sweep began
        # (tuner.search.valid_sets says why), and each searcher adopts its set when it arrives;
        # until then the study is asked for nothing (by rejection, Optuna's asks for broken
        # proposals cost the driver's trial loop ~0.1 s a suggestion).
        pending = [st.key for st in studies if st.space.enumerable()]
        for target in self.exp.targets:  # CPU targets now; GPU targets when their lanes are up
            if target.profile.interpreter:
                self.device(target)
        for study in studies:
            study_plan.plan(self, study, cwd)
        for key in pending:  # asked for nothing until its set arrives (ConstrainedSearch.awaiting)
            self.plans[key].searcher.awaiting = True
        threading.Thread(target=self._hand_over, args=(pending, t0), daemon=True).start()
        self.log(f"set-up in {time.time() - t0:.1f} s: {len(studies)} studies planned, "
                 f"{len(pending)} valid sets being enumerated, {len(self.lanes)} GPU lane(s) starting")

    def _hand_over(self, pending: list, t0: float) -> None:
        """Hand each study's valid configs to its searcher as they arrive from the enumerating
        processes; a set they did not make is walked here (a study that cannot be walked goes on
        by rejection)."""
        arrivals = (self.enumerations.as_arrived(pending) if self.enumerations is not None
                    else ((k, None, None) for k in pending))
        for key, parts, error in arrivals:
            searcher, space = self.plans[key].searcher, self.plans[key].study.space
            try:
                if error is not None:
                    self.log(f"  ! {key}: enumerating in a process failed ({type(error).__name__}: "
                             f"{error}); walking it here")
                if parts is None:
                    searcher.arriving = ValidSet(space)
                else:
                    configs, vectors, keys = parts
                    space.adopt_valid(configs)  # the one set its space's other askers read
                    searcher.arriving = ValidSet(space, space.valid_configs(), vectors, keys)
            except Exception as exc:  # the study goes on by rejection
                self.log(f"  ! {key}: its valid configs could not be enumerated ({type(exc).__name__}: {exc})")
            finally:
                searcher.awaiting = False
        self.log(f"valid configs of every study enumerated {time.time() - t0:.1f} s after set-up began")

    # -- while the Tuner runs ---------------------------------------------------------------
    def on_result(self, trial, result: dict) -> None:
        """A trial's candidates, each journaled as its own record (in the trial's order)."""
        heard = time.time()
        key = trial.config[STUDY_PARAM]
        plan = self.plans[key]
        members = decode_batch(trial.config[BATCH_PARAM])
        recs = [record_of(dict(reply, driver_heard=heard), member["candidate_id"], key, member["config"])
                for member, reply in zip(members, replies_of(result, len(members)))]
        if not self.plans_seen:  # and how long its trial's report waited for this driver
            reported = min((r["trial_reported"] for r in recs if "trial_reported" in r), default=None)
            waited = "" if reported is None else f", its trial's report taken in {heard - reported:.1f} s after it was made"
            self.log(f"first candidate ended {heard - self.tuner_started:.1f} s after the Tuner started{waited}")
            self.plans_seen = True
            self.plotter_pool()  # started now: warm by the first study's end, off the sweep's start
        plan.recorder.journal.extend(recs)  # one sync for the trial's candidates
        for rec in recs:
            plan.records.append(rec)
            self.progress.candidate(plan.study, rec)
            maybe_steer(plan, self.log)  # profile.steer: off by default
        self.writer.submit_sync(key, plan.recorder.sync)

    def plotter_pool(self) -> Plotters:
        """The sweep's plotting actors (tuner/review/plotter.py), started at its first result:
        by a study's end they are warm, and their imports did not compete with the start's
        (trial actors, lanes, compile slots); a study that ends before any result starts them."""
        with self.lock:
            if self.plotters is None:
                self.plotters = Plotters(min(PLOTTERS, len(self.plans) or 1))
            return self.plotters

    def maybe_finish(self, search: SweepSearch) -> None:
        """Finish every study whose candidates have all ended (called after each result)."""
        for key, plan in self.plans.items():
            if not plan.finishing and search.done(key):
                plan.finishing = True
                threading.Thread(target=study_end.finish, args=(self, plan), daemon=True).start()

    def _lane_of(self, record: dict):
        """The lane that measured a record (its GPU: one a trial started is found by name); any
        lane of the sweep if that one is gone."""
        name = lanes.lane_name(self.state.sweep_id, record.get("ray_node_id", ""),
                               str(record.get("ray_gpu_ids", "")).split(",")[0])
        return self.lanes.get(name) or lanes.named_lane(name) or next(iter(self.lanes.values()))

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> None:
        self.tuner_started = time.time()
        plans = {k: p for k, p in self.plans.items()}
        todo = {k: p for k, p in plans.items() if p.remaining > 0}
        caps = {k: p.study.experiment.search.concurrency for k, p in todo.items()}
        batch = {k: min(batch_size(caps[k], p.study.experiment.search.candidates_per_trial),
                        cluster.most_per_trial(p.ctx["resources"])) for k, p in todo.items()}
        def prepare(key: str) -> None:
            """Each lane makes a GPU study's sets as its first trial goes out, while that trial's
            candidates compile (lanes.py says why). Not all at the set-up: a 32-study sweep's lanes
            then spent their first 4-8 s on studies whose turn came a minute later."""
            if self.plans[key].ctx["lanes"]:
                self.prepares += lanes.prepare(self.lanes, [(key, self.plans[key].ctx)])
        search = SweepSearch({k: p.searcher for k, p in todo.items()},
                             {k: p.remaining for k, p in todo.items()}, caps, batch, first_out=prepare)
        resources = StudyResources({k: p.ctx["resources"] for k, p in todo.items()}, batch)
        for key, plan in plans.items():  # nothing left to run: finish now
            if key not in todo:
                plan.finishing = True
                threading.Thread(target=study_end.finish, args=(self, plan), daemon=True).start()
        if not todo:
            return
        room = sum(cluster.room_for(need) for need in  # in trials
                   {json.dumps(resources.per_trial(k), sort_keys=True) for k in todo})
        # trials, not candidates: each study has at most ceil(cap / batch) trials out
        trials_at_once = sum(-(-caps[k] // batch[k]) for k in todo)
        stopper = self.stopper
        sweep_ctx = {"sweep_id": self.state.sweep_id, "studies": {k: p.ctx for k, p in todo.items()}}

        def on_result(trial, result):
            self.on_result(trial, result)
            self.maybe_finish(search)
        _ON_RESULT[self.state.sweep_id] = on_result
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def on_signal(signum, frame):
            if stopper.signum:  # a second signal: stop now
                raise KeyboardInterrupt
            stopper.signum = signum
            self.log(f"{signal.Signals(signum).name}: stopping the sweep (a second one stops at once)")
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for sig in previous:
                signal.signal(sig, on_signal)
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(run_candidates, sweep=sweep_ctx), resources),
            # as many in flight as the cluster has room for (more would only wait as PENDING trials,
            # each holding a proposal its study's sampler made without knowing the results before it)
            tune_config=tune.TuneConfig(search_alg=search, num_samples=sum(search.left.values()),
                                        max_concurrent_trials=max(1, min(trials_at_once, room)),
                                        reuse_actors=True),
            run_config=tune.RunConfig(
                name=slug(f"{self.state.sweep_id}-{len(os.listdir(self.state.folder))}"), verbose=0,
                storage_path=os.path.join(self.state.folder, "ray"), stop=stopper,
                callbacks=[RecordCallback(self.state.sweep_id)]),
        )
        self.log(f"Tuner starting at {time.time():.3f} (unix), {min(trials_at_once, room)} trials in flight at "
                 f"most, {max(batch.values())} candidates a trial at most")
        try:
            with trainable_looked_up_once(), callbacks_not_tagged():
                tuner.fit()
        finally:
            _ON_RESULT.pop(self.state.sweep_id, None)
            if in_main:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        if self.fatal is not None:
            raise self.fatal
        if stopper.signum:
            raise Interrupted(stopper.signum, self.state.sweep_id)
        self.maybe_finish(search)

    def wait(self) -> list[dict]:
        """Every study's summary, in file order, once its parent run is written."""
        while True:
            with self.lock:
                if all(k in self.out for k in self.plans):
                    break
            time.sleep(0.05)
        return [self.out[k] for k in self.plans]


def run(exp, address: str | None = None, log=print, resume: bool = False, progress=None,
        num_cpus: int | None = None) -> list[dict]:
    """Sweep every study of `exp`; returns each study's summary in file order. `num_cpus`: of a
    Ray started here, this many of the machine's cores (None: all)."""
    root = state_root(exp.name)
    if resume:
        state = SweepState.latest(root)
        if state is None:
            raise NothingToResume(f"no sweep of '{exp.name}' to resume under {root}")
    # Every study's valid configs: forked first, while this process has no threads of Ray's yet
    # (tuner.search.valid_sets says why). A caller that started Ray in this process already has
    # its threads (gRPC, the core worker): a fork copies only the forking thread, and a lock one of
    # them holds would stay held in the child, so the sets are then walked in a thread as before.
    studies = list(exp.studies())
    forking = not ray.is_initialized()
    enumerations = Enumerations({st.key: st.space for st in studies}, fork=forking)
    # the MLflow store opens while Ray and the lanes start: in the opener `kernelevolve run` started
    # with the command, else in a process forked now (tuner.records.store_opening says why)
    store = StoreOpening(exp.tracking.uri, exp.name, fork=forking)
    # This node's fork server for evaluation processes starts importing torch and Triton now, so
    # that the lanes' and trials' processes start from it (tuner.execution.spawner says why).
    ahead, gpu = None, gpu_target(exp)
    if gpu is not None:
        forks = spawner.start()
        # the judge's check kernels compile in processes of their own while Ray starts
        ahead = check_warmup.Ahead(cluster.target_env(gpu), os.getcwd())
    else:  # no GPU target: a server started early for one is not needed
        forks, early = None, spawner.take_early()
        if early is not None:
            early.close()
    try:
        summaries = _run(exp, studies, address, log, resume, progress, num_cpus, enumerations, store)
        for line in ahead.report() if ahead is not None else []:
            log(line)
        return summaries
    finally:
        store.close()
        enumerations.close()
        if forks is not None:
            forks.close()


# how the sweep came to its Ray (cluster.init_ray), as its log says it
RAY_HOW = {"joined": "joined", "started": "started", "early": "started early (beside the imports), joined"}


def gpu_target(exp):
    """The experiment's first GPU target (its lanes' and fork server's), or None."""
    return next((t for t in exp.targets if not t.profile.interpreter), None)


def start_gpu_lanes(exp, sweep_id: str, joined: bool) -> tuple[dict, dict, list]:
    """The cluster's GPU lanes for the experiment's first GPU target (none without one). `joined`:
    the sweep joined a Ray started elsewhere (whose raylets' environments are not this one's)."""
    gpu = gpu_target(exp)
    if gpu is None:
        return {}, {}, []
    return lanes.start_lanes(sweep_id, cluster.target_env(gpu), os.getcwd(), gpu.profile.name,
                             raylet_env=None if joined else dict(os.environ))


def _run(exp, all_studies: list, address, log, resume: bool, progress, num_cpus,
         enumerations: Enumerations, store: StoreOpening) -> list[dict]:
    root = state_root(exp.name)
    state = SweepState.latest(root) if resume else None
    began = time.time()
    how_ray = init_ray(address or exp.ray.address, num_cpus)
    ray_s = time.time() - began
    sweep_id = state.sweep_id if state is not None else time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    # The GPU lanes start as soon as Ray is up: a lane's start (its actor, evaluator and judge,
    # then its self-check) took 5-7 s on the H100 and H200 nodes, and the first candidates waited
    # in its queue for it; the store and the set-up go on meanwhile.
    early_lanes = start_gpu_lanes(exp, sweep_id, joined=bool(address or exp.ray.address))
    try:
        opened = store.result()
        # the start's two fixed costs, side by side (docs/benchmarks.md reads them)
        log(f"Ray {RAY_HOW[how_ray]} in {ray_s:.1f} s; the MLflow store "
            f"opened in {opened.took_s:.1f} s beside it, waited for until {time.time() - began:.1f} s")
        # the sweep's writes go through a process of their own (tuner.records.remote_tracker says why)
        # up to recorder.WRITERS writers, no more than studies (each is a process importing MLflow)
        writers = min(WRITERS, max(1, len(all_studies)))
        tracker = RemoteTracker(opened, exp.name, writers)
        for target in exp.targets:  # every target checked before the first study starts
            check_target(target)
        if not resume:
            state = SweepState.new(root, sweep_id, exp.source_path)
        log(f"sweep {state.sweep_id} of {exp.name}{' (resumed)' if resume else ''}: tracking at {tracker.uri}")
        progress = progress or Progress(log)
        studies, finished = [], {}
        for study in all_studies:
            done = state.study(study.key)
            if done.get("done"):
                log(f"study {study.key}: already finished in this sweep")
                finished[study.key] = done["summary"]
            else:
                studies.append(study)
        sweep = Sweep(exp, state, tracker, progress, log, enumerations, writers)
    except BaseException:  # nothing ran on them: they go with the failed start
        if early_lanes[0]:
            lanes.stop_lanes(sweep_id)
        raise
    sweep.lanes, sweep.lane_warm, sweep.self_checks = early_lanes
    try:
        if studies:
            sweep.setup(studies)
            sweep.run()
            sweep.wait()
            for line in (lanes.warm_report(sweep.lane_warm) + lanes.self_check_report(sweep.self_checks)
                         + lanes.prepare_report(sweep.prepares) + lanes.busy_report(sweep.lanes)):
                log(line)
    except Interrupted as stop:
        log(f"stopped: {len(sweep.out)} of {len(studies)} studies finished; the rest resume with "
            f"`kernelevolve run {exp.source_path or exp.name + '.yaml'} --resume`")
        raise stop
    finally:
        sweep.writer.close()
        if sweep.plotters is not None:
            sweep.plotters.close()
        checkpoint(tracker.uri)  # the store's file whole again (tuner.records.sqlite_store)
        if sweep.lanes:
            lanes.stop_lanes(state.sweep_id)
    return [finished.get(st.key) or sweep.out[st.key] for st in all_studies]

