//! Test harness: local kube-apiserver, fake nodes and a fake kubelet.
