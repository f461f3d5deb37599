"""Prints the Ansible failures that ended plays in a test step's log: for each host a PLAY RECAP counts as failed or
unreachable, the last task that failed on it (not ignored) and its message, each cut to a few hundred characters.

CI shows only the end of a run's output, where molecule's summary names the failed scenario but not why;
tests/run-all.sh prints this excerpt just above its summary line. Prints nothing for a log without such failures.
"""

from __future__ import annotations

import re
import sys

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# molecule boxes each playbook's output: "  │ " before every line, wrapped at 80 columns, "  │   " before the rest.
MOLECULE_BOX = re.compile(r"^\s*\u2502 ?(?P<text>.*)$")
FAILURE_LINE = re.compile(r"^(?:fatal|failed): \[(?P<host>[^\]]+)\]")
RECAP_LINE = re.compile(r"^(?P<host>\S+)\s*:\s*ok=\d+.*?\bunreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)")
MAX_FAILURES = 3
MAX_LINE_CHARS = 700


def shorten(line: str) -> str:
    if len(line) <= MAX_LINE_CHARS:
        return line
    return line[:MAX_LINE_CHARS] + " [...]"


def play_ending_failures(lines: list[str]) -> list[tuple[str, str]]:
    """(task header, failure line) of the last unignored failure of each host that a PLAY RECAP counts."""
    ending: list[tuple[str, str]] = []
    last_failure_by_host: dict[str, tuple[str, str]] = {}
    task_header = ""
    in_recap = False
    for index, line in enumerate(lines):
        if line.startswith("TASK ["):
            task_header, in_recap = line.rstrip(" *"), False
        elif line.startswith("PLAY RECAP"):
            in_recap = True
        elif in_recap:
            recap = RECAP_LINE.match(line)
            if recap is None:
                in_recap = False
            elif int(recap["failed"]) or int(recap["unreachable"]):
                if recap["host"] in last_failure_by_host:
                    ending.append(last_failure_by_host[recap["host"]])
        else:
            failure = FAILURE_LINE.match(line)
            next_line = lines[index + 1] if index + 1 < len(lines) else ""
            if failure and not next_line.startswith("...ignoring"):
                last_failure_by_host[failure["host"]] = (task_header, line)
    return ending


def unwrapped_lines(log_text: str) -> list[str]:
    """The log's lines without colours, with molecule's box taken off and its wrapped lines joined again."""
    lines: list[str] = []
    previous_boxed = False
    for raw_line in log_text.splitlines():
        line = ANSI_ESCAPE.sub("", raw_line).rstrip()
        boxed = MOLECULE_BOX.match(line)
        if boxed and previous_boxed and boxed["text"].startswith("  ") and lines[-1]:
            lines[-1] += " " + boxed["text"].strip()
            continue
        previous_boxed = boxed is not None
        lines.append(boxed["text"] if boxed else line)
    return lines


def excerpt(log_text: str) -> list[str]:
    lines = unwrapped_lines(log_text)
    printed: list[str] = []
    for task_header, failure_line in play_ending_failures(lines)[-MAX_FAILURES:]:
        printed += [shorten(task_header), shorten(failure_line)]
    return printed


def main(log_path: str) -> None:
    with open(log_path, encoding="utf-8", errors="replace") as log_file:
        printed = excerpt(log_file.read())
    if printed:
        print("=== the Ansible failures that ended plays in " + log_path + ":")
        print("\n".join(printed))


if __name__ == "__main__":
    main(sys.argv[1])
