# Shared by the CLI tests: make_mnist DIR TRAIN TEST writes a tiny MNIST-format dataset (28x28 IDX
# files with big-endian headers) of random pixels, labels cycling 0..9.
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
make_split() {  # dir prefix count
  { printf '\x00\x00\x08\x03'; be32 "$3"; be32 28; be32 28; head -c $(($3 * 784)) /dev/urandom; } >"$1/$2-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01'; be32 "$3"; for ((i = 0; i < $3; i++)); do printf "\\x0$((i % 10))"; done; } >"$1/$2-labels-idx1-ubyte"
}
make_mnist() {
  mkdir -p "$1"
  make_split "$1" train "$2"
  make_split "$1" t10k "$3"
}
