"""The offline audit's signature checks on every core.

:func:`federation.audit.audit_bundle` takes a
:data:`~federation.audit.SignatureCheck`; :class:`SignatureWorkers` is the one the
command line (and ``bench/audit.py``) passes: each batch is split into a run per
worker and checked while the audit settles the batch before. A small bundle is
checked in threads; from :data:`PROCESSES_MIN_BYTES` on, in forked worker
processes. If a worker process dies, its run is checked here instead.
"""

from __future__ import annotations

import multiprocessing
from array import array
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from federation.audit import signatures_ok

PROCESSES_MIN_BYTES = 4 * 1024 * 1024
"""From this bundle size on (about 14k entries), signatures are checked in forked
worker processes rather than threads: libsodium releases the GIL, but a verifying
thread needs it back after every signature while the audit decodes and runs the
ledger, so threads alone leave much of the second core idle. Small bundles are not
worth forking for."""


@dataclass(frozen=True)
class _Run:
    """A run of entries as two byte strings (cheap to send to a worker process): their
    bytes one after another, and their lengths (``array('I')``)."""

    data: bytes
    lengths: bytes

    @classmethod
    def of(cls, raws: Sequence[bytes]) -> _Run:
        return cls(b"".join(raws), array("I", map(len, raws)).tobytes())

    def entries(self) -> Iterator[bytes]:
        view, at = memoryview(self.data), 0
        for size in array("I", self.lengths):
            yield bytes(view[at:at + size])
            at += size


def _check_run(run: _Run) -> bytes:
    """The flags of a run (in a worker): :func:`federation.audit.signatures_ok`."""
    return signatures_ok(run.entries())


def _result(future: Future[bytes], run: _Run) -> bytes:
    """The flags a worker computed; computed here if the worker process died."""
    try:
        return future.result()
    except BrokenExecutor:
        return _check_run(run)


class SignatureWorkers:
    """A :data:`~federation.audit.SignatureCheck` on ``workers`` threads or forked
    processes. Use as a context manager (or call :meth:`close`): closing waits for
    the checks under way and stops the workers."""

    def __init__(self, workers: int = 2, *, processes: bool = False) -> None:
        """``processes``: fork worker processes (where the platform can fork, and for
        two workers or more); threads otherwise. The processes are forked before any
        thread of this object starts, so they run nothing of the caller's
        ``__main__``."""
        self.workers = max(1, workers)
        self.processes: ProcessPoolExecutor | None = None
        if processes and self.workers >= 2 and "fork" in multiprocessing.get_all_start_methods():
            self.processes = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("fork"))
        self.threads: ThreadPoolExecutor | None = None

    @classmethod
    def for_bundle(cls, f: BinaryIO, workers: int = 2) -> SignatureWorkers:
        """Workers fit for the bundle in the seekable stream ``f`` (left where it
        was): processes for one of :data:`PROCESSES_MIN_BYTES` or more after the
        current position, threads for a smaller one."""
        position = f.tell()
        size = f.seek(0, 2) - position
        f.seek(position)
        return cls(workers, processes=size >= PROCESSES_MIN_BYTES)

    def __call__(self, raws: Sequence[bytes]) -> Callable[[], bytes]:
        """Start checking the entries, a run per worker; the function returned waits
        and gives one flag byte per entry, in order."""
        size = -(-len(raws) // self.workers) or 1
        runs = [_Run.of(raws[i:i + size]) for i in range(0, len(raws), size)]
        if self.processes is not None:
            try:
                futures = [self.processes.submit(_check_run, run) for run in runs]
                return lambda: b"".join(_result(f, r) for f, r in zip(futures, runs,
                                                                      strict=True))
            except (OSError, BrokenExecutor):  # cannot fork here, or a worker died
                self.processes.shutdown(wait=False, cancel_futures=True)
                self.processes = None  # threads from now on
        if self.threads is None:
            self.threads = ThreadPoolExecutor(self.workers, thread_name_prefix="disco-audit")
        futures = [self.threads.submit(_check_run, run) for run in runs]
        return lambda: b"".join(f.result() for f in futures)

    def close(self) -> None:
        if self.threads is not None:
            self.threads.shutdown()
        if self.processes is not None:
            self.processes.shutdown()

    def __enter__(self) -> SignatureWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
