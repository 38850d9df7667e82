#!/usr/bin/env bash
# End-to-end checks of `kiln eval`, `kiln predict` and `--val-data` on odd image folders and image
# files: each case must fail with exit status != 0 and one `kiln: error:` line naming the culprit,
# or give the right result; never crash (status >= 128), hang, or print a meaningless number.
# Usage: bad_folders.sh path/to/kiln
set -u
KILN=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0 passes=0
IMG="python3 $(dirname "$0")/image_folder.py"

# expect_error "what" "needle" cmd...: non-zero exit below 128, stderr mentions needle.
expect_error() {
  local what=$1 needle=$2
  shift 2
  local err status
  err=$(timeout 60 "$@" 2>&1 >/dev/null)
  status=$?
  if [[ $status -eq 0 || $status -ge 124 ]]; then
    echo "FAIL: $what: exit status $status"; echo "$err" | head -3; fails=$((fails + 1)); return
  fi
  if ! grep -qF -- "$needle" <<<"$err"; then
    echo "FAIL: $what: message lacks '$needle':"; echo "$err" | head -3; fails=$((fails + 1)); return
  fi
  passes=$((passes + 1))
}
# check "what" cmd...: the command (a test of output) succeeds.
check() {
  local what=$1
  shift
  if "$@"; then passes=$((passes + 1)); else echo "FAIL: $what"; fails=$((fails + 1)); fi
}
# Commands as arrays (expect_error runs a program, not a function): add --out/--data/--checkpoint.
MLP=("$KILN" train --model mlp --hidden 16 --image-size 28 --dataset imagefolder --epochs 1 --batch-size 4
  --workers 2 --device cpu --quiet)
CNN=("$KILN" train --model alexnet --image-size 64 --dataset imagefolder --epochs 1 --batch-size 4 --workers 2
  --device cpu --quiet)
EVAL=("$KILN" eval --dataset imagefolder --device cpu)
loss_of() { sed -n 's/.*loss \([0-9.]*\).*/\1/p'; }

# Fixtures: 80x60 images (not square, so a centre crop and a whole-image resize differ).
$IMG folder "$T/ab" ant,bee 6
$IMG folder "$T/cd" cat,dog 6
$IMG folder "$T/abc" ant,bee,cat 6
"${CNN[@]}" --data "$T/ab" --out "$T/cnn" >/dev/null || { echo "FAIL: the AlexNet fixture run did not train"; exit 1; }
"${MLP[@]}" --data "$T/ab" --out "$T/mlp" >/dev/null || { echo "FAIL: the MLP fixture run did not train"; exit 1; }

# Classes are compared by name and count, before evaluating.
expect_error "eval: other class names, same count" "image folder $T/cd does not have the classes of the model" \
  "${EVAL[@]}" --checkpoint "$T/cnn/model.safetensors" --data "$T/cd"
expect_error "eval: the differing names are named" "label 0 is 'cat', not 'ant'" "${EVAL[@]}" --checkpoint "$T/cnn/model.safetensors" --data "$T/cd"
expect_error "--val-data with other class names" "label 1 is 'dog', not 'bee'" \
  "${MLP[@]}" --out "$T/val" --data "$T/ab" --val-data "$T/cd"
expect_error "eval: 3-class folder, 2-class model" "has 3 classes ('ant', 'bee', 'cat') but the model in $T/cnn" \
  "${EVAL[@]}" --checkpoint "$T/cnn/model.safetensors" --data "$T/abc"
expect_error "--val-data with another class count" "has 3 classes" "${MLP[@]}" --out "$T/val" --data "$T/ab" --val-data "$T/abc"
mkdir -p "$T/junkval/ant" "$T/junkval/bee" && echo junk >"$T/junkval/ant/1.png" && echo junk >"$T/junkval/bee/2.png"
expect_error "--val-data where nothing decodes (not 0% accuracy)" "none of the test set's images could be decoded" \
  "${MLP[@]}" --out "$T/junkrun" --data "$T/ab" --val-data "$T/junkval"

# A class folder name with a newline keeps every class name in place (stored as a JSON array).
printf 'a\nb\0c\0d\0' >"$T/names"
$IMG folder "$T/nl" --classes-file="$T/names" 3
"${MLP[@]}" --out "$T/nlrun" --data "$T/nl" || { echo "FAIL: training on a folder with a newline in a class name"; fails=$((fails + 1)); }
check "class names with a newline survive the model file" python3 -c '
import json, subprocess, sys
out = subprocess.run([sys.argv[1], "predict", "--checkpoint", sys.argv[2], sys.argv[3], "--json", "--device", "cpu"],
                     capture_output=True, check=True).stdout
