#!/usr/bin/env bash
# A throwaway PostgreSQL server in a directory, for tests and manual experiments (no system
# service): `initdb` + `pg_ctl start`, listening only on a unix socket inside DIR.
#   scripts/pg-throwaway.sh start DIR   -> prints the store url (postgresql://...?host=DIR)
#   scripts/pg-throwaway.sh stop DIR
# The binaries come from $FLEETHUB_PG_BIN or the newest /usr/lib/postgresql/*/bin (Debian package
# postgresql-15). initdb refuses to run as root, so as root the server runs as `nobody` (setpriv)
# in DIR, which is handed to it. The same steps in Rust: fleethub-store-postgres `throwaway`.
set -euo pipefail
cmd=${1:?usage: pg-throwaway.sh start|stop DIR}
dir=${2:?usage: pg-throwaway.sh start|stop DIR}

bin=${FLEETHUB_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
  echo "ERROR: PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin:" \
    "install the Debian package postgresql-15 (apt-get install postgresql-15) or set FLEETHUB_PG_BIN" >&2
  exit 1
fi
as_server=()
if [[ $(id -u) == 0 ]]; then
  as_server=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi

case "$cmd" in
  start)
    mkdir -p "$dir"
    [[ ${#as_server[@]} -gt 0 ]] && chown nobody:nogroup "$dir"
    "${as_server[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    "${as_server[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-c listen_addresses= -c unix_socket_directories=$dir -c max_connections=200" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    "$bin/psql" -h "$dir" -U postgres -q -c "CREATE DATABASE fleethub" postgres >/dev/null 2>&1 \
      || "$bin/createdb" -h "$dir" -U postgres fleethub
    echo "postgresql://postgres@localhost/fleethub?host=$dir"
    ;;
  stop)
    "${as_server[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: pg-throwaway.sh start|stop DIR" >&2
    exit 2
    ;;
esac
