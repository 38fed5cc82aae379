"""Declarative automation of the embedding and index assets, gated by upstream blocking checks.

``item_embeddings`` (per document): eager, i.e. after its document's pages/segments update (or when
the document is new), once nothing upstream is missing or running, and only while every blocking
check of those upstream partitions (the catalog contracts) has passed.

``search_index`` (one for all documents) cannot use ``eager()``: a partitioned dependency counts as
missing while any document is unembedded (a document whose contract fails stays unembedded on
purpose), which would stall the index for everyone. It rebuilds after any embedding partition
updates, waits while embeddings are requested or running (so one tick's documents land in one
rebuild), and holds off while any embedding partition's blocking check (the embeddings contract)
is failing, so a bad batch never reaches the published index.
"""

from __future__ import annotations

import dagster as dg

AC = dg.AutomationCondition

EMBEDDINGS_AUTOMATION = (AC.eager() & AC.all_deps_blocking_checks_passed()).with_label(
    "eager, upstream blocking checks passed"
)

_dep_check_failing = AC.any_deps_match(AC.any_checks_match(AC.check_failed(), blocking_only=True)).with_label(
    "any_dep_blocking_check_failed"
)
INDEX_AUTOMATION = (
    (
        AC.newly_missing() | AC.any_deps_match(AC.newly_updated()).with_label("any_dep_newly_updated")
    ).since_last_handled()
    & ~AC.any_deps_match(AC.will_be_requested() | AC.in_progress()).with_label(
        "any_dep_requested_or_in_progress"
    )
    & ~AC.in_progress()
    & ~_dep_check_failing
).with_label("rebuild after embeddings update, blocking checks passed")
