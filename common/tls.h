// Mutual-TLS credentials built from PEM files.
#ifndef CASEWAY_COMMON_TLS_H_
#define CASEWAY_COMMON_TLS_H_

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace caseway::common {

// TlsFiles names a CA bundle, a certificate and its key (PEM).
struct TlsFiles {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

// ServerCredentials requires and verifies a client certificate signed by the CA.
// NOT_FOUND naming the file that cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const TlsFiles& files);

// ChannelCredentials presents our certificate and trusts only the CA.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(const TlsFiles& files);

}  // namespace caseway::common


namespace caseway::common {

// CertificateUris returns the URI SANs of the first certificate in `pem`. INVALID_ARGUMENT when
// it is not a PEM certificate.
absl::StatusOr<std::vector<std::string>> CertificateUris(const std::string& pem);

}  // namespace caseway::common
#endif  // CASEWAY_COMMON_TLS_H_
