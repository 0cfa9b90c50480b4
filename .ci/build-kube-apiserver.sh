#!/bin/bash
# Build a real kube-apiserver (Kubernetes v1.20.2) on Debian 12 (bookworm) with only
# Debian's package archive reachable. Installs etcd-server (3.4.23) from apt too.
#   usage: build-kube-apiserver.sh [DEST_DIR]   (default /opt/kube-test/bin)
# A copy of ../shared/k8s/build-kube-apiserver.sh whose mirror lookup survives machines without
# /etc/apt/sources.list (deb822 sources only) and skips commented or disabled entries.
# Needs root (apt-get). Takes ~10-15 min of CPU on 2 cores; ~2 GB scratch disk.
set -euo pipefail
DEST=${1:-/opt/kube-test/bin}
WORK=${WORK:-$(mktemp -d /tmp/kube-build.XXXXXX)}
PKGVER=1.20.5+really1.20.2-1.1+deb12u1
export DEBIAN_FRONTEND=noninteractive

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    golang-go rsync make etcd-server golang-github-modern-go-reflect2-dev openssl >/dev/null

# Debian's source package "kubernetes" = the full upstream v1.20.2 tree incl. vendor/.
# Fetch it with a private deb-src list so /etc/apt stays untouched; apt checks the
# hashes against the signed Sources index.
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial"
# the Debian mirror(s) this machine's apt already uses, as deb-src lines: only active entries
# (`deb URI` lines of *.list, `URIs:` of *.sources; not comments, not disabled files). Missing
# files are fine: with pipefail a grep that finds no /etc/apt/sources.list would end the script.
shopt -s nullglob
{ grep -hoE '^deb +(\[[^]]*\] +)?https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    2>/dev/null | grep -oE 'https?://[^ ]+' || true
  grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -oE 'https?://[^ ]+' || true
} | grep -E 'debian' | sort -u |
  while read -r uri; do
    case "$uri" in
      *security*) echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bookworm-security main" ;;
      *) echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bookworm main" ;;
    esac
  done > "$WORK/apt/sources.list"
APTO=(-o "Dir::Etc::SourceList=$WORK/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache")
apt-get "${APTO[@]}" update -qq
cd "$WORK"
apt-get "${APTO[@]}" source --download-only -qq "kubernetes=$PKGVER"
tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz
cd kubernetes-1.20.2

# Patch 1: reflect2 1.0.1 (vendored) breaks json-iterator map encoding on Go >= 1.18;
# use Debian's reflect2 1.0.2 (what k8s itself moved to).
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
rm -f vendor/github.com/modern-go/reflect2/go.mod

# Patch 2: kubernetes#99804 / kube-openapi#230: with Go >= 1.16 the schema validator
# treats "" as null, so CRDs with `default: ""` (all KServe CRDs) and CRs with "" values
# are rejected ("must be of type string: \"null\""). Upstream fix: check only data == nil.
for f in vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go \
         vendor/github.com/go-openapi/validate/type.go; do
  grep -q 'if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {' "$f"
  sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$f"
done

# Build like debian/rules does (GOPATH mode; make also runs the code generators).
mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
mkdir -p "$WORK/home"
start=$(date +%s)
env GOPATH="$PWD/.go" CGO_ENABLED=0 HOME="$WORK/home" nice -n 19 make WHAT=cmd/kube-apiserver
echo "build took $(( $(date +%s) - start )) s"
install -D -m 0755 _output/bin/kube-apiserver "$DEST/kube-apiserver"
"$DEST/kube-apiserver" --version
echo "installed $DEST/kube-apiserver; etcd: $(command -v etcd); scratch dir $WORK (rm -rf it)"
