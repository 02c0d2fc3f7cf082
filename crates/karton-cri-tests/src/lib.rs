//! No library: the package holds `tests/cri.rs`, a CRI client (the calls kubelet makes
//! for a pod) against a private containerd whose CRI plugin runs karton as a runtime
//! handler. Its own package keeps tonic, tokio and k8s-cri out of the karton binary.
