"""The hand-over as a transaction, with the real agents as processes on two fake hosts (see _world.py): a migration
without faults, then the fault matrix - each protocol step against each fault - where afterwards exactly one copy
runs with its state (or, for a partition inside the in-doubt window, none does and the report says which to resume
and how), and nothing was deleted."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from _world import World

from ansible_collections.ferry.runc.plugins.module_utils import _manifest, _settle
from ansible_collections.ferry.runc.plugins.module_utils._commands import alive
from ansible_collections.ferry.runc.plugins.module_utils._errors import InputError
from ansible_collections.ferry.runc.plugins.module_utils._manifest import MANIFEST_NAME
from ansible_collections.ferry.runc.plugins.module_utils._receiver import _ImageCheck, _parent_name
from ansible_collections.ferry.runc.plugins.module_utils._strategy import LAZY, PRE_DUMPS, STRATEGIES, transport_problem


@pytest.fixture
def world(tmp_path: Path):
    made = []

    def make(subdirectory: str = "", **kwargs) -> World:
        (tmp_path / subdirectory).mkdir(exist_ok=True)
        made.append(World(tmp_path / subdirectory, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()


# Every strategy with every transport it supports (hybrid's parent images must be on the destination's disk).
STRATEGY_TRANSPORTS = [(strategy, transport) for strategy in STRATEGIES for transport in ("shared", "page-server")
                       if transport_problem(strategy, transport) is None]


@pytest.mark.parametrize(("strategy", "transport"), STRATEGY_TRANSPORTS)
def test_a_migration_without_faults_moves_the_container_with_its_state(world, strategy: str, transport: str):
    migration = world(strategy=strategy, transport=transport)
    migration.start()
    migration.wait_for_agents()
    statuses = migration.statuses()
    assert statuses["sender"]["phase"] == "done", statuses["sender"].get("result", {}).get("error")
    assert statuses["receiver"]["phase"] == "done", statuses
    assert migration.copies() == {"src": "absent", "dst": "running"}
    assert migration.destination.count() > migration.count_at_start
    assert actions(migration.source) == SOURCE_COMMANDS[(strategy, transport)](migration)
    assert actions(migration.destination) == DESTINATION_COMMANDS[(strategy, transport)](migration)
    if strategy in LAZY:  # the lazy dump's statistics (the fixture's), read once it ended
        assert statuses["sender"]["result"]["lazy"]["pages_skipped_parent"] == 9
    assert not (migration.destination.criu_dir / "runc.conf").exists(), "the hold section stayed in runc's CRIU configuration"
    check_guards(migration, "no faults")


def actions(host) -> list:
    """The commands a host ran that change something (state, ps and list only read)."""
    return [argv for argv in host.commands() if not (argv[0] == "runc" and argv[3] in ("state", "ps", "list"))]


def guard_rule(port: int, owner: dict) -> list:
    """The arguments of the rule by which only the peer (127.0.0.1) reaches a page server's port."""
    return ["-p", "tcp", "--dport", str(port), "!", "-s", "127.0.0.1", "-m", "comment", "--comment",
            f"ferry.runc m1 owner {owner['pid']} {owner['start_time']}", "-j", "REJECT", "--reject-with", "tcp-reset"]


def listed_guard_rule(port: int, owner: dict) -> str:
    """The same rule as iptables -S lists it."""
    return (f'! -s 127.0.0.1/32 -p tcp -m tcp --dport {port} -m comment --comment "ferry.runc m1 owner {owner["pid"]}'
            f' {owner["start_time"]}" -j REJECT --reject-with tcp-reset')


def guarded(port: int, owner: dict, commands: list) -> list:
    """commands run while the port accepts only the peer: the rule goes in before them and comes out after them."""
    rule = guard_rule(port, owner)
    return [["iptables", "-w", "-S", "INPUT"], ["iptables", "-w", "-I", "INPUT", *rule], *commands,
            ["iptables", "-w", "-D", "INPUT", *rule]]


