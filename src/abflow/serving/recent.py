"""The requests a gateway process answered recently, for joining outcomes by request id.

A gateway remembers (unit id, experiment) for its last ``capacity`` requests (100,000 by
default) so that an outcome naming only the request id is stored with its unit. A miss is
no error: another worker or replica answered, and the outcome is stored with its request id
alone for analysis to join in the store (:mod:`abflow.store.aggregates`). A dict of Python
strings costs about 290 bytes per entry and grows until it is full: 29 MB over the first
100,000 requests, a resident-memory climb that looks like a leak for minutes. This memo
allocates its memory once, at start: a ring of fixed-width byte slots (request id and unit
id, 64 bytes each) and an open-addressing index of slot numbers (linear probing, at most
half full, deletion by backward shift), about 150 bytes per entry, 15 MB for 100,000. The
oldest entry is overwritten first.

Ids or units longer than 64 bytes in UTF-8 (rare: gateway request ids are 32 characters)
go to a plain ordered dict, bounded by the same capacity; an id lives in one place only.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from typing import Final

from abflow.errors import InvalidArgumentError

__all__ = ["SLOT_BYTES", "RecentRequests"]

SLOT_BYTES: Final = 64
"""Width of a request-id or unit-id slot; longer values use the overflow dict."""
_EMPTY: Final = -1


class RecentRequests:
    """(unit id, experiment key) by request id for the last ``capacity`` requests."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            msg = f"capacity must be at least 1, got {capacity}"
            raise InvalidArgumentError(msg)
        self.capacity = capacity
        size = 1 << max(4, (2 * capacity - 1).bit_length())
        self._mask = size - 1
        # Every buffer is written in full here, so its pages are resident from the start.
        self._index = array("q", [_EMPTY]) * size
        self._hashes = array("q", [0]) * capacity
        self._id_lengths = array("B", [0]) * capacity
        self._unit_lengths = array("B", [0]) * capacity
        self._experiments = array("H", [0]) * capacity
        self._ids = bytearray(capacity * SLOT_BYTES)
        self._units = bytearray(capacity * SLOT_BYTES)
        self._keys: list[str] = []
        self._key_numbers: dict[str, int] = {}
        self._next = 0
        self._used = 0  # live entries in the ring
        self._overflow: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def __len__(self) -> int:
        return self._used + len(self._overflow)

    def remember(self, request_id: str, unit_id: str, experiment_key: str) -> None:
        """Keep (unit id, experiment) for ``request_id``; a repeated id gets the new values."""
        rid = request_id.encode()
        unit = unit_id.encode()
        code = hash(request_id)
        slot = self._find(code, rid)
        number = self._key_number(experiment_key)
        if not 0 < len(rid) <= SLOT_BYTES or len(unit) > SLOT_BYTES or number is None:
            if slot is not None:  # it moves: the overflow's value must not be shadowed
                self._unlink(slot)
            self._overflow[request_id] = (unit_id, experiment_key)
            if len(self._overflow) > self.capacity:
                self._overflow.popitem(last=False)
            return
        if self._overflow:
            self._overflow.pop(request_id, None)
        if slot is None:
            slot = self._next
            self._next = (slot + 1) % self.capacity
            if self._id_lengths[slot]:  # the oldest entry gives way
                self._unlink(slot)
            self._link(slot, code)
            start = slot * SLOT_BYTES
            self._ids[start : start + len(rid)] = rid
            self._id_lengths[slot] = len(rid)
            self._used += 1
        start = slot * SLOT_BYTES
        self._units[start : start + len(unit)] = unit
        self._unit_lengths[slot] = len(unit)
        self._experiments[slot] = number

    def recall(self, request_id: str) -> tuple[str, str] | None:
        """(unit id, experiment key) of ``request_id`` if it is still remembered."""
        rid = request_id.encode()
        if len(rid) <= SLOT_BYTES:
            slot = self._find(hash(request_id), rid)
            if slot is not None:
                start = slot * SLOT_BYTES
                unit = self._units[start : start + self._unit_lengths[slot]].decode()
                return unit, self._keys[self._experiments[slot]]
        return self._overflow.get(request_id)

    def _key_number(self, experiment_key: str) -> int | None:
        number = self._key_numbers.get(experiment_key)
        if number is None and len(self._keys) <= 0xFFFF:  # a gateway serves a handful
            number = len(self._keys)
            self._keys.append(experiment_key)
            self._key_numbers[experiment_key] = number
        return number

    # -- the index ---------------------------------------------------------------------------

    def _find(self, code: int, rid: bytes) -> int | None:
        index, mask = self._index, self._mask
        position = code & mask
        while (slot := index[position]) != _EMPTY:
            if self._hashes[slot] == code and self._id_lengths[slot] == len(rid):
                start = slot * SLOT_BYTES
                if self._ids[start : start + len(rid)] == rid:
                    return slot
            position = (position + 1) & mask
        return None

    def _link(self, slot: int, code: int) -> None:
        index, mask = self._index, self._mask
        position = code & mask
        while index[position] != _EMPTY:
            position = (position + 1) & mask
        index[position] = slot
        self._hashes[slot] = code

    def _unlink(self, slot: int) -> None:
        """Forget ``slot``: out of the index (later entries of its run shift back), empty."""
        index, mask = self._index, self._mask
        hole = self._hashes[slot] & mask
        while index[hole] != slot:
            hole = (hole + 1) & mask
        index[hole] = _EMPTY
        self._id_lengths[slot] = 0  # an empty slot: recycled when the ring comes round
        self._used -= 1
        position = hole
        while True:
            position = (position + 1) & mask
            moving = index[position]
            if moving == _EMPTY:
                return
            home = self._hashes[moving] & mask
            # The entry may fill the hole unless its home lies cyclically in (hole, position].
            if (position - home) & mask >= (position - hole) & mask:
                index[hole] = moving
                index[position] = _EMPTY
                hole = position
