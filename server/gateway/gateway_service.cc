#include "server/gateway/gateway_service.h"

#include <grpcpp/impl/codegen/proto_utils.h>
#include <malloc.h>

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/case_events.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/digest.h"
#include "common/fault.h"
#include "common/grpc_status.h"
#include "common/thread_name.h"
#include "common/log.h"
#include "common/proto_bytes.h"
#include "common/refusal.h"
#include "common/status_macros.h"
#include "common/tls.h"
#include "common/validation.h"
#include "server/error_policy.h"

namespace caseway::server {

using common::ToGrpcStatus;

namespace {

// FindUnknownFields says whether `m`, or a message below it, carries fields this version of the
// contract does not know (they would be stored and forwarded unvalidated), and sets `path` to the
// first such message's field path from `m` ("" for `m` itself). It looks only at the message
// fields that are set, and builds the path only for what it finds: every published notice passes
// through here.
bool FindUnknownFields(const google::protobuf::Message& m, std::string* path) {
  const google::protobuf::Reflection* r = m.GetReflection();
  if (!r->GetUnknownFields(m).empty()) return true;
  auto found = [path](const std::string& where) {  // prefixes the path found below
    *path = path->empty() ? where : absl::StrCat(where, ".", *path);
    return true;
  };
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  for (int k = 0; k < d->field_count(); ++k) {
    const google::protobuf::FieldDescriptor* f = d->field(k);
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(m, f); ++i) {
        if (FindUnknownFields(r->GetRepeatedMessage(m, f, i), path)) {
          return found(absl::StrCat(f->name(), "[", i, "]"));
        }
      }
    } else if (r->HasField(m, f) && FindUnknownFields(r->GetMessage(m, f), path)) {
      return found(f->name());
    }
  }
  return false;
}

// Refuse: a typed refusal of one field (docs/errors.md): INVALID_ARGUMENT with a BadRequest, any
// other code with the field in the ErrorInfo's metadata.
absl::Status Refuse(absl::StatusCode code, absl::string_view reason, const std::string& field,
                    const std::string& rule) {
  if (code == absl::StatusCode::kInvalidArgument) return common::BadInput(reason, {{field, rule}});
  return common::Refusal(code, reason, absl::StrCat(field, ": ", rule), {}, {{"field", field}});
}

}  // namespace

GatewayService::GatewayService(const v1::NodeConfig& config, const StoreParts& store,
                               const Authorizer* authz, SubscriptionStatusFn subscriptions,
                               OpenStreamsFn open_streams, PeerAsker* asker,
                               common::Signatures signatures)
    : jurisdiction_(config.jurisdiction()),
      cert_file_(config.tls().cert_file()),
      key_file_(config.tls().key_file()),
      max_batch_notices_(config.limits().max_batch_notices()),
      max_notice_bytes_(config.limits().max_notice_bytes()),
      max_case_bytes_(config.limits().max_message_bytes() == 0
                          ? uint64_t{1} << 20
                          : config.limits().max_message_bytes() / 4),
      channels_(store.channels),
      inbox_store_(store.inbox),
      cases_(store.cases),
      log_(store.log),
      access_(store.access),
      policy_(*store.policy),
      sharing_(store.sharing),
      asker_(asker),
      signatures_(std::move(signatures)),
      authz_(authz),
      subscriptions_(std::move(subscriptions)),
      open_streams_(std::move(open_streams)),
      inbox_(store.inbox, store.access, authz) {
  for (const auto& peer : config.peers()) peers_.insert(peer.jurisdiction());
  ticker_ = std::thread([this] {
    common::NameThisThread("cw-gw-ticker");
    uint64_t generation = authz_->RevocationGeneration();
    absl::MutexLock lock(&ticker_mu_);
    while (!stop_ticker_) {
      ticker_mu_.AwaitWithTimeout(absl::Condition(&stop_ticker_), absl::Milliseconds(200));
      if (const uint64_t g = authz_->RevocationGeneration(); g != generation) {
        generation = g;
        inbox_.RevocationsChanged();
      }
      inbox_.Tick();
    }
  });
}

