# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The source side of a live migration, run on the source host in one module call.

The container is paused (cgroup freezer) before the final dump and dumped with --leave-running, so it stays
frozen but alive on the source until the destination reports that its copy runs. Then the source copy is
deleted. Any failure after the freeze resumes the source copy instead: no controller round trip sits in the
frozen window, and no failure path leaves the workload running nowhere.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from typing import Any

from ansible_collections.ferry.runc.plugins.module_utils import _manifest, _strategy, _treesync
from ansible_collections.ferry.runc.plugins.module_utils._channel import SHARE_TOKEN, Channel, ChannelError, connect
from ansible_collections.ferry.runc.plugins.module_utils._criu import (
    RUNC_CONFIG,
    log_excerpt,
    runc_config_with_tls,
    runc_config_without_tls,
    tls_files,
)
from ansible_collections.ferry.runc.plugins.module_utils._criu_stats import read_dump_stats
from ansible_collections.ferry.runc.plugins.module_utils._runc import (
    DEFAULT_ROOT,
    DUMP_LOG,
    LAZY_RUNC_LOG,
    read_status,
    spawn_detached,
    checkpoint_argv,
    container_state,
    runc_error,
)

FINAL = "final"
CPUINFO = "cpuinfo.img"


class MigrationFailed(Exception):
    """A step failed; carries what the report needs to say about it."""

    def __init__(self, step: str, cause: str, log: list[str] | None = None) -> None:
        super().__init__(f"{step}: {cause}")
        self.step = step
        self.cause = cause
        self.log = log or []


