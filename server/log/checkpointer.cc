#include "server/log/checkpointer.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/merkle.h"
#include "caseway/v1/exchange_log.pb.h"
#include "common/status_macros.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;

Checkpointer::Checkpointer(NoticeStore* store, std::shared_ptr<const common::SigningKey> key,
                           std::string name, absl::Duration interval,
                           absl::Duration witness_only_interval)
    : store_(store),
      key_(std::move(key)),
      name_(std::move(name)),
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
        !common::VerifyNote(*note, name_, key_->PublicKey()).ok()) {
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
  // Verify before signing: the stored subtrees must rebuild the last signed root, and the new
  // entries, recomputed from their bytes, must extend it to the root about to be signed.
  auto frontier = store_->StoredFrontier(last_size);
  if (!frontier.ok() || frontier->Root() != last_root) {
    return halt(absl::StrCat("the stored hashes of the first ", last_size,
                             " entries do not rebuild their signed checkpoint"));
  }
  // Whether the new entries hold an event other than witness records.
  bool significant = false;
  absl::Status verified = store_->VerifyStored(*frontier, size, [&](const v1::LogEntry& e) {
    significant |= e.kind() != v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED;
  });
  if (verified.code() == absl::StatusCode::kDataLoss) return halt(std::string(verified.message()));
  RETURN_IF_ERROR(verified);
  if (frontier->Root() != root) {
    return halt(absl::StrCat("the stored entries up to ", size,
                             " do not rebuild the root the log holds in memory"));
  }
  if (!significant && last.ok() &&
      (!last_significant_ || absl::Now() - last_signed_ < witness_only_interval_)) {
    return absl::OkStatus();
  }
  // A checkpoint's time never goes back, even when the clock does.
  const int64_t now = std::max(absl::ToUnixSeconds(absl::Now()), last_time);
  std::string body = common::CheckpointBody({name_, size, root, now});
  StoredCheckpoint c;
  c.size = size;
  c.root = root;
  c.note = body + "\n" + common::SignNoteLine(body, name_, *key_);
  RETURN_IF_ERROR(store_->StoreCheckpoint(c));
  last_signed_ = absl::Now();
  last_significant_ = significant;
  return absl::OkStatus();
}

}  // namespace caseway::server
