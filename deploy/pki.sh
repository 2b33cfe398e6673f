#!/usr/bin/env bash
# pki.sh: a federation's certificate authority and its node, client and auditor certificates.
#
#   pki.sh init    DIR FEDERATION              create DIR/ca.{key,crt} (10 years) for FEDERATION
#   pki.sh node    DIR JURISDICTION            DIR/nodes/J.{key,crt}: spiffe://F/node/J,
#                                              EKU serverAuth+clientAuth, SAN DNS:localhost, IP:127.0.0.1
#   pki.sh client  DIR JURISDICTION NAME       DIR/clients/J-NAME.{key,crt}: spiffe://F/client/J/NAME
#   pki.sh auditor DIR NAME                    DIR/auditors/NAME.{key,crt}: spiffe://F/auditor/NAME
#   pki.sh show    FILE.crt                    print subject, SANs, key usages and validity
#
# Keys are ECDSA P-256, created with mode 0600. Leaf certificates are valid for DAYS (env, default
# 397). Extra server names: SANS="DNS:node1.example.gov,IP:10.0.0.5" (env) for `node`.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
die() { echo "pki.sh: $*" >&2; exit 2; }

region_ok() { [[ "$1" =~ ^[0-9]{6}([0-9]{6})?$ ]] || die "jurisdiction '$1': a 6- or 12-digit region code expected"; }
name_ok() { [[ "$1" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "name '$1': 1..64 of letters, digits, . _ - expected"; }

federation_of() {
  [ -f "$1/ca.crt" ] && [ -f "$1/federation" ] || die "$1: no CA here (run: pki.sh init $1 FEDERATION)"
  cat "$1/federation"
}

# issue DIR OUT_BASENAME CN SAN EKU
issue() {
  local dir=$1 out=$2 cn=$3 san=$4 eku=$5 days=${DAYS:-397}
  local ext
  ext=$(mktemp)
  cat >"$ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $eku
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
  (umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out.key" 2>/dev/null)
  openssl req -new -key "$out.key" -subj "/O=Caseway/CN=$cn" -out "$out.csr" 2>/dev/null
  openssl x509 -req -in "$out.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$ext" -out "$out.crt" 2>/dev/null
  rm -f "$out.csr" "$ext"
  echo "$out.crt"
}

cmd=${1:-}; shift || true
case "$cmd" in
  init)
    [ $# -eq 2 ] || usage
    dir=$1 fed=$2
    [[ "$fed" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "federation '$fed': a DNS-like name expected"
    [ -f "$dir/ca.key" ] && die "$dir/ca.key exists; refusing to overwrite a CA"
    mkdir -p "$dir"
    (umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null)
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 -subj "/O=Caseway/CN=$fed CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -addext "subjectAltName=URI:spiffe://$fed" -out "$dir/ca.crt" 2>/dev/null
    echo "$fed" >"$dir/federation"
    echo "$dir/ca.crt"
    ;;
  node)
    [ $# -eq 2 ] || usage
    dir=$1 j=$2; region_ok "$j"; fed=$(federation_of "$dir")
    mkdir -p "$dir/nodes"
    san="URI:spiffe://$fed/node/$j,DNS:localhost,IP:127.0.0.1${SANS:+,$SANS}"
    issue "$dir" "$dir/nodes/$j" "node $j" "$san" "serverAuth, clientAuth"
    ;;
  client)
    [ $# -eq 3 ] || usage
    dir=$1 j=$2 name=$3; region_ok "$j"; name_ok "$name"; fed=$(federation_of "$dir")
    mkdir -p "$dir/clients"
    issue "$dir" "$dir/clients/$j-$name" "client $j $name" "URI:spiffe://$fed/client/$j/$name" "clientAuth"
    ;;
  auditor)
    [ $# -eq 2 ] || usage
    dir=$1 name=$2; name_ok "$name"; fed=$(federation_of "$dir")
    mkdir -p "$dir/auditors"
    issue "$dir" "$dir/auditors/$name" "auditor $name" "URI:spiffe://$fed/auditor/$name" "clientAuth"
    ;;
  show)
    [ $# -eq 1 ] || usage
    openssl x509 -in "$1" -noout -subject -dates -ext subjectAltName,keyUsage,extendedKeyUsage
    ;;
  -h|--help|help) usage 0 ;;
  *) usage ;;
esac
