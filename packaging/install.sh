#!/usr/bin/env bash
# Builds ivmfa from this checkout and installs it on this machine, or takes it off again.
# It never edits PAM or sshd files: enabling the module is a deliberate step, described in
# the README, and so is disabling it before an uninstall.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

usage() {
    cat <<EOF
usage: sudo $0 [--dry-run]
       sudo $0 --uninstall [--force] [--dry-run]

Builds ivmfa (release) and installs
  pam_ivmfa.so   into the directory libpam loads modules from (where pam_unix.so is)
  ivmfa-enroll   into /usr/local/sbin
  man pages      pam_ivmfa(8), ivmfa-enroll(1), ivmfa.toml(5) into /usr/local/share/man
and creates the store /var/lib/ivmfa (0700) and /etc/ivmfa. On Debian it first installs
what the build needs (gcc, libc6-dev, libpam0g-dev), updating the package lists.
It never edits PAM or sshd files.

  --dry-run     print what would be installed or removed; change nothing
  --uninstall   remove what an install put there: the module, ivmfa-enroll, the man pages.
                Kept: the store /var/lib/ivmfa (every user's secret) and /etc/ivmfa.
                Refused while a PAM file still loads pam_ivmfa.so: every login through
                that file would fail once the module is gone.
  --force       with --uninstall: remove the module even though a PAM file loads it
  -h, --help    this text

Exit status: 0 done, 1 failed, 2 usage error, 3 refused.
EOF
}

mode=install dry_run=false force=false
for arg in "$@"; do
    case $arg in
        --dry-run) dry_run=true ;;
        --uninstall) mode=uninstall ;;
        --force) force=true ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "error: unknown option: $arg" >&2
            echo "hint: $0 --help" >&2
            exit 2
            ;;
    esac
done
if $force && [ "$mode" != uninstall ]; then
    echo "error: --force only goes with --uninstall" >&2
    echo "hint: $0 --help" >&2
    exit 2
fi

# Where libpam loads modules from. On Debian, wherever the system's own libpam-modules put
# pam_unix.so: that needs neither gcc nor dpkg-dev, which a bare machine lacks.
find_security_dir() {
    local d unix=""
    if command -v dpkg-query >/dev/null; then
        unix=$(dpkg-query -L "libpam-modules:$(dpkg --print-architecture)" 2>/dev/null |
            grep -m1 '/security/pam_unix\.so$' || true)
    fi
    if [ -n "$unix" ] && [ -e "$unix" ]; then
        dirname "$unix"
        return
    fi
    # Elsewhere, the first directory of the shared list that holds pam_unix.so; the list's
    # "*" entries expand as shell globs here.
    local pattern
    while read -r pattern; do
        case $pattern in /*) ;; *) continue ;; esac
        for d in $pattern; do
            if [ -e "$d/pam_unix.so" ]; then
                echo "$d"
                return
            fi
        done
    done < packaging/pam-module-dirs
    echo "error: cannot find the PAM module directory (the one holding pam_unix.so)" >&2
    echo "hint: install Linux-PAM, or copy target/release/libpam_ivmfa.so there by hand as pam_ivmfa.so" >&2
    exit 1
}

# The package and this script would write the same module file; each must own it alone.
package_installed() {
    dpkg-query -W -f='${Status}' ivmfa 2>/dev/null | grep -q "install ok installed" ||
        rpm -q ivmfa >/dev/null 2>&1
}

# Lines of PAM files that load the module (comments aside), as file:line:text.
pam_lines_loading_module() {
    local f
    for f in /etc/pam.conf /etc/pam.d/* /usr/lib/pam.d/*; do
        [ -f "$f" ] || continue
        grep -Hn '^[^#]*pam_ivmfa' "$f" || true
    done
}

security_dir=$(find_security_dir)
module=$security_dir/pam_ivmfa.so
tool=/usr/local/sbin/ivmfa-enroll
man_pages=(
    /usr/local/share/man/man8/pam_ivmfa.8
    /usr/local/share/man/man1/ivmfa-enroll.1
    /usr/local/share/man/man5/ivmfa.toml.5
)

if [ "$mode" = uninstall ]; then
    for f in "$module" "$tool" "${man_pages[@]}"; do
        echo "remove:  $f"
    done
    echo "keep:    /var/lib/ivmfa (the store) and /etc/ivmfa"
else
    echo "module:  $module"
    echo "tool:    $tool"
    echo "man:     pam_ivmfa(8), ivmfa-enroll(1), ivmfa.toml(5) in /usr/local/share/man"
    echo "store:   /var/lib/ivmfa (0700 root)"
    echo "config:  /etc/ivmfa/ivmfa.toml (optional; built-in defaults without it)"
fi
$dry_run && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "error: changing $security_dir and /usr/local needs root" >&2
    echo "hint: run: sudo $0 $*" >&2
    exit 1
fi
if package_installed; then
    echo "error: the ivmfa package is installed, and it owns $module" >&2
    echo "hint: keep using the package; or remove it first (apt remove ivmfa), then run this again" >&2
    exit 3
fi

if [ "$mode" = uninstall ]; then
    users=$(pam_lines_loading_module)
    if [ -n "$users" ]; then
        echo "$users" >&2
        if ! $force; then
            echo "error: these PAM lines load pam_ivmfa.so; without the module every login through them fails" >&2
            echo "hint: remove those lines first (keep a root shell open), then run this again; --force removes it anyway" >&2
            exit 3
        fi
        echo "warning: --force: removing the module that these PAM lines load; logins through them will fail" >&2
    fi
    rm -f -- "$module" "$tool" "${man_pages[@]}"
    # The section directories, if the install made them: nothing else needs them empty.
    for page in "${man_pages[@]}"; do
        rmdir "$(dirname "$page")" 2>/dev/null || true
    done
    echo "uninstalled. Kept: /var/lib/ivmfa (every user's secret, state and pending request)"
    echo "and /etc/ivmfa; remove them yourself once nobody will need those enrollments again."
    exit 0
fi

if command -v apt-get >/dev/null; then
    ensure_packages gcc libc6-dev libpam0g-dev
fi

# Only the two crates that get installed, as packaging/build-packages.sh builds them, so a
# build for the packages already there is reused.
build=(cargo build --release --locked -p pam_ivmfa -p ivmfa-enroll)
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    # As the invoking user, with their Rust toolchain, so target/ stays theirs.
    # shellcheck disable=SC2016 # expanded by the inner shell
    sudo -u "$SUDO_USER" -H bash -lc 'cd "$1" && source scripts/lib.sh && find_cargo && shift && "$@"' \
        bash "$PWD" "${build[@]}"
else
    find_cargo
    "${build[@]}"
fi

# install(1) replaces the file rather than writing into it, so the module mapped by a
# running sshd stays intact.
install -D -o root -g root -m 0644 target/release/libpam_ivmfa.so "$module"
install -D -o root -g root -m 0755 target/release/ivmfa-enroll "$tool"
for page in "${man_pages[@]}"; do
    install -D -o root -g root -m 0644 "docs/man/$(basename "$page")" "$page"
done
install -d -o root -g root -m 0700 /var/lib/ivmfa
install -d -o root -g root -m 0755 /etc/ivmfa
echo "installed. Next: sudo ivmfa-enroll enroll USER, then add pam_ivmfa.so to a PAM stack (see README.md)."
