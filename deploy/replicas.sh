#!/usr/bin/env bash
# Several `ferry server` replicas behind one address: N processes (default 3), each with its
# own data directory, on one database and one S3 store, behind HAProxy in TCP mode (TLS
# passes through to ferry, so devices pin the one CA the replicas share).
#
#   deploy/replicas.sh up   --dir DIR [--replicas 3] [--port 8443] [--store s3://…]
#                           [--database URL] [--ferry BIN]
#   deploy/replicas.sh down --dir DIR
#
# Without --store, an S3 server (s3s-fs, SigV4 checked) is started on a loopback port with
# its objects under DIR/s3 (from target/tools/bin or PATH; .ci/run shows how to install it).
# Without --database, a PostgreSQL cluster is made and started in DIR/pg on a loopback port
# (initdb and pg_ctl from PATH or /usr/lib/postgresql/*/bin, as `nobody` when run as root,
# which initdb requires); with --database postgres://… the replicas use that database.
# `--database sqlite` shares one SQLite file instead (DIR/shared/ferry.db, one host; every
# replica then leads: SQLite has no lease). The catalog's offline keys are made in DIR/offline-keys,
# outside every data directory. `up` prints the address, the CA and the admin token to use.
set -euo pipefail

cmd=${1:-}
shift || true
dir="" replicas=3 port=8443 store="" database="" ferry=""
while [ $# -gt 0 ]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --replicas) replicas=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --store) store=$2; shift 2 ;;
    --database) database=$2; shift 2 ;;
    --ferry) ferry=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] || { echo "usage: $0 up|down --dir DIR [...]" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
ferry=${ferry:-${CARGO_TARGET_DIR:-$repo/target}/release/ferry}
mkdir -p "$dir/pids" "$dir/logs"
dir=$(cd "$dir" && pwd)

# The PostgreSQL tools, and how to run them (as `nobody` when root).
pg_tool() {
  local tool=$1; shift
  local bin
  bin=$(command -v "$tool" || ls /usr/lib/postgresql/*/bin/"$tool" 2>/dev/null | sort -V | tail -n 1)
  [ -n "$bin" ] || { echo "no $tool: install postgresql, or pass --database URL" >&2; return 1; }
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$bin" "$@"
  else
    "$bin" "$@"
  fi
}

stop_all() {
  if [ -e "$dir/pg/data/postmaster.pid" ]; then
    pg_tool pg_ctl -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  for pidfile in "$dir"/pids/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidfile"
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts `ferry server` for replica $1 on port $2, waits for its address line.
start_replica() {
  local n=$1 p=$2 data="$dir/replica-$1"
  local args=(server --data "$data" --listen "127.0.0.1:$p" --store "$store")
  [ -n "$database" ] && args+=(--database "$database")
  FERRY_LOG=${FERRY_LOG:-warn} "$ferry" "${args[@]}" >"$dir/logs/replica-$n.out" 2>"$dir/logs/replica-$n.log" &
  echo $! >"$dir/pids/replica-$n.pid"
  for _ in $(seq 100); do
    grep -q "listening on" "$dir/logs/replica-$n.out" 2>/dev/null && return 0
    kill -0 "$(cat "$dir/pids/replica-$n.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "replica $n did not start: see $dir/logs/replica-$n.log" >&2
  cat "$dir/logs/replica-$n.log" >&2
  return 1
}

case $cmd in
  down)
    stop_all
    echo "stopped"
    ;;
  up)
    stop_all
    [ -x "$ferry" ] || { echo "no ferry binary at $ferry (cargo build --release -p ferry-cli, or --ferry BIN)" >&2; exit 1; }
    if [ -z "$store" ]; then
      s3s=$(command -v s3s-fs || echo "$repo/target/tools/bin/s3s-fs")
      [ -x "$s3s" ] || { echo "no s3s-fs: pass --store s3://… or install it (see .ci/run)" >&2; exit 1; }
      mkdir -p "$dir/s3/fleet"
      s3port=$(free_port)
      key=ferry secret=ferry-replicas-secret-0123456789
      "$s3s" --host 127.0.0.1 --port "$s3port" --access-key "$key" --secret-key "$secret" "$dir/s3" \
        >"$dir/logs/s3.log" 2>&1 &
      echo $! >"$dir/pids/s3.pid"
      store="s3://fleet?endpoint=http://127.0.0.1:$s3port&region=us-east-1&access_key_id=$key&secret_access_key=$secret"
      for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$s3port") 2>/dev/null && break; sleep 0.1; done
    fi
    echo "$store" >"$dir/store-url"
    if [ -z "$database" ]; then
      # A PostgreSQL cluster of the set's own, kept in DIR/pg across `down` and `up`.
      pgport=$(cat "$dir/pg/port" 2>/dev/null || free_port)
      if [ ! -e "$dir/pg/data/PG_VERSION" ]; then
        mkdir -p "$dir/pg"
        [ "$(id -u)" = 0 ] && chown nobody:nogroup "$dir/pg"
        pg_tool initdb -D "$dir/pg/data" -U ferry --auth=trust -E UTF8 --no-instructions >"$dir/logs/initdb.log"
        echo "$pgport" >"$dir/pg/port"
        created=1
      fi
      pg_tool pg_ctl -D "$dir/pg/data" -l "$dir/pg/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pgport -c unix_socket_directories='' -c max_connections=300" \
        start >/dev/null
      [ -n "${created:-}" ] && pg_tool createdb -h 127.0.0.1 -p "$pgport" -U ferry ferry
      database="postgres://ferry@127.0.0.1:$pgport/ferry"
    elif [ "$database" = sqlite ]; then
      database=""
      shared_sqlite=1
    fi
    echo "$database" >"$dir/database-url"
    first="$dir/replica-1"
    if [ ! -e "$first/tuf/metadata/1.root.json" ]; then
      init=(server init --data "$first" --keys "$dir/offline-keys")
      [ -n "$database" ] && init+=(--database "$database")
      "$ferry" "${init[@]}" >/dev/null
    fi
    if [ -n "${shared_sqlite:-}" ]; then
      # One SQLite file for all: each data directory's ferry.db is a link to it (SQLite
      # follows the link, so its -wal and -shm files are shared too).
      mkdir -p "$dir/shared"
      if [ -e "$first/ferry.db" ] && [ ! -L "$first/ferry.db" ]; then
        mv "$first/ferry.db" "$dir/shared/ferry.db"
        rm -f "$first/ferry.db-wal" "$first/ferry.db-shm"
      fi
      ln -sfn "$dir/shared/ferry.db" "$first/ferry.db"
    fi
    ports=()
    for n in $(seq "$replicas"); do ports+=("$(free_port)"); done
    start_replica 1 "${ports[0]}"
    # The others: the first one's secrets (CA, server certificate, online keys, admin token),
    # no catalog and no artifacts of their own (they come from the store).
    for n in $(seq 2 "$replicas"); do
      data="$dir/replica-$n"
      mkdir -p "$data"
      cp -r "$first/pki" "$first/keys-online" "$first/admin-token" "$data/"
      [ -n "${shared_sqlite:-}" ] && ln -sfn "$dir/shared/ferry.db" "$data/ferry.db"
      start_replica "$n" "${ports[$((n - 1))]}"
    done
    {
      echo "global"
      echo "  maxconn 9000"
      echo "defaults"
      echo "  mode tcp"
      echo "  timeout connect 5s"
      echo "  timeout client 120s"
      echo "  timeout server 120s"
      echo "frontend ferry"
      echo "  bind 127.0.0.1:$port"
      echo "  default_backend replicas"
      echo "backend replicas"
      echo "  balance roundrobin"
      for n in $(seq "$replicas"); do
        echo "  server replica-$n 127.0.0.1:${ports[$((n - 1))]} check inter 1s"
      done
    } >"$dir/haproxy.cfg"
    haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
    "$haproxy" -f "$dir/haproxy.cfg" -db >"$dir/logs/haproxy.log" 2>&1 &
    echo $! >"$dir/pids/haproxy.pid"
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    if ! kill -0 "$(cat "$dir/pids/haproxy.pid")" 2>/dev/null; then
      echo "HAProxy did not start:" >&2
      cat "$dir/logs/haproxy.log" >&2
      stop_all
      exit 1
    fi
    echo "ferry replicas: $replicas behind https://127.0.0.1:$port"
    echo "  CA:          $first/pki/ca.pem"
    echo "  admin token: $first/admin-token"
    echo "  database:    $(cat "$dir/database-url")"
    db_arg=""
    [ -s "$dir/database-url" ] && db_arg=" --database \"\$(cat $dir/database-url)\""
    echo "  publish:     $ferry publish --data $first --store \"\$(cat $dir/store-url)\"$db_arg --keys $dir/offline-keys …"
    echo "  stop:        $0 down --dir $dir"
    ;;
  *)
    echo "usage: $0 up|down --dir DIR [--replicas N] [--port P] [--store URL] [--database URL] [--ferry BIN]" >&2
    exit 2
    ;;
esac
