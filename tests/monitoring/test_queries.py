"""The metric-name tokenizer reads what our PromQL uses, and refuses what it cannot read."""

from __future__ import annotations

import pytest

from .queries import dashboard_queries, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (region, le) (rate(a_bucket{region=~"$region"}[$__rate_interval]))', {"a_bucket"}),
        ("histogram_quantile(0.99, sum(rate(lat_bucket[5m])) by (le))", {"lat_bucket"}),
        (
            'max by (q) (ready{queue="jobstack.jobs"}) / sum by (q) (rate(done_total[5m])) > 300',
            {"ready", "done_total"},
        ),
        ("a == 0 and b > 0 or c unless d", {"a", "b", "c", "d"}),
        ("count(x) < on (namespace) group_left () max by (namespace) (y)", {"x", "y"}),
        ("x * on (instance) group_left (rabbitmq_cluster, pod) info", {"x", "info"}),
        ("sum(x offset 5m) - sum(x) > bool 1e3", {"x"}),
        ("max_over_time(deriv(g[10m:1m])[1h:])", {"g"}),
        # Strings and label values never become names, even when they hold brackets or keywords.
        ('x{route!~"/healthz|/readyz|/metrics", a="}{[sum(", b=`by (c)`}', {"x"}),
        ("sum without (pod) (rate(foo:recorded:rate5m[1m]))", {"foo:recorded:rate5m"}),
        ("vector(1) + absent(nothing_here)", {"nothing_here"}),
    ],
)
def test_metric_names_are_read_from_expressions(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize(
    "expr",
    ['{__name__="x"}', 'sum(x{a="1"}', 'x{a="1"', "x}[5m]", "rate(x[5m)]"],
)
def test_expressions_the_tokenizer_cannot_read_are_refused(expr: str) -> None:
    with pytest.raises(ValueError, match=r"__name__|unbalanced|unclosed|nested"):
        metric_names(expr)


def test_grafana_variables_contribute_the_selector_of_label_values() -> None:
    board = {
        "panels": [{"id": 1, "title": "t", "targets": [{"refId": "A", "expr": "rate(a_total[$__rate_interval])"}]}],
        "templating": {
            "list": [
                {"type": "datasource", "name": "datasource", "query": "prometheus"},
                {"type": "query", "name": "region", "query": {"query": 'label_values(b_total{x="1"}, region)'}},
            ]
        },
    }
    queries = dashboard_queries(board)
    assert queries == [("panel 1 't' A", "rate(a_total[$__rate_interval])"), ("variable region", 'b_total{x="1"}')]
    assert set().union(*(metric_names(expr) for _, expr in queries)) == {"a_total", "b_total"}


def test_a_variable_query_that_is_not_label_values_is_refused() -> None:
    board = {
        "panels": [],
        "templating": {"list": [{"type": "query", "name": "v", "query": {"query": "query_result(up)"}}]},
    }
    with pytest.raises(ValueError, match="variable v: not a label_values"):
        dashboard_queries(board)
