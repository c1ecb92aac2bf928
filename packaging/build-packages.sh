#!/usr/bin/env bash
# Builds target/debian/ivmfa_*.deb (cargo-deb) and target/generate-rpm/ivmfa-*.rpm
# (cargo-generate-rpm), installing both tools from crates.io if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
find_cargo
# dpkg-architecture names the module directory; cargo-deb runs dpkg-shlibdeps for Depends.
ensure_packages dpkg-dev
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
command -v cargo-generate-rpm >/dev/null || cargo install cargo-generate-rpm --locked
cargo build --release --locked -p pam_ivmfa -p ivmfa-enroll
mkdir -p packaging/build/man
for page in docs/man/*.[158]; do
    gzip -9n -c "$page" > "packaging/build/man/$(basename "$page").gz"
done

# The module must land where libpam of the build's architecture looks: Debian's multiarch
# directory (lib/x86_64-linux-gnu/security, lib/aarch64-linux-gnu/security, ...) and rpm's
# %{_libdir}/security (/usr/lib64 for a 64-bit build, /usr/lib for a 32-bit one). The
# manifests cannot compute a path, so the module is staged under that directory name and
# their assets take it with a wildcard standing for it (see ivmfa-enroll/Cargo.toml). The
# stage is under target/release so that cargo-deb treats the module as a build product:
# dpkg-shlibdeps then adds libpam0g to Depends.
stage=target/release/pam-module
rm -rf "$stage"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
# Byte 5 of an ELF header is its class: 1 for 32-bit, 2 for 64-bit.
case $(od -An -tu1 -j4 -N1 target/release/libpam_ivmfa.so | tr -d ' ') in
    2) rpm_libdir=lib64 ;;
    *) rpm_libdir=lib ;;
esac
install -D -m 0644 target/release/libpam_ivmfa.so "$stage/deb/$multiarch/security/pam_ivmfa.so"
install -D -m 0644 target/release/libpam_ivmfa.so "$stage/rpm/$rpm_libdir/security/pam_ivmfa.so"

cargo deb -p ivmfa-enroll --no-build
cargo generate-rpm -p ivmfa-enroll
ls -1 target/debian/*.deb target/generate-rpm/*.rpm