absl::StatusOr<std::vector<PreparedNotice>> GatewayService::Prepare(
    google::protobuf::RepeatedPtrField<v1::Notice>* mutable_notices, bool batch) const {
  const google::protobuf::RepeatedPtrField<v1::Notice>& notices = *mutable_notices;
  common::NoticeRules rules;
  rules.self_jurisdiction = jurisdiction_;
  rules.peers = peers_;
  rules.now = common::Now();
  std::vector<PreparedNotice> out;
  out.reserve(notices.size());
  std::set<std::string> ids;
  std::set<std::string> ids_before;
  // First every notice's fields: a batch is refused once, naming every bad field of every notice.
  std::vector<common::Violation> violations;
  std::string reason;
  std::vector<std::vector<std::string>> warnings(notices.size());
  for (int i = 0; i < notices.size(); ++i) {
    const std::string path = batch ? absl::StrCat("notices[", i, "].") : "notice.";
    auto checked = common::ValidateNotice(notices[i], rules, path);
    auto add = [&](absl::string_view why, std::vector<common::Violation> more) {
      if (violations.empty()) reason = std::string(why);
      for (auto& v : more) violations.push_back(std::move(v));
    };
    if (!checked.ok()) {
      add(common::ReasonOf(checked.status()), common::ViolationsOf(checked.status()));
    } else {
      warnings[i] = std::move(*checked);
    }
    if (batch && !ids.insert(notices[i].notice_id()).second) {
      add("DUPLICATE_IN_BATCH",
          {{absl::StrCat(path, "notice_id"),
            "appears more than once in the batch (each notice once; a batch is stored whole or "
            "not at all)"}});
    }
    if (std::string unknown; FindUnknownFields(notices[i], &unknown)) {
      add("UNKNOWN_FIELD", {{unknown.empty() ? path.substr(0, path.size() - 1)
                                             : absl::StrCat(path, unknown),
                             "unknown field (not in caseway.v1; upgrade the node or drop it)"}});
    }
  }
  if (!violations.empty()) return common::BadInput(reason, violations);
  for (int i = 0; i < notices.size(); ++i) {
    const std::string path = batch ? absl::StrCat("notices[", i, "].") : "notice.";
    v1::Notice& n = (*mutable_notices)[i];  // completed in place: the request is not used after
    n.set_origin(jurisdiction_);
    PreparedNotice& p = out.emplace_back();
    p.notice_id = n.notice_id();
    p.destinations.assign(n.destinations().begin(), n.destinations().end());
    // What the node completes is not part of what a retry is compared by: a retry on another
    // day would get another reply_due.
    std::optional<absl::Time> due;
    if (!n.has_reply_due()) due = policy_.ReplyDue(n, rules.now);
    if (due || (!n.in_reply_to().empty() && n.in_reply_to_origin().empty())) {
      p.request_digest = common::Sha256(common::DeterministicBytes(n));
    }
    RETURN_IF_ERROR(ResolveReply(n, path, ids_before));
    if (due) {
      *n.mutable_reply_due() = google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
          absl::ToUnixMicros(*due));
    }
    ids_before.insert(n.notice_id());
    p.facts = common::FactsOf(n);
    p.bytes = common::DeterministicBytes(n);
    if (p.bytes.size() > max_notice_bytes_) {
      return Refuse(absl::StatusCode::kInvalidArgument, "NOTICE_TOO_LARGE",
                    batch ? absl::StrCat("notices[", i, "]") : "notice",
                    absl::StrCat(p.bytes.size(), " bytes serialized, at most ", max_notice_bytes_,
                                 " (limits.max_notice_bytes, so that it fits in a delivery batch)"));
    }
    p.digest = common::Sha256(p.bytes);
    p.warnings = std::move(warnings[i]);
    // The sharing policy: each destination it names receives its own copy, without the fields
    // the policy does not grant it (docs/privacy.md). Stored and logged with the notice.
    if (const common::SharingPolicy* sharing = sharing_; sharing != nullptr) {
      for (size_t d = 0; d < p.destinations.size(); ++d) {
        if (!sharing->Names(p.destinations[d])) continue;
        p.copies.resize(p.destinations.size());
        p.sharing_policy_digest = sharing->digest();
        std::optional<v1::Notice> copy = sharing->Apply(p.destinations[d], n);
        std::string bytes = common::DeterministicBytes(*copy);  // a peer always gets one
        // Test fault: a node that logs the policy but sends the whole notice (what a coordinator's
        // `caseway audit verify` must find).
        if (common::FaultHits("share_whole", 1, 1)) bytes = p.bytes;
        if (bytes != p.bytes) p.copies[d] = std::move(bytes);
      }
    }
  }
  return out;
}

