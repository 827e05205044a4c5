"""docs/examples/grafana-dashboard.json queries only series the server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from twisted.internet.task import Clock

from txmailhost.ops import metrics
from txmailhost.ops.exposition import ServerCollector

DASHBOARD = Path(__file__).parents[2] / "docs" / "examples" / "grafana-dashboard.json"


class NoQueue:
    def envelopes(self) -> list:
        return []


def exported_series() -> set[str]:
    families = [*metrics.REGISTRY.collect(), *ServerCollector(Clock(), NoQueue(), []).collect()]
    names = set()
    for family in families:
        names.add(family.name)
        for suffix in ("_total", "_bucket", "_count", "_sum"):
            names.add(family.name + suffix)
    return names


def test_every_series_the_dashboard_plots_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"txmailhost_\w+", target["expr"])
    }
    assert len(queried) >= 15
    assert queried <= exported_series(), queried - exported_series()
