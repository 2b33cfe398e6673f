#include "server/exchange/peer_exchange_service.h"

#include <google/protobuf/util/time_util.h>

#include <deque>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/log.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;
using common::ToGrpcStatus;
using google::protobuf::util::TimeUtil;

PeerExchangeService::PeerExchangeService(const v1::NodeConfig& config, NoticeStore* store,
                                         const Authorizer* authz)
    : batch_max_entries_(config.exchange().batch_max_entries()),
      default_window_(config.exchange().window_batches()),
      // Leave room for framing under the peer's receive limit (the same limit federation-wide).
      max_batch_bytes_(config.limits().max_message_bytes() / 2),
      heartbeat_interval_(absl::Milliseconds(
          TimeUtil::DurationToMilliseconds(config.exchange().heartbeat_interval()))),
      store_(store),
      authz_(authz) {}

uint32_t PeerExchangeService::OpenStreams(const std::string& destination) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(destination);
  return it == open_.end() ? 0 : it->second;
}

grpc::Status PeerExchangeService::Subscribe(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::SubscribeResponse, v1::SubscribeRequest>* stream) {
  auto id = authz_->Check(*ctx, Rpc::kSubscribe);
  if (!id.ok()) return ToGrpcStatus(id.status());
  v1::SubscribeRequest first;
  if (!stream->Read(&first)) return grpc::Status::OK;
  if (!first.has_open()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "open: the first SubscribeRequest must be open");
  }
  const v1::SubscribeRequest::Open& open = first.open();
  const std::string& dest = id->jurisdiction;
  if (open.destination() != dest) {
    Log(LogLevel::kWarn, "subscription to another node's channel refused",
        {{"caller", id->ToString()}, {"requested", open.destination()}});
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("open.destination: ", id->ToString(),
                                     " may subscribe only to channel ", dest, ", not ",
                                     open.destination()));
  }
  if (open.window() > 64) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "open.window: must be in 0..64");
  }
  const uint64_t head_at_open = store_->Channel(dest).head;
  if (open.cursor() > head_at_open) {
    return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                        absl::StrCat("open.cursor: ", open.cursor(), " is beyond the head ",
                                     head_at_open, " of channel ", dest));
  }
  const uint32_t window = open.window() == 0 ? default_window_ : open.window();
  {
    absl::MutexLock lock(&mu_);
    ++open_[dest];
  }
  absl::Cleanup closed = [&] {
    absl::MutexLock lock(&mu_);
    --open_[dest];
  };
  Log(LogLevel::kInfo, "subscription opened",
      {{"destination", dest}, {"cursor", absl::StrCat(open.cursor())}});

  // Shared between this (sending) thread and the ack reader.
  absl::Mutex mu;
  std::deque<uint64_t> inflight;  // last seq of each unacknowledged batch
  uint64_t acked = open.cursor();
  uint64_t sent = open.cursor();
  bool reader_done = false;
  absl::Status reader_error;
  std::thread reader([&] {
    v1::SubscribeRequest req;
    while (stream->Read(&req)) {
      absl::Status s;
      uint64_t seq = req.ack().seq();
      {
        absl::MutexLock lock(&mu);
        if (!req.has_ack()) {
          s = absl::InvalidArgumentError("ack: every SubscribeRequest after open must be ack");
        } else if (seq > sent) {
          s = absl::InvalidArgumentError(
              absl::StrCat("ack.seq: ", seq, " is beyond what was sent (", sent, ")"));
        } else if (seq < acked) {
          s = absl::InvalidArgumentError(
              absl::StrCat("ack.seq: ", seq, " goes backwards (acked ", acked, ")"));
        } else {
          acked = seq;
          while (!inflight.empty() && inflight.front() <= seq) inflight.pop_front();
        }
        if (!s.ok()) reader_error = s;
      }
      if (!s.ok()) break;
      s = store_->RecordAck(dest, seq);  // also wakes the sender through the store's version
      if (!s.ok()) {
        absl::MutexLock lock(&mu);
        reader_error = s;
        break;
      }
    }
    absl::MutexLock lock(&mu);
    reader_done = true;
  });

  absl::Status result;
  absl::Time next_heartbeat = absl::Now();  // the first heartbeat tells the head at once
  while (result.ok()) {
    uint64_t version = store_->Version();
    uint64_t from;
    bool can_send;
    {
      absl::MutexLock lock(&mu);
      if (!reader_error.ok()) {
        result = reader_error;
        break;
      }
      if (reader_done) break;
      from = sent + 1;
      can_send = inflight.size() < window;
    }
    if (ctx->IsCancelled()) break;
    if (shutting_down_) {
      result = absl::UnavailableError("node shutting down");
      break;
    }
    const uint64_t head = store_->Channel(dest).head;
    if (can_send && head >= from) {
      auto entries = store_->ReadChannel(dest, from, batch_max_entries_, max_batch_bytes_);
      if (!entries.ok()) {
        result = entries.status();
        break;
      }
      if (!entries->empty()) {
        v1::SubscribeResponse resp;
        v1::Batch* batch = resp.mutable_batch();
        batch->set_first_seq(from);
        const uint64_t last = entries->back().seq();
        for (auto& e : *entries) *batch->add_entries() = std::move(e);
        {
          absl::MutexLock lock(&mu);
          inflight.push_back(last);
          sent = last;
        }
        if (!stream->Write(resp)) break;
        continue;
      }
    }
    absl::Time now = absl::Now();
    if (now >= next_heartbeat) {
      v1::SubscribeResponse resp;
      resp.mutable_heartbeat()->set_head(head);
      if (!stream->Write(resp)) break;
      next_heartbeat = now + heartbeat_interval_;
    }
    // Sleep until a commit (new entries, an ack) or the next heartbeat; poll the reader's and the
    // call's state at least every 100 ms.
    store_->Wait(version, std::min(next_heartbeat, now + absl::Milliseconds(100)));
  }
  if (!result.ok()) {
    Log(LogLevel::kWarn, "subscription ended with error",
        {{"destination", dest}, {"status", result.ToString()}});
  }
  ctx->TryCancel();
  reader.join();
  Log(LogLevel::kInfo, "subscription closed", {{"destination", dest}});
  return ToGrpcStatus(result);
}

}  // namespace caseway::server
