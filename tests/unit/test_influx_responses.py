"""What the writer does with each InfluxDB answer. Bodies are verbatim from influxd 1.6.7 unless marked 2.x."""

from __future__ import annotations

import pytest

from formcheck_aggregator.influx import WriteOutcome, classify_write_response, error_message

TYPE_CONFLICT = (b'{"error":"partial write: field type conflict: input field \\"v\\" on measurement \\"q\\" is type '
                 b'string, already exists as type integer dropped=1"}\n')
BEYOND_RETENTION = b'{"error":"partial write: points beyond retention policy dropped=2"}\n'
ONE_UNPARSABLE = (b'{"error":"partial write: unable to parse \'m v=abc 1795249936933\': invalid boolean '
                  b'dropped=0"}\n')
TWO_UNPARSABLE = (b'{"error":"partial write: unable to parse \'q2 v=abc 2\': invalid boolean\\nunable to parse '
                  b'\'q2 w=xyz 3\': invalid boolean dropped=0"}\n')
ALL_UNPARSABLE = b'{"error":"unable to parse \'b14 v=NaN 1000\': invalid number"}\n'
DB_NOT_FOUND = b'{"error":"database not found: \\"t\\""}\n'
RP_NOT_FOUND = b'{"error":"retention policy not found: frames"}\n'
V2_UNPROCESSABLE = (b'{"code":"unprocessable entity","message":"failure writing points to database: partial write: '
                    b'points beyond retention policy dropped=1"}')


@pytest.mark.parametrize("status", [200, 204])
def test_2xx_is_done(status: int) -> None:
    assert classify_write_response(status, b"", 10) == WriteOutcome("done")


@pytest.mark.parametrize(("body", "points", "rejected"), [
    (TYPE_CONFLICT, 3, 1),
    (BEYOND_RETENTION, 3, 2),
    (ONE_UNPARSABLE, 3, 1),  # 1.x says dropped=0 for lines it could not parse
    (TWO_UNPARSABLE, 4, 2),
    (BEYOND_RETENTION, 1, 1),  # never more than the batch
])
def test_partial_write_counts_dropped_points_and_is_not_retried(body: bytes, points: int, rejected: int) -> None:
    outcome = classify_write_response(400, body, points)
    assert outcome.action == "done"
    assert outcome.rejected == rejected
    assert outcome.error_class == "4xx"
    assert "partial write" in outcome.message


def test_2x_partial_write_with_422() -> None:
    outcome = classify_write_response(422, V2_UNPROCESSABLE, 5)
    assert (outcome.action, outcome.rejected) == ("done", 1)


def test_whole_batch_unparsable_is_dropped_not_retried() -> None:
    outcome = classify_write_response(400, ALL_UNPARSABLE, 7)
    assert (outcome.action, outcome.rejected, outcome.error_class) == ("done", 7, "4xx")


@pytest.mark.parametrize("status", [400, 405, 413])
def test_other_4xx_drops_the_batch(status: int) -> None:
    outcome = classify_write_response(status, b"nonsense", 4)
    assert (outcome.action, outcome.rejected) == ("done", 4)
    assert outcome.message == "nonsense"


def test_missing_database_or_policy_recreates_them() -> None:
    assert classify_write_response(404, DB_NOT_FOUND, 3).action == "ensure"
    outcome = classify_write_response(500, RP_NOT_FOUND, 3)
    assert (outcome.action, outcome.error_class) == ("ensure", "5xx")


@pytest.mark.parametrize(("status", "error_class"), [
    (401, "auth"), (403, "auth"), (500, "5xx"), (502, "5xx"), (503, "5xx"), (429, "4xx"), (408, "4xx"),
])
def test_transient_and_auth_errors_are_retried(status: int, error_class: str) -> None:
    outcome = classify_write_response(status, b'{"error":"authorization failed"}', 3)
    assert (outcome.action, outcome.rejected, outcome.error_class) == ("retry", 0, error_class)


def test_error_message_formats() -> None:
    assert error_message(DB_NOT_FOUND) == 'database not found: "t"'
    assert error_message(V2_UNPROCESSABLE).startswith("failure writing points")
    assert error_message(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert error_message(b"") == ""
