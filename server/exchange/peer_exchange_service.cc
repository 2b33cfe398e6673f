#include "server/exchange/peer_exchange_service.h"

#include <google/protobuf/util/time_util.h>

#include <deque>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log_entry.h"
#include "common/clock.h"
#include "common/thread_name.h"
#include "common/digest.h"
#include "common/fault.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/proto_bytes.h"
#include "common/refusal.h"
#include "common/status_macros.h"
#include "server/error_policy.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;
using common::ToGrpcStatus;
using google::protobuf::util::TimeUtil;
namespace v1 = caseway::v1;

class SubscribeReactor;

// Subscription is one Subscribe stream's state machine. The reactor callbacks only record what
// happened and schedule a step; every decision, store access and reactor call happens in Step(),
// which the dispatcher never runs twice at once. The Subscription outlives its reactor: store
// callbacks may still arrive after the stream ended and find it finished.
class Subscription final : public Steppable, public std::enable_shared_from_this<Subscription> {
 public:
  Subscription(PeerExchangeService* service, grpc::CallbackServerContext* ctx)
      : service_(service), ctx_(ctx) {}

  void Attach(SubscribeReactor* reactor) {
    absl::MutexLock lock(&mu_);
    reactor_ = reactor;
  }
  void Step() override;

  // --- Reactor events (any gRPC thread). ---
  void ReadDone(bool ok) {
    absl::MutexLock lock(&mu_);
    (ok ? read_ready_ : read_closed_) = true;
  }
  void WriteDone(bool ok) {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    written_bytes_ += write_bytes_;
    write_bytes_ = 0;
    if (!ok) write_failed_ = true;
  }
  void Cancelled() {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  void Done() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
  }
  // Accessed by the reactor only before the first read.
  v1::SubscribeRequest* read_buffer() { return &read_msg_; }

  const std::string& destination() const { return dest_; }
  // The caller's jurisdiction, set once before the stream is registered.
  void set_caller(std::string caller, std::string serial) {
    caller_ = std::move(caller);
    serial_ = std::move(serial);
  }
  const std::string& caller() const { return caller_; }
  const std::string& serial() const { return serial_; }
  // Revoke ends the stream at its next step: the caller's certificate was revoked.
  void Revoke() {
    absl::MutexLock lock(&mu_);
    revoked_ = true;
  }
  // StepDue: a heartbeat is due, the stream was cancelled, or it sent no open in time.
  bool StepDue(absl::Time now) {
    absl::MutexLock lock(&mu_);
    return !finished_ && (now >= next_heartbeat_ || cancelled_ ||
                          (!opened_ && now - created_ > kOpenTimeout));
  }
  // A stream that has not sent `open` within this time is ended.
  static constexpr absl::Duration kOpenTimeout = absl::Seconds(10);

