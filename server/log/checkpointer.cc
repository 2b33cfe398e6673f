#include "server/log/checkpointer.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/merkle.h"
#include "caseway/v1/exchange_log.pb.h"
#include "common/status_macros.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;

Checkpointer::Checkpointer(ExchangeLogStore* store, common::Signatures signatures, std::string name,
                           std::string jurisdiction, absl::Duration interval,
                           absl::Duration witness_only_interval)
    : store_(store),
      signatures_(std::move(signatures)),
      name_(std::move(name)),
      jurisdiction_(std::move(jurisdiction)),
      witness_only_interval_(witness_only_interval),
      periodic_(interval, [this] { Tick(); }) {}

Checkpointer::~Checkpointer() { Stop(); }

void Checkpointer::Start() { periodic_.Start(); }

void Checkpointer::Stop() { periodic_.Stop(); }

void Checkpointer::Tick() {
  absl::Status s = SignNow();
  if (!s.ok()) Log(LogLevel::kError, "checkpoint not signed", {{"status", s.ToString()}});
}

absl::Status Checkpointer::SignNow() {
  absl::MutexLock sign_lock(&sign_mu_);
  RETURN_IF_ERROR(store_->Halted());
  auto [size, root] = store_->LogHead();
  if (size == 0) return absl::OkStatus();
  auto halt = [this](const std::string& reason) {
    store_->Halt(reason);
    return absl::FailedPreconditionError(reason);
  };
  auto last = store_->LatestCheckpoint();
  uint64_t last_size = 0;
  std::string last_root = common::EmptyRoot();
  int64_t last_time = 0;
  if (last.ok()) {
    last_size = last->size;
    last_root = last->root;
    // The stored checkpoint must be one this node signed, for the root stored beside it.
    auto note = common::ParseNote(last->note);
    auto body = note.ok() ? common::ParseCheckpointBody(note->body)
                          : absl::StatusOr<common::Checkpoint>(note.status());
    if (!body.ok() || body->size != last->size || body->root != last->root ||
        !(signatures_.directory() != nullptr
              ? signatures_.directory()->VerifyCheckpoint(*note, jurisdiction_)
              : common::VerifyNote(*note, name_, signatures_.key()->PublicKey()))
             .ok()) {
      return halt(absl::StrCat("the stored checkpoint of ", last->size,
                               " entries is not one this node signed for that root"));
    }
    last_time = body->time;
    // After a restart, the last checkpoint's own time (a restart is no reason to sign witness
    // records sooner).
    if (last_signed_ == absl::InfinitePast() && last_time > 0) {
      last_signed_ = absl::FromUnixSeconds(last_time);
    }
    if (last->size > size) {
      return halt(absl::StrCat("the log has ", size, " entries but a checkpoint of ", last->size,
                               " was signed"));
    }
    if (last->size == size) {
      if (last->root != root) {
        return halt(absl::StrCat("the log of ", size,
                                 " entries has another root than its signed checkpoint"));
      }
      return absl::OkStatus();  // nothing new
    }
  } else if (last.status().code() != absl::StatusCode::kNotFound) {
    return last.status();
  }
  auto significant = CheckBeforeSigning(last_size, last_root, size, root);
  if (significant.status().code() == absl::StatusCode::kDataLoss) {
    return halt(std::string(significant.status().message()));
  }
  RETURN_IF_ERROR(significant.status());
  if (!*significant && last.ok() &&
      (!last_significant_ || common::Now() - last_signed_ < witness_only_interval_)) {
    return absl::OkStatus();
  }
  // A checkpoint's time never goes back, even when the clock does.
  const int64_t now = std::max(absl::ToUnixSeconds(common::Now()), last_time);
  std::string body = common::CheckpointBody({name_, size, root, now});
  StoredCheckpoint c;
  c.size = size;
  c.root = root;
  c.note = body + "\n" + common::SignNoteLine(body, name_, *signatures_.key());
  RETURN_IF_ERROR(store_->StoreCheckpoint(c));
  last_signed_ = common::Now();
  last_significant_ = *significant;
  return absl::OkStatus();
}

absl::StatusOr<bool> Checkpointer::CheckBeforeSigning(uint64_t last_size,
                                                      const std::string& last_root, uint64_t size,
                                                      const std::string& root) {
  // The stored subtrees must rebuild the last signed root.
  auto frontier = store_->StoredFrontier(last_size);
  if (!frontier.ok() || frontier->Root() != last_root) {
    return absl::DataLossError(absl::StrCat("the stored hashes of the first ", last_size,
                                            " entries do not rebuild their signed checkpoint"));
  }
  // Entries this process did not append (the tail left before a restart) are re-read from their
  // bytes; those it appended were hashed from their bytes as it wrote them.
  bool significant = store_->EventsEnd() > last_size;
  const uint64_t tail_end = std::min(size, store_->LogSizeAtOpen());
  if (last_size < tail_end) {
    RETURN_IF_ERROR(store_->VerifyStored(*frontier, tail_end, [&](const v1::LogEntry& e) {
      significant |= e.kind() != v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED;
    }));
  }
  // The stored hashes must agree with the root held in memory.
  auto stored = store_->StoredFrontier(size);
  if (!stored.ok() || stored->Root() != root) {
    return absl::DataLossError(absl::StrCat("the stored hashes of the first ", size,
                                            " entries do not rebuild the root the log holds in "
                                            "memory"));
  }
  return significant;
}

}  // namespace caseway::server
