// PeerExchange.Query: a peer's question about a case, answered with the notices it is a party to.
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <atomic>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/fault.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/proto_bytes.h"
#include "common/refusal.h"
#include "common/validation.h"
#include "server/exchange/peer_exchange_service.h"

namespace caseway::server {

namespace v1 = caseway::v1;
using common::Log;
using common::LogLevel;
using common::ToGrpcStatus;
using google::protobuf::util::TimeUtil;

namespace {

// The most notices one answer holds (then `truncated`).
constexpr size_t kMaxAnswerNotices = 1000;
// The most queries answered at once, from all peers together (each reads and signs).
constexpr int kMaxQueriesInFlight = 8;

}  // namespace

void PeerExchangeService::AddUnaryMethods(AuthorizedFirst* unary) {
  unary->Add("/caseway.v1.PeerExchange/Query", Rpc::kQuery, this, &PeerExchangeService::Query);
  unary->Add("/caseway.v1.PeerExchange/GetPeerView", Rpc::kPeerView, this,
             &PeerExchangeService::GetPeerView);
}

grpc::Status PeerExchangeService::Query(grpc::ServerContext* ctx, const v1::QueryRequest* req,
                                        v1::QueryResponse* resp) {
  auto id = authz_->Check(*ctx, Rpc::kQuery);
  if (!id.ok()) return ToGrpcStatus(id.status());
  if (shutting_down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "node shutting down");
  // A node asks as its jurisdiction, a department as department/<jurisdiction>/<name>.
  const std::string asker = id->Party();
  if (req->asker() != asker) {
    return ToGrpcStatus(common::Refusal(
        absl::StatusCode::kPermissionDenied, "NOT_ASKER",
        absl::StrCat("asker: ", id->ToString(), " may ask only as ", asker)));
  }
  // A department reads only the kinds the sharing policy grants it (docs/privacy.md).
  const common::SharingPolicy* sharing = sharing_;
  const bool department = id->role == common::Role::kDepartment;
  std::set<std::string> granted;
  if (department) {
    if (sharing != nullptr) granted = sharing->GrantedKinds(asker);
    if (granted.empty()) {
      common::LogLimited(LogLevel::kWarn, "remote query refused: no grant", {{"party", asker}});
      return ToGrpcStatus(common::Refusal(
          absl::StatusCode::kPermissionDenied, "NOT_GRANTED",
          absl::StrCat(id->ToString(), " is granted nothing by this node's sharing policy "
                                       "(sharing_policy_file, docs/privacy.md)")));
    }
  }
  std::vector<common::Violation> bad;
  if (req->nonce().size() < 16 || req->nonce().size() > 64) {
    bad.push_back({"nonce", "16..64 random bytes required"});
  }
  const bool feed = req->has_after();
  if (feed && !department) {
    bad.push_back({"after", "only a department follows a node's feed; a node subscribes to the "
                            "channel addressed to it"});
  } else if (absl::Status key =
                 feed ? absl::OkStatus()
                      : common::ValidateCaseKey("", req->case_id(), req->id_number(), true);
             !key.ok()) {
    for (auto& v : common::ViolationsOf(key)) bad.push_back(std::move(v));
  }
  common::ValidatePurpose("purpose", req->purpose(), &bad);
  if (!bad.empty()) return ToGrpcStatus(common::BadInput("INVALID_REQUEST", bad));
  if (!query_rate_.Take(asker)) {
    common::LogLimited(LogLevel::kWarn, "remote query refused: rate limit",
                       {{"peer", asker}});
    return ToGrpcStatus(common::Refusal(
        absl::StatusCode::kResourceExhausted, "QUERY_RATE_EXCEEDED",
        absl::StrCat(asker, " asked more often than this node answers one peer "
                            "(limits.peer_queries_per_minute); retry in a few seconds")));
  }
  if (absl::Status halted = log_->Halted(); !halted.ok()) return ToGrpcStatus(halted);
  // However many peers ask, a bounded number of answers is prepared at once.
  struct InFlight {
    std::atomic<int>& n;
    ~InFlight() { --n; }
  } in_flight{queries_in_flight_};
  if (++queries_in_flight_ > kMaxQueriesInFlight) {
    return ToGrpcStatus(common::Refusal(
        absl::StatusCode::kResourceExhausted, "QUERIES_BUSY",
        absl::StrCat("this node is answering ", kMaxQueriesInFlight,
                     " queries already; retry in a moment")));
  }

  const bool by_subject = !req->id_number().empty();
  bool more = false;
  // Only the notices the asker is a party to are read into the answer, and only they count
  // towards its limit and `truncated`: a case the asker may not see answers as an unknown one.
  v1::QueryAnswer answer;
  auto found = feed ? cases_->ReadFeed(req->after(), granted, kMaxAnswerNotices,
                                       answer.mutable_next(), &more)
                    : cases_->FindCase(by_subject ? req->id_number() : req->case_id(), by_subject,
                                       kMaxAnswerNotices, &more, department ? "" : asker,
                                       department ? &granted : nullptr);
  if (!found.ok()) return ToGrpcStatus(found.status());
  answer.set_asker(asker);
  answer.set_request_digest(common::Sha256(common::DeterministicBytes(*req)));
  answer.set_truncated(more);
  // The policy removes what the asker may not receive, as it does from what it is sent.
  const bool filtered = sharing != nullptr && sharing->Names(asker);
  if (filtered) answer.set_sharing_policy_digest(sharing->digest());
  const uint64_t acked_by_asker = department ? 0 : channels_->Channel(asker).acked;
  AccessEntry access{id->ToString(), feed ? "feed-read" : "query-answered", req->purpose(), asker};
  const absl::Time now = common::Now();
  uint64_t bytes = 0;
  // A feed's answer that the size limit cuts ends before the first notice left out, so the next
  // read starts there (each role's notices are in position order).
  auto left_out = [&](size_t from) {
    if (!feed) return;
    v1::FeedPosition& next = *answer.mutable_next();
    for (size_t i = from; i < found->size(); ++i) {
      const CaseRecord& r = (*found)[i];
      if (r.role == v1::QueryNotice::ROLE_PUBLISHED) {
        next.set_published(std::min(next.published(), r.position - 1));
      } else {
        next.set_received(std::min(next.received(), r.position - 1));
      }
    }
  };
  for (size_t i = 0; i < found->size(); ++i) {
    CaseRecord& r = (*found)[i];
    // FindCase kept only the asker's: published here to it, received from it, or received from
    // a third node with it among the destinations.
    uint64_t seq = 0;
    bool acknowledged = false;
    if (department) {
      // Not a channel of the department's: no sequence, no delivery state.
    } else if (r.role == v1::QueryNotice::ROLE_PUBLISHED) {
      for (const auto& [dest, s] : r.deliveries) {
        if (dest == asker) seq = s;
      }
      if (seq == 0) continue;
      acknowledged = seq <= acked_by_asker;
    } else {
      seq = r.channel_seq;
      acknowledged = r.consumed;
    }
    // The notice as stored names whose data it is, for the access log, even when the copy sent
    // leaves the identity number out.
    std::string whole;
    if (filtered) {
      v1::Notice n;
      if (!n.ParseFromString(r.bytes)) {
        return grpc::Status(grpc::StatusCode::DATA_LOSS, "a stored notice does not parse");
      }
      std::optional<v1::Notice> copy = sharing->Apply(asker, n);
      if (!copy.has_value()) continue;  // FindCase kept the granted kinds only
      // Test fault: a node that logs the policy but answers with whole notices (what a
      // coordinator's `caseway audit verify` must find).
      if (!common::FaultHits("answer_whole", 1, 1)) {
        whole = std::move(r.bytes);
        r.bytes = common::DeterministicBytes(*copy);
      }
    }
    // A department's answer always holds one notice, however large (at most half of
    // limits.max_message_bytes when published here), so that its feed never stalls on it. A
    // node's answer keeps to the limit: the asker's reply carries the notices three times.
    if ((!department || answer.notices_size() > 0) &&
        bytes + r.bytes.size() > max_answer_bytes_) {
      answer.set_truncated(true);
      left_out(i);
      break;
    }
    v1::QueryNotice& q = *answer.add_notices();
    q.set_notice(r.bytes);
    access.AddBytes(whole.empty() ? r.bytes : whole);
    q.set_role(r.role);
    *q.mutable_stored_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(r.stored_at));
    q.set_seq(seq);
    q.set_acknowledged(acknowledged);
    bytes += r.bytes.size();
    if (department) continue;  // replies are owed between jurisdictions, never to a department
    auto replies = cases_->RepliesOf(r.origin, r.notice_id, now);
    if (!replies.ok()) return ToGrpcStatus(replies.status());
    for (const v1::TodoItem& item : *replies) {
      // Replies owed by this node or by the asker: never what a third party owes.
      if (item.state() != v1::TodoItem::STATE_OPEN) continue;
      if (item.side() == v1::TodoRequest::SIDE_OWED_BY_US) {
        q.add_replies_owed_by(self_);
      } else if (item.peer() == asker) {
        q.add_replies_owed_by(asker);
      }
    }
  }
  const int count = answer.notices_size();
  auto signed_answer = cases_->AnswerQuery(std::move(answer), access,
                                           signatures_.SignerFor(common::kQueryAnswerContext));
  if (!signed_answer.ok()) return ToGrpcStatus(signed_answer.status());
  *resp->mutable_answer() = std::move(*signed_answer);
  // Who asked and how many notices went back; never what was asked about.
  Log(LogLevel::kInfo, "remote query answered",
      {{"peer", asker}, {"by", feed ? "feed" : by_subject ? "id_number" : "case_id"},
       {"notices", absl::StrCat(count)}});
  return grpc::Status::OK;
}

grpc::Status PeerExchangeService::GetPeerView(grpc::ServerContext* ctx,
                                              const v1::GetPeerViewRequest* /*req*/,
                                              v1::PeerView* resp) {
  // Any node of the federation, and only about itself: the identity is the question.
  auto id = authz_->Check(*ctx, Rpc::kPeerView);
  if (!id.ok()) return ToGrpcStatus(id.status());
  auto cursor = inbox_->Cursor(id->jurisdiction);
  if (!cursor.ok()) return ToGrpcStatus(cursor.status());
  resp->set_cursor(*cursor);
  std::string note;
  auto witnessed = log_->Witnessed(id->jurisdiction, &note);
  if (witnessed.ok()) {
    resp->set_witnessed_size(witnessed->size);
    resp->set_witnessed_note(std::move(note));
  } else if (!absl::IsNotFound(witnessed.status())) {
    return ToGrpcStatus(witnessed.status());
  }
  return grpc::Status::OK;
}

}  // namespace caseway::server
