#!/bin/bash
#
# runboat initialize job: download the commit, install its addons, create
# the build's database. Runs in the build image; the oca-ci images provide
# oca_install_addons, oca_wait_for_postgres and manifestoo.
#
# Environment (odooenv, odoosecretenv): PGDATABASE (the build name),
# ADDONS_DIR, RUNBOAT_GIT_REPO (owner/repo), RUNBOAT_GIT_REF (the sha), the
# PG* connection variables of the build env, and optionally INSTALL_METHOD
# (oca_install_addons or editable_pip_install), INCLUDE / EXCLUDE (addons to
# install or not, comma separated), RUNBOAT_GITHUB_TOKEN (private repos:
# put it in the secret env), RUNBOAT_GITHUB_API_URL (default
# https://api.github.com, for GitHub Enterprise), RUNBOAT_DATA_DIR (default
# /mnt/data, the build's volume).
#
set -Eeuo pipefail
set -x

: "${PGDATABASE:?}" "${ADDONS_DIR:?}" "${RUNBOAT_GIT_REPO:?}" "${RUNBOAT_GIT_REF:?}"
DATA="${RUNBOAT_DATA_DIR:-/mnt/data}"
export PYTHONUNBUFFERED=1

# A reset runs this job again on the same volume: start from an empty one.
find "$DATA" -mindepth 1 -delete
mkdir -p "$ADDONS_DIR" "$DATA/odoo-venv"

# The commit as a tarball: much lighter than a git clone. The token, if
# any, goes to curl on its standard input: it never shows in the trace nor
# in the process list. With a token (a private repository) the tarball
# comes from the REST API, which takes tokens (it redirects to a
# short-lived codeload URL; curl does not send the Authorization header to
# another host); without one, from github.com as the Python runboat does.
url="https://github.com/${RUNBOAT_GIT_REPO}/tarball/${RUNBOAT_GIT_REF}"
{ set +x; } 2>/dev/null
curl_config=""
if [ -n "${RUNBOAT_GITHUB_TOKEN:-}" ]; then
    url="${RUNBOAT_GITHUB_API_URL:-https://api.github.com}/repos/${RUNBOAT_GIT_REPO}/tarball/${RUNBOAT_GIT_REF}"
    curl_config="header = \"Authorization: token ${RUNBOAT_GITHUB_TOKEN}\""
fi
echo "+ downloading ${url}"
printf '%s\n' "$curl_config" |
    curl --config - --fail --silent --show-error --location --retry 5 --retry-delay 3 "$url" |
    tar -xzf - -C "$ADDONS_DIR" --strip-components=1
unset curl_config
set -x

# Install the addons and their dependencies.
cd "$ADDONS_DIR"
case "${INSTALL_METHOD:-oca_install_addons}" in
    oca_install_addons) oca_install_addons ;;
    editable_pip_install) pip install -e . ;;
    *)
        echo "unsupported INSTALL_METHOD '${INSTALL_METHOD}'" >&2
        exit 1
        ;;
esac

# Keep the virtualenv as installed: the build's container mounts this copy
# at /opt/odoo-venv, so starting needs no installation.
cp -a /opt/odoo-venv/. "$DATA/odoo-venv/"

# The database, created anew with every selected addon installed.
oca_wait_for_postgres
dropdb --if-exists "$PGDATABASE"
addons=$(manifestoo --select-addons-dir "$ADDONS_DIR" \
    --select-include "${INCLUDE:-}" --select-exclude "${EXCLUDE:-}" \
    list --separator=,)
odoo_bin=$(command -v odoo || command -v openerp-server)
"$odoo_bin" \
    --data-dir="$DATA/odoo-data-dir" \
    --db-template=template1 \
    --database="$PGDATABASE" \
    --init="${addons:-base}" \
    --stop-after-init

# The start script refuses to run without this mark.
touch "$DATA/initialized"
