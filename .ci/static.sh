#!/usr/bin/env bash
# The static binary for tests/static_binary.rs, which starts it in an empty
# root directory (no shell, no libraries, no /etc): the part of the scratch
# image that can be checked here, where Docker cannot run.
#
#   eval "$(bash .ci/static.sh)"   # prints: export WM_STATIC_BIN=/abs/path
#
# Builds the release binary for the host's glibc target with crt-static (the
# Dockerfile builds on musl instead; see README "Install on a node") into its
# own target directory (STATIC_TARGET_DIR, default target/static), so the
# RUSTFLAGS change does not invalidate the normal build's cache. Refuses an
# ELF with an interpreter or NEEDED libraries when readelf is there (the test
# checks the same without it). Only the export line goes to stdout; progress
# and errors go to stderr. Exits 3 where it cannot build at all (not a glibc
# host, no static glibc), 1 when a build fails: the tests, which run this
# when WM_STATIC_BIN is unset (tests/kit/src/provision.rs), skip on 3 and
# fail on 1.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "static.sh: $*" >&2; }

DIR="${STATIC_TARGET_DIR:-$PWD/target/static}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac

# The host's own glibc target (x86_64-unknown-linux-gnu on the CI machines),
# named explicitly: with --target, RUSTFLAGS reach only the target's crates,
# not the build scripts and proc macros, which must stay dynamic.
TARGET=$(rustc -vV | sed -n 's/^host: //p')
case "$TARGET" in
  *-linux-gnu) ;;
  *) say "the host target is '$TARGET': this script builds for a *-linux-gnu host only"; exit 3 ;;
esac

# crt-static on glibc links libc.a (and friends) from libc6-dev.
libc_a=$(cc -print-file-name=libc.a 2>/dev/null || true)
if [ ! -f "$libc_a" ]; then
  say "no static glibc (libc.a) found; install libc6-dev"
  exit 3
fi

say "building $TARGET with +crt-static into $DIR (libc: $libc_a)"
start=$SECONDS
# cargo's output goes to stderr. glibc's linker warning that getaddrinfo in
# a static program "requires at runtime the shared libraries from the glibc
# version used for linking" is not shown (rustc hides linker output) and
# does not bite: the manager resolves only the backend's and S3's host names
# (the API server is an IP), and glibc >= 2.34 has the files and dns NSS
# modules built in, so with no /etc/nsswitch.conf it reads /etc/hosts and
# /etc/resolv.conf (which the container runtime provides) without loading
# any library. The test itself connects by IP only.
CARGO_TARGET_DIR="$DIR" RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$TARGET" \
  -p workload-manager --bin workload-manager >&2
bin="$DIR/$TARGET/release/workload-manager"
[ -x "$bin" ] || { say "no binary at $bin"; exit 1; }

if command -v readelf >/dev/null 2>&1; then
  if readelf -lW "$bin" | grep -q 'program interpreter' || readelf -dW "$bin" | grep -q '(NEEDED)'; then
    say "$bin is not statically linked"
    exit 1
  fi
fi
"$bin" --version >&2
say "built in $((SECONDS - start)) s: $bin ($(stat -c %s "$bin") bytes)"
echo "export WM_STATIC_BIN=$bin"
