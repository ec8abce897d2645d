#!/bin/bash
#
# runboat cleanup job: drop the build's databases, PGDATABASE (the build
# name) and those named PGDATABASE-* or PGDATABASE_* (copies made by tests or
# by hand). Runs in a postgres image (psql, dropdb, pg_isready).
#
set -Eeuo pipefail
set -x

: "${PGDATABASE:?}"

for _ in $(seq 30); do
    pg_isready --dbname=postgres && break
    sleep 2
done

# psql interpolates :'db' (quoted as an SQL literal) in its standard input.
psql --dbname=postgres --no-psqlrc --tuples-only --no-align -v ON_ERROR_STOP=1 \
    -v db="$PGDATABASE" <<'SQL' >/tmp/databases
SELECT datname FROM pg_database
 WHERE datname = :'db'
    OR left(datname, length(:'db') + 1) IN (:'db' || '-', :'db' || '_');
SQL

while IFS= read -r db; do
    [ -n "$db" ] || continue
    dropdb --if-exists --force "$db"
done </tmp/databases
echo "dropped the databases of ${PGDATABASE}"
