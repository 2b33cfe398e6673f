#include "server/store/merkle_log.h"

#include "absl/strings/str_cat.h"
#include "common/log_entry.h"
#include "common/status_macros.h"

namespace caseway::server {

MerkleLog::MerkleLog(Db* db)
    : insert_leaf_(db, "INSERT INTO log_leaf(idx, bytes, hash) VALUES(?, ?, ?)"),
      insert_node_(db, "INSERT INTO log_node(level, idx, hash) VALUES(?, ?, ?)") {}

absl::StatusOr<std::unique_ptr<MerkleLog>> MerkleLog::Load(Db* db) {
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
  ASSIGN_OR_RETURN(common::MerkleFrontier frontier, StoredFrontier(db, size));
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
    if (!s.ok() || level < kFirstStoredLevel) return;
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

absl::StatusOr<std::string> MerkleLog::PerfectSubtreeHash(Db* db, uint64_t begin,
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
  } else if (level < kFirstStoredLevel) {
    // Not stored: computed from the leaf hashes below it; not found when one is missing (the
    // subtree reaches past the committed log).
    if (span != uint64_t{1} << level || begin % span != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("exchange log: [", begin, ", ", end, ") is not a perfect subtree"));
    }
    Stmt s(db, "SELECT idx, hash FROM log_leaf WHERE idx >= ? AND idx < ? ORDER BY idx");
    s.Bind(1, static_cast<int64_t>(begin)).Bind(2, static_cast<int64_t>(end));
    std::vector<std::string> row;
    while (s.Step() && static_cast<uint64_t>(s.Int(0)) == begin + row.size()) {
      row.emplace_back(s.Blob(1));
    }
    RETURN_IF_ERROR(s.status("read log leaf hashes"));
    if (row.size() == span) {
      while (row.size() > 1) {
        std::vector<std::string> up;
        for (size_t i = 0; i < row.size(); i += 2) up.push_back(common::NodeHash(row[i], row[i + 1]));
        row = std::move(up);
      }
      hash = std::move(row[0]);
    }
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

absl::StatusOr<common::MerkleFrontier> MerkleLog::StoredFrontier(Db* db, uint64_t size) {
  std::vector<std::string> hashes;
  for (const auto& p : common::PerfectSubtrees(size)) {
    ASSIGN_OR_RETURN(hashes.emplace_back(),
                     PerfectSubtreeHash(db, p.begin(), p.begin() + (uint64_t{1} << p.level)));
  }
  return common::MerkleFrontier::FromSubtrees(size, std::move(hashes));
}

absl::Status MerkleLog::VerifyStored(Db* db, uint64_t end, common::MerkleFrontier& frontier,
                                     const std::map<uint64_t, std::string>& checkpoint_roots,
                                     int64_t& last_micros, const EntryVisitor& visit) {
  Stmt leaves(db, "SELECT idx, bytes, hash FROM log_leaf WHERE idx >= ? AND idx < ? ORDER BY idx");
  Stmt node(db, "SELECT hash FROM log_node WHERE level = ? AND idx = ?");
  leaves.Bind(1, static_cast<int64_t>(frontier.size())).Bind(2, static_cast<int64_t>(end));
  absl::Status bad;
  while (bad.ok() && leaves.Step()) {
    const uint64_t i = frontier.size();
    if (static_cast<uint64_t>(leaves.Int(0)) != i) {
      return absl::DataLossError(absl::StrCat("exchange log: entry ", i, " is missing"));
    }
    const absl::string_view bytes = leaves.Blob(1);
    auto entry = common::ParseLogEntry(bytes, i);
    if (!entry.ok()) {
      return absl::DataLossError(absl::StrCat("exchange log: ", entry.status().message()));
    }
    const int64_t micros = common::EntryMicros(*entry);
    if (micros < last_micros) {
      return absl::DataLossError(
          absl::StrCat("exchange log: entry ", i, " is dated before the entry preceding it"));
    }
    last_micros = micros;
    const std::string leaf = common::LeafHash(bytes);
    if (leaf != leaves.Blob(2)) {
      return absl::DataLossError(
          absl::StrCat("exchange log: entry ", i, ": its bytes do not match its stored hash"));
    }
    frontier.Append(leaf, [&](int level, uint64_t index, const std::string& hash) {
      // The levels below are not stored: the leaf hashes and the nodes above prove them.
      if (!bad.ok() || level < kFirstStoredLevel) return;
      node.Bind(1, int64_t{level}).Bind(2, static_cast<int64_t>(index));
      const bool found = node.Step();
      if (!found) {
        bad = node.status("read log node");
        if (bad.ok()) {
          bad = absl::DataLossError(absl::StrCat("exchange log: node ", level, "/", index,
                                                 " (entries up to ", i, ") is missing"));
        }
      } else if (node.Blob(0) != hash) {
        bad = absl::DataLossError(absl::StrCat("exchange log: node ", level, "/", index,
                                               " does not match the entries below it (up to ",
                                               i, ")"));
      }
      node.Reset();
    });
    if (auto it = checkpoint_roots.find(frontier.size());
        bad.ok() && it != checkpoint_roots.end() && it->second != frontier.Root()) {
      bad = absl::DataLossError(absl::StrCat("exchange log: the first ", frontier.size(),
                                             " entries do not rebuild the root of the checkpoint "
                                             "signed for that size"));
    }
    if (bad.ok() && visit) visit(*entry);
  }
  RETURN_IF_ERROR(bad);
  RETURN_IF_ERROR(leaves.status("read log leaves"));
  if (frontier.size() != end) {
    return absl::DataLossError(
        absl::StrCat("exchange log: entry ", frontier.size(), " is missing"));
  }
  return absl::OkStatus();
}

}  // namespace caseway::server
