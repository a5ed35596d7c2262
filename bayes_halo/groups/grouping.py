"""Groups of weights that live or die together: :class:`Slices` of tensors, bundled into a :class:`Grouping`.

A grouping of ``G`` groups has one or several members; member ``m`` is a tensor of shape
``shape`` sliced along ``dim``, group ``g`` owning the entries ``index[g]`` (``k`` of them) along
that dim, i.e. ``k * prod(shape) / shape[dim]`` numbers.  The group's vector ``w_g`` is the
concatenation of its slices over the members, ``d`` numbers in all, and the grouping's matrix is
``W = [w_1; ...; w_G]`` (``[G, d]``, rows = groups): the value a group prior sees.

Rules, checked on construction: every member's index covers its dim exactly once (each entry of
each member tensor belongs to exactly one group), all members have the same ``G``, and a tensor is
a member at most once.  :func:`check_groupings` adds that a tensor belongs to at most one grouping
of a network (non-overlapping groups: the prior factorises over groups).

Where a member's index is ``arange(G * k).reshape(G, k)`` (a whole tensor sliced in order, the
usual case), its rows are a reshape of ``tensor.movedim(dim, 0)`` (a view for ``dim = 0``) and
the inverse is a reshape too; other indices gather rows and scatter them back with the inverse
permutation (both differentiable).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import ConfigError

#: what a group is, by the kinds the builders produce
KINDS = ("channel", "input-unit", "unit", "head", "mlp-unit", "bn-scale")


@dataclass(frozen=True, eq=False)
class Slices:
    """One member of a grouping: tensor ``name`` (a ``named_parameters`` name) of ``shape``, sliced along ``dim``.

    ``index`` is int64 ``[G, k]``: group ``g`` owns the entries ``index[g]`` along ``dim``.
    """

    name: str
    dim: int
    index: Tensor
    shape: tuple[int, ...]
    _inverse: Tensor | None = field(init=False, repr=False)
    _on_device: dict[torch.device, tuple[Tensor, Tensor]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        object.__setattr__(self, "shape", shape)
        if not -len(shape) <= self.dim < len(shape):
            raise ConfigError(f"grouping member {self.name!r}: dim {self.dim} out of range for shape {shape}")
        object.__setattr__(self, "dim", self.dim % len(shape))
        index = torch.as_tensor(self.index, dtype=torch.int64, device="cpu")
        if index.dim() != 2 or index.numel() == 0:
            raise ConfigError(f"grouping member {self.name!r}: index must be a non-empty [G, k] matrix, "
                              f"got shape {tuple(index.shape)}")
        flat = index.reshape(-1)
        size = shape[self.dim]
        if flat.numel() != size or not torch.equal(flat.sort().values, torch.arange(size)):
            raise ConfigError(f"grouping member {self.name!r}: its index must cover dim {self.dim} "
                              f"(size {size}) exactly once")
        object.__setattr__(self, "index", index)
        ordered = torch.equal(flat, torch.arange(size))
        object.__setattr__(self, "_inverse", None if ordered else flat.argsort())

    @property
    def n_groups(self) -> int:
        """``G``."""
        return self.index.shape[0]

    @property
    def width(self) -> int:
        """Numbers per group from this member: ``k * prod(shape) / shape[dim]``."""
        return self.index.shape[1] * math.prod(self.shape) // self.shape[self.dim]

    def rows(self, tensor: Tensor) -> Tensor:
        """``[G, width]``: row ``g`` holds the entries ``index[g]`` along ``dim`` (in index order, then the rest)."""
        moved = tensor.movedim(self.dim, 0)
        if self._inverse is not None:
            moved = moved.index_select(0, self._indices(tensor.device)[0])
        return moved.reshape(self.n_groups, self.width)

    def unrows(self, rows: Tensor) -> Tensor:
        """Inverse of :meth:`rows`: the member-shaped tensor whose rows are ``rows``."""
        moved_shape = (self.shape[self.dim], *self.shape[:self.dim], *self.shape[self.dim + 1:])
        moved = rows.reshape(moved_shape)
        if self._inverse is not None:
            moved = moved.index_select(0, self._indices(rows.device)[1])
        return moved.movedim(0, self.dim)

    def _indices(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """(flat index, inverse permutation) on ``device``, copied there once."""
        if device not in self._on_device:
            self._on_device[device] = (self.index.reshape(-1).to(device), self._inverse.to(device))
        return self._on_device[device]


def along(name: str, shape: Sequence[int], dim: int, per_group: int = 1) -> Slices:
    """Tensor ``name`` cut along ``dim`` into consecutive blocks of ``per_group`` entries (one per group)."""
    size = int(shape[dim])
    if per_group < 1 or size % per_group:
        raise ConfigError(f"cannot cut dim {dim} of {name!r} (size {size}) into blocks of {per_group}")
    return Slices(name, dim, torch.arange(size).reshape(size // per_group, per_group), tuple(shape))


@dataclass(frozen=True, eq=False)
class Grouping:
    """``G`` groups, each a set of slices of one or several tensors that live or die together.

    ``name`` is its site name in a module (e.g. ``"conv1:channels"``), ``kind`` one of :data:`KINDS`.
    """

    name: str
    kind: str
    members: tuple[Slices, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        if self.kind not in KINDS:
            raise ConfigError(f"grouping {self.name!r}: unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if not self.members:
            raise ConfigError(f"grouping {self.name!r} has no members")
        counts = {m.n_groups for m in self.members}
        if len(counts) != 1:
            raise ConfigError(f"grouping {self.name!r}: members disagree on the number of groups {sorted(counts)}")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ConfigError(f"grouping {self.name!r}: a tensor is a member twice ({names})")

    @property
    def n_groups(self) -> int:
        """``G``, the number of groups."""
        return self.members[0].n_groups

    @property
    def size(self) -> int:
        """``d``, the numbers per group (summed over the members)."""
        return sum(m.width for m in self.members)

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """The member tensors' names."""
        return tuple(m.name for m in self.members)

    def matrix(self, tensors: Mapping[str, Tensor]) -> Tensor:
        """``W``, ``[G, d]``: row ``g`` is ``w_g``, the members' slices concatenated (member order)."""
        rows = [m.rows(tensors[m.name]) for m in self.members]
        return rows[0] if len(rows) == 1 else torch.cat(rows, dim=1)

    def scatter(self, matrix: Tensor) -> dict[str, Tensor]:
        """Member-shaped tensors from a ``[G, d]`` matrix (the inverse of :meth:`matrix`; every entry covered)."""
        blocks = matrix.split([m.width for m in self.members], dim=1)
        return {m.name: m.unrows(block) for m, block in zip(self.members, blocks)}

    def norms(self, tensors: Mapping[str, Tensor]) -> Tensor:
        """``||w_g||``, ``[G]``: the Euclidean norm of each group."""
        return torch.linalg.vector_norm(self.matrix(tensors), dim=1)


def check_groupings(groupings: Sequence[Grouping], tensors: Mapping[str, Tensor]) -> None:
    """Raise ConfigError unless the groupings have unique names, are disjoint and match ``tensors``' shapes."""
    names = [g.name for g in groupings]
    if len(set(names)) != len(names):
        raise ConfigError(f"grouping names must be unique, got {names}")
    owner: dict[str, str] = {}
    for grouping in groupings:
        for member in grouping.members:
            if member.name in owner:
                raise ConfigError(f"tensor {member.name!r} is in two groupings ({owner[member.name]!r} and "
                                  f"{grouping.name!r}); groups must not overlap")
            owner[member.name] = grouping.name
            if member.name not in tensors:
                raise ConfigError(f"grouping {grouping.name!r}: the network has no parameter {member.name!r}")
            if tuple(tensors[member.name].shape) != member.shape:
                raise ConfigError(f"grouping {grouping.name!r}: {member.name!r} has shape "
                                  f"{tuple(tensors[member.name].shape)}, the grouping expects {member.shape}")