 private:
  // Actions decided under mu_ and carried out after it is released.
  struct Actions {
    bool start_read = false;
    const v1::SubscribeResponse* write = nullptr;
    std::optional<grpc::Status> finish;
  };
  void Finish(absl::Status status, Actions& act) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // HandleOpen validates the first message; returns the error that ends the stream.
  absl::Status HandleOpen(const v1::SubscribeRequest& first) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // HandleAck checks an ack and submits its durable recording; true when that is pending.
  absl::Status HandleAck(const v1::SubscribeRequest& req, bool& submitted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // QueueHeartbeat queues a heartbeat with the channel's head and receipted position.
  void QueueHeartbeat(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Prepare reads and signs the next batch (the lock is released for the read); false when
  // there is nothing to send or no room.
  absl::StatusOr<bool> Prepare() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Resend queues a batch already sealed (signed and logged) as it was sent before.
  absl::StatusOr<bool> Resend(uint64_t from, const v1::Evidence& sent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Most sealed batches looked up for sending again at open.
  static constexpr int kMaxResend = 64;

  PeerExchangeService* const service_;
  grpc::CallbackServerContext* const ctx_;

  absl::Mutex mu_;
  SubscribeReactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string dest_;  // set once, in HandleOpen (before any other thread reads it)
  std::string caller_;
  std::string serial_;
  bool revoked_ ABSL_GUARDED_BY(mu_) = false;
  bool opened_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);  // from an asynchronous store write

  v1::SubscribeRequest read_msg_;
  bool read_ready_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;

  v1::SubscribeResponse write_msg_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  int64_t write_bytes_ ABSL_GUARDED_BY(mu_) = 0;    // of the message being written
  int64_t written_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // written, not yet given back to the budget
  int64_t held_bytes_ ABSL_GUARDED_BY(mu_) = 0;     // taken from the budget, not yet given back
  std::deque<std::pair<v1::SubscribeResponse, int64_t>> outbox_ ABSL_GUARDED_BY(mu_);
  int sealing_ ABSL_GUARDED_BY(mu_) = 0;  // batches whose SENT entry is being committed

  uint32_t window_ = 0;
  uint64_t sent_ ABSL_GUARDED_BY(mu_) = 0;   // last seq prepared
  uint64_t acked_ ABSL_GUARDED_BY(mu_) = 0;  // last seq durably acknowledged on this stream
  // last seq of each unacked batch -> digest of its manifest (empty without the log)
  std::map<uint64_t, std::string> inflight_ ABSL_GUARDED_BY(mu_);
  bool ack_pending_ ABSL_GUARDED_BY(mu_) = false;  // an ack's store write is being committed
  std::optional<std::pair<uint64_t, absl::Status>> ack_result_ ABSL_GUARDED_BY(mu_);
  absl::Time next_heartbeat_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Batches already signed and logged (SENT) for this destination beyond the cursor, by
  // first_seq: sent again exactly as they were, so that a reconnect adds nothing to the log.
  std::map<uint64_t, v1::Evidence> resend_ ABSL_GUARDED_BY(mu_);
  const absl::Time created_ = absl::Now();
};

class SubscribeReactor final
    : public grpc::ServerBidiReactor<v1::SubscribeRequest, v1::SubscribeResponse> {
 public:
  SubscribeReactor(PeerExchangeService* service, std::shared_ptr<Subscription> sub,
                   Dispatcher* dispatcher)
      : service_(service), sub_(std::move(sub)), dispatcher_(dispatcher) {
    sub_->Attach(this);
    StartRead(sub_->read_buffer());
  }
  void OnReadDone(bool ok) override {
    sub_->ReadDone(ok);
    dispatcher_->Schedule(sub_);
  }
  void OnWriteDone(bool ok) override {
    sub_->WriteDone(ok);
    dispatcher_->Schedule(sub_);
  }
  void OnCancel() override {
    sub_->Cancelled();
    dispatcher_->Schedule(sub_);
  }
  void OnDone() override {
    sub_->Done();
    service_->Unregister(sub_);
    delete this;
  }

 private:
  PeerExchangeService* const service_;
  const std::shared_ptr<Subscription> sub_;
  Dispatcher* const dispatcher_;
};

void Subscription::Finish(absl::Status status, Actions& act) {
  if (finished_) return;
  finished_ = true;
  // Whatever this stream still holds (being written, queued, being sealed) goes back to the
  // shared budget now; later completions find the stream finished and give nothing back.
  service_->GiveBack(held_bytes_);
  held_bytes_ = 0;
  written_bytes_ = 0;
  if (status.code() == absl::StatusCode::kCancelled) {
    // The subscriber went away (a reconnect, a restart): ordinary, and a peer can do it at will.
    Log(LogLevel::kDebug, "subscription cancelled",
        {{"destination", dest_.empty() ? "(not open)" : dest_}});
  } else if (!status.ok()) {
    common::LogLimited(LogLevel::kWarn, "subscription ended with error",
        {{"destination", dest_.empty() ? "(not open)" : dest_}, {"status", status.ToString()}});
  } else if (opened_) {
    Log(LogLevel::kInfo, "subscription closed", {{"destination", dest_}});
  }
  act.finish = ToGrpcStatus(status);
}

absl::Status Subscription::HandleOpen(const v1::SubscribeRequest& first) {
  auto id = service_->authz_->Check(*ctx_, Rpc::kSubscribe);
  if (!id.ok()) return id.status();
  if (!first.has_open()) {
    return absl::InvalidArgumentError("open: the first SubscribeRequest must be open");
  }
  const v1::SubscribeRequest::Open& open = first.open();
  const std::string& dest = id->jurisdiction;
  if (open.destination() != dest) {
    Log(LogLevel::kWarn, "subscription to another node's channel refused",
        {{"caller", id->ToString()}});
    return absl::PermissionDeniedError(absl::StrCat("open.destination: ", id->ToString(),
                                                    " may subscribe only to channel ", dest,
                                                    ", not ", open.destination()));
  }
  if (open.window() > 64) return absl::InvalidArgumentError("open.window: must be in 0..64");
  // A halted node sends nothing: what it would send could not be proven by its log.
  if (absl::Status halted = service_->log_->Halted(); !halted.ok()) return halted;
  const ChannelState at_open = service_->channels_->Channel(dest);
  if (open.cursor() > at_open.head && service_->channels_->Held(dest)) {
    // This node was restored from a backup older than what the destination already holds.
    Log(LogLevel::kError,
        "restore: the destination holds more of its channel than this node; notices "
        "acknowledged after the backup are lost (docs/operator.md, \"Backup and restore\")",
        {{"destination", dest}, {"cursor", absl::StrCat(open.cursor())},
         {"head", absl::StrCat(at_open.head)}});
  }
  if (open.cursor() > at_open.head) {
    return absl::OutOfRangeError(absl::StrCat("open.cursor: ", open.cursor(),
                                              " is beyond the head ", at_open.head,
                                              " of channel ", dest));
  }
  const Signatures& sig = service_->signatures_;
  if (sig.enabled() && !sig.directory()->Listed(dest).ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dest, " is not listed in the federation directory"));
  }
  if (sig.enabled()) {
    auto sent = service_->channels_->SentAfter(dest, open.cursor(), kMaxResend);
    if (!sent.ok()) return sent.status();
    for (auto& e : *sent) {
      if (e.first_seq() > open.cursor()) resend_[e.first_seq()] = std::move(e);
    }
  }
  service_->channels_->ConfirmChannel(dest);  // a restored node's held channel is confirmed
  dest_ = dest;
  window_ = open.window() == 0 ? service_->default_window_ : open.window();
  acked_ = std::min(at_open.acked, open.cursor());
  sent_ = open.cursor();
  // Without receipts the subscriber's cursor is its acknowledgement; with them, receipts are.
  if (!sig.enabled() && open.cursor() > at_open.acked) {
    mu_.Unlock();  // a store callback may run inline (e.g. when the queue is stopping)
    service_->channels_->RecordAckAsync(dest, open.cursor(), [](const absl::Status&) {});
    mu_.Lock();
  }
  Log(LogLevel::kInfo, "subscription opened",
      {{"destination", dest}, {"cursor", absl::StrCat(open.cursor())}});
  return absl::OkStatus();
}