class Sender:
    def __init__(self, module: Any, params: dict[str, Any], runc_path: str) -> None:
        self.module = module
        self.params = params
        self.runc_path = runc_path
        self.container = params["container"]
        self.root = params["root"] or DEFAULT_ROOT
        self.image_dir = params["image_dir"]
        self.channel: Channel | None = None
        self.frozen_at: float | None = None
        self.last_round: str | None = None
        self.lazy_process: subprocess.Popen | None = None
        self.created_image_dir = False
        self.restore_requested = False
        self.bundle_sender: _treesync.TreeSender | None = None
        self.tls_paths: dict[str, str] = {}
        self.criu_path = params["criu_path"] or module.get_bin_path("criu", required=True)
        self.step = "preflight"
        self.report: dict[str, Any] = {
            "container": self.container,
            "strategy": params["strategy"],
            "transport": params["transport"],
            "rounds": [],
            "stop_reason": None,
            "rolled_back": False,
            "source_deleted": False,
        }
        self.started = time.monotonic()

    # -- commands ---------------------------------------------------------------------------------------

    def runc(self, step: str, *args: str) -> None:
        rc, out, err = self.module.run_command([self.runc_path, "--root", self.root] + list(args), check_rc=False)
        if rc != 0:
            raise MigrationFailed(step, runc_error(err or out) or f"runc exited with {rc}")

    def checkpoint(self, step: str, directory: str, **options: Any) -> dict[str, Any]:
        """Run one runc checkpoint (pre-dump or final) into image_dir/directory; returns CRIU's stats and timing."""
        path = os.path.join(self.image_dir, directory)
        os.makedirs(path, mode=0o700, exist_ok=True)
        argv = checkpoint_argv(self.runc_path, self._checkpoint_params(path, **options))
        began = time.monotonic()
        rc, out, err = self.module.run_command(argv, check_rc=False)
        seconds = time.monotonic() - began
        if rc != 0:
            # runc names CRIU's log dump.log for pre-dumps too.
            raise MigrationFailed(step, runc_error(err or out), log_excerpt(os.path.join(path, DUMP_LOG)))
        stats = read_dump_stats(os.path.join(path, "stats-dump"))
        return dict(stats, seconds=round(seconds, 3))

    def _checkpoint_params(self, path: str, **options: Any) -> dict[str, Any]:
        params = {
            "container_id": self.container,
            "image_path": path,
            "work_path": path,
            "root": self.root,
            "criu_path": self.params["criu_path"],
        }
        params.update({key: self.params[key] for key in CHECKPOINT_PASSTHROUGH})
        params.update(options)
        return params

    # -- phases -----------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        with tls_files(self.params) as self.tls_paths:
            return self._migrate()

    def _migrate(self) -> dict[str, Any]:
        state = container_state(self.module, self.runc_path, self.root, self.container)
        if state is None or state.get("status") != "running":
            status = "absent" if state is None else state.get("status")
            raise MigrationFailed("preflight", f"container {self.container} is {status} on the source, not running")
        self.report["bundle"] = state["bundle"]
        self._set_tls(enabled=True)
        try:
            self.step = "prepare the source"
            share_token = self._prepare_image_dir()
            self.step = "connect to the receiver"
            self.channel = self._connect()
            self.step = "prepare the receiver"
            self._request_prepare(state["bundle"], share_token)
            if self.params["bundle_sync"] == "copy":
                self.step = "copy the bundle"
                self._sync_bundle("bundle copy", state["bundle"])
            if self.params["strategy"] == "pre-copy":
                self.step = "pre-copy"
                self._precopy()
            self.step = "freeze"
            self._freeze()
            self.step = "final dump and hand-over"
            if self.params["strategy"] == "post-copy":
                self._final_lazy(state["bundle"])
            else:
                self._final(state["bundle"])
            self.step = "finish"
            self._finish()
        except (MigrationFailed, ChannelError, OSError) as exc:
            self._recover(exc)
            if self.step in ("prepare the source", "connect to the receiver", "prepare the receiver"):
                self._remove_image_dir()
            raise
        finally:
            self._set_tls(enabled=False)
            if self.channel:
                self.report["channel_bytes"] = self.channel.bytes_sent + self.channel.bytes_received
                self.channel.close()
            self.report["total_seconds"] = round(time.monotonic() - self.started, 3)
        return self.report

    def _set_tls(self, enabled: bool) -> None:
        """Give (or take back) runc's CRIU the migration's TLS certificate, when the caller provides one."""
        if not self.tls_paths:
            return
        try:
            with open(RUNC_CONFIG) as handle:
                current = handle.read()
        except FileNotFoundError:
            current = ""
        wanted = runc_config_with_tls(current, self.tls_paths) if enabled else runc_config_without_tls(current)
        if wanted == current:
            return
        if wanted:
            os.makedirs(os.path.dirname(RUNC_CONFIG), mode=0o755, exist_ok=True)
            with open(RUNC_CONFIG + ".ferry-tmp", "w") as handle:
                handle.write(wanted)
            os.replace(RUNC_CONFIG + ".ferry-tmp", RUNC_CONFIG)
        else:
            os.unlink(RUNC_CONFIG)
        self.report["tls"] = True

    def _prepare_image_dir(self) -> str:
        """Create this migration's image directory (it must be new: everything in it is then ours to remove), dump
        the CPU's features there for the receiver's check, and with shared storage leave a token the receiver must see."""
        try:
            os.makedirs(self.image_dir, mode=0o700)
        except FileExistsError as exc:
            raise MigrationFailed("preflight", f"the image directory {self.image_dir} exists already; choose another migration id") from exc
        self.created_image_dir = True
        argv = [self.criu_path, "cpuinfo", "dump", "-D", self.image_dir]
        rc, out, err = self.module.run_command(argv, check_rc=False)
        if rc != 0:
            raise MigrationFailed("preflight", f"criu cpuinfo dump failed: {(err or out).strip()}")
        token = os.urandom(16).hex()
        if self.params["transport"] == "shared":
            with open(os.path.join(self.image_dir, SHARE_TOKEN), "w") as handle:
                handle.write(token)
        return token

    def _request_prepare(self, bundle: str, share_token: str) -> None:
        with open(os.path.join(self.image_dir, CPUINFO), "rb") as handle:
            cpuinfo = base64.b64encode(handle.read()).decode()
        self.channel.request(
            "prepare",
            container=self.container,
            strategy=self.params["strategy"],
            transport=self.params["transport"],
            bundle_config_sha256=_manifest.file_sha256(os.path.join(bundle, "config.json")),
            bundle_sync=self.params["bundle_sync"],
            cpuinfo=cpuinfo,
            share_token=share_token if self.params["transport"] == "shared" else None,
        )

    def _remove_image_dir(self) -> None:
        """Before any dump, the image directory holds only this migration's scratch files."""
        if self.created_image_dir:
            shutil.rmtree(self.image_dir, ignore_errors=True)

    def _connect(self) -> Channel:
        try:
            return connect(
                self.params["receiver_address"], self.params["receiver_port"], self.params["secret"], self.params["connect_timeout"]
            )
        except ChannelError as exc:
            raise MigrationFailed("connect to the receiver", str(exc)) from exc

    def _sync_bundle(self, step: str, bundle: str) -> None:
        began = time.monotonic()
        if self.bundle_sender is None:
            self.bundle_sender = _treesync.TreeSender(bundle)
        sent = self.bundle_sender.send(self.channel, "bundle", delete_extra=True)
        self.report.setdefault("bundle_sync", []).append(
            {"step": step, "bytes": sent, "skipped": self.bundle_sender.skipped, "seconds": round(time.monotonic() - began, 3)}
        )

    def _page_server(self, directory: str, parent: str | None) -> str | None:
        """With the page-server transport, ask the receiver for a page server writing into its copy of directory."""
        if self.params["transport"] != "page-server":
            return None
        answer = self.channel.request("page_server", dir=directory, parent=parent)
        return f"{answer['address']}:{answer['port']}"

    def _precopy(self) -> None:
        rounds = self.report["rounds"]
        parent = None
        while True:
            directory = f"pre{len(rounds) + 1}"
            began = time.time()
            stats = self.checkpoint(
                f"pre-dump round {len(rounds) + 1}",
                directory,
                pre_dump=True,
                parent_path=f"../{parent}" if parent else None,
                page_server=self._page_server(directory, parent),
            )
            record = _round_record(len(rounds) + 1, began, stats)
            if self.params["transport"] == "shared":
                record.update(self._fetch(directory))
            rounds.append(record)
            record["predicted_final_frozen_ms"] = round(_strategy.predict_final_frozen_ms(rounds))
            reason = _strategy.stop_reason(
                rounds,
                self.params["downtime_budget_ms"],
                self.params["max_rounds"],
                self.params["min_rounds"],
                self.params["min_shrink"],
            )
            parent = directory
            if reason:
                self.report["stop_reason"] = reason
                self.last_round = parent
                return

    def _fetch(self, directory: str) -> dict[str, Any]:
        """Shared storage: the receiver reads and checks a finished pre-dump now, outside the frozen window."""
        manifest = _manifest.write(os.path.join(self.image_dir, directory))
        answer = self.channel.request("fetch", dir=directory, manifest=manifest)
        return {"bytes_fetched": answer["bytes"], "fetch_seconds": answer["seconds"]}

    def _freeze(self) -> None:
        self.runc("pause the container on the source", "pause", self.container)
        self.frozen_at = time.monotonic()
        self.report["frozen_at"] = time.time()

    def _final(self, bundle: str) -> None:
        parent = self.last_round
        stats = self.checkpoint(
            "final dump",
            FINAL,
            leave_running=True,
            parent_path=f"../{parent}" if parent else None,
            page_server=self._page_server(FINAL, parent),
        )
        self.report["final"] = _round_record(0, self.report["frozen_at"], stats)
        self._handover(bundle, lazy=None)

    def _final_lazy(self, bundle: str) -> None:
        """Post-copy: dump everything but memory; the source's CRIU then serves pages until the destination has them all."""
        path = os.path.join(self.image_dir, FINAL)
        os.makedirs(path, mode=0o700, exist_ok=True)
        address = self.params["lazy_address"]
        port = self.params["lazy_port"]
        self.lazy_process = self._start_lazy_dump(path, f"{address}:{port}")
        self.report["final"] = {"started_at": self.report["frozen_at"], "images_ready_seconds": round(time.monotonic() - self.frozen_at, 3)}
        self._handover(bundle, lazy={"address": address, "port": port})

    def _start_lazy_dump(self, path: str, page_server: str) -> subprocess.Popen:
        argv = checkpoint_argv(
            self.runc_path, self._checkpoint_params(path, leave_running=True, lazy_pages=True, page_server=page_server)
        )
        read_end, write_end = os.pipe()
        try:
            process = spawn_detached(argv, os.path.join(path, LAZY_RUNC_LOG), write_end)
        finally:
            os.close(write_end)
        try:
            ready = read_status(read_end, self.params["dump_timeout"])
        finally:
            os.close(read_end)
        if not ready:
            if process.poll() is None:
                process.kill()
            process.wait()
            raise MigrationFailed(
                "lazy final dump", "runc checkpoint --lazy-pages ended before its images were ready", log_excerpt(os.path.join(path, DUMP_LOG))
            )
        return process

    def _handover(self, bundle: str, lazy: dict[str, Any] | None) -> None:
        """Inside the frozen window: get the images and the bundle to the receiver and have it restore at once."""
        final_path = os.path.join(self.image_dir, FINAL)
        manifest = _manifest.write(final_path)
        if self.params["transport"] == "page-server":
            began = time.monotonic()
            sent = _treesync.send_tree(self.channel, final_path, f"images/{FINAL}", delete_extra=False)
            self.report["final"]["images_sent_bytes"] = sent
            self.report["final"]["images_sent_seconds"] = round(time.monotonic() - began, 3)
        if self.params["bundle_sync"] == "copy":
            self._sync_bundle("bundle update (frozen)", bundle)
        self.restore_requested = True
        answer = self.channel.request("restore", dir=FINAL, manifest=manifest, lazy=lazy)
        self.report["restore"] = answer["restore"]
        self.report["downtime_ms"] = round((time.monotonic() - self.frozen_at) * 1000)
        if lazy:
            self._await_lazy_transfer()

    def _await_lazy_transfer(self) -> None:
        self.channel.settimeout(self.params["dump_timeout"])
        done = self.channel.recv("lazy_done")
        self.channel.settimeout(None)
        try:
            rc = self.lazy_process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            rc = self._stop_lazy_dump()
        self.report["lazy"] = dict(done, source_rc=rc)
        if not done["ok"]:
            raise MigrationFailed("post-copy page transfer", done["error"], done.get("log"))

    def _finish(self) -> None:
        self.runc("delete the source copy", "delete", "--force", self.container)
        self.report["source_deleted"] = True
        self.report["completed_seconds"] = round(time.monotonic() - self.started, 3)
        self.channel.request("commit", keep_images=self.params["keep_images"])
        if not self.params["keep_images"]:
            shutil.rmtree(self.image_dir, ignore_errors=True)
            self.report["images_removed"] = True

    def _recover(self, error: Exception) -> None:
        """After a failure: tell the receiver to drop its copy, and run the container on the source again."""
        if self.report["source_deleted"]:
            self.report["recovery"] = "the destination runs the container; only the final commit message was lost"
            return
        # In post-copy only a confirmed transfer makes the destination's copy whole; until then the source's lazy
        # dump has thawed it, so its status says nothing.
        copy_whole = self.report.get("lazy", {}).get("ok", False) if self.lazy_process else True
        if self.report.get("restore") and copy_whole and self.channel:
            status = self._source_status()
            if status != "paused":
                # The destination's copy runs; deleting it now would leave the container running nowhere.
                self._keep_destination_copy(status)
                return
        if self.channel:
            try:
                self.channel.request("rollback", reason=str(error))
            except (ChannelError, OSError):
                self.report["receiver_unreachable"] = True
        if self.frozen_at is None:
            self.report["recovery"] = "nothing was frozen; the container kept running on the source"
            return
        if self.lazy_process:
            self._stop_lazy_dump()
        try:
            # A lazy dump's CRIU thaws the cgroup and holds the tasks itself; once it is gone they run on, unpaused.
            if self._source_status() != "running":
                self.runc("resume the container on the source (rollback)", "resume", self.container)
        except MigrationFailed as exc:
            self.report["recovery"] = (
                f"ROLLBACK FAILED: {exc.cause}. The container is still frozen on the source with its images kept in"
                f" {self.image_dir}: run 'runc resume {self.container}' there"
            )
            return
        self.report["rolled_back"] = True
        self.report["recovery"] = "the container was resumed on the source from the moment it was frozen"
        if self.lazy_process and self.report.get("restore"):
            self.report["recovery"] += (
                "; in post-copy the destination's copy ran from its restore on, and what it did since the freeze"
                " (its writes to shared files excepted) is lost"
            )
        if self.restore_requested and self.report.get("receiver_unreachable"):
            self.report["recovery"] += (
                "; the destination could not be told to drop its copy and may run one too:"
                f" check it and delete one of the two (runc delete --force {self.container})"
            )

    def _stop_lazy_dump(self) -> int:
        """End the lazy dump: runc and the CRIU it started (its session), which holds the source's tasks while it
        serves pages; killing runc alone would leave them stopped under an orphaned CRIU. The group outlives runc,
        so it is killed even when runc has exited."""
        try:
            os.killpg(self.lazy_process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.lazy_process.wait()

    def _source_status(self) -> str:
        rc, out, err = self.module.run_command([self.runc_path, "--root", self.root, "state", self.container], check_rc=False)
        if rc != 0:
            return "absent" if "does not exist" in err else "unknown"
        try:
            return json.loads(out).get("status", "unknown")
        except ValueError:
            return "unknown"

    def _keep_destination_copy(self, status: str) -> None:
        try:
            self.channel.request("commit", keep_images=True)
        except (ChannelError, OSError):
            self.report["receiver_unreachable"] = True
        self.report["recovery"] = (
            f"the source copy cannot be resumed (it is {status}), so the destination keeps running the container;"
            f" the images are kept in {self.image_dir}"
        )


CHECKPOINT_PASSTHROUGH = ("tcp_established", "file_locks", "ext_unix_sk", "shell_job", "manage_cgroups_mode")


def _round_record(number: int, started_at: float, stats: dict[str, Any]) -> dict[str, Any]:
    pages = stats.get("pages_written", 0)
    return {
        "round": number,
        "started_at": started_at,
        "seconds": stats["seconds"],
        "pages_scanned": stats.get("pages_scanned", 0),
        "pages_skipped_parent": stats.get("pages_skipped_parent", 0),
        "pages_written": pages,
        "bytes_written": pages * _strategy.PAGE_SIZE,
        "write_seconds": stats.get("memwrite_time", 0) / 1e6,
        "frozen_ms": round(stats.get("frozen_time", 0) / 1000, 1),
    }


def run(module: Any, params: dict[str, Any], runc_path: str) -> dict[str, Any]:
    return Sender(module, params, runc_path).run()
