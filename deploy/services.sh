# Local PostgreSQL and Redis for the scaled set-up, the tests and the bench.
# Sourced by .ci/run, `make run-scaled` and `make bench`:
#   . deploy/services.sh; ensure_postgres; ensure_redis
# ensure_postgres exports AGENTSITE_POSTGRES_URL (a superuser role `agentsite` on the
# local cluster). Packages are installed with apt-get when missing and we may (root or
# passwordless sudo); otherwise the error says what to install.

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install() {
    if ! as_root true 2>/dev/null; then
        echo "services: $* is missing; install it (apt-get install $*) or run as root" >&2
        return 1
    fi
    echo "services: installing $*" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

as_postgres() {
    # From / so that psql does not complain about a working directory it cannot read.
    (cd / && as_root runuser -u postgres -- "$@")
}

postgres_version() {
    # The newest installed server version, e.g. 15 (a folder under /etc/postgresql).
    ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1
}

ensure_postgres() {
    local version port
    version="$(postgres_version)"
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$version" ] \
        || [ ! -x "/usr/lib/postgresql/$version/bin/postgres" ]; then
        apt_install postgresql || return 1
        version="$(postgres_version)"
    fi
    if [ -z "$version" ]; then
        echo "services: PostgreSQL is installed but no version is under /etc/postgresql" >&2
        return 1
    fi
    if [ ! -d "/etc/postgresql/$version/main" ]; then
        as_root pg_createcluster "$version" main >/dev/null
    fi
    # status exits 3 when the cluster is down; start refuses a running cluster.
    if ! as_root pg_ctlcluster "$version" main status >/dev/null 2>&1; then
        echo "services: starting PostgreSQL $version" >&2
        as_root pg_ctlcluster "$version" main start
    fi
    port="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')"
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 1
    done
    pg_isready -h 127.0.0.1 -p "$port" >/dev/null || return 1
    if [ "$(as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'agentsite'")" != "1" ]; then
        as_postgres psql -p "$port" -q -v ON_ERROR_STOP=1 \
            -c "CREATE ROLE agentsite LOGIN SUPERUSER PASSWORD 'agentsite'"
    fi
    export AGENTSITE_POSTGRES_URL="postgres://agentsite:agentsite@127.0.0.1:$port/postgres"
}

ensure_redis() {
    # Only the binary: each scaled site starts its own redis-server on a free port.
    if ! command -v redis-server >/dev/null; then
        apt_install redis-server || return 1
    fi
}
