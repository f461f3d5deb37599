"""Stand-ins for driving a whole migration in-process: a Receiver in a thread and a Sender, each with a fake module.

FakeModule answers run_command from a script of Steps, asserts the exact argv of each command and, like the
real command, leaves its files behind (an effect). Migration lays out both hosts' directories in tmp_path, builds
the Steps of the commands each side must run (written out literally: the tests assert the command lines, they
do not rebuild them with the code under test) and runs the two sides against each other on 127.0.0.1.

Post-copy starts real processes: stand-in scripts for `runc checkpoint --lazy-pages` (sender) and
`criu lazy-pages` (receiver) that talk through files in tmp_path (see lazy_runc_script and lazy_daemon_script).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, List, Optional

from ansible_collections.ferry.runc.plugins.module_utils import _receiver
from ansible_collections.ferry.runc.plugins.module_utils._receiver import Receiver
from ansible_collections.ferry.runc.plugins.module_utils._sender import Sender

FIXTURES = Path(__file__).parents[2] / "fixtures" / "criu"
SECRET = "migration secret"
CONTAINER = "c1"
RUNC = "/usr/bin/runc"
CRIU = "/usr/bin/criu"
ROOT = "/run/runc"
ADDRESS = "127.0.0.1"
PAGE_SERVER_PORT = 27101
LAZY_PORT = 27102
PAGE_SIZE = 4096
IO_TIMEOUT = 10.0
# Pages each stats fixture says were written (what the fake dump writes to pages-1.img).
PAGES_WRITTEN = {"pre-dump": 34, "dump-with-parent": 24}
PRE_DUMP_IMAGES = ("inventory.img", "pagemap-1.img", "pages-1.img")
DUMP_IMAGES = ("inventory.img", "pstree.img", "core-1.img", "mm-1.img", "files.img", "pagemap-1.img", "pages-1.img")
MEMORY_IMAGES = ("pagemap-1.img", "pages-1.img")
RUNC_RESTORE_ERROR = 'time="2026-11-25T22:40:01Z" level=error msg="criu failed: type NOTIFY errno 0\\nlog file: {log}"'


class FailJson(Exception):
    """What AnsibleModule.fail_json would have ended the module with."""


class Step:
    """One command a side must run: its exact argv, the answer, and what the command leaves behind."""

    def __init__(self, argv: List[str], rc: int = 0, out: str = "", err: str = "",
                 effect: Optional[Callable[[], None]] = None, optional: bool = False) -> None:
        self.argv = [str(arg) for arg in argv]
        self.rc = rc
        self.out = out
        self.err = err
        self.effect = effect
        self.optional = optional


class FakeModule:
    """Just enough of AnsibleModule for Sender and Receiver; run_command follows the script of Steps in order."""

    def __init__(self, name: str, steps: List[Step]) -> None:
        self.name = name
        self.steps = list(steps)
        self.calls: List[List[str]] = []
        self.errors: List[str] = []

    def run_command(self, args: List[Any], check_rc: bool = False, **kwargs: Any) -> tuple:
        assert check_rc is False and not kwargs, f"{self.name}: run_command({args!r}, check_rc={check_rc!r}, {kwargs!r})"
        argv = [str(arg) for arg in args]
        self.calls.append(argv)
        while self.steps and self.steps[0].optional and self.steps[0].argv != argv:
            self.steps.pop(0)
        if not self.steps:
            self._mismatch(f"unexpected command {argv}")
        step = self.steps.pop(0)
        if argv != step.argv:
            self._mismatch(f"command {len(self.calls)}: expected {step.argv}, got {argv}")
        if step.effect:
            step.effect()
        return step.rc, step.out, step.err

    def _mismatch(self, message: str) -> None:
        self.errors.append(f"{self.name}: {message}")
        raise AssertionError(self.errors[-1])

    @staticmethod
    def get_bin_path(name: str, required: bool = False, opt_dirs: Any = None) -> str:
        assert required and opt_dirs is None
        return f"/usr/bin/{name}"

    @staticmethod
    def fail_json(**kwargs: Any) -> None:
        raise FailJson(kwargs)

    def check(self) -> None:
        """Every command ran as scripted (optional ones may be left)."""
        assert not self.errors, self.errors
        missing = [step.argv for step in self.steps if not step.optional]
        assert not missing, f"{self.name}: commands never run: {missing}"


class Background:
    """Run a call in a daemon thread; result() re-raises what it raised."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(func, *args), daemon=True)
        self._thread.start()

    def _run(self, func: Callable[..., Any], *args: Any) -> None:
        try:
            self._value = func(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self._error = exc

    def result(self, timeout: float = IO_TIMEOUT) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the background call did not finish within {timeout} s"
        if self._error is not None:
            raise self._error
        return self._value


class Outcome:
    """What a migration run left: the sender's report and error, the receiver's result, both fake modules."""

    def __init__(self, report: dict, error: Optional[BaseException], receiver: dict, sender_module: FakeModule,
                 receiver_module: FakeModule) -> None:
        self.report = report
        self.error = error
        self.receiver = receiver
        self.sender_module = sender_module
        self.receiver_module = receiver_module


def image_bytes(name: str, size: int) -> bytes:
    """Deterministic content for a fake image file."""
    pattern = f"{name}:".encode()
    return (pattern * (size // len(pattern) + 1))[:size]


def write_images(directory: Path, names: tuple, pages: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        size = pages * PAGE_SIZE if name == "pages-1.img" else 64 + len(name)
        (directory / name).write_bytes(image_bytes(name, size))


def running_state(bundle: Path, status: str = "running") -> str:
    return json.dumps({"ociVersion": "1.0.2", "id": CONTAINER, "pid": 4242, "status": status, "bundle": str(bundle),
                       "rootfs": str(bundle / "rootfs"), "created": "2026-11-25T22:34:11Z", "owner": ""})


def write_bundle(bundle: Path, config: str = '{"ociVersion": "1.0.2", "process": {"args": ["/bin/counter"]}}') -> None:
    (bundle / "rootfs" / "bin").mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(config)
    (bundle / "rootfs" / "bin" / "counter").write_bytes(b"\x7fELF counter")
    (bundle / "rootfs" / "data.txt").write_text("count=1\n")
    os.symlink("bin/counter", bundle / "rootfs" / "entry")


class Migration:
    """One migration between two 'hosts' in tmp_path; tests fill sender_steps and receiver_steps, then run()."""

    def __init__(self, tmp_path: Path, monkeypatch: Any, strategy: str = "stop-and-copy", transport: str = "shared",
                 bundle_sync: str = "shared") -> None:
        self.tmp = tmp_path
        self.shared = transport == "shared"
        self.source_images = tmp_path / ("share" if self.shared else "src") / "images" / "m1"
        self.destination_images = self.source_images if self.shared else tmp_path / "dst" / "images" / "m1"
        self.work = tmp_path / "dst" / "work" / "m1"
        if bundle_sync == "shared":
            self.source_bundle = self.destination_bundle = tmp_path / "share" / "bundles" / CONTAINER
        else:
            self.source_bundle = tmp_path / "src" / "bundles" / CONTAINER
            self.destination_bundle = tmp_path / "dst" / "bundles" / CONTAINER
        write_bundle(self.source_bundle)
        for parent in (self.source_images.parent, self.destination_images.parent, self.work.parent):
            parent.mkdir(parents=True, exist_ok=True)
        self.source_runc = RUNC
        self.receiver_criu = CRIU
        self.sender_params = {
            "container": CONTAINER, "image_dir": str(self.source_images), "strategy": strategy, "transport": transport,
            "bundle_sync": bundle_sync, "receiver_address": ADDRESS, "receiver_port": None, "secret": SECRET,
            "lazy_address": ADDRESS if strategy == "post-copy" else None, "lazy_port": LAZY_PORT,
            "downtime_budget_ms": 1000, "min_shrink": 0.25, "max_rounds": 8, "min_rounds": 1, "keep_images": False,
            "connect_timeout": 5, "dump_timeout": 10, "tcp_established": False, "file_locks": False,
            "ext_unix_sk": False, "shell_job": False, "manage_cgroups_mode": None, "root": None, "runc_path": None,
            "criu_path": None, "tls_cacert": None, "tls_cert": None, "tls_key": None,
        }
        self.receiver_params = {
            "container": CONTAINER, "bundle": str(self.destination_bundle), "image_dir": str(self.destination_images),
            "work_dir": str(self.work), "listen_address": ADDRESS, "port": 0, "page_server_port": PAGE_SERVER_PORT,
            "secret": SECRET, "verify_images": True, "connect_timeout": 10, "lazy_timeout": 10,
            "tcp_established": False, "manage_cgroups_mode": None, "root": None, "runc_path": None, "criu_path": None,
            "tls_cacert": None, "tls_cert": None, "tls_key": None,
        }
        self.sender_steps: List[Step] = []
        self.receiver_steps: List[Step] = []
        self.page_servers: List[subprocess.Popen] = []
        self.receiver_channel: Any = None
        real_accept = _receiver.accept

        def accept(*args: Any) -> Any:
            self.receiver_channel = real_accept(*args)
            return self.receiver_channel

        monkeypatch.setattr(_receiver, "accept", accept)

    # -- running ----------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Run the receiver in a thread and the sender here; the sender's error is kept for the test."""
        serving, receiver_module = self.serve()
        sender_module = FakeModule("sender", self.sender_steps)
        sender = Sender(sender_module, self.sender_params, self.source_runc)
        error: Optional[BaseException] = None
        try:
            sender.run()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            error = exc
        try:
            result = self.served(serving, receiver_module, sender_module)
        except AssertionError as exc:
            raise AssertionError(f"{exc} (the sender ended with {error!r})") from exc
        assert not isinstance(error, AssertionError), error
        return Outcome(sender.report, error, result, sender_module, receiver_module)

    def serve(self) -> tuple:
        """Start the receiver listening on a free port (which the sender's params then name), serving in a thread."""
        receiver_module = FakeModule("receiver", self.receiver_steps)
        receiver = Receiver(receiver_module, self.receiver_params, RUNC, self.receiver_criu)
        listener = receiver.listen()
        self.sender_params["receiver_port"] = listener.getsockname()[1]
        return Background(receiver.run, listener), receiver_module

    @staticmethod
    def served(serving: Background, receiver_module: FakeModule, sender_module: FakeModule) -> dict:
        """The receiver's result, once both sides ran exactly their scripted commands."""
        try:
            return serving.result()
        finally:
            assert not receiver_module.errors + sender_module.errors, receiver_module.errors + sender_module.errors
            sender_module.check()
            receiver_module.check()

    def close(self) -> None:
        for process in self.page_servers:
            if process.poll() is None:
                process.kill()
            process.wait()

    # -- the source's commands --------------------------------------------------------------------------

    def runc(self, *args: str) -> List[str]:
        return [self.source_runc, "--root", ROOT, *args]

    def source_state(self, status: str = "running", optional: bool = False) -> Step:
        return Step(self.runc("state", CONTAINER), out=running_state(self.source_bundle, status), optional=optional)

    def cpuinfo_dump(self, rc: int = 0, err: str = "") -> Step:
        def effect() -> None:
            if rc == 0:
                (self.source_images / "cpuinfo.img").write_bytes(image_bytes("cpuinfo", 300))

        return Step([CRIU, "cpuinfo", "dump", "-D", self.source_images], rc=rc, err=err, effect=effect)

    def pause(self, effect: Optional[Callable[[], None]] = None) -> Step:
        return Step(self.runc("pause", CONTAINER), effect=effect)

    def resume(self, rc: int = 0, err: str = "", optional: bool = False) -> Step:
        return Step(self.runc("resume", CONTAINER), rc=rc, err=err, optional=optional)

    def delete_source(self, rc: int = 0, err: str = "") -> Step:
        return Step(self.runc("delete", "--force", CONTAINER), rc=rc, err=err)

    def dump(self, directory: str, *flags: str, stats: str = "dump-with-parent", rc: int = 0) -> Step:
        """runc checkpoint into image_dir/directory; a pre-dump when flags hold --pre-dump, a page-server dump with --page-server."""
        path = self.source_images / directory
        argv = self.runc("checkpoint", "--image-path", str(path), "--work-path", str(path), *flags, CONTAINER)
        pre_dump = "--pre-dump" in flags
        to_page_server = "--page-server" in flags

        def effect() -> None:
            if rc != 0:
                shutil.copyfile(FIXTURES / "dump-failed.log", path / "dump.log")
                return
            names = PRE_DUMP_IMAGES if pre_dump else DUMP_IMAGES
            local = [name for name in names if not (to_page_server and name in MEMORY_IMAGES)]
            write_images(path, tuple(local), PAGES_WRITTEN[stats])
            if to_page_server:
                # CRIU sends memory to the receiver's page server, which writes it and ends with the dump.
                write_images(self.destination_images / directory, MEMORY_IMAGES, PAGES_WRITTEN[stats])
                self.page_servers[-1].terminate()
                self.page_servers[-1].wait()
            shutil.copyfile(FIXTURES / f"{stats}.stats-dump", path / "stats-dump")
            (path / "dump.log").write_text("(00.000001) Dumping finished successfully\n")

        err = 'level=error msg="criu failed: type PRE_DUMP errno 0"' if rc else ""
        return Step(argv, rc=rc, err=err, effect=effect)

    # -- the destination's commands ---------------------------------------------------------------------

    @staticmethod
    def destination_runc(*args: str) -> List[str]:
        return [RUNC, "--root", ROOT, *args]

    def destination_state(self, exists: bool = False) -> Step:
        if exists:
            return Step(self.destination_runc("state", CONTAINER), out=running_state(self.destination_bundle))
        return Step(self.destination_runc("state", CONTAINER), rc=1, err="container does not exist")

    def cpuinfo_check(self, rc: int = 0, err: str = "") -> Step:
        def effect() -> None:
            # The receiver checks the source's CPU description, which came over the channel.
            assert (self.work / "cpuinfo.img").read_bytes() == (self.source_images / "cpuinfo.img").read_bytes()

        return Step([self.receiver_criu, "cpuinfo", "check", "-D", self.work], rc=rc, err=err, effect=effect)

    def page_server(self, directory: str, parent: Optional[str] = None) -> Step:
        """criu page-server -d: its pidfile names a process that looks like a page server (a sleep we started)."""
        path = self.destination_images / directory
        pidfile = path / "page-server.pid"
        argv = [self.receiver_criu, "page-server", "-D", path, "--address", ADDRESS, "--port", str(PAGE_SERVER_PORT), "-d",
                "--pidfile", pidfile, "-o", "page-server.log"]
        if parent:
            argv += ["--prev-images-dir", f"../{parent}"]

        def effect() -> None:
            process = subprocess.Popen(  # pylint: disable=consider-using-with
                ["criu-page-server-stand-in", "30"], executable=shutil.which("sleep"),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.page_servers.append(process)
            pidfile.write_text(f"{process.pid}\n")

        return Step(argv, effect=effect)

    def restore(self, *flags: str, image: Optional[Path] = None, work: Optional[Path] = None, rc: int = 0,
                effect: Optional[Callable[[], None]] = None) -> Step:
        image = image or self.destination_images / "final"
        work = work or self.work / "restore"
        argv = self.destination_runc("restore", "--image-path", str(image), "--work-path", str(work), "--bundle",
                                     str(self.destination_bundle), "--detach", *flags, CONTAINER)

        def restored() -> None:
            if rc != 0:
                shutil.copyfile(FIXTURES / "restore-failed.log", work / "restore.log")
            else:
                shutil.copyfile(FIXTURES / "restore.stats-restore", work / "stats-restore")
            if effect:
                effect()

        err = RUNC_RESTORE_ERROR.format(log=work / "restore.log") if rc else ""
        return Step(argv, rc=rc, err=err, effect=restored)

    def lazy_restore_steps(self, rc: int = 0, effect: Optional[Callable[[], None]] = None) -> List[Step]:
        """The receiver's commands of a post-copy migration up to its restore, from the local copy in work/lazy."""
        lazy = self.work / "lazy"
        return [self.destination_state(), self.cpuinfo_check(), self.restore("--lazy-pages", image=lazy, work=lazy, rc=rc, effect=effect)]

    def delete_destination(self, optional: bool = False) -> Step:
        return Step(self.destination_runc("delete", "--force", CONTAINER), optional=optional)

    def drop_connection(self) -> None:
        """The link dies: the receiver's end of the channel is gone (for an effect during the restore)."""
        self.receiver_channel.close()

    # -- post-copy stand-ins ----------------------------------------------------------------------------

    def lazy_runc_script(self, ready: bool = True, criu_child: bool = False) -> None:
        """The sender's runc: `checkpoint --lazy-pages` writes the non-memory images, one status byte on fd 3, then
        serves pages until the destination's daemon wrote lazy-end (its exit code); with ready=False it fails first.
        With criu_child it first starts a child standing for runc's CRIU (pid in criu-child.pid), which outlives it."""
        final = self.source_images / "final"
        body = [f'final="{final}"', f'printf "%s\\n" "$@" > "{self.tmp}/runc-lazy.args"']
        if criu_child:
            body += [f'sleep 61 & echo $! > "{self.tmp}/criu-child.pid"']
        if not ready:
            body += [f'cp "{FIXTURES}/dump-failed.log" "$final/dump.log"', "exit 1"]
        else:
            body += [f'printf "%s\\n" "{name}" > "$final/{name}"' for name in DUMP_IMAGES if name != "pages-1.img"]
            body += [
                'printf "(00.100000) Dumping finished successfully\\n" > "$final/dump.log"',
                "printf x >&3",
                "exec 3>&-",
                "i=0",
                f'while [ ! -e "{self.tmp}/lazy-end" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done',
                f'cp "{FIXTURES}/dump-with-parent.stats-dump" "$final/stats-dump"',
                f'exit "$(cat "{self.tmp}/lazy-end" 2>/dev/null || echo 2)"',
            ]
        self.source_runc = self._script("runc", body)
        self.sender_params["runc_path"] = self.source_runc

    def lazy_daemon_script(self, mode: str) -> None:
        """The receiver's criu: `lazy-pages` makes its socket, waits for the restore to end, then (mode) serves every
        page and exits 0, fails and exits 1, or hangs; or (fail-first) fails as soon as the restore has begun."""
        lazy = self.work / "lazy"
        awaited = self.tmp / "restore-began" if mode == "fail-first" else lazy / "stats-restore"
        body = [
            f'printf "%s\\n" "$@" > "{self.tmp}/criu-lazy.args"',
            f': > "{lazy}/lazy-pages.socket"',
            "i=0",
            f'while [ ! -e "{awaited}" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done',
        ]
        body += {
            "serve": [f'echo 0 > "{self.tmp}/lazy-end"', "exit 0"],
            "fail-first": [
                f'printf "(00.1) Error (criu/page-xfer.c:1545): page-xfer: Can\'t connect to server: Connection refused\\n"'
                f' > "{lazy}/lazy-pages.log"',
                "exit 1",
            ],
            "fail": [
                f'printf "(00.2) uffd: 4242: fetching pages\\n(00.3) Error (criu/uffd.c:1021): uffd: 4242: lost the page server\\n"'
                f' > "{lazy}/lazy-pages.log"',
                f'echo 1 > "{self.tmp}/lazy-end"',
                "exit 1",
            ],
            "hang": ["exec sleep 10"],
        }[mode]
        self.receiver_criu = self._script("criu", body)

    def stuck_restore(self) -> None:
        """What runc restore does when CRIU waits for ever: a process named criu, started by one whose command line is
        runc's, waited for; returns (or fails the test) when that CRIU has been ended."""
        criu = self.tmp / "bin" / "stuck" / "criu"
        criu.parent.mkdir(parents=True, exist_ok=True)
        criu.symlink_to(shutil.which("sleep"))
        work = str(self.work / "lazy")
        runc = subprocess.Popen(  # pylint: disable=consider-using-with
            ["sh", "-c", f'"{criu}" 30 & : > "{self.tmp}/restore-began"; wait $!', "runc", "restore", "--work-path", work],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            runc.wait(timeout=IO_TIMEOUT)
        finally:
            runc.kill()

    def _script(self, name: str, body: List[str]) -> str:
        path = self.tmp / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("#!/bin/sh\n" + "\n".join(body) + "\n")
        path.chmod(0o755)
        return str(path)

    def recorded_args(self, name: str) -> List[str]:
        return (self.tmp / name).read_text().splitlines()
