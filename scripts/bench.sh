#!/usr/bin/env bash
# Benchmarks pam_ivmfa against google-authenticator-libpam in one run, through real libpam
# with identical stacks, and prints the table that docs/BENCHMARKS.md records. Installs what
# it needs (libpam-google-authenticator), builds in release mode, runs as root (it adds its
# test users only inside a private mount namespace).
#   sudo ./scripts/bench.sh            1000 users
#   sudo ./scripts/bench.sh --users 200
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_packages libpam0g-dev libpam-google-authenticator util-linux
find_cargo
# Two commands: with --bin in the same one, cargo builds only that binary and not the module.
cargo build --release --locked -p pam_ivmfa
cargo build --release --locked -p ivmfa-tests --bin ivmfa-bench
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r)"
exec target/release/ivmfa-bench --module target/release/libpam_ivmfa.so "$@"
