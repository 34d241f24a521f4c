"""Shared helpers for the benchmarks: the machine's own limits, measured in the same run.

- :func:`sign_rate` / :func:`verify_rate`: single-core Ed25519 signatures and
  verifications per second with ``cryptography`` (``Ed25519PrivateKey.sign`` and
  ``public_key().verify``) over ~100-byte messages, each timed for ~1.5 s (best of three
  0.5 s windows, so a burst of other load does not lower the limit).
- :func:`peak_rss_mb`: peak resident set size of this process (or of its waited-for
  children) from ``resource.getrusage``; ``ru_maxrss`` is KiB on Linux.
- :func:`image_peak_rss_mb`: the same for this process image only (``VmHWM``). Linux
  carries ``ru_maxrss`` across ``exec``, so a child started from a big parent reports
  at least the parent's peak; a measured child should use this one.
- :func:`report`: print the one final JSON line every benchmark ends with.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MESSAGE_SIZE = 100
DURATION_S = 1.5


def _rate(op: Callable[[], object], duration_s: float, windows: int = 3) -> float:
    """Calls of ``op`` per second over about ``duration_s``: the best of ``windows``
    equal windows, since other load on the machine can only slow a window down."""
    for _ in range(50):  # warm up
        op()
    best = 0.0
    for _ in range(windows):
        n = 0
        start = time.perf_counter()
        deadline = start + duration_s / windows
        while True:
            for _ in range(100):
                op()
            n += 100
            now = time.perf_counter()
            if now >= deadline:
                best = max(best, n / (now - start))
                break
    return best


def sign_rate(duration_s: float = DURATION_S) -> float:
    """Single-core Ed25519 signatures per second with ``cryptography``."""
    key = Ed25519PrivateKey.generate()
    msg = os.urandom(MESSAGE_SIZE)
    return _rate(lambda: key.sign(msg), duration_s)


def verify_rate(duration_s: float = DURATION_S) -> float:
    """Single-core Ed25519 verifications per second with ``cryptography``."""
    key = Ed25519PrivateKey.generate()
    msg = os.urandom(MESSAGE_SIZE)
    sig = key.sign(msg)
    public = key.public_key()
    return _rate(lambda: public.verify(sig, msg), duration_s)


def peak_rss_mb(children: bool = False) -> float:
    """Peak RSS in MB of this process, or the largest of its waited-for children."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    kib = resource.getrusage(who).ru_maxrss
    if sys.platform == "darwin":  # bytes there, KiB on Linux
        kib //= 1024
    return round(kib / 1024, 1)


def image_peak_rss_mb() -> float:
    """Peak RSS in MB of this process since its last ``exec`` (``VmHWM`` from
    /proc/self/status); :func:`peak_rss_mb` where there is no /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return peak_rss_mb()


def report(bench: str, **figures: Any) -> None:
    """Print the final JSON line: ``{"bench": ..., **figures}``, floats rounded."""
    line: dict[str, Any] = {"bench": bench}
    line.update({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()})
    print(json.dumps(line), flush=True)


def log(message: str) -> None:
    """Progress for people, on stderr, so stdout ends with the JSON line only."""
    print(message, file=sys.stderr, flush=True)