assert list(json.loads(out)["probabilities"]) == ["a\nb", "c", "d"], out' "$KILN" "$T/nlrun/model.safetensors" "$T/nl/c/0.png"
check "plain predict output escapes the newline in a class name" \
  bash -c '[[ $("$0" predict --checkpoint "$1" "$2" --top-k 3 --device cpu | wc -l) == 1 ]]' "$KILN" "$T/nlrun/model.safetensors" "$T/nl/c/0.png"

# A Latin-1 class folder name fails before training, naming the folder.
printf 'caf\xe9\0tea\0' >"$T/names1"
$IMG folder "$T/latin1" --classes-file="$T/names1" 3
expect_error "Latin-1 class folder" "class folder 'caf\\xe9' is not valid UTF-8" "${MLP[@]}" --out "$T/l1run" --data "$T/latin1"
check "the Latin-1 run failed before training" test ! -e "$T/l1run/metrics.jsonl"

# eval and predict apply one evaluation transform, the model's: eval's loss is the mean of
# -log p(label) over predict's probabilities of the same files, for the MLP at 28 px as for AlexNet.
for run in mlp cnn; do
  eval_loss=$("${EVAL[@]}" --checkpoint "$T/$run/model.safetensors" --data "$T/ab" | loss_of)
  check "eval and predict see the same inputs ($run)" python3 -c '
import json, math, subprocess, sys
kiln, model, root, want = sys.argv[1:5]
files = [f"{root}/{c}/{i}.png" for c in ("ant", "bee") for i in range(6)]
out = subprocess.run([kiln, "predict", "--checkpoint", model, "--json", "--device", "cpu"] + files,
                     capture_output=True, check=True).stdout.decode().splitlines()
losses = [-math.log(json.loads(l)["probabilities"][f.split("/")[-2]]) for l, f in zip(out, files)]
got = sum(losses) / len(losses)
assert abs(got - float(want)) < 2e-4, (got, want)' "$KILN" "$T/$run/model.safetensors" "$T/ab" "$eval_loss"
done

# Undecodable files are skipped for real (not replaced by duplicates), counted and named; --strict refuses them.
cp -r "$T/ab" "$T/junk" && echo "not an image" >"$T/junk/ant/zz.png"
clean_loss=$("${EVAL[@]}" --checkpoint "$T/cnn/model.safetensors" --data "$T/ab" | loss_of)
junk_out=$("${EVAL[@]}" --checkpoint "$T/cnn/model.safetensors" --data "$T/junk" 2>"$T/junk.err")
check "eval skips the undecodable file: 12 images, the clean folder's loss" \
  test "$(loss_of <<<"$junk_out")" = "$clean_loss" -a -n "$(grep -F '(12 images)' <<<"$junk_out")"
check "eval names the skipped file" grep -qF "skipped 1 undecodable file: $T/junk/ant/zz.png" "$T/junk.err"
expect_error "eval --strict on an undecodable file" "$T/junk/ant/zz.png: cannot decode image" "${EVAL[@]}" --checkpoint "$T/cnn/model.safetensors" --data "$T/junk" --strict
mkdir -p "$T/alljunk/ant" "$T/alljunk/bee" && echo x >"$T/alljunk/ant/a.png" && echo x >"$T/alljunk/bee/b.png"
expect_error "eval on a folder of junk files" "none of the 2 images of image folder $T/alljunk could be decoded" \
  "${EVAL[@]}" --checkpoint "$T/cnn/model.safetensors" --data "$T/alljunk"

# predict output is one line per image, valid JSON with --json, whatever the file names hold.
cp "$T/ab/ant/0.png" "$T/"$'\xff'".png" && cp "$T/ab/ant/0.png" "$T/"$'new\nline'".png"
odd=("$T/"$'\xff'".png" "$T/"$'new\nline'".png")
check "predict --json with non-UTF-8 and newline file names is valid JSON" python3 -c '
import json, subprocess, sys
out = subprocess.run([sys.argv[1], "predict", "--checkpoint", sys.argv[2], "--json", "--device", "cpu"] + sys.argv[3:],
                     capture_output=True, check=True).stdout.decode("utf-8").splitlines()
names = [json.loads(l)["image"] for l in out]
assert len(names) == 2 and names[0].endswith("/\ufffd.png") and names[1].endswith("/new\nline.png"), names' \
  "$KILN" "$T/cnn/model.safetensors" "${odd[@]}"
plain=$("$KILN" predict --checkpoint "$T/cnn/model.safetensors" --device cpu "${odd[@]}")
check "plain predict escapes odd file names, one line each" \
  test "$(wc -l <<<"$plain")" = 2 -a -n "$(grep -F '\xff.png:' <<<"$plain")" -a -n "$(grep -F 'new\nline.png:' <<<"$plain")"

