#!/usr/bin/env bash
# Puts the Fashion-MNIST IDX files into data/fashion-mnist/, or into the folder given as the first
# argument. They come from Debian's package `dataset-fashion-mnist`, which installs the four
# gzip-compressed files in /usr/share/datasets/fashion-mnist/; the package is installed with apt-get
# (sudo when not root) if that folder is absent. The files are symlinked (copied where links fail)
# as NAME.gz, which kiln reads directly. The decompressed content of each file is checked against its
# SHA-256; a mismatch removes the link and fails. Running it again when all is in place does nothing.
#
#   data/fetch-fashion-mnist.sh [TARGET_DIR]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET="${1:-$SCRIPT_DIR/fashion-mnist}"
SRC_DIR="/usr/share/datasets/fashion-mnist"
DEB="dataset-fashion-mnist"

FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
# SHA-256 of the decompressed IDX data (Debian recompresses the upstream .gz files, so the compressed
# bytes differ from upstream's published MD5s; the content does not).
declare -A SHA256=(
  [train-images-idx3-ubyte]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
  [train-labels-idx1-ubyte]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
  [t10k-images-idx3-ubyte]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
  [t10k-labels-idx1-ubyte]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
)

die() { echo "fetch-fashion-mnist: error: $*" >&2; exit 1; }
say() { echo "fetch-fashion-mnist: $*"; }

command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (install coreutils)"
command -v gzip >/dev/null 2>&1 || die "gzip not found (apt-get install gzip)"

# SHA-256 of a file's content, decompressed when it is gzip (empty on a damaged stream).
content_sha() {
  if [[ "$1" == *.gz ]]; then
    gzip -dc "$1" 2>/dev/null | sha256sum | cut -d' ' -f1 || true
  else
    sha256sum "$1" | cut -d' ' -f1
  fi
}

all_verified() {
  local f
  for f in "${FILES[@]}"; do
    [[ -f "$TARGET/$f.gz" ]] || return 1
    [[ "$(content_sha "$TARGET/$f.gz")" == "${SHA256[$f]}" ]] || return 1
  done
}

if all_verified; then
  say "Fashion-MNIST already present and verified in $TARGET"
  exit 0
fi

# ---- the Debian package ---------------------------------------------------------------------------
missing_src() {
  local f
  for f in "${FILES[@]}"; do [[ -f "$SRC_DIR/$f.gz" ]] || return 0; done
  return 1
}
if missing_src; then
  command -v apt-get >/dev/null 2>&1 \
    || die "$SRC_DIR is missing and apt-get is not available: this script needs Debian/Ubuntu's $DEB package"
  SUDO=""
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "installing $DEB needs root and sudo is not available: apt-get install $DEB"
    SUDO="sudo"
  fi
  say "installing the Debian package $DEB (about 31 MB)"
  $SUDO apt-get update || die "apt-get update failed"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$DEB" \
    || die "apt-get install $DEB failed (the package is in Debian >= 11 and Ubuntu >= 20.10, section science)"
  missing_src && die "$DEB is installed but $SRC_DIR does not hold the four .gz files (check: dpkg -L $DEB)"
fi

# ---- link (or copy) into the target ---------------------------------------------------------------
mkdir -p "$TARGET" || die "cannot create $TARGET"
status=0
for f in "${FILES[@]}"; do
  src="$SRC_DIR/$f.gz"
  dst="$TARGET/$f.gz"
  got="$(content_sha "$src")"
  if [[ "$got" != "${SHA256[$f]}" ]]; then
    rm -f "$dst"
    echo "fetch-fashion-mnist: error: SHA-256 mismatch for $src (decompressed): expected ${SHA256[$f]}, got ${got:-<unreadable gzip>}; try: apt-get install --reinstall $DEB" >&2
    status=1
    continue
  fi
  rm -f "$dst"
  if ln -s "$src" "$dst" 2>/dev/null; then
    how="linked"
  else
    cp "$src" "$dst" || die "cannot copy $src to $dst"
    how="copied"
  fi
  say "ok  $f.gz  $how  $(stat -L -c %s "$dst") bytes  sha256(decompressed) $got"
  if [[ -e "$TARGET/$f" ]]; then
    say "warning: $TARGET/$f also exists and is read instead of $f.gz (remove it if it is stale)"
  fi
done
[[ $status -eq 0 ]] || die "checksum verification failed"

all_verified || die "verification of $TARGET failed"
say "Fashion-MNIST ready in $TARGET"
