#!/usr/bin/env bash
# A local PostgreSQL for Pulumi state (`PULUMI_BACKEND_URL=postgres://…`), idempotent, without systemd.
#
#   scripts/postgres-up.sh [start]   initialise (once) and start the cluster; create the database and
#                                    its two roles; print the backend URL
#   scripts/postgres-up.sh stop      stop it (the data stays)
#   scripts/postgres-up.sh url [reader]   print the read-write (or read-only) backend URL
#   scripts/postgres-up.sh ensure URL     start only if URL is this script's server (127.0.0.1 or
#                                    localhost at $VIRTSTACK_PG_PORT); another server is left alone
#
# Its own cluster directory, port and socket directory (nothing of a system cluster is touched):
#   $VIRTSTACK_PG_DIR (default /var/lib/virtstack/postgres): data/ (the cluster), run/ (socket,
#   0700), postgres.log, pgpass (0600: generated passwords, libpq's password file format),
#   backend-url and reader-url (the URLs to use; they name the password file, never a password)
#   $VIRTSTACK_PG_PORT (default 55432) on 127.0.0.1 only; TCP logins need scram-sha-256.
# Roles: `virtstack` owns the database `virtstack` (state table `pulumi_state`, created by Pulumi on
# its first login; virtstack's holder table `virtstack_run_holders`); `virtstack_reader` may only read
# them (plan and drift in pipelines: Pulumi's preview neither locks nor writes).
#
# The server runs as the `postgres` user of Debian's postgresql package (PostgreSQL refuses root).
# `make setup` runs this when PULUMI_BACKEND_URL is a postgres:// URL for this port on this machine;
# a URL for another server is left alone (see README, "Shared state on PostgreSQL").
set -euo pipefail

DIR=${VIRTSTACK_PG_DIR:-/var/lib/virtstack/postgres}
cd /  # the postgres user may not enter the caller's directory
PORT=${VIRTSTACK_PG_PORT:-55432}
log() { printf 'postgres-up: %s\n' "$*" >&2; }

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && echo "$d"; done | sort -V | tail -1
}

url() {  # url ROLE
  printf 'postgres://%s@127.0.0.1:%s/virtstack?sslmode=disable&passfile=%s' "$1" "$PORT" "$DIR/pgpass"
}

if [ "${1:-start}" = url ]; then
  if [ "${2:-}" = reader ]; then url virtstack_reader; else url virtstack; fi
  echo
  exit 0
fi

if [ "${1:-start}" = ensure ]; then
  hostport=$(printf '%s' "${2:-}" | sed -E 's|^[a-z]+://([^/?]*@)?([^/?]*).*|\2|')
  case "$hostport" in
    127.0.0.1:"$PORT" | localhost:"$PORT") set -- start ;;
    *) log "the backend is another server's (${hostport:-none given}): nothing to start here"; exit 0 ;;
  esac
fi

BIN=$(bindir)
if [ -z "$BIN" ]; then
  [ "$(id -u)" = 0 ] || { log "run as root to install postgresql"; exit 1; }
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
  BIN=$(bindir)
fi
as_pg() { runuser -u postgres -- "$@"; }

if [ "${1:-start}" = stop ]; then
  if [ -f "$DIR/data/postmaster.pid" ]; then as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2; fi
  exit 0
fi
[ "${1:-start}" = start ] || { log "usage: $0 [start|stop|url [reader]]"; exit 2; }

mkdir -p "$DIR"
chmod 0711 "$DIR"
install -d -o postgres -g postgres -m 0700 "$DIR/data" "$DIR/run"

if [ ! -f "$DIR/data/PG_VERSION" ]; then
  log "initialising a cluster in $DIR/data"
  as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
fi
# Settings of our own, re-applied every run (a changed port takes effect at the next start).
as_pg tee "$DIR/data/virtstack.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR/run'
password_encryption = scram-sha-256
EOF
grep -q "^include_if_exists = 'virtstack.conf'" "$DIR/data/postgresql.conf" ||
  echo "include_if_exists = 'virtstack.conf'" | as_pg tee -a "$DIR/data/postgresql.conf" >/dev/null
as_pg tee "$DIR/data/pg_hba.conf" >/dev/null <<EOF
local all postgres peer
host virtstack virtstack,virtstack_reader 127.0.0.1/32 scram-sha-256
EOF

if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
  log "starting PostgreSQL on 127.0.0.1:$PORT"
  touch "$DIR/postgres.log" && chown postgres: "$DIR/postgres.log" && chmod 0600 "$DIR/postgres.log"
  # setsid: the server outlives the shell (and the CI step) that started it.
  as_pg setsid "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 start >/dev/null
else
  as_pg "$BIN/pg_ctl" -D "$DIR/data" reload >/dev/null
fi

# Passwords: generated once, kept only in the 0600 password file.
umask 077
if [ ! -s "$DIR/pgpass" ]; then
  {
    echo "127.0.0.1:$PORT:virtstack:virtstack:$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
    echo "127.0.0.1:$PORT:virtstack:virtstack_reader:$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  } >"$DIR/pgpass.tmp"
  mv "$DIR/pgpass.tmp" "$DIR/pgpass"
fi
# A changed port keeps the passwords.
sed -i "s/^127\.0\.0\.1:[0-9]*:/127.0.0.1:$PORT:/" "$DIR/pgpass"
chmod 0600 "$DIR/pgpass"
password() { awk -F: -v r="$1" '$4 == r {print $5}' "$DIR/pgpass"; }

psql_admin() {
  as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/run" -p "$PORT" -U postgres "$@"
}
# Passwords go in through psql variables on stdin, never on a command line.
psql_admin -d postgres <<EOF
\set rw '$(password virtstack)'
\set ro '$(password virtstack_reader)'
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY['virtstack', 'virtstack_reader']) AS r
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE virtstack LOGIN PASSWORD :'rw';
ALTER ROLE virtstack_reader LOGIN PASSWORD :'ro';
SELECT 'CREATE DATABASE virtstack OWNER virtstack'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'virtstack') \gexec
EOF
psql_admin -d virtstack <<'EOF'
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT ALL ON SCHEMA public TO virtstack;
GRANT USAGE ON SCHEMA public TO virtstack_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO virtstack_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE virtstack IN SCHEMA public GRANT SELECT ON TABLES TO virtstack_reader;
EOF

url virtstack >"$DIR/backend-url"
url virtstack_reader >"$DIR/reader-url"
chmod 0644 "$DIR/backend-url" "$DIR/reader-url"
log "ready: $(cat "$DIR/backend-url")"
cat "$DIR/backend-url"
echo
