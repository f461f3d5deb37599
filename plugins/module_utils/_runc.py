# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""runc on the target: command lines, container state, and the work of the runc_checkpoint, runc_restore and
runc_info modules (checkpoint(), restore() and info() each take the AnsibleModule and end it)."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess

from ansible_collections.ferry.runc.plugins.module_utils import _criu, _criu_stats, _images

DEFAULT_ROOT = "/run/runc"
MANAGE_CGROUPS_MODES = ["soft", "full", "strict"]
EMPTY_NAMESPACES = ["network"]
CHECKPOINTABLE_STATUSES = ("running", "paused")
# The lazy-pages checkpoint runs in the background; CRIU writes one byte on this descriptor once the
# non-memory images are complete.
CHECKPOINT_STATUS_FD = 3
LAZY_RUNC_LOG = "runc-lazy-checkpoint.log"
# Seconds to wait for a background runc that closed its status pipe to exit.
LAZY_EXIT_WAIT = 30
LAZY_PAGES_SOCKET = "lazy-pages.socket"
DUMP_LOG = "dump.log"
RESTORE_LOG = "restore.log"
DUMP_STATS = "stats-dump"
RESTORE_STATS = "stats-restore"
RESTORE_MARKER = "ferry-restore-{container_id}.json"
RUNC_ERROR = re.compile(r'level=error msg="((?:[^"\\]|\\.)*)"')

COMMON_ARGUMENT_SPEC = {
    "root": {"type": "path", "default": DEFAULT_ROOT},
    "runc_path": {"type": "path"},
    "criu_path": {"type": "path"},
}


# Command lines


def checkpoint_argv(runc_path: str, params: dict) -> list[str]:
    """Return the `runc checkpoint` command line for module params, one flag per option, in a fixed order."""
    argv = _subcommand(runc_path, params, "checkpoint") + _image_and_work_paths(params)
    argv += _value("--parent-path", params.get("parent_path"))
    argv += _switch("--pre-dump", params.get("pre_dump"))
    argv += _switch("--leave-running", params.get("leave_running"))
    argv += _value("--page-server", params.get("page_server"))
    if params.get("lazy_pages"):
        argv += ["--lazy-pages", "--status-fd", str(CHECKPOINT_STATUS_FD)]
    argv += _criu_switches(params)
    argv += _value("--manage-cgroups-mode", params.get("manage_cgroups_mode"))
    argv += _switch("--auto-dedup", params.get("auto_dedup"))
    for namespace in params.get("empty_ns") or []:
        argv += ["--empty-ns", namespace]
    return argv + [params["container_id"]]


def restore_argv(runc_path: str, params: dict) -> list[str]:
    """Return the `runc restore` command line for module params, one flag per option, in a fixed order."""
    argv = _subcommand(runc_path, params, "restore") + _image_and_work_paths(params)
    argv += ["--bundle", params["bundle"]]
    argv += _switch("--detach", params.get("detach"))
    argv += _value("--pid-file", params.get("pid_file"))
    argv += _switch("--lazy-pages", params.get("lazy_pages"))
    argv += _criu_switches(params)
    argv += _value("--manage-cgroups-mode", params.get("manage_cgroups_mode"))
    return argv + [params["container_id"]]


def work_path(params: dict) -> str:
    """CRIU's work directory (its logs and stats): work_path, else image_path as with CRIU itself."""
    return params.get("work_path") or params["image_path"]


def _subcommand(runc_path: str, params: dict, subcommand: str) -> list[str]:
    argv = [runc_path, "--root", params.get("root") or DEFAULT_ROOT]
    argv += _value("--criu", params.get("criu_path"))
    return argv + [subcommand]


def _image_and_work_paths(params: dict) -> list[str]:
    return ["--image-path", params["image_path"], "--work-path", work_path(params)]


def _criu_switches(params: dict) -> list[str]:
    argv = _switch("--tcp-established", params.get("tcp_established"))
    argv += _switch("--ext-unix-sk", params.get("ext_unix_sk"))
    argv += _switch("--shell-job", params.get("shell_job"))
    return argv + _switch("--file-locks", params.get("file_locks"))


