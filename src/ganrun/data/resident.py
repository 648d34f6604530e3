"""A data split held as one uint8 tensor on the training device, sampled without a DataLoader."""

from __future__ import annotations

import copy
import zlib

import torch


class ResidentSplit:
    """Images live on ``device`` as uint8; batches are drawn by index and scaled there.

    Batches walk through a random permutation (one epoch), then draw a new one, as a shuffling
    DataLoader would, without workers or a host-to-device copy per step. The permutation comes
    from this split's own generator, so its state can be saved and restored for exact resume.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None,
        value_range: tuple[float, float],
        device: torch.device,
        seed: int = 0,
        intensities: torch.Tensor | None = None,
    ) -> None:
        self.images = images.to(device)
        # data.binarize=dynamic: each batch is a fresh Bernoulli draw of these uint8 intensities.
        self.intensities = None if intensities is None else intensities.to(device)
        self.labels = None if labels is None else labels.to(device=device, dtype=torch.long)
        lo, hi = value_range
        self.scale = (hi - lo) / 255.0
        self.offset = lo
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.moved = False  # restored from a state of another device kind (load_state_dict)
        self._order = torch.empty(0, dtype=torch.long, device=device)
        self._pos = 0

    def __len__(self) -> int:
        return self.images.shape[0]

    def sharded(self, rank: int, world_size: int) -> ResidentSplit:
        """One process's share to train on: every ``world_size``-th example from ``rank`` on.

        A new split with a generator of its own, whose tensors are views of this one's; this
        split stays whole for what reads all of it (evaluation, the data-set classifier)."""
        part = copy.copy(self)
        part.images = self.images[rank::world_size]
        if self.labels is not None:
            part.labels = self.labels[rank::world_size]
        if self.intensities is not None:
            part.intensities = self.intensities[rank::world_size]
        part.generator = torch.Generator(device=self.device)
        part.seed(0)
        return part

    def scaled(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 in this split's value range."""
        return images.float().mul_(self.scale).add_(self.offset)

    def mean(self) -> torch.Tensor:
        """The mean example, float32 in this split's value range."""
        # Chunked, so a large split never exists as float all at once; float32 chunk sums of
        # uint8 are exact, and MPS has no float64.
        total = torch.zeros(self.images.shape[1:], dtype=torch.float32, device=self.device)
        for chunk in self.images.split(4096):
            total += chunk.sum(dim=0, dtype=torch.float32)
        return total.div_(len(self)).mul_(self.scale).add_(self.offset)

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long, device=self.device)
        self._pos = 0

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._pos + batch_size > self._order.numel():
            self._order = torch.randperm(len(self), generator=self.generator, device=self.device)
            self._pos = 0
        index = self._order[self._pos : self._pos + batch_size]
        self._pos += batch_size
        labels = None if self.labels is None else self.labels[index]
        if self.intensities is None:
            return self.scaled(self.images[index]), labels
        # Drawn from the split's own generator, so a resumed run draws the same pixels.
        p = self.intensities[index].float().div_(255)
        return self.scaled(torch.bernoulli(p, generator=self.generator).mul_(255)), labels

    def all(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every image of the split, scaled (for evaluation)."""
        return self.scaled(self.images), self.labels

    def pixels(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """The stored uint8 images (all, or those at ``index``), on the CPU."""
        images = self.images if index is None else self.images[index.to(self.images.device)]
        return images.cpu()

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self._order, "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        """Restores the sampler. A state saved on another kind of device (a CUDA generator's
        state differs in size from a CPU one's) cannot be loaded: the current epoch's order
        goes on, and the generator is seeded from that order and position instead
        (:attr:`moved` says so), so later epochs differ from the run that did not move."""
        saved = state["generator"].cpu()
        self._order = state["order"].to(self.device)
        self._pos = int(state["pos"])
        self.moved = saved.numel() != self.generator.get_state().numel()
        if self.moved:
            order = self._order.cpu().numpy().tobytes()
            self.generator.manual_seed(zlib.crc32(order) * 1_000_003 + self._pos)
        else:
            self.generator.set_state(saved)


class PointSplit(ResidentSplit):
    """Float points (N, D) on the device, returned as they are: their scale is the data's own.

    Sampling, seeding and the state dict are :class:`ResidentSplit`'s, so resume works the same.
    """

    def __init__(
        self,
        points: torch.Tensor,
        labels: torch.Tensor | None,
        device: torch.device,
        seed: int = 0,
    ) -> None:
        super().__init__(points.to(torch.float32), labels, (0.0, 255.0), device, seed)

    def scaled(self, images: torch.Tensor) -> torch.Tensor:
        return images.clone()
