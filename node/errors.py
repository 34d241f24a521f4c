"""The node layer's errors: one root, :class:`NodeError`.

Every error the node (the I/O shell) raises of its own derives from it: a request the
node refuses (raised as ``NodeError`` itself), its folder (``node.home.HomeError``),
its store (``node.store.StoreError``, which stands for the storage libraries' own
errors too), a refused request from a peer (``node.auth.AuthError``) and a peer that
fails us (``node.client.PeerError``). The layers below keep theirs:
``protocol.errors.ProtocolError`` and ``federation.errors.FederationError``.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of the node layer's errors, and itself a request the node refuses; the
    message is one line for a person."""
