"""The processes one batch training run is spread over (``feedrank train --nproc N``).

:class:`SingleProcess` is the plain path: every operation is the identity, and
training is exactly what it was before data parallelism existed.

:class:`ProcessGroup` is N processes started by ``torchrun`` (``torch.distributed``;
gloo on CPU, NCCL where the models live on GPUs). Each holds its own share of the
examples (its Kafka partitions, or its shard of a file) and a full replica of both
models. The trainer asks it for the few things that need every share:

* the time-ordered validation split: one cut time over every share's decision times;
* class counts for the balancing weights, and the validation loss for early stopping
  (sums over the shares);
* steps per epoch: the largest share sets it, smaller shares wrap around, so every
  process takes part in every step;
* the validation set, gathered on the leader (rank 0) for the final metrics.

The step itself (:class:`DataParallelStep`): the dense layers are wrapped in
``DistributedDataParallel``, which averages their gradients with bucketed all-reduces
that overlap the backward pass. The hashed-id tables are left out of DDP
(``_set_params_and_buffers_to_ignore_for_model``). Their gradients are sparse (the
rows a batch touched), so each process all-gathers the others' touched rows and values
and sums them (sparse all-reduce; NCCL has none, gloo's is slower). The tables stay
replicated rather than sharded by row: at the default sizes they are 2 x 2^18-2^19 rows
of 32 floats (about 100 MB), far below one machine's memory; see docs/learners.md for
when row sharding pays. The logQ frequency estimator sees every process's posts each
step, so each replica's estimate is the one a single process would keep.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from feedrank.learners.batch.sampling import split_by_time
from feedrank.learners.examples import ExampleBatch, concat
from feedrank.learners.joint import JointModel
from feedrank.learners.post_ids import LEARNER_POST_IDS

F64Array = npt.NDArray[np.float64]
EXACT_FLOAT_ROWS = 1 << 24  # float32 holds every integer below this exactly
IntArray = npt.NDArray[np.int64]
Gathered = TypeVar("Gathered")


class Workers(Protocol):
    """What a training run needs from the processes it is spread over."""

    rank: int
    size: int

    @property
    def leader(self) -> bool:
        """The process that evaluates, reports and publishes."""
        ...

    def split(self, batch: ExampleBatch, share: float) -> tuple[ExampleBatch, ExampleBatch]:
        """(training, validation) of this share: validation is the latest ``share`` of
        every share's decisions together."""
        ...

    def total(self, values: F64Array) -> F64Array:
        """``values`` summed over every process."""
        ...

    def most(self, value: int) -> int:
        """The largest ``value`` of any process."""
        ...

    def gather(self, item: Gathered) -> list[Gathered]:
        """Every process's ``item`` in rank order, on the leader (empty elsewhere)."""
        ...

    def shard(self, batch: ExampleBatch) -> ExampleBatch:
        """This process's share of a batch every process holds whole."""
        ...

    def spread(self, model: JointModel) -> None:
        """Make ``model``'s steps data-parallel over the processes."""
        ...

    def bytes_per_step(self) -> dict[str, float]:
        """Bytes this process put into collectives per training step, by kind (empty:
        one process)."""
        ...

    def check_replicas(self, model: JointModel) -> None:
        """RuntimeError unless every process's ``model`` holds the same weights."""
        ...


@dataclass
class SingleProcess:
    """One process: the plain path."""

    rank: int = 0
    size: int = 1

    @property
    def leader(self) -> bool:
        return True

    def split(self, batch: ExampleBatch, share: float) -> tuple[ExampleBatch, ExampleBatch]:
        return split_by_time(batch, share)

    def total(self, values: F64Array) -> F64Array:
        return values

    def most(self, value: int) -> int:
        return value

    def gather(self, item: Gathered) -> list[Gathered]:
        return [item]

    def shard(self, batch: ExampleBatch) -> ExampleBatch:
        return batch

    def spread(self, model: JointModel) -> None:
        return None

    def bytes_per_step(self) -> dict[str, float]:
        return {}

    def check_replicas(self, model: JointModel) -> None:
        return None


@dataclass
class CommunicationCounter:
    """Bytes this process put into collectives (its payload, not the wire's framing)."""

    dense_bytes: int = 0
    sparse_bytes: int = 0
    other_bytes: int = 0
    steps: int = 0

    def per_step(self) -> dict[str, float]:
        """Bytes per step: dense (DDP's all-reduce), sparse (the tables' touched rows),
        other (post keys, split times) and their total."""
        parts = {"dense": self.dense_bytes, "sparse": self.sparse_bytes}
        parts["other"] = self.other_bytes
        parts["total"] = sum(parts.values())
        return {
            name: value / self.steps if self.steps else math.nan for name, value in parts.items()
        }


