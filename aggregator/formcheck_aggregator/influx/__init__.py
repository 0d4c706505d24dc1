"""Storage in InfluxDB through the v1 HTTP API, in the units Telegraf's InfluxDB output has.

- ``line``: the line protocol encoder (``Point``, ``Line``, ``encode_line``);
- ``http``: one HTTP connection, InfluxQL queries, and what each ``/write`` answer means;
- ``writer``: the ordered, bounded, durable buffering writer (``InfluxWriter``) and its retry policy;
- ``schema``: the database and its retention policies.

Configuration: ``formcheck_aggregator.influx_config``.
"""

from formcheck_aggregator.influx.http import (
    ERROR_CLASSES,
    ErrorClass,
    InfluxError,
    InfluxHttp,
    WriteOutcome,
    classify_write_response,
    error_message,
    influxql_string,
    query,
    query_series,
)
from formcheck_aggregator.influx.line import (
    RETENTION_POLICIES,
    FieldValue,
    Line,
    Point,
    Retention,
    encode_line,
    encode_series_line,
    series_key,
)
from formcheck_aggregator.influx.schema import ensure_schema, schema_statements
from formcheck_aggregator.influx.writer import InfluxWriter, WriterClosedError, WriterStats

__all__ = [
    "ERROR_CLASSES", "RETENTION_POLICIES", "ErrorClass", "FieldValue", "InfluxError", "InfluxHttp", "InfluxWriter",
    "Line", "Point", "Retention", "WriteOutcome", "WriterClosedError", "WriterStats", "classify_write_response",
    "encode_line", "encode_series_line", "ensure_schema", "error_message", "influxql_string", "query",
    "query_series", "schema_statements", "series_key",
]
