#include "server/log/witness.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/merkle.h"
#include "common/status_macros.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;
using google::protobuf::util::TimeUtil;

Witness::Witness(const v1::NodeConfig& config, std::shared_ptr<grpc::ChannelCredentials> creds,
                 NoticeStore* store, Signatures signatures)
    : self_(config.jurisdiction()),
      store_(store),
      signatures_(std::move(signatures)),
      periodic_(absl::Milliseconds(
                    TimeUtil::DurationToMilliseconds(config.exchange_log().witness_interval())),
                [this] { Round(); }) {
  for (const auto& peer : config.peers()) {
    if (peer.serve_only()) continue;
    stubs_[peer.jurisdiction()] =
        v1::ExchangeLog::NewStub(grpc::CreateChannel(peer.address(), creds));
  }
}

Witness::~Witness() { Stop(); }

void Witness::Start() { periodic_.Start(); }

void Witness::Stop() { periodic_.Stop(); }

void Witness::Round() {
  for (const auto& [peer, stub] : stubs_) {
    absl::Status s = WitnessPeer(peer);
    if (s.code() == absl::StatusCode::kFailedPrecondition) {
      Log(LogLevel::kError, "peer checkpoint refused", {{"peer", peer}, {"status", s.ToString()}});
    } else if (!s.ok()) {
      Log(LogLevel::kDebug, "witnessing skipped", {{"peer", peer}, {"status", s.ToString()}});
    }
  }
}

absl::Status Witness::WitnessPeer(const std::string& peer) {
  v1::ExchangeLog::Stub* stub = stubs_.at(peer).get();
  auto deadline = [] { return std::chrono::system_clock::now() + std::chrono::seconds(5); };
  v1::CheckpointResponse checkpoint;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    RETURN_IF_ERROR(common::FromGrpcStatus(
        stub->GetCheckpoint(&ctx, v1::GetCheckpointRequest(), &checkpoint)));
  }
  const common::Directory& dir = *signatures_.directory;
  ASSIGN_OR_RETURN(std::string key, dir.Key(peer));
  if (checkpoint.note().size() > kMaxNoteBytes) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint of ", peer, ": note of ",
                                                      checkpoint.note().size(), " bytes"));
  }
  ASSIGN_OR_RETURN(common::Note note, common::ParseNote(checkpoint.note()));
  absl::Status signed_ok = common::VerifyNote(note, dir.NoteName(peer), key);
  if (!signed_ok.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint signature of ", peer, ": ", signed_ok.message()));
  }
  ASSIGN_OR_RETURN(common::Checkpoint c, common::ParseCheckpointBody(note.body));
  if (c.origin != dir.NoteName(peer)) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint origin ", c.origin, " is not ",
                                                      dir.NoteName(peer)));
  }
  auto previous = store_->Witnessed(peer);
  if (previous.ok()) {
    if (c.size < previous->size) {
      return absl::FailedPreconditionError(absl::StrCat(
          "fork: ", peer, "'s log shrank from ", previous->size, " to ", c.size, " entries"));
    }
    if (c.size == previous->size) {
      if (c.root != previous->root) {
        return absl::FailedPreconditionError(
            absl::StrCat("fork: ", peer, " signed two roots for size ", c.size));
      }
      // Already recorded; give the cosignature again if the peer lacks it (a lost call).
      bool has_ours = false;
      for (const auto& s : note.signatures) has_ours |= s.name == dir.NoteName(self_);
      if (has_ours) return absl::OkStatus();
      return SendCosignature(*stub, note.body);
    }
    v1::GetConsistencyProofRequest req;
    req.set_first(previous->size);
    req.set_second(c.size);
    v1::ProofResponse proof;
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    RETURN_IF_ERROR(common::FromGrpcStatus(stub->GetConsistencyProof(&ctx, req, &proof)));
    std::vector<std::string> hashes(proof.hashes().begin(), proof.hashes().end());
    absl::Status consistent =
        common::VerifyConsistency(previous->size, c.size, hashes, previous->root, c.root);
    if (!consistent.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "fork: ", peer, "'s checkpoint ", c.size, " does not extend the one of size ",
          previous->size, " cosigned earlier: ", consistent.message()));
    }
  } else if (previous.status().code() != absl::StatusCode::kNotFound) {
    return previous.status();
  }
  // Our log keeps the body and the peer's own signature (what proves what the peer showed us),
  // re-formed here: nothing else the peer sent is recorded.
  common::Note own{note.body, {}};
  for (const auto& s : note.signatures) {
    if (s.name == dir.NoteName(peer) && s.key_hash == common::NoteKeyHash(dir.NoteName(peer), key)) {
      own.signatures.push_back(s);
      break;
    }
  }
  RETURN_IF_ERROR(store_->RecordCosigned(peer, c, common::FormatNote(own)));
  return SendCosignature(*stub, note.body);
}

absl::Status Witness::SendCosignature(v1::ExchangeLog::Stub& stub, const std::string& body) {
  v1::AddCosignatureRequest add;
  add.set_note(body + "\n" +
               common::SignNoteLine(body, signatures_.directory->NoteName(self_), *signatures_.key));
  v1::AddCosignatureResponse added;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return common::FromGrpcStatus(stub.AddCosignature(&ctx, add, &added));
}

}  // namespace caseway::server
