# Sourced by the side-by-side scripts: finds the kiln binary ($KILN, else build/ or build-cpu/) and a
# python3 that has PyTorch ($PYTHON, else python3 or Debian's /usr/bin/python3).
KILN=${KILN:-build/kiln}
[[ -x $KILN ]] || KILN=build-cpu/kiln
[[ -x $KILN ]] || { echo "build kiln first: ./kiln.sh build" >&2; exit 1; }
PYTHON=${PYTHON:-}
if [[ -z $PYTHON ]]; then
  for p in python3 /usr/bin/python3; do
    if $p -c 'import torch' 2>/dev/null; then PYTHON=$p; break; fi
  done
fi
[[ -n $PYTHON ]] || { echo "no python3 with torch found (apt-get install python3-torch)" >&2; exit 1; }
