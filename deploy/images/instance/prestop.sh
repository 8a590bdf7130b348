#!/bin/sh
# The pod's preStop hook: while this member is Patroni's leader, wait (at
# most $1 seconds, default 60) before Kubernetes sends SIGTERM. A deleted
# primary pod is seen by pgwolf-controller, which pauses the pooler and
# switches over to a replica; Patroni stopping the primary itself would
# be a failover that clients see as errors. Past the bound, or on a
# replica, the pod stops at once.
limit=${1:-60}
# Counted in whole sleeps, not read off the clock: `date +%s` has whole
# seconds, so "until now + limit" could end almost a second early.
waited=0
while [ "$waited" -lt "$limit" ]; do
    # 200 from /primary: this member leads. Anything else (a replica, no
    # answer) lets the pod go.
    python3 -c '
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen("http://127.0.0.1:8008/primary", timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)
' || exit 0
    sleep 1
    waited=$((waited + 1))
done
exit 0
