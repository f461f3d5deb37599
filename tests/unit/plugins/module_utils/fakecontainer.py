"""A fake host's container (see fakehost.py): counts up from START in COUNTER_FILE every 10 ms, renaming a new file
over it so that a reader never sees half a number. With --stopped it stops itself before its first count, as CRIU's
leave-stopped leaves a restored task."""

import os
import signal
import sys
import time

path, count = sys.argv[1], int(sys.argv[2])
if "--stopped" in sys.argv:
    os.kill(os.getpid(), signal.SIGSTOP)
while True:
    count += 1
    with open(path + ".new", "w") as handle:
        handle.write(f"{count}\n")
    os.replace(path + ".new", path)
    time.sleep(0.01)
