# shellcheck shell=bash
# Shell functions shared by the scripts in scripts/ and packaging/; sourced, not run.

# Installs those of the given Debian packages that are not installed yet.
ensure_packages() {
    local missing=() p sudo=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    echo "installing: ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # Cloud images and containers ship with empty package lists, where every install fails
    # with "has no installation candidate"; and on a first boot unattended-upgrades often
    # holds the dpkg lock for a while, so wait for it rather than fail.
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
    $sudo "${apt[@]}" update -qq
    $sudo "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}"
}

# Puts cargo on PATH: rustup's default location, in case this shell's PATH lacks it (sudo, CI).
find_cargo() {
    if ! command -v cargo >/dev/null && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
        PATH="${HOME:-/root}/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null; then
        echo "error: cargo not found" >&2
        echo "hint: install Rust 1.89 or newer with rustup (https://rustup.rs), then run this again" >&2
        exit 1
    fi
}
