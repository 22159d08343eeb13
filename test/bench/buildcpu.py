"""CPU seconds of one statement on the server: the backend and its parallel workers.

On a machine shared with other work, the wall time of CREATE INDEX measures the load
as much as the build.  The CPU time the server processes spent on it does not (much):
Linux accounts utime + stime per process in /proc/<pid>/stat.  A sampler thread reads
the backend's counters and those of every process titled "parallel worker for PID
<backend>" (whose counters vanish when it exits, so the last sample is kept: an error
of at most one sampling interval per worker).  Needs the server on this machine.
The 1-minute load average at the start and the end is kept beside it.

    with BuildCPU(backend_pid) as c:
        cur.execute("CREATE INDEX ...")
    c.cpu_s, c.load
"""

import os
import threading

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid):
    """utime + stime of pid in seconds, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


def _workers(leader):
    """pids of the parallel workers of backend `leader` (by process title)."""
    tag = f"parallel worker for PID {leader}".encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if tag in f.read():
                    out.append(int(d))
        except OSError:
            pass
    return out


class BuildCPU:
    def __init__(self, backend_pid, interval=0.5):
        self.pid, self.interval = backend_pid, interval
        self.workers = {}          # pid -> last CPU seconds seen
        self.cpu_s = self.load = None
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.wait(self.interval):
            for w in _workers(self.pid):
                c = _cpu(w)
                if c is not None:
                    self.workers[w] = c

    def __enter__(self):
        self._start = _cpu(self.pid)
        self._load0 = os.getloadavg()[0]
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        end = _cpu(self.pid)
        if self._start is not None and end is not None:
            self.cpu_s = end - self._start + sum(self.workers.values())
        self.load = (self._load0, os.getloadavg()[0])
        return False
