# shellcheck shell=bash
# Sourced by the CI script (set -euo pipefail safe): makes sure the local
# PostgreSQL and MariaDB answer, starting them if they do not, and exports the
# DSNs that enable sqlstore's database tests:
#
#   MLMSOFT_TEST_POSTGRES_DSN  (driver pgx)
#   MLMSOFT_TEST_MYSQL_DSN     (driver github.com/go-sql-driver/mysql)
#
# Values already set in the environment are kept. Each test works under its
# own random table prefix and drops its tables, so the databases may be
# shared and reused. Fails (returns 1) loudly when a service stays down.

mlmsoft_services() {
	local pg_host=127.0.0.1 pg_port=5432 my_host=127.0.0.1 my_port=3306
	local wait_secs=30 i

	mlmsoft_pg_up() { pg_isready -q -h "$pg_host" -p "$pg_port" -U postgres; }
	mlmsoft_my_up() { mariadb-admin --protocol=tcp -h "$my_host" -P "$my_port" -u root --connect-timeout=2 ping >/dev/null 2>&1; }

	# wait_for NAME CHECK: poll CHECK once a second for up to wait_secs.
	mlmsoft_wait_for() {
		local name=$1 check=$2
		for ((i = 0; i < wait_secs; i++)); do
			if "$check"; then
				return 0
			fi
			sleep 1
		done
		echo "services.sh: $name is not answering after ${wait_secs}s" >&2
		return 1
	}

	if ! mlmsoft_pg_up; then
		local pg_version
		pg_version=$(ls /etc/postgresql | sort -V | tail -n 1)
		echo "services.sh: starting PostgreSQL $pg_version" >&2
		pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start || true
		mlmsoft_wait_for PostgreSQL mlmsoft_pg_up || return 1
	fi
	if ! mlmsoft_my_up; then
		echo "services.sh: starting MariaDB" >&2
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
		mlmsoft_wait_for MariaDB mlmsoft_my_up || return 1
	fi

	# The scratch databases.
	if [[ -z "$(psql -h "$pg_host" -p "$pg_port" -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'")" ]]; then
		createdb -h "$pg_host" -p "$pg_port" -U postgres test || return 1
	fi
	mariadb --protocol=tcp -h "$my_host" -P "$my_port" -u root -e "CREATE DATABASE IF NOT EXISTS test" || return 1

	# sqlstore needs no DSN options: times travel as UTC text, so parseTime
	# and loc do not matter (parseTime=true is set to exercise that path).
	export MLMSOFT_TEST_POSTGRES_DSN="${MLMSOFT_TEST_POSTGRES_DSN:-postgres://postgres@${pg_host}:${pg_port}/test?sslmode=disable}"
	export MLMSOFT_TEST_MYSQL_DSN="${MLMSOFT_TEST_MYSQL_DSN:-root@tcp(${my_host}:${my_port})/test?parseTime=true}"
	echo "services.sh: PostgreSQL and MariaDB are up" >&2
}

if ! mlmsoft_services; then
	echo "services.sh: database services unavailable" >&2
	return 1 2>/dev/null || exit 1
fi
