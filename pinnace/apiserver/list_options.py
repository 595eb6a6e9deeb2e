"""List and watch options: a collection GET's query decoded and checked once, for every
kind, the way Kubernetes' parameter codec and `ValidateListOptions` do.

Decoding (400 BadRequest naming the option, as the parameter codec answers):
- `limit`, `timeoutSeconds`: base-10 int64. A `limit` of zero or less means no limit
  (Kubernetes' storage pages only when limit > 0).
- `watch`, `allowWatchBookmarks`, `sendInitialEvents`: booleans as Kubernetes reads
  query parameters: absent, "false" and "0" are false, any other value is true.
- `labelSelector`, `fieldSelector`: parsed; field selectors checked against the kind.

Validation (`ValidateListOptions`): a list may not carry `sendInitialEvents`;
`resourceVersionMatch` needs a `resourceVersion`, no `continue`, and one of Exact or
NotOlderThan (Exact not with "0"); a watch takes `resourceVersionMatch` only with
`sendInitialEvents`, and `sendInitialEvents` only with NotOlderThan. Kubernetes reports
these as 422 Invalid ListOptions; pinnace answers 400 BadRequest with the same
field and message (its clients and tests key on 400).

`resourceVersion` is an unsigned integer or empty: anything else is 400 (Kubernetes
answers 500 there, a known bug, kubernetes/kubernetes#101350). Its meaning for a list
(most recent, any, not older than, exact) is the handler's; see `handlers.list`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pinnace.api import errors, selectors
from pinnace.api.kinds import ResourceType
from pinnace.api.types import Obj
from pinnace.apiserver.negotiation import query_bool

_INT = re.compile(r"[+-]?[0-9]+")
_UINT = re.compile(r"[0-9]+")
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1

Matcher = Callable[[Obj], bool]


def _int64(q: Mapping[str, str], name: str) -> int | None:
    value = q.get(name)
    if value is None or value == "":
        return None
    if not _INT.fullmatch(value):
        raise errors.bad_request(
            f'{name}: Invalid value: "{value}": strconv.ParseInt: parsing "{value}": '
            f"invalid syntax", [errors.Cause(name, "must be an integer")])
    n = int(value)
    if not -_INT64_MAX - 1 <= n <= _INT64_MAX:
        raise errors.bad_request(
            f'{name}: Invalid value: "{value}": strconv.ParseInt: parsing "{value}": '
            f"value out of range", [errors.Cause(name, "must be a 64-bit integer")])
    return n


def parse_resource_version(value: str | None) -> int | None:
    """The revision a resourceVersion names; None for "" and "0" (no revision)."""
    if value is None or value in ("", "0"):
        return None
    if not _UINT.fullmatch(value) or int(value) > _UINT64_MAX:
        raise errors.bad_request(
            f'resourceVersion: Invalid value: "{value}": invalid resource version',
            [errors.Cause("resourceVersion", "invalid resource version")])
    return int(value)


def _invalid(name: str, message: str, reason: str) -> errors.ApiError:
    """What Kubernetes' list handler answers for options ValidateListOptions refuses:
    422 Invalid of kind ListOptions (values that do not decode at all are 400s above)."""
    return errors.invalid("ListOptions", "", [errors.Cause(name, message, reason)],
                          "meta.k8s.io")


def _forbidden(name: str, message: str) -> errors.ApiError:
    return _invalid(name, f"Forbidden: {message}", errors.FORBIDDEN)


def selection(q: Mapping[str, str], rt: ResourceType) -> Matcher:
    """The label and field selectors of a query as one predicate on objects."""
    label_sel = selectors.parse_label_selector(q.get("labelSelector", ""))
    field_sel = selectors.parse_field_selector(q.get("fieldSelector", ""))
    # the resource type's own table: custom resources bring theirs (selectableFields)
    selectors.check_fields(rt.selectable_fields, field_sel)

    def matches(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if not label_sel.matches(labels):
            return False
        if field_sel.requirements:
            return field_sel.matches(selectors.selectable_fields_of(rt.selectable_fields, obj))
        return True
    return matches


@dataclass(frozen=True, slots=True)
class ListOptions:
    """A list's or watch's query, decoded and validated (see the module docstring)."""

    matches: Matcher
    watch: bool
    limit: int  # 0: no limit
    continue_token: str
    resource_version: str
    revision: int | None  # resource_version as a number; None for "" and "0"
    resource_version_match: str
    timeout_seconds: int | None
    allow_watch_bookmarks: bool
    send_initial_events: bool | None  # None: not given

    @classmethod
    def from_query(cls, q: Mapping[str, str], rt: ResourceType, *,
                   watch: bool | None = None) -> ListOptions:
        """watch None: as the query's `watch` parameter says."""
        is_watch = query_bool(q.get("watch")) if watch is None else watch
        limit = _int64(q, "limit") or 0
        timeout = _int64(q, "timeoutSeconds")
        bookmarks = query_bool(q.get("allowWatchBookmarks"))
        initial = query_bool(q.get("sendInitialEvents")) if "sendInitialEvents" in q \
            else None
        rv = q.get("resourceVersion", "")
        match = q.get("resourceVersionMatch", "")
        token = q.get("continue", "")
        _validate(is_watch, rv, match, token, initial)
        revision = parse_resource_version(rv)
        if token and rv not in ("", "0"):
            raise errors.bad_request(
                "specifying resource version is not allowed when using continue")
        return cls(matches=selection(q, rt), watch=is_watch, limit=max(limit, 0),
                   continue_token=token, resource_version=rv, revision=revision,
                   resource_version_match=match, timeout_seconds=timeout,
                   allow_watch_bookmarks=bookmarks, send_initial_events=initial)


def _validate(watch: bool, rv: str, match: str, token: str,
              initial: bool | None) -> None:
    """Kubernetes' ValidateListOptions (with the WatchList feature on)."""
    if watch:
        if initial is not None and match != "NotOlderThan":
            raise _forbidden("resourceVersionMatch", "sendInitialEvents requires setting "
                             "resourceVersionMatch to NotOlderThan")
        if match:
            if initial is None:
                raise _forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden "
                                 "for watch unless sendInitialEvents is provided")
            if match != "NotOlderThan":
                raise _unsupported(match, ("NotOlderThan",))
            if token:
                raise _forbidden("resourceVersionMatch",
                                 "resourceVersionMatch is forbidden when continue is provided")
        return
    if match:
        if not rv:
            raise _forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden "
                             "unless resourceVersion is provided")
        if token:
            raise _forbidden("resourceVersionMatch",
                             "resourceVersionMatch is forbidden when continue is provided")
        if match not in ("Exact", "NotOlderThan"):
            raise _unsupported(match, ("Exact", "NotOlderThan", ""))
        if match == "Exact" and rv == "0":
            raise _forbidden("resourceVersionMatch", 'resourceVersionMatch "exact" is '
                             'forbidden for resourceVersion "0"')
    if initial is not None:
        raise _forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list")


def _unsupported(match: str, supported: tuple[str, ...]) -> errors.ApiError:
    values = ", ".join(f'"{v}"' for v in supported)
    message = f'Unsupported value: "{match}": supported values: {values}'
    return _invalid("resourceVersionMatch", message, errors.NOT_SUPPORTED)
