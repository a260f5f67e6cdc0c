#!/usr/bin/env bash
# imagetest.sh builds the Space image from this checkout with the Dockerfile
# as a Space gets it (the folder `assemble` writes), without a Docker daemon
# or a registry, runs it the way Hugging Face runs a Space and checks it:
#
#   1. base images, made locally under the names the Dockerfile's FROM lines
#      use: debian:<suite>-slim by debootstrap from the mirror apt already
#      uses, trimmed like the official slim image; golang:<version>-<suite>
#      as that image plus gcc, libc6-dev, ca-certificates, git and this
#      machine's Go (which must be the version the FROM line names);
#   2. `buildah bud` of the assembled folder, cold, then again after a
#      code-only change (the dependency layer must come from the cache);
#   3. the image's size by layer;
#   4. imagecheck (a Go program next to this script) runs the image with
#      podman as uid 1000, host networking, port 7860 and no environment but
#      what a Space sets: on SQLite, on the PostgreSQL of
#      DBFALLBACK_TEST_DATABASE_URL, with a primary that accepts connections
#      and never answers, SIGTERM while that primary hangs, and persistent
#      storage across a restart (see imagecheck's doc comment).
#
# Everything lives in one work directory (container storage and
# configuration included) inside a private mount namespace, and is removed
# on exit, failure included: repeated runs do not fill the disk, and the
# machine's own container storage is never read or written.
#
# Needs root, Debian's buildah, podman, runc and debootstrap, Go, the
# network to the Debian mirror, and DBFALLBACK_TEST_DATABASE_URL. .ci/run
# installs the packages, sets the variable and runs this script.
#
# Environment: IMAGETEST_WORKDIR, the parent of the work directory
# (default /var/tmp; not on overlayfs, which cannot hold overlay layers).
# The work directory takes about 1 GB while the script runs.
set -euo pipefail