absl::Status Subscription::HandleAck(const v1::SubscribeRequest& req, bool& submitted) {
  submitted = false;
  if (!req.has_ack()) {
    return absl::InvalidArgumentError("ack: every SubscribeRequest after open must be ack");
  }
  const uint64_t seq = req.ack().seq();
  if (seq > sent_) {
    return absl::InvalidArgumentError(
        absl::StrCat("ack.seq: ", seq, " is beyond what was sent (", sent_, ")"));
  }
  // Already recorded (a receipt sent again after a reconnect): nothing to do.
  if (seq <= acked_) return absl::OkStatus();
  std::weak_ptr<Subscription> weak = weak_from_this();
  auto done = [weak, seq, dispatcher = &service_->dispatcher_](const absl::Status& s) {
    auto self = weak.lock();
    if (!self) return;
    {
      absl::MutexLock lock(&self->mu_);
      self->ack_result_ = std::make_pair(seq, s);
    }
    dispatcher->Schedule(self);
  };
  if (!service_->signatures_.enabled()) {
    mu_.Unlock();  // `done` may run inline and takes mu_; Step() is not re-entered meanwhile
    service_->channels_->RecordAckAsync(dest_, seq, std::move(done));
    mu_.Lock();
  } else {
    auto it = inflight_.find(seq);
    const std::string expected = it == inflight_.end() ? "" : it->second;
    ASSIGN_OR_RETURN(v1::Receipt receipt, service_->CheckReceipt(dest_, req.ack(), expected));
    mu_.Unlock();
    service_->channels_->RecordReceiptAsync(dest_, receipt, req.ack().receipt(), std::move(done));
    mu_.Lock();
  }
  submitted = true;
  return absl::OkStatus();
}

