#!/usr/bin/env bash
# Builds ivmfa and installs it on this machine. It never edits PAM or sshd files: enabling the
# module is a deliberate step, described in the README.
#
#   sudo ./packaging/install.sh            build (release) and install
#   sudo ./packaging/install.sh --dry-run  only print where things would go
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=false
[ "${1:-}" = "--dry-run" ] && dry_run=true

# Where libpam looks for modules: Debian's multiarch directory, /usr/lib64/security on
# RHEL-family systems, /lib/security or /usr/lib/security elsewhere.
find_security_dir() {
    local d arch
    arch=$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || true)
    for d in ${arch:+/usr/lib/$arch/security /lib/$arch/security} /usr/lib64/security /lib64/security \
             /usr/lib/security /lib/security; do
        if [ -e "$d/pam_unix.so" ]; then
            echo "$d"
            return
        fi
    done
    echo "error: cannot find the PAM module directory (the one holding pam_unix.so)" >&2
    echo "hint: install Linux-PAM, or copy target/release/libpam_ivmfa.so there by hand as pam_ivmfa.so" >&2
    exit 1
}

security_dir=$(find_security_dir)
echo "module:  $security_dir/pam_ivmfa.so"
echo "tool:    /usr/local/sbin/ivmfa-enroll (man ivmfa-enroll)"
echo "store:   /var/lib/ivmfa (0700 root)"
echo "config:  /etc/ivmfa/ivmfa.toml (optional; built-in defaults without it)"
$dry_run && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing into $security_dir needs root" >&2
    echo "hint: run: sudo $0" >&2
    exit 1
fi

if ! [ -e /usr/include/security/pam_modules.h ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libpam0g-dev
fi

# Build as the invoking user when run through sudo, so target/ stays theirs.
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    sudo -u "$SUDO_USER" -H bash -lc "cd '$PWD' && cargo build --release --locked"
else
    cargo build --release --locked
fi

install -D -o root -g root -m 0644 target/release/libpam_ivmfa.so "$security_dir/pam_ivmfa.so"
install -D -o root -g root -m 0755 target/release/ivmfa-enroll /usr/local/sbin/ivmfa-enroll
install -D -o root -g root -m 0644 docs/man/ivmfa-enroll.1 /usr/local/share/man/man1/ivmfa-enroll.1
install -d -o root -g root -m 0700 /var/lib/ivmfa
install -d -o root -g root -m 0755 /etc/ivmfa
echo "installed. Next: sudo ivmfa-enroll enroll USER, then add pam_ivmfa.so to a PAM stack (see README.md)."
