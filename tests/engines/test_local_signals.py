"""LocalEngine under stop signals: a SIGTERM (or Ctrl-C) that arrives while the caller
waits on its worker processes stops the caller, whatever line it lands on.

The signal handler of the command line raises KeyboardInterrupt. Raised inside
``concurrent.futures.wait`` while it holds the futures' locks, it left them held: the
pool's manager thread then blocked on one, and the interpreter's exit joined that thread
for ever. The engine holds the signals back while it is inside the pool's code and
raises them as it leaves it. The tasks here are tiny and 2,000 are in flight, so the
caller spends most of its time in ``wait`` taking 2,000 locks (the window is wide): each
of several processes is signalled, repeatedly, and every one must exit (before the
engine held the signals, about one process in ten never did)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: a caller with the command line's handlers: SIGINT and SIGTERM raise KeyboardInterrupt
CALLER = textwrap.dedent("""
    import signal, sys
    sys.path.insert(0, sys.argv[1])
    from xensim.engines import LocalEngine

    def stop(signum, frame):
        raise KeyboardInterrupt

    def tiny(x):
        return x

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    engine = LocalEngine(2)
    try:
        print("running", flush=True)
        for _ in engine.map_unordered(tiny, range(10**9), max_in_flight=2000):
            pass
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the test keeps signalling:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)    # what must end now is the exit
        print("stopped", flush=True)
        sys.exit(143)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_while_waiting_on_workers_always_ends_the_caller(tmp_path, sig):
    script = tmp_path / "caller.py"
    script.write_text(CALLER)
    for attempt in range(8):
        proc = subprocess.Popen([sys.executable, str(script), str(REPO)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline() == b"running\n"
        time.sleep(0.3 + 0.05 * attempt)             # the workers are up and busy
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(sig)                    # again and again, until it ends
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
            pytest.fail(f"attempt {attempt}: the caller was still running 30 s after "
                        f"the first {sig.name}")
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err.decode()[-2000:]
        assert out == b"stopped\n"
