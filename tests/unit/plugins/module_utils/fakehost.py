"""A stand-in for runc and CRIU on one fake host, for the agents' fault tests (see _world.py).

Called as `fakehost.py runc ARGS...`, `fakehost.py criu ARGS...`, `fakehost.py iptables ARGS...` or `fakehost.py
ip6tables ARGS...` (through the wrappers _world.py writes). The host's state lives in $FERRY_FAKE_HOST (state.json,
each container's counter file, iptables.json and ip6tables.json: the INPUT chain's rules) and the link between the fake
hosts in $FERRY_FAKE_NET (where page servers and lazy dumps meet). Each page server that starts (the receiver's, a lazy
dump) records the rules then in force in guards.log. A container is a real process that counts in its counter
file, so running, paused (SIGSTOP, like the freezer) and held (stopped by itself before its first count, like CRIU's
leave-stopped) show in /proc exactly as the agents look at them. A container's "memory" is its count: a dump writes
it into the images, a restore goes on from it.

Faults: $FERRY_FAKE_HOST/faults.json lists {"command": "restore", "when": "before"|"after", "do": "kill-caller"|"fail"
|"hang"|"event"} entries; each fires once, on the first command whose words include "command". An event is handed to
the test (a file in $FERRY_FAKE_NET/events), which acts on it (cuts the link, kills an agent) before the command goes on.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

HOST = os.environ["FERRY_FAKE_HOST"]
NET = os.environ["FERRY_FAKE_NET"]
FIXTURES = os.environ["FERRY_FAKE_FIXTURES"]
CRIU_CONFIG = "/etc/criu/runc.conf"
CONTAINER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakecontainer.py")


class State:
    """NAME.json (the containers in state.json by default) under an exclusive lock for the whole command."""

    def __init__(self, name: str = "state", empty=dict) -> None:
        self.path = os.path.join(HOST, f"{name}.json")
        self.empty = empty

    def __enter__(self):
        self.lock = open(self.path[:-len(".json")] + ".lock", "w")  # pylint: disable=consider-using-with
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.content = json.load(open(self.path)) if os.path.exists(self.path) else self.empty()
        return self.content

    def __exit__(self, *exc) -> None:
        with open(self.path + ".tmp", "w") as handle:
            json.dump(self.content, handle)
        os.replace(self.path + ".tmp", self.path)
        self.lock.close()


def counter_path(container: str) -> str:
    return os.path.join(HOST, f"{container}.counter")


def read_count(container: str) -> int:
    try:
        with open(counter_path(container)) as handle:
            return int(handle.read().strip() or 0)
    except FileNotFoundError:
        return 0


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def start_container(container: str, count: int, stopped: bool) -> int:
    process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, CONTAINER, counter_path(container), str(count)] + (["--stopped"] if stopped else []),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    if stopped:
        while _task_state(process.pid) not in ("T", "gone"):
            time.sleep(0.005)
    return process.pid


def _task_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(f'time="2026-12-01T10:00:00Z" level=error msg="{message}"\n')
    sys.exit(code)


def fault(words: list[str], when: str) -> None:
    path = os.path.join(HOST, "faults.json")
    with open(os.path.join(HOST, "faults.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        faults = json.load(open(path)) if os.path.exists(path) else []
        for entry in faults:
            if entry["command"] in words and entry["when"] == when and not entry.get("fired"):
                entry["fired"] = True
                with open(path, "w") as handle:
                    json.dump(faults, handle)
                break
        else:
            return
    with open(os.path.join(HOST, "faults.log"), "a") as log:
        log.write(f"{entry['do']} {when} {' '.join(words)}\n")
    if entry["do"] == "event":
        event = os.path.join(NET, "events", f"{time.monotonic_ns()}.json")
        with open(event + ".tmp", "w") as handle:
            json.dump(entry["event"], handle)
        os.replace(event + ".tmp", event)
        while os.path.exists(event):
            time.sleep(0.01)
    elif entry["do"] == "kill-caller":
        os.kill(os.getppid(), signal.SIGKILL)
        if when == "before":
            sys.exit(137)  # the agent died before it could start the command
    elif entry["do"] == "fail":
        fail(f"ferry fault: {entry['command']} refused on purpose")
    elif entry["do"] == "hang":
        time.sleep(3600)


# -- runc -------------------------------------------------------------------------------------------------------------


def runc(args: list[str]) -> None:
    while args and args[0] in ("--root", "--criu"):
        args = args[2:]
    command, rest = args[0], args[1:]
    fault(args, "before")
    {"state": runc_state, "list": runc_list, "pause": runc_pause, "resume": runc_resume, "delete": runc_delete,
     "ps": runc_ps, "checkpoint": runc_checkpoint, "restore": runc_restore}[command](rest)
    fault(args, "after")


def status_of(entry: dict) -> str:
    if not alive(entry["pid"]):
        return "stopped"
    return entry["status"]


def runc_state(args: list[str]) -> None:
    container = args[-1]
    with State() as containers:
        if container not in containers:
            fail(f'container "{container}" does not exist')
        entry = containers[container]
        print(json.dumps({"id": container, "pid": entry["pid"], "status": status_of(entry), "bundle": entry["bundle"],
                          "created": entry["created"]}))


def runc_list(_args: list[str]) -> None:
    with State() as containers:
        print(json.dumps([{"id": name, "pid": entry["pid"], "status": status_of(entry)} for name, entry in containers.items()] or None))


def runc_pause(args: list[str]) -> None:
    with State() as containers:
        entry = containers[args[-1]]
        os.kill(entry["pid"], signal.SIGSTOP)
        entry["status"] = "paused"


def runc_resume(args: list[str]) -> None:
    with State() as containers:
        entry = containers.get(args[-1])
        if entry is None or entry["status"] != "paused":
            fail("container not paused")
        os.kill(entry["pid"], signal.SIGCONT)
        entry["status"] = "running"


def runc_delete(args: list[str]) -> None:
    with State() as containers:
        entry = containers.pop(args[-1], None)
        if entry and alive(entry["pid"]):
            os.kill(entry["pid"], signal.SIGKILL)


def runc_ps(args: list[str]) -> None:
    with State() as containers:
        entry = containers[args[-1]]
        print(json.dumps([entry["pid"]] if alive(entry["pid"]) else []))


def options(args: list[str]) -> tuple[dict, str]:
    """--flag value pairs and switches of runc checkpoint/restore, and the container id (last)."""
    values, index = {}, 0
    while index < len(args) - 1:
        flag = args[index]
        if flag in ("--image-path", "--work-path", "--parent-path", "--page-server", "--status-fd", "--bundle",
                    "--manage-cgroups-mode", "--pid-file"):
            values[flag] = args[index + 1]
            index += 2
        else:
            values[flag] = True
            index += 1
    return values, args[-1]


def runc_checkpoint(args: list[str]) -> None:
    flags, container = options(args)
    images = flags["--image-path"]
    os.makedirs(images, exist_ok=True)
    with State() as containers:
        entry = containers[container]
        count = read_count(container)
        memory_dir = images
        if "--page-server" in flags and "--lazy-pages" not in flags:
            with open(os.path.join(NET, flags["--page-server"])) as handle:
                memory_dir = handle.read()
        write_images(images, memory_dir, count, pre_dump="--pre-dump" in flags)
        if "--parent-path" in flags:
            os.symlink(flags["--parent-path"], os.path.join(images, "parent"))
        write_stats(os.path.join(FIXTURES, "dump-with-parent.stats-dump"), os.path.join(flags["--work-path"], "stats-dump"))
        with open(os.path.join(flags["--work-path"], "dump.log"), "w") as log:
            log.write("(00.100000) Dumping finished successfully\n")
        if "--pre-dump" not in flags and "--leave-running" not in flags:
            os.kill(entry["pid"], signal.SIGKILL)
            del containers[container]
    if "--lazy-pages" in flags:
        record_guards("lazy dump", flags["--page-server"].rsplit(":", 1)[1])
        serve_lazily(flags["--page-server"], int(flags["--status-fd"]))


def write_images(images: str, memory_dir: str, count: int, pre_dump: bool) -> None:
    names = ["inventory.img", "pagemap-1.img"] + ([] if pre_dump else ["pstree.img", "core-1.img", "files.img"])
    for name in names:
        with open(os.path.join(images, name), "w") as handle:
            handle.write(f"{name}\n")
    os.makedirs(memory_dir, exist_ok=True)
    with open(os.path.join(memory_dir, "pages-1.img"), "w") as handle:
        handle.write(f"{count}\n")
    if not pre_dump:
        with open(os.path.join(images, "core-1.img"), "w") as handle:
            handle.write(f"count {count}\n")


def serve_lazily(page_server: str, status_fd: int) -> None:
    """The lazy dump: images complete (status byte), then pages served until the destination's daemon says done."""
    os.write(status_fd, b"\0")
    os.close(status_fd)
    done = os.path.join(NET, f"lazy-{page_server}.done")
    for _attempt in range(6000):
        if os.path.exists(done):
            with open(done) as handle:
                sys.exit(int(handle.read().strip() or 1))
        time.sleep(0.01)
    sys.exit(2)


