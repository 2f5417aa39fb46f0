#!/usr/bin/env bash
# The least-privileged database role the Mendwell app instances run as.
#
# compose.yaml mounts this file twice in the postgres container:
#   * run as `app-role.sh --check` before the server starts, so that a placeholder or short
#     password stops the stack before initdb (a failed init script would leave a half-made
#     database behind, and init scripts never run again on an existing volume);
#   * as /docker-entrypoint-initdb.d/10-app-role.sh, which the postgres image sources once,
#     when the data volume is empty, to create the role.
#
# The role name and password come from the app's own MENDWELL_DATABASE_URL (given to this
# container as APP_DATABASE_URL), so docker/.env holds them once. POSTGRES_USER (from
# docker/db-owner.env) owns the database and the tables and is the role migrations run as; the
# app role gets SELECT, INSERT, UPDATE and DELETE on the tables the owner creates, and nothing
# else: it cannot create, alter or drop tables, nor drop the append-only triggers on audit_log.

mendwell_app_role() {
    local url="${APP_DATABASE_URL:?APP_DATABASE_URL (MENDWELL_DATABASE_URL in docker/.env) is not set}"
    local rest="${url#*://}"
    local creds="${rest%%@*}"
    local app_user="${creds%%:*}"
    local app_password="${creds#*:}"
    local owner="${POSTGRES_USER:?POSTGRES_USER (docker/db-owner.env) is not set}"
    # shellcheck disable=SC2034  # read through ${!name} below
    local owner_password="${POSTGRES_PASSWORD:?POSTGRES_PASSWORD (docker/db-owner.env) is not set}"
    local db="${POSTGRES_DB:-$owner}"

    if [[ ! "$app_user" =~ ^[a-z_][a-z0-9_]{0,62}$ ]]; then
        echo "mendwell: the user in MENDWELL_DATABASE_URL must be a plain lower-case role name" >&2
        return 1
    fi
    if [[ "$app_user" == "$owner" ]]; then
        echo "mendwell: MENDWELL_DATABASE_URL must name the app role, not the owner $owner" >&2
        return 1
    fi
    local name value
    for name in app_password owner_password; do
        value="${!name}"
        # Hex or URL-safe base64 (openssl rand -hex 32): nothing that needs percent-encoding.
        if [[ ! "$value" =~ ^[A-Za-z0-9_-]{24,}$ ]]; then
            echo "mendwell: ${name/_/ } is missing, shorter than 24 characters or has characters" \
                 "other than letters, digits, '-' and '_'; generate one: openssl rand -hex 32" >&2
            return 1
        fi
    done
    [[ "${1:-}" == "--check" ]] && return 0

    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$owner" --dbname "$db" \
         -v app_user="$app_user" -v app_password="$app_password" \
         -v owner="$owner" -v db="$db" <<'SQL'
CREATE ROLE :"app_user" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    PASSWORD :'app_password';
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"app_user";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"app_user";
SQL
    echo "mendwell: created database role $app_user (data only) in $db"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    mendwell_app_role "$@"
else
    # Sourced by the postgres image's entrypoint: its positional parameters are not ours.
    mendwell_app_role
fi