def _switch(flag: str, enabled) -> list[str]:
    return [flag] if enabled else []


def _value(flag: str, value) -> list[str]:
    return [flag, str(value)] if value else []


# Containers


def container_state(module, runc_path: str, root: str, container_id: str) -> dict | None:
    """Return the parsed `runc state` of a container, None when runc knows no container with that id."""
    rc, out, err = module.run_command([runc_path, "--root", root, "state", container_id], check_rc=False)
    if rc != 0 and "does not exist" in err:
        return None
    return _json_output(module, rc, out, err, f"reading the state of container {container_id}")


def container_list(module, runc_path: str, root: str) -> list[dict]:
    """Return the parsed `runc list` of every container under root (runc prints null for none)."""
    rc, out, err = module.run_command([runc_path, "--root", root, "list", "--format", "json"], check_rc=False)
    return _json_output(module, rc, out, err, f"listing the containers under {root}") or []


def runc_error(output: str) -> str:
    """The error messages of runc's log lines in output (runc quotes them), else the whole output stripped."""
    messages = [message.replace("\\n", "; ").replace('\\"', '"') for message in RUNC_ERROR.findall(output)]
    return "; ".join(messages) or output.strip()


def _json_output(module, rc: int, out: str, err: str, step: str):
    if rc != 0:
        module.fail_json(msg=f"{step} failed: runc exited with {rc}: {runc_error(err or out)}")
    try:
        return json.loads(out)
    except ValueError as exc:
        module.fail_json(msg=f"{step} failed: runc printed no JSON ({exc}): {out!r}")


def _binaries(module) -> dict:
    """The runc and CRIU binaries: the user's paths (which must be executable files) or found on the PATH."""
    paths = {}
    for name in ("runc", "criu"):
        path = module.params[f"{name}_path"]
        if path and not (os.path.isfile(path) and os.access(path, os.X_OK)):
            module.fail_json(msg=f"{name}_path {path} is not an executable file")
        paths[f"{name}_path"] = path or module.get_bin_path(name, required=True)
    return paths


def _params(module) -> dict:
    return dict(module.params, **_binaries(module))


# Failures


def _fail_with_criu_log(module, step: str, outcome: str, runc_output: str, log_path: str, result: dict) -> None:
    """Fail with what runc did (outcome), its error messages and the lines of CRIU's log that explain them."""
    excerpt = _criu.log_excerpt(log_path)
    msg = f"{step} failed: {outcome}: {runc_error(runc_output)}"
    if excerpt:
        msg += f"\nCRIU log {log_path}:\n" + "\n".join(excerpt)
    else:
        msg += f" (no error lines in CRIU log {log_path})"
    module.fail_json(msg=msg, criu_log=log_path, criu_log_excerpt=excerpt, **result)


def _stats(module, reader, path: str) -> dict | None:
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


def _make_directories(module, step: str, *paths: str) -> None:
    for path in paths:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            module.fail_json(msg=f"{step} failed: cannot create {path}: {exc}")


# runc_checkpoint


def checkpoint(module) -> None:
    """Checkpoint (or pre-dump) a container as the runc_checkpoint module's params say, and exit the module."""
    params = _params(module)
    container_id = params["container_id"]
    step = f"{'pre-dump' if params['pre_dump'] else 'checkpoint'} of container {container_id}"
    state_before = container_state(module, params["runc_path"], params["root"], container_id)
    problem = checkpoint_input_problem(params, state_before)
    if problem:
        module.fail_json(msg=f"{step} refused: {problem}", state_before=state_before)
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
        module.exit_json(state_after=state_before, **result)
    _prepare_image_path(module, params, step, result)
    if params["lazy_pages"]:
        result["lazy_checkpoint"] = _start_lazy_checkpoint(module, argv, params, step, result)
    else:
        rc, out, err = module.run_command(argv, check_rc=False)
        if rc != 0:
            _fail_with_criu_log(module, step, f"runc exited with {rc}", err or out, os.path.join(work_path(params), DUMP_LOG), result)
    result["state_after"] = container_state(module, params["runc_path"], params["root"], container_id)
    result["image_size"] = _images.dir_size(params["image_path"])
    # A lazy-pages dump writes its statistics only once the last page is served.
    if not params["lazy_pages"]:
        result["stats"] = _stats(module, _criu_stats.read_dump_stats, os.path.join(work_path(params), DUMP_STATS))
    module.exit_json(**result)


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


