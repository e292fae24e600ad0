#!/usr/bin/env bash
# Image builds: `corral build` against `buildah bud --layers` and `podman build --layers` on the
# same multi-stage Dockerfile (22 instructions, three stages, about 3 MB of context), side by
# side in one hyperfine run per scenario; prints the times and the ratios:
#   cold        every step run (--no-cache)
#   no change   a rebuild with everything cached (goal: under 0.2 s)
#   one file    a rebuild after one source file changed (cached up to its COPY)
# buildah and podman build with --isolation chroot (no OCI runtime, no cgroup manager needed on
# this host's hybrid cgroup layout) and their overlay storage in a private directory.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"
CORRAL="${CORRAL:-$PWD/target/release/corral}"
if [ ! -x "$CORRAL" ]; then
  while pgrep -x cargo >/dev/null; do sleep 5; done
  cargo build --release -p corral
fi
work=$(mktemp -d /var/tmp/corral-bench-build.XXXXXX)
[ -z "${DEBUG_KEEP:-}" ] || echo "work: $work"
cleanup() {
  set +e
  "${B[@]}" rm -a >/dev/null 2>&1
  "${B[@]}" rmi -a -f >/dev/null 2>&1
  "${P[@]}" rmi -a -f >/dev/null 2>&1
  CORRAL_ROOT="$work/corral" "$CORRAL" ps -aq 2>/dev/null | xargs -r env CORRAL_ROOT="$work/corral" "$CORRAL" rm -f >/dev/null 2>&1
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for _ in 1 2 3 4 5; do rm -rf "$work" 2>/dev/null && break; sleep 1; done
  [ ! -e "$work" ] || echo "build.sh: could not remove $work" >&2
}
B=(buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver overlay)
P=(podman --root "$work/podman" --runroot "$work/podman-run" --tmpdir "$work/podman-tmp" --storage-driver overlay
   --cgroup-manager cgroupfs --events-backend none)
trap cleanup EXIT
mkdir -p "$work/podman-tmp"

# The base image: busybox, in all three stores.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh true cat ls find wc echo; do ln -s busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
export CORRAL_ROOT="$work/corral"
"$CORRAL" image import "$work/rootfs.tar" localhost/bench-base:1 >/dev/null
"$CORRAL" image save localhost/bench-base:1 -o "$work/base.tar"
"${B[@]}" pull -q "oci-archive:$work/base.tar" >/dev/null
"${P[@]}" load -q -i "$work/base.tar" >/dev/null

# The context: 2 MB of dependencies, 1 MB of assets, 50 small sources.
ctx="$work/ctx"
mkdir -p "$ctx/deps" "$ctx/assets" "$ctx/src"
for i in $(seq 1 20); do head -c 100000 /dev/urandom > "$ctx/deps/lib$i.bin"; done
for i in $(seq 1 10); do head -c 100000 /dev/urandom | base64 > "$ctx/assets/a$i.txt"; done
for i in $(seq 1 50); do echo "int f$i(void) { return $i; }" > "$ctx/src/f$i.c"; done
echo 'int main(void) { return 0; }' > "$ctx/src/main.c"
cat > "$ctx/Dockerfile" <<'EOF'
FROM localhost/bench-base:1 AS deps
ENV APP=/app
WORKDIR /deps
COPY deps/ /deps/
RUN find /deps -type f | wc -l > /deps/count
RUN i=0; while [ $i -lt 200 ]; do echo $i >> /deps/gen; i=$((i+1)); done
FROM localhost/bench-base:1 AS assets
WORKDIR /assets
COPY assets/ ./
RUN cat *.txt | wc -c > /assets/size
FROM localhost/bench-base:1
LABEL org.example.bench=build
ENV PORT=8080
ARG VERSION=1
WORKDIR /app
COPY --from=deps /deps/count /app/count
COPY --from=assets /assets/size /app/size
COPY src/ /app/src/
RUN echo "$VERSION" > /app/version
RUN ls -R /app > /app/listing
EXPOSE 8080
USER 1000
CMD ["cat", "/app/version"]
EOF

corral_b="$CORRAL build -q -t localhost/bench-app"
buildah_b="${B[*]} bud -q --layers --isolation chroot -t localhost/bench-app"
podman_b="${P[*]} build -q --layers --isolation chroot -t localhost/bench-app"

# Each tool builds once first (a failure shows its output here, not as hyperfine's bare code).
for t in corral_b buildah_b podman_b; do
  if ! ${!t} --no-cache "$ctx" > "$work/$t.log" 2>&1 || ! ${!t} "$ctx" >> "$work/$t.log" 2>&1; then echo "build.sh: ${t%_b} failed:" >&2; tail -n 20 "$work/$t.log" >&2; exit 1; fi
done
echo "machine: $(nproc) cpus, kernel $(uname -r), corral $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(buildah --version), $(podman --version)"
hyperfine -N --runs "$RUNS" --export-json "$work/cold.json" \
  -n corral "$corral_b --no-cache $ctx" -n buildah "$buildah_b --no-cache $ctx" -n podman "$podman_b --no-cache $ctx" >/dev/null
# Warm each cache once, then rebuild with no change.
$corral_b "$ctx" >/dev/null; $buildah_b "$ctx" >/dev/null; $podman_b "$ctx" >/dev/null
hyperfine -N --warmup 1 --runs "$((RUNS * 2))" --export-json "$work/nochange.json" \
  -n corral "$corral_b $ctx" -n buildah "$buildah_b $ctx" -n podman "$podman_b $ctx" >/dev/null
# One source file changed before every run (new content each time).
hyperfine -N --runs "$RUNS" --export-json "$work/onefile.json" \
  --prepare "sh -c 'date +%s%N > $ctx/src/main.c'" \
  -n corral "$corral_b $ctx" -n buildah "$buildah_b $ctx" -n podman "$podman_b $ctx" >/dev/null

python3 - "$work" <<'PY'
import json, sys
d = sys.argv[1]
for name, label in [("cold", "cold (--no-cache)"), ("nochange", "no change"), ("onefile", "one file changed")]:
    r = {x["command"]: x for x in json.load(open(f"{d}/{name}.json"))["results"]}
    c, b, p = r["corral"]["mean"], r["buildah"]["mean"], r["podman"]["mean"]
    print(f"{label:18s} corral {c*1000:8.1f} ms   buildah {b*1000:8.1f} ms ({b/c:5.1f}x)   podman {p*1000:8.1f} ms ({p/c:5.1f}x)")
PY
