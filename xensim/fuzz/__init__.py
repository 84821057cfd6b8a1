"""The hostile-guest fuzzer: random valid and invalid hypercalls, the machine
checked after every call, minimised reproducers.
"""

from ._fuzz import (
    FuzzViolation, isolation, Fuzzer, Episode, run_episode, replay_ops, minimise,
    to_script_yaml, load_script, Replay, is_reproducer, replay, Finding, Campaign, keep_going,
    campaign, finding_yaml, reproducer_path, report, bad_arguments,
)

__all__ = [
    "Campaign", "Episode", "Finding", "FuzzViolation", "Fuzzer", "Replay", "bad_arguments",
    "campaign", "finding_yaml", "is_reproducer", "isolation", "keep_going", "load_script",
    "minimise", "replay", "replay_ops", "report", "reproducer_path", "run_episode",
    "to_script_yaml",
]
