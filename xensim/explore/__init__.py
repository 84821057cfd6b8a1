"""The race explorer: scenarios of concurrent CPUs, run one atomic step at a
time under a scheduler (DFS with DPOR, PCT, random), and their violations.
(Scenario files are loaded by xensim.config; ``Scenario`` and ``load_scenario``
are re-exported here for the explorer's users.)
"""

from ._explore import (
    Step, step_word, Violation, word_value, independent, Execution, Preempted, round_robin,
    random_chooser,
    replay_chooser, pct_chooser, ExploreResult, explore_dfs, run_sampling,
)
from ..config import (
    Scenario, load_scenario,
)
from ._scenario import (
    Interrupted, Runner, World, describe_cas, lost_cas, check_step, explore, replay,
    format_schedule, parse_schedule, summarise_trace,
)

__all__ = [
    "Execution", "ExploreResult", "Interrupted", "Preempted", "Runner", "Scenario", "Step", "Violation",
    "World", "check_step", "describe_cas", "explore", "explore_dfs", "format_schedule",
    "independent", "load_scenario", "lost_cas", "parse_schedule", "pct_chooser",
    "random_chooser", "replay", "replay_chooser", "round_robin", "run_sampling", "step_word",
    "summarise_trace", "word_value",
]
