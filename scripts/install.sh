#!/usr/bin/env bash
# Installs edgemesh on this host (or under --root DIR): the binary as
# /usr/local/bin/edgemesh, the systemd unit of each role, and a config
# skeleton /etc/edgemesh/edgemesh.yaml (mode 600). An existing config or psk
# is never overwritten: the install refuses before changing anything, and
# --upgrade replaces only the binary and the units. See docs/deploy.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: install.sh (--agent | --server | --agent --server) [options]

  --agent                install edgemesh-agent.service and an agent config
  --server               install edgemesh-server.service and a server config
  --binary FILE          the edgemesh executable (default: edgemesh beside this
                         script, else ../dist/edgemesh from it, as in the repo)
  --psk FILE             install FILE as /etc/edgemesh/psk (mode 600)
  --ca FILE --cert FILE --key FILE
                         identity v2: install the mesh CA's public key, this
                         node's certificate and its key (mode 600) as
                         /etc/edgemesh/ca.pub, node.crt, node.key, and point
                         the config's trust at them (edgemesh cert issue)
  --servers LIST         agent config: tunnel servers, comma-separated host:port
  --advertise LIST       server config: public IPs or DNS names, comma-separated
  --node-name NAME       config: nodeName (default: the hostname at run time)
  --upgrade              replace the binary and units only; keep config and psk
  --root DIR             install under DIR instead of / (also: DESTDIR=DIR)
  -h, --help             this help

Nothing is enabled or started: edit the config, then
  systemctl enable --now edgemesh-agent     (or edgemesh-server)
EOF
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${DESTDIR:-/}
AGENT=0
SERVER=0
BINARY=""
PSK_SRC=""
CA_SRC=""
CERT_SRC=""
KEY_SRC=""
SERVERS=""
ADVERTISE=""
NODE_NAME=""
UPGRADE=0

need_value() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "install.sh: $1 needs a value" >&2; usage >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --agent) AGENT=1 ;;
    --server) SERVER=1 ;;
    --binary) need_value "$@"; BINARY=$2; shift ;;
    --psk) need_value "$@"; PSK_SRC=$2; shift ;;
    --ca) need_value "$@"; CA_SRC=$2; shift ;;
    --cert) need_value "$@"; CERT_SRC=$2; shift ;;
    --key) need_value "$@"; KEY_SRC=$2; shift ;;
    --servers) need_value "$@"; SERVERS=$2; shift ;;
    --advertise) need_value "$@"; ADVERTISE=$2; shift ;;
    --node-name) need_value "$@"; NODE_NAME=$2; shift ;;
    --upgrade) UPGRADE=1 ;;
    --root) need_value "$@"; ROOT=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[ $AGENT = 1 ] || [ $SERVER = 1 ] || { echo "install.sh: choose a role: --agent and/or --server" >&2; usage >&2; exit 2; }

if [ -z "$BINARY" ]; then
  if [ -f "$HERE/edgemesh" ]; then BINARY="$HERE/edgemesh"; else BINARY="$HERE/../dist/edgemesh"; fi
fi
[ -f "$BINARY" ] || die "no edgemesh binary at $BINARY (build it with npm run build, or pass --binary FILE)"
[ -z "$PSK_SRC" ] || [ -f "$PSK_SRC" ] || die "no psk file at $PSK_SRC"
TRUST=0
if [ -n "$CA_SRC$CERT_SRC$KEY_SRC" ]; then
  [ -n "$CA_SRC" ] && [ -n "$CERT_SRC" ] && [ -n "$KEY_SRC" ] || die "--ca, --cert and --key go together"
  for f in "$CA_SRC" "$CERT_SRC" "$KEY_SRC"; do [ -f "$f" ] || die "no file at $f"; done
  TRUST=1
fi
ROLES=()
[ $AGENT = 1 ] && ROLES+=(agent)
[ $SERVER = 1 ] && ROLES+=(server)
for r in "${ROLES[@]}"; do [ -f "$HERE/edgemesh-$r.service" ] || die "missing unit file $HERE/edgemesh-$r.service"; done

[ -d "$ROOT" ] || die "--root $ROOT is not a directory"
ROOT=$(cd "$ROOT" && pwd)
P=${ROOT%/} # prefix for every path below ("" for the real root)
if [ -z "$P" ] && [ "$(id -u)" != 0 ]; then die "installing into / needs root (or pass --root DIR)"; fi

BIN_DST=$P/usr/local/bin/edgemesh
UNIT_DIR=$P/etc/systemd/system
CONF_DIR=$P/etc/edgemesh
CONF=$CONF_DIR/edgemesh.yaml
PSK=$CONF_DIR/psk
TRUST_FILES=("$CONF_DIR/ca.pub" "$CONF_DIR/node.crt" "$CONF_DIR/node.key")