def source_commands(world, rounds: int = 0, page_server: bool = False, lazy: bool = False, on_rounds: bool = True) -> list:
    """on_rounds: whether the final dump is taken on top of the last round (not when auto left pre-copy after one)."""
    images, criu, options = str(world.source_images), str(world.source.bin / "criu"), ["--file-locks"]
    runc = ["runc", "--root", "/run/runc", "--criu", criu, "checkpoint"]
    commands = [["criu", "cpuinfo", "dump", "-D", images]]
    for number in range(1, rounds + 1):
        path = f"{images}/pre{number}"
        parent = ["--parent-path", f"../pre{number - 1}"] if number > 1 else []
        target = ["--page-server", f"127.0.0.1:{world.receiver_params['page_server_port']}"] if page_server else []
        commands.append(runc + ["--image-path", path, "--work-path", path, *parent, "--pre-dump", *target, *options, "c1"])
    commands.append(["runc", "--root", "/run/runc", "pause", "c1"])
    final = f"{images}/final"
    parent = ["--parent-path", f"../pre{rounds}"] if rounds and on_rounds else []
    if lazy:
        target = ["--page-server", f"127.0.0.1:{world.sender_params['lazy_port']}", "--lazy-pages", "--status-fd", "3"]
    else:
        target = ["--page-server", f"127.0.0.1:{world.receiver_params['page_server_port']}"] if page_server else []
    commands.append(runc + ["--image-path", final, "--work-path", final, *parent, "--leave-running", *target, *options, "c1"])
    if lazy:
        commands.append(["runc", "--root", "/run/runc", "pause", "c1"])
    commands.append(["runc", "--root", "/run/runc", "delete", "--force", "c1"])
    if lazy:
        return guarded(world.sender_params["lazy_port"], world.source.status("sender")["agent"], commands)
    return commands


@pytest.mark.parametrize("verify_images", [True, False])
def test_the_final_images_are_restored_from_the_share_and_hashed_only_when_the_destination_checks_them(world, verify_images: bool):
    migration = world()
    migration.receiver_params["verify_images"] = verify_images
    migration.start()
    migration.wait_for_agents()
    statuses = migration.statuses()
    assert migration.copies() == {"src": "absent", "dst": "running"}
    requests = [request["type"] for request in statuses["receiver"]["result"]["requests"]]
    assert requests == ["prepare", "restore", "commit", "finish"]
    restore = actions(migration.destination)[-1]
    assert restore[restore.index("--image-path") + 1] == f"{migration.destination_images}/final"
    final = statuses["sender"]["result"]["final"]
    assert ("check_seconds" in final) is verify_images
    if verify_images:
        assert final["bytes_checked"] > 0


def destination_commands(world, rounds: int = 0, page_server: bool = False, lazy: bool = False) -> list:
    images, work, criu = str(world.destination_images), world.receiver_params["work_dir"], str(world.destination.bin / "criu")
    commands = []
    directories = [f"pre{number}" for number in range(1, rounds + 1)] + ["final"]
    for index, directory in enumerate(directories if page_server else []):
        parent = ["--prev-images-dir", f"../{directories[index - 1]}"] if index else []
        commands.append(["criu", "page-server", "-D", f"{images}/{directory}", "--address", "127.0.0.1", "--port",
                         str(world.receiver_params["page_server_port"]), "-d", "--pidfile", f"{images}/{directory}/page-server.pid",
                         "-o", "page-server.log", *parent])
    restore_images, restore_work = f"{images}/final", f"{work}/restore"
    if lazy:
        restore_images = restore_work = f"{work}/lazy"
        commands.append(["criu", "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", str(world.sender_params["lazy_port"]),
                         "-D", restore_work, "-o", "lazy-pages.log"])
    commands.append(["runc", "--root", "/run/runc", "--criu", criu, "restore", "--image-path", restore_images, "--work-path",
                     restore_work, "--bundle", str(world.bundle), "--detach", *(["--lazy-pages"] if lazy else []), "--file-locks", "c1"])
    if page_server:
        commands = guarded(world.receiver_params["page_server_port"], world.destination.status("receiver")["agent"], commands)
    return [["criu", "cpuinfo", "check", "-D", work], *commands]