# Odd image files: a header claiming a huge image is refused before decoding; tiny, grey, grey+alpha,
# RGBA and 16-bit PNGs all classify, with either model.
python3 -c 'import struct, sys, zlib
body = b"IHDR" + struct.pack(">IIBBBBB", 16000, 17000, 8, 2, 0, 0, 0)
sys.stdout.buffer.write(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body)))' >"$T/bomb.png"
expect_error "predict: a PNG header claiming 16000x17000 pixels" "bomb.png: image of 16000x17000 pixels is too large" \
  "$KILN" predict --checkpoint "$T/cnn/model.safetensors" --device cpu "$T/bomb.png"
$IMG png "$T/1x1.png" 1 1 && $IMG png "$T/grey.png" 30 20 1 && $IMG png "$T/ga.png" 30 20 2
$IMG png "$T/rgba.png" 30 20 4 && $IMG png "$T/grey16.png" 30 20 1 16 && $IMG png "$T/rgb16.png" 30 20 3 16
for run in mlp cnn; do
  out=$("$KILN" predict --checkpoint "$T/$run/model.safetensors" --device cpu --top-k 100 "$T"/{1x1,grey,ga,rgba,grey16,rgb16}.png)
  check "predict on 1x1, grey, grey+alpha, RGBA and 16-bit PNGs ($run)" test "$(grep -cE '^[^:]+\.png: (ant|bee) \([0-9.]+%\), (ant|bee) \([0-9.]+%\)$' <<<"$out")" = 6
done
expect_error "predict --top-k 0" "--top-k must be at least 1" "$KILN" predict --checkpoint "$T/cnn/model.safetensors" --top-k 0 "$T/grey.png"
# Folders: an empty class folder is an error naming it; a class of junk files is evaluated without
# it, naming them; a directory named like an image is not an image.
mkdir -p "$T/emptyclass" && cp -r "$T/ab/ant" "$T/ab/bee" "$T/emptyclass/" && mkdir "$T/emptyclass/cat"
expect_error "eval: an empty class folder" "class 'cat' ($T/emptyclass/cat) holds no images" \
  "${EVAL[@]}" --checkpoint "$T/cnn/model.safetensors" --data "$T/emptyclass"
mkdir -p "$T/junkclass/bee" "$T/ab/ant/dir.png" && cp -r "$T/ab/ant" "$T/junkclass/" && echo x >"$T/junkclass/bee/1.png"
check "eval: a class of junk files is skipped and named" bash -c '"$@" 2>&1 | grep -qF "skipped 1 undecodable file: ${@: -1}/bee/1.png"' \
  _ "${EVAL[@]}" --checkpoint "$T/cnn/model.safetensors" --data "$T/junkclass"
check "eval: a directory named like an image is no image" bash -c '"$@" | grep -qF "(12 images)"' \
  _ "${EVAL[@]}" --checkpoint "$T/cnn/model.safetensors" --data "$T/ab"
rmdir "$T/ab/ant/dir.png"

# predict in batches: 150 files (three forward passes) give the lines the files give one by one.
many=()
for i in $(seq 0 149); do many+=("$T/ab/$( ((i % 2)) && echo bee || echo ant)/$((i % 6)).png"); done
"$KILN" predict --checkpoint "$T/cnn/model.safetensors" --json --device cpu "${many[@]}" >"$T/many.jsonl"
check "predict on 150 files equals predict per file" python3 -c '
import json, subprocess, sys
kiln, model, got = sys.argv[1], sys.argv[2], open(sys.argv[3]).read().splitlines()
files = sys.argv[4:]
assert len(got) == len(files), len(got)
for i in (0, 1, 63, 64, 127, 128, 149):
    one = subprocess.run([kiln, "predict", "--checkpoint", model, "--json", "--device", "cpu", files[i]],
                         capture_output=True, check=True).stdout.decode()
    a, b = json.loads(got[i]), json.loads(one)
    assert a["image"] == b["image"] and a["top"] == b["top"], (i, a, b)
    assert all(abs(a["probabilities"][k] - b["probabilities"][k]) < 1e-5 for k in b["probabilities"]), (i, a, b)
' "$KILN" "$T/cnn/model.safetensors" "$T/many.jsonl" "${many[@]}"

# ... and in bounded memory: 2,000 files need about what 64 (one forward pass) need, not 30 times it.
peak_kb() { python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"; }
one_batch=$(peak_kb "$KILN" predict --checkpoint "$T/cnn/model.safetensors" --device cpu "${many[@]:0:64}")
for _ in 1 2 3 4; do many+=("${many[@]}"); done  # 2,400 files
all_files=$(peak_kb "$KILN" predict --checkpoint "$T/cnn/model.safetensors" --device cpu "${many[@]:0:2000}")
check "predict on 2,000 files peaks at ${all_files} KB, 64 files at ${one_batch} KB" \
  test "$all_files" -lt $((one_batch * 3 / 2 + 50000))

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]
