"""The hostile-guest fuzzer: random hypercalls from several PV guests, checked after every call.

A small machine (about 110 MiB of RAM with a hole and a ragged end) runs a few
PV guests. Each is set up the way a kernel sets itself up (2 MiB and 4 KiB
extents, an L4/L3 tree built, pinned and loaded, a few mappings and a mark: all
through xensim.guest's GuestKernel), then the guests throw random
hypercalls at Xen, valid and invalid: entries at every level pointing at their
own, foreign, free, hole and out-of-range frames, PSE entries with odd flags,
plain writes, MMU_MACHPHYS_UPDATE, pins, unpins, NEW_BASEPTR, MARK/UNMARK of
anything, batches that fail half way, ballooning of mapped frames,
update_va_mapping; dom0 destroys guests with live mappings and creates new
ones. Generation is biased towards calls that succeed, so that the invalid
ones meet interesting states.

Every action is a hypercall (or dom0's create/destroy_domain): the fuzzer reads
state only to choose targets (what a hostile guest can know: its frames, its
tables and their contents, the machine's M2P) and to check. After **every**
call it checks (see docs/fuzzing.md):

* ``crash``: the call raised (a RefcountBug, an IndexError, ...): never allowed;
* ``unchanged``: a call that did nothing (rc < 0, or nothing done) left the
  machine bit for bit as it was;
* ``batch``: a call of several requests (a batch, several extents) equals the
  same requests issued one by one, in order: the same number done, the same
  errno from the first failing request, which alone leaves the machine
  unchanged, and the same final machine. This is the "failed half way" check,
  and it also checks the vectorised PSE batch against in-order processing.
  Both are checked with an *undo journal* (:class:`CallJournal`): a shadow of
  the machine and the locations each call wrote; a batch's result is captured,
  the machine put back and the requests issued one by one on it;
* ``audit``: the auditor is clean;
* ``isolation``: no live table holds an entry to a frame its owner does not own
  (PSE entries: all 512 frames); base pointers, pins and marks are the domain's
  own frames;
* ``xen-bug``: the machine recorded a faithful-mode violation (``m.violations``);
* ``zombie``: a guest destroyed by dom0 did not go away (its frames are still
  referenced from elsewhere);
* ``teardown``: at the end every guest is destroyed and the heap holds all RAM
  again, exactly as a fresh heap, and the auditor is clean.

A violation ends the episode; :func:`minimise` delta-debugs the episode's call
list (replaying from scratch on a fresh machine) down to a minimal sequence
with the same signature, and :func:`to_script_yaml` writes it as a config whose
``script`` workload has the raw hypercall ``ops`` (xensim.config's HypercallOp), which
``xensim run`` replays with every check (:func:`replay_config`).

Modules: _setup (the machine), _ops (one call), _checks, _runner (the checked
executor), _guest and _generator (the Fuzzer), _minimise, _reproducer, _campaign, _split
(a campaign's episodes on an engine's workers).
"""

from ._campaign import (
    Campaign, Episode, Finding, campaign, campaign_done, episode_budget, episode_seed,
    finding_yaml, keep_going, merge_episode, minimise_finding, recording, report, run_episode,
)
from ._checks import (
    FuzzViolation, disagreement, heap_is_full, isolation, isolation_since, sound_state,
)
from ._journal import CallJournal, Capture, same_small, small_state
from ._generator import (
    ACTIONS, Fuzzer,
)
from ._guest import (
    FuzzGuest, FuzzKernel,
)
from ._minimise import (
    Trial, minimise, minimise_steps, run_steps, trial_result,
)
from ._ops import (
    HYPERCALL_OPS, CallResult, execute, op_label, singles,
)
from ._reproducer import (
    Replay, load_script, replay, replay_config, script_ops, to_script_yaml,
)
from ._runner import (
    FuzzRunner, replay_ops,
)
from ._setup import (
    AUDIT_MODES, DEFAULT_RAM, Setup,
)
from ._xtf import (
    XTF_TESTS, xtf_config, xtf_poc,
)
from ._split import (
    EpisodeTask, TrialTask, run_campaign_task, split_campaign,
)

__all__ = [
    "ACTIONS", "AUDIT_MODES", "CallJournal", "CallResult", "Capture", "Campaign", "DEFAULT_RAM", "Episode", "EpisodeTask",
    "Finding", "FuzzGuest", "FuzzKernel", "FuzzRunner", "FuzzViolation", "Fuzzer",
    "HYPERCALL_OPS", "Replay", "Setup", "campaign", "campaign_done",
    "disagreement", "episode_budget", "episode_seed", "execute", "finding_yaml", "heap_is_full",
    "isolation", "isolation_since", "keep_going", "load_script", "merge_episode", "minimise",
    "minimise_finding", "minimise_steps", "recording", "run_steps", "Trial", "trial_result", "TrialTask", "op_label", "replay", "replay_config", "replay_ops", "report",
    "run_campaign_task", "run_episode", "same_small", "script_ops", "singles", "small_state", "sound_state",
    "split_campaign", "to_script_yaml", "XTF_TESTS", "xtf_config", "xtf_poc",
]
