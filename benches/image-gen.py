#!/usr/bin/env python3
"""Makes the benchmark image of benches/image.sh: file trees for its layers, and the OCI layout.

  image-gen.py tree DIR INDEX          fills DIR with the files of layer INDEX (0-based)
  image-gen.py layout DIR TAG LAYER... writes an OCI image layout in DIR from gzip layer files,
                                       each given as GZ_PATH:DIFF_ID_HEX:GZ_DIGEST_HEX

The content is seeded and therefore the same on every run and every machine. It is meant to
compress like real software: a mix of text (configuration, sources, documentation), code-like
binary data (a small vocabulary of instruction-like byte strings interleaved with random
operands, as in ELF text and data) and incompressible bytes (already-compressed assets).
"""

import hashlib
import json
import math
import os
import random
import shutil
import sys

MIB = 1 << 20

# Per layer: name, total bytes, (text, binary, random) shares, file size range.
LAYERS = [
    ("base", 60 * MIB, (0.50, 0.42, 0.08), (128, 256 * 1024)),
    ("libs", 60 * MIB, (0.10, 0.85, 0.05), (1024, 4 * MIB)),
    ("runtime", 60 * MIB, (0.30, 0.55, 0.15), (512, 1 * MIB)),
    ("assets", 60 * MIB, (0.25, 0.45, 0.30), (4096, 8 * MIB)),
    ("app", 60 * MIB, (0.55, 0.38, 0.07), (256, 512 * 1024)),
]

DIR_WORDS = ["usr", "lib", "share", "bin", "etc", "opt", "local", "include", "python3",
             "site-packages", "node_modules", "doc", "man", "locale", "src", "app", "vendor",
             "plugins", "modules", "data", "conf.d", "x86_64-linux-gnu", "static", "assets"]


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        rng = self.rng
        letters = "etaoinshrdlcumwfgypbvkjxqz"
        lw = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4, 2.2,
              2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1]
        words = set()
        while len(words) < 3000:
            w = "".join(rng.choices(letters, lw, k=rng.randint(2, 11)))
            # A file must never take the name a directory needs.
            if w not in DIR_WORDS:
                words.add(w)
        self.words = sorted(words)
        rng.shuffle(self.words)
        # Zipf-like frequencies, as in natural and programming languages.
        acc, self.word_cum = 0.0, []
        for i in range(len(self.words)):
            acc += 1.0 / (i + 1)
            self.word_cum.append(acc)
        self.punct = [" ", " ", " ", " ", " ", ", ", ". ", " = ", "(", ") ", "_", "::", "/"]
        # Code-like: instruction-sized byte strings, a few hundred of them, used unevenly.
        self.snips = [rng.randbytes(rng.randint(2, 12)) for _ in range(700)]
        acc, self.snip_cum = 0.0, []
        for i in range(len(self.snips)):
            acc += 1.0 / (i + 1)
            self.snip_cum.append(acc)

    def text(self, n):
        rng, out, size = self.rng, [], 0
        while size < n:
            ws = rng.choices(self.words, cum_weights=self.word_cum, k=rng.randint(2, 14))
            seps = rng.choices(self.punct, k=len(ws))
            line = " " * (4 * rng.randint(0, 3)) + "".join(w + s for w, s in zip(ws, seps)) + "\n"
            # Sources and configuration repeat themselves: reuse a recent line now and then.
            if len(out) > 8 and rng.random() < 0.3:
                line = out[-rng.randint(1, 8)]
            out.append(line)
            size += len(line)
        return "".join(out).encode()[:n]

    def binary(self, n):
        rng, parts, size = self.rng, [], 0
        while size < n:
            k = (n - size) // 6 + 16
            snips = rng.choices(self.snips, cum_weights=self.snip_cum, k=k)
            ops = rng.randbytes(3 * k)
            for i, s in enumerate(snips):
                parts.append(s)
                size += len(s)
                # A third of the instructions carry an operand (address, immediate).
                if i % 3 == 0:
                    parts.append(ops[3 * i:3 * i + 3])
                    size += 3
        return b"".join(parts)[:n]

    def random(self, n):
        return self.rng.randbytes(n)

    def size(self, lo, hi):
        # Log-uniform: many small files, a few big ones.
        return int(lo * (hi / lo) ** self.rng.random())

    def dirs(self, count):
        # Packages install into a limited set of directories: about ten files per directory.
        rng, dirs = self.rng, set()
        while len(dirs) < count:
            dirs.add(os.path.join(*[rng.choice(DIR_WORDS) for _ in range(rng.randint(1, 4))]))
        return sorted(dirs)

    def file_name(self):
        return self.rng.choice(self.words[:1500]) + self.rng.choice(
            ["", ".so", ".py", ".txt", ".h", ".js", ".conf", ".1.gz", ".json", ""])


def tree(dest, index):
    name, total, shares, (lo, hi) = LAYERS[index]
    g = Gen(f"corral-bench-layer-{index}")
    rng = g.rng
    kinds = ["text", "binary", "random"]
    mean_size = (hi - lo) / math.log(hi / lo)
    dirs = g.dirs(max(4, int(total / mean_size / 10)))
    written, files, paths = 0, 0, []
    while written < total:
        kind = rng.choices(kinds, shares)[0]
        n = min(g.size(lo, hi), total - written)
        rel = os.path.join(name, rng.choice(dirs), g.file_name())
        p = os.path.join(dest, rel)
        if os.path.exists(p):
            continue
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(getattr(g, kind)(n))
        os.chmod(p, 0o755 if kind == "binary" and rng.random() < 0.5 else 0o644)
        paths.append(rel)
        written += n
        files += 1
    # Some symlinks, as packages install them (relative, into the layer).
    for i in range(files // 20):
        target = rng.choice(paths)
        link = os.path.join(dest, name, "links", f"l{i}")
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(os.path.join(dest, target), os.path.dirname(link)), link)
    print(f"layer {index} ({name}): {files} files, {written} bytes", file=sys.stderr)


def layout(dest, tag, layers):
    blobs = os.path.join(dest, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(data)
        return d, len(data)

    descs, diff_ids = [], []
    for spec in layers:
        gz, diff_hex, gz_hex = spec.rsplit(":", 2)
        target = os.path.join(blobs, gz_hex)
        shutil.move(gz, target)
        descs.append({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": "sha256:" + gz_hex,
            "size": os.path.getsize(target),
        })
        diff_ids.append("sha256:" + diff_hex)
    created = "2024-01-01T00:00:00Z"
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": f"corral bench layer {i}"}
                    for i in range(len(diff_ids))],
    }
    cd, cs = put(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + cd, "size": cs},
        "layers": descs,
    }
    md, ms = put(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + md,
            "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }
    with open(os.path.join(dest, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(dest, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "tree":
        tree(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) >= 5 and sys.argv[1] == "layout":
        layout(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 2 and sys.argv[1] == "count":
        print(len(LAYERS))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
