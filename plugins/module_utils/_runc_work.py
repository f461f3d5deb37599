# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of the runc_checkpoint, runc_restore and runc_info modules: each takes the AnsibleModule, returns the
module's result and raises FerryError (InputError for a refused request) instead of ending the module."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from typing import Any, Callable

from ansible_collections.ferry.runc.plugins.module_utils import _criu, _criu_stats, _images, _inspect, _settle
from ansible_collections.ferry.runc.plugins.module_utils._commands import binary
from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError, InputError
from ansible_collections.ferry.runc.plugins.module_utils._runc import (
    CHECKPOINTABLE_STATUSES,
    DUMP_LOG,
    DUMP_STATS,
    LAZY_PAGES_SOCKET,
    LAZY_RUNC_LOG,
    RESTORE_LOG,
    RESTORE_STATS,
    Runc,
    checkpoint_argv,
    read_status,
    restore_argv,
    runc_error,
    spawn_detached,
    work_path,
)

RESTORE_MARKER = "ferry-restore-{container_id}.json"
# Seconds to wait for a background runc that closed its status pipe to exit.
LAZY_EXIT_WAIT = 30


def _params(module: Any) -> dict:
    """The module's params with runc and CRIU resolved to executable paths."""
    return dict(
        module.params,
        runc_path=binary(module, "runc", module.params["runc_path"]),
        criu_path=binary(module, "criu", module.params["criu_path"]),
    )


def _criu_failure(step: str, outcome: str, runc_output: str, log_path: str, details: dict) -> CommandError:
    """What runc did (outcome), its error messages and the lines of CRIU's log that explain them."""
    excerpt = _criu.log_excerpt(log_path)
    cause = f"{outcome}: {runc_error(runc_output)}"
    if not excerpt:
        cause += f" (no error lines in CRIU log {log_path})"
    return CommandError(cause, step=step, log=excerpt, log_path=log_path, details=details)


def _stats(module: Any, reader: Callable[[str], dict], path: str) -> dict | None:
    """CRIU's statistics, or None with a warning: they describe a dump or restore, they never decide its outcome."""
    if not os.path.exists(path):
        module.warn(f"CRIU wrote no statistics file {path}")
        return None
    try:
        return reader(path)
    except (OSError, _criu_stats.StatsFormatError) as exc:
        module.warn(f"could not decode CRIU statistics {path}: {exc}")
        return None


def _directory_problem(option: str, path: str | None) -> str | None:
    if path and os.path.exists(path) and not os.path.isdir(path):
        return f"{option} {path} exists and is not a directory"
    return None


def _make_directories(step: str, *paths: str) -> None:
    for path in paths:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot create {path}: {exc}", step=step) from exc


# runc_checkpoint


def checkpoint(module: Any) -> dict:
    """Checkpoint (or pre-dump) a container as the runc_checkpoint module's params say."""
    params = _params(module)
    container_id = params["container_id"]
    step = f"{'pre-dump' if params['pre_dump'] else 'checkpoint'} of container {container_id}"
    runc = Runc(module, params["runc_path"], params["root"])
    state_before = runc.state(container_id)
    problem = checkpoint_input_problem(params, state_before)
    if problem:
        raise InputError(problem, step=step, details={"state_before": state_before})
    argv = checkpoint_argv(params["runc_path"], params)
    result = {
        "changed": True,
        "container_id": container_id,
        "image_path": params["image_path"],
        "work_path": work_path(params),
        "command": argv,
        "state_before": state_before,
    }
    if module.check_mode:
        return dict(result, state_after=state_before)
    _prepare_image_path(params, step, result)
    if params["lazy_pages"]:
        result["lazy_checkpoint"] = _start_lazy_checkpoint(argv, params, step, result)
    else:
        rc, out, err = module.run_command(argv, check_rc=False)
        if rc != 0:
            raise _criu_failure(step, f"runc exited with {rc}", err or out, os.path.join(work_path(params), DUMP_LOG), result)
    result["state_after"] = runc.state(container_id)
    result["image_size"] = _images.dir_size(params["image_path"])
    # A lazy-pages dump writes its statistics only once the last page is served.
    if not params["lazy_pages"]:
        result["stats"] = _stats(module, _criu_stats.read_dump_stats, os.path.join(work_path(params), DUMP_STATS))
    return result


