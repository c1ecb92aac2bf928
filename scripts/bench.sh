#!/usr/bin/env bash
# Benchmarks pam_ivmfa against google-authenticator-libpam in one run, through real libpam
# with identical stacks, and prints the table that docs/BENCHMARKS.md records. Installs what
# it needs (libpam-google-authenticator), builds in release mode, runs as root (it adds its
# test users only inside a private mount namespace).
#   sudo ./scripts/bench.sh            1000 users
#   sudo ./scripts/bench.sh --users 200
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for p in libpam0g-dev libpam-google-authenticator util-linux; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
cargo build --release --locked -p pam_ivmfa -p ivmfa-tests --bin ivmfa-bench
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r)"
exec target/release/ivmfa-bench --module target/release/libpam_ivmfa.so "$@"
