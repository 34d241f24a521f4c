"""The notification log read ahead of a large catch-up, in a second process.

Catching the ledger up spends about a third of its time reading notifications from
the store (eventsourcing's notification objects, one per entry). For a large backlog
a reader process does that, a batch ahead, on another core, and hands the rows over
as one msgpack message per batch, which costs this process far less to unpack.

The reader only reads: positions, snapshots and tracking records stay with the
catching-up process, so exactly-once is unchanged. If the reader cannot start or
dies, the rest is read here, from the last notification received.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from node.store import FeedStore, StoreConfig
from protocol.entry import MAX_ENTRY_SIZE

try:
    import fcntl
except ImportError:  # not on Windows: pipes keep their default size there
    fcntl = None  # type: ignore[assignment]

READ_AHEAD_MIN = 100_000
"""From this many notifications behind, a catch-up reads ahead in a second process
(starting one costs about as much as settling ten thousand entries)."""
BATCH = 1000
"""Notifications per message from the reader (about 0.3 MB)."""
MAX_MESSAGE = 2 * BATCH * MAX_ENTRY_SIZE
"""Bound on one message from the reader: BATCH entries of at most MAX_ENTRY_SIZE."""
READ_SIZE = 64 * 1024
"""Bytes asked of the pipe per read (it returns what is there: a read never waits
for more). Larger reads, mostly returning less, left the heap fragmented."""
PIPE_SIZE = 1 << 20
"""The pipe from the reader holds this much (about three batches) where it can."""
_ROOT = str(Path(__file__).resolve().parent.parent)

Row = tuple[int, str, int, bytes]
"""(notification id, originator, version, stored bytes), as
:meth:`~node.store.FeedStore.notifications` gives them."""


def rows(store: FeedStore, after: int, *, read_ahead_min: int = READ_AHEAD_MIN,
         ) -> Iterator[Sequence[Any]]:
    """The notifications after ``after`` (as :data:`Row` tuples or lists), read ahead in
    a second process when at least ``read_ahead_min`` of them are waiting. Closing the
    iterator stops the reader."""
    upto = store.max_notification_id()
    if upto - after >= read_ahead_min:
        reader = _Reader.start(store.config, after, upto)
        if reader is not None:
            try:
                yield from reader.rows(after, upto)
            finally:
                reader.stop()
            after = reader.after
    yield from store.notifications(after=after)


class _Reader:
    """A reader process (``python -m node.readahead``) and the pipe it writes to: a
    msgpack stream of batches of rows, then ``None``. The job (which store, which
    rows) goes to it on stdin, so no secret of a DSN shows on its command line."""

    def __init__(self, process: subprocess.Popen[bytes], pipe: BinaryIO) -> None:
        self.process = process
        self.pipe = pipe
        self.after = 0
        """The last notification id :meth:`rows` gave."""

    @classmethod
    def start(cls, config: StoreConfig, after: int, upto: int) -> _Reader | None:
        """Start reading (after, upto]; None where no process can be started."""
        read_end, write_end = os.pipe()
        if fcntl is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            try:  # Linux: room for a few batches, so the reader works ahead of us
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass  # (above /proc/sys/fs/pipe-max-size): the default pipe then
        job = {"backend": config.backend, "dsn": config.dsn, "schema": config.schema,
               "path": None if config.path is None else str(Path(config.path).resolve()),
               "after": after, "upto": upto, "fd": write_end}
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
        try:
            # -P: nothing from the current directory is importable in the reader
            process = subprocess.Popen(
                [sys.executable, "-P", "-m", "node.readahead"], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                pass_fds=(write_end,))
        except (OSError, ValueError):  # (no pass_fds where there are no fds to pass)
            os.close(read_end)
            return None
        finally:
            os.close(write_end)
        try:
            assert process.stdin is not None
            process.stdin.write(json.dumps(job).encode())
            process.stdin.close()
        except OSError:
            pass  # it died already: rows() then finds the pipe closed
        return cls(process, open(read_end, "rb", buffering=0))

    def rows(self, after: int, upto: int) -> Iterator[list[Any]]:
        """The rows (after, upto] the reader sends, in order, until it says it has
        sent all, dies, or sends anything else (then the rows received before are
        all there is from it; :attr:`after` says where they end)."""
        self.after = after
        unpacker = msgpack.Unpacker(self.pipe, raw=False, use_list=True,
                                    read_size=READ_SIZE, max_buffer_size=MAX_MESSAGE)
        try:
            for batch in unpacker:
                if batch is None or type(batch) is not list:
                    return
                for row in batch:
                    if not (type(row) is list and len(row) == 4 and type(row[0]) is int
                            and self.after < row[0] <= upto and type(row[1]) is str
                            and type(row[2]) is int and type(row[3]) is bytes):
                        return
                    self.after = row[0]
                    yield row
        except (ValueError, msgpack.UnpackException, OSError):
            return  # a reader cut off mid-batch: what came whole is all there is

    def stop(self) -> None:
        """Stop the reader (it may be blocked writing) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
        self.pipe.close()
        self.process.wait()


def main() -> None:
    """The reader process: reads its job (a JSON map: the store, ``after``, ``upto``
    and ``fd``) from stdin and writes the rows (after, upto] to that file descriptor
    in batches, then ``None``. Exits quietly on any failure: the catching-up process
    then reads the rest itself (and meets any real problem)."""
    try:
        job = json.loads(sys.stdin.read())
        out = open(int(job["fd"]), "wb")
        pack = msgpack.Packer(use_bin_type=True).pack
        config = StoreConfig(job["backend"], Path(job["path"]) if job["path"] else None,
                             job["dsn"], job["schema"])
        upto = int(job["upto"])
        with out, FeedStore(config) as store:
            batch: list[Row] = []
            for row in store.notifications(after=int(job["after"])):
                if row[0] > upto:
                    break
                batch.append(row)
                if len(batch) >= BATCH:
                    out.write(pack(batch))
                    batch = []
            out.write(pack(batch))
            out.write(pack(None))
    except (Exception, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