SOURCE_COMMANDS = {
    (strategy, transport): (lambda world, strategy=strategy, transport=transport: source_commands(
        world, rounds=2 if strategy in PRE_DUMPS else 0, page_server=transport == "page-server", lazy=strategy in LAZY))
    for strategy, transport in STRATEGY_TRANSPORTS
}
DESTINATION_COMMANDS = {
    (strategy, transport): (lambda world, strategy=strategy, transport=transport: destination_commands(
        world, rounds=2 if strategy in PRE_DUMPS else 0, page_server=transport == "page-server" and strategy not in LAZY,
        lazy=strategy in LAZY))
    for strategy, transport in STRATEGY_TRANSPORTS
}


def costs(strategy: str, fixed_ms: float) -> dict:
    return {"migration_id": f"earlier-{strategy}", "strategy": strategy, "transport": "shared", "final_dump_fixed_ms": fixed_ms,
            "hand_over_ms": 100.0, "restore_ms": 500.0, "release_ms": 20.0}


AUTO = ["pre-copy", "post-copy", "hybrid"]


def test_auto_goes_on_after_its_first_round_with_the_strategy_predicted_shortest(world):
    migration = world(strategy="pre-copy")
    migration.sender_params.update(candidates=AUTO, learned_costs={"migrations": [
        costs("pre-copy", 4000.0), costs("hybrid", 3000.0), costs("post-copy", 1000.0)]})
    migration.start()
    migration.wait_for_agents()
    report = migration.statuses()["sender"]["result"]
    assert migration.copies() == {"src": "absent", "dst": "running"}
    assert report["strategy"] == "post-copy"
    assert report["strategy_reason"].startswith("the shortest predicted downtime after one measured pre-dump: post-copy 1620 ms")
    assert report["strategy_predictions_ms"]["post-copy"] == 1620.0
    assert len(report["rounds"]) == 1
    assert actions(migration.source) == source_commands(migration, rounds=1, lazy=True, on_rounds=False)
    assert migration.destination.count() > migration.count_at_start


def test_auto_without_whole_predictions_stays_with_pre_copy_and_says_why(world):
    migration = world(strategy="pre-copy")
    migration.sender_params.update(candidates=AUTO, learned_costs={"migrations": [costs("post-copy", 1000.0)]})
    migration.start()
    migration.wait_for_agents()
    report = migration.statuses()["sender"]["result"]
    assert migration.copies() == {"src": "absent", "dst": "running"}
    assert report["strategy"] == "pre-copy"
    assert report["strategy_reason"].startswith("kept pre-copy, chosen by the features: no earlier migration between these"
                                                " hosts measured every term of hybrid, pre-copy")
    # The lazy page server's port was guarded, since a lazy strategy could have been chosen; the rounds went on.
    assert actions(migration.source) == guarded(migration.sender_params["lazy_port"], migration.source.status("sender")["agent"],
                                                source_commands(migration, rounds=2))


# -- the fault matrix -------------------------------------------------------------------------------------------------
# Each case: the protocol step, the fault, how it is injected, where the container must run afterwards (source,
# destination, or frozen-source: none runs, the source's copy is frozen and the report names the command that resumes
# it), and whether the controller has to settle it (after the agents; a controller killed at that step leaves it to
# the playbook's next run, which settles it the same way, see roles/migrate/tasks/preflight.yml). Times are seconds:
# a cut longer than the agents' link timeout (1 s) but shorter than their in-doubt time (6 s) is "cut"; "partition"
# outlasts both; a "flap" is shorter than the link timeout.
CUT, PARTITION, FLAP = 3.0, 12.0, 0.5


class Case:
    def __init__(self, step: str, fault: str, inject, expected: str, controller: bool = False,
                 strategy: str = "stop-and-copy", transport: str = "shared") -> None:
        self.id = f"{step}:{fault}:{strategy}:{transport}"
        self.inject = inject
        self.expected = expected
        self.controller = controller
        self.strategy = strategy
        self.transport = transport


def message(direction: str, kind: str, action: str, seconds: float = 0.0):
    return lambda world: world.at_message(direction, kind, action, seconds)


def command(host: str, words: str, when: str, action: str, seconds: float = 0.0):
    return lambda world: world.at_command(getattr(world, host), words, when, action, seconds)


def lazy_pages_fail(world) -> None:
    (world.destination.dir / "lazy-pages-fail").touch()


