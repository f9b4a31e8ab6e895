"""A DataLoader worker's batch memory: shared-memory slots reused batch after batch.

A batch a worker makes must reach the main process in shared memory. Made new each batch (as
`default_collate` does), that memory cost the worker a file (a round trip to torch's
torch_shm_manager) and its pages (at 64 px, 0.8 ms a batch of 64: half what decoding it took),
and the main process a mapping of its own. A worker that `enable`s this module keeps a few slots
instead, each a shared-memory segment (torch's, so that torch_shm_manager removes it once every
process using it has gone, killed or not), and reuses one once the main process has let go of
what it sent from it:

- a slot's first bytes count the tensors sent from it (written by the worker only) and those
  the main process has let go of (written by the main process only), then name the worker (its
  pid) and whether it has dropped the slot;
- a tensor from a slot is sent as the segment (torch's handle; the main process maps it once and
  keeps it, `_KEPT`, till the worker has ended or dropped it) and where in it the tensor lies;
  the main process hands the training loop a tensor of that memory whose end (its last view gone)
  counts as let go of;
- a slot is free when both counts agree and the worker holds nothing of it (so a tensor sent
  again, or kept by a collate, never finds its memory reused). With every slot in use and
  `SLOTS` of them, a batch is new shared memory, sent as torch sends any tensor.
"""

from __future__ import annotations

import functools
import math
import mmap
import os
import sys
import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch

from augpipe.processes import alive

HEADER = 64  # bytes before a slot's data: the counts, and the data on a cache line of its own
SLOTS = 16  # a worker's slots at most (a worker has 2 batches ahead by default, the loop 1 or 2)
KEPT = 256  # segments the main process keeps mapped at most (past those its workers ended or dropped)


class _Slot:
    def __init__(self, nbytes: int):
        self.segment = new_shared((HEADER + nbytes,), torch.uint8)
        self.array = self.segment.numpy()
        self.counts = _header(self.array)
        self.counts[2] = os.getpid()
        self.capacity = nbytes
        self.held: weakref.ref | None = None  # the array handed out in this process
        self.address = self.array.ctypes.data + HEADER
        self.sent = _Segment(self.segment.untyped_storage())

    def free(self) -> bool:
        return (self.held is None or self.held() is None) and self.counts[0] == self.counts[1]


class _Segment:
    """A slot's shared memory as sent to the main process under "file_system" sharing: its file's
    name, asked for once (torch asks each time; under another strategy, which asking for a name
    would move the memory from under the slot's arrays, torch's own way).

    Without torch's count of a storage in transit (its sender adds one to the file's count of
    users each time, its receiver takes it back): a batch never received (a loop's `break` leaves
    a DataLoader's prefetched batches in its queue) kept its file in /dev/shm as long as the main
    process lived. The file is counted by who maps it: the worker while it keeps the slot, which
    it lets go of only once every tensor sent from it has been let go of (`_Slot.free`), or as it
    ends; the main process from its first batch of the slot till it lets go of it."""

    def __init__(self, storage: torch.UntypedStorage):
        self.storage, self.reduced = storage, None

    def __reduce__(self):
        if self.reduced is None:
            from torch.multiprocessing import get_sharing_strategy
            from torch.multiprocessing.reductions import reduce_storage

            if get_sharing_strategy() != "file_system" or not self.storage.is_shared():
                return reduce_storage(self.storage)
            self.reduced = (_mapped, (type(self.storage), *self.storage._share_filename_cpu_()))
        return self.reduced


def _mapped(cls, manager, handle, size: int) -> torch.UntypedStorage:
    """In the main process: a slot's file, mapped once (torch's `rebuild_storage_filename`, less
    taking back a count the sender did not add)."""
    from torch.multiprocessing.reductions import StorageWeakRef, shared_cache, storage_from_cache

    storage = storage_from_cache(cls, handle)
    if storage is None:
        storage = cls._new_shared_filename_cpu(manager, handle, size)
        shared_cache[handle] = StorageWeakRef(storage)
    return storage


def _header(segment: np.ndarray) -> np.ndarray:
    """A segment's counts: sent (the worker's), let go of (the main process's), the worker's pid,
    whether the worker dropped it."""
    return segment[:32].view(np.int64)


_SLOTS: dict[int, _Slot] = {}  # a slot's data address → the slot


def empty(shape: tuple, dtype=torch.uint8) -> torch.Tensor:
    """A tensor to fill and send to the main process: from a free slot where this worker
    `enable`d slots, else new shared memory."""
    nbytes = math.prod(shape) * dtype.itemsize
    array = _take(nbytes) if _ENABLED and nbytes else None
    if array is None:
        return new_shared(shape, dtype)
    return torch.from_numpy(array).view(dtype).view(shape)


