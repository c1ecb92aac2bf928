#!/usr/bin/env bash
# Benchmarks pam_ivmfa against google-authenticator-libpam in one run, through real libpam
# with identical stacks, then pam_ivmfa on the fleet database (backend = "postgres": a new TLS
# connection per round straight to PostgreSQL, and through PgBouncer in transaction pooling)
# beside both, and prints the tables that docs/BENCHMARKS.md records. Installs what it needs
# (libpam-google-authenticator, postgresql, pgbouncer), builds in release mode, runs as root
# (it adds its test users only inside a private mount namespace, and starts its own
# PostgreSQL and PgBouncer on 127.0.0.1, stopped at the end).
#   sudo ./scripts/bench.sh              1000 users, everything
#   sudo ./scripts/bench.sh --users 200
#   sudo ./scripts/bench.sh --fleet-only  only the fleet's tables (the file store and
#                                         google-authenticator measured beside it)
#   sudo ./scripts/bench.sh --no-fleet    only the file store against google-authenticator
#   sudo ./scripts/bench.sh --fleet-only --pg-options "-c NAME=VALUE ..."
#                                         settings for the fleet's PostgreSQL, after the
#                                         benchmark's own (fsync on)
#   sudo ./scripts/bench.sh --compare old.so,target/release/libpam_ivmfa.so
#                                         builds of the module side by side through
#                                         PgBouncer, turn by turn in one running benchmark
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_packages libpam0g-dev libpam-google-authenticator util-linux openssl postgresql pgbouncer
find_cargo
# Two commands: with --bin in the same one, cargo builds only that binary and not the module.
cargo build --release --locked -p pam_ivmfa
cargo build --release --locked -p ivmfa-tests --bin ivmfa-bench
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r)"
exec target/release/ivmfa-bench --module target/release/libpam_ivmfa.so "$@"
