"""Runs the benchmark and prints the table (called by bench/run inside .venv-bench).

Rounds alternate the Rust example and the Python peers (and which goes first), each doing a
few runs per round over every file and method, so that a busy moment of the machine lands on
all rows rather than on one. Medians are over all rounds.
"""

import argparse
import datetime
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import blurhash  # noqa: E402  (blurhash-python: its C decoder paints hashes for the quality table)

import media  # noqa: E402

MiB = 1024 * 1024
# Mean absolute difference per channel (0..255) between our hash and the blurhash crate's on
# the full-size picture, both painted at 32x32; tests/analyze.rs asserts the same bound.
TOLERANCE = 4.0


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run_lines(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(directory):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", directory, str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/SOURCES.json").read()
            return proc, base
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the local HTTP server did not start")


def median(xs):
    return statistics.median(xs) if xs else None


def half_iqr(xs):
    if len(xs) < 4:
        return None
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / 2


def fmt_ms(xs):
    m = median(xs)
    if m is None:
        return "—"
    spread = half_iqr(xs)
    prec = 1 if m >= 10 else 2
    return f"{m:.{prec}f}" + (f" ±{spread:.{prec}f}" if spread is not None else "")


def ratio(a, b):
    ma, mb = median(a), median(b)
    return None if ma is None or mb is None else ma / mb


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}"


