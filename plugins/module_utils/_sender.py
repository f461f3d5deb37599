# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The source side of a live migration (the sender agent): see _protocol for the phases and the commit point.

The container is paused (cgroup freezer) before the final dump and dumped with --leave-running, so it stays frozen
but whole on the source until the commit. Until then any failure resumes it; from then on nothing does.
"""

from __future__ import annotations

import base64
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import time
from typing import Any

from ansible_collections.ferry.runc.plugins.module_utils import _agent, _downtime, _inspect, _manifest, _options, _strategy, _transport, _treesync
from ansible_collections.ferry.runc.plugins.module_utils._agent import StatusFile, read_json
from ansible_collections.ferry.runc.plugins.module_utils._channel import Channel, ChannelError, PeerFailed, connect
from ansible_collections.ferry.runc.plugins.module_utils._commands import ProcessRunner, alive, own_identity
from ansible_collections.ferry.runc.plugins.module_utils._criu import (
    CPUINFO_IMAGE,
    added_config_section,
    config_lock,
    cpuinfo_dump,
    foreign_config_problems,
    log_excerpt,
    tls_config_lines,
    tls_files,
)
from ansible_collections.ferry.runc.plugins.module_utils._criu_stats import dump_stats_or_none
from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError, FerryError, InputError
from ansible_collections.ferry.runc.plugins.module_utils._firewall import peer_only
from ansible_collections.ferry.runc.plugins.module_utils._protocol import (
    SENDER_TRANSITIONS,
    SOURCE_IS_THE_CONTAINER,
    Abort,
    Commit,
    Done,
    Finish,
    LazyDone,
    LazyProgress,
    Machine,
    Prepare,
    Prepared,
    Released,
    SenderPhase,
    page_stream,
    receive,
    request,
)
from ansible_collections.ferry.runc.plugins.module_utils._runc import (
    DUMP_LOG,
    DUMP_STATS,
    LAZY_RUNC_LOG,
    Runc,
    checkpoint_argv,
    read_status,
    runc_error,
    spawn_detached,
)

FINAL = "final"
# Seconds a lazy dump may take to end after the receiver reported every page arrived.
LAZY_DUMP_EXIT_WAIT = 60
# Seconds the guardian may take to start (a Python on a slow host) before the sender gives up, nothing frozen.
GUARDIAN_START_WAIT = 60


class Sender:
    def __init__(self, runner: Any, params: dict[str, Any], status: StatusFile) -> None:
        self.runner = runner
        self.params = params
        self.status = status
        self.container = params["container"]
        self.image_dir = params["image_dir"]
        self.runc = Runc(runner, params["runc_path"], params["root"])
        self.transport = _transport.make(params["transport"])
        self.machine = Machine(SenderPhase.PREPARING, SENDER_TRANSITIONS, self._record_phase)
        self.channel: Channel | None = None
        self.frozen_at: float | None = None
        self.last_round: str | None = None
        self.lazy_dump: subprocess.Popen | None = None
        self.created_image_dir = False
        self.tls_paths: dict[str, str] = {}
        self.bundle_sender: _treesync.TreeSender | None = None
        self.receiver_checks_images = True
        # What every progress line from now on repeats (a controller that follows may miss a single line).
        self.progress_notes: dict[str, Any] = {}
        self.progress_log: list[dict[str, Any]] = []
        # What lives as long as the agent, after its recovery too: the lazy page server's firewall rule.
        self.held_open = contextlib.ExitStack()
        # The strategy asked for, and those auto may switch to after its first round.
        self.possible_strategies = [params["strategy"], *params["candidates"]]
        self.started = time.monotonic()
        self.report: dict[str, Any] = {
            "container": self.container,
            "strategy": params["strategy"],
            "transport": params["transport"],
            "rounds": [],
            "stop_reason": None,
            "downtime_budget_ms": params["downtime_budget_ms"],
            "rolled_back": False,
            "source_deleted": False,
            "tls": bool(params.get("tls_cert")),
            "page_stream": page_stream(params["transport"], self.possible_strategies, bool(params.get("tls_cert"))),
        }

    # -- the migration, step by step ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Migrate; any failure on the way ends in the recovery its phase calls for, and the report says which."""
        try:
            with tls_files(self.params) as self.tls_paths, self._tls_section():
                self._migrate()
        except BaseException as exc:  # pylint: disable=broad-except  # every failure, of any type, runs the recovery
            self._recover(exc)
        finally:
            self.held_open.close()
            if self.channel:
                self.report["channel_bytes"] = self.channel.bytes_sent + self.channel.bytes_received
                self.channel.close()
            self.report["phase"] = self.machine.phase.value
            self.report["phases"] = self.machine.history
            self.report["total_seconds"] = round(time.monotonic() - self.started, 3)
        return self.report

    def _migrate(self) -> None:
        bundle, pid = self._check_container()
        if _strategy.any_lazy(self.possible_strategies):
            self._guard_lazy_port()
        share_token = self._prepare_image_dir()
        self.channel = self._connect()
        self._prepare_receiver(bundle, share_token)
        if self.params["bundle_sync"] == "copy":
            self.machine.to(SenderPhase.COPYING_BUNDLE)
            self._sync_bundle("bundle copy", bundle)
        if self.report["strategy"] in _strategy.PRE_DUMPS:
            self.machine.to(SenderPhase.PRECOPY)
            self._precopy(pid)
        self._predict_downtime(pid)
        self._start_guardian()
        self.machine.to(SenderPhase.FROZEN)
        self._freeze()
        lazy_final_dump = self.report["strategy"] in _strategy.LAZY
        lazy = self._final_lazy_dump() if lazy_final_dump else None
        if not lazy_final_dump:
            self._final_dump()
        self._hand_over(bundle)
        self.machine.to(SenderPhase.RESTORE_REQUESTED)
        held = _transport.restore_checked(self.channel, os.path.join(self.image_dir, FINAL), FINAL, lazy, self.receiver_checks_images)
        self.report["restore"] = held.restore
        if self.receiver_checks_images:
            self.report["final"].update(bytes_checked=sum(entry["size"] for entry in held.manifest.values()), check_seconds=held.check_seconds)
        self._commit()
        if lazy:
            self.machine.to(SenderPhase.TRANSFERRING)
            self._await_pages()
        self._finish()

    def _check_container(self) -> str:
        state = self.runc.state(self.container)
        if state is None or state.get("status") != "running":
            status = "absent" if state is None else state.get("status")
            raise InputError(f"container {self.container} is {status} on the source, not running", step="preflight")
        problems = _inspect.migration_problems(state) + foreign_config_problems()
        if problems:
            raise InputError(f"container {self.container} cannot move: " + "; ".join(problems), step="preflight")
        self.report["bundle"] = state["bundle"]
        return state["bundle"], state["pid"]

    def _guard_lazy_port(self) -> None:
        """The lazy dump's page server accepts only the destination (reaching it from its migration address); set up
        before anything is frozen, so that it costs no downtime and a host without iptables refuses in the preflight."""
        self.held_open.enter_context(peer_only(self.runner, self.params["migration_id"], self.params["lazy_port"],
                                               self.params["receiver_address"]))

    def _prepare_image_dir(self) -> str | None:
        """This migration's image directory (it must be new: everything in it is then ours to remove), with the CPU's
        features for the receiver's check, and what the transport puts there."""
        try:
            os.makedirs(self.image_dir, mode=0o700)
        except FileExistsError as exc:
            raise InputError(f"the image directory {self.image_dir} exists already; choose another migration id", step="preflight") from exc
        self.created_image_dir = True
        cpuinfo_dump(self.runner, self.params["criu_path"], self.image_dir, step="preflight")
        return self.transport.prepare(self.image_dir)

    def _connect(self) -> Channel:
        try:
            return connect(self.params["receiver_address"], self.params["receiver_port"], self.params["secret"],
                           self.params["connect_timeout"], self.params["link_timeout"])
        except ChannelError as exc:
            raise exc.at("connect to the receiver")

    def _prepare_receiver(self, bundle: str, share_token: str | None) -> None:
        with open(os.path.join(self.image_dir, CPUINFO_IMAGE), "rb") as handle:
            cpuinfo = base64.b64encode(handle.read()).decode()
        config = _inspect.read_config(bundle)
        prepared = request(self.channel, Prepare(
            container=self.container,
            strategy=self.report["strategy"],
            transport=self.transport.name,
            bundle_sync=self.params["bundle_sync"],
            bundle_config_digest=_manifest.file_digest(os.path.join(bundle, "config.json")),
            cpuinfo=cpuinfo,
            share_token=share_token,
            criu_options=_options.values(self.params),
            bind_sources=_inspect.bind_sources(config),
            page_stream=self.report["page_stream"],
        ), Prepared)
        self.receiver_checks_images = prepared.verify_images

    def _sync_bundle(self, step: str, bundle: str) -> None:
        """The running pass, then the frozen one: one TreeSender remembers what it read, so the second resends every file
        that changed since, however its size and mtime look."""
        began = time.monotonic()
        if self.bundle_sender is None:
            self.bundle_sender = _treesync.TreeSender(bundle)
        sent = self.bundle_sender.send(self.channel, "bundle", delete_extra=True)
        self.report.setdefault("bundle_sync", []).append(
            {"step": step, "bytes": sent, "skipped": self.bundle_sender.skipped, "seconds": round(time.monotonic() - began, 3)}
        )

    def _precopy(self, pid: int) -> None:
        rounds = self.report["rounds"]
        parent = None
        while True:
            number = len(rounds) + 1
            directory = f"pre{number}"
            self._progress(f"pre-dump round {number}")
            began = time.time()
            stats = self._checkpoint(
                f"pre-dump round {number}", directory, pre_dump=True, parent_path=_parent_path(parent),
                page_server=self.transport.dump_target(self.channel, directory, parent),
            )
            record = _round_record(number, began, stats)
            record.update(self.transport.after_round(self.channel, os.path.join(self.image_dir, directory), directory))
            rounds.append(record)
            prediction = self._prediction()
            record["predicted_downtime_ms"] = prediction["total_ms"]
            self._progress(f"pre-dump round {number} done", pages_written=record["pages_written"],
                           predicted_downtime_ms=record["predicted_downtime_ms"])
            parent = directory
            if self.params["candidates"] and number == 1:
                self._choose_by_model(pid)
                if self.report["strategy"] not in _strategy.PRE_DUMPS:
                    return
                prediction = self._prediction()
            reason = _strategy.stop_reason(self.report["strategy"], rounds, prediction, self.params["downtime_budget_ms"],
                                           self.params["max_rounds"], self.params["min_rounds"], self.params["min_shrink"])
            if reason:
                self.report["stop_reason"] = reason
                self.last_round = parent
                return

    def _choose_by_model(self, pid: int) -> None:
        """auto, after its first pre-dump round: the strategy the model predicts the shortest downtime for, among
        those both hosts support; without a whole prediction for each of them the one chosen by the features stays."""
        memory_bytes = _inspect.cgroup_memory_bytes(pid)
        predictions = {strategy: self._prediction(memory_bytes, strategy) for strategy in self.params["candidates"]}
        strategy, why = _strategy.by_model(predictions, self.report["strategy"])
        self.report.update(strategy=strategy, strategy_reason=why,
                           strategy_predictions_ms={name: each["total_ms"] for name, each in predictions.items()})
        self._progress(f"auto: {strategy}", why=why)

    def _prediction(self, memory_bytes: int | None = None, strategy: str | None = None) -> dict[str, Any]:
        """The downtime predicted for a freeze now with this strategy (the migration's by default); only strategies
        with pre-dump rounds predict from this migration's rounds."""
        strategy = strategy or self.report["strategy"]
        rounds = self.report["rounds"] if strategy in _strategy.PRE_DUMPS else []
        return _downtime.predict(strategy, self.transport.name, rounds, self.params["learned_costs"], memory_bytes)

    def _predict_downtime(self, pid: int) -> None:
        """Just before the freeze: the prediction the report holds against the downtime, and a warning when it is over
        the budget (a goal, not a condition: the migration goes on)."""
        self.report["memory_bytes"] = _inspect.cgroup_memory_bytes(pid)
        memory_bytes = None if self.last_round else self.report["memory_bytes"]
        predicted = self.report["predicted_downtime"] = self._prediction(memory_bytes)
        budget = self.params["downtime_budget_ms"]
        if predicted["total_ms"] is not None and predicted["total_ms"] > budget:
            largest = predicted["largest_term"]
            self.progress_notes["over_budget"] = (
                f"predicted downtime {predicted['total_ms']:.0f} ms is over the budget of {budget} ms (largest term:"
                f" {_downtime.term_label(largest)} {predicted['terms_ms'][largest]:.0f} ms); migrating anyway"
            )
            self._progress("over the downtime budget")

    def _start_guardian(self) -> None:
        """Before anything is frozen: a process of its own that resumes the container if this one dies uncommitted."""
        params = {key: self.params[key] for key in ("container", "image_dir", "transport", "runc_path", "root", "timeout")}
        params["sender"] = dict(own_identity(), session=os.getsid(0))
        self.report["guardian"] = _agent.launch(self.runner, os.path.dirname(self.status.path), "guardian", params,
                                                self.params["launcher"])
        self._await_guardian(self.report["guardian"]["status_path"])

    @staticmethod
    def _await_guardian(status_path: str) -> None:
        """Nothing is frozen before the guardian runs: once it has recorded itself, a death of this sender is seen
        (by the guardian, which resumes the container, and by the controller, which waits for its account)."""
        deadline = time.monotonic() + GUARDIAN_START_WAIT
        while not alive((read_json(status_path) or {}).get("agent")):
            if time.monotonic() > deadline:
                raise CommandError(f"the guardian did not start within {GUARDIAN_START_WAIT} s", step="starting the guardian")
            time.sleep(0.05)

    def _freeze(self) -> None:
        """The freeze counts from before runc pause: a failure while it runs (a signal) may follow a pause that took."""
        self.frozen_at = time.monotonic()
        self.report["frozen_at"] = time.time()
        self.runc.run("pause the container on the source", "pause", self.container)
        self._progress("frozen")

    def _final_dump(self) -> None:
        parent = self.last_round
        with config_lock(exclusive=False):
            stats = self._checkpoint("final dump", FINAL, leave_running=True, parent_path=_parent_path(parent),
                                     page_server=self.transport.dump_target(self.channel, FINAL, parent))
        self.report["final"] = _round_record(0, self.report["frozen_at"], stats)

    def _final_lazy_dump(self) -> dict[str, Any]:
        """Post-copy and hybrid: dump everything but memory, which the source's CRIU then serves until the destination
        has it all (hybrid: only the pages dirtied since the last pre-dump round; the others the restore reads from
        that round's images). That CRIU thaws the cgroup and holds the tasks itself, so the container is paused again:
        if the CRIU dies (or is killed) its tasks stay frozen instead of running beside the destination's copy."""
        path = os.path.join(self.image_dir, FINAL)
        os.makedirs(path, mode=0o700, exist_ok=True)
        address, port = self.params["lazy_address"], self.params["lazy_port"]
        with config_lock(exclusive=False):
            self.lazy_dump = self._start_lazy_dump(path, f"{address}:{port}")
        self.status.write(lazy_dump={"pgid": self.lazy_dump.pid})
        self.runc.run("freeze the source again after its lazy dump", "pause", self.container)
        self.report["final"] = {"started_at": self.report["frozen_at"], "images_ready_seconds": round(time.monotonic() - self.frozen_at, 3)}
        return {"address": address, "port": port}

    def _start_lazy_dump(self, path: str, page_server: str) -> subprocess.Popen:
        params = self._checkpoint_params(path, leave_running=True, lazy_pages=True, page_server=page_server,
                                         parent_path=_parent_path(self.last_round))
        argv = checkpoint_argv(self.runc.path, params)
        read_end, write_end = os.pipe()
        try:
            process = spawn_detached(argv, os.path.join(path, LAZY_RUNC_LOG), write_end)
        finally:
            os.close(write_end)
        try:
            ready = read_status(read_end, self.params["timeout"])
        finally:
            os.close(read_end)
        if not ready:
            self.lazy_dump = process
            self._stop_lazy_dump()
            raise CommandError("runc checkpoint --lazy-pages ended before its images were ready", step="lazy final dump",
                               log=log_excerpt(os.path.join(path, DUMP_LOG)), log_path=os.path.join(path, DUMP_LOG))
        return process

    def _hand_over(self, bundle: str) -> None:
        """Inside the frozen window: the final images themselves (page server) and the bundle's changes, so that the
        receiver can restore at once."""
        self.report["final"].update(self.transport.hand_over(self.channel, os.path.join(self.image_dir, FINAL), FINAL))
        if self.params["bundle_sync"] == "copy":
            self._sync_bundle("bundle update (frozen)", bundle)

    def _commit(self) -> None:
        """The commit point: recorded here first (the guardian reads it), then on the shared directory, then told."""
        self.machine.to(SenderPhase.COMMITTED)
        self.transport.record(self.image_dir, _transport.COMMIT)
        try:
            released = request(self.channel, Commit(), Released)
        except ChannelError as exc:
            released = self._reach_committed_receiver(exc)
        self.report["release_seconds"] = released.seconds
        self.report["downtime_ms"] = round((time.monotonic() - self.frozen_at) * 1000)
        self.machine.to(SenderPhase.RELEASED)
        self._progress("released", downtime_ms=self.report["downtime_ms"])

    def _reach_committed_receiver(self, lost: ChannelError) -> Released:
        """Committed, but the receiver's answer is lost: tell it again on a new connection until it answers or the
        in-doubt time runs out; the source stays frozen all along (it is no longer the container)."""
        deadline = time.monotonic() + self.params["indoubt_timeout"]
        while time.monotonic() < deadline:
            try:
                self._reconnect(deadline)
                return request(self.channel, Commit(), Released)
            except PeerFailed as exc:
                raise InDoubt(f"the receiver did not confirm the commit ({lost.cause}) and then answered: {exc.cause}") from exc
            except ChannelError:
                continue
        raise InDoubt(f"the receiver did not confirm the commit ({lost.cause}) and could not be reached again within"
                      f" {self.params['indoubt_timeout']} s")

    def _reconnect(self, deadline: float) -> None:
        self.channel.close()
        self.channel = connect(self.params["receiver_address"], self.params["receiver_port"], self.params["secret"],
                               max(0.1, deadline - time.monotonic()), self.params["link_timeout"])

    def _await_pages(self) -> None:
        """Post-copy, after the release: wait until the destination has every page. The receiver says so; the lazy
        dump ends once it served them all (its exit code decides when the control channel went silent)."""
        self.channel.settimeout(self.params["timeout"])
        try:
            done = self._receive_lazy_done()
        except ChannelError as exc:
            done = LazyDone(ok=False, seconds=0.0, error=f"the receiver went silent ({exc.cause})")
            source_rc = self._lazy_dump_exit(self.params["timeout"])
        else:
            source_rc = self._lazy_dump_exit(LAZY_DUMP_EXIT_WAIT if done.ok else 1)
        finally:
            self.channel.settimeout(None)
        self.report["lazy"] = {"ok": done.ok, "seconds": done.seconds, "source_rc": source_rc}
        self.report["lazy"].update(_lazy_page_counts(os.path.join(self.image_dir, FINAL, DUMP_STATS)))
        if not done.ok and source_rc != 0:
            raise LostAfterCommit(done.error, log=done.log)

    def _receive_lazy_done(self) -> LazyDone:
        """The receiver's LazyDone; each LazyProgress before it becomes a progress line: the pages still missing."""
        while True:
            message = receive(self.channel, LazyDone, LazyProgress)
            if isinstance(message, LazyDone):
                return message
            self._progress("post-copy transfer", **_downtime.lazy_progress(self.report["memory_bytes"], message.local_bytes))

    def _lazy_dump_exit(self, wait: float) -> int:
        try:
            return self.lazy_dump.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return self._stop_lazy_dump()

    def _finish(self) -> None:
        self.runc.run("delete the source copy", "delete", "--force", self.container)
        self.report["source_deleted"] = True
        self.machine.to(SenderPhase.DONE)
        self.report["completed_seconds"] = round(time.monotonic() - self.started, 3)
        try:
            request(self.channel, Finish(keep_images=self.params["keep_images"]), Done)
        except ChannelError as exc:
            self.report["finish_unconfirmed"] = f"the receiver did not confirm the end ({exc.cause}); its directories are kept"
        if not self.params["keep_images"]:
            shutil.rmtree(self.image_dir, ignore_errors=True)
            self.report["images_removed"] = True

    # -- recovery ------------------------------------------------------------------------------------------------------

    def _recover(self, error: BaseException) -> None:
        """What a failure calls for depends only on the phase: before the commit the source's copy runs on (resumed,
        or never frozen) and the receiver drops whatever it holds; after it nothing resumes the source."""
        phase = self.machine.phase
        self.report["failed"] = True
        self.report["error"] = _describe(error, phase)
        if phase in SOURCE_IS_THE_CONTAINER:
            self._roll_back(error)
        elif isinstance(error, LostAfterCommit):
            self._keep_frozen_after_loss()
        elif phase == SenderPhase.COMMITTED:
            self.machine.to(SenderPhase.IN_DOUBT)
            self.report["recovery"] = (
                f"IN DOUBT: the migration was committed but the destination's release was not confirmed. The container"
                f" is frozen on the source and held or running on the destination; run the playbook again (it releases"
                f" the destination's copy and deletes the source's), images kept in {self.image_dir}"
            )
        else:
            self._after_release(error)

    def _roll_back(self, error: BaseException) -> None:
        """The source's copy runs first (the downtime ends there), then the receiver is told to drop what it holds."""
        restore_requested = self.machine.phase == SenderPhase.RESTORE_REQUESTED
        if self.frozen_at is not None:
            self.transport.record(self.image_dir, _transport.ABORT)
        resumed = self._resume_source()
        self.machine.to(SenderPhase.ROLLED_BACK)
        told = self._tell_receiver(Abort(reason=str(error)), holds_a_copy=restore_requested)
        if self.frozen_at is None and not self.report["rounds"]:
            self._remove_image_dir_before_any_dump()
        self.report["rolled_back"] = self.frozen_at is not None and resumed
        if self.frozen_at is None:
            self.report["recovery"] = "nothing was frozen; the container kept running on the source"
        elif resumed:
            self.report["recovery"] = "the container was resumed on the source from the moment it was frozen"
        else:
            self.report["recovery"] = (
                f"ROLLBACK FAILED: the container is still frozen on the source with its images kept in {self.image_dir}:"
                f" run 'runc resume {self.container}' there"
            )
        if not told and restore_requested:
            self.report["recovery"] += (
                "; the destination could not be told to drop the copy it may hold (held, it never ran): run the"
                " playbook again to remove it"
            )

    def _remove_image_dir_before_any_dump(self) -> None:
        if self.created_image_dir:
            shutil.rmtree(self.image_dir, ignore_errors=True)
            self.created_image_dir = False

    def _resume_source(self) -> bool:
        """Run the source's copy again (a no-op when it never froze); False when it stays frozen."""
        if self.frozen_at is None:
            return True
        if self.lazy_dump:
            self._stop_lazy_dump()
        try:
            if self.runc.status(self.container) == "paused":
                self.runc.run("resume the container on the source (rollback)", "resume", self.container)
            return self.runc.copy_status(self.container) == "running"
        except FerryError:
            return False

    def _tell_receiver(self, message: Abort, holds_a_copy: bool) -> bool:
        """Best effort: the receiver also learns the outcome from the decision record, or from the controller. Only a
        receiver that may hold a copy is worth reaching again over a new connection."""
        if not self.channel:
            return False
        try:
            request(self.channel, message, Done)
            return True
        except (FerryError, OSError):
            return holds_a_copy and self._tell_receiver_again(message)

    def _tell_receiver_again(self, message: Abort) -> bool:
        deadline = time.monotonic() + self.params["indoubt_timeout"]
        while time.monotonic() < deadline:
            try:
                self._reconnect(deadline)
                request(self.channel, message, Done)
                return True
            except (FerryError, OSError):
                continue
        return False

    def _keep_frozen_after_loss(self) -> None:
        """Post-copy: the destination's copy ran and lost its memory (the receiver deletes it). The source's copy is
        frozen at the moment of the freeze; resuming it would undo what the destination's copy did, so it waits."""
        self._stop_lazy_dump()
        self.machine.to(SenderPhase.LOST_AFTER_COMMIT)
        self.report["recovery"] = (
            f"the destination's copy ran from its restore on and lost the pages it still needed, so it is gone. The"
            f" container is frozen on the source at the moment of the freeze, images kept in {self.image_dir}; to run it"
            f" again from there (what the destination's copy did meanwhile is lost): runc resume {self.container}"
        )

    def _after_release(self, error: BaseException) -> None:
        """Released: the destination runs the container, and a failure now leaves only cleanup undone. In post-copy the
        source's copy stays while its lazy dump may still serve pages."""
        serving = self.lazy_dump is not None and self.lazy_dump.poll() is None
        if not self.report["source_deleted"] and not serving and self.runc.status(self.container) == "paused":
            try:
                self.runc.run("delete the source copy", "delete", "--force", self.container)
                self.report["source_deleted"] = True
            except FerryError:
                pass
        if self.report["source_deleted"] and self.machine.phase != SenderPhase.DONE:
            self.machine.to(SenderPhase.DONE)
        self.report["recovery"] = "the destination runs the container"
        if not self.report["source_deleted"]:
            self.report["recovery"] += f"; the source's frozen copy is left: delete it with runc delete --force {self.container}"

    def _stop_lazy_dump(self) -> int:
        """End the lazy dump: runc and its CRIU (its session); CRIU holds the tasks while it serves pages. The session
        outlives runc, so it is killed even when runc has exited."""
        try:
            os.killpg(self.lazy_dump.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.lazy_dump.wait()

    # -- helpers -------------------------------------------------------------------------------------------------------

    def _checkpoint(self, step: str, directory: str, **options: Any) -> dict[str, Any]:
        """One runc checkpoint (pre-dump or final) into image_dir/directory; returns CRIU's stats and the time it took."""
        path = os.path.join(self.image_dir, directory)
        os.makedirs(path, mode=0o700, exist_ok=True)
        argv = checkpoint_argv(self.runc.path, self._checkpoint_params(path, **options))
        began = time.monotonic()
        rc, out, err = self.runner.run_command(argv, check_rc=False)
        seconds = time.monotonic() - began
        if rc != 0:
            # runc names CRIU's log dump.log for pre-dumps too.
            log = os.path.join(path, DUMP_LOG)
            raise CommandError(runc_error(err or out), step=step, log=log_excerpt(log), log_path=log)
        stats = dump_stats_or_none(os.path.join(path, DUMP_STATS)) or {}
        return dict(stats, seconds=round(seconds, 3))

    def _checkpoint_params(self, path: str, **options: Any) -> dict[str, Any]:
        params = {"container_id": self.container, "image_path": path, "work_path": path, "root": self.runc.root,
                  "criu_path": self.params["criu_path"]}
        params.update(_options.values(self.params))
        params.update(options)
        return params

    def _tls_section(self) -> Any:
        """runc's CRIU gets the TLS options from its configuration file, for as long as this migration runs."""
        if not self.tls_paths:
            return contextlib.nullcontext()
        return added_config_section(f"{self.params['migration_id']} tls", tls_config_lines(self.tls_paths))

    def _record_phase(self, phase: SenderPhase) -> None:
        """Each phase is also a progress of its own: the follower shows a line for it."""
        self.status.write(phase=phase.value, history=self.machine.history, **self._progress_fields())

    def _progress(self, step: str, **numbers: Any) -> None:
        self.status.write(**self._progress_fields(step=step, **numbers))

    def _progress_fields(self, **numbers: Any) -> dict[str, Any]:
        """The latest progress, and every one so far in order (a follower that polls seldom still shows each round)."""
        entry = dict(self.progress_notes, **numbers, phase=self.machine.phase.value,
                     seconds=round(time.monotonic() - self.started, 1), index=len(self.progress_log) + 1)
        self.progress_log.append(entry)
        return {"progress": entry, "progress_log": self.progress_log}


class InDoubt(FerryError):
    """Committed, and the receiver's release was never confirmed."""


class LostAfterCommit(FerryError):
    """Post-copy: the destination's copy failed to get its memory after it ran."""


# What the sender was doing in each phase, for an error that does not name its step itself.
STEPS = {
    SenderPhase.PREPARING: "preparing the migration",
    SenderPhase.COPYING_BUNDLE: "copying the bundle",
    SenderPhase.PRECOPY: "pre-copy",
    SenderPhase.FROZEN: "the final dump and hand-over",
    SenderPhase.RESTORE_REQUESTED: "waiting for the destination's restore",
    SenderPhase.COMMITTED: "the commit",
    SenderPhase.RELEASED: "ending the migration",
    SenderPhase.TRANSFERRING: "the post-copy page transfer",
}


def _describe(error: BaseException, phase: SenderPhase) -> str:
    step = STEPS.get(phase, phase.value)
    if isinstance(error, PeerFailed):
        return error.message()
    if isinstance(error, FerryError):
        return error.at(step).message()
    return f"{step} failed on {platform.node()}: {type(error).__name__}: {error}"


def _parent_path(directory: str | None) -> str | None:
    """runc's --parent-path for a dump on top of this pre-dump directory: relative, as runc requires."""
    return f"../{directory}" if directory else None


def _lazy_page_counts(stats_path: str) -> dict[str, int]:
    """What the lazy dump wrote at its end: the pages the destination fetched lazily and, after pre-dump rounds, the
    pages its restore read from their images instead; nothing where CRIU did not count the memory it scanned (3.17
    writes zeros for a lazy dump), since zeros would then claim that nothing moved."""
    stats = dump_stats_or_none(stats_path) or {}
    if not stats.get("pages_scanned"):
        return {}
    return {key: stats[key] for key in ("pages_lazy", "pages_skipped_parent") if key in stats}


def _round_record(number: int, started_at: float, stats: dict[str, Any]) -> dict[str, Any]:
    pages = stats.get("pages_written", 0)
    return {
        "round": number,
        "started_at": started_at,
        "seconds": stats["seconds"],
        "pages_scanned": stats.get("pages_scanned", 0),
        "pages_skipped_parent": stats.get("pages_skipped_parent", 0),
        "pages_written": pages,
        "bytes_written": pages * _downtime.PAGE_SIZE,
        "write_seconds": stats.get("memwrite_time", 0) / 1e6,
        "frozen_ms": round(stats.get("frozen_time", 0) / 1000, 1),
    }


def run(params: dict[str, Any], status: StatusFile) -> dict[str, Any]:
    """The sender agent's work (see _agent.main)."""
    return Sender(ProcessRunner(), params, status).run()
