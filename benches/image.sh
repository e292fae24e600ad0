#!/usr/bin/env bash
# Benchmark: corral against podman at getting a big image into local storage, side by side.
#
#   bash benches/image.sh            (as root; about 2 minutes on 2 cores)
#
# 1. pull: a 5-layer image of 300 MiB (gzip layers), served by Debian's docker-registry on
#    loopback, pulled into a fresh store on every run;
# 2. load: the same image as an OCI archive file, loaded into a fresh store on every run.
#
# The image is generated here at run time (benches/image-gen.py, seeded, so the same every run),
# pushed with skopeo, and everything this script creates (registry, stores, temporary files) is
# removed when it exits, also on failure. Each timed run gets a fresh, empty store; the stores
# of earlier runs are set aside, not deleted, until the end (see set_aside for why), so a run
# uses about 10 GB under /var/tmp for a while. Results: docs/benchmarks.md.
#
# Settings (environment): CORRAL (binary, default target/release/corral, built if missing),
# RUNS (5), WARMUP (1), PODMAN_DRIVER (overlay; falls back to vfs if overlay does not work),
# KEEP_RESULTS (a directory to copy the hyperfine JSON exports into).
set -euo pipefail

SELF=$(realpath "$0")
HERE=$(dirname "$SELF")
REPO=$(dirname "$HERE")

# Unmounts everything mounted at or below DIR (deepest first). podman's overlay driver
# bind-mounts its own directory, so a store cannot simply be moved or removed.
unmount_under() {
  local real tries mounts
  real=$(realpath -m "$1")
  for tries in 1 2 3 4 5 6 7 8; do
    mounts=$(awk -v d="$real" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
      sort -r)
    [ -z "$mounts" ] && return 0
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done <<<"$mounts"
  done
}

# Sets DIR aside into the trash next to it (removed on exit) and makes a fresh, empty DIR.
#
# Nothing is deleted while the benchmark runs, on purpose: on an ext4 without a journal (as on
# the project's machines) the inode allocator skips inodes freed in the last 30 seconds and
# checks each one it passes (find_inode_bit -> recently_deleted), so a tool that creates its
# thousands of files right after the previous run's thousands were removed pays for that, more
# with every run. Measured: a 300 MiB image load went from 1.6 s to 4.5 s over four
# rm-and-reload rounds.
set_aside() {
  local d trash
  for d in "$@"; do
    if [ -e "$d" ]; then
      unmount_under "$d"
      trash=$(dirname "$d")/trash
      mkdir -p "$trash"
      mv "$d" "$(mktemp -d "$trash/$(basename "$d").XXXXXX")/"
    fi
    mkdir -p "$d"
  done
}

# hyperfine's --prepare: a fresh store, and no dirty pages of earlier runs left to write back.
if [ "${1:-}" = "__prepare" ]; then
  shift
  set_aside "$@"
  sync
  exit 0
fi