# Decide everything before changing anything: a refusal leaves the host as it was.
if [ $UPGRADE = 0 ]; then
  [ -e "$CONF" ] && die "$CONF exists; not overwriting it (use --upgrade to replace only the binary and units)"
  [ -n "$PSK_SRC" ] && [ -e "$PSK" ] && die "$PSK exists; not overwriting it (a new secret would cut this node off the mesh)"
  if [ $TRUST = 1 ]; then for f in "${TRUST_FILES[@]}"; do [ -e "$f" ] && die "$f exists; not overwriting it"; done; fi
else
  [ -n "$PSK_SRC" ] && die "--upgrade keeps the psk; leave out --psk"
  [ $TRUST = 1 ] && die "--upgrade keeps the config and identity; leave out --ca, --cert and --key"
  [ -e "$CONF" ] || die "--upgrade: no config at $CONF; install without --upgrade first"
fi

# A YAML flow list from "a,b,c", each item quoted.
yaml_list() {
  local out="" item
  IFS=',' read -ra items <<<"$1"
  for item in "${items[@]}"; do
    item=${item// /}
    [ -n "$item" ] || continue
    case "$item" in *[\"\\]*) die "invalid list item: $item" ;; esac
    out+="${out:+, }\"$item\""
  done
  echo "[$out]"
}

config_skeleton() {
  echo "# edgemesh config, written by scripts/install.sh. Every field is described in"
  echo "# docs/config.md; edgemesh.yaml.example shows them all with comments."
  echo
  if [ -n "$NODE_NAME" ]; then
    echo "nodeName: $NODE_NAME"
  else
    echo "# nodeName: this node's name as Kubernetes knows it (default: the hostname)"
  fi
  echo "# the mesh secret, the same file on every node (mode 600)"
  echo "psk: /etc/edgemesh/psk"
  if [ $TRUST = 1 ]; then
    echo "# identity v2: this node's key and certificate under the mesh CA"
    echo "trust: {ca: /etc/edgemesh/ca.pub, cert: /etc/edgemesh/node.crt, key: /etc/edgemesh/node.key}"
  fi
  echo "logLevel: info"
  if [ $SERVER = 1 ]; then
    echo
    echo "server:"
    echo "  listenPort: 20004"
    echo "  # public IPs or DNS names agents reach this server at"
    echo "  advertiseAddresses: $(yaml_list "$ADVERTISE")"
    if [ $TRUST = 1 ]; then
      echo "  # the CA-signed revocation list (edgemesh ca revoke --out), handed to every agent"
      echo "  # revocations: /etc/edgemesh/revoked"
    fi
  fi
  if [ $AGENT = 1 ]; then
    echo
    echo "agent:"
    echo "  # tunnel servers, host:port (the server's public address, port 20004)"
    echo "  servers: $(yaml_list "$SERVERS")"
    echo "  tunnel:"
    echo "    listenPort: 20006"
    echo "  metadata:"
    echo "    # kubernetes: KubeEdge MetaServer at 127.0.0.1:10550 (edgecore metaServer.enable: true),"
    echo "    # or set kubernetes.kubeconfig; static: list services under metadata.static"
    echo "    source: kubernetes"
  fi
}

umask 022
mkdir -p "$P/usr/local/bin" "$UNIT_DIR"
# copy then rename: a running agent keeps its old executable, and no one sees half a file
tmp=$(mktemp "$P/usr/local/bin/.edgemesh.XXXXXX")
cp "$BINARY" "$tmp"
chmod 755 "$tmp"
mv -f "$tmp" "$BIN_DST"
echo "installed $BIN_DST"
for r in "${ROLES[@]}"; do
  install -m 644 "$HERE/edgemesh-$r.service" "$UNIT_DIR/edgemesh-$r.service"
  echo "installed $UNIT_DIR/edgemesh-$r.service"
done

if [ $UPGRADE = 0 ]; then
  mkdir -p "$CONF_DIR"
  chmod 700 "$CONF_DIR"
  (
    umask 077
    config_skeleton >"$CONF.tmp"
  )
  chmod 600 "$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
  echo "installed $CONF (mode 600): edit it before starting"
  if [ $TRUST = 1 ]; then
    install -m 644 "$CA_SRC" "$CONF_DIR/ca.pub"
    install -m 644 "$CERT_SRC" "$CONF_DIR/node.crt"
    install -m 600 "$KEY_SRC" "$CONF_DIR/node.key"
    echo "installed $CONF_DIR/ca.pub, node.crt and node.key (mode 600)"
  fi
  if [ -n "$PSK_SRC" ]; then
    install -m 600 "$PSK_SRC" "$PSK"
    echo "installed $PSK (mode 600)"
  elif [ ! -e "$PSK" ]; then
    echo "note: no $PSK yet: copy the mesh's secret there (mode 600), or on the first node run"
    echo "      edgemesh psk --out /etc/edgemesh/psk"
  fi
else
  echo "kept $CONF"
fi

if [ -z "$P" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  for r in "${ROLES[@]}"; do
    if [ $UPGRADE = 1 ] && systemctl is-active --quiet "edgemesh-$r"; then
      echo "restart to use the new binary: systemctl restart edgemesh-$r"
    else
      echo "then: systemctl enable --now edgemesh-$r"
    fi
  done
fi
