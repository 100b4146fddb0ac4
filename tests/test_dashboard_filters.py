"""The Sessions page's filter form becomes the sessions API's `q`: a value stays one term
whatever it holds, form times are UTC, problems come back named by the form's fields, and only
those who see everyone may pick a user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from aibridged.dashboard.filters import read_filters


def test_values_stay_one_term_whatever_quotes_or_backslashes_they_hold() -> None:
    tricky = 'gpt "4o" \\ x\' OR 1=1'
    found = read_filters({"model": tricky, "client": "Claude Code"}, may_pick_user=True)
    assert found.errors == {}
    assert (found.selection.model, found.selection.client) == (tricky, "Claude Code")


def test_form_times_are_utc_and_a_given_zone_is_kept() -> None:
    found = read_filters({"from": "2026-12-02T10:30", "to": "2026-12-02T12:00+01:00"},
                         may_pick_user=False)  # fmt: skip
    assert found.selection.started_after == datetime(2026, 12, 2, 10, 30, tzinfo=UTC)
    assert found.selection.started_before == datetime(
        2026, 12, 2, 12, 0, tzinfo=timezone(timedelta(hours=1)))  # fmt: skip
    assert (
        found.query == 'started_after:"2026-12-02T10:30Z" started_before:"2026-12-02T12:00+01:00"'
    )


def test_problems_are_named_by_the_form_fields() -> None:
    found = read_filters({"from": "soon", "to": "2026-01-01T00:00", "provider": "p" * 600},
                         may_pick_user=True)  # fmt: skip
    assert set(found.errors) == {"from", "provider"}
    later = read_filters({"from": "2026-12-02T10:00", "to": "2026-12-01T10:00"}, may_pick_user=True)
    assert later.errors == {"to": "must be later than started_after"}


def test_only_those_who_see_everyone_pick_a_user() -> None:
    assert read_filters({"user": "alice"}, may_pick_user=True).initiator == "alice"
    member = read_filters({"user": "alice"}, may_pick_user=False)
    assert (member.initiator, member.values["user"], member.query) == (None, "", "")
