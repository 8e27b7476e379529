"""A worker that processes a fixed batch of jobs and reports each one (its output is the proof)."""

from __future__ import annotations

import os
import time

JOBS = int(os.environ.get("JOBS", "3"))

if __name__ == "__main__":
    print("worker started", flush=True)
    for job in range(1, JOBS + 1):
        time.sleep(0.05)
        print(f"processed job {job}/{JOBS}", flush=True)
    print("worker done", flush=True)
