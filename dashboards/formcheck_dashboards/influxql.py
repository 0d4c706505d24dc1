"""InfluxQL targets and the datasource reference every panel uses.

grafana-foundation-sdk ships query types for Prometheus, Loki, Tempo and others but none for InfluxDB, so this
module adds one: a raw InfluxQL query (``rawQuery: true``) in the JSON shape Grafana's InfluxDB datasource stores
when a query is written in the raw editor, in InfluxQL mode.
"""

from __future__ import annotations

from typing import Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

# Must match dashboards/provisioning/datasources/influxdb.yaml.
DATASOURCE_UID = "formcheck-influxdb"
DATASOURCE_TYPE = "influxdb"
DATASOURCE = dashboard.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

# Frame telemetry is written to the short retention policy "frames"; everything else to the default one.
FRAME = '"frames"."frame"'

ResultFormat = Literal["time_series", "table"]


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target."""

    def __init__(self, ref_id: str, query: str, result_format: ResultFormat = "time_series",
                 alias: str | None = None) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "query": self.query,
            "rawQuery": True,
            "refId": self.ref_id,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        return payload


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder for :class:`InfluxQLQuery`, usable wherever the SDK takes a target builder."""

    def __init__(self, ref_id: str, query: str) -> None:
        self._internal = InfluxQLQuery(ref_id, " ".join(query.split()))

    def build(self) -> cogvariants.Dataquery:
        return self._internal

    def table(self) -> InfluxQL:
        """Return one frame with every selected column (tags included), not one series per column."""
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> InfluxQL:
        """Series name pattern: ``$tag_node``, ``$col``, ``$m`` ..."""
        self._internal.alias = alias
        return self


def node_filter(var: str = "node") -> str:
    """WHERE clause term for a (multi-value, All-capable) template variable holding node ids."""
    return f'"{var}" =~ /^${var}$/'
