#!/usr/bin/env bash
# The README's two set-up commands on a fresh, minimal Debian 12, as a new user meets them.
#
#   bash launch/scripts/fresh_check.sh [COMMIT]      (default HEAD; run as root)
#
# Builds a Debian 12 root with `debootstrap --variant=minbase bookworm` from this machine's own
# apt mirror, puts a clean clone of COMMIT in it (what is committed, nothing else), and runs,
# inside it with chroot, first `setup.sh run` with a short job, then `setup.sh test`. The root
# has no CUDA, so this is also the CPU-only build. `run` starts from nothing but the minimal
# system, so it proves that `run` alone installs what building and training need; `test` then
# adds the test packages (setup.sh installs for `test` a superset of what it installs for
# `run`) and runs the whole suite. Each command's time is printed; any failure ends the script
# non-zero with one line naming the command and the first error it printed.
#
# The root lives in a temporary folder under /var/tmp and is removed on exit, on failure and on
# Ctrl-C, with /proc, /sys and /dev unmounted first; processes left inside it are killed.
# The debootstrap packages are cached in /var/cache/resnet-fresh (RESNET_FRESH_CACHE), never in
# the repository. RESNET_FRESH_RUN_ARGS replaces the short job's overrides.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
commit_arg=${1:-HEAD}
cache=${RESNET_FRESH_CACHE:-/var/cache/resnet-fresh}
suite=bookworm
run_args=${RESNET_FRESH_RUN_ARGS:---set train.epochs=1 --set run_dir=runs/fresh_check}

say() { echo "fresh_check: $*"; }
die() { echo "fresh_check: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, mount and chroot need it)"
commit=$(git -C "$repo" rev-parse --verify --quiet "$commit_arg^{commit}") ||
  die "'$commit_arg' is not a commit of $repo"

# The mirror is the one this machine's apt uses for Debian 12 (deb822 .sources or sources.list).
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk -v suite="$suite" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; suites = ""; types = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/)    { uris = $i;   sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/)  { suites = " " $i " " }
          if ($i ~ /^Types:/)   { types = " " $i " " }
          if ($i ~ /^Enabled:[ \t]*no/) { enabled = "no" }
        }
        if (enabled == "yes" && types ~ / deb / && suites ~ (" " suite " ")) {
          split(uris, u, /[ \t]+/); print u[1]; exit
        }
      }' "$f"
  done
  [ -e /etc/apt/sources.list ] &&
    awk -v suite="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++;
      if ($2 ~ /^\[/) i++; if ($(i + 1) == suite) { print $i; exit } }' /etc/apt/sources.list
  return 0
}
mirror=$(apt_mirror | head -n 1)
[ -n "$mirror" ] || die "no '$suite' mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources"

if ! command -v debootstrap > /dev/null; then
  say "installing debootstrap on this machine"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap > /dev/null
fi

work=$(mktemp -d /var/tmp/resnet-fresh.XXXXXX)
root=$work/root
mounted=()

# Undo everything, whatever ended the script: processes inside the root, then the mounts (in
# reverse order), then the folder, which is removed only once nothing is mounted below it.
cleanup() {
  local status=$? pid m
  trap - EXIT INT TERM
  set +e
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$root" ] && kill -KILL "$pid" 2>/dev/null
  done
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    m=${mounted[i]}
    umount -R "$m" 2>/dev/null || umount -R -l "$m" 2>/dev/null
  done
  # Mounts the tests made inside the root (`ip netns add` binds /run/netns), deepest first.
  for m in $(awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  if grep -q " $work/" /proc/mounts; then
    echo "fresh_check: warning: still mounted under $work; left in place:" >&2
    grep " $work/" /proc/mounts >&2
  else
    rm -rf --one-file-system "$work"
    case $status in
      130 | 143) echo "fresh_check: interrupted; the root, its mounts and its processes are gone" >&2 ;;
    esac
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

elapsed() { echo $(($(date +%s) - $1)); }
times=()

# 1. The minimal root, from the cached packages when they are there.
mkdir -p "$cache"
tarball=$cache/$suite-minbase-$(dpkg --print-architecture).tgz
t0=$(date +%s)
if [ ! -s "$tarball" ]; then
  say "downloading the $suite minbase packages from $mirror into $tarball"
  debootstrap --variant=minbase --make-tarball="$tarball.part" "$suite" "$work/download" "$mirror" \
    > "$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap --make-tarball failed"; }
  mv "$tarball.part" "$tarball"
  rm -rf "$work/download"