def write_stats(fixture: str, path: str) -> None:
    """CRIU's statistics file; cut short when the host has a short-stats flag (CRIU ignores its write errors)."""
    with open(fixture, "rb") as source:
        data = source.read()
    if os.path.exists(os.path.join(HOST, "short-stats")):
        data = data[:7]
    with open(path, "wb") as handle:
        handle.write(data)


def runc_restore(args: list[str]) -> None:
    flags, container = options(args)
    images, work = flags["--image-path"], flags["--work-path"]
    parent = os.path.join(images, "parent")
    # The restored tasks open the parent link inside the container's root: only a relative one leads to the images.
    if os.path.islink(parent) and (os.path.isabs(os.readlink(parent)) or not os.path.isdir(parent)):
        fail(f"Can't open parent path {os.readlink(parent)}")
    with open(os.path.join(images, "core-1.img")) as handle:
        count = int(handle.read().split()[1])
    held = os.path.exists(CRIU_CONFIG) and "leave-stopped" in open(CRIU_CONFIG).read().split()
    with State() as containers:
        if container in containers:
            fail(f"container with id exists: {container}")
        pid = start_container(container, count, stopped=held)
        containers[container] = {"pid": pid, "status": "running", "bundle": flags["--bundle"], "created": time.time()}
    write_stats(os.path.join(FIXTURES, "restore.stats-restore"), os.path.join(work, "stats-restore"))
    with open(os.path.join(work, "restore.log"), "w") as log:
        log.write("(00.200000) Restore finished successfully\n")


