"""Parses OpenMetrics text from standard input with the reference Prometheus client's strict
OpenMetrics parser (prometheus_client.openmetrics.parser) and prints its samples as JSON:
[{"family", "type", "name", "labels", "value"}]. Exits non-zero on any parse error."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append(
            {"family": family.name, "type": family.type, "name": s.name, "labels": s.labels, "value": s.value}
        )
json.dump(samples, sys.stdout)