def _take(nbytes: int) -> np.ndarray | None:
    slot = min((s for s in _SLOTS.values() if s.capacity >= nbytes and s.free()), key=lambda s: s.capacity,
               default=None)
    if slot is None:
        if len(_SLOTS) >= SLOTS:
            small = next((s for s in _SLOTS.values() if s.free()), None)
            if small is None:
                return None
            del _SLOTS[small.address]
            small.counts[3] = 1  # the main process lets go of its mapping
        slot = _Slot(nbytes)
        _SLOTS[slot.address] = slot
    array = slot.array[HEADER:HEADER + nbytes]
    slot.held = weakref.ref(array)
    return array


def new_shared(shape: tuple, dtype=torch.uint8) -> torch.Tensor:
    """New shared memory as `default_collate` makes it in a worker, its pages in place."""
    elem = torch.empty(0, dtype=dtype)
    out = elem.new(elem._typed_storage()._new_shared(math.prod(shape), device=elem.device)).resize_(shape)
    _populate(out.data_ptr(), out.nbytes)
    return out


_ENABLED = False


def enabled() -> bool:
    """Whether this process makes its batches in slots (a worker `readers.loader` started)."""
    return _ENABLED


def enable() -> None:
    """In a DataLoader worker: batches from slots, and tensors of a slot sent as such."""
    global _ENABLED
    from multiprocessing.reduction import ForkingPickler
    from multiprocessing.util import Finalize

    from torch.multiprocessing.reductions import reduce_tensor

    ForkingPickler.register(torch.Tensor, functools.partial(_reduce, reduce_tensor))
    # a worker ends by os._exit, past atexit: multiprocessing's own finalizers still run there
    Finalize(None, _drop_all, exitpriority=0)
    _ENABLED = True


def _drop_all() -> None:
    """At a worker's end: its slots dropped and marked so (torch counts each process holding a
    shared file and removes it at 0: a slot still held at the end would stay in /dev/shm while
    the main process lives). A slot whose batch this worker still holds (made, not yet sent: a
    loop's `break` ends the workers mid-batch) is never closed, the worker ending by os._exit:
    it is counted let go of here (`_let_go_held`). What the queue's thread sends of a slot after
    this goes by value, not into a new shared file of torch's, which would be counted in transit
    for ever."""
    for slot in _SLOTS.values():
        slot.counts[3] = 1
        _GONE.add(slot.address)
        if slot.held is not None and slot.held() is not None:
            _let_go_held(slot.segment.untyped_storage())
    _SLOTS.clear()


_GONE: set[int] = set()  # the data addresses of the slots this worker dropped as it ended
_HELD: list = []  # slots let go of at the end but still mapped here: never closed (see _let_go_held)


def _let_go_held(storage: torch.UntypedStorage) -> None:
    """This process's count of a slot's file taken back though its mapping stays (a batch still
    holds it): the file's name removed where that leaves no user, as torch's close would have.
    The storage is kept (`_HELD`) so that no close counts it again, should the interpreter's end
    free it (a spawned worker's). Only where torch's count lies as this module knows it."""
    from torch.multiprocessing import get_sharing_strategy

    if get_sharing_strategy() != "file_system" or not storage.is_shared() or not _count_readable():
        return
    _HELD.append(storage)
    storage._shared_decref()
    if _users(storage) == 0:
        try:
            import _posixshmem

            _posixshmem.shm_unlink(storage._share_filename_cpu_()[1].decode())
        except (OSError, ImportError):  # removed already by the last user's close
            pass


def _users(storage: torch.UntypedStorage) -> int:
    """torch's count of a shared file's users, kept just before the storage's data."""
    import ctypes

    return ctypes.c_int32.from_address(storage.data_ptr() - _COUNT_OFFSET).value


_COUNT_OFFSET = 64  # torch's RefcountedMapAllocator: the count, then the data 64 bytes on


@functools.cache
def _count_readable() -> bool:
    """Whether torch's count lies where `_users` reads it: read on a file of one's own."""
    probe = new_shared((1,)).untyped_storage()
    try:
        before = _users(probe)
        probe._shared_incref()
        after = _users(probe)
        probe._shared_decref()
        return (before, after, _users(probe)) == (1, 2, 1)
    except Exception:  # noqa: BLE001 - another torch: the file is left to its manager
        return False


def _reduce(reduce_tensor, tensor: torch.Tensor):
    """A worker's pickling of a tensor for the main process (`ForkingPickler`, in the queue's
    thread): a tensor of a slot as the slot and its place in it, a small one (labels, boxes) as
    its bytes (a new shared file costs both processes far more than copying them); any other as
    torch does. Never raises where torch would not: an error in the queue's thread loses the
    batch, and the loop waits for it for ever."""
    try:
        sent = _sent(tensor)
    except Exception:  # noqa: BLE001 - a kind of tensor not foreseen: torch's way
        sent = None
    return sent if sent is not None else reduce_tensor(tensor)