absl::StatusOr<std::vector<v1::PublishResult>> GatewayService::ValidateOnly(
    const std::vector<PreparedNotice>& prepared, bool batch) const {
  std::vector<v1::PublishResult> out;
  for (size_t i = 0; i < prepared.size(); ++i) {
    const PreparedNotice& p = prepared[i];
    v1::PublishResult& r = out.emplace_back();
    r.set_notice_id(p.notice_id);
    r.set_digest(p.digest);
    for (const auto& w : p.warnings) r.add_warnings(w);
    ASSIGN_OR_RETURN(std::optional<std::string> stored, channels_->StoredDigest(p.notice_id));
    if (!stored) continue;
    if (*stored != (p.request_digest.empty() ? p.digest : p.request_digest)) {
      return ContentConflict(batch ? absl::StrCat("notices[", i, "].") : "notice.", p.notice_id);
    }
    r.set_duplicate(true);
  }
  return out;
}

absl::Status GatewayService::ResolveReply(v1::Notice& n, const std::string& path,
                                          const std::set<std::string>& earlier) const {
  if (n.in_reply_to().empty()) return absl::OkStatus();
  const std::string& id = n.in_reply_to();
  const std::string& given = n.in_reply_to_origin();
  auto published = [&]() -> absl::StatusOr<bool> {
    if (earlier.count(id) > 0) return true;
    return channels_->Published(id);
  };
  auto refuse = [&](absl::StatusCode code, absl::string_view reason, absl::string_view field,
                    std::string rule) {
    return Refuse(code, reason, absl::StrCat(path, field), std::move(rule));
  };
  constexpr auto kPrecondition = absl::StatusCode::kFailedPrecondition;
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  if (n.has_void_() || n.revision() > 0) {
    const char* what = n.has_void_() ? "a void" : "a correction (revision > 0)";
    if (!given.empty() && given != jurisdiction_) {
      return refuse(kPrecondition, "NOT_OWN_NOTICE", "in_reply_to_origin",
                    absl::StrCat(given, " is not this node (", jurisdiction_, "): ", what,
                                 " names one of this node's own notices"));
    }
    ASSIGN_OR_RETURN(bool known, published());
    if (!known) {
      return refuse(kPrecondition, "REPLY_TARGET_UNKNOWN", "in_reply_to",
                    absl::StrCat("no notice ", common::Echo(id), " was published by this node (",
                                 what, " names one of its own notices)"));
    }
    n.set_in_reply_to_origin(jurisdiction_);
    return absl::OkStatus();
  }
  // A reply (a feedback, or another kind that answers): to a notice received from a peer, or,
  // except for a feedback, to one of this node's own notices.
  const bool feedback = n.has_feedback();
  std::string target = given;
  if (target == jurisdiction_ || target.empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> origins, cases_->ReceivedFrom(id));
    if (target.empty() && origins.size() == 1) {
      target = origins[0];
    } else if (target.empty() && origins.size() > 1) {
      return refuse(kInvalid, "REPLY_TARGET_AMBIGUOUS", "in_reply_to_origin",
                    absl::StrCat("required: notice ", common::Echo(id), " was received from ",
                                 absl::StrJoin(origins, " and "),
                                 " (notice ids are unique per origin only)"));
    } else if (feedback) {
      return refuse(kPrecondition, "REPLY_TARGET_UNKNOWN", "in_reply_to",
                    absl::StrCat("no notice ", common::Echo(id),
                                 " was received from a peer (a feedback answers a received notice)"));
    } else {
      ASSIGN_OR_RETURN(bool known, published());
      if (!known) {
        return refuse(kPrecondition, "REPLY_TARGET_UNKNOWN", "in_reply_to",
                      absl::StrCat("no notice ", common::Echo(id),
                                   " was received from a peer or published by this node"));
      }
      target = jurisdiction_;
    }
  } else {
    ASSIGN_OR_RETURN(std::vector<std::string> origins, cases_->ReceivedFrom(id));
    if (std::find(origins.begin(), origins.end(), target) == origins.end()) {
      return refuse(kPrecondition, "REPLY_TARGET_UNKNOWN", "in_reply_to",
                    absl::StrCat("no notice ", common::Echo(id), " was received from ", target));
    }
  }
  if (feedback && std::find(n.destinations().begin(), n.destinations().end(), target) ==
                      n.destinations().end()) {
    return refuse(kInvalid, "REPLY_NOT_ADDRESSED", "destinations",
                  absl::StrCat("must include ", target, ", the origin of the notice answered"));
  }
  n.set_in_reply_to_origin(target);
  return absl::OkStatus();
}

