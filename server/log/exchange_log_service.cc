#include "server/log/exchange_log_service.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/refusal.h"
#include "common/sharing.h"
#include "common/signing.h"
#include "common/validation.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;
using common::ToGrpcStatus;
using google::protobuf::util::TimeUtil;

namespace {

constexpr uint64_t kMaxEntriesPerCall = 1000;
constexpr size_t kMaxResponseBytes = 2 << 20;  // well under the 4 MiB default receive limit

grpc::Status Disabled() {
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                      "the exchange log is disabled on this node");
}

}  // namespace

ExchangeLogService::ExchangeLogService(ExchangeLogStore* store, AccessLog* access,
                                       const Authorizer* authz, common::Signatures signatures,
                                       std::set<std::string> cosigners)
    : store_(store),
      access_(access),
      authz_(authz),
      signatures_(std::move(signatures)),
      cosigners_(std::move(cosigners)) {}

void ExchangeLogService::AddUnaryMethods(AuthorizedFirst* unary) {
  unary->Add("/caseway.v1.ExchangeLog/GetCheckpoint", Rpc::kLogCheckpoint, this,
             &ExchangeLogService::GetCheckpoint);
  unary->Add("/caseway.v1.ExchangeLog/GetEntries", Rpc::kLogAudit, this,
             &ExchangeLogService::GetEntries);
  unary->Add("/caseway.v1.ExchangeLog/GetInclusionProof", Rpc::kLogAudit, this,
             &ExchangeLogService::GetInclusionProof);
  unary->Add("/caseway.v1.ExchangeLog/GetConsistencyProof", Rpc::kLogCheckpoint, this,
             &ExchangeLogService::GetConsistencyProof);
  unary->Add("/caseway.v1.ExchangeLog/GetEvidence", Rpc::kLogAudit, this,
             &ExchangeLogService::GetEvidence);
  unary->Add("/caseway.v1.ExchangeLog/GetNoticeEvidence", Rpc::kLogAudit, this,
             &ExchangeLogService::GetNoticeEvidence);
  unary->Add("/caseway.v1.ExchangeLog/GetNotices", Rpc::kLogAudit, this,
             &ExchangeLogService::GetNotices);
  unary->Add("/caseway.v1.ExchangeLog/AddCosignature", Rpc::kLogCosign, this,
             &ExchangeLogService::AddCosignature);
}

grpc::Status ExchangeLogService::GetCheckpoint(grpc::ServerContext* ctx,
                                               const v1::GetCheckpointRequest* req,
                                               v1::CheckpointResponse* resp) {
  if (auto id = authz_->Check(*ctx, Rpc::kLogCheckpoint); !id.ok()) return ToGrpcStatus(id.status());
  if (!store_->log_enabled()) return Disabled();
  auto c = req->size() == 0 ? store_->LatestCheckpoint() : store_->CheckpointAt(req->size());
  if (!c.ok()) return ToGrpcStatus(c.status());
  // Only cosignatures that verify are served: a stored line is data like any other.
  std::string note = c->note;
  const auto directory = signatures_.directory();
  const common::Directory& dir = *directory;
  auto parsed = common::ParseNote(c->note);
  for (const auto& line : c->cosignatures) {
    auto one = common::ParseNote(absl::StrCat(parsed.ok() ? parsed->body : "", "\n", line));
    bool valid = false;
    if (parsed.ok() && one.ok() && one->signatures.size() == 1) {
      const std::string& name = one->signatures[0].name;
      if (!req->cosigner().empty() && name != req->cosigner()) continue;
      auto witness = dir.JurisdictionOf(name);
      valid = witness.ok() && dir.VerifyCosignatureOf(*one, *witness).ok();
    }
    if (valid) {
      note += line;
    } else {
      Log(LogLevel::kWarn, "stored cosignature does not verify; not served",
          {{"size", absl::StrCat(c->size)}});
    }
  }
  resp->set_note(note);
  resp->set_size(c->size);
  resp->set_root(c->root);
  resp->set_log_size(store_->LogHead().first);
  *resp->mutable_now() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(common::Now()));
  if (absl::Status halted = store_->Halted(); !halted.ok()) {
    resp->set_halted(std::string(halted.message()));
  }
  return grpc::Status::OK;
}

