"""The body of a core/v1 Event."""

from __future__ import annotations

from datetime import UTC, datetime

from pinnace.api.events import event_for

JOB = {"apiVersion": "batch/v1", "kind": "Job",
       "metadata": {"name": "pi", "namespace": "ns1", "uid": "u1", "resourceVersion": "7"}}


def test_event_about_an_object() -> None:
    ev = event_for(JOB, component="job-controller", type_="Normal", reason="Completed",
                   message="Job completed", now="2024-01-02T03:04:05Z")
    assert ev["metadata"]["namespace"] == "ns1"
    assert ev["metadata"]["name"].startswith("pi.")
    assert ev["involvedObject"] == {"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                                    "namespace": "ns1", "uid": "u1", "resourceVersion": "7"}
    assert (ev["type"], ev["reason"], ev["message"]) == ("Normal", "Completed", "Job completed")
    assert ev["source"] == {"component": "job-controller"}
    assert ev["reportingComponent"] == "job-controller"
    assert ev["firstTimestamp"] == ev["lastTimestamp"] == "2024-01-02T03:04:05Z"
    assert ev["count"] == 1


def test_stamped_now_when_no_time_is_given() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    ev = event_for(JOB, component="c", type_="Normal", reason="R", message="m")
    stamp = datetime.fromisoformat(ev["firstTimestamp"].replace("Z", "+00:00"))
    assert ev["firstTimestamp"].endswith("Z") and "." not in ev["firstTimestamp"]
    assert before <= stamp <= datetime.now(UTC)


def test_names_are_unique_and_cluster_scoped_objects_go_to_default() -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u"}}
    a = event_for(node, component="c", type_="Normal", reason="R", message="m")
    b = event_for(node, component="c", type_="Normal", reason="R", message="m")
    assert a["metadata"]["namespace"] == "default"
    assert a["involvedObject"]["namespace"] is None
    assert a["metadata"]["name"] != b["metadata"]["name"]
