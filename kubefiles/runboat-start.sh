#!/bin/bash
#
# runboat build container: run Odoo on the database the initialize job
# created, with the addons and virtualenv it left on the volume. Mail goes
# to the mailhog sidecar (localhost:1025).
#
set -Eeuo pipefail
set -x

: "${PGDATABASE:?}" "${ADDONS_DIR:?}"
DATA=/mnt/data
export PYTHONUNBUFFERED=1

if [ ! -f "$DATA/initialized" ]; then
    echo "the build is not initialized (no $DATA/initialized): cannot start" >&2
    exit 1
fi

# What is installed (the virtualenv mounted at /opt/odoo-venv).
pip list

# The image's configuration file is not on the volume: add the build's
# addons to its addons_path again.
if [ -n "${ODOO_RC:-}" ]; then
    echo "addons_path=${ADDONS_PATH:-},${ADDONS_DIR}" >>"$ODOO_RC"
    cat "$ODOO_RC"
fi

# System packages the addons declare: installed by oca_install_addons in the
# initialize job's container, which is gone.
deb_deps=$(oca_list_external_dependencies deb || true)
if [ -n "$deb_deps" ]; then
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -qq --no-install-recommends $deb_deps
fi

oca_wait_for_postgres

odoo_bin=$(command -v odoo || command -v openerp-server)
# --db_user is needed by Odoo <= 10
exec "$odoo_bin" \
    --data-dir="$DATA/odoo-data-dir" \
    --no-database-list \
    --database="$PGDATABASE" \
    --db-filter="^${PGDATABASE}\$" \
    ${PGUSER:+--db_user="$PGUSER"} \
    --smtp=localhost \
    --smtp-port=1025