def _prepare_image_path(module, params: dict, step: str, result: dict) -> None:
    if params["overwrite"] and os.path.isdir(params["image_path"]):
        try:
            result["removed"] = _images.clear_dump(params["image_path"])
        except OSError as exc:
            module.fail_json(msg=f"{step} failed: clearing {params['image_path']} for overwrite: {exc}", **result)
    _make_directories(module, step, params["image_path"], work_path(params))


def _start_lazy_checkpoint(module, argv: list[str], params: dict, step: str, result: dict) -> dict:
    """Start runc in the background and wait for CRIU's status byte; return the background process."""
    work = work_path(params)
    background = {"runc_log": os.path.join(work, LAZY_RUNC_LOG), "criu_log": os.path.join(work, DUMP_LOG)}
    read_fd, write_fd = os.pipe()
    try:
        process = spawn_detached(argv, background["runc_log"], write_fd)
    except OSError as exc:
        os.close(read_fd)
        module.fail_json(msg=f"{step} failed: cannot start {argv[0]}: {exc}", **result)
    finally:
        os.close(write_fd)
    background["pid"] = process.pid
    try:
        status = read_status(read_fd, params["lazy_pages_timeout"])
    finally:
        os.close(read_fd)
    if status == b"":
        _fail_lazy_exit(module, process, step, dict(result, lazy_checkpoint=background))
    if status is None:
        module.fail_json(
            msg=f"{step} failed: CRIU did not report the non-memory images complete within {params['lazy_pages_timeout']} s; "
            f"runc checkpoint still runs as pid {process.pid} (log {background['runc_log']})",
            lazy_checkpoint=background,
            **result,
        )
    return background


def spawn_detached(argv: list[str], log_path: str, status_fd: int) -> subprocess.Popen:
    """Start argv in its own session (an SSH session can end without it), stdin from /dev/null, stdout and stderr
    appended to log_path, and status_fd as its descriptor CHECKPOINT_STATUS_FD."""
    with open(log_path, "ab") as log:
        # run_command waits for the command's end; this runc must outlive the module.
        return subprocess.Popen(  # pylint: disable=consider-using-with,ansible-bad-function
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(CHECKPOINT_STATUS_FD,),
            preexec_fn=lambda: os.dup2(status_fd, CHECKPOINT_STATUS_FD),  # pylint: disable=subprocess-popen-preexec-fn
            start_new_session=True,
        )


def read_status(read_fd: int, timeout: int) -> bytes | None:
    """CRIU's status byte; b"" when every writer closed the pipe without one (runc exited), None after timeout seconds."""
    readable, _w, _x = select.select([read_fd], [], [], timeout)
    return os.read(read_fd, 1) if readable else None


def _fail_lazy_exit(module, process, step: str, result: dict) -> None:
    """Fail for a background runc that closed the status pipe without the byte, with its exit code and CRIU's log."""
    background = result["lazy_checkpoint"]
    try:
        outcome = f"runc exited with {process.wait(timeout=LAZY_EXIT_WAIT)}"
    except subprocess.TimeoutExpired:
        outcome = f"runc closed its status descriptor without a status and still runs as pid {process.pid}"
    with open(background["runc_log"], encoding="utf-8", errors="replace") as log:
        runc_output = log.read()
    _fail_with_criu_log(module, step, outcome, runc_output, background["criu_log"], result)


# runc_restore


