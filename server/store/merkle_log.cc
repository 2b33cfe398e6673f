#include "server/store/merkle_log.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace caseway::server {

MerkleLog::MerkleLog(sqlite3* db)
    : insert_leaf_(db, "INSERT INTO log_leaf(idx, bytes, hash) VALUES(?, ?, ?)"),
      insert_node_(db, "INSERT INTO log_node(level, idx, hash) VALUES(?, ?, ?)") {}

absl::StatusOr<std::unique_ptr<MerkleLog>> MerkleLog::Load(sqlite3* db) {
  std::unique_ptr<MerkleLog> log(new MerkleLog(db));
  RETURN_IF_ERROR(log->insert_leaf_.status("prepare log_leaf insert"));
  RETURN_IF_ERROR(log->insert_node_.status("prepare log_node insert"));
  uint64_t size = 0;
  {
    Stmt s(db, "SELECT coalesce(max(idx) + 1, 0), count(*) FROM log_leaf");
    if (s.Step()) {
      size = s.Int(0);
      if (static_cast<uint64_t>(s.Int(1)) != size) {
        return absl::InternalError(absl::StrCat("exchange log: ", s.Int(1), " leaves but size ",
                                                size, " (leaves missing)"));
      }
    }
    RETURN_IF_ERROR(s.status("read log size"));
  }
  std::vector<std::string> hashes;
  for (const auto& p : common::PerfectSubtrees(size)) {
    ASSIGN_OR_RETURN(hashes.emplace_back(),
                     PerfectSubtreeHash(db, p.begin(), p.begin() + (uint64_t{1} << p.level)));
  }
  ASSIGN_OR_RETURN(common::MerkleFrontier frontier,
                   common::MerkleFrontier::FromSubtrees(size, std::move(hashes)));
  log->working_ = log->op_snapshot_ = log->committed_copy_ = frontier;
  absl::MutexLock lock(&log->mu_);
  log->committed_ = frontier;
  return log;
}

absl::StatusOr<uint64_t> MerkleLog::Append(const std::string& entry) {
  const uint64_t index = working_.size();
  const std::string leaf = common::LeafHash(entry);
  insert_leaf_.Bind(1, static_cast<int64_t>(index)).BindBlob(2, entry).BindBlob(3, leaf);
  insert_leaf_.Step();
  absl::Status s = insert_leaf_.status("insert log leaf");
  insert_leaf_.Reset();
  RETURN_IF_ERROR(s);
  working_.Append(leaf, [&](int level, uint64_t node_index, const std::string& hash) {
    if (!s.ok()) return;
    insert_node_.Bind(1, int64_t{level}).Bind(2, static_cast<int64_t>(node_index)).BindBlob(3, hash);
    insert_node_.Step();
    s = insert_node_.status("insert log node");
    insert_node_.Reset();
  });
  RETURN_IF_ERROR(s);
  return index;
}

void MerkleLog::OnCommit() {
  committed_copy_ = working_;
  absl::MutexLock lock(&mu_);
  committed_ = working_;
}

std::pair<uint64_t, std::string> MerkleLog::Committed() {
  absl::MutexLock lock(&mu_);
  return {committed_.size(), committed_.Root()};
}

absl::StatusOr<std::string> MerkleLog::PerfectSubtreeHash(sqlite3* db, uint64_t begin,
                                                          uint64_t end) {
  uint64_t span = end - begin;
  int level = 0;
  while ((uint64_t{1} << level) < span) ++level;
  std::string hash;
  if (level == 0) {
    Stmt s(db, "SELECT hash FROM log_leaf WHERE idx = ?");
    s.Bind(1, static_cast<int64_t>(begin));
    if (s.Step()) hash = std::string(s.Blob(0));
    RETURN_IF_ERROR(s.status("read log leaf hash"));
  } else {
    Stmt s(db, "SELECT hash FROM log_node WHERE level = ? AND idx = ?");
    s.Bind(1, int64_t{level}).Bind(2, static_cast<int64_t>(begin >> level));
    if (s.Step()) hash = std::string(s.Blob(0));
    RETURN_IF_ERROR(s.status("read log node"));
  }
  if (hash.empty()) {
    return absl::NotFoundError(absl::StrCat("exchange log: no stored hash for [", begin, ", ",
                                            end, ")"));
  }
  return hash;
}

}  // namespace caseway::server
