#include "server/gateway/gateway_service.h"

#include <google/protobuf/util/time_util.h>

#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/proto_bytes.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/validation.h"

namespace caseway::server {

using common::ToGrpcStatus;
using google::protobuf::util::TimeUtil;

namespace {

// UnknownFieldPath names the first message (by field path) that carries fields this version of
// the contract does not know, or returns "" when there are none. Such fields would be stored and
// forwarded unvalidated.
std::string UnknownFieldPath(const google::protobuf::Message& m, const std::string& prefix = "") {
  const google::protobuf::Reflection* r = m.GetReflection();
  if (!r->GetUnknownFields(m).empty()) return prefix.empty() ? "(notice)" : prefix;
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const auto* f : fields) {
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    std::string path = prefix.empty() ? f->name() : absl::StrCat(prefix, ".", f->name());
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(m, f); ++i) {
        std::string found = UnknownFieldPath(r->GetRepeatedMessage(m, f, i), absl::StrCat(path, "[", i, "]"));
        if (!found.empty()) return found;
      }
    } else {
      std::string found = UnknownFieldPath(r->GetMessage(m, f), path);
      if (!found.empty()) return found;
    }
  }
  return "";
}

}  // namespace

GatewayService::GatewayService(const v1::NodeConfig& config, NoticeStore* store,
                               const Authorizer* authz, SubscriptionStatusFn subscriptions,
                               OpenStreamsFn open_streams)
    : jurisdiction_(config.jurisdiction()),
      max_batch_notices_(config.limits().max_batch_notices()),
      store_(store),
      authz_(authz),
      subscriptions_(std::move(subscriptions)),
      open_streams_(std::move(open_streams)) {
  for (const auto& peer : config.peers()) peers_.insert(peer.jurisdiction());
}

absl::StatusOr<std::vector<PreparedNotice>> GatewayService::Prepare(
    const google::protobuf::RepeatedPtrField<v1::Notice>& notices, bool batch) const {
  common::NoticeRules rules;
  rules.self_jurisdiction = jurisdiction_;
  rules.peers = peers_;
  rules.now = absl::Now();
  std::vector<PreparedNotice> out;
  out.reserve(notices.size());
  std::set<std::string> ids;
  for (int i = 0; i < notices.size(); ++i) {
    std::string path = batch ? absl::StrCat("notices[", i, "].") : "notice.";
    auto warnings = common::ValidateNotice(notices[i], rules, path);
    if (!warnings.ok()) return warnings.status();
    if (batch && !ids.insert(notices[i].notice_id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, "notice_id: appears more than once in the batch"));
    }
    if (auto unknown = UnknownFieldPath(notices[i]); !unknown.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, unknown, ": unknown field (not in caseway.v1; upgrade the node or drop it)"));
    }
    v1::Notice n = notices[i];
    n.set_origin(jurisdiction_);
    PreparedNotice& p = out.emplace_back();
    p.notice_id = n.notice_id();
    p.destinations.assign(n.destinations().begin(), n.destinations().end());
    p.bytes = common::DeterministicBytes(n);
    p.digest = common::Sha256(p.bytes);
    p.warnings = std::move(*warnings);
  }
  return out;
}

grpc::ServerUnaryReactor* GatewayService::Publish(grpc::CallbackServerContext* ctx,
                                                  const v1::PublishRequest* req,
                                                  v1::PublishResult* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (auto id = authz_->Check(*ctx, Rpc::kPublish); !id.ok()) {
    reactor->Finish(ToGrpcStatus(id.status()));
    return reactor;
  }
  if (!req->has_notice()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "notice: required"));
    return reactor;
  }
  google::protobuf::RepeatedPtrField<v1::Notice> one;
  *one.Add() = req->notice();
  auto prepared = Prepare(one, /*batch=*/false);
  if (!prepared.ok()) {
    reactor->Finish(ToGrpcStatus(prepared.status()));
    return reactor;
  }
  store_->PublishAsync(
      std::move(*prepared),
      [reactor, resp, id = req->notice().notice_id()](
          absl::StatusOr<std::vector<v1::PublishResult>> results) {
        if (results.ok()) {
          *resp = std::move((*results)[0]);
          reactor->Finish(grpc::Status::OK);
          return;
        }
        absl::Status s = results.status();
        if (s.code() == absl::StatusCode::kAlreadyExists) {
          // The store names batch positions; a single publish names the notice.
          s = absl::AlreadyExistsError(absl::StrCat(
              "notice.notice_id: ", id,
              " is already stored with different content (publish a new revision instead)"));
        } else {
          common::Log(common::LogLevel::kError, "publish failed", {{"status", s.ToString()}});
        }
        reactor->Finish(ToGrpcStatus(s));
      });
  return reactor;
}

grpc::ServerUnaryReactor* GatewayService::PublishBatch(grpc::CallbackServerContext* ctx,
                                                       const v1::PublishBatchRequest* req,
                                                       v1::PublishBatchResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (auto id = authz_->Check(*ctx, Rpc::kPublishBatch); !id.ok()) {
    reactor->Finish(ToGrpcStatus(id.status()));
    return reactor;
  }
  if (req->notices_size() == 0) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "notices: at least one required"));
    return reactor;
  }
  if (static_cast<uint32_t>(req->notices_size()) > max_batch_notices_) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 absl::StrCat("notices: at most ", max_batch_notices_,
                                              " per batch (limits.max_batch_notices)")));
    return reactor;
  }
  auto prepared = Prepare(req->notices(), /*batch=*/true);
  if (!prepared.ok()) {
    reactor->Finish(ToGrpcStatus(prepared.status()));
    return reactor;
  }
  store_->PublishAsync(std::move(*prepared),
                       [reactor, resp](absl::StatusOr<std::vector<v1::PublishResult>> results) {
                         if (!results.ok()) {
                           if (results.status().code() != absl::StatusCode::kAlreadyExists) {
                             common::Log(common::LogLevel::kError, "publish batch failed",
                                         {{"status", results.status().ToString()}});
                           }
                           reactor->Finish(ToGrpcStatus(results.status()));
                           return;
                         }
                         for (auto& r : *results) *resp->add_results() = std::move(r);
                         reactor->Finish(grpc::Status::OK);
                       });
  return reactor;
}

