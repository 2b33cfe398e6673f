// Revocation: certificate revocation lists (CRLs) from a directory, reloaded while the node runs.
#ifndef CASEWAY_COMMON_REVOCATION_H_
#define CASEWAY_COMMON_REVOCATION_H_

#include <atomic>
#include <cstdint>
#include <set>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace caseway::common {

// CertificateSerial returns the serial number (lower-case hex) of a PEM certificate.
absl::StatusOr<std::string> CertificateSerial(absl::string_view pem);

// Revocations holds the serial numbers revoked by the CRLs in one directory (every regular file
// holding PEM or DER CRLs, e.g. `ca.crl`). A CRL counts only when it is signed by one of the
// federation CA certificates; one past its nextUpdate still revokes (fail closed) and is logged.
// A file that is not a CRL, or whose signature does not verify, is logged and ignored, and the
// serials revoked before stay revoked (fail closed) until a reload reads every file.
// Concurrency: thread-safe. Reload() runs on a background thread every `interval` once Start()
// is called; Revoked() is a cheap check.
class Revocations {
 public:
  // `dir` may be empty: nothing is revoked and Start() does nothing.
  Revocations(std::string dir, std::string ca_pem, absl::Duration interval);
  ~Revocations();

  // Reload reads the directory now. An error names the file and what is wrong with it; the
  // serials of the files that did load are in force either way.
  absl::Status Reload();
  void Start();

  bool Revoked(absl::string_view serial_hex) const;
  // Generation changes whenever the set of revoked serials does: long-lived streams re-check
  // their caller when it moves.
  uint64_t Generation() const { return generation_.load(std::memory_order_acquire); }
  size_t size() const;

 private:
  const std::string dir_;
  const std::string ca_pem_;
  const absl::Duration interval_;

  mutable absl::Mutex mu_;
  std::set<std::string> revoked_ ABSL_GUARDED_BY(mu_);
  std::string fingerprint_ ABSL_GUARDED_BY(mu_);  // names, sizes and mtimes last loaded
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> generation_{0};
  std::thread thread_;
};

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_REVOCATION_H_
