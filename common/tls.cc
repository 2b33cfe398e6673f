#include "common/tls.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace caseway::common {

void KeepOpenSslAtExit() { OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr); }

namespace {

// PeerVerifier runs a PeerCheck synchronously inside the handshake.
class PeerVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit PeerVerifier(PeerCheck check) : check_(std::move(check)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    std::vector<std::string> uris;
    for (const auto& uri : request->uri_names()) uris.emplace_back(uri.data(), uri.size());
    const grpc::string_ref pem = request->peer_cert();
    absl::Status s = check_(uris, absl::string_view(pem.data(), pem.size()));
    if (!s.ok()) {
      LogLimited(LogLevel::kWarn, "TLS handshake refused", {{"reason", std::string(s.message())}});
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(s.message()));
    } else {
      *sync_status = grpc::Status::OK;
    }
    return true;  // answered synchronously
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const PeerCheck check_;
};

}  // namespace

namespace {

// The file watcher's period in whole seconds (at least 1).
unsigned int ReloadSeconds(absl::Duration reload) {
  return static_cast<unsigned int>(std::max<int64_t>(1, absl::ToInt64Seconds(reload)));
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const TlsFiles& files,
                                                                           PeerCheck check,
                                                                           absl::Duration reload) {
  ASSIGN_OR_RETURN(std::string ca, ReadFile(files.ca_file));
  ASSIGN_OR_RETURN(std::string cert, ReadFile(files.cert_file));
  ASSIGN_OR_RETURN(std::string key, ReadFile(files.key_file));
  if (check == nullptr) {
    grpc::SslServerCredentialsOptions options(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    options.pem_root_certs = ca;
    options.pem_key_cert_pairs.push_back({key, cert});
    return grpc::SslServerCredentials(options);
  }
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  if (reload > absl::ZeroDuration()) {
    // Read now (the files were checked above) and again every `reload`.
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        files.key_file, files.cert_file, files.ca_file, ReloadSeconds(reload));
  } else {
    provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
        ca, std::vector<grpc::experimental::IdentityKeyCertPair>{{key, cert}});
  }
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<PeerVerifier>(std::move(check)));
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ReloadingChannelCredentials(
    const TlsFiles& files, absl::Duration reload) {
  // Fail here, naming the file, rather than with an anonymous handshake error later.
  for (const std::string* f : {&files.ca_file, &files.cert_file, &files.key_file}) {
    RETURN_IF_ERROR(ReadFile(*f).status());
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          files.key_file, files.cert_file, files.ca_file, ReloadSeconds(reload)));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const TlsFiles& files) {
  grpc::SslCredentialsOptions options;
  ASSIGN_OR_RETURN(options.pem_root_certs, ReadFile(files.ca_file));
  if (!files.cert_file.empty()) {
    ASSIGN_OR_RETURN(options.pem_cert_chain, ReadFile(files.cert_file));
    ASSIGN_OR_RETURN(options.pem_private_key, ReadFile(files.key_file));
  }
  return grpc::SslCredentials(options);
}


absl::Status KeyMatchesCertificate(const std::string& cert_pem, const std::string& key_pem) {
  // OpenSSL 3's decoders fail on an error left in this thread's queue by earlier work (a
  // civetweb or gRPC thread's): start from an empty one.
  ERR_clear_error();
  BIO* cert_bio = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
  BIO_free(cert_bio);
  BIO* key_bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  // No passphrase prompt on the terminal: an encrypted key is refused (gRPC could not use it).
  pem_password_cb* no_passphrase = [](char*, int, int, void*) { return 0; };
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, no_passphrase, nullptr);
  BIO_free(key_bio);
  absl::Status s;
  if (cert == nullptr) {
    s = absl::InvalidArgumentError("not a PEM certificate");
  } else if (key == nullptr) {
    s = absl::InvalidArgumentError("not a PEM private key (or one protected by a passphrase)");
  } else if (X509_check_private_key(cert, key) != 1) {
    s = absl::InvalidArgumentError("the key is not the certificate's (renewed one without the other?)");
  }
  ERR_clear_error();
  EVP_PKEY_free(key);
  X509_free(cert);
  return s;
}

absl::StatusOr<std::vector<std::string>> CertificateUris(const std::string& pem) {
  // OpenSSL 3's decoders fail on an error left in this thread's queue by earlier work (a
  // civetweb or gRPC thread's): start from an empty one.
  ERR_clear_error();
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return absl::InvalidArgumentError("not a PEM certificate");
  std::vector<std::string> uris;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_URI) {
      const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
      uris.emplace_back(reinterpret_cast<const char*>(uri->data), uri->length);
    }
  }
  GENERAL_NAMES_free(names);
  X509_free(cert);
  return uris;
}

absl::StatusOr<CertificateWindow> CertificateValidity(const std::string& pem) {
  // OpenSSL 3's decoders fail on an error left in this thread's queue by earlier work (a
  // civetweb or gRPC thread's): start from an empty one.
  ERR_clear_error();
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return absl::InvalidArgumentError("not a PEM certificate");
  auto to_time = [](const ASN1_TIME* t) {
    struct tm tm {};
    ASN1_TIME_to_tm(t, &tm);
    return absl::FromCivil(absl::CivilSecond(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                                             tm.tm_hour, tm.tm_min, tm.tm_sec),
                           absl::UTCTimeZone());
  };
  CertificateWindow w{to_time(X509_get0_notBefore(cert)), to_time(X509_get0_notAfter(cert))};
  X509_free(cert);
  return w;
}

std::string ClockProblem(const CertificateWindow& w, absl::Time now) {
  auto text = [](absl::Time t) { return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()); };
  if (now < w.not_before) {
    return absl::StrCat("this clock (", text(now), ") is before the certificate's validity (from ",
                        text(w.not_before), "): check the clock (NTP)");
  }
  if (now > w.not_after) {
    return absl::StrCat("this clock (", text(now), ") is after the certificate's validity (until ",
                        text(w.not_after), "): renew the certificate, or check the clock");
  }
  return "";
}

}  // namespace caseway::common
