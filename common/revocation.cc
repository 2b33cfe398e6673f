#include "common/revocation.h"

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/log.h"
#include "common/thread_name.h"

namespace caseway::common {
namespace {

namespace fs = std::filesystem;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using CrlPtr = std::unique_ptr<X509_CRL, CrlFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

std::string SerialHex(const ASN1_INTEGER* serial) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
  if (bn == nullptr) return "";
  char* hex = BN_bn2hex(bn);
  std::string out = absl::AsciiStrToLower(hex == nullptr ? "" : hex);
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

std::vector<X509Ptr> ReadCertificates(absl::string_view pem) {
  std::vector<X509Ptr> out;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(x);
  return out;
}

std::vector<CrlPtr> ReadCrls(const std::string& bytes) {
  std::vector<CrlPtr> out;
  BioPtr bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
  while (X509_CRL* c = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
    out.emplace_back(c);
  }
  if (out.empty()) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(bytes.data());
    if (X509_CRL* c = d2i_X509_CRL(nullptr, &p, static_cast<long>(bytes.size()))) {
      out.emplace_back(c);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> CertificateSerial(absl::string_view pem) {
  std::vector<X509Ptr> certs = ReadCertificates(pem);
  if (certs.empty()) return absl::InvalidArgumentError("not a PEM certificate");
  return SerialHex(X509_get0_serialNumber(certs[0].get()));
}

Revocations::Revocations(std::string dir, std::string ca_pem, absl::Duration interval)
    : dir_(std::move(dir)), ca_pem_(std::move(ca_pem)), interval_(interval) {}

Revocations::~Revocations() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status Revocations::Reload() {
  if (dir_.empty()) return absl::OkStatus();
  std::error_code ec;
  std::vector<fs::path> files;
  std::string fingerprint;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (!entry.is_regular_file()) continue;
    files.push_back(entry.path());
  }
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("tls.crl_dir: cannot read ", dir_, ": ", ec.message()));
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    absl::StrAppend(&fingerprint, f.string(), ":", fs::file_size(f, ec), ":",
                    fs::last_write_time(f, ec).time_since_epoch().count(), ";");
  }
  {
    absl::MutexLock lock(&mu_);
    if (fingerprint == fingerprint_) return absl::OkStatus();
  }
  const std::vector<X509Ptr> cas = ReadCertificates(ca_pem_);
  std::set<std::string> revoked;
  absl::Status status;
  for (const auto& f : files) {
    auto bytes = ReadFile(f.string());
    std::vector<CrlPtr> crls = bytes.ok() ? ReadCrls(*bytes) : std::vector<CrlPtr>{};
    if (crls.empty()) {
      status.Update(absl::InvalidArgumentError(absl::StrCat(f.string(), ": not a CRL (PEM or DER)")));
      continue;
    }
    for (const CrlPtr& crl : crls) {
      bool verified = false;
      for (const X509Ptr& ca : cas) {
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(ca.get())) == 0 &&
            X509_CRL_verify(crl.get(), X509_get0_pubkey(ca.get())) == 1) {
          verified = true;
          break;
        }
      }
      if (!verified) {
        status.Update(absl::PermissionDeniedError(
            absl::StrCat(f.string(), ": CRL not signed by the federation CA; ignored")));
        continue;
      }
      const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
      if (next != nullptr && X509_cmp_current_time(next) < 0) {
        Log(LogLevel::kWarn, "CRL is past its nextUpdate; it still revokes (issue a new one)",
            {{"file", f.string()}});
      }
      STACK_OF(X509_REVOKED)* list = X509_CRL_get_REVOKED(crl.get());
      for (int i = 0; list != nullptr && i < sk_X509_REVOKED_num(list); ++i) {
        revoked.insert(SerialHex(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(list, i))));
      }
    }
  }
  bool changed;
  {
    absl::MutexLock lock(&mu_);
    if (!status.ok()) {
      // Fail closed: a file that did not load (e.g. caught in the middle of a rewrite) keeps
      // what it revoked before; the next reload tries again.
      revoked.insert(revoked_.begin(), revoked_.end());
    } else {
      fingerprint_ = fingerprint;
    }
    changed = revoked != revoked_;
    revoked_ = std::move(revoked);
  }
  if (changed) {
    generation_.fetch_add(1, std::memory_order_acq_rel);
    Log(LogLevel::kInfo, "revocation lists loaded",
        {{"dir", dir_}, {"revoked", absl::StrCat(size())}});
  }
  return status;
}

void Revocations::Start() {
  if (dir_.empty()) return;
  thread_ = std::thread([this] {
    NameThisThread("cw-revocations");
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      mu_.AwaitWithTimeout(absl::Condition(&stop_), interval_);
      if (stop_) break;
      mu_.Unlock();
      absl::Status s = Reload();
      if (!s.ok()) Log(LogLevel::kError, "revocation list not loaded", {{"status", s.ToString()}});
      mu_.Lock();
    }
  });
}

bool Revocations::Revoked(absl::string_view serial_hex) const {
  absl::MutexLock lock(&mu_);
  return revoked_.count(std::string(serial_hex)) > 0;
}

size_t Revocations::size() const {
  absl::MutexLock lock(&mu_);
  return revoked_.size();
}

}  // namespace caseway::common
