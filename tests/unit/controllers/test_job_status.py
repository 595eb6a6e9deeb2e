"""The Job status calculation: tracking finished pods, conditions, terminal state, counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pinnace.api.types import Obj
from pinnace.controllers.job import pods_to_change
from pinnace.controllers.job_status import (
    COMPLETION_INDEX,
    TRACKING_FINALIZER,
    calculate_status,
    count_uncounted,
    format_indexes,
    parse_indexes,
    track,
    update_conditions,
)
from tests.unit.controllers.objects import pod

NOW = datetime(2026, 1, 1, 1, 0, 0, tzinfo=UTC)
STAMP = "2026-01-01T01:00:00Z"


def job(status: Obj | None = None, **spec: Any) -> Obj:
    return {"metadata": {"name": "work", "namespace": "default", "uid": "job"},
            "spec": {"parallelism": 2, "backoffLimit": 6, **spec}, "status": status or {}}


def jpod(name: str, phase: str = "Running", index: int | None = None, **kw: Any) -> Obj:
    annotations = {COMPLETION_INDEX: str(index)} if index is not None else None
    return pod(name, phase=phase, finalizers=[TRACKING_FINALIZER], annotations=annotations,
               **kw)


def cond(status: Obj, type_: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


def test_completed_indexes_text() -> None:
    assert format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    assert parse_indexes("0-2,4,6-7") == {0, 1, 2, 4, 6, 7}
    assert format_indexes(set()) == "" and parse_indexes("") == set()
    assert parse_indexes(" 3 , 1-2 ") == {1, 2, 3}


# -- tracking ------------------------------------------------------------------------------

def test_finished_pods_become_uncounted_and_a_deleted_running_pod_failed() -> None:
    pods = [jpod("ok", "Succeeded"), jpod("bad", "Failed"), jpod("run"),
            jpod("gone", deleting=True)]
    t = track(job(completions=4), pods)
    assert t.status["uncountedTerminatedPods"] == {"succeeded": ["uid-ok"],
                                                   "failed": ["uid-bad", "uid-gone"]}
    assert [p["metadata"]["name"] for p in t.succeeded] == ["ok"]
    assert t.release == []


def test_suspension_releases_deleted_pods_without_counting_them() -> None:
    t = track(job(completions=2, suspend=True), [jpod("gone", deleting=True)])
    assert not t.changed
    assert [p["metadata"]["name"] for p in t.release] == ["gone"]


def test_already_uncounted_and_untracked_pods_are_skipped() -> None:
    status = {"uncountedTerminatedPods": {"succeeded": ["uid-ok"], "failed": []}}
    plain = pod("plain", phase="Failed")  # no finalizer: counted long ago
    t = track(job(status, completions=2), [jpod("ok", "Succeeded"), plain])
    assert not t.changed and t.status == status


def test_indexed_successes_fill_completed_indexes_once() -> None:
    status = {"completedIndexes": "0"}
    pods = [jpod("i1", "Succeeded", index=1), jpod("i0", "Succeeded", index=0),
            jpod("i9", "Succeeded", index=9)]
    t = track(job(status, completions=3, completionMode="Indexed"), pods)
    assert t.status["completedIndexes"] == "0-1"
    assert [p["metadata"]["name"] for p in t.succeeded] == ["i1"]
    assert sorted(p["metadata"]["name"] for p in t.release) == ["i0", "i9"]


def test_uncounted_pods_are_counted_once_their_finalizer_is_off() -> None:
    status = {"succeeded": 1, "failed": 0,
              "uncountedTerminatedPods": {"succeeded": ["uid-a", "uid-b"], "failed": ["uid-c"]}}
    pods = [jpod("a", "Succeeded"), pod("b", phase="Succeeded")]  # c is gone altogether
    moved = count_uncounted(status, pods)
    assert moved["succeeded"] == 2 and moved["failed"] == 1
    assert moved["uncountedTerminatedPods"] == {"succeeded": ["uid-a"], "failed": []}
    assert status["succeeded"] == 1  # the input is not changed
    assert count_uncounted(moved, pods) is moved


# -- conditions ----------------------------------------------------------------------------

def test_a_running_job_gets_its_start_time() -> None:
    step = update_conditions(job(completions=3), {}, [jpod("a")], NOW)
    assert step.status["startTime"] == STAMP
    assert not step.ending and not step.finished and step.events == []
    assert not step.stop_pods(job(completions=3))


def test_suspend_and_resume() -> None:
    j = job(completions=3, suspend=True)
    step = update_conditions(j, {"startTime": "2026-01-01T00:00:00Z"}, [], NOW)
    c = cond(step.status, "Suspended")
    assert c is not None and (c["status"], c["reason"]) == ("True", "JobSuspended")
    assert c["lastProbeTime"] == c["lastTransitionTime"] == STAMP
    assert step.events == [("Normal", "Suspended", "Job suspended")]
    assert step.stop_pods(j)
    # suspended again: nothing changes
    assert update_conditions(j, step.status, [], NOW).events == []

    later = datetime(2026, 1, 1, 2, 0, 0, tzinfo=UTC)
    resumed = update_conditions(job(completions=3), step.status, [], later)
    c = cond(resumed.status, "Suspended")
    assert c is not None and (c["status"], c["reason"]) == ("False", "JobResumed")
    assert resumed.status["startTime"] == "2026-01-01T02:00:00Z"  # the deadline restarts
    assert resumed.events == [("Normal", "Resumed", "Job resumed")]


def test_a_job_never_suspended_gets_no_suspended_condition() -> None:
    step = update_conditions(job(completions=1), {}, [], NOW)
    assert cond(step.status, "Suspended") is None


def test_too_many_failures_target_failure() -> None:
    status = {"failed": 2, "uncountedTerminatedPods": {"failed": ["x"]}}
    step = update_conditions(job(completions=3, backoffLimit=2), status, [], NOW)
    c = cond(step.status, "FailureTarget")
    assert c is not None and c["reason"] == "BackoffLimitExceeded" and step.ending


def test_restarts_count_toward_the_limit_with_on_failure() -> None:
    j = job(completions=1, backoffLimit=3,
            template={"spec": {"restartPolicy": "OnFailure"}})
    assert not update_conditions(j, {}, [jpod("a", restarts=2)], NOW).ending
    assert update_conditions(j, {}, [jpod("a", restarts=3)], NOW).ending


def test_the_active_deadline() -> None:
    j = job(completions=1, activeDeadlineSeconds=60)
    running = update_conditions(j, {"startTime": "2026-01-01T00:59:30Z"}, [jpod("a")], NOW)
    assert running.requeue_after == 30.0 and not running.ending
    late = update_conditions(j, {"startTime": "2026-01-01T00:58:00Z"}, [jpod("a")], NOW)
    c = cond(late.status, "FailureTarget")
    assert c is not None and c["reason"] == "DeadlineExceeded" and late.ending


def test_enough_successes_meet_the_success_criteria() -> None:
    status = {"succeeded": 1, "uncountedTerminatedPods": {"succeeded": ["b"]}}
    step = update_conditions(job(completions=2), status, [], NOW)
    c = cond(step.status, "SuccessCriteriaMet")
    assert c is not None and c["reason"] == "CompletionsReached" and step.ending


def test_a_work_queue_completes_with_one_success_and_nothing_running() -> None:
    status = {"succeeded": 1}
    assert not update_conditions(job(), status, [jpod("a")], NOW).ending
    assert update_conditions(job(), status, [], NOW).ending


def test_a_finished_job_is_left_as_it_is() -> None:
    status = {"conditions": [{"type": "Complete", "status": "True"}], "failed": 99}
    step = update_conditions(job(completions=1, suspend=True), status, [], NOW)
    assert step.finished and not step.ending and step.status == status


# -- the terminal condition and the counts -------------------------------------------------

def test_success_completes_once_no_pod_is_left() -> None:
    status = {"succeeded": 2}
    step = update_conditions(job(completions=2), status, [], NOW)
    waiting, events = calculate_status(step, [], [jpod("t", deleting=True)], NOW)
    assert cond(waiting, "Complete") is None and events == []
    assert waiting["terminating"] == 1
    done, events = calculate_status(step, [], [], NOW)
    c = cond(done, "Complete")
    assert c is not None and (c["reason"], c["message"]) == (
        "CompletionsReached", "Reached expected number of succeeded pods")
    assert done["completionTime"] == STAMP
    assert events == [("Normal", "Completed", "Job completed")]
    assert (done["active"], done["ready"], done["succeeded"], done["failed"]) == (0, 0, 2, 0)


def test_failure_fails_with_the_target_reason_once_uncounted_pods_are_counted() -> None:
    status = {"failed": 7, "uncountedTerminatedPods": {"succeeded": [], "failed": ["z"]}}
    step = update_conditions(job(completions=1), status, [], NOW)
    pending, _ = calculate_status(step, [], [], NOW)
    assert cond(pending, "Failed") is None
    counted = {"failed": 8, "conditions": step.status["conditions"]}
    step = update_conditions(job(completions=1), counted, [], NOW)
    done, events = calculate_status(step, [], [], NOW)
    c = cond(done, "Failed")
    assert c is not None and c["reason"] == "BackoffLimitExceeded"
    assert events == [("Warning", "BackoffLimitExceeded",
                       "Job has reached the specified backoff limit")]
    assert "completionTime" not in done


def test_counts_of_active_and_ready_pods() -> None:
    step = update_conditions(job(completions=5), {}, [], NOW)
    status, _ = calculate_status(step, [jpod("a"), jpod("b", ready=False)], [], NOW)
    assert (status["active"], status["ready"], status["terminating"]) == (2, 1, 0)
    assert "conditions" not in status


# -- which pods to create and delete -------------------------------------------------------

def test_non_indexed_pods_to_create_and_delete() -> None:
    assert pods_to_change(job(completions=5), {"succeeded": 4}, [], []) == ([], [None])
    excess, create = pods_to_change(job(completions=5, parallelism=1), {},
                                    [jpod("a"), jpod("b", node=None)], [])
    assert [p["metadata"]["name"] for p in excess] == ["b"] and create == []
    # podReplacementPolicy Failed: terminating pods still hold their place
    assert pods_to_change(job(completions=5, podReplacementPolicy="Failed"), {}, [],
                          [jpod("t", deleting=True)]) == ([], [None])


def test_indexed_pods_run_the_free_indexes_and_drop_duplicates() -> None:
    j = job(completions=4, parallelism=3, completionMode="Indexed")
    active = [jpod("a", index=1, created="2026-01-01T00:00:00Z"),
              jpod("dup", index=1, created="2026-01-01T00:00:01Z"),
              jpod("done", index=0)]
    excess, create = pods_to_change(j, {"completedIndexes": "0"}, active, [])
    assert sorted(p["metadata"]["name"] for p in excess) == ["done", "dup"]
    assert create == [2, 3]
