#!/usr/bin/env bash
# Writes the seeds of the container and header fuzz targets (fuzz/corpus/{mp4,measured,audio}/):
# tiny real files made by the tools tests/media_files.rs uses (scripts/setup installs them).
# Run from the repository root: bash fuzz/make_media_corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
C=fuzz/corpus
mkdir -p "$C/mp4" "$C/measured" "$C/audio"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ff() { ffmpeg -v error -y "$@"; }
tone=(-f lavfi -i sine=frequency=440:duration=0.3)
video=(-f lavfi -i testsrc=size=64x48:rate=5:duration=0.4 -c:v mpeg4)

ff "${tone[@]}" -c:a aac -b:a 16k "$C/mp4/voice-moov-last.m4a"
ff "${tone[@]}" -c:a aac -b:a 16k -movflags +faststart "$C/mp4/voice-faststart.m4a"
ff "${video[@]}" "$tmp/portrait.mp4"
exiftool -q -overwrite_original -Rotation=90 "$tmp/portrait.mp4"
cp "$tmp/portrait.mp4" "$C/mp4/portrait.mp4"
ff "${video[@]}" -movflags +faststart "$C/mp4/clip.mov"
ff "${video[@]}" -f 3gp -c:v h263 -s 128x96 "$C/mp4/clip.3gp" 2>/dev/null || true

ff "${tone[@]}" -c:a libopus -b:a 16k "$C/audio/voice.opus"
ff "${tone[@]}" -c:a libvorbis "$C/audio/vorbis.ogg"
ff "${tone[@]}" -c:a flac -f ogg "$C/audio/flac.oga"
ff "${tone[@]}" -c:a libmp3lame -b:a 32k "$C/audio/xing.mp3"
ff "${tone[@]}" -c:a libmp3lame -b:a 32k -write_xing 0 "$C/audio/cbr.mp3"
ff "${tone[@]}" -c:a flac "$C/audio/tone.flac"
ff "${tone[@]}" -ar 8000 -c:a pcm_u8 "$C/audio/tone.wav"
ff "${tone[@]}" -c:a libopus -b:a 16k "$C/audio/voice.webm"
ff -f lavfi -i testsrc=size=64x48:rate=5:duration=0.4 -c:v libvpx -aspect 16:9 "$C/audio/clip.webm"

ff -f lavfi -i testsrc=size=40x30 -frames:v 1 "$tmp/in.png"
heif-enc -q 30 -o "$C/measured/photo.heic" "$tmp/in.png" >/dev/null
avifenc -s 10 "$tmp/in.png" "$C/measured/photo.avif" >/dev/null
cjxl "$tmp/in.png" "$C/measured/photo.jxl" -q 30 --quiet
cjxl "$tmp/in.png" "$C/measured/container.jxl" -q 30 --quiet --container=1
ff -i "$tmp/in.png" "$C/measured/photo.bmp"
ff -i "$tmp/in.png" -s 32x32 "$C/measured/icon.ico"
printf '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30" viewBox="0 0 40 30"><rect width="40" height="30"/></svg>\n' \
	>"$C/measured/picture.svg"
printf '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 4 3"/>' >"$C/measured/viewbox.svg"
ls -l "$C/mp4" "$C/audio" "$C/measured" | awk '{ s += $5 } END { print "fuzz seeds:", s, "bytes" }'
