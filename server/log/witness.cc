#include "server/log/witness.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/merkle.h"
#include "common/status_macros.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;
using google::protobuf::util::TimeUtil;

Witness::Witness(const v1::NodeConfig& config, std::shared_ptr<grpc::ChannelCredentials> creds,
                 ExchangeLogStore* store, common::Signatures signatures)
    : self_(config.jurisdiction()),
      stale_after_(absl::Milliseconds(
          TimeUtil::DurationToMilliseconds(config.exchange_log().stale_checkpoint_after()))),
      store_(store),
      signatures_(std::move(signatures)),
      periodic_(absl::Milliseconds(
                    TimeUtil::DurationToMilliseconds(config.exchange_log().witness_interval())),
                [this] { Round(); }) {
  // A witness asks each peer for a note with its own cosignature only (the note stays small
  // however many witnesses the peer has).
  own_cosignature_only_.set_cosigner(signatures_.directory()->NoteName(self_));
  for (const auto& peer : config.peers()) {
    if (peer.serve_only()) continue;
    channels_[peer.jurisdiction()] = common::PeerChannel::ForPeer(config, peer.address(), creds);
  }
}

Witness::~Witness() { Stop(); }

void Witness::Start() { periodic_.Start(); }

void Witness::Stop() { periodic_.Stop(); }

void Witness::Round() {
  for (const auto& [peer, channel] : channels_) {
    absl::Status s = WitnessPeer(peer);
    // A peer that refused this node's (old) certificate gets a new connection next round.
    channel->Saw(static_cast<grpc::StatusCode>(s.code()));
    std::string state = s.ok() ? "ok" : std::string(s.message());
    if (s.code() != absl::StatusCode::kFailedPrecondition && !s.ok()) {
      state = absl::StrCat("unreachable: ", s.message());
    }
    std::string before;
    {
      absl::MutexLock lock(&mu_);
      before = state_[peer];
      state_[peer] = state;
    }
    if (s.code() == absl::StatusCode::kFailedPrecondition) {
      // A finding: logged when it first appears or changes, not every round.
      if (state != before) {
        Log(LogLevel::kError, "peer checkpoint refused", {{"peer", peer}, {"status", s.ToString()}});
      }
    } else if (!s.ok()) {
      Log(LogLevel::kDebug, "witnessing skipped", {{"peer", peer}, {"status", s.ToString()}});
    } else if (before != "ok" && !before.empty() && before.rfind("unreachable", 0) != 0) {
      Log(LogLevel::kInfo, "peer checkpoint accepted again", {{"peer", peer}});
    }
  }
}

std::string Witness::State(const std::string& peer) {
  absl::MutexLock lock(&mu_);
  auto it = state_.find(peer);
  return it == state_.end() ? "" : it->second;
}

std::string Witness::Stale(const std::string& peer, const common::Checkpoint& c,
                           uint64_t log_size) {
  if (c.time <= 0) return "";
  const absl::Time signed_at = absl::FromUnixSeconds(c.time);
  if (log_size > c.size && common::Now() - signed_at > stale_after_) {
    return absl::StrCat("stale: ", peer, "'s latest checkpoint (", c.size, " entries) was signed ",
                        absl::FormatDuration(absl::Trunc(common::Now() - signed_at, absl::Seconds(1))),
                        " ago while its log holds ", log_size);
  }
  // The peer appends SENT before it sends a batch: a manifest it signed well after its
  // checkpoint shows that the checkpoint no longer covers its log.
  if (auto m = store_->LastManifestReceived(peer); m.ok()) {
    const absl::Time created =
        absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(m->created_at()));
    if (created - signed_at > stale_after_) {
      return absl::StrCat("stale: ", peer, " signed a manifest ",
                          absl::FormatDuration(absl::Trunc(created - signed_at, absl::Seconds(1))),
                          " after its latest checkpoint (", c.size, " entries)");
    }
  }
  return "";
}

absl::Status Witness::WitnessPeer(const std::string& peer) {
  auto owned = v1::ExchangeLog::NewStub(channels_.at(peer)->Get());
  v1::ExchangeLog::Stub* stub = owned.get();
  auto deadline = [] { return std::chrono::system_clock::now() + std::chrono::seconds(5); };
  v1::CheckpointResponse checkpoint;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    RETURN_IF_ERROR(common::FromGrpcStatus(
        stub->GetCheckpoint(&ctx, own_cosignature_only_, &checkpoint)));
  }
  const auto directory = signatures_.directory();
  const common::Directory& dir = *directory;
  RETURN_IF_ERROR(dir.Listed(peer));
  if (checkpoint.note().size() > kMaxNoteBytes) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint of ", peer, ": note of ",
                                                      checkpoint.note().size(), " bytes"));
  }
  ASSIGN_OR_RETURN(common::Note note, common::ParseNote(checkpoint.note()));
  // Signed by the peer's key valid at the checkpoint's time (docs/operator.md, key rotation).
  absl::Status signed_ok = dir.VerifyCheckpoint(note, peer);
  if (!signed_ok.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint signature of ", peer, ": ", signed_ok.message()));
  }
  ASSIGN_OR_RETURN(common::Checkpoint c, common::ParseCheckpointBody(note.body));
  if (c.origin != dir.NoteName(peer)) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint origin ", c.origin, " is not ",
                                                      dir.NoteName(peer)));
  }
  if (!checkpoint.halted().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("halted: ", peer, " reports ", checkpoint.halted().substr(0, 512)));
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
      // Already recorded; give the cosignature again if the peer lacks a valid one (a lost call,
      // or a line damaged in the peer's database).
      if (!dir.VerifyCosignatureOf(note, self_).ok()) {
        RETURN_IF_ERROR(SendCosignature(*stub, note.body));
      }
      if (std::string stale = Stale(peer, c, checkpoint.log_size()); !stale.empty()) {
        return absl::FailedPreconditionError(stale);
      }
      return absl::OkStatus();
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
    common::Note one{note.body, {s}};
    if (s.name == dir.NoteName(peer) && dir.VerifyCheckpoint(one, peer).ok()) {
      own.signatures.push_back(s);
      break;
    }
  }
  RETURN_IF_ERROR(store_->RecordCosigned(peer, c, common::FormatNote(own)));
  RETURN_IF_ERROR(SendCosignature(*stub, note.body));
  if (std::string stale = Stale(peer, c, checkpoint.log_size()); !stale.empty()) {
    return absl::FailedPreconditionError(stale);
  }
  return absl::OkStatus();
}

absl::Status Witness::SendCosignature(v1::ExchangeLog::Stub& stub, const std::string& body) {
  v1::AddCosignatureRequest add;
  add.set_note(body + "\n" +
               common::SignCosignatureLine(body, signatures_.directory()->NoteName(self_),
                                           *signatures_.key(), absl::ToUnixSeconds(common::Now())));
  v1::AddCosignatureResponse added;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return common::FromGrpcStatus(stub.AddCosignature(&ctx, add, &added));
}

}  // namespace caseway::server
