"""Parses Prometheus text format from stdin with prometheus_client's own
parser (tests/tests/metrics.rs) and prints `name{labels} value` per sample,
sorted; a parse error exits non-zero."""

import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    lines = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            lines.append(f"{s.name}{{{labels}}} {s.value}")
    print("\n".join(sorted(lines)))


if __name__ == "__main__":
    main()
