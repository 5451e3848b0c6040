"""How the Python peers of the benchmark are served: waitress, a thread count, port 0, a readiness line.

    python bench/bare.py --threads 8      # prints "READY <port>" once it listens on 127.0.0.1

Every Python target gets the same waitress thread count (--threads; the
default is the service's own default THREADS), so only the app differs.
"""

import argparse
import logging
import signal

from waitress.server import create_server

THREADS = 8  # waitress threads: the service's default THREADS
READY = r"^READY (\d+)$"  # the line every peer prints; the group is the port it bound


def serve(app, argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=THREADS, help=f"waitress threads (default {THREADS})")
    args = parser.parse_args(argv)
    # As the service does: no "Task queue depth" line (a write) per request that waits for a thread.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # Ctrl-C, or SIGINT from bench/instructions.py, ends it; a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server = create_server(app, host="127.0.0.1", port=0, threads=args.threads)
    print(f"READY {server.effective_port}", flush=True)
    server.run()
