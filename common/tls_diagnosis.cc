#include "common/tls_diagnosis.h"

#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config.h"

namespace caseway::common {
namespace {

std::string Text(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string Window(const CertificateWindow& w) {
  return absl::StrCat("from ", Text(w.not_before), " until ", Text(w.not_after));
}

// Connect opens a TCP connection within `timeout`; -1 when the node cannot be reached.
int Connect(const std::string& host, const std::string& port, absl::Duration timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return -1;
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    bool connected = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
    if (!connected && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof(err);
      connected = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) == 1 &&
                  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
    if (!connected) {
      close(fd);
      fd = -1;
      continue;
    }
    fcntl(fd, F_SETFL, flags);
    timeval tv{static_cast<time_t>(absl::ToInt64Seconds(timeout)), 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  freeaddrinfo(found);
  return fd;
}

// LastError returns the reason of the last OpenSSL error ("sslv3 alert bad certificate"), "" when
// none, and clears the queue.
std::string LastError() {
  std::string reason;
  while (unsigned long e = ERR_get_error()) {
    if (const char* r = ERR_reason_error_string(e)) reason = r;
  }
  return reason;
}

absl::StatusOr<CertificateWindow> WindowOf(X509* cert) {
  if (cert == nullptr) return absl::NotFoundError("no certificate");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  return CertificateValidity(pem);
}

// ChainProblem verifies the certificate in `pem` against the CA file, leaving time out: ""
// when it chains, else OpenSSL's reason.
std::string ChainProblem(const std::string& pem, const std::string& ca_file) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return "not a PEM certificate";
  X509_STORE* store = X509_STORE_new();
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  std::string problem;
  if (X509_STORE_load_file(store, ca_file.c_str()) != 1) {
    problem = "the CA file cannot be read";
  } else if (X509_STORE_CTX_init(ctx, store, cert, nullptr) == 1) {
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_NO_CHECK_TIME);
    if (X509_verify_cert(ctx) != 1) {
      problem = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
    }
  }
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(cert);
  LastError();
  return problem;
}

}  // namespace

std::string DiagnoseHandshake(const std::string& address, const TlsFiles& files, absl::Time now,
                              absl::Duration timeout) {
  const std::string own_pem = ReadFile(files.cert_file).value_or("");
  auto own = CertificateValidity(own_pem);
  if (own.ok()) {
    if (std::string p = ClockProblem(*own, now); !p.empty()) {
      return absl::StrCat("this client's certificate (", files.cert_file, "): ", p);
    }
  }

  // host:port, [v6]:port, optionally after "dns:///" or "ipv4:".
  std::string target = address;
  for (const char* scheme : {"dns:///", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(target, scheme)) target = target.substr(strlen(scheme));
  }
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos || absl::StartsWith(target, "unix:")) return "";
  std::string host = target.substr(0, colon);
  const std::string port = target.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);

  // The node may close the connection at any moment (it refuses us, or it is going down): a
  // write then raises SIGPIPE, which must not end the caller's process. OpenSSL writes with
  // write(2), without MSG_NOSIGNAL, so SIGPIPE is blocked on this thread for the probe and any
  // raised meanwhile is consumed before it is unblocked.
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  absl::Cleanup restore = [&] {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  };
  const int fd = Connect(host, port, timeout);
  if (fd < 0) return "";
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                       SSL_CTX_free);
  if (!ctx || SSL_CTX_load_verify_locations(ctx.get(), files.ca_file.c_str(), nullptr) != 1 ||
      SSL_CTX_use_certificate_chain_file(ctx.get(), files.cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx.get(), files.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    close(fd);
    LastError();
    return "";
  }
  // Verified, but not enforced: the result is read below, and the handshake goes on so that
  // the node can say what it thinks of our certificate.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_set_alpn_protos(ssl.get(), kAlpn, sizeof(kAlpn));
  SSL_set_fd(ssl.get(), fd);
  X509_VERIFY_PARAM_set_time(SSL_get0_param(ssl.get()), absl::ToTimeT(now));
  std::string failure;
  if (SSL_connect(ssl.get()) != 1) {
    failure = LastError();
  }
  // The node's certificate, by our clock.
  std::string theirs;
  if (X509* cert = SSL_get1_peer_certificate(ssl.get())) {
    const long verify = SSL_get_verify_result(ssl.get());
    auto w = WindowOf(cert);
    X509_free(cert);
    if (w.ok() && (verify == X509_V_ERR_CERT_NOT_YET_VALID || verify == X509_V_ERR_CERT_HAS_EXPIRED)) {
      theirs = absl::StrCat(
          "the node's certificate is valid ", Window(*w), ", and this machine's clock reads ",
          Text(now), verify == X509_V_ERR_CERT_NOT_YET_VALID
                         ? ": this clock is behind (check NTP), or the node's certificate is dated ahead"
                         : ": the node's certificate must be renewed, or this clock is ahead");
    }
  }
  bool closed = false;
  if (failure.empty()) {
    // TLS 1.3: the node judges our certificate after the handshake; its verdict is the first
    // thing to read: an alert, the connection closed (a refusal after OpenSSL's checks), or its
    // HTTP/2 settings when it accepts us.
    char buf[64];
    if (SSL_read(ssl.get(), buf, sizeof(buf)) <= 0) {
      failure = LastError();
      closed = !absl::StrContains(failure, "alert");
    }
  }
  // No close_notify: the probe only reads the verdict, and the node may be gone.
  ssl.reset();
  close(fd);
  if (!theirs.empty()) return theirs;
  if (failure.empty() && !closed) return "";
  if (!closed && !absl::StrContains(failure, "alert")) return "";
  std::string refusal =
      closed ? "the node closed the connection after the handshake without accepting this "
               "client's certificate"
             : absl::StrCat("the node refused the TLS handshake (", failure, ")");
  if (std::string chain = ChainProblem(own_pem, files.ca_file); !chain.empty()) {
    absl::StrAppend(&refusal, ": it is not issued by the federation CA in ", files.ca_file, " (",
                    chain, ")");
  } else if (own.ok()) {
    absl::StrAppend(&refusal, ", which is valid ", Window(*own), " by this machine's clock (",
                    Text(now), "): either the node's clock is outside that window, or the node "
                    "does not accept this certificate (revoked, or another role or "
                    "jurisdiction); the node's log names the reason (\"TLS handshake refused\")");
  }
  return refusal;
}

}  // namespace caseway::common