void GatewayService::AddUnaryMethods(AuthorizedFirst* unary) {
  unary->Add("/caseway.v1.Gateway/Status", Rpc::kStatus, this, &GatewayService::Status);
  unary->Add("/caseway.v1.Gateway/Todo", Rpc::kTodo, this, &GatewayService::Todo);
  unary->Add("/caseway.v1.Gateway/QueryPeer", Rpc::kQueryPeer, this, &GatewayService::QueryPeer);
  unary->Add("/caseway.v1.Gateway/Case", Rpc::kCase, this, &GatewayService::Case);
  unary->Add("/caseway.v1.Gateway/AccessLog", Rpc::kAccessLog, this, &GatewayService::AccessLog);
}

void GatewayService::AddStreamMethods(RawStreams* streams) {
  for (auto [path, rpc, handler] : {std::make_tuple("/caseway.v1.Gateway/Publish", Rpc::kPublish,
                                                    &publish_),
                                    std::make_tuple("/caseway.v1.Gateway/PublishBatch",
                                                    Rpc::kPublishBatch, &publish_batch_)}) {
    streams->Add(path, [this, rpc = rpc, handler = handler](
                           grpc::GenericCallbackServerContext* ctx) -> RawStreams::Reactor* {
      // The caller is checked before anything is read or held for it.
      auto id = authz_->Check(*ctx, rpc);
      if (!id.ok()) return new RefusedStream<grpc::ByteBuffer, grpc::ByteBuffer>(id.status());
      return new PublishCall(ctx, &read_gate_, id->ToString(), handler);
    });
  }
}

bool GatewayService::PublishParsed(PublishCall* call, const grpc::ByteBuffer& request) {
  v1::PublishRequest req;
  if (absl::Status s = ParseRequest(request, &req); !s.ok()) {
    call->Reply(ToGrpcStatus(s));
    return false;
  }
  if (!req.has_notice()) {
    call->Reply(ToGrpcStatus(common::BadInput("INVALID_NOTICE", {{"notice", "required"}})));
    return false;
  }
  google::protobuf::RepeatedPtrField<v1::Notice> one;
  one.Add()->Swap(req.mutable_notice());
  auto prepared = Prepare(&one, /*batch=*/false);
  if (!prepared.ok()) {
    call->Reply(ToGrpcStatus(prepared.status()));
    return false;
  }
  if (req.validate_only()) {
    auto results = ValidateOnly(*prepared, /*batch=*/false);
    if (!results.ok()) {
      call->Reply(ToGrpcStatus(results.status()));
      return false;
    }
    call->ReplyWith((*results)[0]);
    return true;
  }
  channels_->PublishAsync(
      std::move(*prepared),
      [call, id = one[0].notice_id()](
          absl::StatusOr<std::vector<v1::PublishResult>> results) {
        if (results.ok()) {
          call->ReplyWith((*results)[0]);
          return;
        }
        absl::Status s = results.status();
        if (s.code() == absl::StatusCode::kAlreadyExists) {
          // The store names batch positions; a single publish names the notice.
          s = ContentConflict("notice.", id);
        } else {
          common::Log(common::LogLevel::kError, "publish failed", {{"status", s.ToString()}});
        }
        call->Reply(ToGrpcStatus(s));
      });
  return true;
}

