// Mutual-TLS credentials built from PEM files.
#ifndef CASEWAY_COMMON_TLS_H_
#define CASEWAY_COMMON_TLS_H_

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/strings/string_view.h"

namespace caseway::common {

// KeepOpenSslAtExit initializes OpenSSL without its exit-time clean-up. Call it first in main,
// before anything else touches OpenSSL. gRPC's threads outlive main: with the default clean-up,
// OpenSSL frees its state and deletes its thread-local keys while those threads still run, so a
// thread ending after it leaks its error queue and random generator, and one still using
// OpenSSL uses freed state. A process that is ending needs no clean-up; the system reclaims it.
void KeepOpenSslAtExit();

// KeyMatchesCertificate checks that `key_pem` is a private key (PEM) and the one of the
// certificate `cert_pem`. INVALID_ARGUMENT saying which is wrong.
absl::Status KeyMatchesCertificate(const std::string& cert_pem, const std::string& key_pem);

// TlsFiles names a CA bundle, a certificate and its key (PEM).
struct TlsFiles {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

// PeerCheck decides, at the TLS handshake and after the chain verified against the CA, whether
// a client certificate may connect: its URI SANs and its PEM. A non-OK status ends the handshake
// (the client sees UNAVAILABLE) and is logged with the reason.
using PeerCheck = std::function<absl::Status(const std::vector<std::string>& uri_sans,
                                             absl::string_view leaf_pem)>;

// ServerCredentials requires and verifies a client certificate signed by the CA and, with
// `check`, accepts only the certificates it accepts. NOT_FOUND naming the file that cannot be
// read. With `reload` (and a `check`), the three files are read again every `reload`: a renewed
// certificate and key serve new handshakes without a restart (a key that does not match its
// certificate is ignored until it does).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const TlsFiles& files, PeerCheck check = nullptr,
    absl::Duration reload = absl::ZeroDuration());

// ReloadingChannelCredentials presents our certificate, read again every `reload` like the
// server's, verifies the server's against the CA and the host name dialed. For a node's own
// connections to its peers; clients use ChannelCredentials.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ReloadingChannelCredentials(
    const TlsFiles& files, absl::Duration reload);

// ChannelCredentials presents our certificate and trusts only the CA.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(const TlsFiles& files);

}  // namespace caseway::common


namespace caseway::common {

// CertificateUris returns the URI SANs of the first certificate in `pem`. INVALID_ARGUMENT when
// it is not a PEM certificate.
absl::StatusOr<std::vector<std::string>> CertificateUris(const std::string& pem);

// CertificateWindow is a certificate's validity period.
struct CertificateWindow {
  absl::Time not_before;
  absl::Time not_after;
};
absl::StatusOr<CertificateWindow> CertificateValidity(const std::string& pem);

// ClockProblem says why a certificate valid in `window` fails at `now` by this clock ("" when
// it does not): TLS checks validity against the system clock, so a clock set wrong makes every
// handshake fail, and the peers only see a failed handshake.
std::string ClockProblem(const CertificateWindow& window, absl::Time now);

}  // namespace caseway::common
#endif  // CASEWAY_COMMON_TLS_H_
