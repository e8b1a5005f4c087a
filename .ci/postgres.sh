#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the tests, from the distribution's
# packages, and print the line that points the tests at it:
#
#     eval "$(bash .ci/postgres.sh)"     # exports MOODLIFT_TEST_POSTGRES_URL for pytest
#
# Debian/Ubuntu, as root (CI, or a developer's machine or container). Installs `postgresql`
# with apt-get when it is missing, creates a cluster of its own ("moodlift_test": fsync off,
# 127.0.0.1 only, a free port) and a user who may create databases: the tests make a fresh
# role and schema per test and drop them afterwards. Safe to run again: an existing cluster is reused.
# PostgreSQL refuses to run as root; pg_ctlcluster runs the server as the `postgres` user.
# Everything but the export line goes to stderr; any failure exits non-zero.
set -euo pipefail

cluster="${MOODLIFT_TEST_PG_CLUSTER:-moodlift_test}"
role=moodlift
password=moodlift
database=moodlift

say() { echo "postgres.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    say "run as root (it installs packages and manages a cluster as the postgres user)"
    exit 1
fi

if ! command -v pg_createcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ ! -d "/etc/postgresql/$version/$cluster" ]; then
    port=54329
    taken="$(pg_lsclusters -h | awk '{print $3}')"
    while port_in_use "$port" || grep -qx "$port" <<<"$taken"; do
        port=$((port + 1))
    done
    say "creating cluster $version/$cluster on port $port"
    pg_createcluster "$version" "$cluster" -p "$port" --start-conf=manual >&2
    cat >"/etc/postgresql/$version/$cluster/conf.d/moodlift-test.conf" <<'CONF'
# A throwaway server for tests: local only, durability traded for speed.
listen_addresses = '127.0.0.1'
ssl = off
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
CONF
fi
port="$(pg_conftool -s "$version" "$cluster" show port)"

if ! pg_ctlcluster "$version" "$cluster" status >/dev/null 2>&1; then
    say "starting cluster $version/$cluster"
    pg_ctlcluster "$version" "$cluster" start >&2
fi

as_postgres() { runuser -u postgres -- "$@"; }
psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres "$@"; }

if [ -z "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" ]; then
    psql_admin -c "CREATE ROLE $role" >&2
fi
# Each test gets a role and a schema of its own (tests/conftest.py), hence CREATEROLE.
psql_admin -c "ALTER ROLE $role LOGIN CREATEDB CREATEROLE PASSWORD '$password'" >&2
if [ -z "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'")" ]; then
    psql_admin -c "CREATE DATABASE $database OWNER $role" >&2
fi

say "PostgreSQL $version ready on 127.0.0.1:$port"
echo "export MOODLIFT_TEST_POSTGRES_URL=postgresql+asyncpg://$role:$password@127.0.0.1:$port/$database"
