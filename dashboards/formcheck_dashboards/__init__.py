"""Grafana dashboards for formcheck, generated from code (grafana-foundation-sdk) into ``dashboards/json/``.

``python -m formcheck_dashboards.build`` rewrites the committed JSON; ``dashboards/provisioning/`` holds the
datasource and the dashboard provider Grafana loads at start.
"""
