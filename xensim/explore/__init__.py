"""The race explorer: scenarios of concurrent CPUs, run one atomic step at a
time under a scheduler (DFS with DPOR, PCT, random), and their violations.
"""

from ._explore import (
    Step, step_word, Violation, word_value, independent, Execution, round_robin, random_chooser,
    replay_chooser, pct_chooser, ExploreResult, explore_dfs, run_sampling,
)
from ._scenario import (
    Scenario, load_scenario, World, describe_cas, lost_cas, check_step, explore, replay,
    format_schedule, parse_schedule, summarise_trace,
)

__all__ = [
    "Execution", "ExploreResult", "Scenario", "Step", "Violation", "World", "check_step",
    "describe_cas", "explore", "explore_dfs", "format_schedule", "independent", "load_scenario",
    "lost_cas", "parse_schedule", "pct_chooser", "random_chooser", "replay", "replay_chooser",
    "round_robin", "run_sampling", "step_word", "summarise_trace", "word_value",
]
