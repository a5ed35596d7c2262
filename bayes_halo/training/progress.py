"""The training progress bar: a tqdm whose speed and time estimate count only the steps after the first few.

The first steps of a run are slow for reasons that do not recur (``torch.compile`` of the update,
allocator and cache warm-up), so an estimate that includes them is wrong by orders of magnitude
at the start.  Until ``warmup`` steps have passed the bar shows ``estimating``; afterwards its
rate is ``(n - n_0) / (t - t_0)`` from the first display after the warm-up.
"""
from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

#: steps before the bar shows a speed and a time estimate
WARMUP_STEPS = 20
WARMING_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, estimating{postfix}]"


class Progress(tqdm):
    """``tqdm`` with a time estimate from the steps after the first ``warmup`` only."""

    def __init__(self, *args: Any, warmup: int = WARMUP_STEPS, **kwargs: Any) -> None:
        self.warm_after = kwargs.get("initial", 0) + warmup  # set first: tqdm displays from its __init__
        self.warm_start: tuple[int, float] | None = None
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        """tqdm's fields, with the rate measured after the warm-up (and none before it)."""
        fields = super().format_dict
        if self.disable:
            return fields
        if self.n < self.warm_after:
            return {**fields, "rate": None, "bar_format": WARMING_FORMAT}
        now = self._time()
        if self.warm_start is None:
            self.warm_start = (self.n, now)
        steps, seconds = self.n - self.warm_start[0], now - self.warm_start[1]
        if steps <= 0 or seconds <= 0:
            return {**fields, "rate": None, "bar_format": WARMING_FORMAT}
        return {**fields, "rate": steps / seconds}