# -- criu -------------------------------------------------------------------------------------------------------------


def criu(args: list[str]) -> None:
    fault(args, "before")
    if args[0] == "lazy-pages" and failing_lazy_pages():
        open(os.path.join(value(args, "-D"), "lazy-pages.socket"), "w").close()
        lazy_pages_fail(args)
    if args[:2] == ["cpuinfo", "dump"]:
        with open(os.path.join(args[3], "cpuinfo.img"), "w") as handle:
            handle.write("cpuinfo\n")
    elif args[:2] == ["cpuinfo", "check"]:
        pass
    elif args[0] == "page-server":
        page_server(args)
    elif args[0] == "lazy-pages":
        lazy_pages(args)
    fault(args, "after")


def value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def page_server(args: list[str]) -> None:
    """Daemonized: a sleeper stands for the server; pages go to its directory (the checkpoint finds it in NET)."""
    directory = value(args, "-D")
    if "--prev-images-dir" in args:
        os.symlink(value(args, "--prev-images-dir"), os.path.join(directory, "parent"))
    record_guards("page-server", value(args, "--port"))
    with open(os.path.join(NET, f"{value(args, '--address')}:{value(args, '--port')}"), "w") as handle:
        handle.write(directory)
    process = subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                               stderr=subprocess.DEVNULL, start_new_session=True)
    with open(value(args, "--pidfile"), "w") as handle:
        handle.write(f"{process.pid}\n")


def failing_lazy_pages() -> bool:
    return os.path.exists(os.path.join(HOST, "lazy-pages-fail"))


def lazy_pages_fail(args: list[str]) -> None:
    """The page stream is lost once the restore is done: the daemon gives up, the source's lazy dump with it."""
    directory = value(args, "-D")
    while not os.path.exists(os.path.join(directory, "stats-restore")):
        time.sleep(0.01)
    time.sleep(0.2)
    with open(os.path.join(directory, "lazy-pages.log"), "w") as log:
        log.write("(00.3) Error (criu/uffd.c:1021): uffd: 4242: lost the page server\n")
    with open(os.path.join(NET, f"lazy-{value(args, '--address')}:{value(args, '--port')}.done"), "w") as handle:
        handle.write("1\n")
    sys.exit(1)


def lazy_pages(args: list[str]) -> None:
    """The destination's lazy-pages daemon: its socket, then (once the restore is done) every page, then the end; on a
    host with the file lazy-pages-slow the pages take 5 s."""
    directory = value(args, "-D")
    source = f"{value(args, '--address')}:{value(args, '--port')}"
    open(os.path.join(directory, "lazy-pages.socket"), "w").close()
    while not os.path.exists(os.path.join(directory, "stats-restore")):
        time.sleep(0.01)
    time.sleep(5 if os.path.exists(os.path.join(HOST, "lazy-pages-slow")) else 0.2)
    with open(os.path.join(NET, f"lazy-{source}.done"), "w") as handle:
        handle.write("0\n")


