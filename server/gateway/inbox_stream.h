// InboxStream: one Gateway.Inbox stream as a state machine on gRPC's callback API.
#ifndef CASEWAY_SERVER_GATEWAY_INBOX_STREAM_H_
#define CASEWAY_SERVER_GATEWAY_INBOX_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "caseway/v1/gateway.grpc.pb.h"
#include "server/authorized_first.h"
#include "server/authz.h"
#include "server/exchange/dispatcher.h"
#include "server/store/access_log.h"
#include "server/store/inbox_store.h"

namespace caseway::server {

class InboxReactor;

// InboxHub is what every InboxStream shares: the store, the dispatcher that steps the streams,
// and the streams waiting for new inbox rows.
// Concurrency: thread-safe. Lifetime: outlives every stream (GatewayService owns it).
class InboxHub {
 public:
  InboxHub(InboxStore* inbox, AccessLog* access, const Authorizer* authz);
  ~InboxHub();

  // At most this many Inbox streams of one client at once (RESOURCE_EXHAUSTED beyond): a
  // jurisdiction's consumers share the node; none may hold it all.
  static constexpr uint32_t kMaxStreamsPerCaller = 16;

  // Start authorizes the caller (Gateway.Inbox) and makes the reactor of its new stream.
  grpc::ServerBidiReactor<caseway::v1::InboxRequest, caseway::v1::InboxResponse>* Start(
      grpc::CallbackServerContext* ctx);
  // Shutdown ends every stream with UNAVAILABLE and refuses new ones.
  void Shutdown();
  // RevocationsChanged makes every stream check its caller's certificate again.
  void RevocationsChanged();
  // Tick (every 200 ms) ends the streams that have not sent `start` in time.
  void Tick();

 private:
  friend class InboxStream;
  friend class InboxReactor;
  void Wait(std::shared_ptr<Steppable> stream);
  void Wake();
  void Unregister(const std::shared_ptr<Steppable>& stream);

  InboxStore* const store_;
  AccessLog* const access_;  // every stream records what it hands out
  const Authorizer* const authz_;
  std::atomic<bool> shutting_down_{false};
  // Each open stream holds one of its caller's places (declared before the streams' sets: it
  // outlives them).
  CallSlots slots_{"Inbox streams", kMaxStreamsPerCaller};
  absl::Mutex mu_;
  std::set<std::shared_ptr<Steppable>> all_ ABSL_GUARDED_BY(mu_);
  std::set<std::shared_ptr<Steppable>> waiting_ ABSL_GUARDED_BY(mu_);
  Dispatcher dispatcher_;
};

// InboxStream sends unacknowledged inbox rows, oldest first, and records the consumer's acks.
//
// Operation: like a Subscribe stream (server/exchange/peer_exchange_service.h), the reactor's
// callbacks only record what happened and schedule a step; every decision, store access and
// reactor call happens in Step() on the hub's dispatcher. A stream that has sent everything
// waits in the hub's set until a commit adds inbox rows; no thread is held per stream and nothing
// polls. Acks are committed asynchronously, one message at a time, in order.
// Protocol: the first InboxRequest must be `start` (INVALID_ARGUMENT otherwise, or when none
// arrives); every later one `ack` with at most kMaxAcksPerMessage sequence numbers; an unknown
// sequence is NOT_FOUND. With start.ack, at most `window` rows are unacknowledged at a time.
// `caught_up` is sent each time nothing unsent remains. Without start.follow the stream ends when
// the consumer half-closes (after its acks are committed).
class InboxStream final : public Steppable, public std::enable_shared_from_this<InboxStream> {
 public:
  static constexpr int kMaxAcksPerMessage = 10000;
  // A stream that has not sent `start` within this time ends with DEADLINE_EXCEEDED.
  static constexpr absl::Duration kStartTimeout = absl::Seconds(10);

  InboxStream(InboxHub* hub, CallSlots::Slot slot, std::string caller_serial, std::string caller)
      : hub_(hub), slot_(std::move(slot)), serial_(std::move(caller_serial)),
        caller_(std::move(caller)) {}
  // ReleaseSlot gives the caller's place back (the hub, when the stream is unregistered).
  void ReleaseSlot() { slot_.reset(); }
  void Step() override;

  // Reactor events (any gRPC thread).
  void Attach(InboxReactor* reactor);
  void ReadDone(bool ok);
  void WriteDone(bool ok);
  void Cancelled();
  void Done();
  void Recheck();
  bool StartOverdue(absl::Time now);
  caseway::v1::InboxRequest* read_buffer() { return &read_msg_; }

 private:
  struct Actions {
    bool start_read = false;
    const caseway::v1::InboxResponse* write = nullptr;
    std::optional<grpc::Status> finish;
  };
  absl::Status Advance(Actions& act) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status HandleStart() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status HandleAck() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fill queues the next rows (and caught_up); true when the stream now waits for new rows.
  absl::StatusOr<bool> Fill() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ResumeWith returns the `done` of an asynchronous store write (acks, an access record): it
  // keeps the write's status in `result` and schedules this stream again.
  InboxStore::WriteDone ResumeWith(std::optional<absl::Status> InboxStream::*result);

  InboxHub* const hub_;
  std::optional<CallSlots::Slot> slot_;  // the caller's place among its kMaxStreamsPerCaller
  const std::string serial_;
  const std::string caller_;  // the consumer's identity, for the access log

  absl::Mutex mu_;
  InboxReactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  // The first step checks the caller against the revocation lists once more (they may have
  // changed between its authorization and its registration).
  bool recheck_ ABSL_GUARDED_BY(mu_) = true;
  const absl::Time created_ = absl::Now();

  caseway::v1::InboxRequest read_msg_;
  bool read_ready_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  caseway::v1::InboxRequest::Start start_;
  uint32_t window_ = 256;

  caseway::v1::InboxResponse write_msg_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<caseway::v1::InboxResponse> outbox_ ABSL_GUARDED_BY(mu_);

  std::set<uint64_t> outstanding_ ABSL_GUARDED_BY(mu_);  // sent, not acked (with start.ack)
  uint64_t last_sent_ ABSL_GUARDED_BY(mu_) = 0;
  bool sent_caught_up_ ABSL_GUARDED_BY(mu_) = false;
  bool ack_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<uint64_t> acking_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> ack_result_ ABSL_GUARDED_BY(mu_);
  // Notices read for the consumer wait here until their read is in the access log.
  std::deque<caseway::v1::InboxResponse> recording_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> record_result_ ABSL_GUARDED_BY(mu_);
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_GATEWAY_INBOX_STREAM_H_
