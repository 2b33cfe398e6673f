// Subscriber: this node's subscription to one origin peer's channel addressed to it.
#ifndef CASEWAY_SERVER_EXCHANGE_SUBSCRIBER_H_
#define CASEWAY_SERVER_EXCHANGE_SUBSCRIBER_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "common/peer_channel.h"
#include "common/tls.h"
#include "caseway/v1/config.pb.h"
#include "caseway/v1/gateway.pb.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "server/exchange/peer_exchange_service.h"
#include "common/policy.h"
#include "server/store/exchange_log_store.h"
#include "server/store/inbox_store.h"

namespace caseway::server {

// Subscriber dials one peer, opens PeerExchange.Subscribe from the stored cursor, commits each
// batch that starts at cursor+1, then acks it. With the exchange log on it first verifies the
// origin's manifest signature and every notice digest (refusing the batch otherwise), and acks
// with the receipt signed in the commit's transaction; receipts the origin lacks (after a crash
// between commit and ack) are sent again when its heartbeat shows them missing. On any failure,
// or when nothing arrives for three heartbeat intervals, it reconnects after a capped exponential
// backoff with jitter.
//
// Concurrency: runs on its own thread plus a watchdog thread; while connected, a storer thread of
// the session commits the checked batches in order and writes the acks, so that the next batch is
// checked while the previous one commits. Status() and Stop() are thread-safe.
// Lifetime: `inbox`, `log` and `policy` must outlive the Subscriber; the destructor stops and
// joins.
// Limitations: commits batches one at a time (each batch is one group-commit request), with at
// most two checked batches waiting; the origin's window keeps the next batches in flight.
class Subscriber {
 public:
  Subscriber(const caseway::v1::NodeConfig& config, const caseway::v1::PeerConfig& peer,
             std::shared_ptr<grpc::ChannelCredentials> creds, InboxStore* inbox,
             ExchangeLogStore* log, const common::Policy* policy, Signatures signatures);
  ~Subscriber();

  void Start();
  void Stop();
  caseway::v1::StatusResponse::Subscription Status();

 private:
  void Run();
  void Watchdog();
  // Session runs one connection until it fails; returns why it ended.
  absl::Status Session();
  // VerifyBatch checks the manifest signature and every digest.
  absl::Status VerifyBatch(const caseway::v1::Batch& batch);

  const std::string self_;
  const std::string federation_;
  const Signatures signatures_;
  const absl::Duration silence_limit_;
  const caseway::v1::PeerConfig peer_;
  const caseway::v1::ExchangeConfig exchange_;
  InboxStore* const inbox_;     // where batches are stored, and the receipts sent
  ExchangeLogStore* const log_;  // halted?, clock offsets
  const common::Policy& policy_;  // compared with the origin's
  const std::string cert_file_;
  std::unique_ptr<common::PeerChannel> channel_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* current_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string state_ ABSL_GUARDED_BY(mu_) = "connecting";
  uint64_t peer_head_ ABSL_GUARDED_BY(mu_) = 0;
  std::string peer_policy_digest_ ABSL_GUARDED_BY(mu_);  // as last announced
  // The peer's clock minus ours, from its last heartbeat; and whether it is beyond the bound.
  std::optional<absl::Duration> clock_offset_ ABSL_GUARDED_BY(mu_);
  bool clock_exceeded_ ABSL_GUARDED_BY(mu_) = false;
  // This node's certificate validity, to tell a handshake that failed because of time.
  std::optional<common::CertificateWindow> cert_window_;  // Run's thread (after the constructor)
  void ReadCertificateWindow();
  // TimeHint adds to a failed session's status what a clock may have to do with it.
  std::string TimeHint(const absl::Status& s);
  // ObserveClock updates the offset from a heartbeat sent at `peer_time` (the peer's clock).
  void ObserveClock(absl::Time peer_time);
  // When CLOCK_OFFSET entries were last appended (real time; subscriber thread only).
  static constexpr size_t kClockRecordsPerHour = 6;
  std::deque<absl::Time> clock_records_;
  uint64_t cursor_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_rx_ ABSL_GUARDED_BY(mu_);  // absl::Now(): the watchdog's steady view
  std::optional<absl::Time> last_contact_ ABSL_GUARDED_BY(mu_);  // common::Now(): for Status
  std::string last_error_code_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> refused_ ABSL_GUARDED_BY(mu_);  // batches refused, by reason
  // The outage in progress (Run): when the last connected session ended, and whether it was
  // reported at warn. A session that hears from the peer ends it.
  std::optional<absl::Time> outage_since_ ABSL_GUARDED_BY(mu_);
  bool outage_warned_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_outage_warning_ ABSL_GUARDED_BY(mu_);
  static constexpr int kOutageRetries = 3;
  void Contact() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::thread thread_;
  std::thread watchdog_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_EXCHANGE_SUBSCRIBER_H_
