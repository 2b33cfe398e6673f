// MerkleLog: the exchange log's leaves and perfect-subtree nodes in SQLite, with its frontier kept
// in memory in step with the writer's transactions.
#ifndef CASEWAY_SERVER_STORE_MERKLE_LOG_H_
#define CASEWAY_SERVER_STORE_MERKLE_LOG_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "caseway/v1/exchange_log.pb.h"
#include "common/merkle.h"
#include "server/store/commit_queue.h"
#include "server/store/sql.h"

namespace caseway::server {

// MerkleLog appends exact entry bytes as leaves (table log_leaf, with each leaf hash) and stores
// the completed perfect subtree roots of level kFirstStoredLevel and above (table log_node), so
// the root is kept incrementally and any proof is a handful of lookups. The roots of levels below
// are computed from at most 2^(kFirstStoredLevel-1) stored leaf hashes when asked for: three
// quarters of the node rows, and their inserts on the writer's path, are not written. (Stores
// written before kept every level; those rows are still there and never read.)
//
// Operation: Append() runs inside a writer transaction; the working frontier follows savepoint
// rollbacks and is published as the committed frontier only on COMMIT.
// Concurrency: Append/Next* on the writer thread only; Committed() from any thread.
// Limitations: leaves are never deleted (no retention yet).
class MerkleLog : public TxnParticipant {
 public:
  static constexpr int kFirstStoredLevel = 3;

  // Load rebuilds the frontier from the stored perfect subtrees. INTERNAL when rows are missing.
  static absl::StatusOr<std::unique_ptr<MerkleLog>> Load(Db* writer_db);

  // NextIndex is the index the next Append gets (writer thread).
  uint64_t NextIndex() const { return working_.size(); }
  // Append stores `entry` as the next leaf and returns its index (writer thread, in a txn).
  absl::StatusOr<uint64_t> Append(const std::string& entry);

  // Committed returns the size and root of the committed tree.
  std::pair<uint64_t, std::string> Committed();

  void OnBegin() override { working_ = committed_copy_; }
  void OnOpBegin() override { op_snapshot_ = working_; }
  void OnOpRollback() override { working_ = op_snapshot_; }
  void OnCommit() override;
  void OnAbort() override { working_ = committed_copy_; }

  // PerfectSubtreeHash reads, or for the levels below kFirstStoredLevel computes from the stored
  // leaf hashes, a perfect subtree root [begin, end) from `db` (any connection). NOT_FOUND when
  // it is not stored (beyond the committed tree).
  static absl::StatusOr<std::string> PerfectSubtreeHash(Db* db, uint64_t begin, uint64_t end);

  // StoredFrontier rebuilds the frontier of the first `size` leaves from the stored perfect
  // subtree hashes (any connection). NOT_FOUND when one is missing.
  static absl::StatusOr<common::MerkleFrontier> StoredFrontier(Db* db, uint64_t size);

  // VerifyStored extends `frontier` over the stored leaves [frontier.size(), end), recomputing
  // everything from the entry bytes: each entry must be canonical (common::ParseLogEntry) with a
  // time no earlier than the entry before it, hash to its stored leaf hash, and complete exactly
  // the stored node hashes; at every size in `checkpoint_roots` the root must be the signed one.
  // `last_micros` is the time of the entry before frontier.size() and is advanced. `visit`, when
  // set, sees each entry once it has passed. DATA_LOSS naming the first contradiction; INTERNAL
  // on read errors.
  using EntryVisitor = std::function<void(const caseway::v1::LogEntry&)>;
  static absl::Status VerifyStored(Db* db, uint64_t end, common::MerkleFrontier& frontier,
                                   const std::map<uint64_t, std::string>& checkpoint_roots,
                                   int64_t& last_micros, const EntryVisitor& visit = nullptr);

 private:
  explicit MerkleLog(Db* db);

  Stmt insert_leaf_;
  Stmt insert_node_;
  common::MerkleFrontier working_;        // writer thread
  common::MerkleFrontier op_snapshot_;    // writer thread
  common::MerkleFrontier committed_copy_; // writer thread
  absl::Mutex mu_;
  common::MerkleFrontier committed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_MERKLE_LOG_H_