absl::StatusOr<bool> Subscription::Prepare() {
  const bool holding = writing_ || sealing_ > 0 || !outbox_.empty();
  if (inflight_.size() >= window_ || sealing_ + outbox_.size() >= 1) return false;
  const uint64_t from = sent_ + 1;
  if (service_->channels_->Channel(dest_).head < from) return false;
  // One batch in memory per stream is always allowed; more only within the shared budget.
  if (holding && !service_->MayBuffer(shared_from_this())) return false;
  if (!resend_.empty()) {
    auto it = resend_.find(from);
    if (it != resend_.end()) {
      v1::Evidence sent = std::move(it->second);
      resend_.erase(resend_.begin(), std::next(it));
      return Resend(from, sent);
    }
    if (from > resend_.rbegin()->first) resend_.clear();
  }

  mu_.Unlock();  // only Step() changes sent_, and Step() does not run twice at once
  auto entries = service_->channels_->ReadChannel(dest_, from, service_->batch_max_entries_,
                                               service_->max_batch_bytes_);
  v1::SubscribeResponse resp;
  v1::BatchManifest manifest;
  int64_t bytes = 0;
  if (entries.ok() && !entries->empty()) {
    v1::Batch* batch = resp.mutable_batch();
    batch->set_first_seq(from);
    for (auto& e : *entries) {
      bytes += static_cast<int64_t>(e.notice().size()) + 16;
      *batch->add_entries() = std::move(e);
    }
    if (service_->signatures_.enabled()) manifest = service_->SignBatch(dest_, *batch);
  }
  mu_.Lock();
  if (!entries.ok()) return entries.status();
  if (entries->empty()) return false;

  const uint64_t last = from + resp.batch().entries_size() - 1;
  sent_ = last;
  service_->Buffered(bytes);
  held_bytes_ += bytes;
  if (!service_->signatures_.enabled()) {
    inflight_[last] = "";
    outbox_.emplace_back(std::move(resp), bytes);
    return true;
  }
  const v1::Signed& signed_manifest = resp.batch().manifest();
  inflight_[last] = common::Sha256(signed_manifest.message());
  // Test fault: an origin that logs another manifest than it sends.
  v1::Signed logged = signed_manifest;
  if (common::FaultHits("equivocate_sent", manifest.first_seq(), manifest.last_seq())) {
    v1::BatchManifest other = manifest;
    other.set_digests(0, common::Sha256("equivocation"));
    logged.set_message(common::DeterministicBytes(other));
    logged.set_signature(
        service_->signatures_.key()->Sign(common::kManifestContext, logged.message()));
    manifest = other;
  }
  // Test fault: an origin that omits its SENT entry.
  if (common::FaultHits("omit_sent_log", manifest.first_seq(), manifest.last_seq())) {
    outbox_.emplace_back(std::move(resp), bytes);
    return true;
  }
  ++sealing_;
  auto pending = std::make_shared<std::pair<v1::SubscribeResponse, int64_t>>(std::move(resp), bytes);
  std::weak_ptr<Subscription> weak = weak_from_this();
  auto sealed = [weak, pending, dispatcher = &service_->dispatcher_](const absl::Status& s) {
    auto self = weak.lock();
    if (!self) return;
    {
      absl::MutexLock lock(&self->mu_);
      --self->sealing_;
      if (s.ok()) {
        self->outbox_.push_back(std::move(*pending));
      } else if (self->error_.ok()) {
        self->error_ = s;
      }
    }
    dispatcher->Schedule(self);
  };
  mu_.Unlock();  // `sealed` may run inline and takes mu_
  service_->channels_->RecordSentAsync(dest_, manifest, logged, std::move(sealed));
  mu_.Lock();
  return true;
}