grpc::Status ExchangeLogService::GetEntries(grpc::ServerContext* ctx,
                                            const v1::GetEntriesRequest* req,
                                            v1::GetEntriesResponse* resp) {
  if (auto id = authz_->Check(*ctx, Rpc::kLogAudit); !id.ok()) return ToGrpcStatus(id.status());
  if (!store_->log_enabled()) return Disabled();
  const uint64_t size = store_->LogHead().first;
  if (req->start() >= size) {
    return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                        absl::StrCat("start: ", req->start(), " is not below the log size ", size));
  }
  if (req->end() <= req->start()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "end: must be greater than start");
  }
  const uint64_t end = std::min({req->end(), size, req->start() + kMaxEntriesPerCall});
  auto entries = store_->ReadEntries(req->start(), end);
  if (!entries.ok()) return ToGrpcStatus(entries.status());
  resp->set_start(req->start());
  size_t bytes = 0;
  for (auto& e : *entries) {
    if (resp->entries_size() > 0 && bytes + e.size() > kMaxResponseBytes) break;
    bytes += e.size();
    resp->add_entries(std::move(e));
  }
  return grpc::Status::OK;
}

grpc::Status ExchangeLogService::GetInclusionProof(grpc::ServerContext* ctx,
                                                   const v1::GetInclusionProofRequest* req,
                                                   v1::ProofResponse* resp) {
  if (auto id = authz_->Check(*ctx, Rpc::kLogAudit); !id.ok()) return ToGrpcStatus(id.status());
  if (!store_->log_enabled()) return Disabled();
  auto proof = store_->InclusionProof(req->index(), req->tree_size());
  if (!proof.ok()) return ToGrpcStatus(proof.status());
  for (auto& h : *proof) resp->add_hashes(std::move(h));
  return grpc::Status::OK;
}

grpc::Status ExchangeLogService::GetConsistencyProof(grpc::ServerContext* ctx,
                                                     const v1::GetConsistencyProofRequest* req,
                                                     v1::ProofResponse* resp) {
  if (auto id = authz_->Check(*ctx, Rpc::kLogCheckpoint); !id.ok()) return ToGrpcStatus(id.status());
  if (!store_->log_enabled()) return Disabled();
  auto proof = store_->ConsistencyProof(req->first(), req->second());
  if (!proof.ok()) return ToGrpcStatus(proof.status());
  for (auto& h : *proof) resp->add_hashes(std::move(h));
  return grpc::Status::OK;
}

grpc::Status ExchangeLogService::BadPurpose(const std::string& purpose) {
  std::vector<common::Violation> bad;
  common::ValidatePurpose("purpose", purpose, &bad);
  return bad.empty() ? grpc::Status::OK : ToGrpcStatus(common::BadInput("INVALID_REQUEST", bad));
}

