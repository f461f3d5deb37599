"""Copies a test step's output to the terminal and to the step's log, as tee does, and times molecule's scenarios.

molecule prints "SCENARIO ➜ ACTION: Executing" as it starts each action of a scenario, and "SCENARIO ➜ ACTION:
Executed: STATE" at its end. A scenario's time runs from its first action's start to the next scenario's (or to the
end of the output); the default scenario, which owns the lab, is timed per action (default/create, default/destroy).
At the end, one line per scenario goes to the times file: name, seconds, and passed, FAILED or unfinished (an action
started and never reported its end). No molecule line: an empty times file.

Usage: step_tee.py LOG TIMES
"""

from __future__ import annotations

import re
import sys
import time

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
MOLECULE_ACTION = re.compile(r"^\s*[A-Z]+\s+(?P<scenario>\S+) \u279c (?P<action>\S+): (?P<event>Executing|Executed: .*)$")


class Segment:
    def __init__(self, name: str, start: float) -> None:
        self.name = name
        self.start = start
        self.started = 0
        self.ended = 0
        self.failed = False

    def status(self) -> str:
        if self.failed:
            return "FAILED"
        return "passed" if self.ended >= self.started else "unfinished"


def segment_name(scenario: str, action: str) -> str:
    return scenario + "/" + action if scenario == "default" else scenario


def main(log_path: str, times_path: str) -> None:
    segments: list[Segment] = []
    with open(log_path, "wb") as log_file:
        for raw_line in sys.stdin.buffer:
            sys.stdout.buffer.write(raw_line)
            sys.stdout.buffer.flush()
            log_file.write(raw_line)
            line = ANSI_ESCAPE.sub("", raw_line.decode("utf-8", errors="replace")).rstrip()
            action = MOLECULE_ACTION.match(line)
            if action is None:
                continue
            name = segment_name(action["scenario"], action["action"])
            if not segments or segments[-1].name != name:
                segments.append(Segment(name, time.monotonic()))
            if action["event"] == "Executing":
                segments[-1].started += 1
            else:
                segments[-1].ended += 1
                segments[-1].failed |= "Failed" in action["event"]
    end = time.monotonic()
    with open(times_path, "w", encoding="utf-8") as times_file:
        for index, segment in enumerate(segments):
            segment_end = segments[index + 1].start if index + 1 < len(segments) else end
            times_file.write("%s %d %s\n" % (segment.name, round(segment_end - segment.start), segment.status()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