absl::StatusOr<bool> Subscription::Resend(uint64_t from, const v1::Evidence& sent) {
  const uint64_t count = sent.last_seq() - from + 1;
  mu_.Unlock();  // only Step() changes sent_, and Step() does not run twice at once
  auto entries = service_->channels_->ReadChannel(dest_, from, static_cast<uint32_t>(count),
                                               std::numeric_limits<uint64_t>::max());
  mu_.Lock();
  if (!entries.ok()) return entries.status();
  if (entries->size() != count) {
    return absl::InternalError(absl::StrCat("channel ", dest_, ": entries ", from, "..",
                                            sent.last_seq(), " of a sent batch are missing"));
  }
  v1::SubscribeResponse resp;
  v1::Batch* batch = resp.mutable_batch();
  batch->set_first_seq(from);
  int64_t bytes = 0;
  for (auto& e : *entries) {
    bytes += static_cast<int64_t>(e.notice().size()) + 16;
    *batch->add_entries() = std::move(e);
  }
  *batch->mutable_manifest() = sent.signed_();
  sent_ = sent.last_seq();
  service_->Buffered(bytes);
  held_bytes_ += bytes;
  inflight_[sent_] = common::Sha256(sent.signed_().message());
  outbox_.emplace_back(std::move(resp), bytes);
  return true;
}

void Subscription::QueueHeartbeat(absl::Time now) {
  const ChannelState channel = service_->channels_->Channel(dest_);
  v1::SubscribeResponse hb;
  hb.mutable_heartbeat()->set_head(channel.head);
  hb.mutable_heartbeat()->set_receipted(channel.acked);
  hb.mutable_heartbeat()->set_policy_digest(service_->policy_.digest());
  *hb.mutable_heartbeat()->mutable_sent_at() =
      TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(common::Now()));
  outbox_.emplace_back(std::move(hb), 0);
  next_heartbeat_ = now + service_->heartbeat_interval_;
}

void Subscription::Step() {
  Actions act;
  SubscribeReactor* reactor;
  {
    absl::MutexLock lock(&mu_);
    reactor = reactor_;
    if (finished_ || reactor == nullptr) return;
    if (written_bytes_ > 0) {
      service_->GiveBack(written_bytes_);
      held_bytes_ -= written_bytes_;
      written_bytes_ = 0;
    }
    auto step = [&]() -> absl::Status {
      if (service_->shutting_down_) return absl::UnavailableError("node shutting down");
      if (cancelled_) return absl::CancelledError("the subscriber went away");
      if (revoked_) {
        return absl::UnauthenticatedError(
            absl::StrCat("certificate ", serial_, " of ", caller_, " is revoked"));
      }
      RETURN_IF_ERROR(error_);
      if (write_failed_) {
        return absl::UnavailableError(
            "write failed: the subscriber went away or the batch exceeds the transport limit");
      }
      if (!opened_) {
        if (absl::Now() - created_ > kOpenTimeout) {
          return absl::DeadlineExceededError("open: not received within 10s of the stream's start");
        }
        if (read_closed_) {
          // The subscriber half-closed at once, or its first message did not parse (gRPC does
          // not tell the two apart); both break the protocol.
          return absl::InvalidArgumentError(
              "open: the first SubscribeRequest must be open (none was received, or it was not a "
              "valid caseway.v1.SubscribeRequest)");
        }
        if (!read_ready_) return absl::OkStatus();
        read_ready_ = false;
        RETURN_IF_ERROR(HandleOpen(read_msg_));
        opened_ = true;
        service_->Opened(shared_from_this(), dest_);
        act.start_read = true;
        // A heartbeat goes first, before any batch: its `receipted` tells a subscriber that
        // crashed between commit and receipt which stored receipts to send again, before it
        // acknowledges anything newer (a receipt at or below the acked position is ignored).
        QueueHeartbeat(absl::Now());
      }
      if (ack_result_) {
        auto [seq, s] = *ack_result_;
        ack_result_.reset();
        ack_pending_ = false;
        RETURN_IF_ERROR(s);
        acked_ = std::max(acked_, seq);
        inflight_.erase(inflight_.begin(), inflight_.upper_bound(seq));
        act.start_read = true;
      }
      if (read_ready_ && !ack_pending_) {
        read_ready_ = false;
        bool submitted = false;
        RETURN_IF_ERROR(HandleAck(read_msg_, submitted));
        if (submitted) {
          ack_pending_ = true;
        } else {
          act.start_read = true;
        }
      }
      while (true) {
        ASSIGN_OR_RETURN(bool prepared, Prepare());
        if (!prepared) break;
      }
      const absl::Time now = absl::Now();
      if (!writing_ && outbox_.empty() && sealing_ == 0 && now >= next_heartbeat_) {
        QueueHeartbeat(now);
      }
      if (!writing_ && !outbox_.empty()) {
        write_msg_ = std::move(outbox_.front().first);
        write_bytes_ = outbox_.front().second;
        outbox_.pop_front();
        writing_ = true;
        act.write = &write_msg_;
      }
      return absl::OkStatus();
    };
    absl::Status s = step();
    // The subscriber half-closed (and nothing of its is pending): the stream ends normally.
    if (s.ok() && read_closed_ && !ack_pending_ && !ack_result_) {
      act = Actions{};
      Finish(absl::OkStatus(), act);
    } else if (!s.ok()) {
      act = Actions{};
      Finish(s, act);
    }
  }
  // Reactor calls outside the lock: a reaction may run inline and take it.
  if (act.finish) {
    reactor->Finish(*act.finish);
    return;
  }
  if (act.start_read) reactor->StartRead(&read_msg_);
  if (act.write) reactor->StartWrite(act.write);
}

// limits.peer_queries_per_minute, or its default when the configuration was not completed.
static double QueriesPerMinute(const v1::NodeConfig& config) {
  const uint32_t n = config.limits().peer_queries_per_minute();
  return n == 0 ? 120.0 : n;
}

PeerExchangeService::PeerExchangeService(const v1::NodeConfig& config, const StoreParts& store,
                                         const Authorizer* authz, Signatures signatures)
    : self_(config.jurisdiction()),
      signatures_(std::move(signatures)),
      batch_max_entries_(config.exchange().batch_max_entries()),
      default_window_(config.exchange().window_batches()),
      // Leave room for the manifest and framing under the peer's receive limit (the same limit
      // federation-wide): entries take at most half of it.
      max_batch_bytes_(config.limits().max_message_bytes() / 2),
      heartbeat_interval_(absl::Milliseconds(
          TimeUtil::DurationToMilliseconds(config.exchange().heartbeat_interval()))),
      max_answer_bytes_(config.limits().max_message_bytes() / 4),
      query_rate_(QueriesPerMinute(config), std::max(10.0, QueriesPerMinute(config) / 10)),
      channels_(store.channels),
      inbox_(store.inbox),
      cases_(store.cases),
      log_(store.log),
      policy_(*store.policy),
      sharing_(store.sharing),
      authz_(authz),
      dispatcher_(2, "cw-exchange") {
  channels_->SetChannelListener(
      [this](const std::map<std::string, ChannelState>& changes) { ChannelsMoved(changes); });
  ticker_ = std::thread([this] {
    common::NameThisThread("cw-exch-ticker");
    absl::MutexLock lock(&mu_);
    while (!stop_ticker_) {
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ticker_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(50));
      if (stop_ticker_) break;
      mu_.Unlock();
      Tick();
      mu_.Lock();
    }
  });
}

PeerExchangeService::~PeerExchangeService() {
  {
    absl::MutexLock lock(&mu_);
    stop_ticker_ = true;
  }
  ticker_.join();
  channels_->SetChannelListener(nullptr);
  dispatcher_.Stop();
  // Store writes of ours still in the commit queue complete before we are gone (their callbacks
  // schedule on the stopped dispatcher, which ignores them).
  channels_->Barrier();
}

using RefusedReactor = RefusedStream<v1::SubscribeRequest, v1::SubscribeResponse>;

grpc::ServerBidiReactor<v1::SubscribeRequest, v1::SubscribeResponse>*
PeerExchangeService::Subscribe(grpc::CallbackServerContext* ctx) {
  // The caller is checked before anything is read or held for it.
  auto id = authz_->Check(*ctx, Rpc::kSubscribe);
  if (!id.ok()) {
    Log(LogLevel::kDebug, "subscription refused", {{"status", id.status().ToString()}});
    return new RefusedReactor(id.status());
  }
  auto sub = std::make_shared<Subscription>(this, ctx);
  {
    absl::MutexLock lock(&mu_);
    uint32_t& streams = streams_by_caller_[id->jurisdiction];
    if (streams >= kMaxStreamsPerCaller) {
      common::LogLimited(LogLevel::kWarn, "subscription refused: too many streams",
          {{"caller", id->ToString()}, {"streams", absl::StrCat(streams)}});
      return new RefusedReactor(common::Refusal(
          absl::StatusCode::kResourceExhausted, "TOO_MANY_CALLS",
          absl::StrCat(id->ToString(), " already holds ", streams,
                       " Subscribe streams to this node (at most ", kMaxStreamsPerCaller, ")")));
    }
    ++streams;
    sub->set_caller(id->jurisdiction, authz_->CallerSerial(*ctx));
  }
  Register(sub);
  auto* reactor = new SubscribeReactor(this, sub, &dispatcher_);
  if (shutting_down_) dispatcher_.Schedule(sub);
  return reactor;
}

uint32_t PeerExchangeService::OpenStreams(const std::string& destination) {
  absl::MutexLock lock(&mu_);
  return static_cast<uint32_t>(by_destination_.count(destination));
}

void PeerExchangeService::Shutdown() {
  shutting_down_ = true;
  std::vector<std::shared_ptr<Subscription>> subs;
  {
    absl::MutexLock lock(&mu_);
    subs.assign(all_.begin(), all_.end());
  }
  for (auto& s : subs) dispatcher_.Schedule(s);
}

void PeerExchangeService::Register(const std::shared_ptr<Subscription>& sub) {
  absl::MutexLock lock(&mu_);
  all_.insert(sub);
}

void PeerExchangeService::Opened(const std::shared_ptr<Subscription>& sub,
                                 const std::string& destination) {
  absl::MutexLock lock(&mu_);
  by_destination_.emplace(destination, sub);
}

void PeerExchangeService::Unregister(const std::shared_ptr<Subscription>& sub) {
  absl::MutexLock lock(&mu_);
  all_.erase(sub);
  auto streams = streams_by_caller_.find(sub->caller());
  if (streams != streams_by_caller_.end() && --streams->second == 0) {
    streams_by_caller_.erase(streams);
  }
  buffer_waiters_.erase(sub);
  auto [begin, end] = by_destination_.equal_range(sub->destination());
  for (auto it = begin; it != end; ++it) {
    if (it->second == sub) {
      by_destination_.erase(it);
      break;
    }
  }
}

void PeerExchangeService::ChannelsMoved(const std::map<std::string, ChannelState>& changes) {
  std::vector<std::shared_ptr<Subscription>> subs;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [dest, state] : changes) {
      auto [begin, end] = by_destination_.equal_range(dest);
      for (auto it = begin; it != end; ++it) subs.push_back(it->second);
    }
  }
  for (auto& s : subs) dispatcher_.Schedule(s);
}

void PeerExchangeService::Tick() {
  std::vector<std::shared_ptr<Subscription>> subs;
  {
    absl::MutexLock lock(&mu_);
    subs.assign(all_.begin(), all_.end());
  }
  const absl::Time now = absl::Now();
  // The revocation lists changed: the streams of revoked certificates end.
  const uint64_t generation = authz_->RevocationGeneration();
  const bool recheck = generation != revocation_generation_;
  revocation_generation_ = generation;
  for (auto& s : subs) {
    if (recheck && authz_->Revoked(s->serial())) {
      s->Revoke();
      dispatcher_.Schedule(s);
    } else if (s->StepDue(now)) {
      dispatcher_.Schedule(s);
    }
  }
}

bool PeerExchangeService::MayBuffer(const std::shared_ptr<Subscription>& sub) {
  absl::MutexLock lock(&mu_);
  if (buffered_ < kBufferBudget) return true;
  buffer_waiters_.insert(sub);
  return false;
}

void PeerExchangeService::Buffered(int64_t bytes) {
  absl::MutexLock lock(&mu_);
  buffered_ += bytes;
}

void PeerExchangeService::GiveBack(int64_t bytes) {
  std::set<std::shared_ptr<Subscription>> waiters;
  {
    absl::MutexLock lock(&mu_);
    buffered_ -= bytes;
    if (buffered_ < kBufferBudget) waiters.swap(buffer_waiters_);
  }
  for (auto& w : waiters) dispatcher_.Schedule(w);
}

v1::BatchManifest PeerExchangeService::SignBatch(const std::string& dest, v1::Batch& batch) {
  // Test fault: the first entry is another jurisdiction's notice, signed as this node's own (the
  // destination must refuse the batch although its signature verifies).
  if (common::FaultHits("foreign_entry", batch.first_seq(),
                        batch.first_seq() + batch.entries_size() - 1)) {
    v1::Notice n;
    if (n.ParseFromString(batch.entries(0).notice())) {
      n.set_origin("110101");
      batch.mutable_entries(0)->set_notice(n.SerializeAsString());
    }
  }
  v1::BatchManifest m;
  m.set_origin(self_);
  m.set_destination(dest);
  m.set_first_seq(batch.first_seq());
  m.set_last_seq(batch.first_seq() + batch.entries_size() - 1);
  for (const auto& e : batch.entries()) m.add_digests(common::Sha256(e.notice()));
  *m.mutable_created_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(common::Now()));
  v1::Signed* signed_manifest = batch.mutable_manifest();
  signed_manifest->set_message(common::DeterministicBytes(m));
  signed_manifest->set_signature(
      signatures_.key()->Sign(common::kManifestContext, signed_manifest->message()));
  signed_manifest->set_signer(self_);
  // Test faults: a forged signature, or an entry altered after signing (the subscriber must
  // refuse both).
  if (common::FaultHits("bad_manifest_signature", m.first_seq(), m.last_seq())) {
    (*signed_manifest->mutable_signature())[0] ^= 1;
  }
  if (common::FaultHits("tamper_entry", m.first_seq(), m.last_seq())) {
    batch.mutable_entries(0)->mutable_notice()->push_back('\0');
  }
  return m;
}

absl::StatusOr<v1::Receipt> PeerExchangeService::CheckReceipt(
    const std::string& dest, const v1::SubscribeRequest::Ack& ack,
    const std::string& expected_manifest_digest) {
  if (!ack.has_receipt()) return absl::InvalidArgumentError("ack.receipt: required");
  v1::Receipt receipt;
  if (!receipt.ParseFromString(ack.receipt().message())) {
    return absl::InvalidArgumentError("ack.receipt.message: not a caseway.v1.Receipt");
  }
  // By the destination's key valid at the receipt's received_at.
  absl::Status sig = signatures_.directory()->Verify(dest, common::TimeOf(receipt.received_at()),
                                                     common::kReceiptContext,
                                                     ack.receipt().message(), ack.receipt().signature());
  if (!sig.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("ack.receipt.signature: does not verify with the key of ", dest, ": ",
                     sig.message()));
  }
  if (receipt.receiver() != dest || receipt.origin() != self_) {
    return absl::InvalidArgumentError("ack.receipt: receiver and origin must name this channel");
  }
  if (receipt.last_seq() != ack.seq()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ack.receipt.last_seq: ", receipt.last_seq(), " is not ack.seq ", ack.seq()));
  }
  std::string expected = expected_manifest_digest;
  if (expected.empty()) {
    auto stored = channels_->SentManifestDigest(dest, receipt.first_seq(), receipt.last_seq());
    if (!stored.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ack.receipt: no manifest was sent for ", receipt.first_seq(), "..", receipt.last_seq()));
    }
    expected = *stored;
  }
  if (receipt.manifest_digest() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ack.receipt.manifest_digest: does not name the manifest sent for ", receipt.first_seq(),
        "..", receipt.last_seq()));
  }
  return receipt;
}

}  // namespace caseway::server