grpc::Status GatewayService::Inbox(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::InboxResponse, v1::InboxRequest>* stream) {
  if (auto id = authz_->Check(*ctx, Rpc::kInbox); !id.ok()) return ToGrpcStatus(id.status());
  v1::InboxRequest first;
  if (!stream->Read(&first)) return grpc::Status::OK;
  if (!first.has_start()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "start: the first InboxRequest must be start");
  }
  const v1::InboxRequest::Start start = first.start();
  if (start.window() > 10000) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "start.window: must be in 0..10000");
  }
  const uint32_t window = start.window() == 0 ? 256 : start.window();

  // The reader thread takes acks while this thread sends; both share `mu`.
  absl::Mutex mu;
  std::set<uint64_t> outstanding;  // sent, not yet acked (only with start.ack)
  bool reader_done = false;
  absl::Status reader_error;
  std::thread reader([&] {
    v1::InboxRequest req;
    while (stream->Read(&req)) {
      if (!req.has_ack()) {
        absl::MutexLock lock(&mu);
        reader_error = absl::InvalidArgumentError("ack: every InboxRequest after start must be ack");
        break;
      }
      std::vector<uint64_t> seqs(req.ack().inbox_seqs().begin(), req.ack().inbox_seqs().end());
      absl::Status s = store_->AckInbox(seqs);
      absl::MutexLock lock(&mu);
      if (!s.ok()) {
        reader_error = s;
        break;
      }
      for (uint64_t seq : seqs) outstanding.erase(seq);
    }
    absl::MutexLock lock(&mu);
    reader_done = true;
  });

  absl::Status result;
  uint64_t last_sent = 0;
  bool sent_caught_up = false;
  while (result.ok()) {
    uint64_t version = store_->Version();
    size_t room;
    {
      absl::MutexLock lock(&mu);
      if (!reader_error.ok()) {
        result = reader_error;
        break;
      }
      if (reader_done) break;  // the client half-closed: no more acks can come
      room = start.ack() ? window - std::min<size_t>(window, outstanding.size()) : 512;
    }
    if (ctx->IsCancelled() || shutting_down_) {
      result = absl::UnavailableError("node shutting down");
      break;
    }
    std::vector<InboxRow> rows;
    if (room > 0 && !(sent_caught_up && !start.follow())) {
      auto read = store_->ReadInbox(last_sent, static_cast<uint32_t>(std::min<size_t>(room, 512)));
      if (!read.ok()) {
        result = read.status();
        break;
      }
      rows = std::move(*read);
    }
    for (const InboxRow& row : rows) {
      v1::InboxResponse resp;
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
      if (start.ack()) {
        absl::MutexLock lock(&mu);
        outstanding.insert(row.inbox_seq);
      }
      if (!stream->Write(resp)) {
        result = absl::CancelledError("client went away");
        break;
      }
      last_sent = row.inbox_seq;
      sent_caught_up = false;
    }
    if (!result.ok()) break;
    // Caught up means nothing unsent remains, whether or not the window has room: a consumer
    // may wait for caught_up before acking.
    bool nothing_unsent = rows.empty() && room > 0;
    if (room == 0 && !sent_caught_up) {
      auto more = store_->ReadInbox(last_sent, 1);
      nothing_unsent = more.ok() && more->empty();
    }
    if (nothing_unsent && !sent_caught_up) {
      v1::InboxResponse resp;
      resp.mutable_caught_up();
      if (!stream->Write(resp)) break;
      sent_caught_up = true;
    }
    if (rows.empty() || room == 0) {
      // Wait for a commit (new notices or acks) or poll the reader's state shortly.
      store_->Wait(version, absl::Now() + absl::Milliseconds(200));
    }
  }
  if (!result.ok()) ctx->TryCancel();
  reader.join();
  return ToGrpcStatus(result);
}

grpc::Status GatewayService::Status(grpc::ServerContext* ctx, const v1::StatusRequest* req,
                                    v1::StatusResponse* resp) {
  if (auto id = authz_->Check(*ctx, Rpc::kStatus); !id.ok()) return ToGrpcStatus(id.status());
  resp->set_jurisdiction(jurisdiction_);
  std::map<std::string, ChannelState> channels = store_->Channels();
  for (const auto& peer : peers_) channels.emplace(peer, ChannelState{});
  for (const auto& [dest, state] : channels) {
    auto* c = resp->add_channels();
    c->set_destination(dest);
    c->set_head(state.head);
    c->set_acked(state.acked);
    c->set_open_streams(open_streams_(dest));
  }
  for (auto& sub : subscriptions_()) *resp->add_subscriptions() = std::move(sub);
  auto counts = store_->InboxCounts();
  if (!counts.ok()) return ToGrpcStatus(counts.status());
  resp->set_inbox_total(counts->first);
  resp->set_inbox_unacked(counts->second);
  if (absl::Status halted = store_->Halted(); !halted.ok()) {
    resp->set_halted(std::string(halted.message()));
  }
  return grpc::Status::OK;
}

}  // namespace caseway::server
