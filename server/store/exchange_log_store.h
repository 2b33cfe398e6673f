// ExchangeLogStore: what the exchange log's services (server/log/: checkpointer, witness,
// scrubber, the ExchangeLog RPCs) need of the store (docs/exchange-log.md).
#ifndef CASEWAY_SERVER_STORE_EXCHANGE_LOG_STORE_H_
#define CASEWAY_SERVER_STORE_EXCHANGE_LOG_STORE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "caseway/v1/exchange_log.pb.h"
#include "caseway/v1/peer_exchange.pb.h"
#include "common/signing.h"
#include "common/merkle.h"
#include "server/store/merkle_log.h"

namespace caseway::server {

// StoredCheckpoint is a signed checkpoint as stored, with the cosignature lines received for it.
struct StoredCheckpoint {
  uint64_t size = 0;
  std::string root;
  std::string note;                       // body + blank line + this node's signature line
  std::vector<std::string> cosignatures;  // extra signature lines
  absl::Time created_at;                  // when this node stored it (read back only)
};

// ExchangeLogStore is the exchange log as stored: its entries and proofs, the signed checkpoints
// and their cosignatures, the evidence (signed manifests, receipts), the peers' checkpoints this
// node cosigned, and its integrity (a halt). The entries themselves are appended by the store's
// own writes (publishing, sending, receiving), inside their transactions; nothing here appends an
// event. Implemented by NoticeStore (notice_store_log.cc), on SQLite and PostgreSQL. With the log
// off, reads are empty and writes FAILED_PRECONDITION. Thread-safe.
class ExchangeLogStore {
 public:
  virtual ~ExchangeLogStore() = default;

  virtual bool log_enabled() const = 0;
  // This node's jurisdiction: the signer of its checkpoints.
  virtual const std::string& self() const = 0;

  // LogHead is the committed tree (size, root).
  virtual std::pair<uint64_t, std::string> LogHead() = 0;
  // ReadEntries returns exact entry bytes [start, end) of the committed log.
  virtual absl::StatusOr<std::vector<std::string>> ReadEntries(uint64_t start, uint64_t end) = 0;
  virtual absl::StatusOr<std::vector<std::string>> InclusionProof(uint64_t index,
                                                                  uint64_t tree_size) = 0;
  virtual absl::StatusOr<std::vector<std::string>> ConsistencyProof(uint64_t first,
                                                                    uint64_t second) = 0;
  // ReadEvidence returns stored signed objects for `peer` of the two given kinds with
  // id > after, in id order, at most `limit` rows and about `max_bytes`.
  virtual absl::StatusOr<std::vector<caseway::v1::Evidence>> ReadEvidence(
      const std::string& peer, caseway::v1::Evidence::Kind kind1, caseway::v1::Evidence::Kind kind2,
      uint64_t after, uint32_t limit, uint64_t max_bytes) = 0;
  // NoticeEvidence gathers a notice's bytes, channels and covering evidence (published here, or
  // received from `origin`). NOT_FOUND when this node holds no such notice.
  virtual absl::StatusOr<caseway::v1::NoticeEvidence> NoticeEvidence(
      const std::string& notice_id, const std::string& origin) = 0;
  // ReadNotices returns exact notice bytes of a channel from `first_seq` on, in sequence order,
  // at most `limit` and about `max_bytes`: outbound (this node -> `peer`, as published here) or
  // inbound (`peer` -> this node, as stored in the inbox). A purged notice is empty.
  virtual absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> ReadNotices(
      const std::string& peer, bool outbound, uint64_t first_seq, uint32_t limit,
      uint64_t max_bytes) = 0;
  // LastManifestReceived is the newest manifest received from `peer` (NOT_FOUND when none).
  virtual absl::StatusOr<caseway::v1::BatchManifest> LastManifestReceived(
      const std::string& peer) = 0;

  // StoreCheckpoint keeps a signed checkpoint (never replaced).
  virtual absl::Status StoreCheckpoint(const StoredCheckpoint& checkpoint) = 0;
  // LatestCheckpoint returns the newest checkpoint with its cosignatures (NOT_FOUND when none).
  virtual absl::StatusOr<StoredCheckpoint> LatestCheckpoint() = 0;
  virtual absl::StatusOr<StoredCheckpoint> CheckpointAt(uint64_t size) = 0;
  // AddCosignature stores `witness`'s signature line for our checkpoint of `size`.
  virtual absl::Status AddCosignature(uint64_t size, const std::string& witness,
                                      const std::string& line) = 0;

  // Witnessed is the last checkpoint of `peer` this node cosigned (NOT_FOUND when none).
  virtual absl::StatusOr<common::Checkpoint> Witnessed(const std::string& peer,
                                                       std::string* note = nullptr) = 0;
  // RecordCosigned stores `peer`'s checkpoint as witnessed and appends PEER_CHECKPOINT_COSIGNED
  // holding `note`, the peer's signed note as received.
  virtual absl::Status RecordCosigned(const std::string& peer,
                                      const common::Checkpoint& checkpoint,
                                      const std::string& note) = 0;

  // RecordClockOffset appends a CLOCK_OFFSET entry: the offset to `peer` went beyond the bound
  // (`exceeded`) or came back within it.
  virtual absl::Status RecordClockOffset(const std::string& peer, absl::Duration offset,
                                         bool exceeded) = 0;

  // --- Integrity (docs/exchange-log.md, "Integrity") ---

  // Halted is OK while the log is trusted. Once a check has found stored log data that
  // contradicts itself or a signed checkpoint, it is FAILED_PRECONDITION with the reason: the
  // store appends no entry any more, so publishing, sending, receiving and witnessing all stop,
  // while the log stays readable for auditors. The halt is kept in the database across restarts.
  virtual absl::Status Halted() = 0;
  // Halt durably records `reason` and halts (the first reason is kept; later calls only log).
  virtual void Halt(const std::string& reason) = 0;
  // LogSizeAtOpen is the log's size when the store was opened: the entries below it were not
  // appended (nor hashed from their bytes) by this process.
  virtual uint64_t LogSizeAtOpen() const = 0;
  // EventsEnd is 1 + the index of the last entry other than a witness record appended by this
  // process (0 when none; may run ahead of the committed log after a rollback).
  virtual uint64_t EventsEnd() const = 0;
  // StoredFrontier rebuilds the frontier of the first `size` entries from stored subtree hashes.
  virtual absl::StatusOr<common::MerkleFrontier> StoredFrontier(uint64_t size) = 0;
  // VerifyStored extends `frontier` to `end` from the stored entry bytes (see
  // MerkleLog::VerifyStored), checking the roots of the checkpoints it passes; `visit` sees each
  // verified entry. DATA_LOSS names the first contradiction.
  virtual absl::Status VerifyStored(common::MerkleFrontier& frontier, uint64_t end,
                                    const MerkleLog::EntryVisitor& visit = nullptr) = 0;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_EXCHANGE_LOG_STORE_H_
