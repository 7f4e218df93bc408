#!/bin/sh
# Makes Istio's plugged-in CA layout for the Secret `cacerts` of control-plane.yaml in folder $1: a root CA (keep
# root-key.pem offline) and the control plane's intermediate CA signed by it, EC P-256, trust domain $2 (cluster.local).
#   examples/kubernetes/cacerts.sh ./cacerts
#   kubectl create secret generic cacerts -n skiff-system --from-file=./cacerts/ca-cert.pem \
#     --from-file=./cacerts/ca-key.pem --from-file=./cacerts/root-cert.pem --from-file=./cacerts/cert-chain.pem
set -eu
dir=${1:?usage: cacerts.sh DIR [TRUST_DOMAIN]}
domain=${2:-cluster.local}
mkdir -p "$dir" && cd "$dir"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root-key.pem -out root-cert.pem -days 3650 \
  -subj "/O=$domain/CN=Skiff root CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.csr -subj "/O=$domain/CN=Skiff intermediate CA" 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > ca.ext
openssl x509 -req -in ca.csr -CA root-cert.pem -CAkey root-key.pem -CAcreateserial -days 730 -out ca-cert.pem -extfile ca.ext 2>/dev/null
cat ca-cert.pem root-cert.pem > cert-chain.pem
rm -f ca.csr ca.ext root-cert.srl
chmod 644 ca-cert.pem root-cert.pem cert-chain.pem
echo "$dir: ca-cert.pem ca-key.pem root-cert.pem cert-chain.pem (for the Secret cacerts); root-key.pem: keep it offline"
