// DiagnoseHandshake: why a TLS connection to a node fails, in words an operator can act on.
// gRPC reports every failed handshake as UNAVAILABLE ("failed to connect to all addresses"),
// whatever the cause; a certificate that one side's clock puts outside its validity is the
// commonest cause that is not a network problem, and the one retrying never cures.
#ifndef CASEWAY_COMMON_TLS_DIAGNOSIS_H_
#define CASEWAY_COMMON_TLS_DIAGNOSIS_H_

#include <string>

#include "absl/time/time.h"
#include "common/tls.h"

namespace caseway::common {

// DiagnoseHandshake connects to `address` (host:port) with `files` as a gRPC client would (TLS,
// ALPN h2) and returns what is wrong with the handshake: this client's certificate outside its
// validity at `now`, the node's certificate outside it, or the node refusing ours (with the
// alert it sent, and the validity window its clock must lie in). "" when the handshake succeeds
// or the node cannot be reached at all (a network problem: nothing to add). Bounded by
// `timeout` for connecting and for each read.
std::string DiagnoseHandshake(const std::string& address, const TlsFiles& files, absl::Time now,
                              absl::Duration timeout = absl::Seconds(3));

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_TLS_DIAGNOSIS_H_
