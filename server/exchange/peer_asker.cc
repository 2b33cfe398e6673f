#include "server/exchange/peer_asker.h"

#include <google/protobuf/util/time_util.h>
#include <openssl/rand.h>

#include "absl/strings/str_cat.h"
#include "common/log_entry.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/proto_bytes.h"
#include "common/refusal.h"
#include "common/signing.h"
#include "common/status_macros.h"

namespace caseway::server {

namespace v1 = caseway::v1;
using google::protobuf::util::TimeUtil;

PeerAsker::PeerAsker(const v1::NodeConfig& config, std::shared_ptr<grpc::ChannelCredentials> creds,
                     const StoreParts& store, Signatures signatures)
    : self_(config.jurisdiction()),
      cases_(store.cases),
      log_(store.log),
      signatures_(std::move(signatures)) {
  for (const auto& peer : config.peers()) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(static_cast<int>(config.limits().max_message_bytes()));
    channels_[peer.jurisdiction()] = common::PeerChannel::ForPeer(config, peer.address(), creds, args);
  }
}

absl::StatusOr<v1::QueryPeerResponse> PeerAsker::Ask(const v1::QueryPeerRequest& req,
                                                     const std::string& who) {
  const std::string& peer = req.peer();
  auto channel = channels_.find(peer);
  if (channel == channels_.end()) {
    return common::BadInput("NOT_A_PEER",
                            {{"peer", absl::StrCat(peer.substr(0, 64), " is not a peer of ", self_,
                                                   " (its configuration lists its peers)")}});
  }
  RETURN_IF_ERROR(log_->Halted());
  v1::QueryRequest q;
  q.set_asker(self_);
  unsigned char nonce[32];
  if (RAND_bytes(nonce, sizeof nonce) != 1) return absl::InternalError("no random bytes for the nonce");
  q.set_nonce(nonce, sizeof nonce);
  if (!req.id_number().empty()) {
    q.set_id_number(req.id_number());
  } else {
    q.set_case_id(req.case_id());
  }
  q.set_purpose(req.purpose());
  *q.mutable_asked_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(common::Now()));
  const std::string request_digest = common::Sha256(common::DeterministicBytes(q));

  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kAnswerDeadline));
  v1::QueryResponse resp;
  auto stub = v1::PeerExchange::NewStub(channel->second->Get());
  const grpc::Status answered = stub->Query(&ctx, q, &resp);
  channel->second->Saw(answered.error_code());
  if (absl::Status s = common::FromGrpcStatus(answered); !s.ok()) {
    // The peer's refusal keeps its code and details; the message says who refused.
    absl::Status out(s.code(), absl::StrCat("peer ", peer, ": ", s.message()));
    s.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
      out.SetPayload(url, payload);
    });
    return out;
  }
  const v1::Signed& signed_answer = resp.answer();
  auto fail = [&](absl::string_view why) {
    common::Log(common::LogLevel::kWarn, "remote query: the peer's answer does not verify",
                {{"peer", peer}, {"why", std::string(why)}});
    return absl::DataLossError(absl::StrCat("peer ", peer, "'s answer does not verify: ", why));
  };
  if (signed_answer.signer() != peer) return fail("signed by another jurisdiction");
  v1::QueryPeerResponse out;
  v1::QueryAnswer& answer = *out.mutable_parsed();
  if (!answer.ParseFromString(signed_answer.message())) return fail("not a QueryAnswer");
  if (signatures_.enabled()) {
    const auto directory = signatures_.directory();
    if (!directory->Listed(peer).ok()) return fail("the peer is not in the federation directory");
    // By the peer's key valid when it says it answered.
    if (!directory->Verify(peer, common::TimeOf(answer.answered_at()), common::kQueryAnswerContext,
                           signed_answer.message(), signed_answer.signature())
             .ok()) {
      return fail("bad signature");
    }
  }
  if (answer.answerer() != peer || answer.asker() != self_) return fail("not addressed to this node");
  if (answer.request_digest() != request_digest) return fail("it answers another question");
  AccessEntry access{who, "query-received", req.purpose(), peer};
  for (const v1::QueryNotice& qn : answer.notices()) {
    v1::Notice* n = out.add_notices();
    if (!n->ParseFromString(qn.notice())) return fail("a notice does not parse");
    access.Add(*n);
  }
  // The answer reaches the office only once its read is in the access log.
  ASSIGN_OR_RETURN(uint64_t index, cases_->RecordQueryAsked(peer, answer, signed_answer, access));
  out.set_log_index(index);
  *out.mutable_answer() = signed_answer;
  return out;
}

}  // namespace caseway::server