fi
if ! debootstrap --variant=minbase --unpack-tarball="$tarball" "$suite" "$root" "$mirror" \
  > "$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  rm -f "$tarball"  # a damaged cache is downloaded again by the next run
  die "debootstrap of $suite from $tarball failed (the cached tarball was removed)"
fi
times+=("debootstrap --variant=minbase $suite: $(elapsed "$t0") s, $(du -sm "$root" | cut -f1) MB")
say "${times[-1]}"

# What a fresh machine of this kind has beside the minimal system: the same apt sources and
# settings (so that updates and security suites are seen), and name resolution.
cp /etc/resolv.conf "$root/etc/resolv.conf"
rm -f "$root/etc/apt/sources.list"  # debootstrap's one line, replaced by this machine's sources
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
  /etc/apt/apt.conf.d/*; do
  [ -f "$f" ] && cp "$f" "$root$f"
done

# 2. A clean clone of the commit, as `git clone` gives a user.
t0=$(date +%s)
git clone --quiet --no-checkout "$repo" "$root/root/resnet"
git -C "$root/root/resnet" checkout --quiet --detach "$commit"
say "clone of $(git -C "$repo" log -1 --format='%h %s' "$commit")"

for m in proc sys dev; do
  mkdir -p "$root/$m"
  case $m in
    proc) mount -t proc proc "$root/proc" ;;
    *) mount --rbind "/$m" "$root/$m" && mount --make-rslave "$root/$m" ;;
  esac
  mounted+=("$root/$m")
done

# 3. The two commands, each timed, in a clean environment (OPENBLAS_* are this machine's
# settings for its processor, which every machine here has).
in_root() {
  local keep=() v
  for v in OPENBLAS_CORETYPE OPENBLAS_L2_SIZE CI; do
    [ -n "${!v:-}" ] && keep+=("$v=${!v}")
  done
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${keep[@]}" \
    /bin/bash -c "cd /root/resnet && $1"
}
# The line of a log that says what went wrong: apt's "E:", a compiler's "error:", CMake's message
# (its "CMake Error at FILE:LINE" and the paragraph after it, joined) or the first test CTest
# lists as failed.
first_error() {
  awk '
    function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
    cmake && trim($0) == "" { if (msg != "") { print msg; exit } next }
    cmake { msg = msg " " trim($0); next }
    ctest && trim($0) != "" { print "test failed: " trim($0); exit }
    /CMake Error/ { cmake = 1; msg = trim($0); next }
    /The following tests FAILED:/ { ctest = 1; next }
    /^E: |(^|[^a-zA-Z_])error: |Unable to locate/ { print trim($0); exit }
    END { if (cmake && msg != "") print msg }' "$1" | head -n 1 | cut -c 1-400
}
run_step() {
  local cmd=$1 log=$work/step.log t0 status first
  say "running in the fresh root: $cmd"
  t0=$(date +%s)
  set +e
  in_root "$cmd" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    first=$(first_error "$log")
    times+=("$cmd: FAILED, exit $status after $(elapsed "$t0") s")
    printf 'fresh_check: %s\n' "${times[@]}"
    die "'$cmd' failed on a fresh $suite (exit $status): ${first:-see the output above}"
  fi
  times+=("$cmd: ok, $(elapsed "$t0") s")
  say "${times[-1]}"
}
t_all=$(date +%s)
run_step "bash launch/scripts/setup.sh run $run_args"
in_root "tail -n 1 runs/fresh_check/metrics.jsonl" 2>/dev/null | sed 's/^/fresh_check: metrics: /' || true
run_step "bash launch/scripts/setup.sh test"

printf 'fresh_check: %s\n' "${times[@]}"
say "passed: both set-up commands on a fresh $suite root in $(elapsed "$t_all") s"
