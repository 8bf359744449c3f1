"""Chief/worker tuning that survives a lost worker: heartbeats from the workers, a watchdog on the chief.

KerasTuner's chief serves the oracle over gRPC and exits once no trial is running and every worker has been
told to stop (`keras_tuner.src.distribute.oracle_chief.start_server`). A worker that dies in a trial never
ends the trial nor asks for the next one, so the chief waits for it forever (keras-team/keras-tuner#915).

Here a worker asks the chief for its running trial every few seconds (`Heartbeat`, a `GetTrial` call), and
the chief (`serve`: KerasTuner's own servicer, polled once a second) ends the trial of a worker it has not heard
from for `timeout` seconds as failed, with the message ``lost: ...``, and stops waiting for that worker. A
lost worker that comes back is ignored for that trial and may ask for new ones.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent import futures

import grpc
import keras_tuner
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief
from keras_tuner.src.engine import trial as trial_module

LOST = "lost"  # the first word of a lost trial's message


def heartbeat_interval(timeout: float) -> float:
    """How often a worker reports while it runs a trial: well within the chief's timeout."""
    return max(0.5, min(timeout / 4, 30.0))


class Heartbeat:
    """Worker side: while a trial runs, asks the chief for it every `interval` seconds (a background thread)."""

    def __init__(self, oracle, trial_id: str, interval: float):
        self.oracle = oracle
        self.trial_id = trial_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _beat(self):
        while not self._stop.wait(self.interval):
            try:
                self.oracle.get_trial(self.trial_id)
            except grpc.RpcError:  # the chief is gone or busy: the trial's own calls will tell
                pass


@keras_tuner.synchronized
def _end_lost(oracle, tuner_id: str, message: str) -> str | None:
    """End the running trial of `tuner_id` as failed and stop waiting for that worker; the trial id or None."""
    trial = oracle.ongoing_trials.get(tuner_id)
    if trial is not None:
        trial.status = trial_module.TrialStatus.FAILED
        trial.message = message
        oracle.end_trial(trial)
    oracle.tuner_ids.discard(tuner_id)
    return trial.trial_id if trial is not None else None


class Watchdog:
    """Chief side: when each worker last called the oracle; `check()` ends the trials of silent workers.

    Wraps the oracle's `create_trial`, `update_trial`, `end_trial` and `get_trial` (the calls the gRPC servicer
    makes for the workers) to note the caller; reports about a trial that was already ended as lost are dropped.
    """

    def __init__(self, oracle, timeout: float, clock=time.monotonic):
        self.oracle = oracle
        self.timeout = timeout
        self.clock = clock
        self.last_seen: dict[str, float] = {}
        self.lost: dict[str, str] = {}  # trial id -> tuner id of the worker that lost it
        self.lost_workers: set[str] = set()
        self._lock = threading.Lock()
        create, update, end, get = oracle.create_trial, oracle.update_trial, oracle.end_trial, oracle.get_trial

        def create_trial(tuner_id):
            self._seen(tuner_id)
            return create(tuner_id)

        def update_trial(trial_id, metrics, step=0):
            if trial_id in self.lost:
                return oracle.trials[trial_id]
            self._seen_trial(trial_id)
            return update(trial_id, metrics, step=step)

        def end_trial(trial):
            if trial.trial_id in self.lost:
                return None
            self._seen_trial(trial.trial_id)
            return end(trial)

        def get_trial(trial_id):
            self._seen_trial(trial_id)
            return get(trial_id)

        oracle.create_trial, oracle.update_trial = create_trial, update_trial
        oracle.end_trial, oracle.get_trial = end_trial, get_trial

    def _seen(self, tuner_id: str) -> None:
        with self._lock:
            self.last_seen[tuner_id] = self.clock()

    def _seen_trial(self, trial_id: str) -> None:
        for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
            if trial.trial_id == trial_id:
                self._seen(tuner_id)

    def check(self) -> list[tuple[str, str | None]]:
        """End the trials of the workers silent for longer than the timeout: [(tuner id, trial id or None)]."""
        now = self.clock()
        with self._lock:
            silent = [t for t in list(self.oracle.tuner_ids) if now - self.last_seen.setdefault(t, now) > self.timeout]
        ended = []
        for tuner_id in silent:
            message = f"{LOST}: worker {tuner_id} sent nothing for {self.timeout:g} s (--trial-timeout)"
            trial_id = _end_lost(self.oracle, tuner_id, message)
            self.lost_workers.add(tuner_id)
            if trial_id is not None:
                self.lost[trial_id] = tuner_id
            print(f"[chief] {message}: " + (f"trial {trial_id} ended as failed" if trial_id else "it held no trial"),
                  flush=True)
            ended.append((tuner_id, trial_id))
            with self._lock:
                self.last_seen.pop(tuner_id, None)
        return ended


def serve(oracle, timeout: float | None, poll: float = 1.0) -> Watchdog | None:
    """The chief's part of a search: serve the oracle until every trial has ended and no worker is left.

    KerasTuner's servicer on KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT; with a `timeout` (seconds), the
    watchdog ends the trials of silent workers. Returns once the search is over: every worker was told to stop
    or was lost, and no trial is running.
    """
    watchdog = Watchdog(oracle, timeout) if timeout else None
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}")
    server.start()
    try:
        while True:
            time.sleep(poll)
            if watchdog is not None:
                watchdog.check()
            over = servicer.stop_triggered or (watchdog is not None and watchdog.lost_workers)
            if over and oracle_chief.exit_chief(oracle):
                return watchdog
    finally:
        server.stop(grace=None)
