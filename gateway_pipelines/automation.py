"""The platform's automation vocabulary: each condition is composed from Dagster's and labelled, so
the UI's automation tab says in words why an asset was, or was not, requested.

Sources (tmdb_titles) are started by sensors and schedules; everything downstream follows its
parents through these conditions, evaluated by the one automation sensor in `definitions.py`.
"""

from __future__ import annotations

import dagster as dg

AC = dg.AutomationCondition


def on_missing_or_new_code() -> dg.AutomationCondition:
    """For the schema: build it on a fresh warehouse, and again when the migrations change.

    on_missing() alone ignores what is already missing when the condition is first evaluated (a
    fresh deployment), so the first look at a missing schema counts too.
    """
    return (
        (AC.missing() & AC.initial_evaluation()).with_label("missing at first look")
        | AC.on_missing()
        | AC.code_version_changed()
    ).with_label("missing, or migrations changed")


def after_parents() -> dg.AutomationCondition:
    """An unpartitioned asset whose parents are unpartitioned: Dagster's eager, and only once every
    parent's blocking checks have passed (a failed gate in another run still holds it back)."""
    return (AC.eager() & AC.all_deps_blocking_checks_passed()).with_label("after parents, gates passed")


def after_partition_update() -> dg.AutomationCondition:
    """A daily-partitioned child of a daily-partitioned parent: each partition follows its parent's.

    Unlike eager() it is not limited to the latest day, because an export lands in its own day and
    a backfill updates old days; nor does it request never-built days (no `newly_missing`), which
    would be the whole partition range on a fresh instance.
    """
    return (
        AC.any_deps_updated().since_last_handled().with_label("parent partition updated since last run")
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        & AC.all_deps_blocking_checks_passed()
    ).with_label("after its partition of the parent")


def after_any_partition_of(parents: dg.AssetSelection, label: str) -> dg.AutomationCondition:
    """A whole-table child of a partitioned parent: rebuild once after any parent partition updates.

    It waits while any parent partition is in progress, so a backfill of many days leads to one
    rebuild at its end. Only updates of `parents` count, because "missing" on a partitioned parent
    means "some day never built", which is always true.
    """
    return (
        AC.any_deps_match(AC.newly_updated() | AC.will_be_requested())
        .allow(parents)
        .since_last_handled()
        .with_label(label)
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label(f"after any update of {label.split(' ')[0]}")


def serving_index(verify_cron: str = "0 4 * * *") -> dg.AutomationCondition:
    """What search serves: after its parents, and re-verified daily (recall, index health), which is
    what its freshness policy measures."""
    return (
        after_parents()
        | (AC.cron_tick_passed(verify_cron, "UTC").since_last_handled() & ~AC.in_progress()).with_label(
            f"daily verification ({verify_cron} UTC)"
        )
    ).with_label("after parents, or daily verification")
