#include "server/exchange/subscriber.h"

#include <google/protobuf/util/time_util.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/backoff.h"
#include "common/grpc_status.h"
#include "common/log.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;
using google::protobuf::util::TimeUtil;

namespace {

absl::Duration ToDuration(const google::protobuf::Duration& d) {
  return absl::Milliseconds(TimeUtil::DurationToMilliseconds(d));
}

}  // namespace

Subscriber::Subscriber(const v1::NodeConfig& config, const v1::PeerConfig& peer,
                       std::shared_ptr<grpc::ChannelCredentials> creds, NoticeStore* store)
    : self_(config.jurisdiction()), peer_(peer), exchange_(config.exchange()), store_(store) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(config.limits().max_message_bytes()));
  args.SetMaxSendMessageSize(static_cast<int>(config.limits().max_message_bytes()));
  // Reconnect pacing is ours (Backoff below); keep gRPC's own short so it does not add to it.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  stub_ = v1::PeerExchange::NewStub(grpc::CreateCustomChannel(peer.address(), creds, args));
}

Subscriber::~Subscriber() { Stop(); }

void Subscriber::Start() { thread_ = std::thread([this] { Run(); }); }

void Subscriber::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (current_ != nullptr) current_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

v1::StatusResponse::Subscription Subscriber::Status() {
  v1::StatusResponse::Subscription s;
  s.set_origin(peer_.jurisdiction());
  s.set_address(peer_.address());
  absl::MutexLock lock(&mu_);
  s.set_cursor(cursor_);
  s.set_peer_head(peer_head_);
  s.set_lag(peer_head_ > cursor_ ? peer_head_ - cursor_ : 0);
  s.set_state(state_);
  return s;
}

void Subscriber::SetState(std::string state) {
  absl::MutexLock lock(&mu_);
  state_ = std::move(state);
}

void Subscriber::Run() {
  common::Backoff backoff(ToDuration(exchange_.backoff_initial()),
                          ToDuration(exchange_.backoff_max()), std::random_device{}());
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    absl::Time started = absl::Now();
    absl::Status s = Session();
    // A session that ran for a while was a success: start the backoff afresh.
    if (absl::Now() - started > absl::Seconds(5)) backoff.Reset();
    absl::Duration delay = backoff.Next();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      state_ = absl::StrCat("backoff: ", s.ToString());
    }
    Log(LogLevel::kInfo, "subscription interrupted",
        {{"origin", peer_.jurisdiction()},
         {"status", s.ToString()},
         {"retry_in", absl::FormatDuration(delay)}});
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay);
  }
}

absl::Status Subscriber::Session() {
  auto cursor = store_->Cursor(peer_.jurisdiction());
  if (!cursor.ok()) return cursor.status();
  grpc::ClientContext ctx;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("stopping");
    current_ = &ctx;
    cursor_ = *cursor;
    state_ = "connecting";
  }
  struct Clear {
    Subscriber* s;
    ~Clear() {
      absl::MutexLock lock(&s->mu_);
      s->current_ = nullptr;
    }
  } clear{this};

  auto stream = stub_->Subscribe(&ctx);
  v1::SubscribeRequest open;
  open.mutable_open()->set_destination(self_);
  open.mutable_open()->set_cursor(*cursor);
  open.mutable_open()->set_window(exchange_.window_batches());
  if (!stream->Write(open)) return common::FromGrpcStatus(stream->Finish());

  uint64_t stored = *cursor;
  absl::Status failure;
  v1::SubscribeResponse resp;
  while (stream->Read(&resp)) {
    if (resp.has_heartbeat()) {
      absl::MutexLock lock(&mu_);
      state_ = "connected";
      peer_head_ = resp.heartbeat().head();
      continue;
    }
    const v1::Batch& batch = resp.batch();
    if (batch.first_seq() != stored + 1 || batch.entries_size() == 0) {
      failure = absl::FailedPreconditionError(absl::StrCat(
          "batch.first_seq: ", batch.first_seq(), " is not cursor+1 (", stored + 1, ")"));
      break;
    }
    absl::Status s = store_->StoreReceived(peer_.jurisdiction(), batch);
    if (!s.ok()) {
      failure = s;
      break;
    }
    stored = batch.first_seq() + batch.entries_size() - 1;
    {
      absl::MutexLock lock(&mu_);
      state_ = "connected";
      cursor_ = stored;
      peer_head_ = std::max(peer_head_, stored);
    }
    v1::SubscribeRequest ack;
    ack.mutable_ack()->set_seq(stored);
    if (!stream->Write(ack)) break;
  }
  if (!failure.ok()) {
    Log(LogLevel::kError, "batch refused",
        {{"origin", peer_.jurisdiction()}, {"status", failure.ToString()}});
    ctx.TryCancel();
  }
  grpc::Status finish = stream->Finish();
  if (!failure.ok()) return failure;
  if (finish.ok()) return absl::UnavailableError("peer closed the stream");
  return common::FromGrpcStatus(finish);
}

}  // namespace caseway::server