def table(headers, rows, align=None):
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(headers)]
    align = align or ["<"] + [">"] * (len(headers) - 1)
    line = lambda cells: "| " + " | ".join(f"{str(c):{a}{w}}" for c, a, w in zip(cells, align, widths)) + " |"
    out = [line(headers), "|" + "|".join(("-" * (w + 1) + ":" if a == ">" else ":" + "-" * (w + 1)) for a, w in zip(align, widths)) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def paint(h):
    return blurhash.decode(h, 32, 32, 1).tobytes()  # RGB


def mad(a, b):
    pa, pb = paint(a), paint(b)
    return sum(abs(x - y) for x, y in zip(pa, pb)) / len(pa)


def cargo_lock_versions(names):
    text = open(os.path.join(ROOT, "Cargo.lock")).read()
    found = {}
    for m in re.finditer(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', text):
        if m.group(1) in names:
            found.setdefault(m.group(1), []).append(m.group(2))
    return ", ".join(f"{n} {'/'.join(found.get(n, ['?']))}" for n in names)


def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    return cpu, len(os.sched_getaffinity(0)), int(mem) / 1024 / 1024


def sh(cmd):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the built examples/bench binary")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5, help="runs per round (so rounds x runs samples)")
    ap.add_argument("--command", default="bench/run")
    ap.add_argument("--baseline-bin", help="examples/bench built from an earlier tree, timed in the same rounds")
    ap.add_argument("--baseline-rev", default="the baseline", help="what that tree is (for the table)")
    args = ap.parse_args()

    load_start = open("/proc/loadavg").read().split()[:3]
    started = time.time()
    media_dir = os.path.join(ROOT, "target", "bench-media")
    manifest = media.ensure(media_dir, log=log)
    entries = manifest["files"]
    files = [os.path.join(media_dir, e["file"]) for e in entries]
    names = [e["file"] for e in entries]
    label = {e["file"]: e["label"] for e in entries}

    server, base = start_server(media_dir)
    try:
        log(f"serving {media_dir} at {base}")
        peers_py = [sys.executable, os.path.join(HERE, "peers.py")]
        versions = run_lines(peers_py + ["versions"])[0]

        samples = []  # time samples from both sides
        peer_hashes = {}
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}: {args.runs} runs of every row")
            steps = [
                ("ours", [args.bin, "time", "--runs", str(args.runs), "--base", base] + files),
                ("peers", peers_py + ["time", "--runs", str(args.runs), "--base", base] + files),
            ]
            if args.baseline_bin:
                steps.append(("baseline", [args.baseline_bin, "time", "--runs", str(args.runs), "--base", base] + files))
            for who, cmd in (steps if r % 2 == 0 else steps[::-1]):
                for o in run_lines(cmd):
                    if o["mode"] == "hash":
                        peer_hashes[(o["impl"], o["file"])] = o["hash"]
                    else:
                        if who == "baseline":
                            o["impl"] = "baseline"
                        samples.append(o)

        log("peak memory (counting allocator)")
        memory = {o["file"]: o for o in run_lines([args.bin, "memory", "--runs", "10", "--base", base] + files)}
        log("BlurHash encoding alone, and the reference hashes (the C encoder takes seconds per picture)")
        rust_enc = run_lines([args.bin, "encode", "--runs", "15", "--ref-runs", "3"] + files)
        py_enc = run_lines(peers_py + ["encode", "--runs", "5", "--api-runs", "3"] + files)
        log("our hashes against the blurhash crate on full-size pixels")
        quality = {o["file"]: o for o in run_lines([args.bin, "quality"] + files)}
        log("where our time goes (phases)")
        phases = run_lines([args.bin, "phases", "--runs", "7"] + files)
    finally:
        server.terminate()
        server.wait()
    load_end = open("/proc/loadavg").read().split()[:3]

    def t(impl, via, f, key="ms"):
        return [o[key] for o in samples if o["impl"] == impl and o["via"] == via and o["file"] == f]

    out = []
    p = out.append
    cpu, cores, mem_gib = machine()
    p("# media_metadata benchmark")
    p("")
    p(f"- command: `{args.command}` (rounds {args.rounds} x runs {args.runs}; wall time {time.time() - started:.0f} s "
      f"excluding the build)")
    p(f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}")
    p(f"- machine: {cpu}, {cores} cores available, {mem_gib:.1f} GiB RAM, Linux {platform.release()}; "
      f"load average {' '.join(load_start)} at start, {' '.join(load_end)} at end (other jobs may share the machine)")
    p(f"- tree: {sh(['git', 'rev-parse', '--short', 'HEAD'])}"
      f"{' with uncommitted changes' if sh(['git', 'status', '--porcelain', '--untracked-files=no']) else ''}")
    p(f"- ours: {sh(['rustc', '-V'])}, release profile; {cargo_lock_versions(['jpeg-decoder', 'image', 'png', 'image-webp', 'zune-jpeg', 'blurhash', 'ureq'])}; "
      "called on one thread; JPEG at 1/8 scale is read by src/jpeg_dc.rs on that thread, while jpeg-decoder "
      "(other scales, and files jpeg_dc declines) spawns one worker thread per colour component for the IDCT "
      "when its output is over 128 px wide (see the CPU column under 'Where our time goes')")
    p(f"- peers: Python {versions['python']}, Pillow {versions['pillow']} (libjpeg-turbo {versions['libjpeg_turbo']}, "
      f"libwebp {versions['libwebp']}, zlib {versions['zlib']}), pyvips {versions['pyvips']} with libvips "
      f"{versions['libvips']} (Debian; concurrency {versions['vips_concurrency']}, operation cache off), "
      f"blurhash-python {versions['blurhash_python']} (the C reference encoder)")
    p("")
    p("## Files (target/bench-media/, derived once from a Debian package at run time; none is upscaled)")
    p("")
    p(table(["file", "what", "size", "bytes", "made from"],
            [[e["file"], e["label"], f"{e['width']}x{e['height']}", f"{e['bytes'] / MiB:.2f} MiB", e["how"]] for e in entries],
            align=["<", "<", ">", ">", "<"]))
    p("")
    for src in sorted({e["source"] for e in entries}):
        p(f"- source: {src}")
    p("")
    p("Every row makes a 4x3 BlurHash (4 components on the long side) of a picture given as bytes:")
    p("- ours: `media_metadata::analyze::describe` (sniff, header, decode — JPEG at the smallest DCT scale "
      "leaving >= 128 px on the long side; at 1/8 from the DC coefficients alone, AC skipped in the entropy "
      "decoder, progressive AC scans not decoded — linear-light shrink to <= 64 px, encode), default Options;")
    p("- Pillow plain: `Image.open` + `load()` (full-size decode) + `thumbnail((64, 64))` (Pillow defaults: "
      "BICUBIC, reducing_gap 2.0) + `blurhash.encode` (blurhash-python);")
    p("- Pillow draft (JPEG only): the same with `im.draft('RGB', (128, 128))` before loading (DCT scaling, "
      "1/8 for these 12 MP files, the same scale ours picks);")
    p("- libvips: `pyvips.Image.thumbnail_buffer(data, 64, height=64)` + `write_to_memory` + the same encoder;")
    p("- ratio = ours / peer (below 1.00: ours is faster). Times in ms: median ±half the interquartile range.")

    def speed_section(via, title, key="ms"):
        p("")
        p(f"## {title}")
        p("")
        rows = []
        for f in names:
            ours = t("ours", via, f, key)
            row = [label[f], f"{fmt_ms(ours)} (n={len(ours)})"]
            for impl in ("pillow_plain", "pillow_draft", "vips"):
                peer = t(impl, via, f, key)
                row += [fmt_ms(peer) + (f" (n={len(peer)})" if peer else ""), fmt_ratio(ratio(ours, peer))]
            rows.append(row)
        p(table(["file", "ours ms", "Pillow plain ms", "ratio", "Pillow draft ms", "ratio", "libvips ms", "ratio"], rows))

    speed_section("memory", "Analysis from bytes in memory (wall time)")
    speed_section("memory", "The same runs in CPU time (process CPU, all threads: steadier than wall time when "
                  "other jobs share the cores; jpeg-decoder's and libvips's worker threads count here)", key="cpu_ms")
    speed_section("http", "The same through a fetch from 127.0.0.1 (ours: `analyze(&Fetcher, url)` with "
                  "allow_private; peers: `urllib.request.urlopen(url).read()` first; Python's http.server, HTTP/1.0)")
    p("")
    p("What the fetch adds (median http − median memory, ms):")
    p("")
    rows = []
    for f in names:
        row = [label[f]]
        for impl in ("ours", "pillow_plain", "pillow_draft", "vips"):
            a, b = median(t(impl, "http", f)), median(t(impl, "memory", f))
            row.append("—" if a is None or b is None else f"{a - b:+.1f}")
        rows.append(row)
    p(table(["file", "ours", "Pillow plain", "Pillow draft", "libvips"], rows))

    p("")
    p("## BlurHash encoding alone, on the full-size decoded RGB pixels already in memory (ms)")
    p("")
    rows = []
    for f in names:
        ours = [o["ms"] for o in rust_enc if o["file"] == f and o["impl"] == "ours"]
        crate = [o["ms"] for o in rust_enc if o["file"] == f and o["impl"] == "crate"]
        c = [o for o in py_enc if o["file"] == f and o["impl"] == "c_ref"]
        api = [o["ms"] for o in py_enc if o["file"] == f and o["impl"] == "py_api"]
        c_ms = [o["ms"] for o in c if o["ms"] is not None]
        same = next((o.get("same_pixels_as") for o in c if o.get("same_pixels_as")), None)
        rows.append([label[f], fmt_ms(ours), fmt_ms(crate), fmt_ratio(ratio(ours, crate)),
                     (fmt_ms(c_ms) + f" (n={len(c_ms)})") if c_ms else f"same pixels as {same}",
                     fmt_ratio(ratio(ours, c_ms)) if c_ms else "—", fmt_ms(api)])
    p(table(["file", "ours shrink+encode", "blurhash crate encode", "ratio", "blurhash-python (C) encode", "ratio",
             "blurhash.encode() API"], rows))
    p("")
    p("ours = `blurhash::shrink` + `blurhash::encode`; blurhash crate = `blurhash::encode(4, 3, w, h, rgba)` "
      "(RGBA made untimed); blurhash-python (C) = its C `create_hash_from_pixels` through its cffi binding on the "
      "RGB buffer (1 run on pictures over 1 MP: seconds each); `blurhash.encode()` API = the same package's "
      "Python entry point, which first builds a Python list of every value (small file only).")

    p("")
    p("## Peak heap per analysis (counting #[global_allocator] in examples/bench.rs; 10 analyses each)")
    p("")
    rows = []
    mib = lambda v: f"{v / MiB:.2f}"
    for f in names:
        m = memory[f]
        d, a = m["describe_peaks"], m["analyze_peaks"]
        rows.append([label[f], mib(m["input_bytes"]), mib(median(d)), mib(max(d)),
                     mib(median(a)) if a else "—", mib(max(a)) if a else "—"])
    p(table(["file", "input MiB", "describe() median MiB", "describe() max MiB", "analyze(url) median MiB",
             "analyze(url) max MiB"], rows))
    p("")
    p("describe(): the highest heap total during the call minus the heap in use when it began, so the input bytes "
      "(already in memory) are excluded. analyze(url): the same around the whole fetch + analysis, so the "
      "downloaded body is included where it is held: a PNG past its first 64 KiB is decoded row by row as it "
      "arrives and never held, a JPEG read at 1/8 scale (a long side of 2048 px and more) goes through the DC reader as it arrives and is never held, "
      "every other format is read whole (within max_bytes) first. JPEG at 1/8 scale keeps one DC value per block (4 bytes) and the 1/8-scale "
      "RGB picture; where jpeg-decoder is used the peak varies between runs (it hands coefficient rows to its "
      "worker threads through unbounded channels, so rows pile up when a worker is descheduled).")
    p("")
    p("## Quality: mean absolute difference per channel (0..255), hashes painted at 32x32")
    p("")
    c_ref = {}
    for o in py_enc:
        if o["impl"] == "c_ref":
            c_ref[o["file"]] = o["hash"]
    rows = []
    for f in names:
        q = quality[f]
        row = [label[f], q["ours"], c_ref[f], f"{q['mad_crate']:.2f}",
               "met" if q["mad_crate"] <= TOLERANCE else "NOT met", f"{mad(q['ours'], c_ref[f]):.2f}"]
        for impl in ("pillow_plain", "pillow_draft", "vips"):
            h = peer_hashes.get((impl, f))
            row.append("—" if h is None else f"{mad(h, c_ref[f]):.2f}")
        rows.append(row)
    p(table(["file", "ours", "reference (C, full size)", "ours vs blurhash crate", f"<= {TOLERANCE:.1f}",
             "ours vs C ref", "Pillow plain vs C ref", "Pillow draft vs C ref", "libvips vs C ref"], rows,
            align=["<", "<", "<", ">", "<", ">", ">", ">", ">"]))
    p("")
    p("Reference = the encoder run on every pixel of the full-size picture (decoded by the image crate for the "
      "blurhash crate column, painted with our decoder; by Pillow for the C column, painted with blurhash-python's "
      "decoder). The peers' columns show the usual gamma-space thumbnail's own error for comparison.")
    p("")
    p(f"Tolerance: {TOLERANCE:.1f} levels (of 255) against the blurhash crate on the full-size picture, the bound "
      "tests/analyze.rs uses. Why: the shrink itself is within about 1 level of the reference (linear light, "
      "cells weighted by pixel share); what is left is the scaled JPEG decode, which averages each 8x8 (at 1/8) "
      "or 4x4 block in gamma space before the linear-light shrink and rings at hard edges, about 2 levels, up "
      "to ~3 on small or hard-edged pictures; and the two encoders' own quantisation of the AC components (a "
      "step of one in a 19-level code moves a painted pixel by up to ~2 levels). 4 levels is under the "
      "smallest step people notice in a blurred placeholder (about 1-2 % of full scale) and well under the "
      "5-7 levels a usual gamma-space thumbnail (the peers' columns) is off by; an orientation or colour bug "
      "is 15 levels or more.")

    p("")
    p("## Where our time goes (describe() split into its steps, median ms over 7 runs)")
    p("")
    rows = []
    for f in names:
        ph = [o for o in phases if o["file"] == f]
        col = lambda k: median([o[k] for o in ph])
        rows.append([label[f], ph[0]["decoded"], f"{col('header_ms'):.2f}", f"{col('decode_ms'):.1f}",
                     f"{col('shrink_ms'):.2f}", f"{col('encode_ms'):.3f}", f"{col('describe_ms'):.1f}",
                     f"{col('describe_cpu_ms'):.1f}"])
    p(table(["file", "pixels decoded", "header", "decode (incl. header)", "shrink", "encode", "describe() total",
             "describe() CPU, all threads"], rows))
    p("")
    p("Each step timed alone, mirroring decode.rs (JPEG: to >= 128 px on the long side, by src/jpeg_dc.rs at 1/8 "
      "scale, else jpeg-decoder with `scale()`; "
      "a still opaque lossy WebP: src/vp8.rs, which decodes into the shrink, so its shrink is inside the decode column; "
      "PNG: the image crate at full size here, though describe() streams rows into the shrink). CPU = clock_gettime(CLOCK_PROCESS_CPUTIME_ID) across the "
      "process's threads (threads that have exited included).")

    p("")
    p("## Targets (12 MP baseline JPEG, analysis from memory)")
    p("")
    f12 = "12mp-baseline.jpg"
    ours12 = t("ours", "memory", f12)
    checks = [
        ("at least as fast as Pillow draft + encoder", "pillow_draft", 1.0),
        ("at least as fast as libvips thumbnail + encoder", "vips", 1.0),
        ("at least 3x faster than Pillow plain full decode", "pillow_plain", 1 / 3),
    ]
    rows = []
    for what, impl, limit in checks:
        rc = ratio(t("ours", "memory", f12, "cpu_ms"), t(impl, "memory", f12, "cpu_ms"))
        rw = ratio(ours12, t(impl, "memory", f12))
        verdict = ("met" if rc <= limit and rw <= limit else
                   "met on CPU time, not on wall time" if rc <= limit else "NOT met")
        rows.append([what, f"{rc:.2f}", f"{rw:.2f}", f"<= {limit:.2f}", verdict])
    peak = max(memory[f12]["describe_peaks"]) / MiB
    rows.append(["peak memory per in-flight analysis <= 24 MiB", "", "",
                 f"{peak:.2f} MiB (max of 10 describe(), input excluded)", "met" if peak <= 24 else "NOT met"])
    p(table(["target", "CPU-time ratio", "wall-time ratio", "need", "verdict"], rows,
            align=["<", ">", ">", "<", "<"]))
    if args.baseline_bin:
        p("")
        p(f"## Against {args.baseline_rev} (the same example built from that tree, timed in the same rounds)")
        p("")
        rows = []
        for f in names:
            row = [label[f]]
            for via, key in (("memory", "cpu_ms"), ("http", "cpu_ms"), ("http", "ms")):
                now, then = t("ours", via, f, key), t("baseline", via, f, key)
                row += [fmt_ms(now), fmt_ms(then), fmt_ratio(ratio(now, then))]
            rows.append(row)
        p(table(["file", "memory CPU now", "then", "ratio", "analyze(url) CPU now", "then", "ratio",
                 "analyze(url) wall now", "then", "ratio"], rows))
        p("")
        p("ratio = now / then (below 1.00: faster now).")
    p("")
    p("## Targets: every format within budget (issue 17), through analyze(url)")
    p("")
    rows = []
    for f in names:
        peak = max(memory[f]["analyze_peaks"]) / MiB
        rows.append([f"{label[f]}: peak memory added, body included, <= 16 MiB", "", "",
                     f"{peak:.2f} MiB (max of 10)", "met" if peak <= 16 else "NOT met"])
    for f in ("5k.png", "4k.webp"):
        rc = ratio(t("ours", "http", f, "cpu_ms"), t("vips", "http", f, "cpu_ms"))
        rw = ratio(t("ours", "http", f), t("vips", "http", f))
        verdict = ("met" if rc <= 1 and rw <= 1 else "met on CPU time, not on wall time" if rc <= 1 else "NOT met")
        rows.append([f"{label[f]}: at most as slow as libvips thumbnail + encoder", f"{rc:.2f}", f"{rw:.2f}",
                     "<= 1.00", verdict])
    p(table(["target", "CPU-time ratio", "wall-time ratio", "need", "verdict"], rows,
            align=["<", ">", ">", "<", "<"]))
    p("")
    p("The verdict goes by CPU time first (process CPU over all threads, steady when other jobs share the "
      "cores; it is also what a busy server pays per picture), and says so when wall time disagrees.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
