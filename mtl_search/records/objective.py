"""What a study optimises, as stored on the study and read back by every later command."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Objective:
    """One thing the study optimises: a task's validation metric, or a cost of the network.

    ``kind`` is ``"task"`` (``metric`` of task ``task``) or ``"cost"`` (``metric`` names a
    cost from :mod:`mtl_search.search.costs`, ``task`` is empty).
    """

    task: str
    metric: str
    direction: str
    kind: str = "task"

    @property
    def name(self) -> str:
        return self.metric if self.kind == "cost" else f"{self.task}/{self.metric}"