# -- iptables and ip6tables: the INPUT chain only --------------------------------------------------------------------

FAMILIES = {"iptables": 4, "ip6tables": 6}
RULE_OPTIONS = ("-p", "--dport", "-s", "--comment", "-j", "--reject-with")
BARE_CHARACTERS = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NO_RULE = "Bad rule (does a matching rule exist in that chain?)."


def iptables(tool: str, args: list[str]) -> None:
    """-w (the lock: always free here), then -S INPUT, or -I / -D INPUT with a rule."""
    fault(args, "before")
    if args[:1] == ["-w"]:
        args = args[1:]
    if args[1:2] != ["INPUT"] or args[0] not in ("-S", "-I", "-D"):
        iptables_fail(tool, f"unsupported by the fake: {' '.join(args)}", 2)
    with State(tool, empty=list) as rules:
        if args[0] == "-S":
            print("-P INPUT ACCEPT")
            print("".join(f"-A INPUT {listed}\n" for listed in rules), end="")
        elif args[0] == "-I":
            rules.insert(0, listed_rule(tool, args[2:]))
        elif listed_rule(tool, args[2:]) in rules:
            rules.remove(listed_rule(tool, args[2:]))
        else:
            iptables_fail(tool, NO_RULE, 1)


def iptables_fail(tool: str, message: str, code: int) -> None:
    sys.stderr.write(f"{tool}: {message}\n")
    sys.exit(code)


def listed_rule(tool: str, args: list[str]) -> str:
    """A rule as iptables -S lists it, whether given as it was inserted or as -S listed it: the source first with its
    prefix length, the matches the options imply (-m tcp, -m comment), the comment quoted."""
    options, negated, words = {}, set(), list(args)
    while words:
        word = words.pop(0)
        if word == "!":
            negated.add(words[0])
        elif word == "-m":
            words.pop(0)
        elif word in RULE_OPTIONS and words:
            options[word] = words.pop(0)
        else:
            iptables_fail(tool, f"unknown option {word!r}", 2)
    listed = []
    if "-s" in options:
        listed += (["!"] if "-s" in negated else []) + ["-s", source_network(tool, options["-s"])]
    if "-p" in options:
        listed += ["-p", options["-p"]] + (["-m", options["-p"], "--dport", options["--dport"]] if "--dport" in options else [])
    if "--comment" in options:
        listed += ["-m", "comment", "--comment", saved_string(options["--comment"])]
    for option in ("-j", "--reject-with"):
        listed += [option, options[option]] if option in options else []
    return " ".join(listed)


def source_network(tool: str, source: str) -> str:
    try:
        network = ipaddress.ip_network(source, strict=False)
    except ValueError:
        network = None
    if network is None or network.version != FAMILIES[tool]:
        iptables_fail(tool, f"host/network `{source}' not found", 2)
    return str(network)


def saved_string(text: str) -> str:
    """As iptables -S writes a string: bare when it is all letters, digits, _ and -; else in double quotes, with ",
    \\ and ' escaped by a backslash."""
    if text and not text.strip(BARE_CHARACTERS):
        return text
    return '"' + "".join("\\" + char if char in "\"\\'" else char for char in text) + '"'


def record_guards(server: str, port: str) -> None:
    """The rules in force as a page server starts on port."""
    rules = {}
    for tool in FAMILIES:
        with State(tool, empty=list) as listed:
            rules[tool] = list(listed)
    with open(os.path.join(HOST, "guards.log"), "a") as log:
        log.write(json.dumps({"server": server, "port": int(port), "rules": rules}) + "\n")


if __name__ == "__main__":
    with open(os.path.join(HOST, "commands.log"), "a") as record:
        record.write(json.dumps(sys.argv[1:]) + "\n")
    with open(os.path.join(HOST, "timeline.log"), "a") as timeline:
        timeline.write(f"{time.time():.3f} {os.getpid()} ppid={os.getppid()} {sys.argv[1:]}\n")
    if sys.argv[1] in FAMILIES:
        iptables(sys.argv[1], sys.argv[2:])
    else:
        {"runc": runc, "criu": criu}[sys.argv[1]](sys.argv[2:])
