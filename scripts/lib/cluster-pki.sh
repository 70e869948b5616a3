# shellcheck shell=bash
# Certificates, keys and kubeconfigs for the local control plane, made with
# openssl. Sourced by scripts/local-cluster after lib/common.sh.

# Validity of every certificate, in days. The cluster is meant to live for a
# test run, so one year is ample.
readonly PKI_VALID_DAYS=365
readonly PKI_KEY_BITS=2048
readonly LOCAL_CLUSTER_NAME="visionfleet-local"

pki_dir() {
  printf '%s/pki\n' "$CLUSTER_DIR"
}

# Creates the cluster CA, the apiserver's serving certificate, the
# service-account signing key pair and one client certificate per control
# plane client. Group system:masters grants cluster-admin through the
# bootstrap RBAC policy.
pki_generate() {
  require_command openssl openssl
  local dir
  dir=$(pki_dir)
  mkdir -p "$dir"
  chmod 0700 "$dir"

  info "Generating certificates in $dir"
  openssl req -x509 -new -nodes -newkey "rsa:$PKI_KEY_BITS" -days "$PKI_VALID_DAYS" \
    -subj "/CN=$LOCAL_CLUSTER_NAME-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null

  pki_issue "$dir" apiserver "/CN=kube-apiserver" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost"
  pki_issue "$dir" admin "/O=system:masters/CN=$LOCAL_CLUSTER_NAME-admin" "extendedKeyUsage=clientAuth"
  # Without --use-service-account-credentials every controller acts as the
  # controller manager itself, so it needs cluster-admin rights.
  pki_issue "$dir" controller-manager "/O=system:masters/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  pki_issue "$dir" scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"

  openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$PKI_KEY_BITS" -out "$dir/service-account.key" 2>/dev/null
  openssl pkey -in "$dir/service-account.key" -pubout -out "$dir/service-account.pub"
}

# Issues a key pair and a certificate signed by the cluster CA.
# Arguments: directory, file name stem, subject, extension lines.
pki_issue() {
  local dir=$1 name=$2 subject=$3
  shift 3
  local extensions="$dir/$name.ext"
  {
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment"
    printf '%s\n' "$@"
  } >"$extensions"

  openssl req -new -nodes -newkey "rsa:$PKI_KEY_BITS" -subj "$subject" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days "$PKI_VALID_DAYS" -extfile "$extensions" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr" "$extensions"
}

# Writes a kubeconfig with the CA and the client's certificate embedded, so
# the file keeps working when copied elsewhere on this machine.
# Arguments: client name (a pki_issue stem), apiserver URL, output file.
pki_write_kubeconfig() {
  local client=$1 server=$2 output=$3
  local dir
  dir=$(pki_dir)
  cat >"$output" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: $LOCAL_CLUSTER_NAME
    cluster:
      server: $server
      certificate-authority-data: $(base64 -w0 "$dir/ca.crt")
users:
  - name: $client
    user:
      client-certificate-data: $(base64 -w0 "$dir/$client.crt")
      client-key-data: $(base64 -w0 "$dir/$client.key")
contexts:
  - name: $LOCAL_CLUSTER_NAME
    context:
      cluster: $LOCAL_CLUSTER_NAME
      user: $client
current-context: $LOCAL_CLUSTER_NAME
EOF
  chmod 0600 "$output"
}
