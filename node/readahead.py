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

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack

from node.store import FeedStore, StoreConfig
from protocol.entry import MAX_ENTRY_SIZE

READ_AHEAD_MIN = 100_000
"""From this many notifications behind, a catch-up reads ahead in a second process
(starting one costs about as much as settling ten thousand entries)."""
BATCH = 1000
"""Notifications per message from the reader (about 0.3 MB)."""
MAX_MESSAGE = 2 * BATCH * MAX_ENTRY_SIZE
"""Bound on one message from the reader: BATCH entries of at most MAX_ENTRY_SIZE."""
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
                for row in reader.rows():
                    yield row
                    after = row[0]
            finally:
                reader.stop()
    yield from store.notifications(after=after)


class _Reader:
    """A reader process (``python -m node.readahead``) and its output pipe: a msgpack
    stream of batches of rows, then ``None``."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @classmethod
    def start(cls, config: StoreConfig, after: int, upto: int) -> _Reader | None:
        """Start reading (after, upto]; None where no process can be started."""
        where = {"backend": config.backend, "dsn": config.dsn, "schema": config.schema,
                 "path": None if config.path is None else str(Path(config.path).resolve())}
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "node.readahead", json.dumps(where), str(after),
                 str(upto)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=env)
        except OSError:
            return None
        if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: room for a few batches in the pipe,
            try:  # so that the reader works ahead rather than in step with us
                fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore[union-attr]
            except OSError:
                pass  # (above /proc/sys/fs/pipe-max-size): the default pipe then
        return cls(process)

    def rows(self) -> Iterator[list[Any]]:
        """The rows the reader sends, until it says it has sent all, or dies (then
        the rows received are all there is from it)."""
        assert self.process.stdout is not None
        unpacker = msgpack.Unpacker(self.process.stdout, raw=False, use_list=True,
                                    read_size=PIPE_SIZE, max_buffer_size=MAX_MESSAGE)
        try:
            for batch in unpacker:
                if batch is None:
                    return
                yield from batch
        except (ValueError, msgpack.UnpackException, OSError):
            return  # a reader cut off mid-batch: what came whole is all there is

    def stop(self) -> None:
        """Stop the reader (it may be blocked writing) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process.wait()


def main() -> None:
    """The reader process: ``python -m node.readahead STORE AFTER UPTO`` writes the rows
    (AFTER, UPTO] to stdout in batches, then ``None``. Exits quietly on any failure:
    the catching-up process then reads the rest itself (and meets any real problem)."""
    out = sys.stdout.buffer
    pack = msgpack.Packer(use_bin_type=True).pack
    try:
        where = json.loads(sys.argv[1])
        after, upto = int(sys.argv[2]), int(sys.argv[3])
        config = StoreConfig(where["backend"], Path(where["path"]) if where["path"] else None,
                             where["dsn"], where["schema"])
        with FeedStore(config) as store:
            batch: list[Row] = []
            for row in store.notifications(after=after):
                if row[0] > upto:
                    break
                batch.append(row)
                if len(batch) >= BATCH:
                    out.write(pack(batch))
                    batch = []
            out.write(pack(batch))
            out.write(pack(None))
            out.flush()
    except (Exception, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
