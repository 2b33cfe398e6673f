// The Caseway client library: a local system's connection to its node's Gateway.
#ifndef CASEWAY_CLIENT_CLIENT_H_
#define CASEWAY_CLIENT_CLIENT_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "caseway/v1/gateway.grpc.pb.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace caseway::client {

// ConnectionOptions say where the node is and which certificate to present.
struct ConnectionOptions {
  std::string address;    // host:port of the node
  std::string ca_file;    // federation CA (PEM)
  std::string cert_file;  // client certificate: spiffe://<federation>/client/<jurisdiction>/<name>
  std::string key_file;   // its key
  int max_message_bytes = 4 << 20;
  // Why this system reads personal data (inbox, case timelines, remote queries), kept in the
  // node's access log; used where a call does not give its own (docs/privacy.md).
  std::string purpose;
};

// LoadClientConfig reads a small YAML file with keys address, ca_file, cert_file, key_file and
// optionally purpose (relative paths are taken relative to the file's directory). NOT_FOUND when unreadable,
// INVALID_ARGUMENT naming the file and key otherwise.
absl::StatusOr<ConnectionOptions> LoadClientConfig(const std::string& path);

// InboxOptions select how Inbox streams.
struct InboxOptions {
  bool follow = false;  // keep streaming as notices arrive, until `on_item` returns false
  bool ack = false;     // ack each item that `on_item` accepted
  uint32_t window = 0;  // with ack: most unacknowledged items in flight (0 = server default)
  std::string purpose;  // why the notices are read (empty: ConnectionOptions::purpose)
};

// Client wraps the Gateway stub. Thread-safe; one Client may serve many threads.
// CallIdempotent runs a unary call, and again while it fails with UNAVAILABLE (the node
// restarting, a connection that failed to establish), at most kUnavailableAttempts times within
// kUnavailableBudget; the repeats wait for the channel to connect. Only for calls that are safe to
// repeat: Publish and PublishBatch are idempotent on notice_id (a repeat of a call that was
// stored returns the stored result with duplicate = true).
inline constexpr int kUnavailableAttempts = 5;
inline constexpr std::chrono::seconds kUnavailableBudget{10};
grpc::Status CallIdempotent(const std::function<grpc::Status(grpc::ClientContext*)>& call);
// With `failover` (a node with several addresses: an active/standby pair), UNAVAILABLE, a first
// call without an answer in 5 s (a frozen node) and a repeat that waited 2 s in vain call it to
// move to the next address; the repeats then go on for up to kFailoverBudget (a standby takes
// over within about 10 s).
inline constexpr std::chrono::seconds kFailoverBudget{25};
grpc::Status CallIdempotent(const std::function<grpc::Status(grpc::ClientContext*)>& call,
                            const std::function<void()>& failover);

class Client {
 public:
  // Connect builds a mutual-TLS channel. NOT_FOUND naming an unreadable certificate file.
  // Connection errors appear on the first call (UNAVAILABLE; when the TLS handshake is what
  // fails, the message says why, e.g. a clock outside a certificate's validity).
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ConnectionOptions& options);

  // Publish stores one notice at the node; see Gateway.Publish for the error codes. Publish,
  // PublishBatch and Status are retried on UNAVAILABLE (CallIdempotent).
  // With `validate_only` the node checks the notice and stores nothing (PublishRequest).
  absl::StatusOr<caseway::v1::PublishResult> Publish(const caseway::v1::Notice& notice,
                                                     bool validate_only = false);
  // PublishBatch stores the notices atomically; see Gateway.PublishBatch.
  absl::StatusOr<std::vector<caseway::v1::PublishResult>> PublishBatch(
      const std::vector<caseway::v1::Notice>& notices, bool validate_only = false);
  absl::StatusOr<caseway::v1::StatusResponse> Status();
  // Todo calls Gateway.Todo (idempotent, retried on UNAVAILABLE).
  absl::StatusOr<caseway::v1::TodoResponse> Todo(const caseway::v1::TodoRequest& request);
  // Calls that read personal data (QueryPeer, Case, AccessLog, Inbox) send the call's purpose,
  // or ConnectionOptions::purpose when it gives none; the node refuses a read without one.
  // QueryPeer calls Gateway.QueryPeer once (not retried: an UNAVAILABLE may be the peer's).
  absl::StatusOr<caseway::v1::QueryPeerResponse> QueryPeer(
      const caseway::v1::QueryPeerRequest& request);
  // Case calls Gateway.Case (idempotent, retried on UNAVAILABLE).
  absl::StatusOr<caseway::v1::CaseResponse> Case(const std::string& case_id,
                                                 const std::string& purpose = "");
  // AccessLog calls Gateway.AccessLog (idempotent, retried on UNAVAILABLE).
  absl::StatusOr<caseway::v1::AccessLogResponse> AccessLog(
      const caseway::v1::AccessLogRequest& request);

  // Inbox streams unacknowledged received notices to `on_item`, oldest first. `on_item` returns
  // false to stop (that item is not acknowledged; the acks of the items before it are committed
  // before Inbox returns). Without options.follow, returns OK once caught up. With options.ack,
  // each item is acked after `on_item` returns true.
  //
  // With several addresses (an active/standby pair on one database), a stream that ends
  // UNAVAILABLE (the node stopped or lost its lease) or goes silent (keepalive: about 20 s) is
  // opened again on the next address, until kFailoverBudget passes without a stream that
  // delivers. The other node sends again what was not acknowledged yet; an item this call
  // already handed to `on_item` is acknowledged there but not handed over twice.
  absl::Status Inbox(const InboxOptions& options,
                     const std::function<bool(const caseway::v1::InboxItem&)>& on_item);

  // The stub of the address in use. ConnectionOptions::address may list several, comma-separated
  // (the two nodes of an active/standby pair): calls move to the next one when the node in use
  // is unavailable.
  caseway::v1::Gateway::Stub* stub() { return stubs_[current_.load() % stubs_.size()].get(); }

 private:
  Client(std::vector<std::shared_ptr<grpc::Channel>> channels,
         std::vector<std::unique_ptr<caseway::v1::Gateway::Stub>> stubs, ConnectionOptions options)
      : channels_(std::move(channels)), stubs_(std::move(stubs)), options_(std::move(options)) {}
  // Failover moves to the next address (no-op with one).
  void Failover() {
    if (stubs_.size() > 1) ++current_;
  }
  grpc::Status Idempotent(const std::function<grpc::Status(grpc::ClientContext*)>& call) {
    if (stubs_.size() == 1) return CallIdempotent(call);
    return CallIdempotent(call, [this] { Failover(); });
  }
  // HandedOver is the inbox_seqs one Inbox call handed to its callback (client.cc).
  struct HandedOver;
  // InboxStream runs one Inbox stream; `handed` (null with one address) skips and records items.
  absl::Status InboxStream(const InboxOptions& options,
                           const std::function<bool(const caseway::v1::InboxItem&)>& on_item,
                           HandedOver* handed);
  // Checked converts a call's status; an UNAVAILABLE one gets the reason a TLS handshake with
  // the node fails, when it is one (a certificate outside its validity by either side's clock,
  // a refused certificate), since gRPC reports all of them as UNAVAILABLE.
  absl::Status Checked(const grpc::Status& status) const;

  std::vector<std::shared_ptr<grpc::Channel>> channels_;  // one per address, as stubs_
  std::vector<std::unique_ptr<caseway::v1::Gateway::Stub>> stubs_;
  std::atomic<size_t> current_{0};
  ConnectionOptions options_;
};

}  // namespace caseway::client

#endif  // CASEWAY_CLIENT_CLIENT_H_
