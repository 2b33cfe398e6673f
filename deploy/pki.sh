#!/usr/bin/env bash
# pki.sh: a federation's certificate authority and its node, client, department and auditor
# certificates.
#
# Joining a federation (docs/operator.md, "Joining a federation"): keys never leave their owner.
#   At the county (no CA here):
#   pki.sh request DIR JURISDICTION            DIR/J.key (new TLS key) and DIR/J.csr to send to the CA
#   pki.sh signing-key DIR JURISDICTION        once: DIR/J.sign.key (Ed25519, stays here) and
#                                              DIR/J.sign.pub to send to the CA
#   pki.sh next-signing-key DIR JURISDICTION   a rotation: DIR/J.sign.next.key (stays here) and
#                                              DIR/J.sign.next.pub to send to the CA; once the new
#                                              directory arrives, move J.sign.next.key over the key
#                                              file the node reads (it takes it up while running)
#   At the coordinating office (the CA):
#   pki.sh sign DIR FILE.csr JURISDICTION [FILE.sign.pub]
#                                              DIR/nodes/J.crt from the county's request (spiffe://F/node/J,
#                                              EKU serverAuth+clientAuth, SANs as for `node`); with a
#                                              public signing key, records it and rewrites the directory.
#                                              Send back: nodes/J.crt, ca.crt, directory.yaml
#
#   pki.sh init    DIR FEDERATION              create DIR/ca.{key,crt} (10 years) for FEDERATION
#   pki.sh node    DIR JURISDICTION            all at the CA, for tests and demos: DIR/nodes/J.{key,crt}
#                                              and, once, DIR/nodes/J.sign.key (kept when renewed)
#   pki.sh rotate  DIR JURISDICTION FILE.pub [GRACE]
#                                              a county's new signing key: valid from now; the old
#                                              one until now + GRACE (default "7 days", as for
#                                              `date -d`; "0 days" for a compromised key). Keeps
#                                              DIR/nodes/J.sign.keys and rewrites the directory.
#                                              Send directory.yaml to every node and coordinator.
#   pki.sh directory DIR                       (re)write DIR/directory.yaml: every node's signing key
#   pki.sh client  DIR JURISDICTION NAME       DIR/clients/J-NAME.{key,crt}: spiffe://F/client/J/NAME
#   pki.sh department DIR JURISDICTION NAME   DIR/departments/J-NAME.{key,crt}:
#                                              spiffe://F/department/J/NAME (reads what a node's
#                                              sharing policy grants it; docs/privacy.md)
#   pki.sh auditor DIR NAME                    DIR/auditors/NAME.{key,crt}: spiffe://F/auditor/NAME
#   pki.sh show    FILE.crt                    print subject, SANs, key usages and validity
#
# TLS keys are ECDSA P-256, all keys mode 0600. Leaf certificates are valid for DAYS (env,
# default 397). Extra server names: SANS="DNS:node1.example.gov,IP:10.0.0.5" (env) for `node`
# and `sign`.
set -euo pipefail

