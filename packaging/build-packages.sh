#!/usr/bin/env bash
# Builds target/debian/ivmfa_*.deb (cargo-deb) and target/generate-rpm/ivmfa-*.rpm
# (cargo-generate-rpm), installing both tools from crates.io if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
command -v cargo-generate-rpm >/dev/null || cargo install cargo-generate-rpm --locked
cargo build --release --locked -p pam_ivmfa -p ivmfa-enroll
mkdir -p packaging/build/man
for page in docs/man/*.[158]; do
    gzip -9n -c "$page" > "packaging/build/man/$(basename "$page").gz"
done
cargo deb -p ivmfa-enroll --no-build
cargo generate-rpm -p ivmfa-enroll
ls -1 target/debian/*.deb target/generate-rpm/*.rpm
