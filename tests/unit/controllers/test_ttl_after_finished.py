"""When a finished Job with ttlSecondsAfterFinished is due for deletion."""

from __future__ import annotations

from typing import Any

from pinnace.controllers.ttl_after_finished import expires_at

FINISHED = 1767225600.0  # 2026-01-01T00:00:00Z


def job(ttl: int | None = 30, **status: Any) -> dict[str, Any]:
    spec = {} if ttl is None else {"ttlSecondsAfterFinished": ttl}
    return {"metadata": {"name": "j"}, "spec": spec, "status": status}


def done(type_: str = "Complete", when: str = "2026-01-01T00:00:00Z") -> list[dict[str, Any]]:
    return [{"type": type_, "status": "True", "lastTransitionTime": when}]


def test_a_finished_job_expires_ttl_after_its_completion() -> None:
    assert expires_at(job(conditions=done(), completionTime="2026-01-01T00:00:00Z")) == \
        FINISHED + 30
    # a failed Job has no completionTime: its condition's time counts
    assert expires_at(job(conditions=done("Failed"))) == FINISHED + 30


def test_no_expiry_without_ttl_finish_or_readable_time() -> None:
    assert expires_at(job(ttl=None, conditions=done())) is None
    assert expires_at(job(conditions=[{"type": "Complete", "status": "False"}])) is None
    assert expires_at(job(conditions=done(when="yesterday"))) is None
    deleting = job(conditions=done())
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z"
    assert expires_at(deleting) is None