bool GatewayService::PublishBatchParsed(PublishCall* call, const grpc::ByteBuffer& request) {
  v1::PublishBatchRequest req;
  if (absl::Status s = ParseRequest(request, &req); !s.ok()) {
    call->Reply(ToGrpcStatus(s));
    return false;
  }
  if (req.notices_size() == 0) {
    call->Reply(
        ToGrpcStatus(common::BadInput("INVALID_NOTICE", {{"notices", "at least one required"}})));
    return false;
  }
  if (static_cast<uint32_t>(req.notices_size()) > max_batch_notices_) {
    call->Reply(ToGrpcStatus(common::Refusal(
        absl::StatusCode::kResourceExhausted, "BATCH_TOO_LARGE",
        absl::StrCat("notices: at most ", max_batch_notices_,
                     " per batch (limits.max_batch_notices)"),
        {}, {{"max_batch_notices", absl::StrCat(max_batch_notices_)}})));
    return false;
  }
  auto prepared = Prepare(req.mutable_notices(), /*batch=*/true);
  if (!prepared.ok()) {
    call->Reply(ToGrpcStatus(prepared.status()));
    return false;
  }
  if (req.validate_only()) {
    auto results = ValidateOnly(*prepared, /*batch=*/true);
    if (!results.ok()) {
      call->Reply(ToGrpcStatus(results.status()));
      return false;
    }
    v1::PublishBatchResponse resp;
    for (auto& r : *results) *resp.add_results() = std::move(r);
    call->ReplyWith(resp);
    return true;
  }
  channels_->PublishAsync(std::move(*prepared),
                       [call](absl::StatusOr<std::vector<v1::PublishResult>> results) {
                         if (!results.ok()) {
                           if (results.status().code() != absl::StatusCode::kAlreadyExists) {
                             common::Log(common::LogLevel::kError, "publish batch failed",
                                         {{"status", results.status().ToString()}});
                           }
                           call->Reply(ToGrpcStatus(results.status()));
                           return;
                         }
                         v1::PublishBatchResponse resp;
                         for (auto& r : *results) *resp.add_results() = std::move(r);
                         call->ReplyWith(resp);
                       });
  return true;
}

grpc::ServerBidiReactor<v1::InboxRequest, v1::InboxResponse>* GatewayService::Inbox(
    grpc::CallbackServerContext* ctx) {
  return inbox_.Start(ctx);
}

void GatewayService::Shutdown() {
  inbox_.Shutdown();
}

GatewayService::~GatewayService() {
  {
    absl::MutexLock lock(&ticker_mu_);
    stop_ticker_ = true;
  }
  if (ticker_.joinable()) ticker_.join();
}

grpc::Status GatewayService::Status(grpc::ServerContext* ctx, const v1::StatusRequest* req,
                                    v1::StatusResponse* resp) {
  if (auto id = authz_->Check(*ctx, Rpc::kStatus); !id.ok()) return ToGrpcStatus(id.status());
  auto snapshot = Snapshot();
  if (!snapshot.ok()) return ToGrpcStatus(snapshot.status());
  *resp = std::move(*snapshot);
  return grpc::Status::OK;
}

