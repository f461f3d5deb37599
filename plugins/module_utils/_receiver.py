# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The destination side of a live migration (the receiver agent): see _protocol for the phases and the commit point.

The receiver restores the container held: every restored task is stopped before its first instruction (CRIU's
leave-stopped, from runc's CRIU configuration while the restore runs). Only the sender's Commit, or a commit found in
the decision record, lets the tasks run; an Abort, or an abort in the record, deletes the held copy, which never ran.
A copy that was released is never deleted, except when post-copy could not bring it its memory.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Any, Callable

from ansible_collections.ferry.runc.plugins.module_utils import _inspect, _manifest, _options, _transport, _treesync
from ansible_collections.ferry.runc.plugins.module_utils._agent import StatusFile
from ansible_collections.ferry.runc.plugins.module_utils._channel import SHARE_TOKEN, Channel, ChannelError, accept
from ansible_collections.ferry.runc.plugins.module_utils._commands import ProcessRunner, process_start_time
from ansible_collections.ferry.runc.plugins.module_utils._criu import (
    CPUINFO_IMAGE,
    HOLD_LINES,
    cpuinfo_check,
    exclusive_config_section,
    log_excerpt,
    mount_points_under,
    restore_criu_pids,
    tls_args,
    tls_files,
)
from ansible_collections.ferry.runc.plugins.module_utils._criu_stats import restore_stats_or_none
from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError, FerryError, InputError
from ansible_collections.ferry.runc.plugins.module_utils._firewall import peer_only
from ansible_collections.ferry.runc.plugins.module_utils._protocol import (
    RECEIVER_ENDS,
    RECEIVER_TRANSITIONS,
    Abort,
    Commit,
    Done,
    Fetch,
    Fetched,
    Finish,
    Held,
    LazyDone,
    LazyProgress,
    Machine,
    Message,
    PageServer,
    PageServerReady,
    Prepare,
    Prepared,
    ReceiverPhase,
    Released,
    Restore,
    Status,
    StatusReport,
    answer_failed,
    plaintext_problem,
    decode,
    send,
)
from ansible_collections.ferry.runc.plugins.module_utils._runc import RESTORE_LOG, RESTORE_STATS, Runc, restore_argv, runc_error, task_state

R = ReceiverPhase
# Seconds a post-copy restore may go on after its lazy-pages daemon failed, before its CRIU is ended.
LAZY_RESTORE_GRACE = 10.0
# Seconds between the post-copy progress reports to the sender.
LAZY_PROGRESS_SECONDS = 2.0
# While in doubt: how long each wait for a new connection lasts, and for the decision record on the share.
RECONNECT_WAIT = 2.0
RECORD_READ_TIMEOUT = 2.0
RUNC_RESTORE_OUTPUT = "runc-restore.log"
# The link a dump on top of a pre-dump has to it (CRIU's --prev-images-dir, runc's --parent-path).
PARENT_LINK = "parent"


class Receiver:
    def __init__(self, runner: Any, params: dict[str, Any], status: StatusFile) -> None:
        self.runner = runner
        self.params = params
        self.status = status
        self.container = params["container"]
        self.image_dir = params["image_dir"]
        self.work_dir = params["work_dir"]
        self.runc = Runc(runner, params["runc_path"], params["root"])
        self.criu_path = params["criu_path"]
        self.machine = Machine(R.LISTENING, RECEIVER_TRANSITIONS, self._record_phase)
        self.request: Prepare | None = None
        self.created_dirs: list[str] = []
        self.bundle_created = False
        self.page_server_pids: list[int] = []
        self.lazy_daemon: subprocess.Popen | None = None
        self.restored_pid: int | None = None
        self.tls_paths: dict[str, str] = {}
        # What lives as long as the agent once set up: the page servers' firewall rule.
        self.held_open = contextlib.ExitStack()
        self.result: dict[str, Any] = {"container": self.container, "requests": [], "outcome": None}
        self.handlers: dict[type, Callable[[Any, Channel], Message | None]] = {
            Prepare: self._prepare, PageServer: self._page_server, Fetch: self._fetch, Restore: self._restore,
            Commit: self._commit, Abort: self._abort, Finish: self._finish, Status: self._status,
        }

    # -- serving the sender --------------------------------------------------------------------------------------------

    def run(self, listener: socket.socket) -> dict[str, Any]:
        try:
            with tls_files(self.params) as self.tls_paths:
                channel = accept(listener, self.params["secret"], self.params["connect_timeout"], self.params["link_timeout"])
                self._serve(channel)
        except BaseException as exc:  # pylint: disable=broad-except  # every failure, of any type, runs the recovery
            self._recover(exc, listener)
        finally:
            listener.close()
            self._stop_page_servers()
            self.held_open.close()
            self.result["phase"] = self.machine.phase.value
            self.result["phases"] = self.machine.history
        return self.result

    def _serve(self, channel: Channel) -> None:
        """Answer the sender's requests until the migration ends here; a lost connection raises ChannelError."""
        try:
            while self.machine.phase not in RECEIVER_ENDS:
                payload = channel.recv()
                if payload.get("type") == "sync":
                    self._sync(channel, payload)
                    continue
                message = decode(payload)
                began = time.monotonic()
                self._answer(channel, message)
                self.result["requests"].append({"type": message.KIND, "seconds": round(time.monotonic() - began, 3)})
        finally:
            self.result["channel_bytes"] = self.result.get("channel_bytes", 0) + channel.bytes_sent + channel.bytes_received
            channel.close()

    def _answer(self, channel: Channel, message: Message) -> None:
        handler = self.handlers.get(type(message))
        try:
            if handler is None:
                raise InputError(f"{message.KIND} is not a request")
            answer = handler(message, channel)
        except (FerryError, OSError) as exc:
            if isinstance(exc, ChannelError):
                raise
            error = exc if isinstance(exc, FerryError) else CommandError(str(exc))
            answer_failed(channel, error.at(message.KIND).message(), error.log)
            return
        if answer is not None:
            send(channel, answer)

    def _expect(self, message: Message, *phases: ReceiverPhase) -> None:
        if self.machine.phase not in phases:
            raise InputError(f"{message.KIND} is not expected while {self.machine.phase.value}")

    # -- requests ------------------------------------------------------------------------------------------------------

    def _prepare(self, message: Prepare, channel: Channel) -> Prepared:
        """Check everything the restore will need, before the source freezes anything; undo it all on failure."""
        self._expect(message, R.LISTENING)
        try:
            self._check_request(message)
            if message.bundle_sync == "copy":
                self._claim_bundle()
            self._create_directories(message.transport == "shared")
            self._check_cpu(message.cpuinfo)
            # Post-copy over the page-server transport starts no page server here: the lazy dump serves the pages.
            if message.transport == "page-server" and message.strategy != "post-copy":
                self._guard_page_servers(channel)
            if message.transport == "shared":
                self._check_share(message.share_token)
        except (FerryError, OSError):
            self._remove_directories()
            self._release_bundle()
            raise
        self.request = message
        self.result["strategy"] = message.strategy
        self.machine.to(R.PREPARED)
        return Prepared(verify_images=self.params["verify_images"])

    def _guard_page_servers(self, channel: Channel) -> None:
        """The page servers' port accepts only the sender: its CRIU takes the control channel's route to listen_address,
        so it connects from the address that channel came from."""
        self.held_open.enter_context(peer_only(self.runner, self.params["migration_id"], self.params["page_server_port"],
                                               channel.peer_address))

    def _check_request(self, message: Prepare) -> None:
        if message.container != self.container:
            raise InputError(f"this receiver is for container {self.container}, not {message.container}")
        if message.page_stream == "tls" and not self.tls_paths:
            raise InputError("the sender streams pages with TLS, and this receiver has no certificate")
        problem = plaintext_problem(message.page_stream, self.params["page_stream_plaintext"])
        if problem:
            raise InputError(problem)
        if self.runc.state(self.container) is not None:
            raise InputError(f"a container named {self.container} already exists on the destination")
        missing = _inspect.missing_paths(message.bind_sources)
        if missing:
            raise InputError(f"the container binds host paths that do not exist on the destination: {', '.join(missing)}")
        if message.bundle_sync == "shared":
            config = os.path.join(self.params["bundle"], "config.json")
            if not os.path.isfile(config):
                raise InputError(f"the bundle is not reachable on the destination: {config} is missing")
            if _manifest.file_digest(config) != message.bundle_config_digest:
                raise InputError(f"{config} differs from the source's: the bundle is not the same on both hosts")

    def _claim_bundle(self) -> None:
        """The bundle path must be free, or an earlier copy of this container that ferry made (marked as such)."""
        try:
            self.bundle_created = _treesync.claim_tree(self.params["bundle"], {"container": self.container, "migration": self.params["migration_id"]})
        except FileExistsError as exc:
            raise InputError(f"{exc}: refusing to copy the bundle over it") from exc

    def _release_bundle(self) -> None:
        """A rollback removes the bundle only if this migration created it."""
        _treesync.release_tree(self.params["bundle"], self.bundle_created)
        self.bundle_created = False

    def _create_directories(self, shared: bool) -> None:
        """New directories only: everything in them then belongs to this migration."""
        for path in (self.work_dir,) if shared else (self.work_dir, self.image_dir):
            try:
                os.makedirs(path, mode=0o700)
            except FileExistsError as exc:
                raise InputError(f"{path} exists already on the destination; choose another migration id") from exc
            self.created_dirs.append(path)

    def _check_cpu(self, cpuinfo: str) -> None:
        with open(os.path.join(self.work_dir, CPUINFO_IMAGE), "wb") as handle:
            handle.write(base64.b64decode(cpuinfo))
        check = cpuinfo_check(self.runner, self.criu_path, self.work_dir)
        if not check["passed"]:
            raise InputError(
                f"the destination's CPU lacks features of the source's, so the restored processes could crash (criu cpuinfo check: {check['output']})"
            )

    def _check_share(self, token: str | None) -> None:
        try:
            with open(os.path.join(self.image_dir, SHARE_TOKEN), encoding="utf-8") as handle:
                seen = handle.read()
        except OSError:
            seen = None
        if seen != token:
            raise InputError(f"{self.image_dir} on the destination is not the source's image directory: mount the shared directory there")

    def _sync(self, channel: Channel, message: dict[str, Any]) -> None:
        target = message["target"]
        if target == "bundle":
            root = self.params["bundle"]
        elif target.startswith("images/"):
            root = self._image_path(target[len("images/"):])
        else:
            raise ChannelError(f"unknown sync target {target!r}")
        began = time.monotonic()
        try:
            received = _treesync.receive_tree(channel, root, message)
        except OSError as exc:
            # The sender may be mid-stream: report the cause, then end the session (it cannot be resynchronised).
            answer_failed(channel, f"writing {target} on the destination failed: {exc}", [])
            raise ChannelError(f"sync of {target} failed: {exc}") from exc
        self.result["requests"].append({"type": "sync", "target": target, "bytes": received, "seconds": round(time.monotonic() - began, 3)})

    def _image_path(self, directory: str) -> str:
        if not directory or "/" in directory or directory in (".", ".."):
            raise InputError(f"refusing image directory {directory!r}")
        return os.path.join(self.image_dir, directory)

    def _page_server(self, message: PageServer, channel: Channel) -> PageServerReady:
        self._expect(message, R.PREPARED)
        path = self._image_path(message.dir)
        os.makedirs(path, mode=0o700, exist_ok=True)
        pidfile = os.path.join(path, "page-server.pid")
        argv = [self.criu_path, "page-server", "-D", path, "--address", self.params["listen_address"],
                "--port", str(self.params["page_server_port"]), "-d", "--pidfile", pidfile, "-o", "page-server.log"]
        argv += tls_args(self.tls_paths)
        if message.parent:
            argv += ["--prev-images-dir", "../" + os.path.basename(self._image_path(message.parent))]
        rc, out, err = self.runner.run_command(argv, check_rc=False)
        if rc != 0:
            log = os.path.join(path, "page-server.log")
            raise CommandError(f"criu page-server failed: {(err or out).strip()}", log=log_excerpt(log), log_path=log)
        with open(pidfile, encoding="utf-8") as handle:
            self.page_server_pids.append(int(handle.read().strip()))
        return PageServerReady(address=self.params["listen_address"], port=self.params["page_server_port"])

    def _fetch(self, message: Fetch, channel: Channel) -> Fetched:
        """Read a pre-dump round's images from shared storage once, while the container runs: each is hashed, for the
        sender to compare with its own."""
        self._expect(message, R.PREPARED)
        path = self._image_path(message.dir)
        began = time.monotonic()
        found, problems = _manifest.read_back(path, message.sizes)
        if problems:
            raise _images_differ(path, problems)
        return Fetched(manifest=found, size=sum(message.sizes.values()), seconds=round(time.monotonic() - began, 3))

    def _restore(self, message: Restore, channel: Channel) -> Held:
        """Check the images and restore them held; a failed restore leaves no copy and waits for the sender's Abort."""
        self._expect(message, R.PREPARED)
        self.machine.to(R.RESTORING)
        try:
            held = self._restore_held(message)
        except (FerryError, OSError):
            # The restore failed and runc cleaned up after it. Anything else (this agent being stopped) may have left a
            # restore running, whose copy appears held: the phase stays restoring, and nothing under it is removed.
            self.machine.to(R.PREPARED)
            raise
        self.machine.to(R.HELD)
        return held

    def _restore_held(self, message: Restore) -> Held:
        """The restore reads the images where they are (the share, or this host's page-server directory) while a thread
        hashes them: the page cache serves whichever comes second, so the images cross the link once."""
        path = self._image_path(message.dir)
        if self.params["verify_images"] and not message.sizes:
            raise InputError(f"the sender listed no images of {path} to check, and this receiver checks them (verify_images)")
        _parent_name(path)
        work = os.path.join(self.work_dir, "restore")
        if message.lazy:
            work = self._local_copy(path)
            path = work
            self._start_lazy_daemon(work, message.lazy)
        os.makedirs(work, mode=0o700, exist_ok=True)
        argv = restore_argv(self.runc.path, self._restore_params(path, work, bool(message.lazy)))
        check = _ImageCheck(path, message.sizes)
        began = time.monotonic()
        with exclusive_config_section(f"{self.params['migration_id']} hold", HOLD_LINES):
            rc = self._run_lazy_restore(argv, work) if message.lazy else _run_logged(argv, work)
        seconds = time.monotonic() - began
        found, problems = check.result()
        if rc != 0:
            raise self._restore_failure(work, bool(message.lazy))
        self._check_held()
        if problems:
            self._delete_copy()
            raise _images_differ(path, problems, "; the held copy was deleted")
        restore = dict(restore_stats_or_none(os.path.join(work, RESTORE_STATS)) or {}, seconds=round(seconds, 3))
        self.result["restore"] = restore
        return Held(restore=restore, manifest=found, check_seconds=check.seconds)

    def _check_held(self) -> None:
        """Every restored task must be stopped: a copy that runs before the commit could run beside the source's."""
        state = self.runc.state(self.container)
        if state is None:
            raise CommandError("runc restore succeeded but runc knows no container afterwards")
        self.restored_pid = state["pid"]
        self.status.write(restored=_identity(self.restored_pid))
        running = [pid for pid in self.runc.processes(self.container) if task_state(pid) != "T"]
        if running:
            self._delete_copy()
            raise CommandError(f"CRIU did not hold the restored tasks (processes {running} ran); the copy was deleted")

    def _run_lazy_restore(self, argv: list[str], work: str) -> int:
        """runc restore in post-copy mode, watched: once its lazy-pages daemon has failed, CRIU (3.17) can wait for ever
        for tasks it could not finish, and runc for CRIU. Ending that CRIU lets runc fail and clean up after itself."""
        restore_ended = threading.Event()
        watch = threading.Thread(target=self._end_restore_after_daemon_failure, args=(work, restore_ended), daemon=True)
        watch.start()
        try:
            return _run_logged(argv, work)
        finally:
            restore_ended.set()
            watch.join()

    def _end_restore_after_daemon_failure(self, work: str, restore_ended: threading.Event) -> None:
        while self.lazy_daemon.poll() is None:
            if restore_ended.wait(0.2):
                return
        if self.lazy_daemon.returncode == 0 or restore_ended.wait(LAZY_RESTORE_GRACE):
            return
        for pid in restore_criu_pids(work):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.result["ended_restore_criu"] = True

    def _restore_failure(self, work: str, lazy: bool) -> CommandError:
        """The failed restore's error; a post-copy one also stops the lazy-pages daemon and names it when it failed
        first, and unmounts what an ended CRIU left in the work directory (its cgroup yard, which removing the
        directory later would reach through into the host's cgroups)."""
        log = os.path.join(work, RESTORE_LOG)
        with open(os.path.join(work, RUNC_RESTORE_OUTPUT), encoding="utf-8", errors="replace") as handle:
            cause = f"runc restore failed: {runc_error(handle.read())}"
        excerpt = log_excerpt(log)
        if lazy:
            daemon_rc = self.lazy_daemon.poll()
            self._stop_lazy_daemon()
            self._unmount_under(work)
            if daemon_rc not in (None, 0):
                cause += f"; the lazy-pages daemon had failed first (exit code {daemon_rc}): no page could come from the source"
                excerpt += log_excerpt(os.path.join(work, "lazy-pages.log"))
            if self.result.get("ended_restore_criu"):
                cause += f"; CRIU's restore, still waiting {LAZY_RESTORE_GRACE:g} s later, was ended"
        return CommandError(cause, log=excerpt, log_path=log)

    def _restore_params(self, image_path: str, work_path: str, lazy: bool) -> dict[str, Any]:
        params = {"container_id": self.container, "bundle": self.params["bundle"], "image_path": image_path,
                  "work_path": work_path, "detach": True, "lazy_pages": lazy, "root": self.runc.root,
                  "criu_path": self.params["criu_path"]}
        params.update(_options.values(self.request.criu_options))
        return params

    def _local_copy(self, path: str) -> str:
        """Lazy restore needs the images in a local directory that also holds the lazy-pages daemon's socket. A hybrid
        dump's parent link (../preN) then points at that round's images where they are (the share, or this host), still
        relative: the restored tasks open it after entering the container's root, where no host path leads."""
        local = os.path.join(self.work_dir, "lazy")
        if os.path.realpath(path) != os.path.realpath(local):
            shutil.rmtree(local, ignore_errors=True)
            shutil.copytree(path, local, symlinks=True, ignore=_manifest.manifest_files)
            parent = _parent_name(path)
            if parent is not None:
                os.unlink(os.path.join(local, PARENT_LINK))
                os.symlink(os.path.relpath(os.path.join(os.path.dirname(path), parent), local), os.path.join(local, PARENT_LINK))
        return local

    def _start_lazy_daemon(self, directory: str, lazy: dict[str, Any]) -> None:
        argv = [self.criu_path, "lazy-pages", "--page-server", "--address", lazy["address"], "--port", str(lazy["port"]),
                "-D", directory, "-o", "lazy-pages.log"] + tls_args(self.tls_paths)
        # run_command waits for the command's end; the daemon serves pages while the restore runs.
        self.lazy_daemon = subprocess.Popen(  # pylint: disable=consider-using-with,ansible-bad-function
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        socket_path = os.path.join(directory, "lazy-pages.socket")
        deadline = time.monotonic() + 60
        while not os.path.exists(socket_path):
            if self.lazy_daemon.poll() is not None or time.monotonic() > deadline:
                self._stop_lazy_daemon()
                log = os.path.join(directory, "lazy-pages.log")
                raise CommandError("the lazy-pages daemon did not start", log=log_excerpt(log), log_path=log)
            time.sleep(0.1)

    def _commit(self, message: Commit, channel: Channel) -> Released | None:
        """The sender committed: let the held copy run. Asked again after a reconnection, the answer is the same."""
        self._expect(message, R.HELD, R.IN_DOUBT, R.RELEASED, R.TRANSFERRING, R.DONE)
        if self.machine.phase in (R.RELEASED, R.TRANSFERRING, R.DONE):
            return Released(seconds=0.0)
        began = time.monotonic()
        self._release()
        released = Released(seconds=round(time.monotonic() - began, 3))
        if not self.lazy_daemon:
            return released
        send(channel, released)
        self.machine.to(R.TRANSFERRING)
        send(channel, self._await_lazy_daemon(channel))
        return None

    def _release(self) -> None:
        for pid in self.runc.processes(self.container):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.machine.to(R.RELEASED)

    def _await_lazy_daemon(self, channel: Channel | None = None) -> LazyDone:
        """Wait until every page has arrived, telling the sender on channel every few seconds how much has; a failed
        transfer leaves a copy here that reads zeros where its pages were missing, so it is deleted."""
        began = time.monotonic()
        rc = self._wait_lazy_daemon(began, channel)
        seconds = round(time.monotonic() - began, 3)
        self.result["lazy"] = {"rc": rc, "seconds": seconds}
        if rc == 0:
            return LazyDone(ok=True, seconds=seconds)
        self._delete_copy()
        self.machine.to(R.COPY_LOST)
        cause = "timed out" if rc is None else f"exited with {rc}"
        log = os.path.join(self.work_dir, "lazy", "lazy-pages.log")
        return LazyDone(ok=False, seconds=seconds, error=f"the lazy-pages daemon {cause} before every page arrived",
                        log=log_excerpt(log))

    def _wait_lazy_daemon(self, began: float, channel: Channel | None) -> int | None:
        """The lazy-pages daemon's exit code, or None when it ran past the timeout (it is stopped then)."""
        deadline = began + self.params["timeout"]
        while True:
            try:
                return self.lazy_daemon.wait(timeout=max(0.0, min(LAZY_PROGRESS_SECONDS, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    self._stop_lazy_daemon()
                    return None
            channel = self._send_lazy_progress(channel, began)

    def _send_lazy_progress(self, channel: Channel | None, began: float) -> Channel | None:
        """The channel to send the next progress on: None once the sender is gone (the pages still come)."""
        if channel is None:
            return None
        local_bytes = _inspect.cgroup_memory_bytes(self.restored_pid) if self.restored_pid else None
        try:
            send(channel, LazyProgress(local_bytes=local_bytes, seconds=round(time.monotonic() - began, 3)))
        except (ChannelError, OSError):
            return None
        return channel

    def _abort(self, message: Abort, channel: Channel) -> Done:
        """The sender rolled back: the held copy (which never ran) goes; the directories stay with the images."""
        self._expect(message, R.PREPARED, R.HELD, R.IN_DOUBT, R.ABORTED)
        if self.machine.phase in (R.HELD, R.IN_DOUBT):
            self._delete_copy()
        if self.machine.phase != R.ABORTED:
            self._release_bundle()
            self.machine.to(R.ABORTED)
        self.result["outcome"] = "rolled back: " + message.reason
        return Done()

    def _finish(self, message: Finish, channel: Channel) -> Done:
        self._expect(message, R.RELEASED, R.TRANSFERRING)
        if not message.keep_images:
            self._remove_directories()
        self.machine.to(R.DONE)
        self.result["outcome"] = "committed"
        return Done()

    def _status(self, message: Status, channel: Channel) -> StatusReport:
        return StatusReport(phase=self.machine.phase.value)

    # -- when the sender is lost ---------------------------------------------------------------------------------------

    def _recover(self, error: BaseException, listener: socket.socket) -> None:
        phase = self.machine.phase
        self.result["error"] = error.message() if isinstance(error, FerryError) else f"{type(error).__name__}: {error}"
        if phase in (R.LISTENING, R.PREPARED, R.RESTORING):
            # No copy here (a restore that was running when this agent failed finishes held, and the controller
            # removes it): the images stay, a bundle this migration created goes.
            if phase != R.RESTORING:
                self._release_bundle()
            self.machine.to(R.ABORTED)
            self.result["outcome"] = f"no copy was made here: {self.result['error']}"
        elif isinstance(error, ChannelError) and phase in (R.HELD, R.RELEASED, R.TRANSFERRING):
            self._after_lost_sender(listener, error.cause)
        else:
            self.result["outcome"] = f"{phase.value}: {self.result['error']}"
            self.result["failed"] = True

    def _after_lost_sender(self, listener: socket.socket, cause: str) -> None:
        if self.machine.phase == R.HELD:
            self.machine.to(R.IN_DOUBT)
            self._await_decision(listener)
        elif self.machine.phase == R.RELEASED:
            # The sender may not have its answer: it comes back to ask, and to end the migration.
            self._await_decision(listener)
        elif self.machine.phase == R.TRANSFERRING and self.lazy_daemon is not None:
            done = self._await_lazy_daemon() if self.lazy_daemon.returncode is None else None
            if self.machine.phase == R.TRANSFERRING:
                self.machine.to(R.DONE)
            self.result["lazy_done"] = done and done.ok
        phase = self.machine.phase
        self.result["outcome"] = {
            R.IN_DOUBT: f"IN DOUBT: lost the sender ({cause}) while holding the restored copy, which never ran; it stays"
                        " held until the playbook runs again",
            R.ABORTED: f"rolled back after the sender was lost ({cause}): the held copy never ran and was deleted",
            R.RELEASED: f"the container runs here; the sender was lost ({cause}) after the commit",
            R.DONE: f"the container runs here with all its memory; the sender was lost ({cause}) before the end",
            R.COPY_LOST: f"the sender was lost ({cause}) and the copy here could not get its memory, so it was deleted",
        }.get(phase, f"{phase.value} after the sender was lost ({cause})")
        self.result["failed"] = phase not in (R.RELEASED, R.DONE)

    def _await_decision(self, listener: socket.socket) -> None:
        """In doubt: the decision record (shared storage) or the sender on a new connection settles it, within
        indoubt_timeout; otherwise the copy stays held."""
        deadline = time.monotonic() + self.params["indoubt_timeout"]
        while self.machine.phase in (R.IN_DOUBT, R.RELEASED) and time.monotonic() < deadline:
            if self.machine.phase == R.IN_DOUBT and self.request.transport == "shared":
                decision = _transport.read_decision(self.image_dir, RECORD_READ_TIMEOUT)
                if decision == _transport.COMMIT:
                    self._release()
                elif decision == _transport.ABORT:
                    self._delete_copy()
                    self.machine.to(R.ABORTED)
                    return
            try:
                channel = accept(listener, self.params["secret"], RECONNECT_WAIT, self.params["link_timeout"])
            except ChannelError:
                continue
            try:
                self._serve(channel)
            except ChannelError:
                continue

    def _delete_copy(self) -> None:
        """runc delete --force, checked: a copy that is still there after it is a failure, not a deletion."""
        self.runc.run("delete the destination's copy", "delete", "--force", self.container)
        if self.runc.state(self.container) is not None:
            raise CommandError(f"runc delete --force left container {self.container} behind", step="delete the destination's copy")
        self.result["deleted_copy"] = True

    # -- cleanup -------------------------------------------------------------------------------------------------------

    def _remove_directories(self) -> None:
        for path in self.created_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self.created_dirs = []

    def _unmount_under(self, path: str) -> None:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            points = mount_points_under(path, handle.read())
        umount = self.runner.get_bin_path("umount") or "umount"
        for point in points:
            self.runner.run_command([umount, "--lazy", point], check_rc=False)

    def _stop_lazy_daemon(self) -> None:
        if self.lazy_daemon and self.lazy_daemon.poll() is None:
            self.lazy_daemon.kill()
            self.lazy_daemon.wait()

    def _stop_page_servers(self) -> None:
        """Page servers end with their dump; stop those a failed dump left waiting (and only those)."""
        for pid in self.page_server_pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if b"page-server" in handle.read():
                        os.kill(pid, signal.SIGTERM)
            except OSError:
                pass

    def _record_phase(self, phase: ReceiverPhase) -> None:
        self.status.write(phase=phase.value, history=self.machine.history)


class _ImageCheck:
    """The images named in sizes, hashed in a thread from now on (nothing to do when sizes is empty)."""

    def __init__(self, path: str, sizes: dict[str, int]) -> None:
        self.path = path
        self.sizes = sizes
        self.found: _manifest.Manifest = {}
        self.problems: list[str] = []
        self.seconds: float | None = None
        self.thread = threading.Thread(target=self._hash, daemon=True)
        if sizes:
            self.thread.start()

    def _hash(self) -> None:
        began = time.monotonic()
        try:
            self.found, self.problems = _manifest.read_back(self.path, self.sizes)
        except OSError as exc:
            self.problems = [f"reading them failed: {exc}"]
        self.seconds = round(time.monotonic() - began, 3)

    def result(self) -> tuple[_manifest.Manifest, list[str]]:
        if self.sizes:
            self.thread.join()
        return self.found, self.problems


def _images_differ(path: str, problems: list[str], consequence: str = "") -> InputError:
    return InputError(f"images in {path} do not match the source's: " + "; ".join(problems[:5]) + consequence)


def _parent_name(path: str) -> str | None:
    """The pre-dump a dump in path was taken on top of (its parent link is ../NAME), or None; any other link is
    refused, so that nothing the link holds leads the restore out of the migration's directories."""
    link = os.path.join(path, PARENT_LINK)
    if not os.path.islink(link):
        return None
    target = os.readlink(link)
    name = target[len("../"):] if target.startswith("../") else ""
    if not name or "/" in name or name in (".", ".."):
        raise InputError(f"images in {path} name {target!r} as their parent, not a directory beside theirs")
    return name


def _run_logged(argv: list[str], work: str) -> int:
    """runc restore with stdin from /dev/null and its output in a file: never pipes, which a restored container could
    inherit from runc and would lose when this agent ends."""
    with open(os.path.join(work, RUNC_RESTORE_OUTPUT), "ab") as log:
        return subprocess.call(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)  # pylint: disable=ansible-bad-function


def _identity(pid: int) -> dict[str, Any]:
    return {"pid": pid, "start_time": process_start_time(pid)}


def listen(params: dict[str, Any]) -> socket.socket:
    """Listen on the control port; a receiver of an interrupted earlier run may still hold it for a while."""
    deadline = time.monotonic() + params["connect_timeout"]
    while True:
        listener = socket.socket(socket.AF_INET6 if ":" in params["listen_address"] else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((params["listen_address"], params["port"]))
        except OSError as exc:
            listener.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise CommandError(f"listening on {params['listen_address']}:{params['port']} failed: {exc}", step="listen") from exc
            time.sleep(1)
            continue
        listener.listen(4)
        return listener


def run(params: dict[str, Any], status: StatusFile) -> dict[str, Any]:
    """The receiver agent's work (see _agent.main)."""
    receiver = Receiver(ProcessRunner(), params, status)
    try:
        listener = listen(params)
    except FerryError as exc:
        return {"container": params["container"], "failed": True, "error": exc.message(), "phase": R.LISTENING.value,
                "outcome": "no copy was made here"}
    status.write(listening=list(listener.getsockname()[:2]))
    return receiver.run(listener)
