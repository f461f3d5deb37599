"""Two fake hosts and the link between them, for whole migrations by the real agents as real processes.

Each host is a directory of tmp_path with fake runc, criu, iptables and ip6tables (fakehost.py) first on its PATH
and its own mount namespace in which /run/ferry-runc and /etc/criu are its own directories: the agents run exactly as
on a host (their code from the action plugin's zip, their parameters, status files, runc's CRIU configuration and its
lock, the firewall rules), and a SIGKILL is a SIGKILL. The control channel runs through a proxy (Link) that can cut
the link at a given message, for a given time, or make it flap. The controller's part - awaiting the agents, then
settling what they left - runs the collection's modules (migration_status, migration_resolve) in the hosts'
namespaces and decides with the protocol's resolve().

Needs root (mount namespaces), like the lab.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from ansible_collections.ferry.runc.plugins.plugin_utils._agent_code import agent_code
from ansible_collections.ferry.runc.plugins.module_utils import _agent
from ansible_collections.ferry.runc.plugins.module_utils._protocol import resolve

HERE = Path(__file__).parent
FIXTURES = HERE.parents[1] / "fixtures" / "criu"
COLLECTIONS = HERE.parents[3] / "collections"
MODULES = COLLECTIONS / "ansible_collections" / "ferry" / "runc" / "plugins" / "modules"
CONTAINER = "c1"
MIGRATION = "m1"
SECRET = "fault matrix secret"
ADDRESS = "127.0.0.1"
# Short enough to keep a test within seconds, long enough for a loaded machine's process starts.
LINK_TIMEOUT = 1
INDOUBT_TIMEOUT = 6
AGENT_END_TIMEOUT = 60
CODE = agent_code()
# The mount points of each fake host's own directories (empty directories where none exist: nothing reads them).
for _mount_point in (_agent.RUN_DIR, "/etc/criu"):
    os.makedirs(_mount_point, exist_ok=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((ADDRESS, 0))
        return probe.getsockname()[1]


class Host:
    """A fake host: its directory, fake binaries, namespace wrapper and containers."""

    def __init__(self, root: Path, name: str, net: Path) -> None:
        self.name = name
        self.dir = root / name
        self.run_dir = self.dir / "run"
        self.criu_dir = self.dir / "etc-criu"
        self.bin = self.dir / "bin"
        for path in (self.run_dir, self.criu_dir, self.bin):
            path.mkdir(parents=True)
        for tool in ("runc", "criu", "iptables", "ip6tables"):
            wrapper = self.bin / tool
            wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {HERE / "fakehost.py"} {tool} "$@"\n')
            wrapper.chmod(0o755)
        self.env = dict(os.environ, FERRY_FAKE_HOST=str(self.dir), FERRY_FAKE_NET=str(net), FERRY_FAKE_FIXTURES=str(FIXTURES),
                        PATH=f"{self.bin}:{os.environ['PATH']}", PYTHONPATH=str(COLLECTIONS))

    def wrap(self, argv: List[str]) -> List[str]:
        """argv run in this host's own mount namespace (its /run/ferry-runc and /etc/criu)."""
        script = 'mount --bind "$1" /run/ferry-runc && mount --bind "$2" /etc/criu && shift 2 && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(self.run_dir), str(self.criu_dir), *argv]

    def spawn(self, argv: List[str]) -> subprocess.Popen:
        return subprocess.Popen(self.wrap(argv), env=self.env, stdin=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def module(self, name: str, args: Dict[str, Any]) -> Dict[str, Any]:
        """Run one of the collection's modules here, as Ansible would (its arguments in a file), and return its result."""
        args_file = self.dir / f"{name}.args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        done = subprocess.run(self.wrap([sys.executable, str(MODULES / f"{name}.py"), str(args_file)]), env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)
        return json.loads(done.stdout)

    # -- containers ---------------------------------------------------------------------------------------------------

    def run_container(self, bundle: Path, stdout: Any = subprocess.DEVNULL) -> None:
        argv = [sys.executable, str(HERE / "fakecontainer.py"), str(self.dir / f"{CONTAINER}.counter"), "0"]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,  # pylint: disable=consider-using-with
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        self._write_state({CONTAINER: {"pid": process.pid, "status": "running", "bundle": str(bundle), "created": time.time()}})
        while self.count() < 3:
            time.sleep(0.01)

    def containers(self) -> Dict[str, Dict[str, Any]]:
        path = self.dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_state(self, containers: Dict[str, Any]) -> None:
        (self.dir / "state.json").write_text(json.dumps(containers))

    def copy_state(self) -> str:
        """absent, running (counting), held (restored, stopped by itself), paused, or dead."""
        entry = self.containers().get(CONTAINER)
        if entry is None:
            return "absent"
        state = task_state(entry["pid"])
        if state in ("gone", "Z"):
            return "dead"
        if entry["status"] == "paused":
            return "paused"
        return "held" if state == "T" else "running"

    def count(self) -> int:
        try:
            return int((self.dir / f"{CONTAINER}.counter").read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def commands(self) -> List[List[str]]:
        path = self.dir / "commands.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def rules(self, tool: str = "iptables") -> List[str]:
        """The INPUT chain's rules, as iptables -S lists them after -A INPUT."""
        path = self.dir / f"{tool}.json"
        return json.loads(path.read_text()) if path.exists() else []

    def set_rules(self, rules: List[str], tool: str = "iptables") -> None:
        (self.dir / f"{tool}.json").write_text(json.dumps(rules))

    def guards(self) -> List[Dict[str, Any]]:
        """Each page server that started here: its port and the rules in force then."""
        path = self.dir / "guards.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def add_fault(self, command: str, when: str, do: str, event: Optional[Dict[str, Any]] = None) -> None:
        path = self.dir / "faults.json"
        faults = json.loads(path.read_text()) if path.exists() else []
        faults.append({"command": command, "when": when, "do": do, "event": event})
        path.write_text(json.dumps(faults))

    def fired(self) -> List[str]:
        path = self.dir / "faults.log"
        return path.read_text().splitlines() if path.exists() else []

    def status(self, side: str) -> Optional[Dict[str, Any]]:
        return _agent.read_json(str(self.run_dir / MIGRATION / f"{side}.json"))

    def kill_everything(self) -> None:
        for entry in self.containers().values():
            _kill(entry["pid"])


def task_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Link:
    """The control channel's link: a proxy that forwards whole frames, and on demand holds them (a flap: delivered
    late, the connection stays) or cuts the link (nothing goes through; after the cut's time both ends are reset and
    new connections refused until it ends)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((ADDRESS, 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.trigger: Optional[Dict[str, Any]] = None
        self.cut_until = 0.0
        self.seen: List[str] = []
        self.pairs: List[tuple] = []
        self.on_message: Optional[Any] = None
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def fault_at(self, kind: str, fault: str, seconds: float, direction: str = "sender") -> None:
        """When a frame of this kind comes from direction: cut (for seconds) or flap (hold it seconds)."""
        self.trigger = {"kind": kind, "fault": fault, "seconds": seconds, "direction": direction}

    def _accept(self) -> None:
        while True:
            try:
                client, _peer = self.listener.accept()
            except OSError:
                return
            if time.monotonic() < self.cut_until:
                client.close()
                continue
            try:
                server = socket.create_connection((ADDRESS, self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                self.pairs.append((client, server))
            threading.Thread(target=self._pump, args=(server, client, "receiver"), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, server, "sender"), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, direction: str) -> None:
        """Frames are length (4 bytes) | MAC (32) | payload after two plain authentication frames; the payload of a
        message is JSON with its type."""
        try:
            plain = 1  # each side sends one plain frame (the nonce; the answer) before the authenticated ones
            while True:
                header = _read(source, 4)
                length = int.from_bytes(header, "big")
                if plain:
                    frame = header + _read(source, length)
                    plain -= 1
                else:
                    frame = header + _read(source, 32 + length)
                    self._inspect(frame[36:], direction)
                self._hold_while_cut(source, target)
                target.sendall(frame)
        except OSError:
            pass
        finally:
            _end(source, target)

    def _inspect(self, payload: bytes, direction: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if not isinstance(message, dict):
            return  # a chunk of file data that happens to read as JSON
        kind = message.get("type")
        self.seen.append(f"{direction}:{kind}")
        if self.on_message:
            self.on_message(direction, kind)
        trigger = self.trigger
        if trigger and trigger["kind"] == kind and trigger["direction"] == direction:
            self.trigger = None
            if trigger["fault"] == "cut":
                self.cut(trigger["seconds"])
            else:
                self.hold_until = time.monotonic() + trigger["seconds"]

    hold_until = 0.0

    def cut(self, seconds: float) -> None:
        """Nothing passes for seconds; once the agents' link timeout has run out, their connections are reset."""
        self.cut_until = time.monotonic() + seconds
        threading.Timer(min(seconds, LINK_TIMEOUT), self._reset).start()

    def _reset(self) -> None:
        with self.lock:
            for pair in self.pairs:
                _end(*pair)
            self.pairs = []

    def _hold_while_cut(self, source: socket.socket, target: socket.socket) -> None:
        while time.monotonic() < max(self.cut_until, self.hold_until):
            time.sleep(0.02)
        if target.fileno() < 0:
            raise OSError("the link was cut")

    def close(self) -> None:
        self.listener.close()
        self._reset()


def _end(*ends: socket.socket) -> None:
    """Both ends see the connection end (shutdown wakes a thread blocked on the socket; close alone would not)."""
    for end in ends:
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        end.close()


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


class World:
    """Source, destination, the share, the link; one migration of container c1 from source to destination."""

    def __init__(self, tmp: Path, strategy: str = "stop-and-copy", transport: str = "shared") -> None:
        self.tmp = tmp
        net = tmp / "net"
        net.mkdir()
        self.source = Host(tmp, "src", net)
        self.destination = Host(tmp, "dst", net)
        self.bundle = tmp / "share" / "bundles" / CONTAINER
        (self.bundle / "rootfs").mkdir(parents=True)
        (self.bundle / "config.json").write_text('{"ociVersion": "1.0.2", "mounts": []}')
        self.shared = transport == "shared"
        self.source_images = tmp / ("share" if self.shared else "src") / "images" / MIGRATION
        self.destination_images = self.source_images if self.shared else tmp / "dst" / "images" / MIGRATION
        self.source_images.parent.mkdir(parents=True, exist_ok=True)
        self.destination_images.parent.mkdir(parents=True, exist_ok=True)
        receiver_port = free_port()
        self.link = Link(receiver_port)
        common = {"migration_id": MIGRATION, "container": CONTAINER, "secret": SECRET, "connect_timeout": 5,
                  "timeout": 60, "link_timeout": LINK_TIMEOUT, "indoubt_timeout": INDOUBT_TIMEOUT, "tls_cacert": None,
                  "tls_cert": None, "tls_key": None, "page_stream_plaintext": True, "root": "/run/runc",
                  "runc_path": str(self.source.bin / "runc")}
        self.receiver_params = dict(
            common, image_dir=str(self.destination_images), bundle=str(self.bundle), work_dir=str(tmp / "dst" / "work" / MIGRATION),
            listen_address=ADDRESS, port=receiver_port, page_server_port=free_port(), verify_images=True,
            runc_path=str(self.destination.bin / "runc"), criu_path=str(self.destination.bin / "criu"),
        )
        self.sender_params = dict(
            common, image_dir=str(self.source_images), strategy=strategy, candidates=[], transport=transport, bundle_sync="shared",
            receiver_address=ADDRESS, receiver_port=self.link.port, lazy_address=ADDRESS, lazy_port=free_port(),
            downtime_budget_ms=1, learned_costs={}, min_shrink=0.25, max_rounds=2, min_rounds=2, keep_images=False,
            tcp_established=False, ext_unix_sk=False, shell_job=False, file_locks=True, manage_cgroups_mode=None,
            criu_path=str(self.source.bin / "criu"),
        )
        (tmp / "dst" / "work").mkdir(parents=True)
        self.agents: Dict[str, subprocess.Popen] = {}
        self.count_at_start = 0
        self.message_actions: Dict[tuple, Dict[str, Any]] = {}
        self.link.on_message = self._message_seen
        self.events = net / "events"
        self.events.mkdir()
        self.closed = threading.Event()
        threading.Thread(target=self._watch_events, daemon=True).start()

    # -- faults -------------------------------------------------------------------------------------------------------

    def at_message(self, direction: str, kind: str, action: str, seconds: float = 0.0) -> None:
        """When a message of kind comes from direction, before it goes on: cut, flap, kill-sender, kill-receiver."""
        self.message_actions[(direction, kind)] = {"action": action, "seconds": seconds}

    def at_command(self, host: Host, command: str, when: str, action: str, seconds: float = 0.0) -> None:
        """Around a runc/criu command on host: kill-caller (the agent that runs it), fail, or (through an event)
        cut, kill-sender, kill-receiver."""
        if action in ("kill-caller", "fail", "hang"):
            host.add_fault(command, when, action)
        else:
            host.add_fault(command, when, "event", {"action": action, "seconds": seconds})

    def _message_seen(self, direction: str, kind: str) -> None:
        action = self.message_actions.pop((direction, kind), None)
        if action:
            self._act(action)

    def at_message_call(self, direction: str, kind: str, call) -> None:
        """When a message of kind comes from direction, call(world) before it goes on."""
        self.message_actions[(direction, kind)] = {"action": "call", "call": call}

    def _act(self, action: Dict[str, Any]) -> None:
        if action["action"] == "call":
            action["call"](self)
        elif action["action"] == "cut":
            self.link.cut(action["seconds"])
        elif action["action"] == "flap":
            self.link.hold_until = time.monotonic() + action["seconds"]
        elif action["action"].startswith("kill-"):
            self.kill(action["action"][len("kill-"):])
            self.agents[action["action"][len("kill-"):]].wait()
        elif action["action"].startswith("terminate-"):
            os.kill(self.agents[action["action"][len("terminate-"):]].pid, signal.SIGTERM)

    def _watch_events(self) -> None:
        while not self.closed.is_set():
            for event in sorted(self.events.glob("*.json")):
                self._act(json.loads(event.read_text()))
                event.unlink()
            time.sleep(0.01)

    # -- running the migration ----------------------------------------------------------------------------------------

    def start(self, container_stdout: Any = subprocess.DEVNULL) -> None:
        self.source.run_container(self.bundle, container_stdout)
        self.count_at_start = self.source.count()
        self._launch(self.destination, "receiver", self.receiver_params)
        self._launch(self.source, "sender", self.sender_params)

    def _launch(self, host: Host, side: str, params: Dict[str, Any]) -> None:
        directory = _agent.install(MIGRATION, CODE, run_dir=str(host.run_dir))
        params_path = _agent.write_params(directory, side, params, "process")
        inside = f"{_agent.RUN_DIR}/{MIGRATION}"
        command = _agent.agent_command(inside, side, f"{inside}/{os.path.basename(params_path)}")
        self.agents[side] = host.spawn(command)

    def kill(self, side: str) -> None:
        """SIGKILL the agent (not its namespace's wrapper, which exec'd it: the same process)."""
        os.kill(self.agents[side].pid, signal.SIGKILL)

    def wait_for_agents(self) -> None:
        deadline = time.monotonic() + AGENT_END_TIMEOUT
        for side in ("sender", "receiver"):
            try:
                self.agents[side].wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise AssertionError(f"the {side} agent did not end within {AGENT_END_TIMEOUT} s: {self.statuses()}") from exc
        # The sender starts the guardian before it freezes: then give the guardian the time to start and to act.
        sender = self.source.status("sender") or {}
        if not any(entry["phase"] == "frozen" for entry in sender.get("history", [])):
            return
        guardian_deadline = time.monotonic() + 10
        while time.monotonic() < guardian_deadline:
            guardian = self.source.status("guardian")
            if guardian is not None and (guardian.get("finished") or not _alive(guardian.get("agent"))):
                return
            time.sleep(0.1)
        raise AssertionError(f"the guardian did not end within 10 s of the sender: {self.source.status('guardian')}")

    def statuses(self) -> Dict[str, Any]:
        return {side: host.status(side) for host, side in ((self.source, "sender"), (self.destination, "receiver"))}

    # -- the controller's part ----------------------------------------------------------------------------------------

    def settle(self) -> Dict[str, Any]:
        """What the role does after the agents: read both hosts, decide, carry it out. Returns the decision."""
        views = {}
        for host, side in ((self.source, "sender"), (self.destination, "receiver")):
            views[side] = host.module("migration_status", {"migration_id": MIGRATION, "side": side, "container": CONTAINER,
                                                           "wait": 0, "root": "/run/runc", "runc_path": str(host.bin / "runc")})
        decision = resolve(views["sender"]["phase"], views["sender"]["container_status"], views["receiver"]["phase"],
                           views["receiver"]["container_status"])
        steps = [(self.destination, "receiver", decision.destination_action), (self.source, "sender", decision.source_action)]
        for host, side, action in sorted(steps, key=lambda step: step[2] == "delete"):
            if action != "none":
                result = self.module_on(host, side, action)
                assert not result.get("failed"), f"migration_resolve {side} {action}: {result}"
        return {"decision": decision, "views": views}

    def module_on(self, host: Host, side: str, action: str) -> Dict[str, Any]:
        return host.module("migration_resolve", {"migration_id": MIGRATION, "side": side, "action": action, "container": CONTAINER,
                                                 "root": "/run/runc", "runc_path": str(host.bin / "runc")})

    # -- what it left -------------------------------------------------------------------------------------------------

    def copies(self) -> Dict[str, str]:
        return {"src": self.source.copy_state(), "dst": self.destination.copy_state()}

    def running_copy(self) -> Optional[Host]:
        """The one host whose copy counts on (after a short look); fails when both do."""
        running = [host for host in (self.source, self.destination) if host.copy_state() == "running"]
        assert len(running) <= 1, f"two copies run: {self.copies()}"
        return running[0] if running else None

    def close(self) -> None:
        self.closed.set()
        for process in self.agents.values():
            _kill(process.pid)
        for host in (self.source, self.destination):
            host.kill_everything()
            for side in ("sender", "receiver", "guardian"):
                status = host.status(side) or {}
                if status.get("agent"):
                    _kill(status["agent"]["pid"])
        self.link.close()


def _alive(identity: Optional[Dict[str, Any]]) -> bool:
    from ansible_collections.ferry.runc.plugins.module_utils._commands import alive  # pylint: disable=import-outside-toplevel

    return alive(identity)
