#!/usr/bin/env bash
# The whole test suite: installs the Debian packages the tests need, checks formatting and
# lints, builds everything (and the .deb and .rpm), then runs every tier: core unit tests,
# real libpam, store faults and crashes, the CLI on a pseudo-terminal, sshd end to end,
# console login and su, the fleet schema in a PostgreSQL server the tests start themselves
# (Debian's postgresql; its pgcrypto comes with postgresql-15; pgbouncer in front of it for
# one test), and the package installed, used and purged.
# The package tier really installs and purges the package "ivmfa": do not run the suite on a
# machine that uses ivmfa.
# Run it as root (or with sudo): some tiers need root (chown, mount namespaces, setuid
# programs); they are ignored by a plain `cargo test` and run here. When CI is set, a tier
# whose other prerequisites are missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh
ensure_packages libpam0g-dev libpam-modules binutils util-linux bsdutils coreutils zbar-tools \
    librsvg2-bin openssh-server openssh-client openssl lintian rpm strace \
    libpam-google-authenticator libpam-oath man-db sudo postgresql pgbouncer
find_cargo

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The tests load the built module and run the driver, so build every binary first, and the
# .deb and .rpm for the package tier.
cargo build --workspace --locked
./packaging/build-packages.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Tests that need root are #[ignore = "needs root"], so that a plain `cargo test` by a user
# counts them as not run; here, as root, every one of them runs. --no-fail-fast: one failing
# binary must not hide how the others fare.
cargo test --workspace --locked --no-fail-fast -- --include-ignored 2>&1 | tee "$log" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "all tiers: %d passed, %d failed\n", p, f
           if (i > 0) { printf "error: %d test(s) ignored; every tier must run here\n", i; exit 1 } }' \
    "$log" || status=1
exit "$status"
