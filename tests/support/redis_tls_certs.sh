#!/usr/bin/env bash
# redis_tls_certs.sh - throwaway certificates for TLS tests and benchmarks of
# Strata against redis-server (--tls-port), made with the openssl tool.
#
#   redis_tls_certs.sh DIR
#
# Writes into DIR (created if needed), all PEM, EC P-256, valid 2 days:
#   ca.pem, ca.key            a test CA
#   server.pem, server.key    CN=localhost, SAN DNS:localhost + IP:127.0.0.1,
#                             signed by the CA; serverAuth and clientAuth, so a
#                             cluster node can also present it on the cluster bus
#   client.pem, client.key    CN=strata-client, signed by the CA (tls-auth-clients)
#   other-ca.pem, other-ca.key  an unrelated CA: trusting it must fail to verify
# Takes ~0.1 s. Needs openssl (>= 1.1.1) in PATH.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: redis_tls_certs.sh DIR" >&2; exit 2; }
d=$1
mkdir -p "$d"
command -v openssl >/dev/null || { echo "redis_tls_certs.sh: openssl not in PATH" >&2; exit 1; }

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() {  # name
    key "$d/$1.key"
    openssl req -x509 -new -key "$d/$1.key" -sha256 -days 2 -subj "/CN=strata test $1" \
        -out "$d/$1.pem" 2>/dev/null
}

leaf() {  # name CN extendedKeyUsage subjectAltName-or-empty
    local cnf="$d/$1.cnf"
    {
        printf '[req]\ndistinguished_name=dn\n[dn]\n[ext]\n'
        printf 'basicConstraints=critical,CA:FALSE\n'
        printf 'keyUsage=critical,digitalSignature,keyEncipherment\n'
        printf 'extendedKeyUsage=%s\n' "$3"
        [ -z "$4" ] || printf 'subjectAltName=%s\n' "$4"
    } >"$cnf"
    key "$d/$1.key"
    openssl req -new -key "$d/$1.key" -subj "/CN=$2" -config "$cnf" 2>/dev/null |
        openssl x509 -req -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
            -sha256 -extfile "$cnf" -extensions ext -out "$d/$1.pem" 2>/dev/null
    rm -f "$cnf"
}

ca ca
ca other-ca
leaf server localhost serverAuth,clientAuth "DNS:localhost,IP:127.0.0.1"
leaf client strata-client clientAuth ""
rm -f "$d/ca.srl"
chmod 600 "$d"/*.key
