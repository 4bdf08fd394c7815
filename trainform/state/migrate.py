"""Moving state between backends (``trainform init -migrate-state``): everything a store
holds, verified.

:func:`copy_all` copies the managed state (lineage and serial kept), outputs, run history,
metrics, sweeps, apply history, state versions and the fingerprint key (so a run's
fingerprint, which hashes its secrets under that key, is the same after the move and nothing
is resubmitted) in one transaction of the destination, and compares a digest of every
table on both sides before and after it commits.
"""

from __future__ import annotations

from trainform.errors import StateError
from trainform.state.store import TABLES, StateStore, digest_contents


def copy_all(src: StateStore, dst: StateStore, force: bool = False) -> dict[str, int]:
    """Copy everything ``src`` holds into ``dst``, replacing what ``dst`` held (refused
    with StateError unless ``dst`` is empty or ``force``). Returns the number of rows copied
    per table. Raises StateError if the copy does not read back equal to the source: then
    the destination is as it was. Both stores should be locked by the caller."""
    if not force and not dst.is_empty():
        lineage, serial = dst.lineage_serial()
        raise StateError(
            f"{dst.describe()} already holds state (lineage {lineage}, serial {serial}); "
            "migrating would replace it. Move it away first, or force the migration"
        )
    contents = src.contents()
    dst.replace_contents(contents)  # verified inside its transaction
    wanted, there, now_src = digest_contents(contents), dst.digests(), src.digests()
    differ = sorted(t for t in wanted if there.get(t) != wanted[t] or now_src.get(t) != wanted[t])
    if differ:
        raise StateError(
            f"copying state from {src.describe()} to {dst.describe()}: "
            f"{', '.join(differ)} differ after the copy (did another command change the "
            "state meanwhile? Lock both, then migrate again)"
        )
    return {table: len(contents[table]) for table in TABLES}
