#!/usr/bin/env bash
# Builds the Debian package: the release binary, the man pages and shell
# completions generated from it (`printroute generate-assets`), then `cargo deb`.
# Prints the .deb's path as its last line.
#
#   scripts/package.sh                                  # into target/debian/
#   CARGO_TARGET_DIR=/some/dir scripts/package.sh       # into /some/dir/debian/
#
# Installs cargo-deb first when it is missing (about a minute on 2 cores, once).
set -euo pipefail
# A relative CARGO_TARGET_DIR means the caller's folder, as it does for cargo.
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-$(dirname "$0")/../target}")
export CARGO_TARGET_DIR=$target_dir
cd "$(dirname "$0")/.."
# What cargo sets for a test or a binary it runs (the package test runs this
# script): a build script tracks some of it (ring: CARGO_MANIFEST_DIR), and
# inherited here it made cargo rebuild the whole release binary that
# scripts/test had just built, minutes in every test run.
unset CARGO CARGO_MANIFEST_DIR CARGO_MANIFEST_PATH CARGO_CRATE_NAME CARGO_BIN_NAME \
    CARGO_PRIMARY_PACKAGE CARGO_TARGET_TMPDIR OUT_DIR
for v in $(compgen -v | grep -E '^CARGO_(PKG|BIN_EXE)_' || true); do unset "$v"; done

# The cargo-deb release the [package.metadata.deb] section is written for.
CARGO_DEB_VERSION=3.8.0

if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
    echo "package.sh: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi

# Cargo.toml's assets name target/release/...; cargo-deb maps that prefix to
# $CARGO_TARGET_DIR/release.
# With PAM: the package ships /etc/pam.d/printroute for password sign-in.
cargo build --release --bin printroute --features pam --quiet >&2
assets="$target_dir/release/assets"
rm -rf "$assets"
"$target_dir/release/printroute" generate-assets "$assets" >&2
# Man pages are shipped gzipped (Debian policy 12.1); -n keeps the .deb reproducible.
gzip -9n "$assets"/man/*.8
"$target_dir/release/printroute" check debian/printroute.toml >&2

# --no-build: the binary was built just above, with the same profile.
# --strip: the release profile keeps line tables for backtraces; the package
# ships the binary without them (about 8 MB instead of 44 MB).
# cargo deb prints the .deb's path as its last line on stdout.
deb=$(cargo deb --no-build --strip --quiet | tail -n 1)
[[ -f $deb ]] || { echo "package.sh: cargo deb printed no .deb path ($deb)" >&2; exit 1; }
echo "$deb"
