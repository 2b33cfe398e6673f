#include "server/gateway/gateway_service.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <grpcpp/support/proto_buffer_writer.h>

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

// Most inbox sequence numbers acknowledged in one InboxRequest.
constexpr int kMaxAcksPerMessage = 10000;

// ParseRequest parses a request received as bytes; INVALID_ARGUMENT when it does not parse.
template <typename Request>
absl::Status ParseRequest(const grpc::ByteBuffer& bytes, Request* request) {
  grpc::ByteBuffer copy(bytes);  // shares the slices; Deserialize consumes its buffer
  if (!grpc::SerializationTraits<Request>::Deserialize(&copy, request).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request: not a valid ", Request::descriptor()->full_name(),
        " (malformed protobuf, or a string field that is not UTF-8)"));
  }
  return absl::OkStatus();
}

// FinishWith serializes `response` into the raw response buffer and finishes the call.
void FinishWith(grpc::ServerUnaryReactor* reactor, const google::protobuf::Message& response,
                grpc::ByteBuffer* out) {
  bool own = false;
  grpc::Status s = grpc::SerializationTraits<google::protobuf::Message>::Serialize(response, out,
                                                                                    &own);
  reactor->Finish(s);
}

}  // namespace

GatewayService::GatewayService(const v1::NodeConfig& config, NoticeStore* store,
                               const Authorizer* authz, SubscriptionStatusFn subscriptions,
                               OpenStreamsFn open_streams)
    : jurisdiction_(config.jurisdiction()),
      max_batch_notices_(config.limits().max_batch_notices()),
      max_notice_bytes_(config.limits().max_notice_bytes()),
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
    if (p.bytes.size() > max_notice_bytes_) {
      return absl::InvalidArgumentError(
          absl::StrCat(batch ? absl::StrCat("notices[", i, "]") : "notice", ": ", p.bytes.size(),
                       " bytes serialized, at most ", max_notice_bytes_,
                       " (limits.max_notice_bytes, so that it fits in a delivery batch)"));
    }
    p.digest = common::Sha256(p.bytes);
    p.warnings = std::move(*warnings);
  }
  return out;
}

grpc::ServerUnaryReactor* GatewayService::Publish(grpc::CallbackServerContext* ctx,
                                                  const grpc::ByteBuffer* request,
                                                  grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (auto id = authz_->Check(*ctx, Rpc::kPublish); !id.ok()) {
    reactor->Finish(ToGrpcStatus(id.status()));
    return reactor;
  }
  v1::PublishRequest req;
  if (absl::Status s = ParseRequest(*request, &req); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  if (!req.has_notice()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "notice: required"));
    return reactor;
  }
  google::protobuf::RepeatedPtrField<v1::Notice> one;
  one.Add()->Swap(req.mutable_notice());
  auto prepared = Prepare(one, /*batch=*/false);
  if (!prepared.ok()) {
    reactor->Finish(ToGrpcStatus(prepared.status()));
    return reactor;
  }
  store_->PublishAsync(
      std::move(*prepared),
      [reactor, response, id = one[0].notice_id()](
          absl::StatusOr<std::vector<v1::PublishResult>> results) {
        if (results.ok()) {
          FinishWith(reactor, (*results)[0], response);
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
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (auto id = authz_->Check(*ctx, Rpc::kPublishBatch); !id.ok()) {
    reactor->Finish(ToGrpcStatus(id.status()));
    return reactor;
  }
  v1::PublishBatchRequest req;
  if (absl::Status s = ParseRequest(*request, &req); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  if (req.notices_size() == 0) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "notices: at least one required"));
    return reactor;
  }
  if (static_cast<uint32_t>(req.notices_size()) > max_batch_notices_) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 absl::StrCat("notices: at most ", max_batch_notices_,
                                              " per batch (limits.max_batch_notices)")));
    return reactor;
  }
  auto prepared = Prepare(req.notices(), /*batch=*/true);
  if (!prepared.ok()) {
    reactor->Finish(ToGrpcStatus(prepared.status()));
    return reactor;
  }
  store_->PublishAsync(std::move(*prepared),
                       [reactor, response](absl::StatusOr<std::vector<v1::PublishResult>> results) {
                         if (!results.ok()) {
                           if (results.status().code() != absl::StatusCode::kAlreadyExists) {
                             common::Log(common::LogLevel::kError, "publish batch failed",
                                         {{"status", results.status().ToString()}});
                           }
                           reactor->Finish(ToGrpcStatus(results.status()));
                           return;
                         }
                         v1::PublishBatchResponse resp;
                         for (auto& r : *results) *resp.add_results() = std::move(r);
                         FinishWith(reactor, resp, response);
                       });
  return reactor;
}

grpc::Status GatewayService::Inbox(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::InboxResponse, v1::InboxRequest>* stream) {
  if (auto id = authz_->Check(*ctx, Rpc::kInbox); !id.ok()) return ToGrpcStatus(id.status());
  v1::InboxRequest first;
  if (!stream->Read(&first)) {
    // Either the client half-closed at once or its first message did not parse (gRPC does not
    // tell the two apart); both break the protocol.
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "start: the first InboxRequest must be start (none was received, or it "
                        "was not a valid caseway.v1.InboxRequest)");
  }
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
        reader_done = true;
        return;
      }
      if (req.ack().inbox_seqs_size() > kMaxAcksPerMessage) {
        absl::MutexLock lock(&mu);
        reader_error = absl::InvalidArgumentError(
            absl::StrCat("ack.inbox_seqs: at most ", kMaxAcksPerMessage, " per message"));
        reader_done = true;
        return;
      }
      std::vector<uint64_t> seqs(req.ack().inbox_seqs().begin(), req.ack().inbox_seqs().end());
      absl::Status s = store_->AckInbox(seqs);
      absl::MutexLock lock(&mu);
      if (!s.ok()) {
        reader_error = s;
        reader_done = true;
        return;
      }
      for (uint64_t seq : seqs) outstanding.erase(seq);
    }
    absl::MutexLock lock(&mu);
    reader_done = true;
  });

  absl::Status result;
  uint64_t last_sent = 0;
  bool sent_caught_up = false;
  const std::string serial = authz_->CallerSerial(*ctx);
  uint64_t revocation_generation = authz_->RevocationGeneration();
  while (result.ok()) {
    // The revocation lists changed: a revoked caller's stream ends (within one wait, 200 ms).
    if (const uint64_t g = authz_->RevocationGeneration(); g != revocation_generation) {
      revocation_generation = g;
      if (authz_->Revoked(serial)) {
        result = absl::UnauthenticatedError(absl::StrCat("certificate ", serial, " is revoked"));
        break;
      }
    }
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
  if (!result.ok()) {
    // Unblock the reader if it still waits for a message; a reader that ended on its own (an
    // error of the client's) must not be cancelled, or the client sees CANCELLED instead.
    bool reader_ended;
    {
      absl::MutexLock lock(&mu);
      reader_ended = reader_done;
    }
    if (!reader_ended) ctx->TryCancel();
  }
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
