# Shell functions shared by test.sh and bench.sh; sourced, not run.

# Installs those of the given Debian packages that are not installed yet.
ensure_packages() {
    local missing=() p sudo=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    echo "installing: ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
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
