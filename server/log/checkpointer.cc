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
                           std::string name, absl::Duration interval)
    : store_(store),
      key_(std::move(key)),
      name_(std::move(name)),
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
  auto [size, root] = store_->LogHead();
  if (size == 0) return absl::OkStatus();
  auto last = store_->LatestCheckpoint();
  if (last.ok()) {
    if (last->size == size) {
      if (last->root != root) {
        return absl::FailedPreconditionError(absl::StrCat(
            "exchange log of size ", size, " has another root than its signed checkpoint"));
      }
      return absl::OkStatus();  // nothing new
    }
    if (last->size > size) {
      return absl::FailedPreconditionError(absl::StrCat("exchange log shrank from ", last->size,
                                                        " to ", size, " entries"));
    }
    // Growth made only of witness records (cosigned peer checkpoints) is checkpointed at most
    // once a minute: otherwise two idle witnesses would make each other sign forever.
    if (absl::Now() - last_signed_ < kWitnessOnlyInterval) {
      bool significant = false;
      for (uint64_t start = last->size; start < size && !significant; start += 100) {
        ASSIGN_OR_RETURN(auto entries, store_->ReadEntries(start, std::min(size, start + 100)));
        for (const auto& bytes : entries) {
          v1::LogEntry e;
          if (!e.ParseFromString(bytes) || e.kind() != v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED) {
            significant = true;
            break;
          }
        }
      }
      if (!significant) return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(auto proof, store_->ConsistencyProof(last->size, size));
    absl::Status consistent = common::VerifyConsistency(last->size, size, proof, last->root, root);
    if (!consistent.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "exchange log is not consistent with checkpoint ", last->size, ": ",
          consistent.message()));
    }
  } else if (last.status().code() != absl::StatusCode::kNotFound) {
    return last.status();
  }
  std::string body = common::CheckpointBody({name_, size, root});
  StoredCheckpoint c;
  c.size = size;
  c.root = root;
  c.note = body + "\n" + common::SignNoteLine(body, name_, *key_);
  RETURN_IF_ERROR(store_->StoreCheckpoint(c));
  last_signed_ = absl::Now();
  return absl::OkStatus();
}

}  // namespace caseway::server