absl::StatusOr<v1::StatusResponse> GatewayService::Snapshot() const {
  auto stamp = [](absl::Time t) {
    return google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
  };
  v1::StatusResponse resp;
  const absl::Time now = common::Now();
  *resp.mutable_now() = stamp(now);
  resp.set_jurisdiction(jurisdiction_);
  std::map<std::string, ChannelState> channels = channels_->Channels();
  for (const auto& peer : peers_) channels.emplace(peer, ChannelState{});
  ASSIGN_OR_RETURN(const auto oldest, channels_->OldestUnacked());
  for (const auto& [dest, state] : channels) {
    auto* c = resp.add_channels();
    c->set_destination(dest);
    c->set_head(state.head);
    c->set_acked(state.acked);
    c->set_open_streams(open_streams_(dest));
    if (auto it = oldest.find(dest); it != oldest.end()) {
      *c->mutable_oldest_unacked_at() = stamp(it->second);
    }
  }
  for (auto& sub : subscriptions_()) *resp.add_subscriptions() = std::move(sub);
  ASSIGN_OR_RETURN(const InboxStore::InboxSummary inbox, inbox_store_->Inbox());
  resp.set_inbox_total(inbox.total);
  resp.set_inbox_unacked(inbox.unacked);
  if (inbox.oldest_unacked) *resp.mutable_inbox_oldest_unacked_at() = stamp(*inbox.oldest_unacked);
  if (absl::Status halted = log_->Halted(); !halted.ok()) {
    resp.set_halted(std::string(halted.message()));
  }
  resp.set_policy_version(policy_.proto().version());
  resp.set_policy_digest(policy_.DigestHex());
  if (auto pem = common::ReadFile(cert_file_); pem.ok()) {
    if (auto window = common::CertificateValidity(*pem); window.ok()) {
      *resp.mutable_certificate_not_after() = stamp(window->not_after);
    }
    auto key = common::ReadFile(key_file_);
    absl::Status usable = key.ok() ? common::KeyMatchesCertificate(*pem, *key) : key.status();
    if (!usable.ok()) {
      resp.set_certificate_problem(absl::StrCat(
          "tls.key_file: ", usable.message(), "; the node serves the certificate it loaded before"));
    }
  } else {
    resp.set_certificate_problem(std::string(pem.status().message()));
  }
  if (signatures_.enabled()) {
    const std::string current = signatures_.key()->PublicKey();
    if (auto keys = signatures_.directory()->Keys(jurisdiction_); keys.ok()) {
      for (const auto& k : *keys) {
        if (k.public_key == current && k.until != absl::InfiniteFuture()) {
          *resp.mutable_signing_key_not_after() = stamp(k.until);
        }
      }
    }
  }
  return resp;
}

grpc::Status GatewayService::Todo(grpc::ServerContext* ctx, const v1::TodoRequest* req,
                                  v1::TodoResponse* resp) {
  if (auto id = authz_->Check(*ctx, Rpc::kTodo); !id.ok()) return ToGrpcStatus(id.status());
  std::vector<common::Violation> bad;
  if (!v1::TodoRequest::Side_IsValid(req->side())) bad.push_back({"side", "not a TodoRequest.Side"});
  if (!v1::Priority_IsValid(req->priority())) bad.push_back({"priority", "not a Priority"});
  if (req->limit() > 10000) {
    bad.push_back({"limit", absl::StrCat(req->limit(), " is not in 0..10000")});
  }
  if (req->kind().size() > 64) bad.push_back({"kind", "at most 64 characters"});
  if (req->peer().size() > 12) bad.push_back({"peer", "a region code of at most 12 digits"});
  if (!bad.empty()) return ToGrpcStatus(common::BadInput("INVALID_REQUEST", bad));
  auto todo = cases_->Todo(*req, common::Now());
  if (!todo.ok()) return ToGrpcStatus(todo.status());
  *resp = std::move(*todo);
  return grpc::Status::OK;
}

}  // namespace caseway::server

namespace caseway::server {

grpc::Status GatewayService::QueryPeer(grpc::ServerContext* ctx, const v1::QueryPeerRequest* req,
                                       v1::QueryPeerResponse* resp) {
  auto id = authz_->Check(*ctx, Rpc::kQueryPeer);
  if (!id.ok()) return ToGrpcStatus(id.status());
  if (asker_ == nullptr) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "remote queries are off");
  std::vector<common::Violation> bad;
  if (req->peer().empty()) bad.push_back({"peer", "required"});
  if (absl::Status key = common::ValidateCaseKey("", req->case_id(), req->id_number(), true);
      !key.ok()) {
    for (auto& v : common::ViolationsOf(key)) bad.push_back(std::move(v));
  }
  common::ValidatePurpose("purpose", req->purpose(), &bad);
  if (!bad.empty()) return ToGrpcStatus(common::BadInput("INVALID_REQUEST", bad));
  auto answer = asker_->Ask(*req, id->ToString());
  if (!answer.ok()) return ToGrpcStatus(answer.status());
  *resp = std::move(*answer);
  return grpc::Status::OK;
}