def checkpoint_input_problem(params: dict, state: dict | None) -> str | None:
    """Why the checkpoint cannot start (container state, paths, page server), or None."""
    container_id = params["container_id"]
    if params.get("lazy_pages") and params.get("pre_dump"):
        return "lazy_pages cannot be combined with pre_dump (a pre-dump only copies memory, it has no pages to serve)"
    if state is None:
        return f"runc knows no container {container_id} under {params['root']}"
    if state["status"] not in CHECKPOINTABLE_STATUSES:
        return f"container {container_id} is {state['status']}: only a running or paused container can be checkpointed"
    return (
        _page_server_problem(params.get("page_server"))
        or _directory_problem("image_path", params["image_path"])
        or _directory_problem("work_path", params.get("work_path"))
        or _existing_dump_problem(params)
        or _parent_problem(params)
    )


def _page_server_problem(page_server: str | None) -> str | None:
    if not page_server:
        return None
    address, _sep, port = page_server.rpartition(":")
    if address and port.isdigit() and 0 < int(port) < 65536:
        return None
    return f"page_server must be ADDRESS:PORT, got {page_server}"


def _existing_dump_problem(params: dict) -> str | None:
    kind = _images.dump_kind(params["image_path"])
    if kind == _images.DUMP_KIND_NONE or params["overwrite"]:
        return None
    return f"image_path {params['image_path']} already holds a {kind}; set overwrite=true to replace it"


def _parent_problem(params: dict) -> str | None:
    parent = params.get("parent_path")
    if not parent:
        return None
    if os.path.isabs(parent):
        return f"parent_path must be relative to image_path (like ../pre1), got {parent}"
    resolved = os.path.normpath(os.path.join(params["image_path"], parent))
    if not _images.holds_dump(resolved):
        return f"parent_path {parent} ({resolved}) holds no dump or pre-dump"
    return None


def _prepare_image_path(params: dict, step: str, result: dict) -> None:
    if params["overwrite"] and os.path.isdir(params["image_path"]):
        try:
            result["removed"] = _images.clear_dump(params["image_path"])
        except OSError as exc:
            raise CommandError(f"clearing {params['image_path']} for overwrite: {exc}", step=step, details=result) from exc
    _make_directories(step, params["image_path"], work_path(params))


def _start_lazy_checkpoint(argv: list[str], params: dict, step: str, result: dict) -> dict:
    """Start runc in the background and wait for CRIU's status byte; return the background process."""
    work = work_path(params)
    background = {"runc_log": os.path.join(work, LAZY_RUNC_LOG), "criu_log": os.path.join(work, DUMP_LOG)}
    read_fd, write_fd = os.pipe()
    try:
        process = spawn_detached(argv, background["runc_log"], write_fd)
    except OSError as exc:
        os.close(read_fd)
        raise CommandError(f"cannot start {argv[0]}: {exc}", step=step, details=result) from exc
    finally:
        os.close(write_fd)
    background["pid"] = process.pid
    try:
        status = read_status(read_fd, params["lazy_pages_timeout"])
    finally:
        os.close(read_fd)
    details = dict(result, lazy_checkpoint=background)
    if status == b"":
        raise _lazy_exit_failure(process, step, background, details)
    if status is None:
        raise CommandError(
            f"CRIU did not report the non-memory images complete within {params['lazy_pages_timeout']} s; "
            f"runc checkpoint still runs as pid {process.pid} (log {background['runc_log']})",
            step=step,
            details=details,
        )
    return background


