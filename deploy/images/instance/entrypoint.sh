#!/bin/sh
# Starts Patroni with the rendered configuration. In a pod the Kubernetes
# environment already names this member and its addresses (PATRONI_NAME,
# PATRONI_*_CONNECT_ADDRESS from the pod's name and IP); elsewhere (a plain
# container) they default to the host name and its first address, so the
# same image runs in scripts/image-cluster.
set -eu
config=${PATRONI_CONFIG_FILE:-/etc/patroni/patroni.yml}
if [ ! -r "$config" ]; then
    echo "instance-entrypoint: no Patroni configuration at $config (mount the rendered patroni.yml there)" >&2
    exit 1
fi
ip=${POD_IP:-$(hostname -i | cut -d' ' -f1)}
export PATRONI_NAME="${PATRONI_NAME:-$(hostname)}"
export PATRONI_RESTAPI_CONNECT_ADDRESS="${PATRONI_RESTAPI_CONNECT_ADDRESS:-$ip:8008}"
export PATRONI_POSTGRESQL_CONNECT_ADDRESS="${PATRONI_POSTGRESQL_CONNECT_ADDRESS:-$ip:5432}"
exec patroni "$config"