@dataclass
class ProcessGroup:
    """The processes of one ``torchrun`` launch, joined in a ``torch.distributed`` group."""

    rank: int
    size: int
    backend: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # collectives'
    traffic: CommunicationCounter = field(default_factory=CommunicationCounter)

    @classmethod
    def from_environment(cls, backend: str = "gloo") -> ProcessGroup:
        """Join the group ``torchrun`` describes in RANK, WORLD_SIZE and MASTER_ADDR
        (NCCL's collectives run on this process's GPU, gloo's on the CPU)."""
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        device = torch.device("cpu")
        if backend == "nccl":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        return cls(dist.get_rank(), dist.get_world_size(), backend, device)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def split(self, batch: ExampleBatch, share: float) -> tuple[ExampleBatch, ExampleBatch]:
        if not 0.0 < share < 1.0:
            raise ValueError(f"validation share must be in (0, 1), got {share}")
        times = self._all_gather_array(batch.decision_time_ms.astype(np.int64))
        count = times.size
        cut = round(count * (1.0 - share))
        if cut <= 0 or cut >= count:
            raise ValueError(f"{count} examples are too few for a validation split")
        cut_ms = int(np.sort(times, kind="stable")[cut])
        later = batch.decision_time_ms >= cut_ms
        return (
            batch.take(np.flatnonzero(~later).astype(np.int64)),
            batch.take(np.flatnonzero(later).astype(np.int64)),
        )

    def total(self, values: F64Array) -> F64Array:
        tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
        tensor = tensor.to(self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        summed: F64Array = tensor.cpu().numpy()
        return summed

    def most(self, value: int) -> int:
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def gather(self, item: Gathered) -> list[Gathered]:
        gathered: list[Gathered] | None = [item] * self.size if self.leader else None
        dist.gather_object(item, gathered, dst=0)
        return list(gathered) if gathered is not None else []

    def shard(self, batch: ExampleBatch) -> ExampleBatch:
        return batch.take(np.arange(self.rank, len(batch), self.size, dtype=np.int64))

    def spread(self, model: JointModel) -> None:
        if model.parallel is None:
            DataParallelStep(self).install(model)

    def bytes_per_step(self) -> dict[str, float]:
        return self.traffic.per_step()

    def check_replicas(self, model: JointModel) -> None:
        """Every process's ``model`` holds the same weights (DDP keeps the dense layers
        equal; the gathered sparse gradients keep the tables equal): one checksum per
        process compared, RuntimeError naming the spread where they differ."""
        checksum = sum(float(p.detach().double().sum()) for p in model.losses.parameters())
        checksums = self._all_gather_array(np.array([checksum], dtype=np.float64)).astype(
            np.float64
        )
        spread, largest = float(np.ptp(checksums)), float(np.abs(checksums).max())
        if spread > 1e-6 * max(1.0, largest):
            raise RuntimeError(f"the model replicas diverged: weight checksums {checksums}")

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def _all_gather_array(self, values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """Every process's ``values`` (any lengths), concatenated in rank order."""
        self.traffic.other_bytes += values.nbytes
        parts = all_gather_ragged(torch.from_numpy(values).to(self.device))
        return np.concatenate([part.cpu().numpy() for part in parts])


def all_gather_ragged(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``tensor`` in rank order (same dtype and trailing shape, any first
    dimension: the lengths are gathered first and each tensor padded to the longest)."""
    size = dist.get_world_size()
    length = torch.tensor([tensor.shape[0]], dtype=torch.int64, device=tensor.device)
    lengths = [torch.zeros_like(length) for _ in range(size)]
    dist.all_gather(lengths, length)
    counts = [int(item.item()) for item in lengths]
    padded = torch.zeros((max(counts), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.zeros_like(padded) for _ in range(size)]
    dist.all_gather(gathered, padded)
    return [item[:count] for item, count in zip(gathered, counts, strict=True)]


class DataParallelStep:
    """One training step spread over the group: DDP for the dense layers, gathered
    sparse gradients for the id tables, logQ over every process's posts."""

    def __init__(self, group: ProcessGroup) -> None:
        self.group = group
        self._batch_rows = 0  # this step's local batch (set by log_q, before the forward)

    def install(self, model: JointModel) -> None:
        tables = {id(table) for table in model.sparse_parameters}
        ignored = [name for name, p in model.losses.named_parameters() if id(p) in tables]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(  # type: ignore[no-untyped-call]
            model.losses, ignored
        )
        on_gpu = model.device.type == "cuda"
        model.loss_module = DistributedDataParallel(
            model.losses, device_ids=[model.device] if on_gpu else None
        )
        dense = [p for p in model.losses.parameters() if id(p) not in tables]
        self.dense_bytes = sum(p.numel() * p.element_size() for p in dense)
        model.parallel = self

    def log_q(self, model: JointModel, post_keys: IntArray) -> torch.Tensor:
        self.group.traffic.other_bytes += post_keys.nbytes
        # Every process steps on a local batch of the same size (the trainer wraps the
        # smaller shares around): one plain all-gather, no lengths first.
        keys = torch.from_numpy(post_keys).to(self.group.device)
        shares = [torch.empty_like(keys) for _ in range(self.group.size)]
        dist.all_gather(shares, keys)
        everyone = torch.cat(shares).cpu().numpy()
        log_q = model.frequency.observe(everyone)
        self._batch_rows = post_keys.size
        start = self.group.rank * post_keys.size
        return log_q[start : start + post_keys.size]

    def after_backward(self, model: JointModel) -> None:
        """Sum the tables' sparse gradients over the processes: every table's touched
        rows (numbered across the tables) and values travel in one all-gather each."""
        traffic = self.group.traffic
        traffic.steps += 1
        traffic.dense_bytes += self.dense_bytes  # DDP's all-reduce of every dense gradient
        tables = model.sparse_parameters
        widths = {table.shape[1] for table in tables}
        if len(widths) != 1:
            for table in tables:  # tables of different widths: one gather each
                self._sum_gradients([table])
            return
        self._sum_gradients(tables)

    def _sum_gradients(self, tables: list[torch.Tensor]) -> None:
        offsets = np.cumsum([0] + [table.shape[0] for table in tables])
        touched = [_touched_rows(table) for table in tables]
        rows = torch.cat(
            [found[0] + int(offset) for found, offset in zip(touched, offsets, strict=False)]
        )
        values = torch.cat([found[1] for found in touched])
        self.group.traffic.sparse_bytes += _bytes(rows) + _bytes(values)
        # A batch touches at most its row count in each table: pad to that bound (rows -1)
        # so every process's tensors have one size, and skip gathering the lengths. Row
        # numbers below 2^24 are exact in float32: they ride as the values' last column,
        # one all-gather for both.
        if int(offsets[-1]) >= EXACT_FLOAT_ROWS:
            raise ValueError(f"{int(offsets[-1]):,} table rows: too many to pack (2^24)")
        bound = self._batch_rows * len(tables)
        packed = values.new_zeros((bound, values.shape[1] + 1))
        packed[:, -1] = -1.0
        packed[: rows.shape[0], :-1] = values
        packed[: rows.shape[0], -1] = rows.to(values.dtype)
        every = [torch.empty_like(packed) for _ in range(self.group.size)]
        dist.all_gather(every, packed)
        gathered = torch.cat(every)
        all_rows = gathered[:, -1].to(torch.int64)
        all_values = gathered[:, :-1] / self.group.size
        for number, table in enumerate(tables):
            low, high = int(offsets[number]), int(offsets[number + 1])
            mine = (all_rows >= low) & (all_rows < high)  # padding (-1) is no table's
            table.grad = torch.sparse_coo_tensor(
                (all_rows[mine] - low).unsqueeze(0),
                all_values[mine],
                table.shape,
                check_invariants=False,  # rows from coalesced gradients, in range
            ).coalesce()


def _touched_rows(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row numbers, gradient rows) of a table's sparse gradient (none: empty)."""
    grad = table.grad
    if grad is None:
        return (
            torch.zeros(0, dtype=torch.int64, device=table.device),
            torch.zeros((0, table.shape[1]), device=table.device),
        )
    grad = grad.coalesce()
    return grad.indices()[0].contiguous(), grad.values().contiguous()


def _bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def gathered_batch(workers: Workers, batch: ExampleBatch) -> ExampleBatch | None:
    """Every process's ``batch`` as one, on the leader (None elsewhere). Post rows mean
    something in one process only: each share travels with its post ids, and the
    leader interns them into its own rows."""
    ids = LEARNER_POST_IDS.ids(batch.posts.post_index)
    shares = [
        replace(share, posts=replace(share.posts, post_index=LEARNER_POST_IDS.rows(share_ids)))
        for share, share_ids in workers.gather((batch, ids))
        if len(share)
    ]
    return concat(shares) if shares else None


def launched_by_torchrun() -> bool:
    """Whether this process is one of a ``torchrun`` launch's workers."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ
