#include "server/gateway/inbox_stream.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/refusal.h"
#include "common/status_macros.h"
#include "common/validation.h"
#include "server/error_policy.h"

namespace caseway::server {

namespace v1 = caseway::v1;
using google::protobuf::util::TimeUtil;

// Most rows read from the store per step, and about the most bytes of them queued per stream
// (the rest are read again at the next step): a stream holds at most about 1 MiB.
constexpr uint32_t kRowsPerRead = 512;
constexpr size_t kQueuedBytes = 1 << 20;

class InboxReactor final : public grpc::ServerBidiReactor<v1::InboxRequest, v1::InboxResponse> {
 public:
  InboxReactor(InboxHub* hub, std::shared_ptr<InboxStream> stream)
      : hub_(hub), stream_(std::move(stream)) {
    stream_->Attach(this);
    StartRead(stream_->read_buffer());
  }
  void OnReadDone(bool ok) override {
    stream_->ReadDone(ok);
    hub_->dispatcher_.Schedule(stream_);
  }
  void OnWriteDone(bool ok) override {
    stream_->WriteDone(ok);
    hub_->dispatcher_.Schedule(stream_);
  }
  void OnCancel() override {
    stream_->Cancelled();
    hub_->dispatcher_.Schedule(stream_);
  }
  void OnDone() override {
    stream_->Done();
    hub_->Unregister(stream_);
    delete this;
  }

 private:
  InboxHub* const hub_;
  const std::shared_ptr<InboxStream> stream_;
};

using RefusedInbox = RefusedStream<v1::InboxRequest, v1::InboxResponse>;

InboxHub::InboxHub(InboxStore* inbox, AccessLog* access, const Authorizer* authz)
    : store_(inbox), access_(access), authz_(authz), dispatcher_(2, "cw-inbox") {
  store_->SetInboxListener([this] { Wake(); });
}

InboxHub::~InboxHub() {
  store_->SetInboxListener(nullptr);
  dispatcher_.Stop();
  // Ack writes of ours still in the commit queue complete before we are gone.
  store_->Barrier();
}

grpc::ServerBidiReactor<v1::InboxRequest, v1::InboxResponse>* InboxHub::Start(
    grpc::CallbackServerContext* ctx) {
  // The caller is checked before anything is read or held for it.
  auto id = authz_->Check(*ctx, Rpc::kInbox);
  if (!id.ok()) return new RefusedInbox(id.status());
  if (shutting_down_) return new RefusedInbox(absl::UnavailableError("node shutting down"));
  auto slot = slots_.Take(id->ToString());
  if (!slot.ok()) return new RefusedInbox(slot.status());
  auto stream = std::make_shared<InboxStream>(this, std::move(*slot), authz_->CallerSerial(*ctx),
                                              id->ToString());
  {
    absl::MutexLock lock(&mu_);
    all_.insert(stream);
  }
  auto* reactor = new InboxReactor(this, stream);
  // A shutdown that began meanwhile ends this stream too.
  if (shutting_down_) dispatcher_.Schedule(stream);
  return reactor;
}

void InboxHub::Tick() {
  std::set<std::shared_ptr<Steppable>> streams;
  {
    absl::MutexLock lock(&mu_);
    streams = all_;
  }
  const absl::Time now = absl::Now();
  for (auto& s : streams) {
    if (static_cast<InboxStream*>(s.get())->StartOverdue(now)) dispatcher_.Schedule(s);
  }
}

void InboxHub::Shutdown() {
  shutting_down_ = true;
  std::set<std::shared_ptr<Steppable>> streams;
  {
    absl::MutexLock lock(&mu_);
    streams = all_;
  }
  for (auto& s : streams) dispatcher_.Schedule(s);
}

void InboxHub::RevocationsChanged() {
  std::set<std::shared_ptr<Steppable>> streams;
  {
    absl::MutexLock lock(&mu_);
    streams = all_;
  }
  for (auto& s : streams) {
    static_cast<InboxStream*>(s.get())->Recheck();
    dispatcher_.Schedule(s);
  }
}

void InboxHub::Wait(std::shared_ptr<Steppable> stream) {
  absl::MutexLock lock(&mu_);
  waiting_.insert(std::move(stream));
}

void InboxHub::Wake() {
  std::set<std::shared_ptr<Steppable>> woken;
  {
    absl::MutexLock lock(&mu_);
    woken.swap(waiting_);
  }
  for (auto& s : woken) dispatcher_.Schedule(s);
}

void InboxHub::Unregister(const std::shared_ptr<Steppable>& stream) {
  absl::MutexLock lock(&mu_);
  if (all_.erase(stream) > 0) static_cast<InboxStream*>(stream.get())->ReleaseSlot();
  waiting_.erase(stream);
}

void InboxStream::Attach(InboxReactor* reactor) {
  absl::MutexLock lock(&mu_);
  reactor_ = reactor;
}
void InboxStream::ReadDone(bool ok) {
  absl::MutexLock lock(&mu_);
  (ok ? read_ready_ : read_closed_) = true;
}
void InboxStream::WriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  if (!ok) write_failed_ = true;
}
void InboxStream::Cancelled() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}
void InboxStream::Done() {
  absl::MutexLock lock(&mu_);
  reactor_ = nullptr;
}
bool InboxStream::StartOverdue(absl::Time now) {
  absl::MutexLock lock(&mu_);
  return !started_ && !finished_ && now - created_ > kStartTimeout;
}

void InboxStream::Recheck() {
  absl::MutexLock lock(&mu_);
  recheck_ = true;
}

absl::Status InboxStream::HandleStart() {
  if (!read_msg_.has_start()) {
    return absl::InvalidArgumentError("start: the first InboxRequest must be start");
  }
  start_ = read_msg_.start();
  if (start_.window() > 10000) {
    return absl::InvalidArgumentError("start.window: must be in 0..10000");
  }
  window_ = start_.window() == 0 ? 256 : start_.window();
  std::vector<common::Violation> bad;
  common::ValidatePurpose("start.purpose", start_.purpose(), &bad);
  if (!bad.empty()) return common::BadInput("INVALID_REQUEST", bad);
  started_ = true;
  return absl::OkStatus();
}

absl::Status InboxStream::HandleAck() {
  if (!read_msg_.has_ack()) {
    return absl::InvalidArgumentError("ack: every InboxRequest after start must be ack");
  }
  if (read_msg_.ack().inbox_seqs_size() > kMaxAcksPerMessage) {
    return absl::InvalidArgumentError(
        absl::StrCat("ack.inbox_seqs: at most ", kMaxAcksPerMessage, " per message"));
  }
  acking_.assign(read_msg_.ack().inbox_seqs().begin(), read_msg_.ack().inbox_seqs().end());
  ack_pending_ = true;
  std::vector<uint64_t> seqs = acking_;
  InboxStore::WriteDone done = ResumeWith(&InboxStream::ack_result_);
  mu_.Unlock();  // `done` may run inline and takes mu_; Step() is not re-entered meanwhile
  hub_->store_->AckInboxAsync(std::move(seqs), std::move(done));
  mu_.Lock();
  return absl::OkStatus();
}

InboxStore::WriteDone InboxStream::ResumeWith(std::optional<absl::Status> InboxStream::*result) {
  return [weak = weak_from_this(), dispatcher = &hub_->dispatcher_,
          result](const absl::Status& s) {
    auto self = weak.lock();
    if (!self) return;
    {
      absl::MutexLock lock(&self->mu_);
      (*self).*result = s;
    }
    dispatcher->Schedule(self);
  };
}

absl::StatusOr<bool> InboxStream::Fill() {
  const size_t room =
      start_.ack() ? window_ - std::min<size_t>(window_, outstanding_.size()) : kRowsPerRead;
  const uint64_t version = hub_->store_->Version();
  std::vector<InboxRow> rows;
  bool nothing_unsent = false;
  if (room > 0 && !(sent_caught_up_ && !start_.follow())) {
    const uint64_t after = last_sent_;
    mu_.Unlock();  // only Step() changes last_sent_, and Step() does not run twice at once
    auto read = hub_->store_->ReadInbox(after, static_cast<uint32_t>(std::min<size_t>(room, kRowsPerRead)));
    mu_.Lock();
    if (!read.ok()) return read.status();
    rows = std::move(*read);
    nothing_unsent = rows.empty();
  } else if (room == 0 && !sent_caught_up_) {
    // The window is full: caught up when nothing unsent remains (a consumer may wait for
    // caught_up before acking).
    const uint64_t after = last_sent_;
    mu_.Unlock();
    auto more = hub_->store_->ReadInbox(after, 1);
    mu_.Lock();
    nothing_unsent = more.ok() && more->empty();
  }
  size_t queued = 0;
  AccessEntry access{caller_, "inbox", start_.purpose(), ""};
  for (InboxRow& row : rows) {
    if (queued > 0 && queued + row.bytes.size() > kQueuedBytes) break;
    queued += row.bytes.size();
    v1::InboxResponse& resp = recording_.emplace_back();
    v1::InboxItem* item = resp.mutable_item();
    item->set_inbox_seq(row.inbox_seq);
    item->set_origin(row.origin);
    item->set_channel_seq(row.channel_seq);
    *item->mutable_received_at() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(row.received_at));
    if (!item->mutable_notice()->ParseFromString(row.bytes)) {
      common::Log(common::LogLevel::kError, "unparsable inbox entry",
                  {{"inbox_seq", absl::StrCat(row.inbox_seq)}});
    }
    access.Add(item->notice());
    if (start_.ack()) outstanding_.insert(row.inbox_seq);
    last_sent_ = row.inbox_seq;
    sent_caught_up_ = false;
  }
  if (!recording_.empty()) {
    // Sent once their read is durable in the access log (Advance moves them to the outbox).
    InboxStore::WriteDone done = ResumeWith(&InboxStream::record_result_);
    mu_.Unlock();  // `done` may run inline and takes mu_
    hub_->access_->RecordAccessAsync(std::move(access), std::move(done));
    mu_.Lock();
    return false;
  }
  if (nothing_unsent && !sent_caught_up_) {
    outbox_.emplace_back().mutable_caught_up();
    sent_caught_up_ = true;
  }
  if (!rows.empty() || room == 0) return false;  // more may follow at once, or acks will wake us
  if (!start_.follow() && sent_caught_up_) return false;  // the consumer closes next
  // Nothing to send: wait for a commit that adds rows. A commit between the read and here is
  // caught by the version check.
  hub_->Wait(shared_from_this());
  if (hub_->store_->Version() != version) hub_->dispatcher_.Schedule(shared_from_this());
  return true;
}

absl::Status InboxStream::Advance(Actions& act) {
  if (hub_->shutting_down_) return absl::UnavailableError("node shutting down");
  if (cancelled_) return absl::CancelledError("the consumer went away");
  if (write_failed_) return absl::CancelledError("the consumer went away");
  if (recheck_) {
    recheck_ = false;
    if (hub_->authz_->Revoked(serial_)) {
      return absl::UnauthenticatedError(absl::StrCat("certificate ", serial_, " is revoked"));
    }
  }
  if (!started_) {
    if (absl::Now() - created_ > kStartTimeout) {
      return absl::DeadlineExceededError("start: not received within 10s of the stream's start");
    }
    if (read_closed_) {
      // Either the client half-closed at once or its first message did not parse (gRPC does not
      // tell the two apart); both break the protocol.
      return absl::InvalidArgumentError(
          "start: the first InboxRequest must be start (none was received, or it was not a "
          "valid caseway.v1.InboxRequest)");
    }
    if (!read_ready_) return absl::OkStatus();
    read_ready_ = false;
    RETURN_IF_ERROR(HandleStart());
    act.start_read = true;
  }
  if (ack_result_) {
    absl::Status s = *ack_result_;
    ack_result_.reset();
    ack_pending_ = false;
    RETURN_IF_ERROR(s);
    for (uint64_t seq : acking_) outstanding_.erase(seq);
    acking_.clear();
    act.start_read = true;
  }
  if (read_ready_ && !ack_pending_) {
    read_ready_ = false;
    RETURN_IF_ERROR(HandleAck());
  }
  if (record_result_) {
    absl::Status s = *record_result_;
    record_result_.reset();
    RETURN_IF_ERROR(s);
    for (auto& r : recording_) outbox_.push_back(std::move(r));
    recording_.clear();
  }
  if (!writing_ && outbox_.empty() && recording_.empty() && !read_closed_) {
    RETURN_IF_ERROR(Fill().status());
  }
  if (!writing_ && !outbox_.empty()) {
    write_msg_ = std::move(outbox_.front());
    outbox_.pop_front();
    writing_ = true;
    act.write = &write_msg_;
  }
  return absl::OkStatus();
}

void InboxStream::Step() {
  Actions act;
  InboxReactor* reactor;
  {
    absl::MutexLock lock(&mu_);
    reactor = reactor_;
    if (finished_ || reactor == nullptr) return;
    absl::Status s = Advance(act);
    // The consumer half-closed: once its last acks are committed (no write in flight, no page
    // waiting for its access record) the stream ends normally.
    const bool closed =
        s.ok() && started_ && read_closed_ && !ack_pending_ && !ack_result_ && !writing_ &&
        recording_.empty() && !record_result_ && act.write == nullptr;
    if (!s.ok() || closed) {
      finished_ = true;
      act = Actions{};
      act.finish = common::ToGrpcStatus(s);
      if (!s.ok() && s.code() != absl::StatusCode::kCancelled) {
        common::Log(common::LogLevel::kInfo, "inbox stream ended", {{"status", s.ToString()}});
      }
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

}  // namespace caseway::server