usage() { sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
die() { echo "pki.sh: $*" >&2; exit 2; }

region_ok() { [[ "$1" =~ ^[0-9]{6}([0-9]{6})?$ ]] || die "jurisdiction '$1': a 6- or 12-digit region code expected"; }
name_ok() { [[ "$1" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "name '$1': 1..64 of letters, digits, . _ - expected"; }

federation_of() {
  [ -f "$1/ca.crt" ] && [ -f "$1/federation" ] || die "$1: no CA here (run: pki.sh init $1 FEDERATION)"
  cat "$1/federation"
}

# sign_csr DIR CSR OUT.crt SAN EKU CN: the CA signs a request. Only the request's public key is
# used: subject and extensions are the CA's.
sign_csr() {
  local dir=$1 csr=$2 out=$3 san=$4 eku=$5 cn=$6 days=${DAYS:-397}
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
  openssl x509 -req -in "$csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -subj "/O=Caseway/CN=$cn" -days "$days" -sha256 -extfile "$ext" -out "$out.tmp" 2>/dev/null \
    || { rm -f "$ext" "$out.tmp"; die "$csr: not signed (openssl x509 -req failed)"; }
  rm -f "$ext"
  mv "$out.tmp" "$out"
}

# new_key_and_csr OUT CN: OUT.key (0600) and OUT.csr.
new_key_and_csr() {
  (umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null)
  openssl req -new -key "$1.key" -subj "/O=Caseway/CN=$2" -out "$1.csr" 2>/dev/null
}

# issue DIR OUT_BASENAME CN SAN EKU: key, request and certificate in one place (tests, demos,
# clients and auditors of the coordinating office).
issue() {
  local dir=$1 out=$2 cn=$3 san=$4 eku=$5
  new_key_and_csr "$out" "$cn"
  sign_csr "$dir" "$out.csr" "$out.crt" "$san" "$eku" "$cn"
  rm -f "$out.csr"
  echo "$out.crt"
}

node_san() { echo "URI:spiffe://$1/node/$2,DNS:localhost,IP:127.0.0.1${SANS:+,$SANS}"; }

# new_signing_key OUT: OUT.key (Ed25519, 0600) and OUT.pub, made here (the key never travels).
new_signing_key() {
  mkdir -p "$(dirname "$1")"
  (umask 077; openssl genpkey -algorithm ED25519 -out "$1.key" 2>/dev/null)
  openssl pkey -in "$1.key" -pubout -out "$1.pub" 2>/dev/null
  echo "$1.pub"
}

# public_key_b64 FILE: the raw Ed25519 public key (32 bytes, base64) of a private or public PEM.
public_key_b64() {
  if grep -q "PRIVATE KEY" "$1"; then
    openssl pkey -in "$1" -pubout -outform DER | tail -c 32 | base64 -w0
  else
    openssl pkey -pubin -in "$1" -outform DER | tail -c 32 | base64 -w0
  fi
}

# write_directory DIR: the federation directory (caseway.v1.FederationDirectory as YAML).
write_directory() {
  local dir=$1 fed key j
  fed=$(federation_of "$dir")
  {
    echo "# Federation directory of $fed: every node's Ed25519 signing key (raw, base64)."
    echo "# Generated by deploy/pki.sh; give the same file to every node and auditor."
    echo "federation: $fed"
    echo "nodes:"
    # A county's public key (nodes/J.sign.pub, from `sign`) or, for nodes made here by `node`,
    # the key itself.
    for j in $( (ls "$dir"/nodes/ 2>/dev/null || true) | sed -n 's/\.sign\.\(pub\|key\)$//p' | sort -u); do
      echo "  - jurisdiction: \"$j\""
      if [ -f "$dir/nodes/$j.sign.keys" ]; then
        # Rotated: every key with its period ("-": unbounded), from nodes/J.sign.keys.
        echo "    keys:"
        while read -r pub from until; do
          echo "      - public_key: $pub"
          [ "$from" = - ] || echo "        valid_from: \"$from\""
          [ "$until" = - ] || echo "        valid_until: \"$until\""
        done <"$dir/nodes/$j.sign.keys"
        continue
      fi
      key="$dir/nodes/$j.sign.pub"
      [ -f "$key" ] || key="$dir/nodes/$j.sign.key"
      echo "    signing_key: $(public_key_b64 "$key")"
    done
  } >"$dir/directory.yaml.tmp"
  mv "$dir/directory.yaml.tmp" "$dir/directory.yaml"
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
  request)
    [ $# -eq 2 ] || usage
    dir=$1 j=$2; region_ok "$j"
    [ -f "$dir/ca.key" ] && die "$dir holds ca.key: make requests on the node's machine, not at the CA"
    [ -e "$dir/$j.key" ] && die "$dir/$j.key exists: renew into a new directory (docs/operator.md, 'Renewing a certificate')"
    mkdir -p "$dir"
    new_key_and_csr "$dir/$j" "node $j"
    echo "$dir/$j.csr"
    echo "pki.sh: send $dir/$j.csr to the coordinating office; $dir/$j.key stays here" >&2
    ;;
  signing-key)
    [ $# -eq 2 ] || usage
    dir=$1 j=$2; region_ok "$j"
    [ -f "$dir/$j.sign.key" ] && die "$dir/$j.sign.key exists: a node keeps its signing key (docs/operator.md, 'A compromised key')"
    new_signing_key "$dir/$j.sign"
    echo "pki.sh: send $dir/$j.sign.pub to the coordinating office; $dir/$j.sign.key stays here" >&2
    ;;
  next-signing-key)
    [ $# -eq 2 ] || usage
    dir=$1 j=$2; region_ok "$j"
    [ -f "$dir/ca.key" ] && die "$dir holds ca.key: make a node's key on the node's machine"
    [ -f "$dir/$j.sign.next.key" ] && die "$dir/$j.sign.next.key exists: send $dir/$j.sign.next.pub, or remove both to start over"
    new_signing_key "$dir/$j.sign.next"
    echo "pki.sh: send $dir/$j.sign.next.pub to the coordinating office; once its new directory.yaml is installed here, move $dir/$j.sign.next.key over the node's signing key file" >&2
    ;;
  rotate)
    [ $# -eq 3 ] || [ $# -eq 4 ] || usage
    dir=$1 j=$2 pub=$3 grace=${4:-7 days}; region_ok "$j"
    [ -f "$dir/ca.key" ] || die "$dir/ca.key: rotate at the CA"
    openssl pkey -pubin -in "$pub" -text -noout 2>/dev/null | grep -q ED25519 \
      || die "$pub: not an Ed25519 public key (pki.sh next-signing-key makes one)"
    history="$dir/nodes/$j.sign.keys"
    new=$(public_key_b64 "$pub")
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    until=$(date -u -d "$now + $grace" +%Y-%m-%dT%H:%M:%SZ) || die "grace '$grace': not a duration date -d reads"
    if [ ! -f "$history" ]; then
      old="$dir/nodes/$j.sign.pub"
      [ -f "$old" ] || old="$dir/nodes/$j.sign.key"
      [ -f "$old" ] || die "$j has no signing key here to rotate from"
      echo "$(public_key_b64 "$old") - -" >"$history"
    fi
    grep -q "^$new " "$history" && die "$pub: this key is already listed for $j"
    # The key valid until now ends at now + grace; the new one is valid from now.
    awk -v until="$until" '$3 == "-" { $3 = until } { print }' "$history" >"$history.tmp"
    echo "$new $now -" >>"$history.tmp"
    mv "$history.tmp" "$history"
    cp "$pub" "$dir/nodes/$j.sign.pub.tmp" && mv "$dir/nodes/$j.sign.pub.tmp" "$dir/nodes/$j.sign.pub"
    write_directory "$dir"
    echo "$dir/directory.yaml"
    echo "pki.sh: $j's previous key signs until $until; send $dir/directory.yaml to every node and coordinator" >&2
    ;;
  sign)
    [ $# -eq 3 ] || [ $# -eq 4 ] || usage
    dir=$1 csr=$2 j=$3 pub=${4:-}; region_ok "$j"; fed=$(federation_of "$dir")
    [ -f "$dir/ca.key" ] || die "$dir/ca.key: sign at the CA"
    openssl req -in "$csr" -noout -verify 2>/dev/null || die "$csr: not a certificate request with a valid signature"
    if [ -n "$pub" ]; then
      openssl pkey -pubin -in "$pub" -noout 2>/dev/null && openssl pkey -pubin -in "$pub" -text -noout | grep -q ED25519 \
        || die "$pub: not an Ed25519 public key (pki.sh signing-key makes one)"
    fi
    mkdir -p "$dir/nodes"
    sign_csr "$dir" "$csr" "$dir/nodes/$j.crt" "$(node_san "$fed" "$j")" "serverAuth, clientAuth" "node $j"
    if [ -n "$pub" ]; then
      cp "$pub" "$dir/nodes/$j.sign.pub.tmp" && mv "$dir/nodes/$j.sign.pub.tmp" "$dir/nodes/$j.sign.pub"
      write_directory "$dir"
    fi
    echo "$dir/nodes/$j.crt"
    echo "pki.sh: send back $dir/nodes/$j.crt, $dir/ca.crt and $dir/directory.yaml" >&2
    ;;
  node)
    [ $# -eq 2 ] || usage
    dir=$1 j=$2; region_ok "$j"; fed=$(federation_of "$dir")
    mkdir -p "$dir/nodes"
    issue "$dir" "$dir/nodes/$j" "node $j" "$(node_san "$fed" "$j")" "serverAuth, clientAuth"
    if [ ! -f "$dir/nodes/$j.sign.key" ]; then
      (umask 077; openssl genpkey -algorithm ED25519 -out "$dir/nodes/$j.sign.key" 2>/dev/null)
    fi
    write_directory "$dir"
    ;;
  directory)
    [ $# -eq 1 ] || usage
    write_directory "$1"
    echo "$1/directory.yaml"
    ;;
  client)
    [ $# -eq 3 ] || usage
    dir=$1 j=$2 name=$3; region_ok "$j"; name_ok "$name"; fed=$(federation_of "$dir")
    mkdir -p "$dir/clients"
    issue "$dir" "$dir/clients/$j-$name" "client $j $name" "URI:spiffe://$fed/client/$j/$name" "clientAuth"
    ;;
  department)
    [ $# -eq 3 ] || usage
    dir=$1 j=$2 name=$3; region_ok "$j"; name_ok "$name"; fed=$(federation_of "$dir")
    mkdir -p "$dir/departments"
    issue "$dir" "$dir/departments/$j-$name" "department $j $name" \
      "URI:spiffe://$fed/department/$j/$name" "clientAuth"
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
