# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The destination side of a live migration: serves the sender's requests until it commits or rolls back.

Requests (each answered 'ok' or 'failed'): prepare, sync (a directory tree), page_server (start a CRIU page
server for one image directory), fetch (read and check a finished pre-dump now), restore, commit, rollback.
A restored copy is only ever deleted on the sender's explicit rollback: if the connection drops after a
restore, the copy keeps running, since the source may already have deleted its own.
"""

from __future__ import annotations

import base64
import errno
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from ansible_collections.ferry.runc.plugins.module_utils import _manifest, _treesync
from ansible_collections.ferry.runc.plugins.module_utils._channel import SHARE_TOKEN, Channel, ChannelError, accept
from ansible_collections.ferry.runc.plugins.module_utils._criu import (
    log_excerpt,
    mount_points_under,
    restore_criu_pids,
    tls_args,
    tls_files,
)
from ansible_collections.ferry.runc.plugins.module_utils._criu_stats import read_restore_stats
from ansible_collections.ferry.runc.plugins.module_utils._runc import DEFAULT_ROOT, RESTORE_LOG, container_state, restore_argv, runc_error

# Seconds a post-copy restore may go on after its lazy-pages daemon failed, before its CRIU is ended.
LAZY_RESTORE_GRACE = 10.0


class RequestFailed(Exception):
    def __init__(self, cause: str, log: list[str] | None = None) -> None:
        super().__init__(cause)
        self.log = log or []


class Receiver:
    def __init__(self, module: Any, params: dict[str, Any], runc_path: str, criu_path: str) -> None:
        self.module = module
        self.params = params
        self.runc_path = runc_path
        self.criu_path = criu_path
        self.container = params["container"]
        self.root = params["root"] or DEFAULT_ROOT
        self.image_dir = params["image_dir"]
        self.work_dir = params["work_dir"]
        self.restored = False
        self.page_server_pids: list[int] = []
        self.lazy_daemon: subprocess.Popen | None = None
        self.created_dirs: list[str] = []
        self.tls_paths: dict[str, str] = {}
        self.result: dict[str, Any] = {"container": self.container, "requests": [], "outcome": None}

    def listen(self) -> socket.socket:
        """Listen on the control port; a receiver of an interrupted earlier run may still hold it for a while."""
        deadline = time.monotonic() + self.params["connect_timeout"]
        while True:
            listener = socket.socket(socket.AF_INET6 if ":" in self.params["listen_address"] else socket.AF_INET)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((self.params["listen_address"], self.params["port"]))
            except OSError as exc:
                listener.close()
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(1)
                continue
            listener.listen(1)
            return listener

    def run(self, listener: socket.socket) -> dict[str, Any]:
        try:
            channel = accept(listener, self.params["secret"], self.params["connect_timeout"])
        finally:
            listener.close()
        try:
            with tls_files(self.params) as self.tls_paths:
                self._serve(channel)
        except ChannelError as exc:
            self.result["outcome"] = "connection lost: " + str(exc)
            if self.restored and self.lazy_incomplete():
                # Pages are missing: this copy cannot run correctly, while the source still holds its frozen copy.
                self._stop_lazy_daemon()
                self._delete_copy()
                self.result["outcome"] += "; the post-copy transfer was incomplete, so the restored copy was deleted"
            elif self.restored:
                self.result["outcome"] += "; the restored container keeps running here (the source may have deleted its copy)"
        finally:
            self._stop_page_servers()
            self.result["channel_bytes"] = channel.bytes_sent + channel.bytes_received
            channel.close()
        return self.result

    def _serve(self, channel: Channel) -> None:
        handlers = {
            "prepare": self._prepare,
            "page_server": self._page_server,
            "fetch": self._fetch,
            "restore": self._restore,
        }
        while True:
            message = channel.recv()
            kind = message["type"]
            if kind == "sync":
                self._sync(channel, message)
            elif kind in ("commit", "rollback"):
                self._end(channel, kind, message)
                return
            else:
                began = time.monotonic()
                self._answer(channel, handlers.get(kind), message)
                self.result["requests"].append({"type": kind, "seconds": round(time.monotonic() - began, 3)})

    @staticmethod
    def _answer(channel: Channel, handler: Any, message: dict[str, Any]) -> None:
        """Run a request's handler and answer 'ok' with what it returns (None: it answered itself) or 'failed'."""
        if handler is None:
            channel.send("failed", error=f"unknown request {message['type']!r}")
            return
        try:
            answer = handler(message, channel)
        except (RequestFailed, OSError) as exc:
            channel.send("failed", error=str(exc), log=getattr(exc, "log", []))
            return
        if answer is not None:
            channel.send("ok", **answer)

    # -- requests ---------------------------------------------------------------------------------------

    def _prepare(self, message: dict[str, Any], channel: Channel) -> dict[str, Any]:
        """Check everything the restore will need, before the source freezes anything; undo it all on failure."""
        try:
            self._check_request(message)
            self._create_directories(message["transport"] == "shared")
            self._check_cpu(message["cpuinfo"])
            if message["transport"] == "shared":
                self._check_share(message["share_token"])
        except (RequestFailed, OSError):
            self._remove_directories()
            raise
        self.result["strategy"] = message["strategy"]
        return {}

    def _check_request(self, message: dict[str, Any]) -> None:
        if message["container"] != self.container:
            raise RequestFailed(f"this receiver is for container {self.container}, not {message['container']}")
        if container_state(self.module, self.runc_path, self.root, self.container) is not None:
            raise RequestFailed(f"a container named {self.container} already exists on the destination")
        if message["bundle_sync"] == "shared":
            config = os.path.join(self.params["bundle"], "config.json")
            if not os.path.isfile(config):
                raise RequestFailed(f"the bundle is not reachable on the destination: {config} is missing")
            if _manifest.file_sha256(config) != message["bundle_config_sha256"]:
                raise RequestFailed(f"{config} differs from the source's: the bundle is not the same on both hosts")

    def _create_directories(self, shared: bool) -> None:
        """New directories only: everything in them then belongs to this migration."""
        for path in (self.work_dir,) if shared else (self.work_dir, self.image_dir):
            try:
                os.makedirs(path, mode=0o700)
            except FileExistsError as exc:
                raise RequestFailed(f"{path} exists already on the destination; choose another migration id") from exc
            self.created_dirs.append(path)

    def _check_cpu(self, cpuinfo: str) -> None:
        with open(os.path.join(self.work_dir, "cpuinfo.img"), "wb") as handle:
            handle.write(base64.b64decode(cpuinfo))
        rc, out, err = self.module.run_command([self.criu_path, "cpuinfo", "check", "-D", self.work_dir], check_rc=False)
        if rc != 0:
            raise RequestFailed(
                f"the destination's CPU lacks features of the source's, so the restored processes could crash (criu cpuinfo check: {(err or out).strip()})"
            )

    def _check_share(self, token: str) -> None:
        path = os.path.join(self.image_dir, SHARE_TOKEN)
        try:
            with open(path) as handle:
                seen = handle.read()
        except OSError:
            seen = None
        if seen != token:
            raise RequestFailed(f"{self.image_dir} on the destination is not the source's image directory: mount the shared directory there")

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
            channel.send("failed", error=f"writing {target} on the destination failed: {exc}")
            raise ChannelError(f"sync of {target} failed: {exc}") from exc
        self.result["requests"].append({"type": "sync", "target": target, "bytes": received, "seconds": round(time.monotonic() - began, 3)})

    def _image_path(self, directory: str) -> str:
        if not directory or "/" in directory or directory in (".", ".."):
            raise RequestFailed(f"refusing image directory {directory!r}")
        return os.path.join(self.image_dir, directory)

    def _page_server(self, message: dict[str, Any], channel: Channel) -> dict[str, Any]:
        path = self._image_path(message["dir"])
        os.makedirs(path, mode=0o700, exist_ok=True)
        pidfile = os.path.join(path, "page-server.pid")
        argv = [self.criu_path, "page-server", "-D", path, "--address", self.params["listen_address"],
                "--port", str(self.params["page_server_port"]), "-d", "--pidfile", pidfile, "-o", "page-server.log"]
        argv += tls_args(self.tls_paths)
        if message.get("parent"):
            argv += ["--prev-images-dir", "../" + os.path.basename(self._image_path(message["parent"]))]
        rc, out, err = self.module.run_command(argv, check_rc=False)
        if rc != 0:
            raise RequestFailed(f"criu page-server failed: {(err or out).strip()}", log_excerpt(os.path.join(path, "page-server.log")))
        with open(pidfile) as handle:
            self.page_server_pids.append(int(handle.read().strip()))
        return {"address": self.params["listen_address"], "port": self.params["page_server_port"]}

    def _fetch(self, message: dict[str, Any], channel: Channel) -> dict[str, Any]:
        """Read and check a pre-dump's images from shared storage; reading also warms the page cache for restore."""
        path = self._image_path(message["dir"])
        began = time.monotonic()
        problems = _manifest.verify(path, message["manifest"])
        if problems:
            raise RequestFailed(f"images in {path} do not match the source's manifest: " + "; ".join(problems[:5]))
        size = sum(entry["size"] for entry in message["manifest"].values())
        return {"bytes": size, "seconds": round(time.monotonic() - began, 3)}

    def _restore(self, message: dict[str, Any], channel: Channel) -> dict[str, Any] | None:
        """Check the images and restore; in post-copy mode also report when the last page has arrived."""
        path = self._image_path(message["dir"])
        lazy = message.get("lazy")
        if self.params["verify_images"]:
            problems = _manifest.verify(path, message["manifest"])
            if problems:
                raise RequestFailed(f"images in {path} do not match the source's manifest: " + "; ".join(problems[:5]))
        work = os.path.join(self.work_dir, "restore")
        if lazy:
            work = self._local_copy(path)
            path = work
            self._start_lazy_daemon(work, lazy)
        os.makedirs(work, mode=0o700, exist_ok=True)
        began = time.monotonic()
        argv = restore_argv(self.runc_path, self._restore_params(path, work, bool(lazy)))
        rc, out, err = self._run_lazy_restore(argv, work) if lazy else self.module.run_command(argv, check_rc=False)
        seconds = time.monotonic() - began
        if rc != 0:
            raise self._restore_failure(work, f"runc restore failed: {runc_error(err or out)}", bool(lazy))
        self.restored = True
        stats = read_restore_stats(os.path.join(work, "stats-restore"))
        restore = dict(stats, seconds=round(seconds, 3))
        self.result["restore"] = restore
        if not lazy:
            return {"restore": restore}
        channel.send("ok", restore=restore)
        channel.send("lazy_done", **self._await_lazy_daemon(work))
        return None

    def _run_lazy_restore(self, argv: list[str], work: str) -> tuple[int, str, str]:
        """runc restore in post-copy mode, watched: once its lazy-pages daemon has failed, CRIU (3.17) can wait for ever
        for tasks it could not finish, and runc for CRIU. Ending that CRIU lets runc fail and clean up after itself."""
        restore_ended = threading.Event()
        watch = threading.Thread(target=self._end_restore_after_daemon_failure, args=(work, restore_ended), daemon=True)
        watch.start()
        try:
            return self.module.run_command(argv, check_rc=False)
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

    def _restore_failure(self, work: str, cause: str, lazy: bool) -> RequestFailed:
        """The failed restore's error; a post-copy one also stops the lazy-pages daemon and names it when it failed
        first, and unmounts what an ended CRIU left in the work directory (its cgroup yard, which removing the
        directory later would reach through into the host's cgroups)."""
        log = log_excerpt(os.path.join(work, RESTORE_LOG))
        if lazy:
            daemon_rc = self.lazy_daemon.poll()
            self._stop_lazy_daemon()
            self._unmount_under(work)
            if daemon_rc not in (None, 0):
                cause += f"; the lazy-pages daemon had failed first (exit code {daemon_rc}): no page could come from the source"
                log += log_excerpt(os.path.join(work, "lazy-pages.log"))
            if self.result.get("ended_restore_criu"):
                cause += f"; CRIU's restore, still waiting {LAZY_RESTORE_GRACE:g} s later, was ended"
        return RequestFailed(cause, log)

    def _restore_params(self, image_path: str, work_path: str, lazy: bool) -> dict[str, Any]:
        params = {
            "container_id": self.container,
            "bundle": self.params["bundle"],
            "image_path": image_path,
            "work_path": work_path,
            "detach": True,
            "lazy_pages": lazy,
            "root": self.root,
            "criu_path": self.params["criu_path"],
        }
        params.update({key: self.params[key] for key in ("tcp_established", "manage_cgroups_mode")})
        return params

    def _local_copy(self, path: str) -> str:
        """Lazy restore needs the images in a local directory that also holds the lazy-pages daemon's socket."""
        local = os.path.join(self.work_dir, "lazy")
        if os.path.realpath(path) != os.path.realpath(local):
            shutil.rmtree(local, ignore_errors=True)
            shutil.copytree(path, local, symlinks=True)
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
                raise RequestFailed("the lazy-pages daemon did not start", log_excerpt(os.path.join(directory, "lazy-pages.log")))
            time.sleep(0.1)

    def _await_lazy_daemon(self, directory: str) -> dict[str, Any]:
        """Wait until every page has arrived; a failed transfer leaves a broken copy here, which is removed."""
        began = time.monotonic()
        try:
            rc = self.lazy_daemon.wait(timeout=self.params["lazy_timeout"])
        except subprocess.TimeoutExpired:
            self._stop_lazy_daemon()
            rc = None
        seconds = round(time.monotonic() - began, 3)
        if rc == 0:
            return {"ok": True, "seconds": seconds}
        self._delete_copy()
        cause = "timed out" if rc is None else f"exited with {rc}"
        return {"ok": False, "seconds": seconds, "error": f"the lazy-pages daemon {cause} before every page arrived",
                "log": log_excerpt(os.path.join(directory, "lazy-pages.log"))}

    def _end(self, channel: Channel, kind: str, message: dict[str, Any]) -> None:
        if kind == "rollback" and self.restored:
            self._delete_copy()
        if kind == "commit" and not message.get("keep_images"):
            self._remove_directories()
        self.result["outcome"] = "committed" if kind == "commit" else "rolled back: " + message.get("reason", "")
        channel.send("ok")

    def lazy_incomplete(self) -> bool:
        """Whether a post-copy restore still waits for pages (its daemon has not finished with success)."""
        return self.lazy_daemon is not None and self.lazy_daemon.poll() != 0

    # -- cleanup ----------------------------------------------------------------------------------------

    def _delete_copy(self) -> None:
        argv = [self.runc_path, "--root", self.root, "delete", "--force", self.container]
        self.module.run_command(argv, check_rc=False)
        self.restored = False
        self.result["deleted_copy"] = True

    def _remove_directories(self) -> None:
        for path in self.created_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self.created_dirs = []

    def _unmount_under(self, path: str) -> None:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            points = mount_points_under(path, handle.read())
        if points:
            umount = self.module.get_bin_path("umount", required=True)
            for point in points:
                self.module.run_command([umount, "--lazy", point], check_rc=False)

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
                        os.kill(pid, 15)
            except OSError:
                pass