grpc::Status ExchangeLogService::GetEvidence(grpc::ServerContext* ctx,
                                             const v1::GetEvidenceRequest* req,
                                             v1::GetEvidenceResponse* resp) {
  auto id = authz_->Check(*ctx, Rpc::kLogAudit);
  if (!id.ok()) return ToGrpcStatus(id.status());
  if (!store_->log_enabled()) return Disabled();
  v1::Evidence::Kind kind1, kind2;
  switch (req->direction()) {
    case v1::GetEvidenceRequest::DIRECTION_OUTBOUND:
      kind1 = v1::Evidence::KIND_MANIFEST_SENT;
      kind2 = v1::Evidence::KIND_RECEIPT_RECEIVED;
      break;
    case v1::GetEvidenceRequest::DIRECTION_INBOUND:
      kind1 = v1::Evidence::KIND_MANIFEST_RECEIVED;
      kind2 = v1::Evidence::KIND_RECEIPT_SENT;
      break;
    case v1::GetEvidenceRequest::DIRECTION_QUERIES:
      kind1 = kind2 = v1::Evidence::KIND_QUERY_ANSWER_RECEIVED;
      break;
    case v1::GetEvidenceRequest::DIRECTION_SHARING_POLICIES:
      kind1 = kind2 = v1::Evidence::KIND_SHARING_POLICY;
      break;
    case v1::GetEvidenceRequest::DIRECTION_ANSWERS_SENT:
      kind1 = kind2 = v1::Evidence::KIND_QUERY_ANSWER_SENT;
      break;
    default:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "direction: required (must not be DIRECTION_UNSPECIFIED)");
  }
  // Sharing policies are this node's own (stored with no peer).
  const bool policies = req->direction() == v1::GetEvidenceRequest::DIRECTION_SHARING_POLICIES;
  const std::string peer = policies ? "" : req->peer();
  const bool sent = req->direction() == v1::GetEvidenceRequest::DIRECTION_ANSWERS_SENT;
  if (sent) {
    // Answers given are found by the party's name: a department is no node of the directory,
    // and a peer that has left it was still answered.
    if (peer.empty() || peer.size() > 200) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "peer: required, a party of at most 200 characters");
    }
  } else if (!policies) {
    if (grpc::Status other = OtherNode(peer); !other.ok()) return other;
  }
  const bool queries = sent || req->direction() == v1::GetEvidenceRequest::DIRECTION_QUERIES;
  if (queries) {
    if (grpc::Status bad = BadPurpose(req->purpose()); !bad.ok()) return bad;
  }
  constexpr uint32_t kPageRows = 1000;
  auto evidence =
      store_->ReadEvidence(peer, kind1, kind2, req->after(), kPageRows, kMaxResponseBytes);
  if (!evidence.ok()) return ToGrpcStatus(evidence.status());
  if (!evidence->empty()) {
    // `next` only when another row follows: the last page says 0.
    auto probe = store_->ReadEvidence(peer, kind1, kind2, evidence->back().id(), 1,
                                      kMaxResponseBytes);
    if (!probe.ok()) return ToGrpcStatus(probe.status());
    if (!probe->empty()) resp->set_next(evidence->back().id());
  }
  if (queries) {
    AccessEntry access{id->ToString(), "evidence", req->purpose(), req->peer()};
    for (const v1::Evidence& e : *evidence) {
      v1::QueryAnswer answer;
      if (!answer.ParseFromString(e.signed_().message())) continue;  // purged
      for (const v1::QueryNotice& q : answer.notices()) access.AddBytes(q.notice());
    }
    if (access.notices > 0) {
      if (absl::Status s = access_->RecordAccess(access); !s.ok()) return ToGrpcStatus(s);
    }
  }
  for (auto& e : *evidence) *resp->add_evidence() = std::move(e);
  return grpc::Status::OK;
}

grpc::Status ExchangeLogService::OtherNode(const std::string& peer) const {
  if (peer.empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "peer: required");
  const std::string shown = peer.substr(0, 64);
  if (peer == store_->self()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("peer: ", shown, " is this node itself"));
  }
  if (!signatures_.directory()->Listed(peer).ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("peer: ", shown, " is not a node of the federation"));
  }
  return grpc::Status::OK;
}

grpc::Status ExchangeLogService::GetNotices(grpc::ServerContext* ctx,
                                            const v1::GetNoticesRequest* req,
                                            v1::GetNoticesResponse* resp) {
  auto id = authz_->Check(*ctx, Rpc::kLogAudit);
  if (!id.ok()) return ToGrpcStatus(id.status());
  if (!store_->log_enabled()) return Disabled();
  if (grpc::Status bad = BadPurpose(req->purpose()); !bad.ok()) return bad;
  if (req->direction() != v1::GetEvidenceRequest::DIRECTION_OUTBOUND &&
      req->direction() != v1::GetEvidenceRequest::DIRECTION_INBOUND) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "direction: required (must not be DIRECTION_UNSPECIFIED)");
  }
  if (grpc::Status other = OtherNode(req->peer()); !other.ok()) return other;
  const uint32_t limit = req->limit() == 0 || req->limit() > 1000 ? 1000 : req->limit();
  auto notices = store_->ReadNotices(req->peer(),
                                     req->direction() == v1::GetEvidenceRequest::DIRECTION_OUTBOUND,
                                     req->first_seq(), limit, kMaxResponseBytes);
  if (!notices.ok()) return ToGrpcStatus(notices.status());
  AccessEntry access{id->ToString(), "evidence", req->purpose(), req->peer()};
  for (const auto& [seq, bytes] : *notices) access.AddBytes(bytes);
  if (access.notices > 0) {
    if (absl::Status s = access_->RecordAccess(access); !s.ok()) return ToGrpcStatus(s);
  }
  for (auto& [seq, bytes] : *notices) {
    auto* n = resp->add_notices();
    n->set_seq(seq);
    n->set_purged(bytes.empty());  // a notice's bytes are never empty: retention removed them
    n->set_notice(std::move(bytes));
  }
  return grpc::Status::OK;
}

