#!/bin/sh
# Patroni's on_start and on_role_change callback (`callbacks` in
# patroni.yml, rendered with spec.backups): Patroni runs it as
#   instance-callback <action> <role> <scope>
# without waiting for it. On the primary it creates pgBackRest's stanza,
# which archive-push needs: until it exists every WAL segment fails to
# archive and piles up in pg_wal. stanza-create is idempotent (it checks
# the repositories against this cluster's system identifier), so it runs
# at every start and promotion. PostgreSQL may still be finishing its
# start when Patroni calls this: it retries for up to $PGWOLF_STANZA_WAIT
# seconds (default 120).
action=$1 role=$2 scope=$3
case "$role" in
    master | primary) ;;
    *) exit 0 ;;
esac
case "$action" in
    on_start | on_role_change) ;;
    *) exit 0 ;;
esac
limit=${PGWOLF_STANZA_WAIT:-120}
waited=0
while [ "$waited" -lt "$limit" ]; do
    if out=$(pgbackrest --stanza="$scope" stanza-create 2>&1); then
        echo "instance-callback: stanza $scope ready"
        exit 0
    fi
    sleep 2
    waited=$((waited + 2))
done
echo "instance-callback: stanza-create for $scope failed for ${limit}s: $out" >&2
exit 1
