"""pinnace.api.cel: standard CEL, Kubernetes' libraries, errors and the cost limit."""

import pytest

from pinnace.api import cel

SELF = {"name": "Web-1", "replicas": 3, "ports": [80, 443], "labels": {"app": "web"}}


def ev(expr: str, **activation):
    return cel.compile(expr).evaluate(activation or {"self": SELF})


@pytest.mark.parametrize(("expr", "want"), [
    ("self.replicas <= 10", True),
    ("has(self.labels.app) && !has(self.labels.tier)", True),
    ("self.ports.all(p, p > 0 && p < 65536)", True),
    ("self.ports.exists(p, p == 443)", True),
    ("self.ports.map(p, p * 2)", [160, 886]),
    ("self.name.lowerAscii()", "web-1"),
    ("self.name.upperAscii()", "WEB-1"),
    ('self.name.split("-")', ["Web", "1"]),
    ('["a", "b"].join(",")', "a,b"),
    ('self.name.replace("-", "_")', "Web_1"),
    ('"  x ".trim()', "x"),
    ('self.name.indexOf("-")', 3),
    ('self.name.matches("^[A-Z]")', True),
    ('self.name.find("[0-9]+")', "1"),
    ('"a1b22".findAll("[0-9]+")', ["1", "22"]),
    ("self.ports.isSorted()", True),
    ("[3, 1].isSorted()", False),
    ("self.ports.sum()", 523),
    ("self.ports.min()", 80),
    ("self.ports.max()", 443),
    ("self.ports.indexOf(443)", 1),
    ('quantity("1Gi").isGreaterThan(quantity("512Mi"))', True),
    ('quantity("500m").compareTo(quantity("1"))', -1),
    ('quantity("2k").asInteger()', 2000),
    ('quantity("1Gi") == quantity("1024Mi")', True),
    ('isQuantity("1x")', False),
    ('url("https://example.com:8443/a?b=c").getHostname()', "example.com"),
    ('url("https://example.com:8443/a?b=c").getPort()', "8443"),
    ('isURL("not a url")', False),
    ('cidr("10.0.0.0/8").containsIP(ip("10.2.3.4"))', True),
    ('ip("::1").family()', 6),
    ('isIP("300.1.1.1")', False),
])
def test_expressions(expr, want):
    assert ev(expr) == want


def test_transition_rule_sees_old_self():
    program = cel.compile("self.replicas >= oldSelf.replicas")
    assert program.evaluate({"self": {"replicas": 3}, "oldSelf": {"replicas": 2}}) is True
    assert program.evaluate({"self": {"replicas": 1}, "oldSelf": {"replicas": 2}}) is False


def test_syntax_error_is_a_cel_error():
    with pytest.raises(cel.CelError) as e:
        cel.compile("self.replicas <")
    assert e.value.message.startswith("compilation failed")


def test_missing_field_is_a_cel_error_naming_it():
    with pytest.raises(cel.CelError, match="no such key: tier"):
        ev("self.labels.tier == 'x'")


def test_runtime_error_is_a_cel_error():
    with pytest.raises(cel.CelError):
        ev("self.replicas / 0 == 1")
    with pytest.raises(cel.CelError):
        ev('quantity("nope") == quantity("1")')


def test_cost_limit_refuses_a_rule_that_would_stall():
    items = {"self": {"x": list(range(5000))}}
    program = cel.compile("self.x.all(a, self.x.all(b, a != b || a == b))")
    with pytest.raises(cel.CelError, match="cost limit"):
        program.evaluate(items)
    # the same rule over a small object runs
    assert program.evaluate({"self": {"x": [1, 2, 3]}}) is True


def test_string_literals_do_not_count_as_comprehensions():
    assert ev('"x.all(a, a)" != ""', self={"x": list(range(100_000))}) is True


def test_overlong_expression_is_refused():
    with pytest.raises(cel.CelError, match="too long"):
        cel.compile("1 + " * 2000 + "1")
