#!/usr/bin/env bash
# Search benchmark on PostgreSQL: a throwaway server (initdb + pg_ctl, as the postgres user when root), then
# unclip-store-bench --postgres with the given options; with pgvector installed for that PostgreSQL, the HNSW
# search is measured beside the in-memory index (build time, latency, recall@10).
#   bench/pgvector.sh --sizes 100000 --dim 1024 --queries 30 [--clusters 1000]
set -u
cd "$(dirname "$0")/.."
[ -x .build/release/unclip-store-bench ] || swift build -c release --product unclip-store-bench
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
TMP=$(mktemp -d /tmp/pgb-XXXX); chmod 755 $TMP; [ "$(id -u)" -eq 0 ] && chown postgres $TMP
AS=""; [ "$(id -u)" -eq 0 ] && AS="runuser -u postgres --"
PORT=$((20000 + RANDOM % 20000))
$AS $PGBIN/initdb -D $TMP/data -U unclip --auth=trust --no-sync >/dev/null
$AS $PGBIN/pg_ctl -D $TMP/data -l $TMP/pg.log -o "-p $PORT -k $TMP -c listen_addresses=127.0.0.1 -c shared_buffers=1GB" -w start >/dev/null
psql -h 127.0.0.1 -p $PORT -U unclip -d postgres -c "CREATE DATABASE b" >/dev/null
psql -h 127.0.0.1 -p $PORT -U unclip -d postgres -Atc "select version()"
.build/release/unclip-store-bench --postgres postgres://unclip@127.0.0.1:$PORT/b "$@"
$AS $PGBIN/pg_ctl -D $TMP/data -m fast stop >/dev/null
rm -rf $TMP
