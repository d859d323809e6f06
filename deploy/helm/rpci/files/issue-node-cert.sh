#!/bin/sh
# Issues this node's mTLS certificate for an rpci agent or plugin: common name
# "<role>:<node>" (what rpci-controller authorizes), server and client usage,
# SANs for the node name and host IP, signed by the CA in $CA_DIR
# (tls.crt, tls.key). Writes tls.crt, tls.key and ca.crt to $OUT_DIR.
# Runs as the pod's init container; needs only openssl and a POSIX shell.
set -eu

role=${1:?usage: issue-node-cert.sh agent|plugin}
case "$role" in
  agent|plugin) ;;
  *) echo "issue-node-cert: role must be agent or plugin, got \"$role\"" >&2; exit 2 ;;
esac
node=${NODE_NAME:?NODE_NAME is not set}
ca_dir=${CA_DIR:-/etc/rpci/ca}
out=${OUT_DIR:-/etc/rpci/tls}
days=${CERT_DAYS:-365}

for f in "$ca_dir/tls.crt" "$ca_dir/tls.key"; do
  [ -r "$f" ] || { echo "issue-node-cert: $f is not readable" >&2; exit 1; }
done

umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

san="DNS:$node"
[ -n "${HOST_IP:-}" ] && san="$san,IP:$HOST_IP"
cat >"$work/ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EXT

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$work/tls.key" -subj "/CN=$role:$node" -out "$work/tls.csr" 2>"$work/log" ||
  { cat "$work/log" >&2; exit 1; }
openssl x509 -req -in "$work/tls.csr" -CA "$ca_dir/tls.crt" -CAkey "$ca_dir/tls.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days "$days" -extfile "$work/ext.cnf" \
  -out "$work/tls.crt" 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
openssl verify -CAfile "$ca_dir/tls.crt" "$work/tls.crt" >/dev/null

mkdir -p "$out"
cp "$work/tls.key" "$out/tls.key"
cp "$work/tls.crt" "$out/tls.crt"
cp "$ca_dir/tls.crt" "$out/ca.crt"
echo "issue-node-cert: issued $role:$node (SAN $san, $days days)"