die() { echo "image.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run me as root"
for t in hyperfine skopeo podman docker-registry python3 tar gzip sha256sum curl; do
  command -v "$t" >/dev/null || die "$t is missing"
done

RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
PODMAN_DRIVER=${PODMAN_DRIVER:-overlay}
CORRAL=${CORRAL:-$REPO/target/release/corral}
if [ ! -x "$CORRAL" ]; then
  # Builds must never overlap on this machine: wait for any other cargo to finish first.
  while pgrep -x cargo >/dev/null; do sleep 5; done
  (cd "$REPO" && cargo build --release -p corral)
fi

WORK=$(mktemp -d /var/tmp/corral-bench-image.XXXXXX)
# Every run's store is kept until the end (see set_aside): about 0.8 GB per run of both tools.
need_gb=$(((RUNS + WARMUP + 1) * 2 * 8 / 10 + 2))
avail_gb=$(($(df --output=avail -k "$WORK" | tail -1) / 1048576))
if [ "$avail_gb" -lt "$need_gb" ]; then
  rmdir "$WORK"
  die "needs about $need_gb GB free under /var/tmp, has $avail_gb GB"
fi
REG_PID=
cleanup() {
  local rc=$?
  if [ -n "$REG_PID" ]; then
    kill "$REG_PID" 2>/dev/null || true
    wait "$REG_PID" 2>/dev/null || true
  fi
  unmount_under "$WORK"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Both tools stage downloads and archives under TMPDIR: keep that inside the work directory.
export TMPDIR=$WORK/tmp
mkdir -p "$TMPDIR"

echo "== machine"
echo "cpus:    $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'))"
echo "memory:  $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "kernel:  $(uname -r)"
dev=$(findmnt -no SOURCE -T "$WORK")
journal="with a journal"
ls /proc/fs/jbd2 2>/dev/null | grep -q "^$(basename "$dev")-" || journal="no journal"
echo "disk:    $dev $(findmnt -no FSTYPE -T "$WORK"), $journal (work dir $WORK)"
echo "corral:  $("$CORRAL" version 2>/dev/null | head -1) ($CORRAL, tree at $(git -C "$REPO" log -1 --format=%h 2>/dev/null || echo '?'))"
echo "podman:  $(podman --version), skopeo: $(skopeo --version), registry: $(docker-registry --version 2>&1 | awk '{ print $NF }')"
echo "$(hyperfine --version), runs: $RUNS (+$WARMUP warmup)"
echo "storage: corral: its own store (blobs + unpacked layer directories); podman: --storage-driver $PODMAN_DRIVER (vfs if that fails, checked below)"

echo "== building the image"
t0=$(date +%s)
NLAYERS=$(python3 "$HERE/image-gen.py" count)
make_layer() {
  local i=$1 dir=$WORK/build/$1
  mkdir -p "$dir/tree"
  python3 "$HERE/image-gen.py" tree "$dir/tree" "$i"
  tar -C "$dir/tree" --sort=name --mtime=@1704067200 --owner=0 --group=0 --numeric-owner \
    -cf "$dir/layer.tar" .
  sha256sum "$dir/layer.tar" | cut -d' ' -f1 >"$dir/diff_id"
  gzip -n -6 "$dir/layer.tar"
  sha256sum "$dir/layer.tar.gz" | cut -d' ' -f1 >"$dir/digest"
}
pids=()
for ((i = 0; i < NLAYERS; i++)); do
  # One layer per CPU at a time.
  if [ "${#pids[@]}" -ge "$(nproc)" ]; then
    wait "${pids[0]}" || die "making a layer failed"
    pids=("${pids[@]:1}")
  fi
  make_layer "$i" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || die "making a layer failed"; done
specs=()
UNPACKED=0
COMPRESSED=0
for ((i = 0; i < NLAYERS; i++)); do
  d=$WORK/build/$i
  UNPACKED=$((UNPACKED + $(gzip -l "$d/layer.tar.gz" | awk 'NR == 2 { print $2 }')))
  COMPRESSED=$((COMPRESSED + $(stat -c %s "$d/layer.tar.gz")))
  specs+=("$d/layer.tar.gz:$(cat "$d/diff_id"):$(cat "$d/digest")")
done
python3 "$HERE/image-gen.py" layout "$WORK/oci" 1 "${specs[@]}"
echo "image: $NLAYERS layers, $((UNPACKED / 1048576)) MiB of layer tarballs, $((COMPRESSED / 1048576)) MiB gzip-compressed (built in $(($(date +%s) - t0)) s)"
IMAGE_ID=$(python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); m=i["manifests"][0]["digest"].split(":")[1]; print(json.load(open(sys.argv[2] + "/blobs/sha256/" + m))["config"]["digest"])' "$WORK/oci/index.json" "$WORK/oci")
echo "image id: $IMAGE_ID"

echo "== registry"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/registry"
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null && break
  kill -0 "$REG_PID" 2>/dev/null || { cat "$WORK/registry.log" >&2; die "the registry died"; }
  sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null || die "the registry does not answer"
REF=127.0.0.1:$PORT/bench/big:1
skopeo copy -q --dest-tls-verify=false "oci:$WORK/oci:1" "docker://$REF"
echo "pushed $REF (registry pid $REG_PID)"

ARCHIVE=$WORK/big.oci.tar
skopeo copy -q "oci:$WORK/oci:1" "oci-archive:$ARCHIVE:localhost/bench/big:1"
echo "archive: $ARCHIVE, $(($(stat -c %s "$ARCHIVE") / 1048576)) MiB (oci-archive, gzip layers)"

C=$WORK/corral
P=$WORK/podman
podman_cmd() {
  echo "podman --root $P/root --runroot $P/run --tmpdir $P/tmp --storage-driver $PODMAN_DRIVER"
}

echo "== podman storage driver"
: >"$WORK/probe.log"
if ! bash "$SELF" __prepare "$P" ||
  ! $(podman_cmd) pull --tls-verify=false -q "$REF" >"$WORK/probe.log" 2>&1; then
  echo "podman with $PODMAN_DRIVER failed:" >&2
  cat "$WORK/probe.log" >&2
  [ "$PODMAN_DRIVER" = vfs ] && die "podman cannot pull"
  PODMAN_DRIVER=vfs
  echo "falling back to vfs" >&2
  bash "$SELF" __prepare "$P"
  $(podman_cmd) pull --tls-verify=false -q "$REF" >/dev/null || die "podman cannot pull with vfs either"
fi
echo "podman storage driver: $PODMAN_DRIVER"

# Runs one hyperfine comparison; $1 = name, $2 = corral command, $3 = podman command.
bench() {
  local name=$1
  echo "== $name"
  hyperfine --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/$name.json" \
    -n corral --prepare "bash $SELF __prepare $C" "$2" \
    -n podman --prepare "bash $SELF __prepare $P" "$3"
}

# After a timed series, the store of the last run remains: both must hold the image, by id.
verify() {
  local name=$1 cl pl
  cl=$("$CORRAL" --root "$C" image ls)
  pl=$($(podman_cmd) images --no-trunc)
  echo "corral image ls:"
  echo "$cl" | sed 's/^/  /'
  echo "podman images:"
  echo "$pl" | sed 's/^/  /'
  grep -q "${IMAGE_ID#sha256:}" <<<"$("$CORRAL" --root "$C" image inspect "$2")" ||
    die "$name: corral does not have image $IMAGE_ID"
  grep -q "$IMAGE_ID" <<<"$pl" || die "$name: podman does not have image $IMAGE_ID"
  echo "store sizes: corral $(($(du -sb "$C" | cut -f1) / 1048576)) MiB, podman $(($(du -sb "$P" | cut -f1) / 1048576)) MiB"
}

# Prints "NAME: corral X s, podman Y s, ratio podman/corral = Z" from a hyperfine export and
# appends a markdown table row to results.md.
summary() {
  python3 - "$WORK/$1.json" "$1" "$WORK/results.md" <<'EOF'
import json, sys
path, name, table = sys.argv[1:]
r = {x["command"]: x for x in json.load(open(path))["results"]}
c, p = r["corral"], r["podman"]
print(f"{name}: corral {c['mean']:.2f} s, podman {p['mean']:.2f} s, "
      f"ratio podman/corral = {p['mean'] / c['mean']:.2f}")
with open(table, "a") as f:
    f.write(f"| {name} | {c['mean']:.2f} ± {c['stddev']:.2f} s | "
            f"{p['mean']:.2f} ± {p['stddev']:.2f} s | {p['mean'] / c['mean']:.2f} |\n")
EOF
}

bench pull \
  "$CORRAL --root $C pull -q $REF" \
  "$(podman_cmd) pull --tls-verify=false -q $REF"
verify pull "$REF"

bench load \
  "$CORRAL --root $C image load -i $ARCHIVE" \
  "$(podman_cmd) load -q -i $ARCHIVE"
verify load localhost/bench/big:1

echo "== results ($RUNS runs each after $WARMUP warmup; $(nproc) CPUs, kernel $(uname -r), podman storage driver $PODMAN_DRIVER)"
summary pull
summary load
echo
echo "| operation | corral | podman ($PODMAN_DRIVER) | podman/corral |"
echo "|---|---|---|---|"
cat "$WORK/results.md"
if [ -n "${KEEP_RESULTS:-}" ]; then
  mkdir -p "$KEEP_RESULTS"
  cp "$WORK/pull.json" "$WORK/load.json" "$KEEP_RESULTS/"
fi
