# Sourced by the scripts that build (bash): puts a Rust toolchain on PATH, also under
# `sudo`, whose secure_path leaves out ~/.cargo/bin. Looks in PATH, then in $HOME's
# ~/.cargo/bin, then in the ~/.cargo/bin of the user who ran sudo (SUDO_USER); for the
# latter, rustup's proxies need that user's RUSTUP_HOME, as sudo set HOME to root's.
if ! command -v cargo >/dev/null 2>&1; then
    sudo_home=""
    if [ -n "${SUDO_USER:-}" ]; then
        sudo_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    fi
    for home in "${HOME:-}" "$sudo_home"; do
        if [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ]; then
            export PATH="$home/.cargo/bin:$PATH"
            if [ "$home" != "${HOME:-}" ] && [ -z "${RUSTUP_HOME:-}" ] && [ -d "$home/.rustup" ]; then
                export RUSTUP_HOME="$home/.rustup"
            fi
            break
        fi
    done
    unset sudo_home home
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "no cargo on PATH, in ~/.cargo/bin or in \$SUDO_USER's: install Rust (https://rustup.rs)" >&2
    exit 1
fi