def _sent(tensor: torch.Tensor) -> tuple | None:
    if tensor.device.type != "cpu" or type(tensor) is not torch.Tensor or tensor.requires_grad \
            or tensor.layout != torch.strided or tensor.is_nested or tensor.is_quantized:
        return None
    storage = tensor.untyped_storage()
    if storage.data_ptr() in _GONE:  # after the worker's end: torch's way would make a new file of it
        array = tensor.contiguous().numpy()
        return _from_bytes, (array.tobytes(), array.dtype.str, array.shape)
    slot = _SLOTS.get(storage.data_ptr())
    if slot is not None and slot.held is not None and slot.held() is not None and storage.nbytes() <= slot.capacity:
        slot.counts[0] += 1  # before anything else: the slot is not free till the main process lets go of it
        return _rebuilt, (slot.sent, storage.nbytes(), tensor.dtype, tuple(tensor.shape), tensor.stride(),
                          tensor.storage_offset())
    if tensor.nbytes <= SMALL and tensor.is_contiguous() and tensor.dtype in _NUMPY \
            and not tensor.is_conj() and not tensor.is_neg():
        array = tensor.numpy()
        return _from_bytes, (array.tobytes(), array.dtype.str, array.shape)
    return None


def _from_bytes(data: bytes, dtype: str, shape: tuple) -> torch.Tensor:
    """A small tensor sent by value (half the time numpy's own pickling takes, both ends)."""
    return torch.from_numpy(np.frombuffer(bytearray(data), dtype).reshape(shape))


SMALL = 64 * 2**10  # bytes a tensor sent by value at most
_NUMPY = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.float32,
          torch.float64, torch.bool, torch.complex64, torch.complex128}
_KEPT: OrderedDict[int, np.ndarray] = OrderedDict()  # main-process mappings of segments, by address
# the let-go count and _KEPT: a tensor may end in any thread (pin_memory's), and in the middle of
# `_rebuilt`, holding the lock, where the cyclic collector ends one caught in a cycle: reentrant
_LOCK = threading.RLock()


def _rebuilt(segment: torch.UntypedStorage, nbytes: int, dtype, shape: tuple, stride: tuple,
             offset: int) -> torch.Tensor:
    """In the main process: the tensor sent, over the slot's memory, counted let go of when its
    last view ends (`weakref.finalize` of the array under it)."""
    address = segment.data_ptr()
    with _LOCK:
        whole = _KEPT.get(address)
        if whole is None:  # kept mapped: the slot's next batch finds it in torch's cache, no new mapping
            forget_gone()  # a new segment: often a new worker's, an earlier loader's gone
            whole = _KEPT[address] = torch.empty(0, dtype=torch.uint8).set_(segment).numpy()
        _KEPT.move_to_end(address)
        while len(_KEPT) > KEPT:
            _KEPT.popitem(last=False)
    array = whole[HEADER:HEADER + nbytes]
    weakref.finalize(array, _let_go, _header(whole), os.getpid())
    return torch.from_numpy(array).view(dtype).as_strided(shape, stride, offset)


def forget_gone() -> None:
    """In the main process: lets go of the segments of workers that have ended, and of those their
    workers dropped (the memory is freed once no tensor of it is left). `readers.loader` calls it
    as an iterator of its workers ends."""
    with _LOCK:
        for address, whole in list(_KEPT.items()):
            _, _, pid, dropped = _header(whole)
            if dropped or not alive(int(pid)):
                del _KEPT[address]


def _let_go(counts: np.ndarray, pid: int) -> None:
    """Counts a tensor let go of, in the process that rebuilt it only: a child it forked, which
    ends its copy of the tensor too, must not count it again (the worker would reuse the slot
    while this process still holds the tensor)."""
    if os.getpid() != pid:
        return
    with _LOCK:
        counts[1] += 1
        if counts[3]:  # its worker has dropped the slot or ended: this process lets go of the mapping
            _KEPT.pop(counts.ctypes.data, None)


def _populate(address: int, nbytes: int) -> None:
    """Has Linux (5.14 and later) back new shared memory with pages in one call (madvise's
    MADV_POPULATE_WRITE) where the batch's first writes would fault them in one by one: shared
    memory gets no huge pages, and at 224 px a worker spent a third of its time in those faults.
    Elsewhere, or refused, nothing: the writes fault them in."""
    madvise = _madvise()
    if madvise is not None and nbytes:
        start = address & ~(mmap.PAGESIZE - 1)
        madvise(start, nbytes + address - start, 23)  # MADV_POPULATE_WRITE, in linux/mman.h


@functools.cache
def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes, madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return madvise