grpc::Status GatewayService::Case(grpc::ServerContext* ctx, const v1::CaseRequest* req,
                                  v1::CaseResponse* resp) {
  auto id = authz_->Check(*ctx, Rpc::kCase);
  if (!id.ok()) return ToGrpcStatus(id.status());
  {
    std::vector<common::Violation> bad;
    if (absl::Status key = common::ValidateCaseKey("", req->case_id(), "", false); !key.ok()) {
      bad = common::ViolationsOf(key);
    }
    common::ValidatePurpose("purpose", req->purpose(), &bad);
    if (!bad.empty()) return ToGrpcStatus(common::BadInput("INVALID_REQUEST", bad));
  }
  constexpr size_t kMaxEvents = 10000;
  bool more = false;
  auto found = cases_->FindCase(req->case_id(), false, kMaxEvents, &more);
  if (!found.ok()) return ToGrpcStatus(found.status());
  const absl::Time now = common::Now();
  const std::map<std::string, ChannelState> channels = channels_->Channels();
  uint64_t bytes = 0;
  for (const CaseRecord& r : *found) {
    // The response must fit in one message: notice bytes up to a quarter of the limit.
    if (bytes + r.bytes.size() > max_case_bytes_) {
      more = true;
      break;
    }
    bytes += r.bytes.size();
    v1::CaseEvent& e = *resp->add_events();
    e.set_role(r.role);
    e.set_holder(jurisdiction_);
    if (!e.mutable_notice()->ParseFromString(r.bytes)) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS, "a stored notice does not parse");
    }
    e.set_digest(common::Sha256(r.bytes));
    *e.mutable_stored_at() =
        google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(r.stored_at));
    for (const auto& [dest, seq] : r.deliveries) {
      v1::CaseEvent::Delivery& d = *e.add_deliveries();
      d.set_destination(dest);
      d.set_seq(seq);
      auto c = channels.find(dest);
      d.set_receipted(c != channels.end() && seq <= c->second.acked);
    }
    e.set_channel_seq(r.channel_seq);
    e.set_consumed(r.consumed);
    auto replies = cases_->RepliesOf(r.origin, r.notice_id, now);
    if (!replies.ok()) return ToGrpcStatus(replies.status());
    for (auto& item : *replies) *e.add_replies() = std::move(item);
  }
  common::SortCaseEvents(resp->mutable_events());
  resp->set_truncated(more);
  // The timeline goes out only once its read is in the access log.
  AccessEntry access{id->ToString(), "case", req->purpose(), ""};
  for (const v1::CaseEvent& e : resp->events()) access.Add(e.notice());
  if (absl::Status s = access_->RecordAccess(access); !s.ok()) {
    resp->Clear();
    return ToGrpcStatus(s);
  }
  return grpc::Status::OK;
}

grpc::Status GatewayService::AccessLog(grpc::ServerContext* ctx, const v1::AccessLogRequest* req,
                                       v1::AccessLogResponse* resp) {
  auto id = authz_->Check(*ctx, Rpc::kAccessLog);
  if (!id.ok()) return ToGrpcStatus(id.status());
  std::vector<common::Violation> bad;
  if (req->id_number().empty()) {
    bad.push_back({"id_number", "required: the person's resident identity number"});
  } else if (absl::Status key = common::ValidateCaseKey("", "", req->id_number(), true); !key.ok()) {
    bad = common::ViolationsOf(key);
  }
  common::ValidatePurpose("purpose", req->purpose(), &bad);
  if (req->limit() > 1000) bad.push_back({"limit", "at most 1000 (0: 100)"});
  if (!bad.empty()) return ToGrpcStatus(common::BadInput("INVALID_REQUEST", bad));
  // Asking who read a person's data is itself a read about that person.
  AccessEntry access{id->ToString(), "access-log", req->purpose(), ""};
  access.id_numbers.insert(req->id_number());
  if (absl::Status s = access_->RecordAccess(access); !s.ok()) return ToGrpcStatus(s);
  const uint32_t limit = req->limit() == 0 ? 100 : req->limit();
  auto records = access_->ReadAccess(req->id_number(), req->after(), limit + 1);
  if (!records.ok()) return ToGrpcStatus(records.status());
  const bool more = records->size() > limit;
  if (more) records->pop_back();
  for (auto& r : *records) *resp->add_records() = std::move(r);
  resp->set_next(more ? resp->records(resp->records_size() - 1).id() : 0);
  return grpc::Status::OK;
}

}  // namespace caseway::server