say() { printf 'imagetest: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

# --- preconditions: one line each, never a pretend pass --------------------
if [ "${IMAGETEST_IN_NAMESPACE:-}" != 1 ]; then
	[ "$(id -u)" = 0 ] || die "needs root (debootstrap, buildah and podman run rootful here); .ci/run runs it as root"
	missing=
	for c in buildah podman runc debootstrap unshare go; do
		command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
	done
	[ -z "$missing" ] || die "missing:$missing (apt-get install buildah podman runc debootstrap, as .ci/run does)"
	[ -n "${DBFALLBACK_TEST_DATABASE_URL:-}" ] || die "DBFALLBACK_TEST_DATABASE_URL is not set: the PostgreSQL run needs it (.ci/run sets it)"
	parent=${IMAGETEST_WORKDIR:-/var/tmp}
	mkdir -p "$parent"
	WORK=$(mktemp -d "$parent/hfspace-image.XXXXXX")
	export WORK
	say "work directory $WORK; free before: $(df -h --output=avail "$parent" | tail -n 1 | tr -d ' ')"
	trap 'rm -rf "$WORK"; say "removed $WORK; free after: $(df -h --output=avail "$parent" | tail -n 1 | tr -d " ")"' EXIT
	trap 'exit 130' INT TERM
	# A private mount namespace: every mount made below (overlays of
	# container layers, /run and /var/lib redirections) ends with it.
	IMAGETEST_IN_NAMESPACE=1 unshare --mount --propagation private -- bash "$0" "$@"
	exit 0
fi

# --- inside the namespace ---------------------------------------------------
stage_start=$EPOCHREALTIME
cd "$repo"
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# Descriptor 3 is the script's own output: a signal can run cleanup inside a
# step, whose output goes to the step's log.
exec 3>&1
cleanup() {
	local rc=$?
	set +e
	exec 1>&3 2>&3
	podman rm --all --force --time 0 >/dev/null 2>&1
	buildah rm --all >/dev/null 2>&1
	podman rmi --all --force >/dev/null 2>&1
	buildah rmi --all --force >/dev/null 2>&1
	# Unmount what is left under the work directory, deepest first, then
	# the redirections of /run and /var/lib.
	findmnt -rn -o TARGET | awk -v w="$WORK/" 'index($0, w) == 1' | sort -r | xargs -r -n 1 umount -l
	umount -l /run /var/lib 2>/dev/null
	[ "$rc" = 0 ] || say "FAILED after $(elapsed "$stage_start") s (exit $rc)"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Writes that container tools make to fixed paths (the image blob-info
# cache in /var/lib/containers, network state in /run/containers, runc's
# state in /run/runc) land in the work directory instead.
for d in run var/lib; do
	mkdir -p "$WORK/ns/$d/upper" "$WORK/ns/$d/work"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$WORK/ns/$d/upper,workdir=$WORK/ns/$d/work" "/$d"
done

mkdir -p "$WORK/storage" "$WORK/runroot" "$WORK/tmp" "$WORK/net" "$WORK/logs"
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "overlay"
runroot = "$WORK/runroot"
graphroot = "$WORK/storage"
EOF
# runc: crun rejects this kind of host's mixed cgroup v1/v2 layout. No
# CAP_SYS_RESOURCE here, so the ulimits must not exceed the current ones.
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$WORK/logs/events.log"
tmp_dir = "$WORK/tmp"
lock_type = "file"

[network]
network_config_dir = "$WORK/net"
EOF
# No registry is consulted: every FROM resolves to a local image.
cat >"$WORK/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf" CONTAINERS_CONF="$WORK/containers.conf"
export CONTAINERS_REGISTRIES_CONF="$WORK/registries.conf" TMPDIR="$WORK/tmp"

# cpu prints the CPU time (user and system) of this shell's finished
# children, in seconds: on a shared machine it varies less than wall time.
# (times runs in this shell, not in a subshell, which would see none.)
cpu() {
	times >"$WORK/times"
	awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.1f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$WORK/times"
}

# step NAME COMMAND...: runs a command with its output in a log, prints the
# wall and CPU time it took, and the log's tail when it fails. The times
# are left in secs_NAME and cpu_NAME.
step() {
	local name=$1 start=$EPOCHREALTIME cpu0 log="$WORK/logs/$1.log"
	cpu >"$WORK/cpu0"
	cpu0=$(<"$WORK/cpu0")
	shift
	if ! "$@" >"$log" 2>&1; then
		say "$name failed; last lines of its log:"
		tail -n 40 "$log" >&2
		return 1
	fi
	local var=${name//-/_}
	printf -v "secs_$var" '%s' "$(elapsed "$start")"
	cpu >"$WORK/cpu1"
	printf -v "cpu_$var" '%s' "$(awk -v a="$cpu0" -v b="$(<"$WORK/cpu1")" 'BEGIN { printf "%.1f", b - a }')"
	local s="secs_$var" c="cpu_$var"
	say "$name: ${!s} s (CPU ${!c} s)"
}

# --- 1. base images ---------------------------------------------------------
dockerfile="$here/Dockerfile"
golang_image=$(awk 'toupper($1) == "FROM" && $2 ~ /^golang:/ { print $2; exit }' "$dockerfile")
debian_image=$(awk 'toupper($1) == "FROM" && $2 ~ /^debian:/ { print $2; exit }' "$dockerfile")
[ -n "$golang_image" ] && [ -n "$debian_image" ] || die "the Dockerfile has no golang: or debian: FROM line"
suite=${debian_image#debian:}
suite=${suite%-slim}
go_tag=${golang_image#golang:}
go_version=${go_tag%%-*}
case "$(go env GOVERSION)" in
go"$go_version" | go"$go_version".*) ;;
*) die "the Dockerfile builds with $golang_image but this machine has $(go env GOVERSION)" ;;
esac

# The mirror apt uses here (deb822 .sources or one-line .list), else Debian's.
mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$suite" '
	/^URIs:/ { uri = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) { print uri; exit } }')
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk -v s="$suite" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i !~ /^\[/ && $(i + 1) == s) { print $i; exit } }')
fi
mirror=${mirror:-http://deb.debian.org/debian}

rootfs="$WORK/rootfs"
step debootstrap debootstrap --variant=minbase "$suite" "$rootfs" "$mirror"
# Trim like the official slim image: no documentation, manuals or locales,
# now or for packages installed later, and no apt lists or caches.
slim() {
	cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
	# apt as in the official image: no package caches, compressed lists,
	# no translations, suggestions not kept by autoremove.
	cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
	echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
	echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
	echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
	find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
	find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
	rm -rf "$rootfs"/usr/share/{info,locale,man,lintian/overrides}/* \
		"$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
		"$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
		"$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old \
		"$rootfs"/dev/* "$rootfs"/proc/* "$rootfs"/sys/* "$rootfs"/run/* "$rootfs"/tmp/*
	tar -C "$rootfs" --numeric-owner -cf - . |
		podman import --change 'CMD ["bash"]' \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			- "docker.io/library/$debian_image"
	rm -rf "$rootfs"
}
step base-image slim

goroot=$(go env GOROOT)
builder() {
	local ctr
	ctr=$(buildah from --pull=never "docker.io/library/$debian_image")
	buildah run --isolation chroot --network host "$ctr" -- sh -ec '
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates git
		rm -rf /var/lib/apt/lists/*'
	buildah copy "$ctr" "$goroot" /usr/local/go
	buildah config --env GOPATH=/go --env GOTOOLCHAIN=local \
		--env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--workingdir /go "$ctr"
	buildah commit --rm "$ctr" "docker.io/library/$golang_image"
}
step builder-image builder

# --- 2. the image, cold and after a code-only change ------------------------
space="$WORK/space"
step assemble go run "$repo/examples/hfspace/assemble" -repo "$repo" -o "$space"
image=localhost/hfspace:imagetest
bud() {
	buildah bud --isolation chroot --pull=never --layers --network host -t "$image" "$space"
}
step cold-build bud
printf '\n// imagetest: a code-only change.\n' >>"$space/main.go"
step rebuild bud
grep -q 'Using cache' "$WORK/logs/rebuild.log" ||
	die "the rebuild after a code-only change reused no layer: the dependency layer is not cached"

# --- 3. size by layer ---------------------------------------------------------
human() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
image_bytes=$(podman image inspect --format '{{.Size}}' "$image")
base_bytes=$(podman image inspect --format '{{.Size}}' "docker.io/library/$debian_image")
say "image $image: $(human "$image_bytes") ($(awk -v a="$image_bytes" -v b="$base_bytes" 'BEGIN { printf "%.2f", a / b }')x $debian_image, $(human "$base_bytes"))"
say "layers, newest first:"
podman history --no-trunc --format '{{.Size}}	{{.CreatedBy}}' "$image" |
	awk -F '\t' '{ c = $2; gsub(/[ \t]+/, " ", c); if (length(c) > 90) c = substr(c, 1, 87) "..."; printf "imagetest:   %10s  %s\n", $1, c }'

# --- 4. run it as a Space -----------------------------------------------------
go build -o "$WORK/imagecheck" "$repo/examples/hfspace/imagecheck"
# imagecheck also runs the image's binary outside the container, as uid
# 1000, for baseline figures: its directory must be reachable by that user.
chmod 0711 "$WORK"
mkdir -m 0755 "$WORK/check"
TMPDIR="$WORK/check" "$WORK/imagecheck" -image "$image" -postgres "$DBFALLBACK_TEST_DATABASE_URL"

say "work directory before cleanup: $(du -sxh "$WORK" | cut -f 1)"
cpu >"$WORK/cpu1"
say "passed: debootstrap $secs_debootstrap s, builder image $secs_builder_image s, cold build $secs_cold_build s (CPU $cpu_cold_build s), rebuild $secs_rebuild s (CPU $cpu_rebuild s; $(awk -v a="$secs_rebuild" -v b="$secs_cold_build" 'BEGIN { printf "%.2f", a / b }') of the cold build); stage $(elapsed "$stage_start") s, CPU $(<"$WORK/cpu1") s"
