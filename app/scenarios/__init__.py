"""The tutorial's examples, ported to Trio: one module each, and the registry that lists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from app.scenarios import blocking, generators, many_tasks, random_sleep, spawn_join, switch
from app.scenarios.base import ScenarioFn
from app.scenarios.catalog import ScenarioInfo


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario: what the page and ``demo`` show of it, and the code that runs."""

    info: ScenarioInfo
    run: ScenarioFn


#: Every scenario by name, in the tutorial's order.
SCENARIOS: Final = {
    m.INFO.name: Scenario(m.INFO, m.run)
    for m in (generators, switch, spawn_join, random_sleep, blocking, many_tasks)
}