def _lazy_exit_failure(process: subprocess.Popen, step: str, background: dict, details: dict) -> CommandError:
    """The failure of a background runc that closed the status pipe without the byte: its exit code and CRIU's log."""
    try:
        outcome = f"runc exited with {process.wait(timeout=LAZY_EXIT_WAIT)}"
    except subprocess.TimeoutExpired:
        outcome = f"runc closed its status descriptor without a status and still runs as pid {process.pid}"
    with open(background["runc_log"], encoding="utf-8", errors="replace") as log:
        runc_output = log.read()
    return _criu_failure(step, outcome, runc_output, background["criu_log"], details)


# runc_restore


def restore(module: Any) -> dict:
    """Restore a container as the runc_restore module's params say."""
    params = _params(module)
    container_id = params["container_id"]
    step = f"restore of container {container_id}"
    runc = Runc(module, params["runc_path"], params["root"])
    state_before = runc.state(container_id)
    result = {
        "changed": True,
        "container_id": container_id,
        "image_path": params["image_path"],
        "work_path": work_path(params),
        "command": restore_argv(params["runc_path"], params),
        "state_before": state_before,
    }
    if state_before is not None:
        return _restored_already(module, params, step, result)
    problem = restore_input_problem(params)
    if problem:
        raise InputError(problem, step=step, details=result)
    if module.check_mode:
        return dict(result, state_after=state_before)
    _make_directories(step, work_path(params))
    rc, out, err = module.run_command(result["command"], check_rc=False)
    if rc != 0:
        raise _criu_failure(step, f"runc exited with {rc}", err or out, os.path.join(work_path(params), RESTORE_LOG), result)
    result["state_after"] = runc.state(container_id)
    if result["state_after"] is not None:
        _write_restore_marker(module, params, result["state_after"])
    result["stats"] = _stats(module, _criu_stats.read_restore_stats, os.path.join(work_path(params), RESTORE_STATS))
    return result


def restore_input_problem(params: dict) -> str | None:
    """Why the restore cannot start (bundle, images, work path, lazy-pages daemon, pid file), or None."""
    config = os.path.join(params["bundle"], "config.json")
    if not os.path.isfile(config):
        return f"bundle {params['bundle']} has no config.json"
    kind = _images.dump_kind(params["image_path"])
    if kind == _images.DUMP_KIND_NONE:
        return f"image_path {params['image_path']} holds no CRIU dump (no {_images.INVENTORY_IMAGE})"
    if kind == _images.DUMP_KIND_PRE_DUMP:
        return f"image_path {params['image_path']} holds only a pre-dump; a restore needs the images of a full dump"
    problem = _directory_problem("work_path", params.get("work_path"))
    if problem:
        return problem
    socket = os.path.join(work_path(params), LAZY_PAGES_SOCKET)
    if params["lazy_pages"] and not os.path.exists(socket):
        return f"lazy_pages needs a running `criu lazy-pages` daemon with -D {work_path(params)}: {socket} is missing"
    pid_file = params.get("pid_file")
    if pid_file and not os.path.isdir(os.path.dirname(os.path.abspath(pid_file))):
        return f"the directory of pid_file {pid_file} does not exist"
    return None


def restore_marker(params: dict) -> str:
    """The file in the work path that records which container instance a restore made from which images."""
    return os.path.join(work_path(params), RESTORE_MARKER.format(container_id=params["container_id"]))


def _marker_content(params: dict, state: dict) -> dict:
    return {
        "container_id": params["container_id"],
        "image_path": os.path.realpath(params["image_path"]),
        "pid": state["pid"],
        "created": state["created"],
    }


def _write_restore_marker(module: Any, params: dict, state: dict) -> None:
    try:
        with open(restore_marker(params), "w", encoding="utf-8") as marker:
            json.dump(_marker_content(params, state), marker)
    except OSError as exc:
        module.warn(f"could not record the restore in {restore_marker(params)} (a rerun will fail): {exc}")


