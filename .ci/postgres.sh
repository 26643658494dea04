# Source this file: start_postgres starts a throwaway PostgreSQL on 127.0.0.1 and exports
# POSTGRES_TEST_URL; stop_postgres removes it. Installs Debian's server if none is present.
PGPORT="${PGPORT:-55432}"

_pg_bin() {
  # Debian's layout has every tool (initdb, pg_ctl, createdb) in one folder; prefer it.
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$found" ] && command -v initdb >/dev/null 2>&1 && command -v createdb >/dev/null 2>&1; then
    found=$(dirname "$(command -v initdb)")
  fi
  if [ -z "$found" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    found=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$found"
}

start_postgres() {
  local bin; bin=$(_pg_bin)
  PGROOT=$(mktemp -d /tmp/console-pg.XXXXXX)
  export PG_BIN="$bin" PGROOT   # now, so that stop_postgres cleans up even a failed start
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  mkdir -p "$PGROOT/sock" && chown -R postgres: "$PGROOT"
  runuser -u postgres -- "$bin/initdb" -D "$PGROOT/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGROOT/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null
  "$bin/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres console_test
  export POSTGRES_TEST_URL="postgresql+psycopg://postgres@127.0.0.1:$PGPORT/console_test"
}

stop_postgres() {
  if [ -n "${PGROOT:-}" ] && [ -n "${PG_BIN:-}" ] && [ -d "$PGROOT/data" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGROOT/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PGROOT"
  fi
}