def tamper(directory: str, message_kind: str = "fetch", resize: bool = True):
    """One image changes on the share, a byte added (resize) or one changed in place, after the source hashed the
    images (its manifest is written) and before the destination reads them (the message of message_kind waits)."""
    def change(world) -> None:
        images = world.source_images / directory
        deadline = time.monotonic() + 10
        while not (images / MANIFEST_NAME).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        image = images / "pages-1.img"
        data = image.read_text()
        image.write_text(data + "9" if resize else data[:-1] + ("8" if data[-1] != "8" else "7"))

    return lambda world: world.at_message_call("sender", message_kind, change)


def both(*injections):
    return lambda world: [inject(world) for inject in injections]


def short_stats(host: str):
    """CRIU ignores write errors of its statistics file: this host's dumps or restores leave a short one."""
    return lambda world: (getattr(world, host).dir / "short-stats").touch()


def foreign_leave_stopped(world) -> None:
    (world.source.criu_dir / "runc.conf").write_text("leave-stopped\n")


CASES = [
    Case("prepare", "a leave-stopped of someone else's in runc's CRIU configuration", foreign_leave_stopped, "source"),
    Case("prepare", "cut", message("sender", "prepare", "cut", CUT), "source"),
    Case("prepare", "flap", message("sender", "prepare", "flap", FLAP), "destination"),
    Case("prepare", "sender SIGKILL", command("source", "cpuinfo", "after", "kill-caller"), "source"),
    Case("prepare", "receiver SIGKILL", command("destination", "cpuinfo", "before", "kill-caller"), "source"),
    Case("pre-copy round", "cut", message("sender", "fetch", "cut", CUT), "source", strategy="pre-copy"),
    Case("pre-copy round", "flap", message("sender", "fetch", "flap", FLAP), "destination", strategy="pre-copy"),
    Case("pre-copy round", "sender SIGKILL", command("source", "--pre-dump", "before", "kill-caller"), "source", strategy="pre-copy"),
    Case("pre-copy round", "receiver SIGKILL", message("sender", "page_server", "kill-receiver"), "source", strategy="pre-copy",
         transport="page-server"),
    Case("freeze", "cut", command("source", "pause", "after", "cut", CUT), "source"),
    Case("freeze", "sender SIGKILL", command("source", "pause", "after", "kill-caller"), "source"),
    Case("freeze", "receiver SIGKILL", command("source", "pause", "after", "kill-receiver"), "source"),
    Case("final dump", "fails", command("source", "--leave-running", "before", "fail"), "source"),
    Case("final dump", "cut", command("source", "--leave-running", "after", "cut", CUT), "source"),
    Case("final dump", "sender SIGKILL", command("source", "--leave-running", "before", "kill-caller"), "source"),
    Case("final dump", "receiver SIGKILL", command("source", "--leave-running", "before", "kill-receiver"), "source"),
    Case("hand-over", "cut", message("sender", "restore", "cut", CUT), "source"),
    Case("hand-over", "flap", message("sender", "restore", "flap", FLAP), "destination"),
    Case("hand-over", "sender SIGKILL", message("sender", "restore", "kill-sender"), "source"),
    Case("hand-over", "receiver SIGKILL", message("sender", "restore", "kill-receiver"), "source"),
    Case("hand-over", "cut", message("sender", "sync", "cut", CUT), "source", transport="page-server"),
    Case("restore", "fails", command("destination", "restore", "before", "fail"), "source"),
    Case("restore", "receiver SIGKILL before", command("destination", "restore", "before", "kill-caller"), "source"),
    Case("restore", "receiver SIGKILL after", command("destination", "restore", "after", "kill-caller"), "source", controller=True),
    Case("restore", "cut after", message("receiver", "held", "cut", CUT), "source"),
    Case("restore", "cut after", message("receiver", "held", "cut", CUT), "source", transport="page-server"),
    Case("restore", "partition after", message("receiver", "held", "cut", PARTITION), "source", controller=True, transport="page-server"),
    Case("restore", "flap after", message("receiver", "held", "flap", FLAP), "destination"),
    Case("restore", "sender SIGKILL after", message("receiver", "held", "kill-sender"), "source"),
    Case("commit", "cut", message("sender", "commit", "cut", CUT), "destination"),
    Case("commit", "cut", message("sender", "commit", "cut", CUT), "destination", transport="page-server"),
    Case("commit", "partition", message("sender", "commit", "cut", PARTITION), "destination", controller=True, transport="page-server"),
    Case("commit", "flap", message("sender", "commit", "flap", FLAP), "destination"),
    Case("commit", "receiver SIGKILL", message("sender", "commit", "kill-receiver"), "destination", controller=True),
    Case("commit", "sender SIGKILL", message("receiver", "released", "kill-sender"), "destination", controller=True),
    Case("commit", "cut after", message("receiver", "released", "cut", CUT), "destination"),
    Case("post-copy transfer", "pages lost", lazy_pages_fail, "frozen-source", strategy="post-copy"),
    Case("post-copy transfer", "cut", message("receiver", "lazy_done", "cut", CUT), "destination", strategy="post-copy"),
    Case("post-copy transfer", "receiver SIGKILL", message("receiver", "released", "kill-receiver"), "destination", strategy="post-copy"),
    Case("post-copy transfer", "sender SIGKILL", message("receiver", "lazy_done", "kill-sender"), "destination", controller=True,
         strategy="post-copy"),
    Case("pre-copy round", "images altered", tamper("pre1"), "source", strategy="pre-copy"),
    Case("pre-copy round", "pre-dump fails", command("source", "--pre-dump", "before", "fail"), "source", strategy="pre-copy"),
    Case("final dump", "lazy dump never ready", command("source", "--lazy-pages", "before", "fail"), "source", strategy="post-copy"),
    # Hybrid: the lazy dump on top of the rounds, their pages restored from the share, the rest fetched after the commit.
    Case("final dump", "lazy dump never ready", command("source", "--lazy-pages", "before", "fail"), "source", strategy="hybrid"),
    Case("restore", "runc restore fails", command("destination", "restore", "before", "fail"), "source", strategy="hybrid"),
    Case("post-copy transfer", "pages lost", lazy_pages_fail, "frozen-source", strategy="hybrid"),
    Case("post-copy transfer", "cut", message("receiver", "lazy_done", "cut", CUT), "destination", strategy="hybrid"),
    Case("restore", "images resized before the restore read them", tamper("final", "restore"), "source"),
    Case("restore", "images altered in place before the restore read them", tamper("final", "restore", resize=False), "source"),
    Case("restore", "a short statistics file", short_stats("destination"), "destination"),
    Case("final dump", "a short statistics file", short_stats("source"), "destination"),
    Case("freeze", "sender SIGTERM (its unit's time limit)", command("source", "pause", "after", "terminate-sender"), "source"),
    Case("restore", "cut after, and the held copy's first delete fails",
         both(message("receiver", "held", "cut", CUT), command("destination", "delete", "before", "fail")), "source",
         transport="page-server"),
    Case("restore", "fails, and so does the resume",
         both(command("destination", "restore", "before", "fail"), command("source", "resume", "before", "fail")), "source",
         controller=True),
    Case("cleanup", "the source copy cannot be deleted at first", command("source", "delete", "before", "fail"), "destination"),
    Case("cleanup", "cut", message("sender", "finish", "cut", CUT), "destination"),
    Case("cleanup", "receiver SIGKILL", message("sender", "finish", "kill-receiver"), "destination"),
    Case("cleanup", "sender SIGKILL", command("source", "delete", "after", "kill-caller"), "destination"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_after_any_single_fault_exactly_one_copy_runs_with_its_state(world, case: Case):
    migration = world(strategy=case.strategy, transport=case.transport)
    case.inject(migration)
    migration.start()
    migration.wait_for_agents()
    left_by_agents = migration.copies()
    settled = migration.settle()
    decision = settled["decision"]
    acted = (decision.source_action, decision.destination_action) != ("none", "none")
    context = f"agents left {left_by_agents}, controller decided {decision}, statuses {migration.statuses()}"
    assert acted == case.controller, context
    check_left(migration, case.expected, context)
    check_images_kept(migration, case.expected, context)
    check_guards(migration, context)


@pytest.mark.parametrize(("resize", "found_by", "problem"), [
    # The destination finds a resized file (one byte added) as it reads it, the source a changed one in the manifests.
    (True, "destination", r"pages-1\.img: (\d+) bytes, expected (\d+); the held copy was deleted"),
    (False, "source", r"the destination restored images of final that differ from the source's: pages-1\.img: checksum mismatch"),
])
def test_final_images_changed_before_the_restore_read_them_roll_back_naming_the_file(world, resize: bool, found_by: str, problem: str):
    migration = world()
    tamper("final", "restore", resize)(migration)
    migration.start()
    migration.wait_for_agents()
    sender = migration.statuses()["sender"]["result"]
    assert migration.copies() == {"src": "running", "dst": "absent"}
    found = re.search(problem, sender["error"])
    assert found, sender["error"]
    if resize:
        assert int(found.group(1)) == int(found.group(2)) + 1, sender["error"]
    assert ("restore refused on vm" in sender["error"]) is (found_by == "destination"), sender["error"]
    assert sender["recovery"] == "the container was resumed on the source from the moment it was frozen"


def check_left(migration: World, expected: str, context: str) -> None:
    copies = migration.copies()
    if expected == "frozen-source":
        assert copies == {"src": "paused", "dst": "absent"}, context
        assert f"runc resume {migration.sender_params['container']}" in migration.statuses()["sender"]["result"]["recovery"], context
        return
    host = migration.source if expected == "source" else migration.destination
    other = "dst" if expected == "source" else "src"
    assert copies[host.name] == "running" and copies[other] == "absent", context
    before = host.count()
    deadline = time.monotonic() + 2
    while host.count() <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.count() > before > migration.count_at_start - 1, f"the copy on {host.name} does not count on: {context}"


def test_a_prediction_over_the_budget_is_reported_before_the_freeze_and_the_migration_goes_on(world):
    migration = world(strategy="pre-copy")
    migration.sender_params["downtime_budget_ms"] = 1000
    migration.sender_params["learned_costs"] = {"migrations": [
        {"strategy": "pre-copy", "transport": "shared", "hand_over_ms": 100, "restore_ms": 4200, "release_ms": 50}]}
    migration.start()
    migration.wait_for_agents()
    sender = migration.statuses()["sender"]
    assert sender["phase"] == "done", sender
    predicted = sender["result"]["predicted_downtime"]
    assert (predicted["largest_term"], predicted["terms_ms"]["restore"], predicted["unpredicted"]) == ("restore", 4200, [])
    assert sender["result"]["rounds"][-1]["predicted_downtime_ms"] == predicted["total_ms"] > 4350
    # The last progress line (the end) still carries the warning.
    assert sender["progress"]["over_budget"] == (
        f"predicted downtime {predicted['total_ms']:.0f} ms is over the budget of 1000 ms (largest term: restore 4200 ms);"
        " migrating anyway")


def test_without_earlier_migrations_stop_and_copy_predicts_nothing_and_warns_of_nothing(world):
    migration = world()
    migration.start()
    migration.wait_for_agents()
    sender = migration.statuses()["sender"]
    assert sender["phase"] == "done", sender
    assert sender["result"]["predicted_downtime"]["total_ms"] is None
    assert "over_budget" not in sender["progress"]


def test_post_copy_reports_the_pages_still_missing_while_they_come(world):
    migration = world(strategy="post-copy")
    (migration.destination.dir / "lazy-pages-slow").touch()
    migration.start()
    migration.wait_for_agents()
    sender = migration.statuses()["sender"]
    assert sender["phase"] == "done", sender
    # The page transfer took 5 s, the receiver reports every 2 s.
    reports = [entry for entry in sender["progress_log"] if entry.get("step") == "post-copy transfer"]
    assert len(reports) >= 2 and {entry["phase"] for entry in reports} == {"transferring pages"}, sender["progress_log"]
    # The numbers need the restored copy's cgroup v2 memory.stat, which this test machine may not give (test_inspect
    # and test_downtime check them); only they may come beside the step.
    assert set().union(*reports) <= {"memory_local_mib", "pages_missing", "step", "phase", "seconds", "index"}, reports
    assert migration.copies() == {"src": "absent", "dst": "running"}


def test_every_progress_is_kept_in_order_so_a_slow_follower_shows_each_pre_copy_round(world):
    migration = world(strategy="pre-copy")
    migration.start()
    migration.wait_for_agents()
    log = migration.statuses()["sender"]["progress_log"]
    assert [entry["index"] for entry in log] == list(range(1, len(log) + 1))
    steps = [entry.get("step", "phase " + entry["phase"]) for entry in log]
    assert steps[:5] == ["phase pre-copy", "pre-dump round 1", "pre-dump round 1 done", "pre-dump round 2",
                         "pre-dump round 2 done"], steps
    assert {entry["phase"] for entry in log[:5]} == {"pre-copy"}
    assert steps[-3:] == ["phase released", "released", "phase done"], steps
    assert log[-1] == migration.statuses()["sender"]["progress"]
    assert _settle._summary({"progress_log": log, "agent": {}}, since=2)["progress_log"] == log[2:]


def test_a_foreign_leave_stopped_is_named_before_anything_is_frozen(world):
    migration = world()
    foreign_leave_stopped(migration)
    migration.start()
    migration.wait_for_agents()
    sender = migration.statuses()["sender"]
    assert [entry["phase"] for entry in sender["history"]] == ["preparing", "rolled back"]
    assert "/etc/criu/runc.conf sets leave-stopped" in sender["result"]["error"]


def test_a_page_stream_without_tls_needs_both_agents_to_allow_plaintext(world):
    migration = world(transport="page-server")
    migration.receiver_params["page_stream_plaintext"] = False
    migration.start()
    migration.wait_for_agents()
    sender = migration.statuses()["sender"]
    assert [entry["phase"] for entry in sender["history"]] == ["preparing", "rolled back"]
    assert "CRIU's page stream needs TLS" in sender["result"]["error"] and "page_stream_plaintext" in sender["result"]["error"]
    assert migration.copies() == {"src": "running", "dst": "absent"}


def test_a_container_with_stdout_on_a_pipe_is_refused_before_anything_is_frozen(world):
    """Its pipe's other end stays here: the restored copy's next write would kill it with SIGPIPE."""
    migration = world()
    read_end, write_end = os.pipe()
    try:
        migration.start(container_stdout=write_end)
        migration.wait_for_agents()
    finally:
        os.close(read_end)
        os.close(write_end)
    sender = migration.statuses()["sender"]
    assert [entry["phase"] for entry in sender["history"]] == ["preparing", "rolled back"]
    assert "its stdout is a pipe to a process on this host, which does not move with it" in sender["result"]["error"]
    assert migration.copies() == {"src": "running", "dst": "absent"}


def check_images_kept(migration: World, expected: str, context: str) -> None:
    """After a failure the final dump's images stay; only a migration that ended well removes them."""
    sender = migration.statuses()["sender"] or {}
    frozen = any(entry["phase"] == "frozen" for entry in sender.get("history", []))
    if expected != "destination" and frozen:
        assert migration.source_images.exists(), f"the image directory was removed: {context}"


# -- the page servers' ports --------------------------------------------------------------------------------------


def check_guards(migration: World, context: str) -> None:
    """Each page server started while its port accepted only the peer, by the rule of the agent that started it, and
    no agent that ended left its rule: only a killed agent's stays (the next migration on that host drops it)."""
    for host, side in ((migration.source, "sender"), (migration.destination, "receiver")):
        owner = (host.status(side) or {}).get("agent")
        for guard in host.guards():
            assert [rule for rule in guard["rules"]["iptables"] if "ferry.runc" in rule] == [
                listed_guard_rule(guard["port"], owner)], f"{guard} on {host.name}: {context}"
        left = [rule for rule in host.rules() if "ferry.runc" in rule]
        if left:
            assert owner and not alive(owner) and left == [listed_guard_rule(guard_port(migration, side), owner)], (
                f"{host.name} keeps {left}: {context}")


def guard_port(migration: World, side: str) -> int:
    return migration.sender_params["lazy_port"] if side == "sender" else migration.receiver_params["page_server_port"]


def test_a_later_migration_drops_the_rule_a_killed_receiver_left_and_keeps_other_rules(world):
    killed = world("killed", strategy="pre-copy", transport="page-server")
    killed.at_message("sender", "page_server", "kill-receiver")
    killed.start()
    killed.wait_for_agents()
    stale = killed.destination.rules()
    assert stale == [listed_guard_rule(guard_port(killed, "receiver"), killed.destination.status("receiver")["agent"])]
    foreign = "-p tcp -m tcp --dport 22 -m comment --comment \"someone else's\" -j ACCEPT"
    later = world("later", strategy="pre-copy", transport="page-server")
    later.receiver_params["page_server_port"] = killed.receiver_params["page_server_port"]
    later.destination.set_rules(stale + [foreign])
    later.start()
    later.wait_for_agents()
    assert later.statuses()["receiver"]["phase"] == "done", later.statuses()
    owner, port = killed.destination.status("receiver")["agent"], killed.receiver_params["page_server_port"]
    deletion = ["iptables", "-w", "-D", "INPUT", "!", "-s", "127.0.0.1/32", "-p", "tcp", "-m", "tcp", "--dport", str(port),
                "-m", "comment", "--comment", f"ferry.runc m1 owner {owner['pid']} {owner['start_time']}", "-j", "REJECT",
                "--reject-with", "tcp-reset"]
    firewall_commands = [argv for argv in later.destination.commands() if argv[0] == "iptables"]
    assert firewall_commands[:3] == [["iptables", "-w", "-S", "INPUT"], deletion,
                                     ["iptables", "-w", "-I", "INPUT", *guard_rule(port, later.destination.status("receiver")["agent"])]]
    assert later.destination.rules() == [foreign]
    check_guards(later, "the later migration")


@pytest.mark.parametrize(("host", "strategy", "transport"), [("destination", "pre-copy", "page-server"), ("source", "post-copy", "shared")])
def test_a_page_server_port_that_cannot_be_limited_is_refused_before_anything_is_frozen(world, host: str, strategy: str, transport: str):
    migration = world(strategy=strategy, transport=transport)
    command(host, "-I", "before", "fail")(migration)
    migration.start()
    migration.wait_for_agents()
    sender = migration.statuses()["sender"]
    assert [entry["phase"] for entry in sender["history"]] == ["preparing", "rolled back"]
    assert "limiting the page server to the peer failed on" in sender["result"]["error"], sender["result"]["error"]
    assert "iptables could not limit port" in sender["result"]["error"], sender["result"]["error"]
    assert migration.copies() == {"src": "running", "dst": "absent"}
    check_guards(migration, "refused")


@pytest.mark.parametrize("target", ["/etc", "../../outside", "..", "../", "pre1"])
def test_a_parent_link_that_is_not_a_sibling_is_refused(tmp_path: Path, target: str):
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "parent").symlink_to(target)
    with pytest.raises(InputError) as caught:
        _parent_name(str(tmp_path / "final"))
    assert f"name {target!r} as their parent, not a directory beside theirs" in str(caught.value)


def test_a_sibling_parent_link_names_its_directory(tmp_path: Path):
    (tmp_path / "final").mkdir()
    assert _parent_name(str(tmp_path / "final")) is None
    (tmp_path / "final" / "parent").symlink_to("../pre2")
    assert _parent_name(str(tmp_path / "final")) == "pre2"


def test_a_final_dump_whose_parent_link_leaves_the_image_directory_is_not_restored(world):
    migration = world(strategy="pre-copy")

    def relink(world) -> None:
        link = world.source_images / "final" / "parent"
        link.unlink()
        link.symlink_to("/etc")

    migration.at_message_call("sender", "restore", relink)
    migration.start()
    migration.wait_for_agents()
    sender = migration.statuses()["sender"]["result"]
    assert "name '/etc' as their parent, not a directory beside theirs" in sender["error"], sender["error"]
    assert migration.copies() == {"src": "running", "dst": "absent"}
    assert not [action for action in actions(migration.destination) if "restore" in action]


def test_an_image_check_that_cannot_read_reports_it_as_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A read error of the hashing thread (EIO on a share) becomes a problem, which deletes the held copy like any other."""
    def unreadable(directory, sizes):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_manifest, "read_back", unreadable)
    check = _ImageCheck(str(tmp_path), {"pages-1.img": 4})
    assert check.result() == ({}, ["reading them failed: [Errno 5] Input/output error"])
    assert check.seconds is not None