def _restored_already(module: Any, params: dict, step: str, result: dict) -> dict:
    """The unchanged result when the existing container is the one an earlier restore made from these images."""
    state = result["state_before"]
    try:
        with open(restore_marker(params), encoding="utf-8") as marker:
            recorded = json.load(marker)
    except (OSError, ValueError):
        recorded = None
    if recorded == _marker_content(params, state) and state["status"] in CHECKPOINTABLE_STATUSES:
        result.update(changed=False, state_after=state)
        result["stats"] = _stats(module, _criu_stats.read_restore_stats, os.path.join(work_path(params), RESTORE_STATS))
        return result
    raise InputError(
        f"a container {params['container_id']} already exists ({state['status']}, pid {state['pid']}, "
        f"bundle {state['bundle']}, created {state['created']}) and it is not one this module restored from "
        f"{params['image_path']} and still runs; remove it (runc delete) or choose another container_id",
        step=step,
        details=result,
    )


# runc_info


def info(module: Any) -> dict:
    """runc, CRIU, their features and the cgroup version (unless read_host is false), the containers, and a container's
    state (and what stops its move) when asked."""
    params = _params(module)
    runc = Runc(module, params["runc_path"], params["root"])
    result: dict[str, Any] = {"changed": False}
    if params["read_host"]:
        result.update(
            runc_version=runc.version(),
            criu_version=_criu.criu_version(module, params["criu_path"]),
            criu_check=_criu.criu_check(module, params["criu_path"]),
            features=_criu.probe_features(module, params["criu_path"]),
            cgroup_version=cgroup_version(module),
        )
    result["containers"] = runc.containers()
    if params["container_id"]:
        result["container"] = runc.state(params["container_id"])
        result["migration"] = _settle.latest_record(params["container_id"])
        if result["container"]:
            result["container_problems"] = _inspect.migration_problems(result["container"])
            running = result["container"]["status"] in ("running", "paused") and result["container"]["pid"]
            result["container_memory_bytes"] = _inspect.cgroup_memory_bytes(result["container"]["pid"]) if running else None
    if params["details"]:
        result["containers"] = [dict(state, **_inspect.container_details(state)) for state in result["containers"]]
        result["memory_available_bytes"] = _inspect.memory_available_bytes()
    if params["dump_cpu_image"]:
        result["cpu_image"] = _cpu_image(module, params["criu_path"])
    if params["check_cpu_image"]:
        result["cpu_check"] = _cpu_check(module, params["criu_path"], params["check_cpu_image"])
    if params["check_paths"]:
        result["missing_paths"] = _inspect.missing_paths(params["check_paths"])
    return result


def _cpu_image(module: Any, criu_path: str) -> str:
    """This host's CPU features as `criu cpuinfo dump` writes them, base64-encoded."""
    with tempfile.TemporaryDirectory(prefix="ferry-cpuinfo-", dir=_criu.TLS_FILES_PARENT) as directory:
        _criu.cpuinfo_dump(module, criu_path, directory, step="reading the CPU features")
        with open(os.path.join(directory, _criu.CPUINFO_IMAGE), "rb") as handle:
            return base64.b64encode(handle.read()).decode("ascii")


def _cpu_check(module: Any, criu_path: str, cpu_image: str) -> dict:
    """`criu cpuinfo check` of another host's CPU image (base64) against this host's CPU."""
    try:
        image = base64.b64decode(cpu_image, validate=True)
    except ValueError as exc:
        raise InputError(f"check_cpu_image is not base64 ({exc}); pass another host's cpu_image", step="checking the CPU features") from exc
    with tempfile.TemporaryDirectory(prefix="ferry-cpuinfo-", dir=_criu.TLS_FILES_PARENT) as directory:
        with open(os.path.join(directory, _criu.CPUINFO_IMAGE), "wb") as handle:
            handle.write(image)
        return _criu.cpuinfo_check(module, criu_path, directory)


def cgroup_version(module: Any) -> int:
    """2 on the unified hierarchy (cgroup2fs on /sys/fs/cgroup), else 1."""
    stat_path = binary(module, "stat")
    rc, out, err = module.run_command([stat_path, "--file-system", "--format", "%T", "/sys/fs/cgroup"], check_rc=False)
    if rc != 0:
        raise CommandError(f"stat of /sys/fs/cgroup exited with {rc}: {err.strip()}", step="reading the cgroup version")
    return 2 if out.strip() == "cgroup2fs" else 1