def restore(module) -> None:
    """Restore a container as the runc_restore module's params say, and exit the module."""
    params = _params(module)
    container_id = params["container_id"]
    step = f"restore of container {container_id}"
    state_before = container_state(module, params["runc_path"], params["root"], container_id)
    result = {
        "changed": True,
        "container_id": container_id,
        "image_path": params["image_path"],
        "work_path": work_path(params),
        "command": restore_argv(params["runc_path"], params),
        "state_before": state_before,
    }
    if state_before is not None:
        _exit_when_restored_already(module, params, step, result)
    problem = restore_input_problem(params)
    if problem:
        module.fail_json(msg=f"{step} refused: {problem}", **result)
    if module.check_mode:
        module.exit_json(state_after=state_before, **result)
    _make_directories(module, step, work_path(params))
    rc, out, err = module.run_command(result["command"], check_rc=False)
    if rc != 0:
        _fail_with_criu_log(module, step, f"runc exited with {rc}", err or out, os.path.join(work_path(params), RESTORE_LOG), result)
    result["state_after"] = container_state(module, params["runc_path"], params["root"], container_id)
    if result["state_after"] is not None:
        _write_restore_marker(module, params, result["state_after"])
    result["stats"] = _stats(module, _criu_stats.read_restore_stats, os.path.join(work_path(params), RESTORE_STATS))
    module.exit_json(**result)


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


def _write_restore_marker(module, params: dict, state: dict) -> None:
    try:
        with open(restore_marker(params), "w", encoding="utf-8") as marker:
            json.dump(_marker_content(params, state), marker)
    except OSError as exc:
        module.warn(f"could not record the restore in {restore_marker(params)} (a rerun will fail): {exc}")


def _exit_when_restored_already(module, params: dict, step: str, result: dict) -> None:
    """Exit unchanged when the existing container is the one an earlier restore made from these images, else fail."""
    state = result["state_before"]
    try:
        with open(restore_marker(params), encoding="utf-8") as marker:
            recorded = json.load(marker)
    except (OSError, ValueError):
        recorded = None
    if recorded == _marker_content(params, state) and state["status"] in CHECKPOINTABLE_STATUSES:
        result.update(changed=False, state_after=state)
        result["stats"] = _stats(module, _criu_stats.read_restore_stats, os.path.join(work_path(params), RESTORE_STATS))
        module.exit_json(**result)
    module.fail_json(
        msg=f"{step} refused: a container {params['container_id']} already exists ({state['status']}, pid {state['pid']}, "
        f"bundle {state['bundle']}, created {state['created']}) and it is not one this module restored from "
        f"{params['image_path']} and still runs; remove it (runc delete) or choose another container_id",
        **result,
    )


# runc_info


def info(module) -> None:
    """Report runc, CRIU, their features and the cgroup version, and a container's state when asked; exit the module."""
    params = _params(module)
    runc_path, criu_path = params["runc_path"], params["criu_path"]
    result = {
        "changed": False,
        "runc_version": runc_version(module, runc_path),
        "criu_version": _criu.criu_version(module, criu_path),
        "criu_check": _criu.criu_check(module, criu_path),
        "features": _criu.probe_features(module, criu_path),
        "cgroup_version": cgroup_version(module),
        "containers": container_list(module, runc_path, params["root"]),
    }
    if params["container_id"]:
        result["container"] = container_state(module, runc_path, params["root"], params["container_id"])
    module.exit_json(**result)


def runc_version(module, runc_path: str) -> str:
    """Return runc's version ("1.1.5+ds1") from `runc --version`."""
    rc, out, err = module.run_command([runc_path, "--version"], check_rc=False)
    match = re.search(r"^runc version (\S+)", out, re.MULTILINE)
    if rc != 0 or not match:
        module.fail_json(msg=f"reading the runc version failed: {runc_path} --version exited with {rc}: {(err or out).strip()}")
    return match.group(1)


def cgroup_version(module) -> int:
    """2 on the unified hierarchy (cgroup2fs on /sys/fs/cgroup), else 1."""
    stat_path = module.get_bin_path("stat", required=True)
    rc, out, err = module.run_command([stat_path, "--file-system", "--format", "%T", "/sys/fs/cgroup"], check_rc=False)
    if rc != 0:
        module.fail_json(msg=f"reading the cgroup version failed: stat of /sys/fs/cgroup exited with {rc}: {err.strip()}")
    return 2 if out.strip() == "cgroup2fs" else 1