grpc::Status ExchangeLogService::GetNoticeEvidence(grpc::ServerContext* ctx,
                                                   const v1::GetNoticeEvidenceRequest* req,
                                                   v1::NoticeEvidence* resp) {
  auto id = authz_->Check(*ctx, Rpc::kLogAudit);
  if (!id.ok()) return ToGrpcStatus(id.status());
  if (!store_->log_enabled()) return Disabled();
  if (req->notice_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "notice_id: required");
  }
  if (grpc::Status bad = BadPurpose(req->purpose()); !bad.ok()) return bad;
  auto evidence = store_->NoticeEvidence(req->notice_id(), req->origin());
  if (!evidence.ok()) return ToGrpcStatus(evidence.status());
  AccessEntry access{id->ToString(), "evidence", req->purpose(), req->origin()};
  access.AddBytes(evidence->notice());
  if (access.notices > 0) {
    if (absl::Status s = access_->RecordAccess(access); !s.ok()) return ToGrpcStatus(s);
  }
  *resp = std::move(*evidence);
  return grpc::Status::OK;
}

grpc::Status ExchangeLogService::AddCosignature(grpc::ServerContext* ctx,
                                                const v1::AddCosignatureRequest* req,
                                                v1::AddCosignatureResponse*) {
  auto id = authz_->Check(*ctx, Rpc::kLogCosign);
  if (!id.ok()) return ToGrpcStatus(id.status());
  if (!store_->log_enabled()) return Disabled();
  auto note = common::ParseNote(req->note());
  if (!note.ok()) return ToGrpcStatus(note.status());
  auto body = common::ParseCheckpointBody(note->body);
  if (!body.ok()) return ToGrpcStatus(body.status());
  auto ours = store_->CheckpointAt(body->size);
  if (!ours.ok()) return ToGrpcStatus(ours.status());
  if (ours->note.compare(0, note->body.size(), note->body) != 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "note: not this node's checkpoint of that size");
  }
  // Only this node's peers witness it: anyone else's line would only make the note longer.
  if (cosigners_.count(id->jurisdiction) == 0) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat(id->ToString(), " is not a peer of this node and may not "
                                                     "cosign its checkpoints"));
  }
  const auto directory = signatures_.directory();
  const common::Directory& dir = *directory;
  const std::string witness = dir.NoteName(id->jurisdiction);
  // By the witness's key valid at the cosignature's time (a witness may have rotated).
  auto cosigned = dir.VerifyCosignatureOf(*note, id->jurisdiction);
  if (!cosigned.ok()) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("note: no valid cosignature/v1 of ", witness, ": ",
                                     cosigned.status().message()));
  }
  const std::string id_hash = common::CosignatureKeyId(witness, cosigned->public_key);
  for (const auto& s : note->signatures) {
    if (s.name == witness && s.key_hash == id_hash) {
      common::Note one{note->body, {s}};
      std::string text = common::FormatNote(one);
      std::string line = text.substr(note->body.size() + 1);
      // Replaces an earlier line of the same witness: a witness repairs a bad one this way.
      return ToGrpcStatus(store_->AddCosignature(body->size, witness, line));
    }
  }
  return grpc::Status(grpc::StatusCode::INTERNAL, "verified signature line not found");
}

}  // namespace caseway::server
